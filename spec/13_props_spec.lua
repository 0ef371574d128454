-- spec/13_props_spec.lua: the Lua side of MQTT 5.0 through the public API:
-- properties on publish, set_will, subscribe and unsubscribe (argument
-- errors naming the property, before anything is queued), subscription
-- options, shared subscriptions under 3.1.1, mqtt.reason_name and the
-- protocol constants, and what callbacks' data carries under 3.1.1 (reason
-- codes, no properties), against the scripted fake broker. The conversion of
-- every property both ways is spec/c/lua_props.lua's.

local helpers = require("helpers")
local mqtt = require("mqtt")
local FB = require("fake_broker")

-- Asserts that fn raises the argument error #argn of fname whose text holds
-- every string of `mentions`.
local function assert_argerror(fn, fname, argn, mentions)
    local ok, err = pcall(fn)
    assert.is_false(ok, "no error raised")
    assert.is_true(mqtt.is_error(err), "not an MQTTError: " .. tostring(err))
    assert.are.equal("invalid argument", err.name)
    assert.matches("bad argument #" .. argn .. " to '" .. fname .. "' (", err.message, 1, true)
    for _, m in ipairs(mentions) do
        assert.matches(m, err.message, 1, true)
    end
end

describe("MQTT 5.0, the Lua side", function()
    describe("constants", function()
        it("has the protocol levels CONNECT carries", function()
            assert.are.equal(4, mqtt.MQTTv311)
            assert.are.equal(5, mqtt.MQTTv5)
        end)

        it("names reason codes as MQTT 5.0 section 2.4 does, per packet", function()
            local cases = {
                { 0x00, nil, "success" },
                { 0x00, mqtt.PUBACK, "success" },
                { 0x00, mqtt.SUBACK, "granted qos 0" },
                { 0x01, mqtt.SUBACK, "granted qos 1" },
                { 0x02, mqtt.SUBACK, "granted qos 2" },
                { 0x00, mqtt.DISCONNECT, "normal disconnection" },
                { 0x04, mqtt.DISCONNECT, "disconnect with will message" },
                { 0x10, mqtt.PUBACK, "no matching subscribers" },
                { 0x11, mqtt.UNSUBACK, "no subscription existed" },
                { 0x87, nil, "not authorized" },
                { 0x87, mqtt.SUBACK, "not authorized" },
                { 0x8E, mqtt.DISCONNECT, "session taken over" },
                { 0x95, nil, "packet too large" },
                { 0x97, mqtt.PUBREC, "quota exceeded" },
                { 0x9E, mqtt.SUBACK, "shared subscriptions not supported" },
                { 0xA2, mqtt.DISCONNECT, "wildcard subscriptions not supported" },
            }
            for _, c in ipairs(cases) do
                assert.are.equal(c[3], mqtt.reason_name(c[1], c[2]),
                    string.format("0x%02X in %s", c[1], tostring(c[2])))
            end
            -- Codes that do not exist, or not in that packet.
            assert.is_nil(mqtt.reason_name(0x05))
            assert.is_nil(mqtt.reason_name(0x01, mqtt.PUBACK))
            assert.is_nil(mqtt.reason_name(0x87, mqtt.PUBREL))
            assert.is_nil(mqtt.reason_name(0x8E, mqtt.CONNACK))
        end)

        it("refuses what is not a code or a packet type", function()
            assert_argerror(function() return mqtt.reason_name() end, "reason_name", 1, { "code" })
            assert_argerror(function() return mqtt.reason_name("x") end, "reason_name", 1, { "code" })
            assert_argerror(function() return mqtt.reason_name(256) end, "reason_name", 1, { "code" })
            assert_argerror(function() return mqtt.reason_name(1.5) end, "reason_name", 1, { "code" })
            assert_argerror(function() return mqtt.reason_name(0, 7) end, "reason_name", 2, { "packet type" })
            assert_argerror(function() return mqtt.reason_name(0, "SUBACK") end, "reason_name", 2,
                { "packet type" })
        end)
    end)

    describe("properties of a 3.1.1 client's calls", function()
        local clients = helpers.clients("zprops")
        helpers.close_after_each(clients)

        -- {label, call, fname, argn, mentions}: each raises before anything is queued.
        local CASES = {
            { "a CONNECT property in PUBLISH", function(c)
                return c:publish("a/b", "x", 1, false, { session_expiry_interval = 5 }) end,
              "publish", 5, { 'property "session_expiry_interval" is not allowed in PUBLISH' } },
            { "subscription_identifier in PUBLISH", function(c)
                return c:publish("a/b", "x", 1, false, { subscription_identifier = 1 }) end,
              "publish", 5, { '"subscription_identifier" is not allowed in PUBLISH' } },
            { "an unknown name", function(c)
                return c:publish("a/b", "x", 1, false, { content_typo = "t" }) end,
              "publish", 5, { 'unknown property "content_typo"' } },
            { "a negative expiry", function(c)
                return c:publish("a/b", "x", 1, false, { message_expiry_interval = -1 }) end,
              "publish", 5, { '"message_expiry_interval" must be an integer from 0 to 4294967295' } },
            { "an expiry of 2^32", function(c)
                return c:publish("a/b", "x", 1, false, { message_expiry_interval = 2 ^ 32 }) end,
              "publish", 5, { '"message_expiry_interval"' } },
            { "an expiry as a string", function(c)
                return c:publish("a/b", "x", 1, false, { message_expiry_interval = "10" }) end,
              "publish", 5, { '"message_expiry_interval"' } },
            { "topic_alias 0", function(c)
                return c:publish("a/b", "x", 1, false, { topic_alias = 0 }) end,
              "publish", 5, { '"topic_alias" must be an integer from 1 to 65535' } },
            { "payload_format_indicator as a boolean", function(c)
                return c:publish("a/b", "x", 1, false, { payload_format_indicator = true }) end,
              "publish", 5, { '"payload_format_indicator" must be an integer from 0 to 1' } },
            { "content_type as a number", function(c)
                return c:publish("a/b", "x", 1, false, { content_type = 5 }) end,
              "publish", 5, { '"content_type" must be a string' } },
            { "content_type not UTF-8", function(c)
                return c:publish("a/b", "x", 1, false, { content_type = "\255" }) end,
              "publish", 5, { '"content_type" must be valid UTF-8' } },
            { "response_topic of 65536 bytes", function(c)
                return c:publish("a/b", "x", 1, false, { response_topic = string.rep("r", 65536) }) end,
              "publish", 5, { '"response_topic" is longer than 65535 bytes' } },
            { "correlation_data as a table", function(c)
                return c:publish("a/b", "x", 1, false, { correlation_data = {} }) end,
              "publish", 5, { '"correlation_data" must be a string' } },
            { "a user property pair without its value", function(c)
                return c:publish("a/b", "x", 1, false, { user_property = { { "k" } } }) end,
              "publish", 5, { '"user_property" pair 1: the value must be a string' } },
            { "a named user property with a number", function(c)
                return c:publish("a/b", "x", 1, false, { user_property = { k = 5 } }) end,
              "publish", 5, { '"user_property" "k": the value must be a string' } },
            { "user_property as a string", function(c)
                return c:publish("a/b", "x", 1, false, { user_property = "k=v" }) end,
              "publish", 5, { '"user_property" must be a list of {name, value} pairs' } },
            { "properties as a number", function(c)
                return c:publish("a/b", "x", 1, false, 5) end,
              "publish", 5, { "properties must be a table" } },
            { "good PUBLISH properties under 3.1.1", function(c)
                return c:publish("a/b", "x", 1, false, { content_type = "text/plain",
                    user_property = { { "k", "v" } } }) end,
              "publish", 5, { "PUBLISH properties need MQTT 5.0" } },
            { "topic_alias in the will", function(c)
                return c:set_will("a/b", "x", 1, false, { topic_alias = 1 }) end,
              "set_will", 5, { '"topic_alias" is not allowed in the will' } },
            { "good will properties under 3.1.1", function(c)
                return c:set_will("a/b", "x", 1, false, { will_delay_interval = 30 }) end,
              "set_will", 5, { "will properties need MQTT 5.0" } },
            { "subscription_identifier 0", function(c)
                return c:subscribe({ { "a/+", 1 } }, { subscription_identifier = 0 }) end,
              "subscribe", 2, { '"subscription_identifier" must be an integer from 1 to 268435455' } },
            { "topic_alias in SUBSCRIBE", function(c)
                return c:subscribe({ { "a/+", 1 } }, { topic_alias = 3 }) end,
              "subscribe", 2, { '"topic_alias" is not allowed in SUBSCRIBE' } },
            { "good SUBSCRIBE properties under 3.1.1", function(c)
                return c:subscribe({ { "a/+", 1 } }, { subscription_identifier = 7 }) end,
              "subscribe", 2, { "SUBSCRIBE properties need MQTT 5.0" } },
            { "properties after one filter and its QoS", function(c)
                return c:subscribe("a/+", 1, { user_property = { k = "v" } }) end,
              "subscribe", 3, { "SUBSCRIBE properties need MQTT 5.0" } },
            { "a QoS after a list of entries", function(c)
                return c:subscribe({ { "a/+", 1 } }, 2) end,
              "subscribe", 2, { "properties must be a table" } },
            { "reason_string in UNSUBSCRIBE", function(c)
                return c:unsubscribe({ "a/+" }, { reason_string = "r" }) end,
              "unsubscribe", 2, { '"reason_string" is not allowed in UNSUBSCRIBE' } },
            { "good UNSUBSCRIBE properties under 3.1.1", function(c)
                return c:unsubscribe("a/+", { user_property = { k = "v" } }) end,
              "unsubscribe", 2, { "UNSUBSCRIBE properties need MQTT 5.0" } },
        }

        for _, case in ipairs(CASES) do
            it("refuses " .. case[1] .. ", naming it, and queues nothing", function()
                local c = clients:new()
                assert_argerror(function() return case[2](c) end, case[3], case[4], case[5])
                local st = c:stats()
                assert.are.same({ 0, 0 }, { st.queued, st.queued_bytes })
                -- No packet id was used: the next one is the first.
                assert.are.equal(1, c:publish("a/b", "x", 1))
            end)
        end

        it("takes nil or an empty table as no properties", function()
            local c = clients:new()
            assert.are.equal(1, c:publish("a/b", "x", 1, false, nil))
            assert.are.equal(2, c:publish("a/b", "x", 1, false, {}))
            assert.is_nil(c:set_will("a/b", "x", 1, false, {}))
            assert.are.equal(3, c:subscribe({ { "a/+", 1 } }, {}))
            assert.are.equal(4, c:unsubscribe("a/+", {}))
        end)
    end)

    describe("subscription options", function()
        local clients = helpers.clients("zsubopt")
        helpers.close_after_each(clients)

        local CASES = {
            { "an unknown option", function(c) return c:subscribe({ { "a", { qos = 1, colour = 1 } } }) end,
              1, { "entry 1: unknown subscription option 'colour'" } },
            { "qos 3 in options", function(c) return c:subscribe({ { "a", { qos = 3 } } }) end,
              1, { "entry 1: qos must be between 0 and 2" } },
            { "retain_handling 3", function(c) return c:subscribe({ { "a", { retain_handling = 3 } } }) end,
              1, { "entry 1: retain_handling must be between 0 and 2" } },
            { "no_local 'yes'", function(c) return c:subscribe({ { "a", { no_local = "yes" } } }) end,
              1, { "entry 1: no_local must be a boolean" } },
            { "retain_as_published 1", function(c)
                return c:subscribe({ { "a", 1 }, { "b", { retain_as_published = 1 } } }) end,
              1, { "entry 2: retain_as_published must be a boolean" } },
            { "no_local on a shared subscription", function(c)
                return c:subscribe({ { "$share/g/a/+", { qos = 1, no_local = true } } }) end,
              1, { "entry 1: no_local is not allowed on a shared subscription" } },
            { "options of one filter", function(c) return c:subscribe("a/+", { qos = 1, bad = 1 }) end,
              2, { "unknown subscription option 'bad'" } },
            { "no_local under 3.1.1", function(c)
                return c:subscribe({ { "a", { qos = 1, no_local = true } } }) end,
              1, { "no_local, retain_as_published and retain_handling need MQTT 5.0" } },
            { "no_local of one filter under 3.1.1", function(c)
                return c:subscribe("a/+", { qos = 1, no_local = true }) end,
              2, { "no_local, retain_as_published and retain_handling need MQTT 5.0" } },
            { "retain_handling 2 under 3.1.1", function(c)
                return c:subscribe({ { "a", 0 }, { "b", { retain_handling = 2 } } }) end,
              1, { "filter 2", "need MQTT 5.0" } },
        }
        for _, case in ipairs(CASES) do
            it("refuses " .. case[1], function()
                local c = clients:new()
                assert_argerror(function() return case[2](c) end, "subscribe", case[3], case[4])
                assert.are.equal(0, c:stats().queued)
            end)
        end

        it("takes options that ask nothing of MQTT 5.0 under 3.1.1", function()
            local c = clients:new()
            assert.are.equal(1, c:subscribe({ { "a", { qos = 1 } },
                { "b", { qos = 2, no_local = false, retain_as_published = false, retain_handling = 0 } },
                { "c", {} } }))
            assert.are.equal(2, c:subscribe("d/+", { qos = 1 }))
        end)
    end)

    describe("shared subscriptions", function()
        local clients = helpers.clients("zshare")
        helpers.close_after_each(clients)

        it("are filters under 3.1.1 too: subscribe, unsubscribe, on and topic_filter take them", function()
            local c = clients:new()
            assert.are.equal(1, c:subscribe({ { "$share/g/a/+", 1 }, { "$share/g2/#", 0 } }))
            assert.are.equal(2, c:subscribe("$share/g/x", 2))
            assert.are.equal(3, c:unsubscribe({ "$share/g/a/+", "$share/g2/#" }))
            c:on(mqtt.PUBLISH, function() end, "$share/g/a/+")
            assert.is_true(mqtt.topic_filter("$share/g/a/+")({ message = { topic = "a/b" } }))
            assert.is_false(mqtt.topic_filter("$share/g/a/+")({ message = { topic = "g/a/b" } }))
        end)

        it("match a topic against their filter part", function()
            local CASES = {
                { "$share/g/a/+", "a/b", true },
                { "$share/g/a/+", "a/b/c", false },
                { "$share/group/#", "a/b/c", true },
                { "$share/group/#", "$SYS/broker", false },
                { "$share/g/+/b", "$x/b", false },
                { "$share/g/$x/b", "$x/b", true },
                { "$share/g/a/#", "a", true },
                { "$share/g//", "/", true },
                { "$share/g/a", "$share/g/a", false },
            }
            for _, t in ipairs(CASES) do
                assert.are.equal(t[3], mqtt.topic_matches(t[1], t[2]), t[1] .. " against " .. t[2])
            end
        end)

        it("are refused when MQTT 5.0 section 4.8.2 says they are malformed", function()
            local c = clients:new()
            local BAD = {
                { "$share/", "without a topic filter" },
                { "$share/g", "without a topic filter" },
                { "$share/g/", "without a topic filter" },
                { "$share//a", "empty group name" },
                { "$share/g+/a", "wildcard in a shared subscription's group name" },
                { "$share/+/a", "wildcard in a shared subscription's group name" },
                { "$share/#/a", "wildcard in a shared subscription's group name" },
                { "$share/g/a#", "'#' not alone in the last level" },
            }
            for _, b in ipairs(BAD) do
                assert_argerror(function() return c:subscribe(b[1], 1) end, "subscribe", 1, { b[2] })
                assert_argerror(function() return c:subscribe({ { b[1], 1 } }) end, "subscribe", 1, { b[2] })
                assert_argerror(function() return c:unsubscribe(b[1]) end, "unsubscribe", 1, { b[2] })
                assert_argerror(function() return c:on(mqtt.PUBLISH, print, b[1]) end, "on", 3, { b[2] })
                assert_argerror(function() return mqtt.topic_filter(b[1]) end, "topic_filter", 1, { b[2] })
            end
            assert.are.equal(0, c:stats().queued)
        end)
    end)

    describe("callbacks' data under 3.1.1 (fake broker)", function()
        local clients, brokers = helpers.clients("zdata"), helpers.fake_brokers({ timeout = 3 })
        helpers.close_after_each(clients, brokers)

        it("acks carry reason_code 0, reason \"success\" and no properties", function()
            local c, fb = helpers.fake_connected(clients, brokers)
            local got = {}
            for _, cmd in ipairs { mqtt.PUBACK, mqtt.PUBREC, mqtt.PUBCOMP } do
                c:on(cmd, function(_, d) got[cmd] = d end)
            end
            local m1 = c:publish("t/1", "x", 1)
            local m2 = c:publish("t/2", "x", 2)
            fb:send(FB.puback(fb:expect(FB.PUBLISH).packet_id))
            fb:send(FB.pubrec(fb:expect(FB.PUBLISH).packet_id))
            fb:send(FB.pubcomp(fb:expect(FB.PUBREL).packet_id))
            assert.is_true(helpers.wait_dispatch(function() return got[mqtt.PUBCOMP] ~= nil end))
            for cmd, mid in pairs { [mqtt.PUBACK] = m1, [mqtt.PUBREC] = m2, [mqtt.PUBCOMP] = m2 } do
                local d = got[cmd]
                assert.are.same({ mid, 0, "success" }, { d.mid, d.reason_code, d.reason })
                assert.is_nil(d.properties)
            end
        end)

        it("SUBACK gives reason_codes, the granted_qos list itself; UNSUBACK none under 3.1.1", function()
            local c, fb = helpers.fake_connected(clients, brokers)
            local suback, unsuback
            c:on(mqtt.SUBACK, function(_, d) suback = d end)
            c:on(mqtt.UNSUBACK, function(_, d) unsuback = d end)
            c:subscribe({ { "a/+", 1 }, { "$share/g/b", 2 } })
            local sub = fb:expect(FB.SUBSCRIBE)
            assert.are.same({ "a/+", "$share/g/b" }, { sub.topics[1].filter, sub.topics[2].filter })
            fb:send(FB.suback(sub.packet_id, { 1, 0x80 }))
            c:unsubscribe("a/+")
            fb:send(FB.unsuback(fb:expect(FB.UNSUBSCRIBE).packet_id))
            assert.is_true(helpers.wait_dispatch(function() return unsuback ~= nil end))
            assert.are.same({ 1, 0x80 }, suback.granted_qos)
            assert.are.equal(suback.granted_qos, suback.reason_codes)
            assert.is_nil(suback.properties)
            assert.is_nil(unsuback.reason_codes)
            assert.is_nil(unsuback.properties)
        end)

        it("a message has no properties field, and no table is made for one", function()
            local _, fb, rec = helpers.fake_connected(clients, brokers)
            fb:send(FB.publish { topic = "m/1", payload = "p", qos = 1, packet_id = 9 })
            assert.is_true(helpers.wait_dispatch(function() return #rec.messages == 1 end))
            local m = rec.messages[1]
            assert.are.same({ "m/1", "p" }, { m.topic, m.payload })
            assert.is_nil(rawget(m, "properties"))
            local n = 0
            for _ in pairs(m) do n = n + 1 end
            assert.are.equal(6, n) -- topic, payload, qos, retain, mid, dup
        end)

        it("CONNACK carries reason_code and reason, also when refused", function()
            local c, _, rec = helpers.fake_connected(clients, brokers)
            assert.is_true(helpers.wait_dispatch(function() return #rec.connacks == 1 end))
            assert.are.same({ 0, 0, "success" },
                { rec.connacks[1].return_code, rec.connacks[1].reason_code, rec.connacks[1].reason })
            local fb2 = brokers:new()
            local c2 = clients:new(nil, true, { reconnect = false })
            local rec2 = helpers.record_events(c2)
            c2:connect_async { host = helpers.HOST, port = fb2.port, keepalive = 30 }
            fb2:handshake { return_code = 5 }
            assert.is_true(helpers.wait_dispatch(function() return #rec2.connacks == 1 end))
            local d = rec2.connacks[1]
            assert.are.same({ 5, 5, "not authorized" }, { d.return_code, d.reason_code, d.reason })
            assert.is_nil(d.properties)
            assert.is_true(c:is_connected())
        end)
    end)
end)
