-- spec/70_protocol_spec.lua: byte-exact protocol behaviour that a real broker
-- cannot show, checked against the scripted fake broker: the CONNECT,
-- SUBSCRIBE, UNSUBSCRIBE, PUBLISH and PUBREL bytes; the acks the client sends
-- on its own (without the Lua side dispatching); resends with DUP after a cut;
-- the in-flight window and the queue bound; packet ids; keepalive; disconnect();
-- reconnect back-off, refusals and breconnect_cb; send errors.

local helpers = require("helpers")
local mqtt = require("mqtt")
local FB = require("fake_broker")
local compat = require("compat")

-- The bitwise or of every flag given.
local function flags(...)
    local r = 0
    for _, f in ipairs({ ... }) do r = compat.bor(r, f) end
    return r
end

local FAST = { reconnect = { min = 0.05, max = 0.2 } }
local now = helpers.now

local step = helpers.dispatcher(0.01)

local function wait_for(pred, timeout)
    return helpers.wait_dispatch(pred, timeout, 0.01)
end

-- The whole of s in hex: comparing these compares the bytes and shows them.
local function hex(s) return FB.hex(s, "all") end

-- Accepts a connection while dispatching (a breconnect_cb must run in this
-- thread before the client even tries). Returns the socket or nil.
local function accept_dispatching(fb, timeout)
    local sock
    helpers.wait_until(function()
        sock = fb:accept(0.01)
        return sock ~= nil
    end, timeout or 5, step)
    return sock
end

