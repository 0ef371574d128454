-- spec/100_mqtt5_spec.lua: the acceptance specs of MQTT 5.0 (API.md "MQTT 5.0
-- (extension)", issue 14), written from the contract alone.
--
-- Against the scripted fake broker (spec/fake_broker.lua, which decodes and
-- builds MQTT 5.0 in pure Lua, independently of the library's codec): the
-- exact bytes of CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT and the
-- client's acks; reason codes and properties of what the broker sends;
-- refused publishes; the broker's announced limits (receive maximum, maximum
-- QoS, retain, maximum packet size, subscription features, server keep
-- alive, assigned client id); topic aliases both ways; the client's answers
-- to a broker that breaks 5.0; "auto" falling back to 3.1.1; enhanced
-- authentication; message expiry in the client's queue; request bytes.
-- Against mosquitto 2.0.11: the same features end to end.

local helpers = require("helpers")
local mqtt = require("mqtt")
local FB = require("fake_broker")
local socket = require("socket")

local V5 = FB.v5
local HOST = helpers.HOST
local FAST = { min = 0.05, max = 0.2 }

local step = helpers.dispatcher(0.01)

local function wait_for(pred, timeout)
    return helpers.wait_dispatch(pred, timeout, 0.01)
end

-- The whole of s in hex: comparing these compares the bytes and shows them.
local function hex(s) return FB.hex(s, "all") end

-- Copies of a and then b's keys into one new table.
local function merged(a, b)
    local t = {}
    for k, v in pairs(a or {}) do t[k] = v end
    for k, v in pairs(b or {}) do t[k] = v end
    return t
end

-- Calls fn(...) expecting it to raise; returns the error value.
local function raises(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "the call did not raise")
    return err
end

-- err is the MQTTError of a call the broker's announced limits forbid.
local function assert_refused(err, code, name)
    assert.is_true(mqtt.is_error(err, mqtt.MQTTError), tostring(err))
    assert.are.equal(code, err.code, tostring(err))
    assert.are.equal(name, err.name, tostring(err))
end

-- err is an ordinary argument error whose text names `mentions`.
local function assert_argerror(err, mentions)
    assert.is_true(mqtt.is_error(err, mqtt.MQTTError), tostring(err))
    assert.are.equal("invalid argument", err.name, tostring(err))
    assert.truthy(tostring(err):find(mentions, 1, true), tostring(err))
end

---------------------------------------------------------------------------
-- Against the fake broker
---------------------------------------------------------------------------

describe("MQTT 5.0 (fake broker)", function()
    local clients, brokers = helpers.clients("z5"), helpers.fake_brokers({ timeout = 3 })
    helpers.close_after_each(clients, brokers)

    -- A client (protocol 5 unless opts.protocol says otherwise, reconnect
    -- fast) with its events recorded: connacks, disconnects, messages,
    -- arrivals (helpers.record_events), acks ({command, data}) and auths.
    local function new_client(id, clean, opts)
        local o = merged({ protocol = mqtt.MQTTv5, reconnect = FAST }, opts)
        local c = clients:new(id, clean, o)
        local rec = helpers.record_events(c)
        rec.acks, rec.auths = {}, {}
        for _, cmd in ipairs({ mqtt.PUBACK, mqtt.PUBREC, mqtt.PUBCOMP, mqtt.SUBACK,
                               mqtt.UNSUBACK }) do
            c:on(cmd, function(_, d) rec.acks[#rec.acks + 1] = { cmd, d } end)
        end
        c:on(mqtt.AUTH, function(_, d) rec.auths[#rec.auths + 1] = d end)
        c:loop() -- losses are reconnected automatically (unless reconnect = false)
        return c, rec
    end

    -- The acks of one command, in order.
    local function acks_of(rec, cmd)
        local list = {}
        for _, a in ipairs(rec.acks) do
            if a[1] == cmd then list[#list + 1] = a[2] end
        end
        return list
    end

    -- connect_async to a new fake broker, handshake(hs), wait until connected.
    -- Returns the broker and the CONNECT packet.
    local function connect(c, hs, args)
        local fb = brokers:new()
        c:connect_async(merged({ host = fb.host, port = fb.port, keepalive = 30 }, args))
        local pkt = fb:handshake(hs)
        assert.is_true(wait_for(function() return c:is_connected() end),
                       "the client did not become connected")
        c:dispatch() -- the CONNACK event is queued by the time is_connected() says so
        return fb, pkt
    end

    -- A connected 5.0 client: new_client + connect. Returns c, fb, rec, CONNECT.
    local function connected(opts, hs, args, id, clean)
        local c, rec = new_client(id, clean, opts)
        local fb, pkt = connect(c, hs, args)
        return c, fb, rec, pkt
    end

    ---------------------------------------------------------------------------
    describe("choosing the protocol", function()
        it("has the version constants; 3.1.1 stays the default, with 3.1.1 bytes", function()
            assert.are.equal(5, mqtt.MQTTv5)
            assert.are.equal(4, mqtt.MQTTv311)
            local c = clients:new("z5-default", true, { reconnect = FAST })
            local rec = helpers.record_events(c)
            assert.is_nil(c:protocol())
            local fb, p = connect(c)
            assert.are.equal(hex(FB.connect({ client_id = "z5-default", keepalive = 30 })),
                             hex(p.raw))
            assert.are.equal(4, c:protocol())
            assert.are.same({}, c:server_properties())
            -- Under 3.1.1 acks carry reason_code 0 and no properties.
            local acked
            c:on(mqtt.PUBACK, function(_, d) acked = d end)
            local mid = c:publish("z5/t", "x", 1)
            assert.are.equal(mid, fb:expect("PUBLISH").packet_id)
            fb:send(FB.puback(mid))
            assert.is_true(wait_for(function() return acked ~= nil end))
            assert.are.equal(0, acked.reason_code)
            assert.is_nil(acked.properties)
            assert.are.equal(0, rec.connacks[1].return_code)
        end)

        it("sends a 5.0 CONNECT: level 5, Clean Start, no properties by default", function()
            local c = new_client("z5-c1", true)
            assert.is_nil(c:protocol())
            local fb, p = connect(c, nil, { keepalive = 17 })
            assert.are.equal(hex(V5.connect({ client_id = "z5-c1", keepalive = 17 })), hex(p.raw))
            assert.are.equal(5, c:protocol())
            assert.are.equal(5, fb.version)
        end)

        it("sends session_expiry_interval 0xFFFFFFFF for clean_session = false", function()
            local c = new_client("z5-persist", false)
            local _, p = connect(c)
            assert.are.equal(hex(V5.connect({ client_id = "z5-persist", keepalive = 30,
                                              clean_start = false,
                                              properties = { session_expiry_interval = 0xFFFFFFFF } })),
                             hex(p.raw))
        end)

        it("allows client id \"\" with clean_session = false", function()
            local c = new_client("", false)
            local _, p = connect(c)
            assert.are.equal("", p.client_id)
            assert.is_false(p.clean_start)
        end)

        it("sends the CONNECT and will properties in order, user_property last", function()
            local c = new_client("z5-props", true, {
                properties = {
                    user_property = { { "b", "2" }, { "a", "1" }, { "b", "3" } },
                    topic_alias_maximum = 5,
                    request_problem_information = false,
                    request_response_information = true,
                    maximum_packet_size = 4096,
                    receive_maximum = 10,
                    session_expiry_interval = 60,
                },
            })
            c:set_username_pw("u", "p")
            c:set_will("w/t", "bye", 1, true, {
                user_property = { k = "v" },
                correlation_data = "\0\1",
                response_topic = "r/t",
                content_type = "text/plain",
                message_expiry_interval = 30,
                payload_format_indicator = 1,
                will_delay_interval = 5,
            })
            local _, p = connect(c)
            local want = V5.connect({
                client_id = "z5-props", keepalive = 30, username = "u", password = "p",
                properties = {
                    session_expiry_interval = 60, receive_maximum = 10,
                    maximum_packet_size = 4096, topic_alias_maximum = 5,
                    request_problem_information = false, request_response_information = true,
                    user_property = { { "b", "2" }, { "a", "1" }, { "b", "3" } },
                },
                will = { topic = "w/t", payload = "bye", qos = 1, retain = true,
                         properties = { payload_format_indicator = 1,
                                        message_expiry_interval = 30,
                                        content_type = "text/plain", response_topic = "r/t",
                                        correlation_data = "\0\1", will_delay_interval = 5,
                                        user_property = { { "k", "v" } } } },
            })
            assert.are.equal(hex(want), hex(p.raw))
            -- The identifiers really ascend, user_property last.
            assert.are.equal(hex("\17\0\0\0\60\23\0\25\1\33\0\10\34\0\5\39\0\0\16\0"),
                             hex(p.prop_bytes:sub(1, 20)))
        end)

        it("takes session_expiry_interval at the top level of the options too", function()
            local c = new_client("z5-top", true, { session_expiry_interval = 3600 })
            local _, p = connect(c)
            assert.are.same({ session_expiry_interval = 3600 }, p.properties)
            assert.are.equal(hex("\17\0\0\14\16"), hex(p.prop_bytes))
        end)

        it("set_connect_properties replaces the whole set from the next connect on", function()
            local c = new_client("z5-scp", false, { properties = { receive_maximum = 7 } })
            local fb, p = connect(c)
            assert.are.same({ receive_maximum = 7, session_expiry_interval = 0xFFFFFFFF },
                            p.properties)
            c:set_connect_properties({ session_expiry_interval = 0,
                                       user_property = { { "x", "y" } } })
            fb:close_client()
            p = fb:handshake()
            -- receive_maximum left out: its default (not sent); 0 set explicitly: sent.
            assert.are.equal(hex("\17\0\0\0\0\38\0\1x\0\1y"), hex(p.prop_bytes))
        end)

        it("raises an argument error for a bad CONNECT property, before anything is sent",
           function()
            local bad = {
                { { no_such_property = 1 }, "no_such_property" },
                { { receive_maximum = "ten" }, "receive_maximum" },
                { { receive_maximum = 0 }, "receive_maximum" },
                { { receive_maximum = 65536 }, "receive_maximum" },
                { { topic_alias = 1 }, "topic_alias" },              -- not a CONNECT property
                { { server_keep_alive = 10 }, "server_keep_alive" },
                { { user_property = { { "a" } } }, "user_property" },
            }
            for _, case in ipairs(bad) do
                local err = raises(mqtt.Client, "z5-bad", true,
                                   { protocol = 5, properties = case[1] })
                assert_argerror(err, case[2])
            end
            local c = new_client("z5-badwill", true)
            assert_argerror(raises(c.set_will, c, "w", "x", 0, false, { topic_alias = 1 }),
                            "topic_alias")
        end)

        describe("\"auto\"", function()
            it("falls back to 3.1.1 on CONNACK 0x84 and keeps it for reconnects", function()
                local c, rec = new_client("z5-auto", true, { protocol = "auto" })
                local fb = brokers:new()
                c:connect_async({ host = fb.host, port = fb.port, keepalive = 30 })
                local p = fb:handshake({ reason_code = 0x84 })
                assert.are.equal(5, p.protocol_level)
                p = fb:handshake()
                assert.are.equal(hex(FB.connect({ client_id = "z5-auto", keepalive = 30 })),
                                 hex(p.raw))
                assert.is_true(wait_for(function() return c:is_connected() end))
                assert.are.equal(4, c:protocol())
                fb:close_client()
                p = fb:handshake()
                assert.are.equal(4, p.protocol_level)
                assert.is_true(wait_for(function() return #rec.connacks == 2 end))
                assert.are.equal(0, rec.connacks[#rec.connacks].return_code)
            end)

            it("falls back when a 3.1.1 broker refuses with its own CONNACK (code 1)", function()
                local c = new_client("z5-auto1", true, { protocol = "auto" })
                local fb = brokers:new()
                c:connect_async({ host = fb.host, port = fb.port, keepalive = 30 })
                assert.are.equal(5, fb:handshake({ connack_version = 4, return_code = 1 })
                                       .protocol_level)
                assert.are.equal(4, fb:handshake().protocol_level)
                assert.is_true(wait_for(function() return c:is_connected() end))
                assert.are.equal(4, c:protocol())
            end)

            it("falls back when the broker closes before any CONNACK", function()
                local c = new_client("z5-auto2", true, { protocol = "auto" })
                local fb = brokers:new()
                c:connect_async({ host = fb.host, port = fb.port, keepalive = 30 })
                assert.are.equal(5, fb:handshake({ connack = false }).protocol_level)
                fb:close_client()
                assert.are.equal(4, fb:handshake().protocol_level)
                assert.is_true(wait_for(function() return c:is_connected() end))
                assert.are.equal(4, c:protocol())
            end)

            it("stays on 5.0 when the broker accepts it", function()
                local c = new_client("z5-auto3", true, { protocol = "auto" })
                local _, p = connect(c)
                assert.are.equal(5, p.protocol_level)
                assert.are.equal(5, c:protocol())
            end)
        end)
    end)

    ---------------------------------------------------------------------------
    describe("what the client sends", function()
        it("PUBLISH with properties, in ascending order, user_property pairs last", function()
            local c, fb = connected()
            local props = {
                user_property = { { "z", "1" }, { "a", "2" }, { "z", "3" } },
                content_type = "application/json",
                correlation_data = "\0\255",
                response_topic = "reply/here",
                message_expiry_interval = 120,
                payload_format_indicator = 1,
            }
            local mid = c:publish("z5/pub", "{}", 1, false, props)
            local p = fb:expect("PUBLISH")
            assert.are.equal(hex(V5.publish({ topic = "z5/pub", payload = "{}", qos = 1,
                                              packet_id = mid, properties = props })),
                             hex(p.raw))
            -- A string-keyed user_property is accepted too.
            c:publish("z5/pub", "", 0, false, { user_property = { k = "v" } })
            assert.are.same({ { "k", "v" } }, fb:expect("PUBLISH").properties.user_property)
            -- Without properties: a property length of 0.
            c:publish("z5/pub", "x")
            assert.are.equal(hex(V5.publish({ topic = "z5/pub", payload = "x" })),
                             hex(fb:expect("PUBLISH").raw))
        end)

        it("refuses a bad PUBLISH property at the call; nothing is sent, no id is used",
           function()
            local c, fb = connected()
            local before = c:stats()
            local bad = {
                { { subscription_identifier = 1 }, "subscription_identifier" },
                { { nope = 1 }, "nope" },
                { { message_expiry_interval = "soon" }, "message_expiry_interval" },
                { { message_expiry_interval = -1 }, "message_expiry_interval" },
                { { payload_format_indicator = 2 }, "payload_format_indicator" },
                { { session_expiry_interval = 1 }, "session_expiry_interval" },
            }
            for _, case in ipairs(bad) do
                assert_argerror(raises(c.publish, c, "z5/bad", "x", 1, false, case[1]), case[2])
            end
            assert.are.same(before.queued, c:stats().queued)
            assert.are.same(before.inflight, c:stats().inflight)
            local mid = c:publish("z5/good", "x", 1)
            local p = fb:expect("PUBLISH")                  -- the first packet after them
            assert.are.same({ "z5/good", mid }, { p.topic, p.packet_id })
        end)

        it("SUBSCRIBE with subscription options, identifier and user properties", function()
            local c, fb = connected()
            local mid = c:subscribe({
                { "a/+", { qos = 1, no_local = true, retain_as_published = true,
                           retain_handling = 2 } },
                { "b/#", 2 },
                { "$share/g/c", { qos = 0, retain_handling = 1 } },
            }, { subscription_identifier = 300, user_property = { { "s", "1" } } })
            local p = fb:expect("SUBSCRIBE")
            assert.are.equal(hex(V5.subscribe({
                packet_id = mid,
                properties = { subscription_identifier = 300, user_property = { { "s", "1" } } },
                topics = {
                    { "a/+", { qos = 1, no_local = true, retain_as_published = true,
                               retain_handling = 2 } },
                    { "b/#", 2 },
                    { "$share/g/c", { qos = 0, retain_handling = 1 } },
                },
            })), hex(p.raw))
        end)

        it("refuses subscription options under 3.1.1 and bad ones under 5.0", function()
            local c4 = clients:new("z5-sub4", true)                      -- 3.1.1
            assert_argerror(raises(c4.subscribe, c4, { { "a", { qos = 1, no_local = true } } }),
                            "no_local")
            local c = new_client("z5-subopt", true)
            assert_argerror(raises(c.subscribe, c, { { "a", { qos = 1, retain_handling = 3 } } }),
                            "retain_handling")
            assert_argerror(raises(c.subscribe, c, { { "a", 1 } }, { topic_alias = 1 }),
                            "topic_alias")
        end)

        it("UNSUBSCRIBE with user properties; one filter string is accepted", function()
            local c, fb = connected()
            local mid = c:unsubscribe({ "a/+", "b" }, { user_property = { { "u", "1" } } })
            assert.are.equal(hex(V5.unsubscribe({ packet_id = mid, filters = { "a/+", "b" },
                                                  properties = { user_property = { { "u", "1" } } } })),
                             hex(fb:expect("UNSUBSCRIBE").raw))
            mid = c:unsubscribe("c")
            assert.are.equal(hex(V5.unsubscribe({ packet_id = mid, filters = { "c" } })),
                             hex(fb:expect("UNSUBSCRIBE").raw))
        end)

        it("DISCONNECT: the short form, and a reason code with properties", function()
            local c, fb = connected()
            c:disconnect()
            local _, seen = fb:expect_closed()
            assert.are.equal(hex(V5.disconnect()), hex(seen[#seen].raw))   -- e0 00
            assert.are.equal(hex("\224\0"), hex(seen[#seen].raw))

            -- Persistent (CONNECT said 0xFFFFFFFF): a new session expiry may be given.
            local c2, fb2 = connected(nil, nil, nil, nil, false)
            c2:disconnect(0x04, { reason_string = "bye", user_property = { { "k", "v" } },
                                  session_expiry_interval = 10 })
            _, seen = fb2:expect_closed()
            assert.are.equal(hex(V5.disconnect({ reason_code = 0x04, properties = {
                session_expiry_interval = 10, reason_string = "bye",
                user_property = { { "k", "v" } } } })), hex(seen[#seen].raw))
        end)

        it("refuses a session expiry at DISCONNECT when the CONNECT asked for 0, sending nothing",
           function()
            local c, fb = connected()
            assert_argerror(raises(c.disconnect, c, 0, { session_expiry_interval = 60 }),
                            "session_expiry_interval")
            -- Still connected, nothing sent: 0 is allowed and goes out as asked.
            assert.is_true(c:is_connected())
            c:disconnect(0, { session_expiry_interval = 0 })
            local _, seen = fb:expect_closed()
            assert.are.equal(hex(V5.disconnect({ properties = { session_expiry_interval = 0 } })),
                             hex(seen[#seen].raw))
            -- A CONNECT with an interval of its own allows another at DISCONNECT.
            local c2, fb2 = connected({ session_expiry_interval = 5 })
            c2:disconnect(0, { session_expiry_interval = 60 })
            _, seen = fb2:expect_closed()
            assert.are.equal(hex(V5.disconnect({ properties = { session_expiry_interval = 60 } })),
                             hex(seen[#seen].raw))
        end)

        it("disconnect() flushes what is queued first; close() sends no DISCONNECT", function()
            local c, fb = connected()
            for i = 1, 3 do c:publish("flush/t", tostring(i), 0) end
            c:disconnect()
            for i = 1, 3 do
                assert.are.equal(tostring(i), fb:expect("PUBLISH").payload)
            end
            local _, seen = fb:expect_closed()
            assert.are.equal("DISCONNECT", seen[#seen] and seen[#seen].name)

            local c2, fb2 = connected()
            c2:close()
            _, seen = fb2:expect_closed()
            for _, p in ipairs(seen) do
                assert.are_not.equal("DISCONNECT", p.name)
            end
        end)

        it("disconnect() and close() return at once when the broker already closed", function()
            local c, fb, rec = connected({ reconnect = false })
            fb:close_client()
            assert.is_true(wait_for(function() return #rec.disconnects == 1 end))
            local t0 = helpers.now()
            c:disconnect()
            c:close()
            assert.is_true(helpers.now() - t0 < 1)
        end)

        it("refuses a property DISCONNECT cannot carry", function()
            local c = connected()
            assert_argerror(raises(c.disconnect, c, 0, { topic_alias = 1 }), "topic_alias")
            assert.is_true(c:is_connected())
        end)

        it("acks in the short form: PUBACK, PUBREC and PUBCOMP of received messages",
           function()
            local _, fb, rec = connected()
            fb:send(V5.publish({ topic = "in/1", payload = "a", qos = 1, packet_id = 5 }))
            assert.are.equal(hex("\64\2\0\5"), hex(fb:expect("PUBACK").raw))
            fb:send(V5.publish({ topic = "in/2", payload = "b", qos = 2, packet_id = 6 }))
            assert.are.equal(hex("\80\2\0\6"), hex(fb:expect("PUBREC").raw))
            fb:send(V5.pubrel(6))
            assert.are.equal(hex("\112\2\0\6"), hex(fb:expect("PUBCOMP").raw))
            assert.is_true(wait_for(function() return #rec.messages == 2 end))
        end)
    end)

    ---------------------------------------------------------------------------
    describe("what the client receives", function()
        it("gives PUBACK's reason code, name and properties to its callback and to wait",
           function()
            local c, fb, rec = connected()
            local mid = c:publish("z5/a", "x", 1)
            fb:expect("PUBLISH")
            fb:send(V5.puback({ packet_id = mid, reason_code = 0x10,
                                properties = { reason_string = "nobody",
                                               user_property = { { "a", "1" } } } }))
            local d = assert(c:wait(mid, 5))
            assert.are.same({ mid, 0x10, "no matching subscribers" },
                            { d.mid, d.reason_code, d.reason })
            assert.are.same({ reason_string = "nobody", user_property = { { "a", "1" } } },
                            d.properties)
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.PUBACK) == 1 end))
            -- A short-form PUBACK: code 0 "success", properties absent.
            mid = c:publish("z5/a", "y", 1)
            fb:expect("PUBLISH")
            fb:send(V5.puback(mid))
            d = assert(c:wait(mid, 5))
            assert.are.same({ 0, "success" }, { d.reason_code, d.reason })
            assert.is_nil(d.properties)
        end)

        it("finishes a refused QoS 1 publish: code in the callback, wait fails, id and slot free",
           function()
            local c, fb, rec = connected({ max_inflight = 20 },
                                         { connack_properties = { receive_maximum = 1 } })
            local m1 = c:publish("z5/r", "1", 1)
            local m2 = c:publish("z5/r", "2", 1)             -- waits for the window
            assert.are.equal(m1, fb:expect("PUBLISH").packet_id)
            fb:expect_nothing(0.3)
            assert.are.equal(1, c:stats().inflight)
            fb:send(V5.puback({ packet_id = m1, reason_code = 0x97 }))
            local d, err = c:wait(m1, 5)
            assert.is_nil(d)
            assert_refused(err, 0x97, "quota exceeded")
            local acked = acks_of(rec, mqtt.PUBACK)
            assert.are.same({ m1, 0x97, "quota exceeded" },
                            { acked[1].mid, acked[1].reason_code, acked[1].reason })
            -- The window slot is free again: the second publish goes out now.
            assert.are.equal(m2, fb:expect("PUBLISH").packet_id)
            fb:send(V5.puback(m2))
            assert(c:wait(m2, 5))
            assert.are.same({ 0, 0 }, { c:stats().inflight, c:stats().queued })
        end)

        it("ends a refused QoS 2 publish at PUBREC: no PUBREL follows", function()
            local c, fb, rec = connected()
            local m1 = c:publish("z5/q2", "1", 2)
            assert.are.equal(m1, fb:expect("PUBLISH").packet_id)
            fb:send(V5.pubrec({ packet_id = m1, reason_code = 0x87,
                                properties = { reason_string = "no" } }))
            local d, err = c:wait(m1, 5)
            assert.is_nil(d)
            assert_refused(err, 0x87, "not authorized")
            local pubrec = acks_of(rec, mqtt.PUBREC)[1]
            assert.are.same({ m1, 0x87, "not authorized", { reason_string = "no" } },
                            { pubrec.mid, pubrec.reason_code, pubrec.reason, pubrec.properties })
            assert.are.equal(0, c:stats().inflight)
            -- The next packet the broker sees is the next publish, not a PUBREL.
            local m2 = c:publish("z5/q2", "2", 2)
            local p = fb:expect("PUBLISH")
            assert.are.same({ m2, "2" }, { p.packet_id, p.payload })
            -- A successful QoS 2 flow: PUBREL in the short form, PUBCOMP's code reported.
            fb:send(V5.pubrec(m2))
            assert.are.equal(hex(V5.pubrel(m2)), hex(fb:expect("PUBREL").raw))
            fb:send(V5.pubcomp({ packet_id = m2, reason_code = 0x92 }))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.PUBCOMP) == 1 end))
            local pubcomp = acks_of(rec, mqtt.PUBCOMP)[1]
            assert.are.same({ m2, 0x92, "packet identifier not found" },
                            { pubcomp.mid, pubcomp.reason_code, pubcomp.reason })
        end)

        it("SUBACK and UNSUBACK: reason codes per filter, granted_qos, properties", function()
            local c, fb, rec = connected()
            local mid = c:subscribe({ { "a", 1 }, { "b", 2 } })
            fb:expect("SUBSCRIBE")
            fb:send(V5.suback({ packet_id = mid, codes = { 1, 0x87 },
                                properties = { reason_string = "b refused" } }))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.SUBACK) == 1 end))
            local s = acks_of(rec, mqtt.SUBACK)[1]
            assert.are.same({ 1, 0x87 }, s.granted_qos)
            assert.are.same({ 1, 0x87 }, s.reason_codes)
            assert.are.same({ reason_string = "b refused" }, s.properties)
            mid = c:unsubscribe({ "a", "zz" })
            fb:expect("UNSUBSCRIBE")
            fb:send(V5.unsuback({ packet_id = mid, codes = { 0, 0x11 } }))
            assert.is_true(wait_for(function() return #acks_of(rec, mqtt.UNSUBACK) == 1 end))
            local u = acks_of(rec, mqtt.UNSUBACK)[1]
            assert.are.same({ mid, { 0, 0x11 } }, { u.mid, u.reason_codes })
        end)

        it("gives received messages their properties (absent when none)", function()
            local _, fb, rec = connected()
            local props = { payload_format_indicator = 1, message_expiry_interval = 9,
                            content_type = "t", response_topic = "r", correlation_data = "\0c",
                            subscription_identifier = { 3, 70000 },
                            user_property = { { "k", "1" }, { "k", "2" } } }
            fb:send(V5.publish({ topic = "in/p", payload = "a", qos = 1, packet_id = 1,
                                 properties = props }))
            fb:send(V5.publish({ topic = "in/q", payload = "b" }))
            assert.is_true(wait_for(function() return #rec.messages == 2 end))
            assert.are.same(props, rec.messages[1].properties)
            assert.is_nil(rec.messages[2].properties)
        end)

        it("CONNACK: reason code, name and properties; server_properties()", function()
            local props = { receive_maximum = 5, maximum_qos = 1, retain_available = true,
                            maximum_packet_size = 1000, topic_alias_maximum = 3,
                            wildcard_subscription_available = true,
                            subscription_identifier_available = false,
                            shared_subscription_available = true,
                            response_information = "resp/", reason_string = "hi",
                            user_property = { { "x", "y" } } }
            local c, _, rec = connected(nil, { connack_properties = props })
            local ev = rec.connacks[1]
            assert.are.same({ 0, 0, "success", false },
                            { ev.return_code, ev.reason_code, ev.reason, ev.session_present })
            assert.are.same(props, ev.properties)
            assert.are.same(props, c:server_properties())
        end)

        it("reports a refused CONNACK with its 5.0 code and server_reference", function()
            local c, rec = new_client("z5-ref", true, { reconnect = false })
            local fb = brokers:new()
            c:connect_async({ host = fb.host, port = fb.port, keepalive = 30 })
            fb:handshake({ reason_code = 0x9C,
                           connack_properties = { server_reference = "other:1883" } })
            assert.is_true(wait_for(function() return #rec.connacks == 1 end))
            local ev = rec.connacks[1]
            assert.are.same({ 0x9C, 0x9C, "use another server" },
                            { ev.return_code, ev.reason_code, ev.reason })
            assert.are.same({ 0x9C, "use another server" }, { ev.error.code, ev.error.name })
            assert.are.equal("other:1883", ev.error.server_reference)
        end)

        it("reports the broker's DISCONNECT with its code, name and properties", function()
            local c, fb, rec = connected({ reconnect = false })
            fb:send(V5.disconnect({ reason_code = 0x9D,
                                    properties = { reason_string = "moving",
                                                   server_reference = "b2:1883" } }))
            fb:close_client()
            assert.is_true(wait_for(function() return #rec.disconnects == 1 end))
            local ev = rec.disconnects[1]
            assert.are.same({ 0x9D, "server moved" }, { ev.reason_code, ev.reason })
            assert.are.same({ reason_string = "moving", server_reference = "b2:1883" },
                            ev.properties)
            assert.is_not_nil(ev.error)
            assert.are.equal("b2:1883", ev.error.server_reference)
            assert.is_false(c:is_connected())
        end)

        it("a loss or the client's own disconnect carries no reason_code", function()
            local c, fb, rec = connected({ reconnect = false })
            fb:close_client()
            assert.is_true(wait_for(function() return #rec.disconnects == 1 end))
            assert.is_nil(rec.disconnects[1].reason_code)
            assert.is_nil(rec.disconnects[1].properties)
            c:close()
        end)

        it("matches topics against the filter part of a shared filter", function()
            assert.is_true(mqtt.topic_matches("$share/g/a/+", "a/b"))
            assert.is_false(mqtt.topic_matches("$share/g/a/+", "g/a/b"))
            assert.is_true(mqtt.topic_filter("$share/grp/s/#")({ message = { topic = "s/x/y" } }))
        end)

        it("names reason codes: mqtt.reason_name", function()
            assert.are.equal("success", mqtt.reason_name(0))
            assert.are.equal("granted qos 1", mqtt.reason_name(1, mqtt.SUBACK))
            assert.are.equal("no matching subscribers", mqtt.reason_name(0x10))
            assert.are.equal("not authorized", mqtt.reason_name(0x87))
            assert.are.equal("quota exceeded", mqtt.reason_name(0x97))
            assert.are.equal("packet too large", mqtt.reason_name(0x95))
            assert.are.equal("disconnect with will message", mqtt.reason_name(4, mqtt.DISCONNECT))
        end)
    end)

    ---------------------------------------------------------------------------
    describe("the client follows what the broker announced", function()
        it("uses min(max_inflight, receive_maximum) as the window", function()
            local c, fb = connected({ max_inflight = 20 },
                                    { connack_properties = { receive_maximum = 2 } })
            local mids = { c:publish("w", "1", 1), c:publish("w", "2", 1), c:publish("w", "3", 1) }
            assert.are.equal(mids[1], fb:expect("PUBLISH").packet_id)
            assert.are.equal(mids[2], fb:expect("PUBLISH").packet_id)
            fb:expect_nothing(0.3)
            assert.are.equal(2, c:stats().inflight)
            fb:send(V5.puback(mids[1]))
            assert.are.equal(mids[3], fb:expect("PUBLISH").packet_id)

            local c2, fb2 = connected({ max_inflight = 1 },
                                      { connack_properties = { receive_maximum = 10 } })
            local a = c2:publish("w", "1", 1)
            c2:publish("w", "2", 1)
            assert.are.equal(a, fb2:expect("PUBLISH").packet_id)
            fb2:expect_nothing(0.3)
            assert.are.equal(1, c2:stats().inflight)
        end)

        it("refuses QoS above maximum_qos with 0x9B; nothing sent, no id used", function()
            local c, fb = connected(nil, { connack_properties = { maximum_qos = 0 } })
            assert_refused(raises(c.publish, c, "q", "x", 1), 0x9B, "qos not supported")
            assert_refused(raises(c.publish, c, "q", "x", 2), 0x9B, "qos not supported")
            assert.are.same({ 0, 0 }, { c:stats().queued, c:stats().inflight })
            c:publish("q", "ok", 0)
            assert.are.equal("ok", fb:expect("PUBLISH").payload)
        end)

        it("refuses retain when retain_available is false with 0x9A", function()
            local c, fb = connected(nil, { connack_properties = { retain_available = false } })
            assert_refused(raises(c.publish, c, "r", "x", 0, true), 0x9A, "retain not supported")
            c:publish("r", "ok", 0, false)
            assert.are.equal("ok", fb:expect("PUBLISH").payload)
        end)

        it("refuses any packet over maximum_packet_size (fixed header included) with 0x95",
           function()
            local c, fb = connected(nil, { connack_properties = { maximum_packet_size = 100 } })
            -- PUBLISH QoS 0 to "t": 1 + 1 (length) + 3 (topic) + 1 (properties) + payload.
            c:publish("t", string.rep("x", 94))
            assert.are.equal(100, #fb:expect("PUBLISH").raw)
            assert_refused(raises(c.publish, c, "t", string.rep("x", 95)), 0x95,
                           "packet too large")
            assert_refused(raises(c.subscribe, c, string.rep("s", 100), 0), 0x95,
                           "packet too large")
            assert_refused(raises(c.unsubscribe, c, string.rep("s", 100)), 0x95,
                           "packet too large")
            assert.are.same({ 0, 0 }, { c:stats().queued, c:stats().inflight })
            c:publish("t", "ok")
            assert.are.equal("ok", fb:expect("PUBLISH").payload)
        end)

        it("leaves out a DISCONNECT's and an AUTH's reason string and user properties " ..
           "that would take it over maximum_packet_size", function()
            local long = string.rep("r", 60)
            local c, fb = connected({ properties = { authentication_method = "M" } },
                                    { connack_properties = { maximum_packet_size = 40,
                                                             authentication_method = "M" } },
                                    nil, nil, false)
            -- AUTH: 2 + 1 + 1 + 4 ("M") + 8 (data) = 16 bytes fit; the reason string does not.
            c:auth({ authentication_method = "M", authentication_data = "again!",
                     reason_string = long, user_property = { { "k", "v" } } }, 0x19)
            assert.are.equal(hex(V5.auth({ reason_code = 0x19, properties = {
                authentication_method = "M", authentication_data = "again!" } })),
                hex(fb:expect("AUTH").raw))
            -- A reason string that fits stays.
            c:auth({ authentication_method = "M", reason_string = "short" }, 0x19)
            assert.are.equal(hex(V5.auth({ reason_code = 0x19, properties = {
                authentication_method = "M", reason_string = "short" } })),
                hex(fb:expect("AUTH").raw))
            c:disconnect(0x04, { session_expiry_interval = 10, reason_string = long,
                                 user_property = { { "k", "v" } } })
            local _, seen = fb:expect_closed()
            assert.are.equal(hex(V5.disconnect({ reason_code = 0x04, properties = {
                session_expiry_interval = 10 } })), hex(seen[#seen].raw))
        end)

        it("decides the outgoing alias before the size check", function()
            local c, fb = connected(nil, { connack_properties = { maximum_packet_size = 100,
                                                                 topic_alias_maximum = 1 } })
            local topic = string.rep("t", 20)
            c:publish(topic, "first")
            assert.are.equal(topic, fb:expect("PUBLISH").topic)
            -- 28 + 90 = 118 bytes with the topic, 8 + 90 = 98 with the alias alone.
            c:publish(topic, string.rep("x", 90))
            local p = fb:expect("PUBLISH")
            assert.are.same({ "", 98 }, { p.topic, #p.raw })
        end)

        it("keeps max_inflight at 20 by default under 5.0", function()
            local c, fb = connected(nil, { connack_properties = { receive_maximum = 100 } })
            for i = 1, 21 do c:publish("d/t", tostring(i), 1) end
            for i = 1, 20 do
                assert.are.equal(tostring(i), fb:expect("PUBLISH").payload)
            end
            fb:expect_nothing(0.3)
            assert.are.equal(20, c:stats().inflight)
        end)

        it("refuses subscriptions the broker does not support: 0xA2, 0x9E, 0xA1", function()
            local c, fb = connected(nil, { connack_properties = {
                wildcard_subscription_available = false,
                shared_subscription_available = false,
                subscription_identifier_available = false } })
            assert_refused(raises(c.subscribe, c, "a/+", 0), 0xA2,
                           "wildcard subscriptions not supported")
            assert_refused(raises(c.subscribe, c, "a/#", 0), 0xA2,
                           "wildcard subscriptions not supported")
            assert_refused(raises(c.subscribe, c, "$share/g/a", 0), 0x9E,
                           "shared subscriptions not supported")
            assert_refused(raises(c.subscribe, c, { { "a", 0 } },
                                  { subscription_identifier = 1 }), 0xA1,
                           "subscription identifiers not supported")
            local mid = c:subscribe("plain", 1)
            assert.are.equal(mid, fb:expect("SUBSCRIBE").packet_id)
        end)

        it("uses server_keep_alive instead of the keepalive it asked for", function()
            local _, fb = connected(nil, { connack_properties = { server_keep_alive = 1 } },
                                    { keepalive = 60 })
            -- Asked 60 s: a PINGREQ within 3 s shows the broker's 1 s is used.
            local p = fb:expect("PINGREQ", 3)
            assert.are.equal("PINGREQ", p.name)
        end)

        it("takes the assigned client identifier and reconnects with it", function()
            local c, fb = connected(nil, { connack_properties = {
                assigned_client_identifier = "auto-42" } }, nil, "", false)
            assert.are.equal("auto-42", c:client_id())
            fb:close_client()
            local p = fb:handshake({ session_present = true })
            assert.are.equal("auto-42", p.client_id)
            assert.is_true(wait_for(function() return c:is_connected() end))
        end)
    end)

    ---------------------------------------------------------------------------
    describe("topic aliases", function()
        it("outgoing, automatic: topic and alias once, then the alias alone; LRU out",
           function()
            local c, fb = connected(nil, { connack_properties = { topic_alias_maximum = 2 } })
            local function sent(topic, payload)
                c:publish(topic, payload)
                local p = fb:expect("PUBLISH")
                assert.are.equal(payload, p.payload)
                return p.topic, p.properties.topic_alias
            end
            local t1, a1 = sent("alias/a", "1")
            assert.are.equal("alias/a", t1)
            assert.truthy(a1 == 1 or a1 == 2, tostring(a1))
            local t2, again = sent("alias/a", "2")
            assert.are.same({ "", a1 }, { t2, again })
            local tb, a2 = sent("alias/b", "4")
            assert.are.equal("alias/b", tb)
            assert.are.equal(3 - a1, a2)
            -- "alias/a" was used least recently: "alias/c" takes its alias.
            local tc, a3 = sent("alias/c", "5")
            assert.are.same({ "alias/c", a1 }, { tc, a3 })
            local ta, a4 = sent("alias/a", "6")
            assert.are.same({ "alias/a", a2 }, { ta, a4 })
            -- Forgotten at every new connection.
            fb:close_client()
            fb:handshake({ connack_properties = { topic_alias_maximum = 2 } })
            assert.is_true(wait_for(function() return c:is_connected() end))
            local tn = sent("alias/a", "7")
            assert.are.equal("alias/a", tn)
        end)

        it("sends exactly the alias bytes: PUBLISH with an empty topic", function()
            local c, fb = connected(nil, { connack_properties = { topic_alias_maximum = 1 } })
            c:publish("x/y", "1")
            local first = fb:expect("PUBLISH")
            c:publish("x/y", "2", 1)
            local second = fb:expect("PUBLISH")
            local alias = first.properties.topic_alias
            assert.are.equal(1, alias)
            assert.are.equal(hex(V5.publish({ topic = "x/y", payload = "1",
                                              properties = { topic_alias = 1 } })),
                             hex(first.raw))
            assert.are.equal(hex(V5.publish({ topic = "", payload = "2", qos = 1,
                                              packet_id = second.packet_id,
                                              properties = { topic_alias = 1 } })),
                             hex(second.raw))
        end)

        it("none when the broker allows none, or with topic_alias = false", function()
            local c, fb = connected()                         -- no topic_alias_maximum
            c:publish("n/a", "1")
            c:publish("n/a", "2")
            assert.is_nil(fb:expect("PUBLISH").properties.topic_alias)
            assert.are.equal("n/a", fb:expect("PUBLISH").topic)
            local c2, fb2 = connected({ topic_alias = false },
                                      { connack_properties = { topic_alias_maximum = 5 } })
            c2:publish("n/b", "1")
            c2:publish("n/b", "2")
            for _ = 1, 2 do
                local p = fb2:expect("PUBLISH")
                assert.are.same({ "n/b", "" }, { p.topic, p.prop_bytes })
            end
        end)

        it("manual: the alias given, topic and alias first, then the alias alone", function()
            local c, fb = connected({ topic_alias = "manual" },
                                    { connack_properties = { topic_alias_maximum = 2 } })
            c:publish("m/t", "1", 0, false, { topic_alias = 2 })
            local p = fb:expect("PUBLISH")
            assert.are.same({ "m/t", 2 }, { p.topic, p.properties.topic_alias })
            c:publish("m/t", "2", 0, false, { topic_alias = 2 })
            p = fb:expect("PUBLISH")
            assert.are.same({ "", 2 }, { p.topic, p.properties.topic_alias })
            c:publish("m/u", "3")                              -- no alias asked: none
            p = fb:expect("PUBLISH")
            assert.are.same({ "m/u", "" }, { p.topic, p.prop_bytes })
            assert_argerror(raises(c.publish, c, "m/t", "x", 0, false, { topic_alias = 3 }),
                            "topic_alias")
            assert_argerror(raises(c.publish, c, "m/t", "x", 0, false, { topic_alias = 0 }),
                            "topic_alias")
        end)

        it("incoming: up to our topic_alias_maximum, delivered with the full topic", function()
            local _, fb, rec = connected({ properties = { topic_alias_maximum = 2 } })
            fb:send(V5.publish({ topic = "in/a", payload = "1", properties = { topic_alias = 2 } }))
            fb:send(V5.publish({ topic = "", payload = "2", properties = { topic_alias = 2 } }))
            fb:send(V5.publish({ topic = "", payload = "3", qos = 1, packet_id = 9,
                                 properties = { topic_alias = 2 } }))
            assert.is_true(wait_for(function() return #rec.messages == 3 end))
            for i = 1, 3 do
                assert.are.equal("in/a", rec.messages[i].topic)
                assert.are.equal(2, rec.messages[i].properties.topic_alias)
            end
            assert.are.equal(9, fb:expect("PUBACK").packet_id)
        end)
    end)

    ---------------------------------------------------------------------------
    describe("a broker that breaks 5.0 gets a DISCONNECT with the reason", function()
        -- Sends `bytes` to a connected client (opts: client options) and checks
        -- that it answers DISCONNECT `code`, closes, and reports an
        -- MQTTProtocolError with that code.
        local function broken(bytes, code, opts)
            local c, fb, rec = connected(merged({ reconnect = false }, opts))
            fb:send(bytes)
            -- Acks may come first (0x93); then DISCONNECT with the code, then the close.
            local last
            while true do
                local p, why = fb:read_packet()
                if not p then
                    assert.are.equal("closed", why)
                    break
                end
                last = p
            end
            assert.are.equal("DISCONNECT", last and last.name)
            assert.are.equal(code, last.reason_code)
            assert.is_true(wait_for(function() return #rec.disconnects == 1 end))
            local err = rec.disconnects[1].error
            assert.is_true(mqtt.is_error(err, mqtt.MQTTProtocolError), tostring(err))
            assert.are.equal(code, err.code)
            assert.is_nil(rec.disconnects[1].reason_code)
            assert.is_false(c:is_connected())
            return err
        end

        it("0x81 malformed packet: an unknown property", function()
            broken(FB.packet(0x30, "\0\1t" .. "\2\99\0" .. "x"), 0x81)
        end)

        it("0x82 protocol error: a property given twice", function()
            broken(V5.publish({ topic = "t", prop_bytes = "\1\0\1\1" }), 0x82)
        end)

        it("0x93 receive maximum exceeded", function()
            broken(V5.publish({ topic = "t", qos = 2, packet_id = 1 }) ..
                   V5.publish({ topic = "t", qos = 2, packet_id = 2 }), 0x93,
                   { properties = { receive_maximum = 1 } })
        end)

        it("0x94 topic alias invalid: above our maximum, or none allowed", function()
            broken(V5.publish({ topic = "t", properties = { topic_alias = 3 } }), 0x94,
                   { properties = { topic_alias_maximum = 2 } })
            broken(V5.publish({ topic = "t", properties = { topic_alias = 1 } }), 0x94)
        end)

        it("0x95 packet too large: over our maximum_packet_size", function()
            local err = broken(V5.publish({ topic = "t", payload = string.rep("x", 60) }), 0x95,
                               { properties = { maximum_packet_size = 50 } })
            assert.are.equal("packet too large", err.name)
        end)
    end)

    ---------------------------------------------------------------------------
    describe("message expiry in the client's queue", function()
        it("drops an expired message and sends the remaining interval of a late one",
           function()
            local c = new_client("z5-exp", true)
            c:publish("e/gone", "x", 1, false, { message_expiry_interval = 1 })
            c:publish("e/late", "y", 1, false, { message_expiry_interval = 100 })
            socket.sleep(2.1)
            local fb = connect(c)
            local p = fb:expect("PUBLISH")
            assert.are.equal("e/late", p.topic)
            local left = p.properties.message_expiry_interval
            assert.truthy(left >= 90 and left <= 98, "remaining interval " .. tostring(left))
            assert.is_true(helpers.wait_until(function() return c:stats().expired == 1 end, 5))
        end)
    end)

    ---------------------------------------------------------------------------
    describe("enhanced authentication", function()
        it("runs the AUTH callback for each AUTH 0x18 during connect_async", function()
            local c = new_client("z5-auth", true, { properties = {
                authentication_method = "TOKEN-X", authentication_data = "c1" } })
            local auths = {}
            c:on(mqtt.AUTH, function(cl, d)
                auths[#auths + 1] = d
                if d.reason_code == 0x18 then
                    cl:auth({ authentication_method = "TOKEN-X",
                              authentication_data = d.properties.authentication_data .. "+c2" })
                end
            end)
            local fb = brokers:new()
            c:connect_async({ host = fb.host, port = fb.port, keepalive = 30 })
            local p = fb:handshake({ connack = false })
            assert.are.same({ authentication_method = "TOKEN-X", authentication_data = "c1" },
                            p.properties)
            fb:send(V5.auth({ reason_code = 0x18, properties = {
                authentication_method = "TOKEN-X", authentication_data = "s1" } }))
            local answer
            helpers.wait_until(function()
                answer = fb:read_packet(0.01)
                return answer ~= nil
            end, 5, step)
            assert.are.equal(hex(V5.auth({ reason_code = 0x18, properties = {
                authentication_method = "TOKEN-X", authentication_data = "s1+c2" } })),
                hex(answer and answer.raw))
            fb:send(V5.connack({ properties = { authentication_method = "TOKEN-X",
                                                authentication_data = "done" } }))
            assert.is_true(wait_for(function() return c:is_connected() end))
            assert.are.same({ 0x18, "continue authentication" },
                            { auths[1].reason_code, auths[1].reason })
            assert.are.equal("done", c:server_properties().authentication_data)
        end)

        it("runs the AUTH callbacks inside a blocking connect()", function()
            -- The broker runs in a child process: connect() blocks this thread.
            local script = [[
                local FB = require("fake_broker")
                local fb = FB.new { timeout = 10 }
                io.stdout:write(fb.port, "\n")
                io.stdout:flush()
                local p = fb:handshake({ connack = false })
                fb:send(FB.v5.auth({ reason_code = 0x18, properties = {
                    authentication_method = "TOKEN-X", authentication_data = "s1" } }))
                local a = fb:expect("AUTH")
                local ok = a.properties.authentication_data == "s1+c2"
                fb:send(FB.v5.connack({ reason_code = ok and 0 or 0x87 }))
                fb:expect_closed(5)
                fb:close()
            ]]
            local cmd = helpers.child_env() .. " exec timeout -k 1 20 " .. helpers.LUA ..
                        " -e " .. helpers.quote(script)
            local pipe = assert(io.popen("bash -c " ..
                helpers.quote(helpers.CLOSE_FDS .. cmd) .. " </dev/null 2>&1", "r"))
            local port = tonumber(pipe:read("*l"))
            assert.is_number(port, "the child broker did not start")
            local c = clients:new("z5-bauth", true, { protocol = mqtt.MQTTv5, reconnect = false,
                properties = { authentication_method = "TOKEN-X", authentication_data = "c1" } })
            local auths = 0
            c:on(mqtt.AUTH, function(cl, d)
                auths = auths + 1
                cl:auth({ authentication_method = "TOKEN-X",
                          authentication_data = d.properties.authentication_data .. "+c2" })
            end)
            c:connect({ host = "127.0.0.1", port = port, keepalive = 30 })
            assert.is_true(c:is_connected())
            assert.are.equal(1, auths)
            c:close()
            pipe:close()
        end)

        it("re-authenticates a live connection with auth(props, 0x19)", function()
            local c, fb, rec = connected({ properties = { authentication_method = "M" } },
                                         { connack_properties = { authentication_method = "M" } })
            c:auth({ authentication_method = "M", authentication_data = "again" }, 0x19)
            assert.are.equal(hex(V5.auth({ reason_code = 0x19, properties = {
                authentication_method = "M", authentication_data = "again" } })),
                hex(fb:expect("AUTH").raw))
            fb:send(V5.auth({ reason_code = 0, properties = { authentication_method = "M" } }))
            assert.is_true(wait_for(function() return #rec.auths == 1 end))
            assert.are.same({ 0, "success" }, { rec.auths[1].reason_code, rec.auths[1].reason })
        end)
    end)

    ---------------------------------------------------------------------------
    describe("request and respond", function()
        it("request subscribes once to its response topic and sends correlation data", function()
            local c, fb = connected(nil, nil, nil, "z5-req")
            -- Nobody answers: the request times out, and the bytes tell the rest.
            local msg, err = c:request("svc/time", "now?", { qos = 1, timeout = 0.5,
                                                             properties = { content_type = "t" } })
            assert.is_nil(msg)
            assert.are.equal("timeout", err.name)
            local sub = fb:expect("SUBSCRIBE")
            assert.are.equal("zmqtt/response/z5-req", sub.topics[1].filter)
            fb:send(V5.suback({ packet_id = sub.packet_id, codes = { 1 } }))
            -- A second request: no new SUBSCRIBE. (The first request's PUBLISH
            -- may have gone out before the SUBACK or not: both are allowed.)
            c:request("svc/time", "again", { qos = 0, timeout = 0.3,
                                              properties = { content_type = "t" } })
            local pubs = {}
            while true do
                local p, why = fb:read_packet(0.3)
                if not p then
                    assert.are.equal("timeout", why)
                    break
                end
                assert.are.equal("PUBLISH", p.name)
                if p.qos == 1 then fb:send(V5.puback(p.packet_id)) end
                pubs[#pubs + 1] = p
            end
            local last = pubs[#pubs]
            assert.are.same({ "svc/time", "again", 0 }, { last.topic, last.payload, last.qos })
            assert.are.equal("zmqtt/response/z5-req", last.properties.response_topic)
            assert.are.equal("t", last.properties.content_type)
            assert.is_string(last.properties.correlation_data)
            if #pubs == 2 then
                assert.are.same({ "now?", 1 }, { pubs[1].payload, pubs[1].qos })
                assert.are_not.equal(pubs[1].properties.correlation_data,
                                     last.properties.correlation_data)
            end
            assert.truthy(#pubs == 1 or #pubs == 2, #pubs .. " PUBLISH packets")
        end)

        it("uses the broker's response_information for the response topic", function()
            local c, fb = connected(nil, { connack_properties = { response_information = "ri/" } },
                                    nil, "z5-ri")
            c:request("svc/x", "q", { timeout = 0.2 })
            assert.are.equal("ri/z5-ri", fb:expect("SUBSCRIBE").topics[1].filter)
        end)

        it("respond publishes to the response topic with the correlation data only", function()
            local c, fb, rec = connected()
            fb:send(V5.publish({ topic = "svc/q", payload = "ask", qos = 0, properties = {
                response_topic = "back/1", correlation_data = "\1\2", content_type = "ct",
                user_property = { { "u", "v" } } } }))
            assert.is_true(wait_for(function() return #rec.messages == 1 end))
            c:respond(rec.messages[1], "answer", 0)
            local p = fb:expect("PUBLISH")
            assert.are.equal(hex(V5.publish({ topic = "back/1", payload = "answer", properties = {
                correlation_data = "\1\2" } })), hex(p.raw))
            fb:send(V5.publish({ topic = "svc/q", payload = "no topic" }))
            assert.is_true(wait_for(function() return #rec.messages == 2 end))
            assert.has_error(function() c:respond(rec.messages[2], "x", 0) end)
        end)

        it("request and respond raise under 3.1.1", function()
            local c = connected({ protocol = mqtt.MQTTv311 })
            assert.are.equal(4, c:protocol())
            assert.has_error(function() c:request("a", "b", { timeout = 0.1 }) end)
            local msg = setmetatable({ topic = "a", payload = "", qos = 0, retain = false, mid = 0,
                                       properties = { response_topic = "r" } },
                                     mqtt.MQTTMessage)
            assert.has_error(function() c:respond(msg, "x", 0) end)
        end)
    end)
end)

---------------------------------------------------------------------------
-- Against mosquitto 2.0.11
---------------------------------------------------------------------------

describe("MQTT 5.0 (mosquitto)", function()
    local broker, clients = helpers.with_broker({
        max_inflight_messages = 3, max_keepalive = 20, max_topic_alias = 4,
        auto_id_prefix = "zz5-", max_packet_size = 2000,
    }, "z5m", { protocol = 5, reconnect = FAST })

    local function connect(c, keepalive)
        c:connect(HOST, keepalive or 10, broker.port)
        assert.are.equal(5, c:protocol())
        return c
    end

    it("reads the broker's CONNACK properties and follows them", function()
        local c = connect(clients:new(), 60)
        local sp = c:server_properties()
        assert.are.equal(3, sp.receive_maximum)
        assert.are.equal(20, sp.server_keep_alive)
        assert.are.equal(4, sp.topic_alias_maximum)
        assert.are.equal(2000, sp.maximum_packet_size)
        assert_refused(raises(c.publish, c, "big", string.rep("x", 2000), 1), 0x95,
                       "packet too large")
        -- The window: never more than 3 in flight, all acknowledged.
        local mids, most = {}, 0
        for i = 1, 10 do mids[i] = c:publish("win/t", tostring(i), 1) end
        for _, mid in ipairs(mids) do
            most = math.max(most, c:stats().inflight)
            assert(c:wait(mid, 5))
        end
        assert.is_true(most <= 3, "in flight: " .. most)
    end)

    it("gets an assigned id for \"\" and resumes its session with it", function()
        local c = clients:new("", false)
        local rec = helpers.record_events(c)
        connect(c)
        local id = c:client_id()
        assert.truthy(id:find("^zz5%-"), id)
        helpers.subscribe_wait(c, "resume/t", 1)
        c:disconnect()
        connect(c)
        assert.are.equal(id, c:client_id())
        assert.is_true(helpers.wait_dispatch(function() return #rec.connacks == 2 end))
        assert.is_true(rec.connacks[2].session_present)
    end)

    it("carries aliases, user properties and correlation data end to end", function()
        local sub = connect(clients:new())
        local got = helpers.watch(sub, "e2e/#", 1)
        local pub = connect(clients:new())
        local props = { user_property = { { "a", "1" }, { "a", "2" } }, content_type = "c/t",
                        correlation_data = "\0\1", response_topic = "e2e/reply",
                        payload_format_indicator = 1 }
        for i = 1, 3 do
            assert(pub:wait(pub:publish("e2e/x", "m" .. i, 1, false, props), 5))
        end
        assert.is_true(helpers.wait_dispatch(function() return #got == 3 end))
        for i = 1, 3 do
            assert.are.equal("e2e/x", got[i].topic)
            assert.are.equal("m" .. i, got[i].payload)
            for k, v in pairs(props) do
                assert.are.same(v, got[i].properties[k], k)
            end
        end
    end)

    it("subscription identifiers and no_local", function()
        local c = connect(clients:new())
        local got = helpers.collect(c)
        local ack = assert(c:wait(c:subscribe({ { "si/#", { qos = 1, no_local = true } } },
                                              { subscription_identifier = 77 }), 5))
        assert.are.same({ 1 }, ack.reason_codes)
        assert(c:wait(c:publish("si/own", "mine", 1), 5))    -- not delivered back
        local other = connect(clients:new())
        assert(other:wait(other:publish("si/other", "theirs", 1), 5))
        assert.is_true(helpers.wait_dispatch(function() return #got >= 1 end))
        assert.are.equal(1, #got)
        assert.are.equal("theirs", got[1].payload)
        assert.are.same({ 77 }, got[1].properties.subscription_identifier)
    end)

    it("shared subscriptions deliver each message to one member (a 3.1.1 one too)", function()
        local a = connect(clients:new())
        local b = clients:new(nil, true, { reconnect = FAST })             -- 3.1.1
        b:connect(HOST, 10, broker.port)
        assert.are.equal(4, b:protocol())
        local got_a, got_b = helpers.collect(a), helpers.collect(b)
        assert(a:wait(a:subscribe("$share/grp/sh/t", 1), 5))
        assert(b:wait(b:subscribe("$share/grp/sh/t", 1), 5))
        local p = connect(clients:new())
        for i = 1, 6 do assert(p:wait(p:publish("sh/t", tostring(i), 1), 5)) end
        assert.is_true(helpers.wait_dispatch(function() return #got_a + #got_b == 6 end))
        helpers.wait_dispatch(function() return false end, 0.2)
        assert.are.equal(6, #got_a + #got_b)
    end)

    it("a retained message keeps its remaining expiry; disconnect(0x04) sends the will",
       function()
        local p = connect(clients:new())
        assert(p:wait(p:publish("ex/r", "kept", 1, true, { message_expiry_interval = 100 }), 5))
        local late = connect(clients:new())
        local got = helpers.watch(late, "ex/r", 1)
        assert.is_true(helpers.wait_dispatch(function() return #got == 1 end))
        local left = got[1].properties.message_expiry_interval
        assert.truthy(left >= 90 and left <= 100, tostring(left))

        local watcher = connect(clients:new())
        local wills = helpers.watch(watcher, "will/z5", 0)
        local w = clients:new()
        w:set_will("will/z5", "gone", 0, false, { content_type = "w/c" })
        connect(w)
        w:disconnect(0x04)
        assert.is_true(helpers.wait_dispatch(function() return #wills == 1 end))
        assert.are.equal("gone", wills[1].payload)
        assert.are.equal("w/c", wills[1].properties.content_type)
    end)

    it("request/respond round trip through the broker with a responder process", function()
        local log = helpers.tmpdir("z5-rr") .. "/responder.log"
        local script = ([[
            local mqtt = require("mqtt")
            local c = mqtt.Client("z5-responder", true, {protocol = 5})
            c:on(mqtt.PUBLISH, function(cl, d)
                cl:respond(d.message, "re:" .. d.message.payload, 1)
            end)
            c:connect("127.0.0.1", 10, %d)
            assert(c:wait(c:subscribe("rr/svc", 1), 5))
            io.stdout:write("ready\n") io.stdout:flush()
            local t = os.time() + 20
            while os.time() < t do c:dispatch(0.05) end
        ]]):format(broker.port)
        local proc = helpers.start_process(helpers.LUA .. " -e " .. helpers.quote(script), log,
                                           helpers.child_env())
        finally(function() proc.stop() end)
        assert.is_true(helpers.wait_until(function()
            return (helpers.read_file(log) or ""):find("ready", 1, true) ~= nil
        end, 10), helpers.read_file(log))
        local c = connect(clients:new("z5-requester"))
        local reply, err = c:request("rr/svc", "ping", { qos = 1, timeout = 5 })
        assert.is_not_nil(reply, tostring(err))
        assert.are.equal("re:ping", reply.payload)
        assert.are.equal("zmqtt/response/z5-requester", reply.topic)
    end)
end)
