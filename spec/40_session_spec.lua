-- spec/40_session_spec.lua: what outlives a connection: the will, persistent
-- sessions, automatic reconnection across a broker restart (with nothing
-- lost), breconnect_cb refreshing credentials, and TCP keepalive options that
-- survive a reconnect.

local helpers = require("helpers")
local mqtt = require("mqtt")

local HOST = helpers.HOST
local FAST = { reconnect = { min = 0.05, max = 0.2 } }

local wait_for = helpers.wait_dispatch

local function log_of(b)
    return helpers.read_file(b.log_file) or ""
end

local function pattern(s)
    return (s:gsub("%p", "%%%0"))
end

-- Runs a child Lua (helpers.LUA) that connects with a will, reports "connected" and
-- SIGKILLs itself: the connection ends without DISCONNECT. Returns the
-- child's exit code and output.
local function run_killed_child(port, id, will)
    local script = ([[
        local mqtt = require("mqtt")
        local c = mqtt.Client(%q)
        c:set_will(%q, %s, %d, %s)
        c:connect("127.0.0.1", 60, %d)
        c:loop()
        io.stdout:write("connected\n")
        io.stdout:flush()
        local pid = io.open("/proc/self/stat"):read("*a"):match("^(%%d+)")
        os.execute("kill -KILL " .. pid)
        io.stdout:write("still alive\n")
    ]]):format(id, will.topic, will.payload == nil and "nil" or ("%q"):format(will.payload),
               will.qos, tostring(will.retain), port)
    local _, code, out = helpers.run_lua(script, 15)
    return code, out
end

