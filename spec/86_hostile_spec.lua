-- spec/86_hostile_spec.lua: brokers that try to exhaust the client's memory or
-- hold a dead connection open (scripted fake broker). Whatever a broker sends,
-- what the client holds for the application stays within max_event_bytes plus
-- one packet, what it owes a broker that does not read stays within
-- max_queued.bytes, and the client ends in a clear state: connected with
-- reading paused, or lost with a named error. Bounds are asserted on the
-- library's own counters, and on RSS where no sanitizer inflates memory.

local helpers = require("helpers")
local mqtt = require("mqtt")
local FB = require("fake_broker")
local compat = require("compat")

local HOST = helpers.HOST
local now = helpers.now
local u16 = compat.u16
local MiB = 1024 * 1024
-- What one read batch may hold past a bound: 4 reads of 64 KiB.
local READ_SLACK = 256 * 1024
-- Allocator slack and the fake broker's own buffers, in this same process.
local RSS_SLACK = 8 * MiB

local function wait_for(pred, timeout)
    return helpers.wait_dispatch(pred, timeout, 0.01)
end

-- Sends what next_packet() makes, never blocking longer than `slice`
-- seconds per pump(): the socket takes what it can, the rest waits.
-- next_packet() returns nil when there is nothing more to send.
local function flooder(fb, next_packet)
    local f = { pending = "", made = 0, done = false }
    function f.pump(slice)
        if #f.pending < 64 * 1024 and not f.done then
            local parts = { f.pending }
            local size = #f.pending
            while size < 64 * 1024 do
                local p = next_packet()
                if not p then
                    f.done = true
                    break
                end
                parts[#parts + 1] = p
                size = size + #p
                f.made = f.made + 1
            end
            f.pending = table.concat(parts)
        end
        if f.pending == "" then return true end
        local ok, err, sent = fb:send(f.pending, slice or 0.01)
        if ok then
            f.pending = ""
        elseif err == "timeout" then
            f.pending = f.pending:sub(sent + 1)
        else
            error("flood: " .. tostring(err))
        end
        return f.done and f.pending == ""
    end
    return f
end

-- Runs step() for `seconds` without dispatching, sampling the client's
-- counters and this process's RSS; returns the peaks.
local function without_dispatch(c, seconds, step)
    local peak = { event_bytes = 0, queued_bytes = 0, rss = 0, samples = 0 }
    local t0 = now()
    while now() - t0 < seconds do
        if step then step() else helpers.sleep(0.01) end
        local st = c:stats()
        peak.event_bytes = math.max(peak.event_bytes, st.event_bytes)
        peak.queued_bytes = math.max(peak.queued_bytes, st.queued_bytes)
        collectgarbage("collect") -- the flood's own strings are not the client's memory
        peak.rss = math.max(peak.rss, helpers.rss())
        peak.samples = peak.samples + 1
    end
    return peak
end

local function assert_rss(rss0, peak, bound, what)
    if helpers.memory_instrumented() then return end
    local growth = peak - rss0
    assert.is_true(growth <= bound + RSS_SLACK,
                   ("%s: RSS grew by %.1f MiB, bound %.1f MiB + %.0f MiB"):format(
                       what, growth / MiB, bound / MiB, RSS_SLACK / MiB))
end

describe("hostile brokers (fake broker)", function()
    local clients = helpers.clients("zhost")
    local brokers = helpers.fake_brokers()
    helpers.close_after_each(clients, brokers)

    local function connected_client(opts, keepalive)
        return helpers.fake_connected(clients, brokers, true, opts, { keepalive = keepalive })
    end

    -- A client that owes the broker at most `bound` bytes, and a broker that
    -- reads (almost) nothing and floods it with `ack` packets for unknown ids;
    -- returns the client, its events, the flooder and the RSS before.
    local function owed_flood(ack, bound)
        local c, fb, rec = connected_client({ max_queued = { messages = 100, bytes = bound } }, 2)
        fb.client:setoption("recv-buffer-size", 4096)
        local chunk = {}
        for id = 1, 16384 do chunk[id] = ack(id) end
        chunk = table.concat(chunk)
        collectgarbage("collect")
        return c, rec, flooder(fb, function() return chunk end), helpers.rss(), fb
    end

    it("a QoS 2 flood of 1 MB messages and never a PUBREL: memory stays within " ..
       "max_event_bytes + one packet, reading pauses, every message is delivered once", function()
        local BOUND, SIZE, N = 8 * MiB, MiB, 40
        local c, fb, rec = connected_client({ max_event_bytes = BOUND })
        local got, seen = {}, {}
        c:on(mqtt.PUBREL, function(_, d)
            local id = tonumber(d.message.payload:sub(1, 6))
            assert.is_nil(seen[id], "delivered twice: " .. id)
            seen[id] = true
            got[#got + 1] = id
        end)
        collectgarbage("collect")
        local rss0 = helpers.rss()
        local body = string.rep("q", SIZE - 6)
        local i = 0
        local f = flooder(fb, function()
            if i == N then return nil end
            i = i + 1
            return FB.publish { topic = "flood/q2", qos = 2, packet_id = i,
                                payload = ("%06d"):format(i) .. body }
        end)
        local peak = without_dispatch(c, 2, function() f.pump(0.02) end)
        local st = c:stats()
        assert.is_true(c:is_connected(), "the client should be connected with reading paused")
        assert.is_true(st.read_pauses > 0, "reading never paused")
        assert.is_true(f.made < N or f.pending ~= "", "the whole flood went in: nothing held it back")
        assert.is_true(peak.event_bytes <= BOUND + SIZE + 4096,
                       ("held %d bytes for the application, bound %d"):format(peak.event_bytes, BOUND))
        assert_rss(rss0, peak.rss, BOUND + SIZE + READ_SLACK, "QoS 2 flood")
        -- Dispatching makes room; the rest of the flood gets in, each message once.
        assert.is_true(helpers.wait_until(function()
            f.pump(0.01)
            mqtt.dispatch(0.01)
            return #got == N
        end, 30), ("%d of %d messages delivered"):format(#got, N))
        -- Their PUBRELs come late: PUBCOMP each, deliver nothing again.
        for id = 1, N do fb:send(FB.pubrel(id)) end
        local acks = { PUBREC = 0, PUBCOMP = 0 }
        while acks.PUBCOMP < N do
            local p = assert(fb:read_packet())
            assert.is_not_nil(acks[p.name], "unexpected " .. FB.describe(p))
            acks[p.name] = acks[p.name] + 1
            assert.is_true(p.packet_id >= 1 and p.packet_id <= N)
        end
        assert.same({ PUBREC = N, PUBCOMP = N }, acks)
        mqtt.dispatch(0.2)
        assert.equal(N, #got)
        assert.equal(0, c:stats().held_bytes)
        assert.equal(0, #rec.disconnects)
    end)

    it("a PUBREL flood while the broker never reads: the owed PUBCOMPs stay within " ..
       "max_queued.bytes, publish raises 'queue full', the stalled link is lost by name", function()
        local BOUND = 64 * 1024
        local c, rec, f, rss0 = owed_flood(FB.pubrel, BOUND)
        local full
        local peak = without_dispatch(c, 6, function()
            if #rec.disconnects == 0 then
                pcall(f.pump, 0.01)
            else
                helpers.sleep(0.01)
            end
            -- Once the client owes the bound, publish refuses (a few may get in
            -- while the writer still drains into the socket).
            if not full and c:stats().queued_bytes >= BOUND then
                local ok, err = pcall(c.publish, c, "x", string.rep("p", 100))
                if not ok then full = err.name end
            end
            if c:stats().read_pauses > 0 and c:state() ~= "connected" then
                mqtt.dispatch(0)
            end
        end)
        assert.is_true(peak.queued_bytes >= BOUND, "the owed replies never reached the bound")
        assert.is_true(peak.queued_bytes <= BOUND + 104,
                       ("owed %d bytes, bound %d"):format(peak.queued_bytes, BOUND))
        assert.equal("queue full", full)
        assert_rss(rss0, peak.rss, BOUND, "PUBREL flood")
        assert.is_true(wait_for(function() return #rec.disconnects >= 1 end, 5))
        local err = rec.disconnects[1].error
        assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
        assert.equal("keepalive timeout", err.name)
        assert.matches("read nothing", err.message)
        assert.equal(0, c:stats().queued_bytes)
    end)

    it("a PUBREC flood while the application does not dispatch: the owed PUBRELs stay " ..
       "bounded and the memory is given back once the connection is lost", function()
        local BOUND = 256 * 1024
        local c, rec, f, rss0, fb = owed_flood(FB.pubrec, BOUND)
        local peak = without_dispatch(c, 6, function()
            if c:is_connected() then pcall(f.pump, 0.01) else helpers.sleep(0.01) end
        end)
        assert.is_true(peak.queued_bytes <= BOUND + 4,
                       ("owed %d bytes, bound %d"):format(peak.queued_bytes, BOUND))
        assert_rss(rss0, peak.rss, BOUND, "PUBREC flood")
        assert.is_true(wait_for(function() return #rec.disconnects >= 1 end, 5))
        assert.equal("keepalive timeout", rec.disconnects[1].error.name)
        local st = c:stats()
        assert.equal(0, st.queued_bytes)
        assert.equal(0, st.event_bytes)
        fb:close_client()
        collectgarbage("collect")
        if not helpers.memory_instrumented() then
            assert.is_true(helpers.rss() - rss0 < RSS_SLACK,
                           ("%.1f MiB still held after the loss"):format((helpers.rss() - rss0) / MiB))
        end
    end)

    it("a flood of tiny messages: the events held stay within max_event_bytes plus one " ..
       "packet (each is checked before it is decoded); nothing is lost", function()
        local BOUND = MiB
        local c, fb = connected_client({ max_event_bytes = BOUND })
        local got, bad = 0, nil
        c:on(mqtt.PUBLISH, function(_, d)
            got = got + 1
            if not bad and d.message.payload ~= u16(got % 65536) then
                bad = ("message %d out of order"):format(got)
            end
        end)
        collectgarbage("collect")
        local rss0 = helpers.rss()
        local n = 0
        local f = flooder(fb, function()
            n = n + 1
            return FB.publish { topic = "t/tiny", payload = u16(n % 65536) } -- 12 bytes
        end)
        local peak = without_dispatch(c, 2, function() f.pump(0.02) end)
        assert.is_true(c:stats().read_pauses > 0, "reading never paused")
        assert.is_true(peak.event_bytes <= BOUND + 512,
                       ("held %d bytes of events, bound %d"):format(peak.event_bytes, BOUND))
        assert_rss(rss0, peak.rss, BOUND + READ_SLACK, "tiny flood")
        -- Stop making more, send what was made, dispatch everything.
        f.done = true
        assert.is_true(helpers.wait_until(function()
            local sent = f.pump(0.01)
            mqtt.dispatch(0.01)
            return sent and got == f.made
        end, 30), ("%d of %d messages"):format(got, f.made))
        assert.is_nil(bad)
        assert.is_true(c:is_connected())
    end)

    it("a packet trickled one byte at a time is lost after 1.5 x keepalive, though bytes " ..
       "keep coming", function()
        local c, fb, rec = connected_client(nil, 1)
        -- A PUBLISH announcing 256 MB, then one byte every 0.2 s.
        fb:send("\48" .. FB.encode_length(256 * MiB - 1))
        local t0 = now()
        local lost = helpers.wait_until(function()
            fb:send("a", 0.5)
            mqtt.dispatch(0.2)
            return #rec.disconnects > 0
        end, 5)
        local took = now() - t0
        assert.is_true(lost, "a trickling broker held the connection open")
        local err = rec.disconnects[1].error
        assert.equal("keepalive timeout", err.name)
        assert.matches("packet took longer", err.message)
        assert.is_true(took >= 1.2 and took < 3, ("lost after %.2f s, keepalive 1 s"):format(took))
        assert.is_false(c:is_connected())
    end)

    describe("maximum_packet_size", function()
        it("a larger incoming packet ends the connection with MQTTProtocolError " ..
           "'packet too large', judged from its header alone", function()
            local c, fb, rec = connected_client({ maximum_packet_size = 1024 })
            fb:send(FB.publish { topic = "fits", payload = string.rep("x", 1000) })
            assert.is_true(wait_for(function()
                return c:stats().event_bytes == 0 and #rec.disconnects == 0
            end))
            fb:send("\48" .. FB.encode_length(2000) .. u16(3) .. "big")  -- no body follows
            assert.is_true(wait_for(function() return #rec.disconnects > 0 end, 3))
            local err = rec.disconnects[1].error
            assert.is_true(mqtt.is_error(err, mqtt.MQTTProtocolError), tostring(err))
            assert.equal("packet too large", err.name)
            assert.is_false(c:is_connected())
        end)

        it("counts the fixed header: a packet of exactly the limit is accepted", function()
            local c, fb, rec = connected_client({ maximum_packet_size = 100 })
            local got = {}
            c:on(mqtt.PUBLISH, function(_, d) got[#got + 1] = d.message.payload end)
            -- 2 bytes of fixed header + 2 + 3 (topic) + 93 = 100
            fb:send(FB.publish { topic = "a/b", payload = string.rep("y", 93) })
            fb:send(FB.publish { topic = "a/b", payload = string.rep("z", 94) })
            assert.is_true(wait_for(function() return #rec.disconnects > 0 end, 3))
            assert.same({ string.rep("y", 93) }, got)
            assert.equal("packet too large", rec.disconnects[1].error.name)
        end)

        it("rejects values that are not a size", function()
            for _, v in ipairs({ 0, 1, -5, 1.5, "big", 2 ^ 40 }) do
                local ok, err = pcall(mqtt.Client, "x", true, { maximum_packet_size = v })
                assert.is_false(ok)
                assert.equal("invalid argument", err.name)
                assert.matches("maximum_packet_size", err.message)
            end
        end)

        it("buffers grown for a 64 MB message are given back once it is dispatched", function()
            -- Under a sanitizer RSS is not asserted: a smaller message shows the
            -- same delivery without a sanitizer's minutes of copying.
            local SIZE = helpers.memory_instrumented() and 8 * MiB or 64 * MiB
            local c, fb = connected_client()
            local got
            c:on(mqtt.PUBLISH, function(_, d) got = #d.message.payload end)
            -- The packet is made before the baseline and sent from offsets, so
            -- that this process's own strings do not count as the client's.
            local pkt = FB.publish { topic = "big", payload = string.rep("b", SIZE) }
            collectgarbage("collect")
            local rss0 = helpers.rss()
            local sent = 0
            fb.client:settimeout(0.05)
            assert.is_true(helpers.wait_until(function()
                if sent < #pkt then
                    local last, _, partial = fb.client:send(pkt, sent + 1)
                    sent = last or partial or sent
                end
                mqtt.dispatch(0.01)
                return got ~= nil
            end, 120))
            assert.equal(SIZE, got)
            collectgarbage("collect")
            collectgarbage("collect")
            -- One more small message: the input buffer shrinks after it.
            fb:send(FB.publish { topic = "small", payload = "s" })
            assert.is_true(wait_for(function() return got == 1 end))
            collectgarbage("collect")
            if not helpers.memory_instrumented() then
                local held = helpers.rss() - rss0
                assert.is_true(held < 16 * MiB,
                               ("%.1f MiB still held after a 64 MiB message"):format(held / MiB))
            end
        end)
    end)

    it("refused reconnects while nobody dispatches: counted in stats().connect_failures, " ..
       "no event piles up", function()
        local BOUND = 4096
        local fb = brokers:new()
        local port = fb.port
        local c = clients:new(nil, true, { max_event_bytes = BOUND,
                                           reconnect = { min = 0.005, max = 0.01 } })
        c:connect_async { host = HOST, port = port, keepalive = 30 }
        c:loop()
        fb:handshake()
        fb:close()                     -- nothing listens there any more: refused at once
        local peak = without_dispatch(c, 2)
        local st = c:stats()
        assert.is_true(st.connect_failures >= 50, st.connect_failures .. " attempts")
        assert.is_true(peak.event_bytes <= 1024,
                       ("%d bytes of events for %d refused attempts"):format(peak.event_bytes,
                                                                             st.connect_failures))
    end)

    it("a reconnect storm while nobody dispatches: connection events stay within " ..
       "max_event_bytes, attempts wait for room and resume once dispatched", function()
        local BOUND = 4096
        local fb = brokers:new { timeout = 0.2 }
        local c = clients:new(nil, true, { max_event_bytes = BOUND,
                                           reconnect = { min = 0.01, max = 0.02 } })
        local events = 0
        c:on(mqtt.CONNACK, function() events = events + 1 end)
        c:on(mqtt.DISCONNECT, function() events = events + 1 end)
        c:connect_async { host = HOST, port = fb.port, keepalive = 30 }
        c:loop()
        -- Accept, CONNACK, drop at once: over and over, with nobody dispatching.
        local function serve(seconds)
            local t0 = now()
            while now() - t0 < seconds do
                if pcall(fb.handshake, fb, { timeout = 0.02 }) then fb:close_client() end
            end
        end
        local peak = without_dispatch(c, 2, function() serve(0.05) end)
        assert.is_true(peak.event_bytes <= BOUND + 512,
                       ("%d bytes of connection events, bound %d"):format(peak.event_bytes, BOUND))
        local held = fb.accepted
        serve(0.5)
        assert.is_true(fb.accepted - held <= 1, "attempts went on with no room for their events")
        -- Dispatching makes room: the attempts resume.
        assert.is_true(helpers.wait_until(function()
            serve(0.05)
            mqtt.dispatch(0)
            return fb.accepted >= held + 5
        end, 5), "attempts did not resume")
        assert.is_true(events > 0)
    end)
end)
