-- spec/85_faults_spec.lua: fault injection against a real mosquitto. A loopback
-- TCP proxy (spec/proxy.lua, a child process) cuts, stalls, delays and splits
-- the client's connection; the broker is stopped and restarted 20 times under
-- 10,000 QoS 1 + 10,000 QoS 2 messages; a consumer stops dispatching under a
-- flood (back-pressure, memory bounds, acks and pings); breconnect_cb rotates
-- a password the broker has just changed.
--
-- Two mosquitto 2.0 defects shape the broker setup (see the restart test):
--   * with its outgoing window (max_inflight_messages) full, mosquitto can send
--     a newer QoS 2 message before an older queued one to the same client, and
--     it silently drops (PUBACK "quota exceeded", invisible in 3.1.1) QoS 1/2
--     messages from a client with more QoS 2 awaiting PUBREL than that window:
--     the brokers here get a window no test fills (65535);
--   * restoring its persistence file, mosquitto re-sends PUBLISH (DUP) instead
--     of PUBREL for a QoS 2 message whose PUBREL it had already sent (against
--     MQTT-4.3.3-1), which a compliant client must take as a new message
--     (MQTT-4.3.3-2) and deliver again: before each stop the restart test
--     holds the subscriber's PUBRECs in the proxy until the broker has no
--     PUBREL outstanding towards it.

local helpers = require("helpers")
local proxy = require("proxy")
local mqtt = require("mqtt")
local socket = require("socket")
local compat = require("compat")

local idiv = compat.idiv

local HOST = helpers.HOST
local FAST = { min = 0.05, max = 0.3 }
-- Broker settings every test here relies on (see the top of the file).
local BROKER_EXTRA = { "max_inflight_messages 65535", "max_queued_messages 1000000" }

