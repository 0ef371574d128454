-- spec/00_helpers_spec.lua: proves the test infrastructure before anything
-- relies on it: private mosquitto brokers (start, stop, kill, restart, password
-- file), the mosquitto_pub/mosquitto_sub wrappers, wait_until, and the fake
-- broker's encoder and decoder (checked by hand-made bytes and by mosquitto).

local helpers = require("helpers")
local FakeBroker = require("fake_broker")
local socket = require("socket")
local compat = require("compat")

local str16, idiv, bor = compat.str16, compat.idiv, compat.bor

-- A raw luasocket client of 127.0.0.1:port.
local function raw_client(port)
    local c = assert(socket.tcp())
    c:settimeout(2)
    assert(c:connect("127.0.0.1", port))
    return c
end

-- Sends `data` to `sock` while reading packets on `fb`, in the one thread:
-- neither side may block on the other. Returns the first packet read.
local function send_while_reading(sock, data, fb, chunk)
    chunk = chunk or 8192
    local sent = 0
    sock:settimeout(0)
    local deadline = socket.gettime() + 10
    while socket.gettime() < deadline do
        if sent < #data then
            local last, _, partial = sock:send(data, sent + 1, math.min(#data, sent + chunk))
            sent = last or partial or sent
        end
        local p, err = fb:read_packet(0.001)
        if p then
            return p, sent
        end
        assert(err == "timeout", err)
    end
    error("no packet after sending " .. sent .. " of " .. #data .. " bytes")
end

describe("helpers", function()
    teardown(helpers.stop_all)

    it("free_port hands out distinct bindable ports", function()
        local a, b = helpers.free_port(), helpers.free_port()
        assert.is_number(a)
        assert.are_not.equal(a, b)
        assert.is_true(helpers.port_bindable(a))
    end)

    describe("wait_until", function()
        it("returns true as soon as the predicate holds, calling step_fn between polls",
           function()
            local steps = 0
            local ok = helpers.wait_until(function() return steps >= 3 end, 1,
                                          function() steps = steps + 1 end)
            assert.is_true(ok)
            assert.are.equal(3, steps)
        end)

        it("returns false after the timeout", function()
            local t0 = helpers.now()
            assert.is_false(helpers.wait_until(function() return false end, 0.1))
            local elapsed = helpers.now() - t0
            assert.is_true(elapsed >= 0.1 and elapsed < 1, "elapsed " .. elapsed)
        end)
    end)

    describe("a private broker", function()
        local broker

        setup(function()
            broker = helpers.start_broker({ persistence = true })
        end)

        it("runs mosquitto on 127.0.0.1 and accepts connections", function()
            assert.are.equal("127.0.0.1", broker.host)
            assert.is_true(broker.running())
            assert.is_true(helpers.port_open(broker.port))
            local cmdline = helpers.read_file("/proc/" .. broker.pid .. "/cmdline")
            assert.truthy(cmdline:find("mosquitto", 1, true))
            assert.truthy(cmdline:find(broker.conf, 1, true))
            local c = raw_client(broker.port)
            c:close()
        end)

        it("carries a mosquitto_pub -> mosquitto_sub roundtrip, binary and empty payloads",
           function()
            local sub = helpers.mosquitto_sub_collect(broker, { topic = "zmqtt/rt/#", qos = 2,
                                                                count = 3 })
            assert(helpers.mosquitto_pub(broker, { topic = "zmqtt/rt/a", message = "hello",
                                                   qos = 1 }))
            assert(helpers.mosquitto_pub(broker, { topic = "zmqtt/rt/b", qos = 2,
                                                   message = "bin\0ary\255" }))
            assert(helpers.mosquitto_pub(broker, { topic = "zmqtt/rt/c", message = "" }))
            local msgs, finished = sub.wait(5)
            assert.is_true(finished)
            -- Order across QoS levels is not guaranteed (QoS 2 completes later).
            table.sort(msgs, function(x, y) return x.topic < y.topic end)
            for _, m in ipairs(msgs) do
                m.mid = nil
            end
            assert.are.same({
                { topic = "zmqtt/rt/a", payload = "hello", qos = 1, retain = false },
                { topic = "zmqtt/rt/b", payload = "bin\0ary\255", qos = 2, retain = false },
                { topic = "zmqtt/rt/c", payload = "", qos = 0, retain = false },
            }, msgs)
        end)

        it("stop() ends the process by PID and closes the port", function()
            local pid = broker.pid
            assert.is_true(broker.stop())
            assert.is_false(broker.running())
            assert.is_false(helpers.pid_alive(pid))
            assert.is_false(helpers.port_open(broker.port))
        end)

        it("restart() comes back on the same port with the same config", function()
            local port = broker.port
            broker.restart()
            assert.are.equal(port, broker.port)
            assert.is_true(helpers.port_open(port))
            -- persistence (from the config) keeps a retained message over a stop.
            assert(helpers.mosquitto_pub(broker, { topic = "zmqtt/keep", message = "kept",
                                                   retain = true, qos = 1 }))
            broker.restart()
            local sub = helpers.mosquitto_sub_collect(broker, { topic = "zmqtt/keep",
                                                                count = 1 })
            local msgs = sub.wait(5)
            assert.are.equal(1, #msgs)
            assert.are.equal("kept", msgs[1].payload)
            assert.is_true(msgs[1].retain)
        end)

        it("kill() is an abnormal loss (SIGKILL), and restart() works after it", function()
            local c = raw_client(broker.port)
            assert(c:send(FakeBroker.connect({ client_id = "victim" })))
            local peer = FakeBroker.wrap(c)
            assert.are.equal(0, peer:expect("CONNACK").return_code)
            assert.is_true(broker.kill())
            assert.is_false(broker.running())
            local p, err = peer:read_packet(2)
            assert.is_nil(p)
            assert.are.equal("closed", err)
            c:close()
            broker.restart()
            assert.is_true(helpers.port_open(broker.port))
        end)
    end)

    describe("a broker with a password file", function()
        local broker

        setup(function()
            broker = helpers.start_broker({ users = { alice = "s3cret", bob = "pw 2" } })
        end)

        it("accepts the right password", function()
            local ok, code, out = helpers.mosquitto_pub(broker, {
                topic = "t", message = "x", username = "bob", password = "pw 2" })
            assert.is_true(ok, out)
            assert.are.equal(0, code)
        end)

        it("refuses a wrong password and anonymous clients", function()
            local ok, code, out = helpers.mosquitto_pub(broker, {
                topic = "t", message = "x", username = "alice", password = "wrong" })
            assert.is_false(ok)
            assert.are_not.equal(0, code)
            assert.truthy(out:find("not authori", 1, true), out)
            ok = helpers.mosquitto_pub(broker, { topic = "t", message = "x" })
            assert.is_false(ok)
        end)

        it("answers CONNACK 5 (not authorized) to a raw client with a wrong password",
           function()
            local c = raw_client(broker.port)
            assert(c:send(FakeBroker.connect({ client_id = "raw", username = "alice",
                                               password = "nope" })))
            local connack = FakeBroker.wrap(c):expect("CONNACK")
            c:close()
            assert.are.equal(5, connack.return_code)
        end)
    end)

    it("start_broker() raises with mosquitto's log when the config is bad", function()
        local ok, err = pcall(helpers.start_broker, { extra = "no_such_option 1" })
        assert.is_false(ok)
        assert.truthy(tostring(err):find("no_such_option", 1, true), err)
    end)

    it("stop_all() stops every broker by PID", function()
        local a, b = helpers.start_broker(), helpers.start_broker()
        local pa, pb = a.pid, b.pid
        helpers.stop_all()
        assert.is_false(helpers.pid_alive(pa))
        assert.is_false(helpers.pid_alive(pb))
        assert.is_false(helpers.port_open(a.port))
    end)
end)

describe("fake broker", function()
    local fb

    before_each(function()
        fb = FakeBroker.new({ timeout = 2 })
    end)

    after_each(function()
        fb:close()
    end)

    describe("builders", function()
        it("produce the exact bytes of the MQTT 3.1.1 specification", function()
            assert.are.equal("\32\2\0\0", FakeBroker.connack(false, 0))
            assert.are.equal("\32\2\1\5", FakeBroker.connack(true, 5))
            assert.are.equal("\64\2\0\10", FakeBroker.puback(10))
            assert.are.equal("\80\2\1\2", FakeBroker.pubrec(0x0102))
            assert.are.equal("\98\2\255\255", FakeBroker.pubrel(65535))
            assert.are.equal("\112\2\0\1", FakeBroker.pubcomp(1))
            assert.are.equal("\144\5\0\7\0\1\128", FakeBroker.suback(7, { 0, 1, 0x80 }))
            assert.are.equal("\176\2\0\9", FakeBroker.unsuback(9))
            assert.are.equal("\208\0", FakeBroker.pingresp())
            assert.are.equal("\192\0", FakeBroker.pingreq())
            assert.are.equal("\224\0", FakeBroker.disconnect())
            assert.are.equal("\48\5\0\1ahi", FakeBroker.publish({ topic = "a", payload = "hi" }))
            assert.are.equal("\61\7\0\1a\0\3hi",  -- 0x3D: DUP, QoS 2, RETAIN
                             FakeBroker.publish({ topic = "a", payload = "hi", qos = 2,
                                                  dup = true, retain = true, packet_id = 3 }))
            assert.are.equal("\130\8\0\1\0\3a/b\1",
                             FakeBroker.subscribe(1, { { "a/b", 1 } }))
            assert.are.equal("\162\5\0\2\0\1x", FakeBroker.unsubscribe(2, { "x" }))
            assert.are.equal("\16\12\0\4MQTT\4\2\0\60\0\0", FakeBroker.connect())
        end)

        it("encode the remaining length at every boundary", function()
            local cases = {
                [0] = "\0", [127] = "\127", [128] = "\128\1", [16383] = "\255\127",
                [16384] = "\128\128\1", [2097151] = "\255\255\127",
                [2097152] = "\128\128\128\1", [268435455] = "\255\255\255\127",
            }
            for n, bytes in pairs(cases) do
                assert.are.equal(bytes, FakeBroker.encode_length(n), "length " .. n)
            end
            assert.has_error(function() FakeBroker.encode_length(268435456) end)
        end)

        it("round-trip through decode", function()
            local p = assert(FakeBroker.decode(FakeBroker.suback(7, { 0, 1, 0x80 })))
            assert.are.same({ 0, 1, 0x80 }, p.codes)
            p = assert(FakeBroker.decode(FakeBroker.connack(true, 0)))
            assert.is_true(p.session_present)
            local big = string.rep("z", 20000)
            local bytes = FakeBroker.publish({ topic = "t", payload = big, qos = 1,
                                               packet_id = 9 })
            local pub, after = FakeBroker.decode(bytes .. "\208\0")
            assert.are.equal(big, pub.payload)
            assert.are.equal(9, pub.packet_id)
            assert.are.equal(#bytes + 1, after)
            assert.are.equal("PINGRESP", FakeBroker.decode(bytes .. "\208\0", after).name)
            assert.are.same({ nil, "incomplete" }, { FakeBroker.decode(bytes:sub(1, -2)) })
        end)
    end)

    it("accepts a luasocket client and parses a hand-made CONNECT", function()
        local c = raw_client(fb.port)
        assert(fb:accept())
        local body = str16("MQTT") .. "\4" ..
                     "\238" ..                 -- user, password, will retain, will QoS 1,
                     "\0\30" ..                -- will, clean session; keepalive 30
                     str16("cid-1") ..
                     str16("will/t") .. str16("bye\0") ..
                     str16("user") .. str16("p\0ss")
        assert(c:send("\16" .. string.char(#body) .. body))
        local p = fb:expect(FakeBroker.CONNECT)
        c:close()
        assert.are.equal(0x10, p.type)
        assert.are.equal("MQTT", p.protocol_name)
        assert.are.equal(4, p.protocol_level)
        assert.are.equal(0xEE, p.connect_flags)
        assert.are.equal(30, p.keepalive)
        assert.are.equal("cid-1", p.client_id)
        assert.is_true(p.clean_session)
        assert.is_true(p.will)
        assert.are.equal(1, p.will_qos)
        assert.is_true(p.will_retain)
        assert.are.equal("will/t", p.will_topic)
        assert.are.equal("bye\0", p.will_payload)
        assert.are.equal("user", p.username)
        assert.are.equal("p\0ss", p.password)
        assert.are.equal(body, p.body)
    end)

    it("parses a PUBLISH with a 300-byte topic and a 200 KiB payload arriving in pieces",
       function()
        local c = raw_client(fb.port)
        assert(fb:accept())
        local topic = string.rep("t", 299) .. "/"
        local payload = {}
        for i = 1, 200 * 1024 do
            payload[i] = string.char(i % 256)
        end
        payload = table.concat(payload)
        local body = str16(topic) .. "\1\44" .. payload   -- packet id 300
        local len = #body                  -- 205,102 needs a 3-byte remaining length
        local raw = "\59" ..               -- PUBLISH, DUP, QoS 1, RETAIN
                    string.char(bor(len % 128, 0x80), bor(idiv(len, 128) % 128, 0x80),
                                idiv(len, 16384)) ..
                    body
        local p = send_while_reading(c, raw, fb)
        c:close()
        assert.are.equal(FakeBroker.PUBLISH, p.type)
        assert.are.equal(topic, p.topic)
        assert.are.equal(300, #p.topic)
        assert.are.equal(1, p.qos)
        assert.is_true(p.dup)
        assert.is_true(p.retain)
        assert.are.equal(300, p.packet_id)
        assert.are.equal(#payload, #p.payload)
        assert.is_true(p.payload == payload)
        assert.is_true(p.raw == raw)
    end)

    it("keeps a partial packet across a read timeout", function()
        local c = raw_client(fb.port)
        assert(fb:accept())
        local bytes = FakeBroker.subscribe(5, { { "a/+", 1 }, { "b/#", 2 } })
        assert(c:send(bytes:sub(1, 4)))
        local p, err = fb:read_packet(0.05)
        assert.is_nil(p)
        assert.are.equal("timeout", err)
        assert(c:send(bytes:sub(5)))
        p = fb:expect("SUBSCRIBE")
        assert.are.equal(5, p.packet_id)
        assert.are.same({ "a/+", 1, filter = "a/+", qos = 1 }, p.topics[1])
        assert.are.same({ "b/#", 2, filter = "b/#", qos = 2 }, p.topics[2])
        assert.are.equal(0x2, p.flags)
        c:close()
    end)

    it("decodes every client packet and reports a closed connection", function()
        local c = raw_client(fb.port)
        assert(fb:accept())
        assert(c:send(FakeBroker.unsubscribe(6, { "a", "b/c" }) .. FakeBroker.puback(1) ..
                      FakeBroker.pubrec(2) .. FakeBroker.pubrel(3) .. FakeBroker.pubcomp(4) ..
                      FakeBroker.disconnect()))
        assert.are.same({ "a", "b/c" }, fb:expect("UNSUBSCRIBE").filters)
        assert.are.equal(1, fb:expect("PUBACK").packet_id)
        assert.are.equal(2, fb:expect("PUBREC").packet_id)
        local rel = fb:expect("PUBREL")
        assert.are.equal(3, rel.packet_id)
        assert.are.equal(0x2, rel.flags)
        assert.are.equal(4, fb:expect("PUBCOMP").packet_id)
        c:close()
        local ok, seen = fb:expect_closed()
        assert.is_true(ok)
        assert.are.equal("DISCONNECT", seen[1].name)
        assert.are.same({ nil, "closed" }, { fb:read_packet(0.1) })
    end)

    it("expect() answers and skips PINGREQ, and raises on an unexpected packet", function()
        local c = raw_client(fb.port)
        assert(fb:accept())
        local peer = FakeBroker.wrap(c)
        assert(c:send(FakeBroker.pingreq() .. FakeBroker.publish({ topic = "x" })))
        assert.are.equal("x", fb:expect("PUBLISH").topic)
        assert.are.equal(1, fb.pings)
        assert.are.equal("PINGRESP", peer:expect("PINGRESP").name)
        assert(c:send(FakeBroker.puback(1)))
        assert.has_error(function() fb:expect("PUBREC") end)
        assert.has_error(function() fb:expect("PUBREC", 0.05) end)     -- timeout
        c:close()
    end)

    it("expect_nothing() raises when a packet arrives", function()
        local c = raw_client(fb.port)
        assert(fb:accept())
        assert.is_true(fb:expect_nothing(0.05))
        assert(c:send(FakeBroker.pingreq()))
        assert.is_true(fb:expect_nothing(0.05))
        assert(c:send(FakeBroker.pubrec(1)))
        assert.has_error(function() fb:expect_nothing(0.5) end)
        c:close()
    end)

    it("reports malformed input: a 5-byte remaining length, a reserved type", function()
        local c = raw_client(fb.port)
        assert(fb:accept())
        assert(c:send("\0\0"))
        local p, err = fb:read_packet()
        assert.is_nil(p)
        assert.truthy(err:find("reserved packet type", 1, true))
        assert(c:send("\48\255\255\255\255\1"))
        p, err = fb:read_packet()
        assert.is_nil(p)
        assert.truthy(err:find("longer than 4 bytes", 1, true))
        assert.truthy(select(2, FakeBroker.decode("\64\3\0\1\0")):find("trailing", 1, true))
        assert.truthy(select(2, FakeBroker.decode("\54\3\0\1a")):find("QoS 3", 1, true))
        c:close()
    end)

    it("sends a 200 KiB PUBLISH to its client and can reset a connection", function()
        local c = raw_client(fb.port)
        assert(fb:accept())
        local payload = string.rep("\0\1\2\255", 50 * 1024)
        local bytes = FakeBroker.publish({ topic = "big", payload = payload, qos = 2,
                                           packet_id = 77 })
        local peer = FakeBroker.wrap(c)
        local rest = bytes
        local p
        local deadline = socket.gettime() + 10
        while not p and socket.gettime() < deadline do
            if #rest > 0 then
                local _, _, sent = fb:send(rest, 0.001)
                rest = rest:sub((sent or #rest) + 1)
            end
            p = peer:read_packet(0.001)
        end
        assert.are.equal(payload, p and p.payload)
        assert.are.equal(77, p.packet_id)
        fb:close_client({ reset = true })
        local q, err = peer:read_packet(1)
        assert.is_nil(q)
        assert.truthy(err == "closed" or err:find("reset", 1, true), err)
        c:close()
    end)

    it("handshake() accepts, reads CONNECT and answers CONNACK", function()
        local c = raw_client(fb.port)
        assert(c:send(FakeBroker.connect({ client_id = "hs", keepalive = 5,
                                           clean_session = false })))
        local connect = fb:handshake({ session_present = true })
        assert.are.equal("hs", connect.client_id)
        assert.is_false(connect.clean_session)
        local connack = FakeBroker.wrap(c):expect("CONNACK")
        assert.is_true(connack.session_present)
        assert.are.equal(0, connack.return_code)
        c:close()
    end)

    it("speaks the same protocol as mosquitto (builders and decoder cross-checked)",
       function()
        local broker = helpers.start_broker()
        finally(function() broker.stop() end)
        local peer = FakeBroker.wrap(raw_client(broker.port))
        assert(peer:send(FakeBroker.connect({ client_id = "xcheck", keepalive = 10,
                                              will = { topic = "w", payload = "gone" } })))
        assert.are.equal(0, peer:expect("CONNACK").return_code)
        assert(peer:send(FakeBroker.subscribe(1, { { "x/#", 2 }, { "y", 1 } })))
        assert.are.same({ 2, 1 }, peer:expect("SUBACK").codes)
        local payload = string.rep("\0\255", 100 * 1024)
        assert(helpers.mosquitto_pub(broker, { topic = "x/y", message = payload, qos = 1 }))
        local pub = peer:expect("PUBLISH")
        assert.are.equal("x/y", pub.topic)
        assert.are.equal(1, pub.qos)
        assert.is_true(pub.payload == payload)
        assert(peer:send(FakeBroker.puback(pub.packet_id)))
        assert(peer:send(FakeBroker.publish({ topic = "x/z", payload = "q2", qos = 2,
                                              packet_id = 41 })))
        assert.are.equal(41, peer:expect("PUBREC").packet_id)
        assert(peer:send(FakeBroker.pubrel(41)))
        -- PUBCOMP and our own message (subscribed to x/#) come back, in either order
        local got = {}
        for _ = 1, 2 do
            local p = assert(peer:read_packet())
            got[p.name] = p
        end
        assert.are.equal(41, got.PUBCOMP.packet_id)
        local echo = got.PUBLISH
        assert.are.equal("q2", echo.payload)
        assert.are.equal(2, echo.qos)
        assert(peer:send(FakeBroker.pubrec(echo.packet_id)))
        assert.are.equal(echo.packet_id, peer:expect("PUBREL").packet_id)
        assert(peer:send(FakeBroker.pubcomp(echo.packet_id)))
        assert(peer:send(FakeBroker.unsubscribe(2, { "x/#" })))
        assert.are.equal(2, peer:expect("UNSUBACK").packet_id)
        assert(peer:send(FakeBroker.pingreq()))
        peer:expect("PINGRESP")
        assert(peer:send(FakeBroker.disconnect()))
        assert.is_true(peer:expect_closed())
    end)
end)

-- Hex text ("20 03 00") to bytes, for the hand-written MQTT 5.0 packets below.
local function unhex(text)
    return (text:gsub("%s+", ""):gsub("..", function(x)
        return string.char(tonumber(x, 16))
    end))
end

describe("fake broker, MQTT 5.0", function()
    local v5 = FakeBroker.v5
    local fb

    before_each(function()
        fb = FakeBroker.new({ timeout = 2 })
    end)

    after_each(function()
        fb:close()
    end)

    -- Each packet below is written by hand from the MQTT 5.0 specification's
    -- rules (§2.2.2 properties, §3.x packets), independently of the builders.
    local CONNECT = unhex([[10 29  00 04 4d 51 54 54  05  0e  00 3c
        0b  11 00 00 00 78  21 00 05  22 00 03
        00 01 63
        09  03 00 01 74  18 00 00 00 0a
        00 01 77  00 01 78]])
    local CONNACK = unhex("20 11 00 00 0e  21 00 0a  24 01  25 00  26 00 01 61 00 01 62")
    local PUBLISH = unhex([[32 26  00 03 61 2f 62  01 02
        1c  01 01  02 00 00 00 3c  03 00 01 74  23 00 02
        26 00 01 78 00 01 79  26 00 01 78 00 01 7a
        68 69]])
    local SUBSCRIBE = unhex("82 10  00 0a  03 0b c8 01  00 03 61 2f 2b 2d  00 01 62 00")

    it("builds the exact bytes of the MQTT 5.0 specification", function()
        assert.are.equal(CONNECT, v5.connect({
            client_id = "c", keepalive = 60,
            properties = { topic_alias_maximum = 3, session_expiry_interval = 120,
                           receive_maximum = 5 },
            will = { topic = "w", payload = "x", qos = 1,
                     properties = { will_delay_interval = 10, content_type = "t" } } }))
        assert.are.equal(CONNACK, v5.connack({
            properties = { user_property = { { "a", "b" } }, retain_available = false,
                           maximum_qos = 1, receive_maximum = 10 } }))
        assert.are.equal(unhex("20 03 01 84 00"),
                         v5.connack({ session_present = true, reason_code = 0x84 }))
        assert.are.equal(PUBLISH, v5.publish({
            topic = "a/b", payload = "hi", qos = 1, packet_id = 0x0102,
            properties = { user_property = { { "x", "y" }, { "x", "z" } }, topic_alias = 2,
                           content_type = "t", message_expiry_interval = 60,
                           payload_format_indicator = 1 } }))
        assert.are.equal(unhex("30 07 00 00 03 23 00 05 78"),           -- the alias alone
                         v5.publish({ topic = "", payload = "x",
                                      properties = { topic_alias = 5 } }))
        assert.are.equal(unhex("40 02 00 07"), v5.puback(7))
        assert.are.equal(unhex("40 03 00 07 10"),
                         v5.puback({ packet_id = 7, reason_code = 0x10 }))
        assert.are.equal(unhex("40 09 00 07 87 05 1f 00 02 6e 6f"),
                         v5.puback({ packet_id = 7, reason_code = 0x87,
                                     properties = { reason_string = "no" } }))
        assert.are.equal(unhex("50 04 00 07 00 00"), v5.pubrec({ packet_id = 7, full = true }))
        assert.are.equal(unhex("62 02 00 07"), v5.pubrel(7))
        assert.are.equal(unhex("70 03 00 07 92"),
                         v5.pubcomp({ packet_id = 7, reason_code = 0x92 }))
        assert.are.equal(unhex("90 05 00 01 00 01 87"),
                         v5.suback({ packet_id = 1, codes = { 1, 0x87 } }))
        assert.are.equal(unhex("b0 09 00 02 04 1f 00 01 72 00 11"),
                         v5.unsuback({ packet_id = 2, codes = { 0, 0x11 },
                                       properties = { reason_string = "r" } }))
        assert.are.equal(unhex("e0 00"), v5.disconnect())
        assert.are.equal(unhex("e0 01 04"), v5.disconnect({ reason_code = 4 }))
        assert.are.equal(unhex("e0 06 9c 04 1c 00 01 68"),
                         v5.disconnect({ reason_code = 0x9C,
                                         properties = { server_reference = "h" } }))
        assert.are.equal(unhex("f0 0b 18 09 15 00 01 4d 16 00 02 01 02"),
                         v5.auth({ reason_code = 0x18,
                                   properties = { authentication_data = "\1\2",
                                                  authentication_method = "M" } }))
        assert.are.equal(SUBSCRIBE, v5.subscribe({
            packet_id = 10, properties = { subscription_identifier = 200 },
            topics = { { "a/+", { qos = 1, no_local = true, retain_as_published = true,
                                  retain_handling = 2 } }, { "b", 0 } } }))
        assert.are.equal(unhex("a2 0d 00 0b 07 26 00 01 6b 00 01 76 00 01 61"),
                         v5.unsubscribe({ packet_id = 11, filters = { "a" },
                                          properties = { user_property = { k = "v" } } }))
        -- Raw property bytes for hostile cases: with the length added, or as given.
        assert.are.equal(unhex("40 06 00 07 80 02 ff 00"),
                         v5.puback({ packet_id = 7, reason_code = 0x80, prop_bytes = "\255\0" }))
        assert.are.equal(unhex("40 05 00 07 80 09 ff"),
                         v5.puback({ packet_id = 7, reason_code = 0x80, prop_block = "\9\255" }))
        assert.has_error(function() v5.connack({ properties = { no_such_thing = 1 } }) end)
    end)

    it("decodes every MQTT 5.0 packet into its fields and properties", function()
        local c = assert(FakeBroker.decode(CONNECT))           -- CONNECT says its version
        assert.are.equal(5, c.protocol_level)
        assert.is_true(c.clean_start)
        assert.are.same({ session_expiry_interval = 120, receive_maximum = 5,
                          topic_alias_maximum = 3 }, c.properties)
        assert.are.equal(unhex("11 00 00 00 78 21 00 05 22 00 03"), c.prop_bytes)
        assert.are.equal("c", c.client_id)
        assert.are.same({ will_delay_interval = 10, content_type = "t" }, c.will_properties)
        assert.are.equal("w", c.will_topic)
        assert.are.equal("x", c.will_payload)
        assert.are.equal(1, c.will_qos)

        -- Well-formed UTF-8 of 2, 3 and 4 bytes per character passes.
        local utf = assert(FakeBroker.decode(
            unhex("40 10 00 01 80 0c 1f 00 09 c3 a9 e2 82 ac f0 9f 98 80"), 1, 5))
        assert.are.equal("\195\169\226\130\172\240\159\152\128",
                         utf.properties.reason_string)
        local ca = assert(FakeBroker.decode(CONNACK, 1, 5))
        assert.are.same({ receive_maximum = 10, maximum_qos = 1, retain_available = false,
                          user_property = { { "a", "b" } } }, ca.properties)
        assert.are.equal(0, ca.reason_code)

        local p = assert(FakeBroker.decode(PUBLISH, 1, 5))
        assert.are.equal("a/b", p.topic)
        assert.are.equal(0x0102, p.packet_id)
        assert.are.equal("hi", p.payload)
        assert.are.same({ payload_format_indicator = 1, message_expiry_interval = 60,
                          content_type = "t", topic_alias = 2,
                          user_property = { { "x", "y" }, { "x", "z" } } }, p.properties)
        assert.are.equal(28, #p.prop_bytes)
        -- Repeated subscription identifiers in a PUBLISH: a list, in order.
        p = assert(FakeBroker.decode(unhex("30 09 00 01 74 04 0b 01 0b 7f 7a"), 1, 5))
        assert.are.same({ 1, 127 }, p.properties.subscription_identifier)

        local s = assert(FakeBroker.decode(SUBSCRIBE, 1, 5))
        assert.are.equal(200, s.properties.subscription_identifier)
        local t1, t2 = s.topics[1], s.topics[2]
        assert.are.same({ "a/+", 1 }, { t1.filter, t1.qos })
        assert.are.same({ true, true, 2, 0x2D },
                        { t1.no_local, t1.retain_as_published, t1.retain_handling, t1.options })
        assert.are.same({ "b", 0, false, false, 0 },
                        { t2.filter, t2.qos, t2.no_local, t2.retain_as_published,
                          t2.retain_handling })

        local u = assert(FakeBroker.decode(unhex("a2 0d 00 0b 07 26 00 01 6b 00 01 76 00 01 61"),
                                           1, 5))
        assert.are.same({ "a" }, u.filters)
        assert.are.same({ { "k", "v" } }, u.properties.user_property)

        -- Acks, DISCONNECT and AUTH: short forms mean code 0 and no properties.
        local short = assert(FakeBroker.decode(unhex("40 02 00 07"), 1, 5))
        assert.are.same({ 7, 0, {} }, { short.packet_id, short.reason_code, short.properties })
        assert.is_nil(short.prop_bytes)
        local coded = assert(FakeBroker.decode(unhex("50 03 00 07 10"), 1, 5))
        assert.are.same({ 0x10, {} }, { coded.reason_code, coded.properties })
        local full = assert(FakeBroker.decode(unhex("62 09 00 07 92 05 1f 00 02 6e 6f"), 1, 5))
        assert.are.same({ 0x92, { reason_string = "no" } }, { full.reason_code, full.properties })
        local d = assert(FakeBroker.decode(unhex("e0 00"), 1, 5))
        assert.are.same({ "DISCONNECT", 0 }, { d.name, d.reason_code })
        d = assert(FakeBroker.decode(unhex("e0 07 04 05 11 00 00 00 0a"), 1, 5))
        assert.are.same({ 4, { session_expiry_interval = 10 } }, { d.reason_code, d.properties })
        local a = assert(FakeBroker.decode(unhex("f0 0b 18 09 15 00 01 4d 16 00 02 01 02"), 1, 5))
        assert.are.same({ "AUTH", 0x18, { authentication_method = "M",
                                           authentication_data = "\1\2" } },
                        { a.name, a.reason_code, a.properties })
        local sa = assert(FakeBroker.decode(unhex("90 05 00 01 00 01 87"), 1, 5))
        assert.are.same({ 1, 0x87 }, sa.codes)
        local ua = assert(FakeBroker.decode(unhex("b0 09 00 02 04 1f 00 01 72 00 11"), 1, 5))
        assert.are.same({ { 0, 0x11 }, { reason_string = "r" } }, { ua.codes, ua.properties })
        -- Under 3.1.1, AUTH stays a reserved type and acks stay 2 bytes.
        assert.truthy(select(2, FakeBroker.decode(unhex("f0 00"))):find("reserved", 1, true))
        assert.truthy(select(2, FakeBroker.decode(unhex("40 03 00 07 10"))):find("trailing",
                                                                                1, true))
    end)

    it("reports malformed property blocks and forbidden values", function()
        local cases = {
            { "30 06 00 01 74 02 63 00", "unknown property identifier 0x63" },
            { "30 07 00 01 74 03 02 00 00", "truncated" },               -- in the block
            { "30 05 00 01 74 05 00", "truncated" },                     -- length > packet
            { "30 07 00 01 74 03 21 00 01", "receive_maximum is not allowed in PUBLISH" },
            { "30 0a 00 01 74 06 23 00 01 23 00 02", "topic_alias given twice" },
            { "30 07 00 01 74 03 23 00 00", "topic_alias: value 0" },
            { "30 06 00 01 74 02 01 02", "payload_format_indicator: value 2" },
            { "30 06 00 01 74 02 0b 00", "subscription_identifier: value 0" },
            { "30 07 00 01 74 03 0b 80 00", "shortest form" },
            { "82 07 00 01 00 00 01 61 c1", "reserved bits" },
            { "82 07 00 01 00 00 01 61 03", "QoS 3" },
            { "82 07 00 01 00 00 01 61 30", "retain handling 3" },
            { "20 03 02 00 00", "reserved bits" },
            { "40 05 00 01 00 01 63", "unknown property" },
            { "40 08 00 01 80 04 1f 00 01 00", "not valid UTF-8" },        -- U+0000
            { "40 09 00 01 80 05 1f 00 02 c0 80", "not valid UTF-8" },     -- overlong
            { "40 0a 00 01 80 06 1f 00 03 ed a0 80", "not valid UTF-8" },  -- surrogate
            { "40 0a 00 01 80 06 03 00 03 e2 82 ac", "not allowed in PUBACK" },
            { "40 0a 00 01 80 06 26 00 01 61 00 01", "truncated" },       -- pair cut short
        }
        for _, case in ipairs(cases) do
            local p, err = FakeBroker.decode(unhex(case[1]), 1, 5)
            assert.is_nil(p, case[1])
            assert.are.equal("malformed: ", err:sub(1, 11), case[1])
            assert.truthy(err:find(case[2], 1, true), case[1] .. ": " .. err)
        end
    end)

    it("learns the version from each connection's CONNECT and answers in it", function()
        local c = raw_client(fb.port)
        local peer = FakeBroker.wrap(c)
        assert(peer:send(v5.connect({ client_id = "five" })))
        local connect = fb:handshake({ session_present = true, reason_code = 0,
                                       connack_properties = { topic_alias_maximum = 2 } })
        assert.are.equal("five", connect.client_id)
        assert.are.equal(5, fb.version)
        assert.are.equal(5, peer.version)
        local connack = peer:expect("CONNACK")
        assert.are.same({ true, 0, { topic_alias_maximum = 2 } },
                        { connack.session_present, connack.reason_code, connack.properties })
        assert(peer:send(v5.publish({ topic = "", payload = "p", qos = 1, packet_id = 3,
                                      properties = { topic_alias = 1 } }) ..
                         v5.puback({ packet_id = 4, reason_code = 0x10 }) ..
                         v5.auth({ reason_code = 0x19,
                                   properties = { authentication_method = "M" } }) ..
                         v5.disconnect({ reason_code = 4 })))
        local pub = fb:expect("PUBLISH")
        assert.are.same({ "", 1, 3 }, { pub.topic, pub.properties.topic_alias, pub.packet_id })
        assert.are.equal(0x10, fb:expect("PUBACK").reason_code)
        assert.are.equal(0x19, fb:expect("AUTH").reason_code)
        c:close()
        local _, seen = fb:expect_closed()
        assert.are.equal(4, seen[1].reason_code)
        -- The next connection speaks 3.1.1: decoded and answered as such.
        c = raw_client(fb.port)
        peer = FakeBroker.wrap(c)
        assert(peer:send(FakeBroker.connect({ client_id = "four" })))
        fb:handshake({ return_code = 0 })
        assert.are.equal(4, fb.version)
        assert.are.equal("\32\2\0\0", peer:expect("CONNACK").raw)
        assert(c:send("\240\0"))
        local p, err = fb:read_packet()
        assert.is_nil(p)
        assert.truthy(err:find("reserved packet type 0xF0", 1, true))
        assert.has_error(function()
            fb:connack_for({ connack_properties = { receive_maximum = 1 } })
        end)
        -- connack_version = 4: a 3.1.1-only broker's answer to a 5.0 CONNECT.
        fb.version = 5
        assert.are.equal("\32\2\0\1", fb:connack_for({ connack_version = 4, return_code = 1 }))
        c:close()
    end)

    it("speaks MQTT 5.0 with mosquitto, whose options become CONNACK properties", function()
        local broker = helpers.start_broker({
            max_inflight_messages = 7, max_keepalive = 30, max_packet_size = 2000,
            max_qos = 1, retain_available = false, max_topic_alias = 4,
            auto_id_prefix = "zz-", message_size_limit = 100,
        })
        finally(function() broker.stop() end)
        local peer = FakeBroker.wrap(raw_client(broker.port))
        assert(peer:send(v5.connect({ client_id = "", keepalive = 120,
                                      properties = { topic_alias_maximum = 2 } })))
        local connack = peer:expect("CONNACK")
        assert.are.equal(0, connack.reason_code)
        local props = connack.properties
        assert.are.equal(7, props.receive_maximum)
        assert.are.equal(30, props.server_keep_alive)
        assert.are.equal(2000, props.maximum_packet_size)
        assert.are.equal(1, props.maximum_qos)
        assert.is_false(props.retain_available)
        assert.are.equal(4, props.topic_alias_maximum)
        assert.truthy(props.assigned_client_identifier:find("^zz%-"))
        assert(peer:send(v5.subscribe({ packet_id = 1, topics = { { "a/#", 1 } },
                                        properties = { subscription_identifier = 9 } })))
        assert.are.same({ 1 }, peer:expect("SUBACK").codes)
        -- An alias set with the topic, then used alone; the message comes back
        -- (no_local is off) with the subscription identifier.
        assert(peer:send(v5.publish({ topic = "a/b", payload = "1", qos = 1, packet_id = 2,
                                      properties = { topic_alias = 1,
                                                     user_property = { { "k", "v" } } } })))
        local got = {}
        for _ = 1, 2 do
            local p = assert(peer:read_packet())
            got[p.name] = p
        end
        assert.are.same({ 2, 0 }, { got.PUBACK.packet_id, got.PUBACK.reason_code })
        assert.are.equal("a/b", got.PUBLISH.topic)
        assert.are.same({ 9 }, got.PUBLISH.properties.subscription_identifier)
        assert.are.same({ { "k", "v" } }, got.PUBLISH.properties.user_property)
        assert(peer:send(v5.puback(got.PUBLISH.packet_id)))
        -- Over message_size_limit: 2.0.11 refuses with 0x95 "packet too large".
        assert(peer:send(v5.publish({ topic = "", payload = string.rep("x", 150), qos = 1,
                                      packet_id = 3, properties = { topic_alias = 1 } })))
        local refused = peer:expect("PUBACK")
        assert.are.same({ 3, 0x95 }, { refused.packet_id, refused.reason_code })
        assert(peer:send(v5.unsubscribe({ packet_id = 4, filters = { "a/#", "none" } })))
        assert.are.same({ 0, 0x11 }, peer:expect("UNSUBACK").codes)
        assert(peer:send(v5.disconnect()))
        assert.is_true(peer:expect_closed())
    end)
end)

describe("compat (the specs' portability helpers)", function()
    it("does bit operations and integer division on bytes, flags and packet ids", function()
        assert.are.equal(0x80, compat.band(0xEE, 0x80))
        assert.are.equal(0x0E, compat.band(0xEE, 0x0F))
        assert.are.equal(0x3D, compat.bor(0x30, 0x0D))
        assert.are.equal(0xF0, compat.bxor(0xFF, 0x0F))
        assert.are.equal(24, compat.lshift(3, 3))
        assert.are.equal(0x1D, compat.rshift(0xEE, 3))
        assert.are.equal(0xFFFF, compat.rshift(0xFFFFFFFF, 16))
        assert.are.equal(0x80000000, compat.band(0xFFFFFFFF, 0x80000000))
        assert.are.equal(1602, compat.idiv(205102, 128))
        assert.are.equal("integer", compat.math_type(compat.idiv(10, 3)))
        assert.are.equal(3, compat.idiv(10, 3))
    end)

    it("tells integers from other numbers (strictly by subtype on 5.3+)", function()
        assert.are.equal("integer", compat.math_type(3))
        assert.are.equal("integer", compat.math_type(-65536))
        assert.are.equal("float", compat.math_type(2.5))
        assert.are.equal("float", compat.math_type(math.huge))
        assert.is_nil(compat.math_type("3"))
        assert.is_nil(compat.math_type(nil))
        assert.is_true(compat.is_integer(0))
        assert.is_false(compat.is_integer(0.5))
        if rawget(math, "type") then   -- 5.3+
            assert.are.equal("float", compat.math_type(3.0))
        else
            assert.are.equal("integer", compat.math_type(3.0))   -- all numbers are doubles
        end
        assert.are.equal("3", compat.int_text(3))
    end)

    it("packs and reads big-endian u16 and u16-prefixed strings as string.pack does", function()
        assert.are.equal("\1\2", compat.u16(0x0102))
        assert.are.equal("\0\0", compat.u16(0))
        assert.are.equal("\255\255", compat.u16(65535))
        assert.are.equal("\0\4MQTT", compat.str16("MQTT"))
        assert.are.equal("\0\0", compat.str16(""))
        assert.are.equal(300, compat.get_u16("\1\44"))
        assert.are.equal(65535, compat.get_u16("x\255\255", 2))
        assert.has_error(function() compat.u16(65536) end)
        assert.has_error(function() compat.u16(-1) end)
        assert.has_error(function() compat.u16(1.5) end)
        assert.has_error(function() compat.str16(string.rep("s", 65536)) end)
        assert.has_error(function() compat.get_u16("\1") end)
        local pack, unpack = rawget(string, "pack"), rawget(string, "unpack")   -- 5.3+
        if pack then
            for _, n in ipairs({ 0, 1, 255, 256, 4242, 65535 }) do
                assert.are.equal(pack(">I2", n), compat.u16(n))
                assert.are.equal(n, unpack(">I2", compat.u16(n)))
            end
            assert.are.equal(pack(">s2", "p\0ss"), compat.str16("p\0ss"))
        end
    end)

    it("reports exit codes and signals of commands as Lua 5.2+ does", function()
        assert.are.same({ true, "exit", 0 }, { compat.execute("true") })
        assert.are.same({ nil, "exit", 3 }, { compat.execute("exit 3") })
        assert.are.same({ nil, "signal", 9 }, { compat.execute("kill -KILL $$") })
        assert.are.same({ "out\n", "exit", 4 }, { compat.popen_read("echo out; exit 4") })
        assert.are.same({ "no newline", "exit", 0 }, { compat.popen_read("printf 'no newline'") })
        local ok, code, out = helpers.run("echo err >&2; exit 7")
        assert.are.same({ false, 7, "err\n" }, { ok, code, out })
        ok, code = helpers.run("kill -KILL $$")
        assert.are.same({ false, 137 }, { ok, code })
    end)

    it("finds modules along a path, calls xpcall with arguments, runs finalizers", function()
        assert.matches("/spec/compat%.lua$", compat.searchpath("compat", package.path))
        local none, tried = compat.searchpath("no.such.module", "/nonexistent/?.lua")
        assert.is_nil(none)
        assert.matches("/nonexistent/no/such/module.lua", tried, 1, true)
        assert.are.same({ true, 3, "b" },
                        { compat.xpcall(function(a, b, c) return a + b, c end, debug.traceback,
                                        1, 2, "b") })
        local ok, tb = compat.xpcall(function(x) error("boom " .. x) end, debug.traceback, "z")
        assert.is_false(ok)
        assert.matches("boom z", tb, 1, true)
        assert.matches("stack traceback", tb, 1, true)
        local ran = 0
        local guard = compat.finalizer(function() ran = ran + 1 end)
        assert.is_not_nil(guard)
        guard = nil -- luacheck: ignore (the only reference goes)
        collectgarbage()
        collectgarbage()
        assert.are.equal(1, ran)
    end)
end)
