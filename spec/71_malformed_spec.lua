-- spec/71_malformed_spec.lua: a broker that sends garbage. The client must
-- close the connection, make the error visible to Lua (a DISCONNECT event,
-- or for the connect phase a CONNACK event, whose data.error is an
-- mqtt.MQTTProtocolError; is_connected() false), never crash or hang, and
-- reconnect afterwards when loop() is on. Also: CONNACK refusals 1..5 for a
-- blocking connect() (the fake broker runs in a child process, since connect()
-- blocks this thread), a broker that closes or stays silent before CONNACK,
-- and a packet arriving one byte at a time.

local helpers = require("helpers")
local mqtt = require("mqtt")
local FB = require("fake_broker")
local compat = require("compat")

local FAST = { reconnect = { min = 0.05, max = 0.2 } }
local HOST = helpers.HOST
local now = helpers.now

local function wait_for(pred, timeout)
    return helpers.wait_dispatch(pred, timeout, 0.01)
end

local u16 = compat.u16    -- string.pack(">I2", n)

-- A raw PUBLISH: first byte and body as given (no checks at all).
local function raw_publish(first, topic, id, payload)
    return FB.packet(first, u16(#topic) .. topic .. (id and u16(id) or "") .. (payload or ""))
end

-- Garbage sent on an established connection. setup(c, fb), when given, runs
-- first and returns the bytes (to make everything but the defect valid) and
-- what must be resent after the reconnect: {type, packet id, ack to send}.
local ESTABLISHED = {
    { "a remaining length with 5 continuation bytes", "\48\255\255\255\255\255\1" },
    { "a remaining length with 5 continuation bytes on a PINGRESP", "\208\128\128\128\128\128\0" },
    { "a PUBLISH whose topic length runs past the packet", "\48\5\0\16abc" },
    { "a PUBLISH whose topic length runs past a QoS 1 packet",
      FB.packet(0x32, u16(200) .. "abc" .. u16(1)) },
    { "reserved packet type 0x00", "\0\0" },
    { "reserved packet type 0xF0", "\240\0" },
    { "a CONNECT sent to the client", FB.connect { client_id = "evil" } },
    { "a SUBSCRIBE sent to the client", FB.subscribe(1, { { "a/b", 0 } }) },
    { "an UNSUBSCRIBE sent to the client", FB.unsubscribe(1, { "a/b" }) },
    { "a PINGREQ sent to the client", FB.pingreq() },
    { "a DISCONNECT sent to the client", FB.disconnect() },
    { "a PUBACK with flags 0x02", function(c, fb)
        local mid = c:publish("flags/puback", "x", 1)
        assert.are.equal(mid, fb:expect(FB.PUBLISH).packet_id)
        return FB.packet(0x42, u16(mid)), { FB.PUBLISH, mid, FB.puback(mid) }
    end },
    { "a PUBREL with flags 0x00", function(_, fb)
        fb:send(FB.publish { topic = "flags/pubrel", payload = "x", qos = 2, packet_id = 9 })
        fb:expect(FB.PUBREC)
        return FB.packet(0x60, u16(9))
    end },
    { "a QoS 3 PUBLISH (0x36)", raw_publish(0x36, "q/3", 5, "x") },
    { "a QoS 0 PUBLISH with DUP set (0x38)", raw_publish(0x38, "q/0", nil, "x") },
    { "a PUBLISH with '+' in the topic", FB.publish { topic = "a/+/c", payload = "x" } },
    { "a PUBLISH with '#' in the topic", FB.publish { topic = "a/#", payload = "x", qos = 1,
                                                      packet_id = 3 } },
    { "a PUBLISH with an empty topic", FB.publish { topic = "", payload = "x" } },
    { "a PUBLISH with an invalid UTF-8 topic", FB.publish { topic = "a/\255\254", payload = "x" } },
    { "a PUBLISH with a truncated UTF-8 sequence in the topic",
      FB.publish { topic = "a/\195", payload = "x" } },
    { "a PUBLISH with an encoded surrogate (U+D800) in the topic",
      FB.publish { topic = "a/\237\160\128", payload = "x" } },
    { "a PUBLISH with U+0000 in the topic", FB.publish { topic = "a\0b", payload = "x" } },
    { "packet id 0 in a QoS 1 PUBLISH", raw_publish(0x32, "id/0", 0, "x") },
    { "packet id 0 in a QoS 2 PUBLISH", raw_publish(0x34, "id/0", 0, "x") },
    { "a PUBACK with remaining length 3", function(c, fb)
        local mid = c:publish("len/puback", "x", 1)
        assert.are.equal(mid, fb:expect(FB.PUBLISH).packet_id)
        return FB.packet(0x40, u16(mid) .. "\0"), { FB.PUBLISH, mid, FB.puback(mid) }
    end },
    { "a PINGRESP with a body", "\208\1\0" },
    { "a SUBACK with return code 0x03", function(c, fb)
        local mid = c:subscribe("suback/3", 1)
        assert.are.equal(mid, fb:expect(FB.SUBSCRIBE).packet_id)
        return FB.suback(mid, { 3 }), { FB.SUBSCRIBE, mid, FB.suback(mid, { 1 }) }
    end },
    { "a second CONNACK after connect", FB.connack(false, 0) },
}

-- Garbage sent instead of the CONNACK.
local CONNECT_PHASE = {
    { "a CONNACK with return code 6", FB.packet(0x20, "\0\6") },
    { "a CONNACK with reserved flag bits", FB.packet(0x20, "\2\0") },
    { "a CONNACK with flags 0x01 in its first byte", FB.packet(0x21, "\0\0") },
    { "a CONNACK with remaining length 3", FB.packet(0x20, "\0\0\0") },
    { "a PUBLISH before CONNACK", FB.publish { topic = "early", payload = "x" } },
    { "reserved packet type 0xF0 before CONNACK", "\240\0" },
    -- The client asked for a clean session (MQTT-3.2.2-1).
    { "a CONNACK claiming a session for a clean session", FB.packet(0x20, "\1\0") },
}

local REFUSALS = {
    [1] = "unacceptable protocol version", [2] = "identifier rejected",
    [3] = "server unavailable", [4] = "bad user name or password", [5] = "not authorized",
}

-- Starts a fake broker in a child Lua (helpers.LUA) that answers one CONNECT with
-- CONNACK(rc) and waits for the close. Returns the pipe and the port.
local function child_broker(rc)
    local script = ([[
        local FB = require("fake_broker")
        local fb = FB.new { timeout = 10 }
        io.stdout:write(fb.port, "\n")
        io.stdout:flush()
        local ok, c = pcall(fb.handshake, fb, { return_code = %d })
        io.stdout:write(ok and ("connect " .. c.client_id .. "\n") or ("no connect " .. tostring(c) .. "\n"))
        ok = pcall(fb.expect_closed, fb, 5)
        io.stdout:write(ok and "closed\n" or "not closed\n")
        fb:close()
    ]]):format(rc)
    local cmd = helpers.child_env() .. " exec timeout -k 1 20 " .. helpers.LUA .. " -e " ..
                helpers.quote(script)
    -- CLOSE_FDS: the child must not inherit descriptors > 2 (luasocket sockets
    -- are not close-on-exec), as with helpers.run.
    local p = assert(io.popen("bash -c " .. helpers.quote(helpers.CLOSE_FDS .. cmd) ..
                              " </dev/null 2>&1", "r"))
    local line = compat.read_line(p)
    local port = tonumber(line)
    if not port then
        local rest = compat.read_all(p)
        p:close()
        error("child fake broker did not start: " .. tostring(line) .. "\n" .. tostring(rest))
    end
    return p, port
end

describe("malformed input (fake broker)", function()
    local clients, brokers = helpers.clients("zm", FAST), helpers.fake_brokers({ timeout = 3 })
    helpers.close_after_each(clients, brokers)

    -- A client whose events are recorded in rec (helpers.record_events) and
    -- pubacks (the mids of PUBACK events).
    local function new_client(opts)
        local c = clients:new(nil, true, opts)
        local rec = helpers.record_events(c)
        rec.pubacks = {}
        c:on(mqtt.PUBACK, function(_, d) rec.pubacks[#rec.pubacks + 1] = d.mid end)
        return c, rec
    end

    local function assert_protocol_error(err, what)
        assert.is_not_nil(err, what .. ": no data.error")
        assert.is_true(mqtt.is_error(err, mqtt.MQTTProtocolError),
                       what .. ": not an MQTTProtocolError: " .. tostring(err))
        assert.is_true(mqtt.is_error(err, mqtt.MQTTError))
        assert.is_string(tostring(err))
    end

    -- After a reconnect the connection works: a valid QoS 1 PUBLISH is
    -- delivered intact and acknowledged (nothing of the garbage is left over).
    local function assert_works(c, rec, fb)
        local before = #rec.messages
        fb:send(FB.publish { topic = "after/ok", payload = "fine", qos = 1, packet_id = 77 })
        assert.are.equal(FB.puback(77), fb:expect(FB.PUBACK, 3).raw)
        assert.is_true(wait_for(function() return #rec.messages == before + 1 end))
        assert.are.equal("fine", rec.messages[#rec.messages].payload)
        assert.is_true(c:is_connected())
    end

    describe("on an established connection", function()
        for _, case in ipairs(ESTABLISHED) do
            local name, bytes = case[1], case[2]
            it("closes the connection on " .. name .. ", reports it and reconnects", function()
                local fb = brokers:new()
                local c, rec = new_client()
                c:loop()
                c:connect_async { host = fb.host, port = fb.port, keepalive = 60 }
                fb:handshake()
                assert.is_true(wait_for(function() return #rec.connacks == 1 end))
                assert.is_true(c:is_connected())
                local resent
                if type(bytes) == "function" then
                    bytes, resent = bytes(c, fb)
                end
                assert(fb:send(bytes))
                fb:expect_closed(3)
                assert.is_true(wait_for(function() return #rec.disconnects == 1 end),
                               "no DISCONNECT event")
                assert_protocol_error(rec.disconnects[1].error, name)
                assert.is_false(c:is_connected())
                assert.are.equal(0, #rec.messages, "a malformed message was delivered")
                -- loop() is on: the client comes back, and the new connection works.
                fb:handshake()
                assert.is_true(wait_for(function() return #rec.connacks == 2 end), "no reconnect")
                assert.are.equal(0, rec.connacks[2].return_code)
                if resent then
                    -- What the garbage pretended to acknowledge is still owed.
                    local p = fb:expect(resent[1])
                    assert.are.equal(resent[2], p.packet_id)
                    assert(fb:send(resent[3]))
                end
                assert_works(c, rec, fb)
            end)
        end
    end)

    describe("instead of CONNACK", function()
        for _, case in ipairs(CONNECT_PHASE) do
            local name, bytes = case[1], case[2]
            it("fails the attempt on " .. name .. ", reports it and retries", function()
                local fb = brokers:new()
                local c, rec = new_client()
                c:loop()
                c:connect_async { host = fb.host, port = fb.port, keepalive = 60 }
                fb:handshake { connack = false }
                assert(fb:send(bytes))
                fb:expect_closed(3)
                assert.is_true(wait_for(function() return #rec.connacks == 1 end),
                               "no CONNACK event")
                assert_protocol_error(rec.connacks[1].error, name)
                assert.is_false(c:is_connected())
                assert.are.equal(0, #rec.messages)
                fb:handshake()
                assert.is_true(wait_for(function() return #rec.connacks == 2 end), "no retry")
                assert.is_nil(rec.connacks[2].error)
                assert.are.equal(0, rec.connacks[2].return_code)
                assert_works(c, rec, fb)
            end)
        end

        it("reports a broker that closes the connection before CONNACK, and retries", function()
            local fb = brokers:new()
            local c, rec = new_client()
            c:loop()
            c:connect_async { host = fb.host, port = fb.port, keepalive = 60 }
            fb:handshake { connack = false }
            fb:close_client()
            assert.is_true(wait_for(function() return #rec.connacks == 1 end), "no CONNACK event")
            local err = rec.connacks[1].error
            assert.is_not_nil(err)
            assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
            assert.is_false(c:is_connected())
            fb:handshake()
            assert.is_true(wait_for(function() return #rec.connacks == 2 end), "no retry")
            assert.is_nil(rec.connacks[2].error)
            assert_works(c, rec, fb)
        end)

        it("honours connect_timeout against a broker that accepts TCP and never answers", function()
            local fb = brokers:new()
            local c, rec = new_client { connect_timeout = 0.5, reconnect = FAST.reconnect }
            c:loop()
            local t0 = now()
            c:connect_async { host = fb.host, port = fb.port, keepalive = 60 }
            fb:handshake { connack = false }
            assert.is_true(wait_for(function() return #rec.connacks == 1 end, 3), "no CONNACK event")
            local elapsed = now() - t0
            assert.is_true(elapsed > 0.4 and elapsed < 1.2, "timed out after " .. elapsed .. " s")
            local err = rec.connacks[1].error
            assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
            assert.are.equal("timeout", err.name)
            fb:expect_closed(1)
            fb:handshake()
            assert.is_true(wait_for(function() return #rec.connacks == 2 end), "no retry")
            assert_works(c, rec, fb)

            -- A blocking connect() is bounded the same way (the kernel completes
            -- the TCP handshake from the listen backlog; nobody ever answers).
            local fb2 = brokers:new()
            local c2 = new_client { connect_timeout = 0.5, reconnect = false }
            t0 = now()
            local ok, err2 = pcall(c2.connect, c2, HOST, 60, fb2.port)
            elapsed = now() - t0
            assert.is_false(ok)
            assert.is_true(mqtt.is_error(err2, mqtt.MQTTConnectionError), tostring(err2))
            assert.are.equal("timeout", err2.name)
            assert.is_true(elapsed > 0.4 and elapsed < 1.2, "connect() took " .. elapsed .. " s")
            assert.is_false(c2:is_connected())
        end)
    end)

    describe("CONNACK refusals", function()
        for rc = 1, 5 do
            it(("code %d raises MQTTConnectionError %q from a blocking connect()"):format(rc, REFUSALS[rc]),
               function()
                local c = new_client { reconnect = false }
                local pipe, port = child_broker(rc)
                local ok, err = pcall(c.connect, c, HOST, 60, port)
                local out = compat.read_all(pipe)
                pipe:close()
                assert.is_false(ok, "connect() returned although refused")
                assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
                assert.are.equal(rc, err.code)
                assert.are.equal(REFUSALS[rc], err.name)
                assert.matches(REFUSALS[rc], tostring(err), 1, true)
                assert.is_false(c:is_connected())
                assert.matches("connect " .. c:client_id(), out, 1, true)
                assert.matches("closed", out, 1, true)

                -- The same refusal from connect_async: a CONNACK event with the error.
                local fb = brokers:new()
                local c2, rec = new_client { reconnect = false }
                c2:connect_async { host = fb.host, port = fb.port, keepalive = 60 }
                fb:handshake { return_code = rc }
                assert.is_true(wait_for(function() return #rec.connacks == 1 end))
                local d = rec.connacks[1]
                assert.are.equal(rc, d.return_code)
                assert.is_true(mqtt.is_error(d.error, mqtt.MQTTConnectionError), tostring(d.error))
                assert.are.equal(rc, d.error.code)
                assert.are.equal(REFUSALS[rc], d.error.name)
                assert.is_false(c2:is_connected())
            end)
        end
    end)

    it("decodes a PUBLISH that arrives one byte at a time", function()
        local fb = brokers:new()
        local c, rec = new_client()
        c:connect_async { host = fb.host, port = fb.port, keepalive = 60 }
        fb:handshake()
        assert.is_true(wait_for(function() return c:is_connected() end))
        local payload = ("\0\1\2\255split"):rep(20)     -- 180 bytes: a 2-byte remaining length
        local bytes = FB.publish { topic = "split/t", payload = payload, qos = 1, packet_id = 300 }
        assert.is_true(#bytes > 130)
        for i = 1, #bytes do
            assert(fb:send(bytes:sub(i, i)))
            helpers.sleep(0.002)
        end
        assert.are.equal(FB.puback(300), fb:expect(FB.PUBACK, 3).raw)
        -- Two packets in one send, and one split across sends, decode too.
        local second = FB.publish { topic = "split/u", payload = "two" }
        local third = FB.publish { topic = "split/v", payload = "three", qos = 1, packet_id = 301 }
        assert(fb:send(second .. third:sub(1, 5)))
        helpers.sleep(0.05)
        assert(fb:send(third:sub(6)))
        assert.are.equal(FB.puback(301), fb:expect(FB.PUBACK, 3).raw)
        assert.is_true(wait_for(function() return #rec.messages == 3 end))
        local m = rec.messages[1]
        assert.are.equal("split/t", m.topic)
        assert.is_true(m.payload == payload, "payload differs")
        assert.are.equal(1, m.qos)
        assert.are.equal(300, m.mid)
        assert.are.equal("two", rec.messages[2].payload)
        assert.are.equal("three", rec.messages[3].payload)
        assert.are.equal(0, #rec.disconnects)
        assert.is_true(c:is_connected())
    end)
end)