---------------------------------------------------------------------------
-- Small tools (on helpers' basic functions only)
---------------------------------------------------------------------------

local now = socket.gettime

-- Dispatches every client until pred() holds or timeout (default 5) seconds pass.
local function wait_for(pred, timeout)
    return helpers.wait_until(pred, timeout or 5, function() mqtt.dispatch(0.01) end)
end

-- Dispatches for `seconds`, whatever happens.
local function settle(seconds)
    mqtt.sleep(seconds or 0.2)
end

-- Occurrences of the plain string `needle` in `text`.
local function count(text, needle)
    local n, i = 0, 1
    while true do
        i = text:find(needle, i, true)
        if not i then return n end
        n, i = n + 1, i + #needle
    end
end

local function log_of(b)
    return helpers.read_file(b.log_file) or ""
end

-- A broker's log from byte offset `from` on, and its size.
local function log_from(b, from)
    local f = io.open(b.log_file, "rb")
    if not f then return "", 0 end
    local size = f:seek("end")
    f:seek("set", math.min(from, size))
    local text = compat.read_all(f) or ""
    f:close()
    return text, size
end

local rss = helpers.rss

-- Subscribes c and dispatches until the SUBACK arrives; returns the granted QoS list.
local function subscribe(c, filter, qos)
    local mid = c:subscribe(filter, qos)
    local ack
    local function on_ack(_, d) ack = d end
    c:on(mqtt.SUBACK, on_ack, function(d) return d.mid == mid end, 1e9)
    local ok = wait_for(function() return ack ~= nil end)
    c:off(mqtt.SUBACK, on_ack)
    assert.is_true(ok, "no SUBACK for " .. filter)
    return ack.granted_qos
end

-- Records a client's connection events: "C<rc>" for CONNACK, "D" for DISCONNECT
-- (in trace), and the data tables (in connacks, disconnects).
local function watch_link(c)
    local rec = { trace = {}, connacks = {}, disconnects = {} }
    c:on(mqtt.CONNACK, function(_, d)
        rec.connacks[#rec.connacks + 1] = d
        rec.trace[#rec.trace + 1] = "C" .. tostring(d.return_code)
    end)
    c:on(mqtt.DISCONNECT, function(_, d)
        rec.disconnects[#rec.disconnects + 1] = d
        rec.trace[#rec.trace + 1] = "D"
    end)
    return rec
end

-- x * 1103515245 + 12345 modulo 2^31, exact with doubles too (5.1, LuaJIT):
-- the product is split so that no intermediate value exceeds 2^53.
local function lcg(x)
    local lo, hi = x % 65536, idiv(x, 65536)
    return ((hi * 1103515245) % 32768 * 65536 + lo * 1103515245 + 12345) % 2147483648
end

-- Deterministic binary payload of n bytes (all byte values, NUL included).
local function payload(n, seed)
    local t = {}
    local x = seed or 1
    for i = 1, math.min(n, 4099) do
        x = lcg(x)
        t[i] = string.char(compat.rshift(x, 16) % 256)
    end
    local block = table.concat(t)
    if n <= #block then return block:sub(1, n) end
    return string.rep(block, idiv(n, #block) + 1):sub(1, n)
end

local function topic_base(tag)
    return (helpers.unique(tag):gsub("%-", "/"))
end

-- Counts "q:i" payloads (q = 1 or 2, i = 1..n) in a list of payloads.
-- Returns per-QoS tables id -> occurrences, the ids in order of first
-- occurrence per QoS, and what did not parse.
local function tally(list)
    local seen = { [1] = {}, [2] = {} }
    local firsts = { [1] = {}, [2] = {} }
    local bad = {}
    for _, p in ipairs(list) do
        local q, i = p:match("^([12]):(%d+)$")
        q, i = tonumber(q), tonumber(i)
        if not q then
            bad[#bad + 1] = p
        else
            if not seen[q][i] then firsts[q][#firsts[q] + 1] = i end
            seen[q][i] = (seen[q][i] or 0) + 1
        end
    end
    return seen, firsts, bad
end

-- Checks that every QoS 1 id 1..n arrived at least once, every QoS 2 id
-- exactly once, and that first occurrences came in increasing order.
-- Returns the number of QoS 1 duplicates.
local function assert_delivery(list, n)
    local seen, firsts, bad = tally(list)
    assert.same({}, bad, "unexpected payloads")
    local missing1, missing2, twice2 = {}, {}, {}
    local dups1 = 0
    for i = 1, n do
        local c1, c2 = seen[1][i] or 0, seen[2][i] or 0
        if c1 == 0 then missing1[#missing1 + 1] = i end
        if c1 > 1 then dups1 = dups1 + c1 - 1 end
        if c2 == 0 then missing2[#missing2 + 1] = i end
        if c2 > 1 then twice2[#twice2 + 1] = i .. "x" .. c2 end
    end
    local function show(t) return #t .. " (" .. table.concat(t, ",", 1, math.min(#t, 20)) .. ")" end
    assert.equal(0, #missing1, "QoS 1 messages lost: " .. show(missing1))
    assert.equal(0, #missing2, "QoS 2 messages lost: " .. show(missing2))
    assert.equal(0, #twice2, "QoS 2 messages delivered more than once: " .. show(twice2))
    for q = 1, 2 do
        for k = 2, #firsts[q] do
            if firsts[q][k] < firsts[q][k - 1] then
                error(("QoS %d message %d first arrived after message %d"):format(
                    q, firsts[q][k], firsts[q][k - 1]), 2)
            end
        end
    end
    return dups1
end

-- Publishes "1:i" on base/q1 (QoS 1) and "2:i" on base/q2 (QoS 2) for i from
-- state.next to n, as many as the client accepts now. A full queue or a
-- lack of packet ids stops the batch (the caller dispatches and calls again);
-- any other error propagates. Returns true once all n pairs are published.
local function publish_some(c, base, state, n, limit)
    local done = 0
    while state.next <= n and (not limit or done < limit) do
        local i, q = state.next, state.qos or 1
        local ok, err = pcall(c.publish, c, base .. "/q" .. q, q .. ":" .. i, q)
        if not ok then
            if mqtt.is_error(err) and (err.name == "queue full" or err.name == "no packet id") then
                state.full = (state.full or 0) + 1
                return false
            end
            error(err, 0)
        end
        done = done + 1
        if q == 1 then
            state.qos = 2
        else
            state.qos, state.next = 1, i + 1
        end
    end
    return state.next > n
end

-- A flood publisher in a child process (so its memory is not ours): n
-- messages of `size` bytes, alternating QoS 1 and 2, on topic; it exits
-- once the broker has acknowledged all of them. Returns a handle whose
-- finish() waits for it and returns its output.
local function start_flood(port, topic, n, size)
    local script = ([[
        local mqtt = require("mqtt")
        local c = mqtt.Client("", true, { max_queued = 200 })
        local acked = 0
        c:on(mqtt.PUBACK, function() acked = acked + 1 end)
        c:on(mqtt.PUBCOMP, function() acked = acked + 1 end)
        c:connect("127.0.0.1", 30, %d)
        c:loop()
        local body = string.rep("f", %d - 9)
        local i = 1
        while i <= %d do
            local q = 2 - i %% 2
            local ok, err = pcall(c.publish, c, %q, ("%%06d:%%d:"):format(i, q) .. body, q)
            if ok then i = i + 1 else mqtt.dispatch(0.005) end
        end
        while acked < %d do mqtt.dispatch(0.05) end
        c:disconnect()
        io.write("flooded ", %d, "\n")
    ]]):format(port, size, n, topic, n, n)
    local cmd = "timeout -k 2 60 env LUA_PATH=" .. helpers.quote(package.path) ..
                " LUA_CPATH=" .. helpers.quote(package.cpath) .. " " .. helpers.LUA ..
                " -e " .. helpers.quote(script) .. " 2>&1"
    local p = assert(io.popen(cmd, "r"))
    return {
        finish = function()
            local out = compat.read_all(p)
            p:close()
            return out
        end,
    }
end

---------------------------------------------------------------------------

describe("fault injection", function()
    local broker            -- shared, no persistence
    local clients = {}      -- closed after each test
    local proxies = {}      -- stopped after each test

    local function client(id, clean, opts)
        local c = mqtt.Client(id or helpers.unique("zf"), clean, opts)
        clients[#clients + 1] = c
        return c
    end

    local function new_proxy(port)
        local p = proxy.start(port or broker.port)
        proxies[#proxies + 1] = p
        return p
    end

    setup(function()
        broker = helpers.start_broker({ extra = BROKER_EXTRA })
    end)

    after_each(function()
        for i = #clients, 1, -1 do
            clients[i]:close()
            clients[i] = nil
        end
        for i = #proxies, 1, -1 do
            proxies[i]:stop()
            proxies[i] = nil
        end
    end)

    teardown(function()
        proxy.stop_all()
        helpers.stop_all()
    end)

    describe("the proxy", function()
        it("forwards both ways, and cuts, stalls, delays, splits and drops on command", function()
            -- A plain TCP peer in this thread stands for the broker.
            local server = assert(socket.bind(HOST, 0))
            local _, sport = server:getsockname()
            server:settimeout(5)
            local p = new_proxy(tonumber(sport))
            local a = assert(socket.connect(HOST, p.port))
            a:settimeout(5)
            local b = assert(server:accept())
            b:settimeout(5)

            assert(a:send("hello\n"))
            assert.equal("hello", b:receive("*l"))
            assert(b:send("world\n"))
            assert.equal("world", a:receive("*l"))

            -- split: one write per byte, in this direction only
            local before = p:stats()
            p:split(true, nil, "down")
            assert(b:send("0123456789\n"))
            assert.equal("0123456789", a:receive("*l"))
            assert(a:send("up in one piece\n"))
            assert.equal("up in one piece", b:receive("*l"))
            local after = p:stats()
            assert.equal(11, after.down_writes - before.down_writes)
            assert.equal(1, after.up_writes - before.up_writes)
            p:pass()

            -- delay: held ms per chunk
            p:delay(150, "up")
            local t0 = now()
            assert(a:send("late\n"))
            assert.equal("late", b:receive("*l"))
            assert.is_true(now() - t0 >= 0.14, "delay not applied")
            p:pass()

            -- stall: nothing moves for the time given, then everything does
            p:stall(0.4)
            t0 = now()
            assert(a:send("after the stall\n"))
            b:settimeout(0.2)
            assert.same({ nil, "timeout", "" }, { b:receive("*l") })
            b:settimeout(5)
            assert.equal("after the stall", b:receive("*l"))
            assert.is_true(now() - t0 >= 0.35, "stall not applied")

            -- cut: both sides see the connection end
            assert.equal(1, p:cut())
            a:settimeout(2)
            b:settimeout(2)
            for _, sock in ipairs({ a, b }) do
                local line, err = sock:receive("*l")
                assert.is_nil(line)
                assert.equal("closed", err)
            end
            a:close()
            b:close()

            -- drop: on a new connection, MQTT framing is followed and one
            -- packet type discarded
            a = assert(socket.connect(HOST, p.port))
            a:settimeout(5)
            b = assert(server:accept())
            b:settimeout(5)
            p:drop("PUBACK", "up")
            local puback, pingreq = "\64\2\0\1", "\192\0"
            assert(a:send(puback .. pingreq .. puback .. pingreq))
            assert.equal(pingreq .. pingreq, b:receive(4))
            local counts = p:packets("up")
            assert.is_true(counts.live)
            assert.equal(2, counts.PINGREQ)
            assert.is_nil(counts.PUBACK)
            p:drop(nil, "up")
            assert(a:send(puback))
            assert.equal(puback, b:receive(4))
            assert.equal(1, p:packets("up").PUBACK)
            a:close()
            b:close()

            -- refuse: new connections are closed at once
            p:refuse(true)
            local c = assert(socket.connect(HOST, p.port))
            c:settimeout(2)
            local line, err = c:receive("*l")
            assert.is_nil(line)
            assert.equal("closed", err)
            c:close()
            server:close()
            assert.equal(3, p:stats().accepted)
        end)
    end)

    describe("through the proxy", function()
        it("one byte per write both ways: every packet, CONNACK included, is reassembled",
           function()
            local p = new_proxy()
            p:split(true, 2)   -- 2 ms apart: the CONNACK arrives over four reads
            local c = client(nil, true)
            local link = watch_link(c)
            local got = {}
            c:on(mqtt.PUBLISH, function(_, d) if d.message then got[#got + 1] = d.message end end)
            c:on(mqtt.PUBREL, function(_, d) got[#got + 1] = d.message end)
            c:connect(HOST, 30, p.port)
            c:loop()
            local base = topic_base("split")
            assert.same({ 2 }, subscribe(c, base .. "/#", 2))

            local sent = {}
            local function send(qos, size)
                local m = { topic = base .. "/q" .. qos .. "/" .. size, payload = payload(size, size),
                            qos = qos }
                sent[#sent + 1] = m
                c:publish(m.topic, m.payload, qos)
            end
            for qos = 0, 2 do
                for _, size in ipairs({ 0, 1, 5 }) do send(qos, size) end
            end
            assert.is_true(wait_for(function() return #got >= #sent end, 10),
                           ("%d of %d small messages"):format(#got, #sent))

            -- Bigger packets at full speed, still a byte per write: lengths
            -- across the 1-, 2- and 3-byte remaining-length encodings.
            p:split(true, 0)
            for qos = 0, 2 do
                for _, size in ipairs({ 120, 127, 128, 300, 16380, 16384, 20000 }) do
                    send(qos, size)
                end
            end
            assert.is_true(wait_for(function() return #got >= #sent end, 30),
                           ("%d of %d messages"):format(#got, #sent))
            settle(0.1)
            assert.equal(#sent, #got)
            -- Per QoS, in publish order and intact.
            for qos = 0, 2 do
                local want, have = {}, {}
                for _, m in ipairs(sent) do if m.qos == qos then want[#want + 1] = m end end
                for _, m in ipairs(got) do if m.qos == qos then have[#have + 1] = m end end
                assert.equal(#want, #have)
                for i, m in ipairs(want) do
                    assert.equal(m.topic, have[i].topic)
                    assert.is_true(m.payload == have[i].payload, "payload of " .. m.topic .. " differs")
                end
            end
            local st = p:stats()
            assert.equal(st.down_bytes, st.down_writes, "the proxy did not split broker->client")
            assert.equal(st.up_bytes, st.up_writes, "the proxy did not split client->broker")
            assert.is_true(st.down_bytes > 3 * 37000)
            assert.same({ "C0" }, link.trace)
            assert.equal(0, c:stats().reconnects)
        end)

        it("a delay of 40 ms per chunk each way: keepalive pings, acks and round trips go on",
           function()
            local p = new_proxy()
            p:delay(40)
            local c = client(nil, true)
            local link = watch_link(c)
            local got = {}
            local t0 = now()
            c:connect(HOST, 1, p.port)
            assert.is_true(now() - t0 >= 0.075, "CONNECT/CONNACK were not delayed")
            c:loop(function(_, d) got[#got + 1] = d.message.payload end)
            local base = topic_base("delay")
            subscribe(c, base .. "/#", 2)
            local log_start = #log_of(broker)
            for i = 1, 30 do
                c:publish(base .. "/q1", "1:" .. i, 1)
                c:publish(base .. "/q2", "2:" .. i, 2)
            end
            -- 3.5 s with a 1 s keepalive: pings flow, nothing is lost or reordered.
            settle(3.5)
            assert_delivery(got, 30)
            assert.equal(60, #got)
            local log = log_of(broker):sub(log_start + 1)
            assert.is_true(count(log, "Received PINGREQ from " .. c:client_id()) >= 2,
                           "no keepalive pings through the delayed link")
            assert.same({ "C0" }, link.trace)
            assert.is_true(c:is_connected())
        end)

        it("cutting the link 10 times (FIN and RST in turn) under QoS 1/2 traffic: both " ..
           "clients reconnect by " ..
           "themselves, resend with DUP, QoS 1 at least once, QoS 2 exactly once, in order",
           function()
            local N, CUTS = 1500, 10
            local p = new_proxy()
            local base = topic_base("cut")
            local sub = client(nil, false, { reconnect = FAST })
            local pub = client(nil, false, { reconnect = FAST, max_queued = 300 })
            local sub_link, pub_link = watch_link(sub), watch_link(pub)
            local got = {}
            sub:connect(HOST, 5, p.port)
            sub:loop(function(_, d) got[#got + 1] = d.message.payload end)
            subscribe(sub, base .. "/#", 2)
            pub:connect(HOST, 5, p.port)
            pub:loop()
            local state = { next = 1 }
            local cuts = 0
            local deadline = now() + 60
            while true do
                local all = publish_some(pub, base, state, N)
                mqtt.dispatch(0.005)
                if cuts < CUTS and state.next > (cuts + 1) * N / (CUTS + 1)
                   and pub:is_connected() and sub:is_connected() then
                    -- Hold the broker's answers a moment so that some messages
                    -- are surely in flight, then cut (close, or reset).
                    p:stall(nil, "down")
                    publish_some(pub, base, state, N, 20)
                    settle(0.05)
                    assert.equal(2, cuts % 2 == 0 and p:cut() or p:reset())
                    p:pass()
                    cuts = cuts + 1
                end
                if all and cuts == CUTS and #got >= 2 * N then
                    local seen = tally(got)
                    local complete = true
                    for i = 1, N do
                        if not (seen[1][i] and seen[2][i]) then complete = false break end
                    end
                    if complete then break end
                end
                assert.is_true(now() < deadline, ("timed out: %d cuts, %d published, %d received")
                               :format(cuts, state.next - 1, #got))
            end
            assert.is_true(wait_for(function()
                local st = pub:stats()
                return st.queued == 0 and st.inflight == 0
            end), "the publisher still holds messages")
            settle(0.3)
            assert_delivery(got, N)
            local log = log_of(broker)
            assert.is_true(log:find("Received PUBLISH from " .. pub:client_id() .. " (d1, q", 1, true)
                           ~= nil, "no PUBLISH was resent with DUP")
            for _, c in ipairs({ pub, sub }) do
                assert.is_true(c:is_connected())
                assert.equal(CUTS, c:stats().reconnects)
            end
            for _, link in ipairs({ pub_link, sub_link }) do
                assert.equal(CUTS, #link.disconnects)
                for _, d in ipairs(link.disconnects) do
                    assert.is_true(mqtt.is_error(d.error, mqtt.MQTTConnectionError))
                    local name = d.error.name
                    assert.is_true(name == "connection closed" or name == "i/o error", name)
                end
                assert.equal("C0", link.trace[#link.trace])
            end
        end)

        it("a stall longer than 1.5 x keepalive is a keepalive timeout; the client reconnects " ..
           "once the link flows again and loses nothing", function()
            local p = new_proxy()
            local base = topic_base("stall")
            local watcher = client(nil, true)
            watcher:connect(HOST, 30, broker.port)   -- directly, not through the proxy
            local got = {}
            watcher:loop(function(_, d) got[#got + 1] = d.message.payload end)
            subscribe(watcher, base .. "/#", 2)

            local c = client(nil, false, { reconnect = FAST, connect_timeout = 0.5 })
            local link = watch_link(c)
            c:connect(HOST, 1, p.port)
            c:loop()
            settle(0.2)
            local t0 = now()
            p:stall(4)
            for i = 1, 20 do
                c:publish(base .. "/q1", "1:" .. i, 1)
                c:publish(base .. "/q2", "2:" .. i, 2)
            end
            assert.is_true(wait_for(function() return #link.disconnects >= 1 end, 4),
                           "the stalled link was not detected")
            local detected = now() - t0
            local err = link.disconnects[1].error
            assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
            assert.equal("keepalive timeout", err.name)
            assert.is_true(detected > 0.3 and detected < 2.6,
                           ("detected after %.2f s, keepalive 1 s"):format(detected))
            assert.is_false(c:is_connected())
            -- Attempts during the stall time out (no CONNACK); then one succeeds.
            assert.is_true(wait_for(function() return c:is_connected() end, 8), "no reconnect")
            assert.is_true(now() - t0 >= 3.9, "reconnected through a stalled link")
            assert.is_true(wait_for(function() return #got >= 40 end, 5))
            settle(0.2)
            assert_delivery(got, 20)
            assert.equal(1, c:stats().reconnects)
            -- Automatic attempts that time out are counted, not CONNACK events.
            assert.is_true(c:stats().connect_failures >= 1,
                           "no connect attempt failed during the stall: " ..
                           table.concat(link.trace, " "))
            assert.same({ "C0", "D", "C0" }, link.trace)
        end)

        it("a stall shorter than the keepalive costs nothing", function()
            local p = new_proxy()
            local base = topic_base("short")
            local c = client(nil, true, { reconnect = FAST })
            local link = watch_link(c)
            local got = {}
            c:connect(HOST, 2, p.port)
            c:loop(function(_, d) got[#got + 1] = d.message.payload end)
            subscribe(c, base .. "/#", 2)
            p:stall(1)
            for i = 1, 10 do
                c:publish(base .. "/q1", "1:" .. i, 1)
                c:publish(base .. "/q2", "2:" .. i, 2)
            end
            settle(0.8)
            assert.equal(0, #got)
            assert.is_true(wait_for(function() return #got >= 20 end, 3))
            settle(0.2)
            assert_delivery(got, 10)
            assert.equal(20, #got)
            assert.same({ "C0" }, link.trace)
            assert.equal(0, c:stats().reconnects)
        end)

        it("a half-open link (broker to client stalled): the unanswered PINGREQ ends the " ..
           "connection within 1.5 x keepalive", function()
            local p = new_proxy()
            local c = client(nil, true, { reconnect = FAST, connect_timeout = 0.5 })
            local link = watch_link(c)
            c:connect(HOST, 1, p.port)
            c:loop()
            settle(0.2)
            local log_start = #log_of(broker)
            local t0 = now()
            p:stall(nil, "down")
            assert.is_true(wait_for(function() return #link.disconnects >= 1 end, 4),
                           "the half-open link was not detected")
            assert.is_true(now() - t0 < 2.6)
            assert.equal("keepalive timeout", link.disconnects[1].error.name)
            -- The client's PINGREQ did reach the broker: only the answer was missing.
            assert.is_true(count(log_of(broker):sub(log_start + 1),
                                 "Received PINGREQ from " .. c:client_id()) >= 1)
            p:pass()
            assert.is_true(wait_for(function() return c:is_connected() end, 5))
        end)

        it("connect through a stalled link times out after connect_timeout, blocking or async",
           function()
            local p = new_proxy()
            p:stall(nil)
            local c = client(nil, true, { connect_timeout = 0.5, reconnect = false })
            local t0 = now()
            local ok, err = pcall(c.connect, c, HOST, 30, p.port)
            local took = now() - t0
            assert.is_false(ok)
            assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
            assert.equal("timeout", err.name)
            assert.is_true(took >= 0.45 and took < 2, ("took %.2f s"):format(took))
            assert.is_false(c:is_connected())

            -- The blocking call's failure fires its CONNACK event too.
            local acks = {}
            c:on(mqtt.CONNACK, function(_, d) acks[#acks + 1] = d end)
            c:dispatch()
            assert.equal(1, #acks)
            assert.equal("timeout", acks[1].error.name)
            acks = {}
            t0 = now()
            c:connect_async(HOST, 30, p.port)
            assert.is_true(wait_for(function() return #acks >= 1 end, 3))
            assert.is_true(now() - t0 >= 0.45)
            assert.is_not.equal(0, acks[1].return_code)
            assert.is_true(mqtt.is_error(acks[1].error, mqtt.MQTTConnectionError))
            assert.equal("timeout", acks[1].error.name)
            -- Once the link flows, the same client connects.
            p:pass()
            c:connect(HOST, 30, p.port)
            assert.is_true(c:is_connected())
        end)
    end)

    describe("back-pressure", function()
        it("publish raises 'queue full' when the in-flight window and the queue are full " ..
           "on a stalled link; everything accepted is delivered once it flows", function()
            local p = new_proxy()
            local base = topic_base("full")
            local watcher = client(nil, true)
            watcher:connect(HOST, 30, broker.port)
            local got = {}
            watcher:loop(function(_, d) got[#got + 1] = d.message.payload end)
            subscribe(watcher, base .. "/#", 2)

            local c = client(nil, true, { max_inflight = 5, max_queued = 20 })
            c:connect(HOST, 30, p.port)
            c:loop()
            p:stall(nil, "up")
            local state = { next = 1 }
            publish_some(c, base, state, 1000)
            local accepted = (state.next - 1) * 2 + (state.qos == 2 and 1 or 0)
            assert.equal(25, accepted)
            local st = c:stats()
            assert.equal(5, st.inflight)
            assert.equal(20, st.queued)
            local ok, err = pcall(c.publish, c, base .. "/q1", "one more", 1)
            assert.is_false(ok)
            assert.is_true(mqtt.is_error(err), tostring(err))
            assert.equal("queue full", err.name)
            assert.matches("queue", tostring(err))
            assert.equal(25, c:stats().inflight + c:stats().queued)   -- nothing half-added

            p:pass()
            assert.is_true(wait_for(function() return #got >= 25 end, 5))
            settle(0.2)
            assert.equal(25, #got)
            local seen = tally(got)
            for i = 1, 12 do
                assert.equal(1, seen[1][i])
                assert.equal(1, seen[2][i])
            end
            assert.equal(1, seen[1][13])
            assert.is_true(wait_for(function() return c:stats().inflight == 0 end))
            c:publish(base .. "/room", "room again", 1)
        end)

        it("publish raises 'queue full' when the offline queue reaches its byte bound", function()
            local p = new_proxy()
            local base = topic_base("bytes")
            local watcher = client(nil, true)
            watcher:connect(HOST, 30, broker.port)
            local got = {}
            watcher:loop(function(_, d) got[#got + 1] = d.message.payload end)
            subscribe(watcher, base .. "/#", 1)

            local LIMIT = 4000
            local c = client(nil, true, { reconnect = FAST, max_queued = { messages = 1000, bytes = LIMIT } })
            local link = watch_link(c)
            c:connect(HOST, 30, p.port)
            c:loop()
            p:refuse(true)
            p:cut()
            assert.is_true(wait_for(function() return #link.disconnects >= 1 end))
            assert.is_false(c:is_connected())
            local body = string.rep("b", 200)
            local n, err = 0, nil
            for i = 1, 100 do
                local ok, e = pcall(c.publish, c, base .. "/x", ("%03d"):format(i) .. body, 1)
                if not ok then
                    err = e
                    break
                end
                n = n + 1
            end
            assert.is_not_nil(err, "the queue never filled")
            assert.equal("queue full", err.name)
            local st = c:stats()
            assert.is_true(st.queued_bytes <= LIMIT, st.queued_bytes .. " bytes queued")
            assert.is_true(st.queued_bytes + #body > LIMIT - 300)
            assert.equal(n, st.queued)
            assert.is_true(n >= 15 and n <= 20, n .. " messages accepted")
            p:refuse(false)
            assert.is_true(wait_for(function() return #got >= n end, 5))
            settle(0.1)
            assert.equal(n, #got)
            for i = 1, n do assert.equal(("%03d"):format(i) .. body, got[i]) end
        end)

        it("a consumer that stops dispatching under a flood: the event queue stays within " ..
           "max_event_bytes, reading pauses, RSS stays bounded, nothing is lost", function()
            local MAX_EVENTS = 256 * 1024
            -- One read batch (4 x 64 KiB) may land after the bound is reached;
            -- each event costs its payload plus a header of < 300 bytes.
            local SLACK = 4 * 64 * 1024 * 2
            local N, SIZE = 5000, 4096             -- a 20 MiB flood, 80 x the bound
            local base = topic_base("flood")
            local c = client(nil, true, { max_event_bytes = MAX_EVENTS })
            local link = watch_link(c)
            local got = {}
            c:connect(HOST, 60, broker.port)
            c:loop(function(_, d) got[#got + 1] = d.message.payload end)
            subscribe(c, base .. "/#", 2)
            settle(0.1)
            collectgarbage("collect")
            local rss0 = rss()

            local flood = start_flood(broker.port, base .. "/f", N, SIZE)
            local max_events, max_rss, samples = 0, 0, 0
            local t0 = now()
            while now() - t0 < 5 do           -- no dispatch at all for 5 s
                local st = c:stats()
                if st.event_bytes > max_events then max_events = st.event_bytes end
                local r = rss()
                if r > max_rss then max_rss = r end
                samples = samples + 1
                socket.sleep(0.02)
            end
            local out = flood.finish()
            assert.matches("flooded " .. N, out)
            local st = c:stats()
            assert.is_true(samples > 100)
            assert.is_true(max_events <= MAX_EVENTS + SLACK,
                           ("event queue reached %d bytes, bound %d"):format(max_events, MAX_EVENTS))
            assert.is_true(st.event_bytes >= MAX_EVENTS, "the flood did not fill the event queue")
            assert.is_true(st.read_pauses > 0, "reading never paused")
            -- The event queue, the input buffer and allocator slack: 8 MiB,
            -- against a 20 MiB flood that an unbounded client would hold.
            -- (Sanitizers' shadow memory says nothing of ours: counters only.)
            local growth = max_rss - rss0
            assert.is_true(helpers.memory_instrumented() or growth < 8 * 1024 * 1024,
                           ("RSS grew by %.1f MiB"):format(growth / 1048576))

            assert.is_true(wait_for(function() return #got >= N end, 30),
                           ("%d of %d messages after dispatching resumed"):format(#got, N))
            settle(0.2)
            assert.equal(N, #got)
            local last = { 0, 0 }
            for _, pl in ipairs(got) do
                local i, q = pl:match("^(%d+):(%d):")
                i, q = tonumber(i), tonumber(q)
                assert.is_true(i > last[q], "out of order: " .. i .. " after " .. last[q])
                last[q] = i
                assert.equal(SIZE, #pl)
            end
            assert.same({ "C0" }, link.trace)
            assert.equal(0, c:stats().reconnects)
        end)

        it("acks and pings go on while the application does not dispatch", function()
            local base = topic_base("acks")
            local c = client(nil, false, { reconnect = FAST })
            local link = watch_link(c)
            local got = {}
            c:connect(HOST, 1, broker.port)
            c:loop(function(_, d) got[#got + 1] = d.message.payload end)
            subscribe(c, base .. "/#", 2)
            local pub = client(nil, true)
            pub:connect(HOST, 30, broker.port)
            pub:loop()
            local log_start = #log_of(broker)
            for i = 1, 200 do
                pub:publish(base .. "/q1", "1:" .. i, 1)
                pub:publish(base .. "/q2", "2:" .. i, 2)
            end
            socket.sleep(3.5)                -- no dispatch: 3.5 x keepalive
            local log = log_of(broker):sub(log_start + 1)
            local id = c:client_id()
            assert.equal(200, count(log, "Received PUBACK from " .. id .. " ("))
            assert.equal(200, count(log, "Received PUBREC from " .. id .. " ("))
            assert.equal(200, count(log, "Received PUBCOMP from " .. id .. " ("))
            assert.is_true(count(log, "Received PINGREQ from " .. id) >= 2)
            assert.is_nil(log:find("Client " .. id .. " has exceeded timeout", 1, true))
            assert.is_true(c:is_connected())
            assert.equal(0, #got)
            assert.is_true(wait_for(function() return #got >= 400 end))
            assert_delivery(got, 200)
            assert.same({ "C0" }, link.trace)
        end)

        it("while reading is paused by a full event queue, the client keeps the connection " ..
           "alive: PINGREQs go on and the broker does not drop it", function()
            local base = topic_base("paused")
            local N, SIZE = 600, 4096
            local c = client(nil, false, { reconnect = FAST, max_event_bytes = 64 * 1024 })
            local link = watch_link(c)
            local got = {}
            c:connect(HOST, 1, broker.port)
            c:loop(function(_, d) got[#got + 1] = d.message.payload end)
            subscribe(c, base .. "/#", 2)
            local log_start = #log_of(broker)
            local flood = start_flood(broker.port, base .. "/f", N, SIZE)
            assert.matches("flooded " .. N, flood.finish())
            local t0 = now()
            while now() - t0 < 5 do socket.sleep(0.05) end   -- 5 x keepalive, no dispatch
            local st = c:stats()
            assert.is_true(st.read_pauses > 0, "the flood did not fill the event queue")
            local log = log_of(broker):sub(log_start + 1)
            local id = c:client_id()
            assert.is_nil(log:find("Client " .. id .. " has exceeded timeout", 1, true),
                          "the broker dropped the paused client for silence (PINGREQs from it: " ..
                          count(log, "Received PINGREQ from " .. id) .. " in 5 s)")
            assert.is_true(count(log, "Received PINGREQ from " .. id) >= 3,
                           "PINGREQs stopped while reading was paused")
            assert.is_true(wait_for(function() return #got >= N end, 20))
            settle(0.2)
            assert.same({ "C0" }, link.trace)
            assert.equal(0, c:stats().reconnects)
        end)
    end)

    it("breconnect_cb changing the password between attempts is honoured (the broker's " ..
       "password file rotated and reloaded during the test)", function()
        local b = helpers.start_broker({ users = { zuser = "pw-0" } })
        local passwd = b.dir .. "/passwd"
        local function rotate(password)
            helpers.write_file(passwd, "")
            local ok, _, out = helpers.run("mosquitto_passwd -b " .. helpers.quote(passwd) ..
                                           " zuser " .. helpers.quote(password))
            assert.is_true(ok, out)
            local mark = #log_of(b)
            assert.is_true(compat.execute("kill -HUP " .. compat.int_text(b.pid)) and b.running())
            assert.is_true(helpers.wait_until(function()
                return log_of(b):find("Reloading config", mark + 1, true) ~= nil
            end), "mosquitto did not reload")
        end

        -- What breconnect_cb reads at each attempt: a credential store that
        -- this test updates, as an application would refresh a token.
        local store = { password = "pw-0" }
        local c = client(nil, true, { reconnect = FAST })
        local trace = {}
        c:on(mqtt.CONNACK, function(_, d) trace[#trace + 1] = "C" .. d.return_code end)
        c:on(mqtt.DISCONNECT, function() trace[#trace + 1] = "D" end)
        c:set_username_pw("zuser", store.password)
        c:connect { host = HOST, port = b.port, keepalive = 30,
                    breconnect_cb = function(cl)
                        trace[#trace + 1] = "B:" .. store.password
                        cl:set_username_pw("zuser", store.password)
                    end }
        c:loop()
        assert.is_true(wait_for(function() return #trace >= 1 end))

        -- The broker changes the password and drops the client; attempts with
        -- the stale password are refused until the store has the new one.
        rotate("pw-1")
        assert.is_true(wait_for(function()
            local refused = 0
            for _, e in ipairs(trace) do if e == "C5" then refused = refused + 1 end end
            return refused >= 2
        end, 5), "no refused attempts: " .. table.concat(trace, " "))
        store.password = "pw-1"
        assert.is_true(wait_for(function() return c:is_connected() end, 5),
                       "not reconnected: " .. table.concat(trace, " "))
        settle(0.1)
        local t = table.concat(trace, " ")
        assert.matches("^C0 D B:pw%-0 C5 B:pw%-0 C5 ", t)
        assert.matches(" B:pw%-1 C0$", t)
        -- Every attempt ran breconnect_cb first and used what it set.
        for i = 3, #trace, 2 do
            local b_, c_ = trace[i], trace[i + 1]
            assert.matches("^B:", b_, nil, false, t)
            assert.equal(b_ == "B:pw-1" and "C0" or "C5", c_, t)
        end

        -- Rotated again with the store updated first: the very next attempt works.
        local n = #trace
        store.password = "pw-2"
        rotate("pw-2")
        assert.is_true(wait_for(function() return #trace >= n + 3 and c:is_connected() end, 5),
                       table.concat(trace, " "))
        settle(0.1)
        assert.same({ "D", "B:pw-2", "C0" }, { compat.unpack(trace, n + 1) })
        assert.equal(2, c:stats().reconnects)
        local log = log_of(b)
        assert.equal(3, count(log, "as " .. c:client_id() .. " (p2, c1, k30, u'zuser')"))
        b.stop()
    end)

    it("stopping and restarting the broker 20 times under 10,000 QoS 1 and 10,000 QoS 2 " ..
       "messages: QoS 1 at least once, QoS 2 exactly once, in order, both clients end " ..
       "connected by themselves", function()
        local N, RESTARTS = 10000, 20
        -- Persistence on: mosquitto saves its sessions (queued and in-flight
        -- QoS 1/2) when stopped with SIGTERM. A SIGKILLed mosquitto would lose
        -- what it acknowledged since its last autosave, which no client can help.
        local b = helpers.start_broker({ persistence = true, extra = BROKER_EXTRA })
        local p = new_proxy(b.port)     -- the subscriber's link (see quiesce below)
        local base = topic_base("restart")
        local sub = client(helpers.unique("zfsub"), false, { reconnect = FAST })
        local pub = client(helpers.unique("zfpub"), false, { reconnect = FAST, max_queued = 500 })
        local sub_link, pub_link = watch_link(sub), watch_link(pub)
        local got = {}
        sub:connect(HOST, 5, p.port)
        sub:loop(function(_, d) got[#got + 1] = d.message.payload end)
        assert.same({ 2 }, subscribe(sub, base .. "/#", 2))
        pub:connect(HOST, 5, b.port)
        pub:loop()

        -- mosquitto 2.0 restores a QoS 2 message whose PUBREL it had sent as
        -- one to PUBLISH again (a protocol violation a client cannot undo):
        -- hold the subscriber's PUBRECs (so no new PUBREL starts) until the
        -- broker has read every PUBREC forwarded and has every PUBCOMP back.
        -- Messages to the subscriber stay in flight in every other state.
        local sub_id = sub:client_id()
        local log_mark = 0
        local function quiet()
            local log = log_from(b, log_mark)
            local start = 1
            local needle = "as " .. sub_id .. " "
            local i = log:find(needle, 1, true)
            while i do
                start = i
                i = log:find(needle, i + 1, true)
            end
            local tail = log:sub(start)
            local fwd = p:packets("up")
            return fwd.live
                and count(tail, "Received PUBREC from " .. sub_id .. " (") == (fwd.PUBREC or 0)
                and count(tail, "Sending PUBREL to " .. sub_id .. " (") ==
                    count(tail, "Received PUBCOMP from " .. sub_id .. " (")
        end

        -- The run is paced by the restarts: restart k comes once the publisher
        -- has handed over k/20 of 80 % of the messages and the subscriber has
        -- received all but LAG of those; the publisher may not run more than
        -- AHEAD messages past the next restart's mark. So both are mid-stream
        -- at every restart, the last one included.
        local AHEAD, LAG = 3000, 2000
        local function mark_of(k) return idiv(k * 8 * 2 * N, 10 * RESTARTS) end
        local state = { next = 1 }
        local restarts, busy = 0, 0
        local function published()
            return (state.next - 1) * 2 + (state.qos == 2 and 1 or 0)
        end
        local function feed(extra)
            local gate = restarts < RESTARTS and mark_of(restarts + 1) + AHEAD or 2 * N
            local room = gate + (extra or 0) - published()
            if room > 0 then publish_some(pub, base, state, N, room) end
        end
        local distinct, seen, scanned = 0, {}, 0
        local t0 = now()
        while true do
            feed()
            mqtt.dispatch(0.005)
            for k = scanned + 1, #got do
                if not seen[got[k]] then
                    seen[got[k]] = true
                    distinct = distinct + 1
                end
            end
            scanned = #got
            local mark = mark_of(restarts + 1)
            if restarts < RESTARTS and published() >= mark and distinct >= mark - LAG
               and sub:is_connected() and pub:is_connected() then
                p:drop("PUBREC", "up")
                assert.is_true(helpers.wait_until(quiet, 10, function()
                    feed()                        -- the publisher goes on meanwhile
                    mqtt.dispatch(0.005)
                end), "the broker kept a PUBREL outstanding")
                -- A few just handed over, past the pacing gate: in flight at the stop
                -- (more, should a busy machine let the first ones be acked already).
                local st = pub:stats()
                for _ = 1, 50 do
                    if st.inflight + st.queued > 0 or published() >= 2 * N then break end
                    publish_some(pub, base, state, N, 20)
                    st = pub:stats()
                end
                if st.inflight + st.queued > 0 and distinct < 2 * N then busy = busy + 1 end
                log_mark = select(2, log_from(b, math.huge))
                b.stop()
                p:drop(nil, "up")
                settle(0.05)             -- a few reconnect attempts fail meanwhile
                b.restart()
                restarts = restarts + 1
            end
            if restarts == RESTARTS and distinct >= 2 * N then break end
            assert.is_true(now() - t0 < 120, ("timed out: %d restarts, %d published, %d of %d " ..
                           "distinct received"):format(restarts, published(), distinct, 2 * N))
        end
        assert.is_true(wait_for(function()
            local st = pub:stats()
            return st.queued == 0 and st.inflight == 0
        end, 10), "the publisher still holds messages")
        settle(0.5)

        assert.equal(RESTARTS, restarts)
        -- Every restart hit a publisher with messages in flight or queued, and
        -- a subscriber with messages still to come.
        assert.equal(RESTARTS, busy)
        assert.is_true((state.full or 0) > 0, "publish never reported a full queue")
        local dups = assert_delivery(got, N)
        assert.equal(2 * N + dups, #got)
        for _, c in ipairs({ pub, sub }) do
            assert.is_true(c:is_connected(), c:client_id() .. " is " .. c:state())
            assert.equal(RESTARTS, c:stats().reconnects)
        end
        for _, link in ipairs({ pub_link, sub_link }) do
            assert.equal(RESTARTS, #link.disconnects)
            local ok = 0
            for _, d in ipairs(link.connacks) do
                if d.return_code == 0 then
                    ok = ok + 1
                    if ok > 1 then assert.is_true(d.session_present) end
                end
            end
            assert.equal(RESTARTS + 1, ok)
        end
        b.stop()
    end)
end)