describe("protocol (fake broker)", function()
    local clients, brokers = helpers.clients("zp", FAST), helpers.fake_brokers({ timeout = 3 })
    helpers.close_after_each(clients, brokers)

    -- A client whose events are recorded in rec: connacks, disconnects,
    -- messages (every delivered MQTTMessage, QoS 2 at PUBREL), arrivals,
    -- acks ({command, data}), pingresps.
    local function new_client(id, clean, opts)
        local c = clients:new(id, clean, opts)
        local rec = helpers.record_events(c)
        rec.acks, rec.pingresps = {}, 0
        for _, cmd in ipairs { mqtt.PUBACK, mqtt.PUBREC, mqtt.PUBCOMP, mqtt.SUBACK,
                               mqtt.UNSUBACK } do
            c:on(cmd, function(_, d) rec.acks[#rec.acks + 1] = { cmd, d } end)
        end
        c:on(mqtt.PINGRESP, function() rec.pingresps = rec.pingresps + 1 end)
        return c, rec
    end

    -- connect_async to fb, handshake, and wait until connected. With
    -- dispatch == false nothing is dispatched (is_connected() is core state).
    -- Returns the CONNECT packet.
    local function connect(c, fb, args, hs, dispatch)
        args = args or {}
        args.host, args.port = fb.host, fb.port
        args.keepalive = args.keepalive or 60
        c:connect_async(args)
        local pkt = fb:handshake(hs)
        local ok = helpers.wait_until(function() return c:is_connected() end, 5,
                                      dispatch ~= false and step or nil)
        assert.is_true(ok, "the client did not become connected")
        return pkt
    end

    local function acks_of(rec, cmd)
        local list = {}
        for _, a in ipairs(rec.acks) do
            if a[1] == cmd then list[#list + 1] = a[2].mid end
        end
        return list
    end

    ---------------------------------------------------------------------------
    describe("CONNECT", function()
        it("carries protocol name MQTT, level 4, clean session, keepalive and client id", function()
            local fb = brokers:new()
            local c = new_client("zmqtt-proto-1", true)
            local p = connect(c, fb, { keepalive = 17 })
            assert.are.equal("MQTT", p.protocol_name)
            assert.are.equal(4, p.protocol_level)
            assert.are.equal(0x02, p.connect_flags)
            assert.are.equal(17, p.keepalive)
            assert.are.equal("zmqtt-proto-1", p.client_id)
            assert.are.equal(hex(FB.connect { client_id = "zmqtt-proto-1", keepalive = 17 }),
                             hex(p.raw))

            -- clean_session = false: flags 0x00; keepalive 0 and 65535 at the edges.
            local fb2 = brokers:new()
            local c2 = new_client("persistent-1", false)
            p = connect(c2, fb2, { keepalive = 65535 })
            assert.are.equal(0x00, p.connect_flags)
            assert.are.equal(hex(FB.connect { client_id = "persistent-1", keepalive = 65535,
                                              clean_session = false }), hex(p.raw))

            local fb3 = brokers:new()
            local c3 = new_client("", true)
            p = connect(c3, fb3, { keepalive = 0 })
            assert.are.equal(hex(FB.connect { client_id = "", keepalive = 0 }), hex(p.raw))
        end)

        it("carries username and password with their flags", function()
            local fb = brokers:new()
            local c = new_client("zid-up", true)
            c:set_username_pw("alice", "s3cr\0t\255")
            local p = connect(c, fb, { keepalive = 30 })
            assert.are.equal(0xC2, p.connect_flags)
            assert.are.equal("alice", p.username)
            assert.are.equal("s3cr\0t\255", p.password)
            assert.are.equal(hex(FB.connect { client_id = "zid-up", keepalive = 30,
                                              username = "alice", password = "s3cr\0t\255" }),
                             hex(p.raw))

            -- A username without a password: only the username flag.
            local fb2 = brokers:new()
            local c2 = new_client("zid-u", true)
            c2:set_username_pw("bob")
            p = connect(c2, fb2, { keepalive = 30 })
            assert.are.equal(0x82, p.connect_flags)
            assert.are.equal("bob", p.username)
            assert.is_nil(p.password)
            assert.are.equal(hex(FB.connect { client_id = "zid-u", keepalive = 30,
                                              username = "bob" }), hex(p.raw))
        end)

        it("carries the will: topic, payload, QoS and retain flags", function()
            local fb = brokers:new()
            local c = new_client("zid-will", true)
            c:set_will("wills/zid", "gone\0away", 1, true)
            c:set_username_pw("u", "p")
            local p = connect(c, fb, { keepalive = 10 })
            assert.are.equal(flags(0x02, 0x04, 0x08, 0x20, 0x80, 0x40), p.connect_flags)
            assert.is_true(p.will)
            assert.are.equal(1, p.will_qos)
            assert.is_true(p.will_retain)
            assert.are.equal("wills/zid", p.will_topic)
            assert.are.equal("gone\0away", p.will_payload)
            assert.are.equal(hex(FB.connect { client_id = "zid-will", keepalive = 10,
                                              will = { topic = "wills/zid", payload = "gone\0away",
                                                       qos = 1, retain = true },
                                              username = "u", password = "p" }), hex(p.raw))

            local fb2 = brokers:new()
            local c2 = new_client("zid-will2", true)
            c2:set_will("w/2", "x", 2, false)
            p = connect(c2, fb2, { keepalive = 10 })
            assert.are.equal(flags(0x02, 0x04, 0x10), p.connect_flags)
            assert.are.equal(2, p.will_qos)
            assert.is_false(p.will_retain)
        end)

        for _, case in ipairs { { "an empty string", "" }, { "nil", nil } } do
            it("with a will whose payload is " .. case[1] .. " is well formed (zero-length will payload)",
               function()
                local fb = brokers:new()
                local c = new_client("zid-empty-will", true)
                c:set_will("w/empty", case[2], 0, false)
                local p = connect(c, fb, { keepalive = 5 })
                assert.is_true(p.will)
                assert.are.equal("w/empty", p.will_topic)
                assert.are.equal("", p.will_payload)
                assert.are.equal(0x06, p.connect_flags)
                assert.are.equal(hex(FB.connect { client_id = "zid-empty-will", keepalive = 5,
                                                  will = { topic = "w/empty", payload = "" } }),
                                 hex(p.raw))
                -- Nothing after the will payload's zero length.
                assert.are.equal("\0\7w/empty\0\0", p.raw:sub(-11))
            end)
        end

        it("uses credentials and will changed after connecting at the next reconnect", function()
            local fb = brokers:new()
            local c, rec = new_client("zid-change", true)
            c:set_username_pw("u1", "p1")
            c:set_will("w/1", "one", 0, false)
            local p = connect(c, fb, { keepalive = 30 })
            assert.are.equal("u1", p.username)
            assert.are.equal("w/1", p.will_topic)
            c:loop()
            c:set_username_pw("u2", "p2")
            c:set_will("w/2", "two", 2, true)
            fb:close_client()
            p = fb:handshake()
            assert.are.equal("u2", p.username)
            assert.are.equal("p2", p.password)
            assert.are.equal("w/2", p.will_topic)
            assert.are.equal("two", p.will_payload)
            assert.are.equal(2, p.will_qos)
            assert.is_true(p.will_retain)
            assert.is_true(wait_for(function() return #rec.connacks == 2 end))
            assert.are.equal(0, rec.connacks[2].return_code)
            assert.is_true(c:is_connected())
        end)
    end)

    ---------------------------------------------------------------------------
    describe("outgoing packets", function()
        it("SUBSCRIBE is 0x82 with the packet id and one QoS byte per filter", function()
            local fb = brokers:new()
            local c, rec = new_client()
            connect(c, fb)
            local topics = { { "a/+/c", 0 }, { "b/#", 1 }, { "exact", 2 } }
            local mid = c:subscribe(topics)
            local p = fb:expect(FB.SUBSCRIBE)
            assert.are.equal(0x82, p.raw:byte(1))
            assert.are.equal(mid, p.packet_id)
            assert.are_not.equal(0, mid)
            assert.are.equal(hex(FB.subscribe(mid, topics)), hex(p.raw))
            fb:send(FB.suback(mid, { 0, 1, 0x80 }))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.SUBACK) == 1 end))
            assert.are.same({ 0, 1, 0x80 }, rec.acks[1][2].granted_qos)

            local mid2 = c:subscribe("one/filter", 1)
            p = fb:expect(FB.SUBSCRIBE)
            assert.are.equal(hex(FB.subscribe(mid2, { { "one/filter", 1 } })), hex(p.raw))
            assert.are_not.equal(mid, mid2)
        end)

        it("UNSUBSCRIBE is 0xA2 with the packet id and the filters", function()
            local fb = brokers:new()
            local c, rec = new_client()
            connect(c, fb)
            local mid = c:unsubscribe({ "a/+/c", "b/#" })
            local p = fb:expect(FB.UNSUBSCRIBE)
            assert.are.equal(0xA2, p.raw:byte(1))
            assert.are.equal(mid, p.packet_id)
            assert.are.equal(hex(FB.unsubscribe(mid, { "a/+/c", "b/#" })), hex(p.raw))
            fb:send(FB.unsuback(mid))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.UNSUBACK) == 1 end))
            assert.are.equal(mid, acks_of(rec, mqtt.UNSUBACK)[1])
        end)

        it("PUBLISH QoS 0 is 0x30 (0x31 retained) without a packet id", function()
            local fb = brokers:new()
            local c = new_client()
            connect(c, fb)
            c:publish("q0/t", "hello\0\255")
            c:publish("q0/r", "kept", 0, true)
            c:publish("q0/empty")
            local p = fb:expect(FB.PUBLISH)
            assert.are.equal(hex(FB.publish { topic = "q0/t", payload = "hello\0\255" }), hex(p.raw))
            assert.are.equal(0x30, p.raw:byte(1))
            p = fb:expect(FB.PUBLISH)
            assert.are.equal(0x31, p.raw:byte(1))
            assert.are.equal(hex(FB.publish { topic = "q0/r", payload = "kept", retain = true }),
                             hex(p.raw))
            p = fb:expect(FB.PUBLISH)
            assert.are.equal("\48\10\0\8q0/empty", p.raw)
        end)

        it("PUBLISH QoS 1 is 0x32 (0x33 retained) with the returned id; PUBACK completes it", function()
            local fb = brokers:new()
            local c, rec = new_client()
            connect(c, fb)
            local m1 = c:publish("q1/t", "one", 1)
            local m2 = c:publish("q1/r", "two", 1, true)
            local p1 = fb:expect(FB.PUBLISH)
            local p2 = fb:expect(FB.PUBLISH)
            assert.are.equal(hex(FB.publish { topic = "q1/t", payload = "one", qos = 1,
                                              packet_id = m1 }), hex(p1.raw))
            assert.are.equal(0x32, p1.raw:byte(1))
            assert.are.equal(hex(FB.publish { topic = "q1/r", payload = "two", qos = 1,
                                              retain = true, packet_id = m2 }), hex(p2.raw))
            assert.are.equal(0x33, p2.raw:byte(1))
            fb:send(FB.puback(m2) .. FB.puback(m1))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.PUBACK) == 2 end))
            assert.are.same({ m2, m1 }, acks_of(rec, mqtt.PUBACK))
            assert.is_true(wait_for(function() return c:stats().inflight == 0 end))
        end)

        it("PUBLISH QoS 2 is 0x34; PUBREC is answered by PUBREL 0x62 0x02 id; PUBCOMP completes", function()
            local fb = brokers:new()
            local c, rec = new_client()
            connect(c, fb)
            local mid = c:publish("q2/t", "two", 2)
            local p = fb:expect(FB.PUBLISH)
            assert.are.equal(0x34, p.raw:byte(1))
            assert.are.equal(hex(FB.publish { topic = "q2/t", payload = "two", qos = 2,
                                              packet_id = mid }), hex(p.raw))
            local mid_r = c:publish("q2/r", "", 2, true)
            p = fb:expect(FB.PUBLISH)
            assert.are.equal(0x35, p.raw:byte(1))
            assert.are.equal(mid_r, p.packet_id)
            fb:send(FB.pubrec(mid))
            local rel = fb:expect(FB.PUBREL)
            assert.are.equal(hex(string.char(0x62, 0x02, compat.rshift(mid, 8), compat.band(mid, 0xFF))),
                             hex(rel.raw))
            fb:send(FB.pubcomp(mid))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.PUBCOMP) == 1 end))
            assert.are.same({ mid }, acks_of(rec, mqtt.PUBREC))
            assert.are.same({ mid }, acks_of(rec, mqtt.PUBCOMP))
        end)
    end)

    ---------------------------------------------------------------------------
    describe("answers to the broker, without dispatching", function()
        it("QoS 1 PUBLISH is answered by PUBACK with the same id", function()
            local fb = brokers:new()
            local c, rec = new_client()
            connect(c, fb, nil, nil, false)
            fb:send(FB.publish { topic = "in/1", payload = "p1", qos = 1, packet_id = 4242 })
            local ack = fb:expect(FB.PUBACK, 2)
            assert.are.equal("\64\2\16\146", ack.raw)
            assert.are.equal(0, #rec.messages, "nothing was dispatched yet")
            assert.is_true(wait_for(function() return #rec.messages == 1 end))
            local m = rec.messages[1]
            assert.are.equal("in/1", m.topic)
            assert.are.equal("p1", m.payload)
            assert.are.equal(1, m.qos)
            assert.are.equal(4242, m.mid)
        end)

        it("QoS 2: PUBREC, PUBCOMP per PUBREL, and exactly one delivery despite DUP resend and a repeated PUBREL",
           function()
            local fb = brokers:new()
            local c, rec = new_client()
            connect(c, fb, nil, nil, false)
            local pub = { topic = "in/2", payload = "exactly once", qos = 2, packet_id = 7 }
            fb:send(FB.publish(pub))
            assert.are.equal(FB.pubrec(7), fb:expect(FB.PUBREC, 2).raw)
            pub.dup = true
            fb:send(FB.publish(pub))
            assert.are.equal(FB.pubrec(7), fb:expect(FB.PUBREC, 2).raw)
            fb:send(FB.pubrel(7))
            assert.are.equal(FB.pubcomp(7), fb:expect(FB.PUBCOMP, 2).raw)
            fb:send(FB.pubrel(7))
            assert.are.equal(FB.pubcomp(7), fb:expect(FB.PUBCOMP, 2).raw)
            assert.are.equal(0, #rec.messages, "nothing was dispatched yet")

            assert.is_true(wait_for(function() return #rec.messages >= 1 end))
            local deadline = now() + 0.3
            while now() < deadline do step() end
            assert.are.equal(1, #rec.messages)
            assert.are.equal("exactly once", rec.messages[1].payload)
            assert.are.equal(2, rec.messages[1].qos)
            assert.are.equal(7, rec.messages[1].mid)
            assert.are.same({ 7 }, rec.arrivals)
        end)
    end)

    ---------------------------------------------------------------------------
    describe("withheld acks", function()
        it("resends PUBLISH with DUP and the same id, PUBREL for PUBREC'd QoS 2, then new messages in order",
           function()
            local fb = brokers:new()
            local c, rec = new_client()
            connect(c, fb)
            c:loop()
            local m1 = c:publish("r/1", "a", 1)
            local m2 = c:publish("r/2", "b", 2)
            local m3 = c:publish("r/3", "c", 2)
            for _, m in ipairs { m1, m2, m3 } do
                local p = fb:expect(FB.PUBLISH)
                assert.are.equal(m, p.packet_id)
                assert.is_false(p.dup)
            end
            fb:send(FB.pubrec(m2))
            assert.are.equal(m2, fb:expect(FB.PUBREL).packet_id)
            fb:close_client()
            assert.is_true(wait_for(function() return #rec.disconnects == 1 end))
            assert.is_false(c:is_connected())
            assert.is_not_nil(rec.disconnects[1].error)

            local m4 = c:publish("r/4", "d", 1)
            local m5 = c:publish("r/5", "e", 0)
            local m6 = c:publish("r/6", "f", 2)
            fb:handshake()
            local want = {
                { FB.publish { topic = "r/1", payload = "a", qos = 1, dup = true, packet_id = m1 } },
                { FB.pubrel(m2) },
                { FB.publish { topic = "r/3", payload = "c", qos = 2, dup = true, packet_id = m3 } },
                { FB.publish { topic = "r/4", payload = "d", qos = 1, packet_id = m4 } },
                { FB.publish { topic = "r/5", payload = "e" } },
                { FB.publish { topic = "r/6", payload = "f", qos = 2, packet_id = m6 } },
            }
            for i, w in ipairs(want) do
                local p, err = fb:read_packet()
                assert.is_not_nil(p, "packet " .. i .. ": " .. tostring(err))
                assert.are.equal(hex(w[1]), hex(p.raw), "packet " .. i)
            end
            fb:expect_nothing(0.2)
            assert.is_number(m5)
            assert.is_true(wait_for(function() return c:is_connected() end))
        end)

        it("removes the oldest in-flight message on its ack: only the unacked ones are resent", function()
            local fb = brokers:new()
            local c, rec = new_client()
            connect(c, fb)
            c:loop()
            local mids = {}
            for i = 1, 3 do mids[i] = c:publish("old/" .. i, "m" .. i, 1) end
            for i = 1, 3 do assert.are.equal(mids[i], fb:expect(FB.PUBLISH).packet_id) end
            fb:send(FB.puback(mids[1]))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.PUBACK) == 1 end))
            assert.are.equal(2, c:stats().inflight)
            fb:close_client()
            fb:handshake()
            for i = 2, 3 do
                local p = fb:expect(FB.PUBLISH)
                assert.are.equal(mids[i], p.packet_id)
                assert.is_true(p.dup)
                assert.are.equal("m" .. i, p.payload)
            end
            fb:expect_nothing(0.3)
            fb:send(FB.puback(mids[2]) .. FB.puback(mids[3]))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.PUBACK) == 3 end))
            assert.are.same(mids, acks_of(rec, mqtt.PUBACK))
            assert.are.equal(0, c:stats().inflight)
        end)
    end)

    ---------------------------------------------------------------------------
    describe("in-flight window and queue", function()
        it("max_inflight = 2 keeps two QoS 1 PUBLISH on the wire until an ack arrives", function()
            local fb = brokers:new()
            local c, rec = new_client(nil, true, { max_inflight = 2, reconnect = FAST.reconnect })
            connect(c, fb)
            local mids = {}
            for i = 1, 5 do mids[i] = c:publish("win/" .. i, tostring(i), 1) end
            local seen = {}
            seen[1] = fb:expect(FB.PUBLISH).packet_id
            seen[2] = fb:expect(FB.PUBLISH).packet_id
            fb:expect_nothing(0.3)
            assert.are.equal(2, c:stats().inflight)
            for i = 3, 5 do
                fb:send(FB.puback(seen[i - 2]))
                seen[i] = fb:expect(FB.PUBLISH).packet_id
                fb:expect_nothing(0.15)
            end
            assert.are.same(mids, seen)
            fb:send(FB.puback(seen[4]) .. FB.puback(seen[5]))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.PUBACK) == 5 end))
            assert.are.same(mids, acks_of(rec, mqtt.PUBACK))
        end)

        it("max_queued = 3 while disconnected: the 4th publish raises 'queue full', nothing of the first 3 is lost",
           function()
            local fb = brokers:new()
            local c, rec = new_client(nil, true, { max_queued = 3, reconnect = FAST.reconnect })
            connect(c, fb)
            c:loop()
            fb:close_client()
            assert.is_true(wait_for(function() return #rec.disconnects == 1 end))
            local mids = {}
            for i = 1, 3 do mids[i] = c:publish("q/" .. i, "kept " .. i, 1) end
            local ok, err = pcall(c.publish, c, "q/4", "too many", 1)
            assert.is_false(ok)
            assert.is_true(mqtt.is_error(err, mqtt.MQTTError), tostring(err))
            assert.are.equal("queue full", err.name)
            assert.are.equal(3, c:stats().queued)
            fb:handshake()
            for i = 1, 3 do
                local p = fb:expect(FB.PUBLISH)
                assert.are.equal(mids[i], p.packet_id)
                assert.are.equal("kept " .. i, p.payload)
                assert.is_false(p.dup)
            end
            fb:expect_nothing(0.2)
        end)
    end)

    ---------------------------------------------------------------------------
    describe("packet ids", function()
        it("are never 0 and distinct among everything in flight", function()
            local fb = brokers:new()
            local c = new_client()
            connect(c, fb)
            local mids = {
                c:publish("ids/a", "", 1), c:subscribe("ids/#", 1), c:publish("ids/b", "", 2),
                c:unsubscribe("ids/x"), c:publish("ids/c", "", 1),
            }
            local seen = {}
            for i, m in ipairs(mids) do
                local p = fb:read_packet()
                assert.is_not_nil(p)
                assert.are.equal(m, p.packet_id, "packet " .. i)
                assert.are_not.equal(0, p.packet_id)
                assert.is_nil(seen[p.packet_id], "id reused while in flight")
                seen[p.packet_id] = true
            end
        end)

        it("wrap around 65535 without ever using 0 or an id still in flight", function()
            local fb = brokers:new()
            local c = new_client(nil, true, { max_inflight = 1000, reconnect = false })
            connect(c, fb)
            -- The first message is never acknowledged: its id must be skipped.
            local held = c:publish("wrap/held", "", 1)
            assert.are.equal(held, fb:expect(FB.PUBLISH).packet_id)
            local total, wrapped, last = 0, false, held
            local BATCH = 500
            while total < 66000 do
                local mids = {}
                for i = 1, BATCH do mids[i] = c:publish("w", "", 1) end
                local acks, inflight = {}, { [held] = true }
                for i = 1, BATCH do
                    local p = fb:expect(FB.PUBLISH)
                    local id = p.packet_id
                    if id == 0 or id == held or inflight[id] or id ~= mids[i] then
                        error(("bad packet id %d (returned %d, held %d) after %d publishes")
                              :format(id, mids[i], held, total + i))
                    end
                    inflight[id] = true
                    if id < last then wrapped = true end
                    last = id
                    acks[i] = FB.puback(id)
                end
                fb:send(table.concat(acks))
                total = total + BATCH
            end
            assert.is_true(wrapped, "the ids never wrapped around")
            assert.is_true(helpers.wait_until(function() return c:stats().inflight == 1 end, 5))
        end)
    end)

    ---------------------------------------------------------------------------
    describe("keepalive", function()
        it("sends PINGREQ after keepalive and declares a silent broker lost after 1.5 x keepalive, then reconnects",
           function()
            local fb = brokers:new { timeout = 3, answer_ping = false }
            local c, rec = new_client()
            c:loop()
            connect(c, fb, { keepalive = 1 }, nil, false)
            local t0 = now()
            local ping = fb:expect(FB.PINGREQ, 3)
            local t_ping = now() - t0
            assert.are.equal("\192\0", ping.raw)
            assert.is_true(t_ping > 0.8 and t_ping < 1.35, "PINGREQ after " .. t_ping .. " s")
            fb:expect_closed(3)
            local t_lost = now() - t0
            assert.is_true(t_lost > 1.3 and t_lost < 2.0, "connection dropped after " .. t_lost .. " s")
            assert.is_true(wait_for(function() return #rec.disconnects == 1 end))
            local err = rec.disconnects[1].error
            assert.is_not_nil(err, "DISCONNECT without error")
            assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
            assert.are.equal("keepalive timeout", err.name)
            -- loop() is on: it comes back.
            fb:handshake()
            assert.is_true(wait_for(function() return c:is_connected() and #rec.connacks == 2 end))
        end)

        it("stays connected for 3+ s to a broker answering PINGRESP, pinging about once per keepalive",
           function()
            local fb = brokers:new { timeout = 3, skip_ping = false }
            local c, rec = new_client()
            connect(c, fb, { keepalive = 1 })
            local t0 = now()
            local times = {}
            while now() - t0 < 3.5 do
                local p, err = fb:read_packet(math.max(0.01, 3.5 - (now() - t0)))
                if p then
                    assert.are.equal("PINGREQ", p.name, FB.describe(p))
                    times[#times + 1] = now() - t0
                    fb:send(FB.pingresp())
                else
                    assert.are.equal("timeout", err)
                end
                mqtt.dispatch(0)
            end
            assert.is_true(c:is_connected())
            assert.is_true(wait_for(function() return rec.pingresps == #times end, 1))
            assert.are.equal(0, #rec.disconnects)
            assert.is_true(#times >= 2 and #times <= 4,
                           #times .. " PINGREQ in 3.5 s: " .. table.concat(times, ", "))
            local prev = 0
            for i, t in ipairs(times) do
                assert.is_true(t - prev > 0.8 and t - prev < 1.4,
                               ("PINGREQ %d at %.3f s, %.3f s after the previous one")
                               :format(i, t, t - prev))
                prev = t
            end
        end)
    end)

    ---------------------------------------------------------------------------
    describe("disconnect()", function()
        it("flushes queued publishes, then sends DISCONNECT 0xE0 0x00, and never reconnects", function()
            local fb = brokers:new()
            local c, rec = new_client()
            connect(c, fb)
            c:loop()
            for i = 1, 20 do c:publish("bye/" .. i, ("x"):rep(100) .. i) end
            c:disconnect()
            for i = 1, 20 do
                local p = fb:expect(FB.PUBLISH, 2)
                assert.are.equal("bye/" .. i, p.topic)
            end
            local d = fb:read_packet(2)
            assert.is_not_nil(d, "no DISCONNECT")
            assert.are.equal("\224\0", d.raw)
            fb:expect_closed(2)
            assert.is_false(c:is_connected())
            assert.is_true(wait_for(function() return #rec.disconnects == 1 end))
            assert.is_nil(rec.disconnects[1].error)
            assert.are.equal("disconnected", c:state())
            local sock = fb:accept(1)
            assert.is_nil(sock, "the client reconnected after disconnect()")
            mqtt.dispatch(0.05)
            assert.are.equal(1, #rec.connacks)
        end)
    end)

    ---------------------------------------------------------------------------
    describe("reconnect", function()
        it("spaces attempts with growing back-off capped at max, and starts over only after a " ..
           "connection that lasted 10 x min", function()
            local fb = brokers:new()
            local MIN, MAX = 0.1, 0.4
            local c = new_client(nil, true, { reconnect = { min = MIN, max = MAX } })
            connect(c, fb)
            c:loop()
            local function attempts(n)
                local last, gaps = now(), {}
                fb:close_client()
                for i = 1, n do
                    assert.is_not_nil(fb:accept(3), "attempt " .. i .. " never came")
                    local t = now()
                    gaps[i] = t - last
                    last = t
                    if i < n then fb:close_client() end
                end
                return gaps
            end
            local gaps = attempts(8)
            local shown = table.concat(gaps, ", ")
            for i, g in ipairs(gaps) do
                assert.is_true(g <= MAX + 0.15, ("gap %d is %.3f s: %s"):format(i, g, shown))
            end
            assert.is_true(gaps[1] <= MIN + 0.1, "first gap: " .. shown)
            local early = (gaps[1] + gaps[2]) / 2
            local late = (gaps[5] + gaps[6] + gaps[7] + gaps[8]) / 4
            assert.is_true(late > 1.5 * early, "no growth: " .. shown)
            assert.is_true(late >= MAX / 2 - 0.05, "never near max: " .. shown)
            -- A broker that accepts and drops at once does not reset the back-off.
            local p = fb:read_packet()
            assert.are.equal("CONNECT", p and p.name)
            fb:send(FB.connack(false, 0))
            assert.is_true(wait_for(function() return c:is_connected() end))
            gaps = attempts(1)
            assert.is_true(gaps[1] >= MAX / 2 - 0.05, "after a dropped connection: " .. gaps[1])
            -- A connection that stayed up for 10 x min does.
            p = fb:read_packet()
            assert.are.equal("CONNECT", p and p.name)
            fb:send(FB.connack(false, 0))
            assert.is_true(wait_for(function() return c:is_connected() end))
            local up = now()
            assert.is_true(wait_for(function() return now() - up > 10 * MIN + 0.05 end, 3))
            gaps = attempts(1)
            assert.is_true(gaps[1] <= MIN + 0.1, "after a lasting connection: " .. gaps[1])
        end)

        it("reports a refusal (code 5) during automatic reconnect as a CONNACK with error, and keeps retrying",
           function()
            local fb = brokers:new()
            local c, rec = new_client()
            connect(c, fb)
            c:loop()
            fb:close_client()
            fb:handshake { return_code = 5 }
            fb:expect_closed(2)
            fb:handshake()
            assert.is_true(wait_for(function() return #rec.connacks == 3 end))
            local refused = rec.connacks[2]
            assert.are.equal(5, refused.return_code)
            assert.is_not_nil(refused.error)
            assert.is_true(mqtt.is_error(refused.error, mqtt.MQTTConnectionError))
            assert.are.equal(5, refused.error.code)
            assert.are.equal("not authorized", refused.error.name)
            assert.are.equal(0, rec.connacks[3].return_code)
            assert.is_nil(rec.connacks[3].error)
            assert.is_true(c:is_connected())
        end)

        it("survives 30+ failed attempts and connects once the broker is back", function()
            local fb = brokers:new()
            local port = fb.port
            local c, rec = new_client(nil, true, { reconnect = { min = 0.01, max = 0.02 } })
            connect(c, fb)
            c:loop()
            fb:close()
            -- Attempts that get no CONNACK are counted and logged, not CONNACK events.
            assert.is_true(wait_for(function() return c:stats().connect_failures >= 35 end, 10),
                           "only " .. c:stats().connect_failures .. " failed attempts counted")
            assert.are.equal(1, #rec.connacks)
            assert.are.equal(1, #rec.disconnects)
            local fb2 = brokers:new { port = port, timeout = 3 }
            fb2:handshake()
            assert.is_true(wait_for(function()
                local last = rec.connacks[#rec.connacks]
                return c:is_connected() and last.error == nil
            end))
            assert.are.equal(0, rec.connacks[#rec.connacks].return_code)
            assert.are.equal(1, #rec.disconnects)
        end)

        it("runs breconnect_cb before each automatic attempt, and its credentials are used", function()
            local fb = brokers:new()
            local c, rec = new_client()
            local calls = 0
            local function cb(cl)
                calls = calls + 1
                cl:set_username_pw("user" .. calls, "pw" .. calls)
            end
            local p = connect(c, fb, { breconnect_cb = cb })
            assert.is_nil(p.username)
            assert.are.equal(0, calls, "breconnect_cb ran for the first connect")
            c:loop()
            fb:close_client()
            for attempt = 1, 3 do
                assert.is_not_nil(accept_dispatching(fb, 5), "attempt " .. attempt)
                p = fb:read_packet()
                assert.are.equal("CONNECT", p and p.name)
                assert.are.equal(attempt, calls)
                assert.are.equal("user" .. attempt, p.username)
                assert.are.equal("pw" .. attempt, p.password)
                if attempt < 3 then
                    fb:send(FB.connack(false, 5))
                else
                    fb:send(FB.connack(false, 0))
                end
            end
            assert.is_true(wait_for(function() return c:is_connected() end))
            local deadline = now() + 0.3
            while now() < deadline do step() end
            assert.are.equal(3, calls)
            assert.are.equal(4, #rec.connacks)
        end)
    end)

    ---------------------------------------------------------------------------
    describe("send errors", function()
        it("a reset mid-publish is a DISCONNECT with error, and the QoS 1 message is resent", function()
            local fb = brokers:new { timeout = 10 }
            local c, rec = new_client()
            connect(c, fb)
            c:loop()
            local payload = ("0123456789abcdef"):rep(1024 * 1024)   -- 16 MiB
            local mid = c:publish("big/one", payload, 1)
            local got = assert(fb.client:receive(64 * 1024))
            assert.are.equal(0x32, got:byte(1))
            fb:close_client { reset = true }
            assert.is_true(wait_for(function() return #rec.disconnects == 1 end))
            local err = rec.disconnects[1].error
            assert.is_not_nil(err, "the reset was swallowed")
            assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
            assert.is_false(c:is_connected())
            fb:handshake()
            local p = fb:expect(FB.PUBLISH, 10)
            assert.are.equal(mid, p.packet_id)
            assert.is_true(p.dup)
            assert.are.equal("big/one", p.topic)
            assert.is_true(p.payload == payload, "payload differs")
            fb:send(FB.puback(mid))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.PUBACK) == 1 end))
            assert.are.equal(0, c:stats().inflight)
        end)
    end)
end)