-- The TCP keepalive timer of our connection to port, in seconds, from ss;
-- nil when the socket has no keepalive timer; raises when there is no socket.
local function keepalive_timer(port)
    local ok, _, out = helpers.run("ss -tno state established '( dport = :" .. port .. " )'")
    assert(ok, "ss failed: " .. out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do
        if line:find(":" .. port, 1, true) then lines[#lines + 1] = line end
    end
    assert(#lines == 1, "expected one connection to port " .. port .. ", ss says:\n" .. out)
    local t = lines[1]:match("timer:%(keepalive,([^,]+),")
    if not t then return nil end
    local secs = 0
    for n, unit in t:gmatch("(%d+)(%a+)") do
        local mult = ({ min = 60, sec = 1, ms = 0.001, h = 3600 })[unit]
        assert(mult, "unknown unit in " .. t)
        secs = secs + tonumber(n) * mult
    end
    return secs
end

describe("session", function()
    local broker, clients = helpers.with_broker(nil, "zs")

    -- A connected client collecting every message through loop(on_message),
    -- subscribed to filter (the SUBACK received).
    local function watcher(b, filter, qos)
        local c = clients:new(nil, true, FAST)
        c:connect(HOST, 60, b.port)
        return c, (helpers.watch(c, filter, qos or 1))
    end

    describe("will", function()
        it("is delivered when the client's process dies without DISCONNECT", function()
            local topic = "will/" .. helpers.unique("w")
            local _, got = watcher(broker, topic, 1)
            local id = helpers.unique("zwill")
            local code, out = run_killed_child(broker.port, id,
                { topic = topic, payload = "gone \0 for good", qos = 1, retain = false })
            assert.equal(137, code, out)
            assert.matches("connected", out)
            assert.is_nil(out:find("still alive", 1, true))
            assert.is_true(wait_for(function() return #got == 1 end))
            assert.equal(topic, got[1].topic)
            assert.equal("gone \0 for good", got[1].payload)
            assert.equal(1, got[1].qos)
            assert.is_false(got[1].retain)
            mqtt.sleep(0.1)
            assert.equal(1, #got)
        end)

        it("with an EMPTY payload is accepted by the broker and delivered", function()
            local topic = "will/" .. helpers.unique("empty")
            local _, got = watcher(broker, topic, 2)
            local id = helpers.unique("zwill")
            local code, out = run_killed_child(broker.port, id,
                { topic = topic, payload = "", qos = 2, retain = false })
            assert.equal(137, code, out)
            assert.matches("connected", out)
            assert.is_true(wait_for(function() return #got == 1 end),
                           "no will; broker log:\n" .. log_of(broker):sub(-2000))
            assert.equal(topic, got[1].topic)
            assert.equal("", got[1].payload)
            assert.equal(2, got[1].qos)
        end)

        it("with a nil payload sends an empty one", function()
            local topic = "will/" .. helpers.unique("nil")
            local _, got = watcher(broker, topic, 1)
            local code, out = run_killed_child(broker.port, helpers.unique("zwill"),
                { topic = topic, payload = nil, qos = 0, retain = false })
            assert.equal(137, code, out)
            assert.is_true(wait_for(function() return #got == 1 end))
            assert.equal("", got[1].payload)
        end)

        it("keeps its retain flag: a later subscriber gets it as retained", function()
            local topic = "will/" .. helpers.unique("ret")
            local code, out = run_killed_child(broker.port, helpers.unique("zwill"),
                { topic = topic, payload = "retained will", qos = 1, retain = true })
            assert.equal(137, code, out)
            local _, got = watcher(broker, topic, 1)
            assert.is_true(wait_for(function() return #got == 1 end))
            assert.equal("retained will", got[1].payload)
            assert.is_true(got[1].retain)
            helpers.mosquitto_pub(broker, { topic = topic, message = "", retain = true })
        end)

        it("is NOT delivered after a clean disconnect()", function()
            local topic = "will/" .. helpers.unique("clean")
            local _, got = watcher(broker, topic, 1)
            local c = clients:new(nil, true, FAST)
            c:set_will(topic, "should not appear", 1, false)
            c:connect(HOST, 60, broker.port)
            c:loop()
            c:disconnect()
            assert.is_true(wait_for(function()
                return log_of(broker):find("Client " .. c:client_id() .. " disconnected.", 1, true)
            end), "the broker did not see a DISCONNECT")
            -- A probe published after the disconnect arrives after any will would.
            local ok = helpers.mosquitto_pub(broker, { topic = topic, message = "probe", qos = 1 })
            assert.is_true(ok)
            assert.is_true(wait_for(function() return #got >= 1 end))
            mqtt.sleep(0.1)
            assert.equal(1, #got)
            assert.equal("probe", got[1].payload)
        end)
    end)

    describe("persistent session (clean_session = false)", function()
        it("gets the messages published while offline, and session_present", function()
            local id = helpers.unique("zpersist")
            local topic = "persist/" .. helpers.unique("t")
            local c = clients:new(id, false, FAST)
            local acks = {}
            c:on(mqtt.CONNACK, function(_, d) acks[#acks + 1] = d end)
            c:connect(HOST, 60, broker.port)
            helpers.subscribe_wait(c, topic, 1)
            assert.equal(1, #acks)
            assert.is_false(acks[1].session_present)
            c:disconnect()
            assert.is_false(c:is_connected())

            for i = 1, 5 do
                local ok, _, out = helpers.mosquitto_pub(broker, { topic = topic,
                                                                  message = "offline " .. i, qos = 1 })
                assert.is_true(ok, out)
            end

            local got = {}
            c:loop(function(_, d) got[#got + 1] = d.message end)
            c:connect(HOST, 60, broker.port)
            assert.is_true(wait_for(function() return #got >= 5 and #acks >= 2 end))
            assert.equal(2, #acks)
            assert.equal(0, acks[2].return_code)
            assert.is_true(acks[2].session_present)
            for i = 1, 5 do
                assert.equal("offline " .. i, got[i].payload)
                assert.equal(1, got[i].qos)
            end
            mqtt.sleep(0.1)
            assert.equal(5, #got)
        end)

        it("has session_present false with clean_session = true", function()
            local id = helpers.unique("zclean")
            local c = clients:new(id, true)
            local acks = {}
            c:on(mqtt.CONNACK, function(_, d) acks[#acks + 1] = d end)
            c:connect(HOST, 60, broker.port)
            c:disconnect()
            c:connect(HOST, 60, broker.port)
            assert.is_true(wait_for(function() return #acks == 2 end))
            assert.is_false(acks[1].session_present)
            assert.is_false(acks[2].session_present)
        end)
    end)

    it("reconnects by itself after a broker restart and loses no QoS 1/2 message", function()
        local b = helpers.start_broker({ persistence = true })
        local topic = "restart/" .. helpers.unique("t")

        -- The subscriber keeps a persistent session, which the broker saves on SIGTERM.
        local sub = clients:new(helpers.unique("zsub"), false, FAST)
        sub:connect(HOST, 60, b.port)
        local got = helpers.watch(sub, topic, 2)

        local pub = clients:new(nil, true, FAST)
        local events = {}
        pub:on(mqtt.CONNACK, function(_, d)
            events[#events + 1] = { "CONNACK", d.return_code, d.error }
        end)
        pub:on(mqtt.DISCONNECT, function(_, d) events[#events + 1] = { "DISCONNECT", d.error } end)
        pub:connect(HOST, 60, b.port)
        pub:loop()
        assert.is_true(wait_for(function() return #events == 1 end))
        assert.equal("CONNACK", events[1][1])

        b.stop()
        assert.is_true(wait_for(function() return #events >= 2 end), "no DISCONNECT event")
        assert.equal("DISCONNECT", events[2][1])
        assert.is_true(mqtt.is_error(events[2][2], mqtt.MQTTConnectionError))
        assert.is_false(pub:is_connected())
        assert.equal("reconnecting", pub:state())

        local N = 10
        for i = 1, N do
            pub:publish(topic, "q1 " .. i, 1)
            pub:publish(topic, "q2 " .. i, 2)
        end
        -- Let a few reconnect attempts fail while the broker is down.
        mqtt.sleep(0.3)
        assert.is_false(pub:is_connected())

        b.restart()
        assert.is_true(wait_for(function() return pub:is_connected() end), "pub did not reconnect")
        assert.is_true(wait_for(function() return sub:is_connected() end), "sub did not reconnect")
        assert.is_true(wait_for(function() return #got >= 2 * N end, 10),
                       ("got %d of %d messages"):format(#got, 2 * N))
        mqtt.sleep(0.2)

        -- Events: DISCONNECT, then failed attempts, then one successful CONNACK.
        local last = events[#events]
        assert.equal("CONNACK", last[1])
        assert.equal(0, last[2])
        assert.is_nil(last[3])
        for i = 3, #events - 1 do
            assert.equal("CONNACK", events[i][1])
            assert.are_not.equal(0, events[i][2])
            assert.is_true(mqtt.is_error(events[i][3], mqtt.MQTTConnectionError))
        end
        assert.equal(1, pub:stats().reconnects)

        local q1, q2 = {}, {}
        for _, m in ipairs(got) do
            local set = m.payload:match("^q1 ") and q1 or q2
            set[m.payload] = (set[m.payload] or 0) + 1
        end
        for i = 1, N do
            assert.is_true((q1["q1 " .. i] or 0) >= 1, "lost QoS 1 message " .. i)
            assert.equal(1, q2["q2 " .. i], "QoS 2 message " .. i .. " delivered " ..
                         tostring(q2["q2 " .. i] or 0) .. " times")
        end
        -- Every message ends acknowledged: nothing stays queued or in flight.
        assert.is_true(wait_for(function()
            local st = pub:stats()
            return st.queued == 0 and st.inflight == 0
        end), "still queued/in flight: " .. pub:stats().queued .. "/" .. pub:stats().inflight)
        b.stop()
    end)

    it("runs breconnect_cb before each automatic reconnect; set_username_pw in it takes effect",
       function()
        local b = helpers.start_broker({ users = { alice = "old" } })
        local c = clients:new(nil, true, FAST)
        local trace = {}
        c:on(mqtt.CONNACK, function(_, d) trace[#trace + 1] = "C" .. d.return_code end)
        c:on(mqtt.DISCONNECT, function() trace[#trace + 1] = "D" end)
        c:set_username_pw("alice", "old")
        local before_calls, connected_in_cb, after_calls = 0, false, 0
        c:connect { host = HOST, port = b.port, keepalive = 60,
                    aconnect_cb = function() after_calls = after_calls + 1 end,
                    breconnect_cb = function(cl)
                        assert.equal(c, cl)
                        before_calls = before_calls + 1
                        connected_in_cb = connected_in_cb or cl:is_connected()
                        trace[#trace + 1] = "B"
                        cl:set_username_pw("bob", "new")
                    end }
        c:loop()
        assert.is_true(wait_for(function() return #trace == 1 end))
        assert.same({ "C0" }, trace)
        assert.equal(0, before_calls)   -- not for the first, explicit connect
        assert.equal(1, after_calls)

        b.stop()
        assert.is_true(wait_for(function() return trace[2] == "D" end))
        -- Only the new credentials are accepted from now on.
        local passwd = b.dir .. "/passwd"
        helpers.write_file(passwd, "")
        local ok, _, out = helpers.run("mosquitto_passwd -b " .. helpers.quote(passwd) .. " bob new")
        assert.is_true(ok, out)
        mqtt.sleep(0.2)   -- some attempts fail while the broker is down
        b.restart()
        assert.is_true(wait_for(function() return c:is_connected() end),
                       "did not reconnect; trace: " .. table.concat(trace, " "))
        mqtt.sleep(0.05)
        assert.is_false(connected_in_cb)
        assert.truthy(log_of(b):find("as " .. pattern(c:client_id()) .. " %([^)]*u'bob'%)"),
                      "the broker never saw bob")
        -- After the loss: B B ... B C0, each attempt preceded by its breconnect_cb;
        -- attempts that got no CONNACK fire no CONNACK event, they are counted.
        assert.equal("D", trace[2])
        local rest = table.concat(trace, " ", 3)
        assert.equal("C0", trace[#trace], rest)
        assert.equal("B", trace[#trace - 1], rest)
        local attempts = 0
        for i = 3, #trace - 1 do
            assert.matches("^[BC]", trace[i], nil, false, rest)
            if trace[i] == "B" then attempts = attempts + 1 end
        end
        assert.is_true(before_calls >= 1)
        assert.equal(attempts, before_calls)
        assert.equal(before_calls - 1, c:stats().connect_failures)
        -- aconnect_cb runs after each successful connect, the automatic one included.
        assert.equal(2, after_calls)
        b.stop()
    end)

    it("applies sock_keepalive {count, idle, interval} on connect and after a reconnect",
       function()
        local b = helpers.start_broker()
        -- Without sock_keepalive there is no keepalive timer: the check tells them apart.
        local plain = clients:new()
        plain:connect(HOST, 60, b.port)
        assert.is_nil(keepalive_timer(b.port))
        plain:close()
        assert.is_true(helpers.wait_until(function()
            local _, _, out = helpers.run("ss -tn state established '( dport = :" .. b.port .. " )'")
            return not out:find(":" .. b.port, 1, true)
        end))

        local c = clients:new(nil, true, FAST)
        local acks = 0
        c:on(mqtt.CONNACK, function(_, d) if d.return_code == 0 then acks = acks + 1 end end)
        c:connect { host = HOST, port = b.port, keepalive = 60, sock_keepalive = { 4, 77, 11 } }
        c:loop()
        local t = keepalive_timer(b.port)
        assert.is_not_nil(t, "no TCP keepalive timer on the first connection")
        assert.is_true(t > 60 and t <= 77, "keepalive timer " .. tostring(t) .. " s, idle is 77 s")

        b.kill()
        b.restart()
        assert.is_true(wait_for(function() return acks >= 2 and c:is_connected() end),
                       "did not reconnect")
        local t2 = keepalive_timer(b.port)
        assert.is_not_nil(t2, "no TCP keepalive timer after the reconnect")
        assert.is_true(t2 > 60 and t2 <= 77, "keepalive timer " .. tostring(t2) .. " s after reconnect")
        b.stop()
    end)
end)
