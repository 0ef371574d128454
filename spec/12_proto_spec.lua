-- spec/12_proto_spec.lua: the protocol tables of the C core as the Lua module
-- sees them (mqtt.core): packet names, MQTT 5.0 properties and reason code
-- names, checked against the MQTT 5.0 specification (sections 2.1.2, 2.2.2.2
-- and 2.4) and the property names of API.md. No broker needed.

local core = require("mqtt.core")

local CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC = 0x10, 0x20, 0x30, 0x40, 0x50
local PUBREL, PUBCOMP, SUBSCRIBE, SUBACK = 0x60, 0x70, 0x80, 0x90
local UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH = 0xA0, 0xB0, 0xE0, 0xF0

-- Every property API.md names: {name, identifier, wire type}.
local PROPERTIES = {
    { "payload_format_indicator", 0x01, "byte" },
    { "message_expiry_interval", 0x02, "four_byte_integer" },
    { "content_type", 0x03, "utf8_string" },
    { "response_topic", 0x08, "utf8_string" },
    { "correlation_data", 0x09, "binary_data" },
    { "subscription_identifier", 0x0B, "variable_byte_integer" },
    { "session_expiry_interval", 0x11, "four_byte_integer" },
    { "assigned_client_identifier", 0x12, "utf8_string" },
    { "server_keep_alive", 0x13, "two_byte_integer" },
    { "authentication_method", 0x15, "utf8_string" },
    { "authentication_data", 0x16, "binary_data" },
    { "request_problem_information", 0x17, "byte" },
    { "will_delay_interval", 0x18, "four_byte_integer" },
    { "request_response_information", 0x19, "byte" },
    { "response_information", 0x1A, "utf8_string" },
    { "server_reference", 0x1C, "utf8_string" },
    { "reason_string", 0x1F, "utf8_string" },
    { "receive_maximum", 0x21, "two_byte_integer" },
    { "topic_alias_maximum", 0x22, "two_byte_integer" },
    { "topic_alias", 0x23, "two_byte_integer" },
    { "maximum_qos", 0x24, "byte" },
    { "retain_available", 0x25, "byte" },
    { "user_property", 0x26, "utf8_string_pair" },
    { "maximum_packet_size", 0x27, "four_byte_integer" },
    { "wildcard_subscription_available", 0x28, "byte" },
    { "subscription_identifier_available", 0x29, "byte" },
    { "shared_subscription_available", 0x2A, "byte" },
}

describe("protocol tables", function()
    describe("packet types", function()
        it("names all fifteen, both ways", function()
            local names = { "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
                            "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK",
                            "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH" }
            for i, name in ipairs(names) do
                assert.are.equal(name, core.packet_names[i * 16])
                assert.are.equal(i * 16, core.packet_types[name])
            end
            assert.is_nil(core.packet_names[0])
        end)
    end)

    describe("properties", function()
        it("knows every property API.md names, with its identifier and type", function()
            for _, p in ipairs(PROPERTIES) do
                local info = core.properties[p[1]]
                assert.is_table(info, p[1])
                assert.are.equal(p[2], info.id, p[1])
                assert.are.equal(p[3], info.type, p[1])
                assert.are.equal(p[1], info.name)
                assert.are.equal(p[1], core.property_names[p[2]])
            end
        end)

        it("knows nothing else", function()
            local n = 0
            for _ in pairs(core.properties) do n = n + 1 end
            assert.are.equal(#PROPERTIES, n)
            assert.is_nil(core.property_names[0x04])
        end)

        it("says which packets carry each property", function()
            local p = core.properties
            assert.is_true(p.payload_format_indicator.packets[PUBLISH])
            assert.is_true(p.payload_format_indicator.packets.will)
            assert.is_nil(p.payload_format_indicator.packets[CONNECT])
            assert.is_true(p.will_delay_interval.packets.will)
            assert.is_nil(p.will_delay_interval.packets[PUBLISH])
            assert.is_true(p.subscription_identifier.packets[SUBSCRIBE])
            assert.is_true(p.topic_alias.packets[PUBLISH])
            assert.is_nil(p.topic_alias.packets[CONNACK])
            assert.is_true(p.session_expiry_interval.packets[DISCONNECT])
            assert.is_true(p.authentication_data.packets[AUTH])
            assert.is_nil(p.reason_string.packets[CONNECT])
            assert.is_true(p.reason_string.packets[PUBCOMP])
            for _, t in ipairs({ CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP,
                                 SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH }) do
                assert.is_true(p.user_property.packets[t], core.packet_names[t])
                assert.is_true(p.user_property.repeats[t], core.packet_names[t])
            end
        end)

        it("lets only user_property, and subscription_identifier in PUBLISH, repeat", function()
            for name, info in pairs(core.properties) do
                if name ~= "user_property" and name ~= "subscription_identifier" then
                    assert.is_nil(next(info.repeats), name)
                end
            end
            assert.is_true(core.properties.subscription_identifier.repeats[PUBLISH])
            assert.is_nil(core.properties.subscription_identifier.repeats[SUBSCRIBE])
        end)

        it("gives the ranges a value must keep", function()
            local p = core.properties
            assert.are.same({ 1, 65535 }, { p.receive_maximum.min, p.receive_maximum.max })
            assert.are.same({ 1, 65535 }, { p.topic_alias.min, p.topic_alias.max })
            assert.are.same({ 1, 268435455 },
                { p.subscription_identifier.min, p.subscription_identifier.max })
            assert.are.same({ 0, 1 }, { p.maximum_qos.min, p.maximum_qos.max })
            assert.are.same({ 1, 4294967295 },
                { p.maximum_packet_size.min, p.maximum_packet_size.max })
        end)
    end)

    describe("reason codes", function()
        it("names 0x00 after the packet", function()
            assert.are.equal("success", core.reason_name(0x00, PUBACK))
            assert.are.equal("success", core.reason_name(0x00, CONNACK))
            assert.are.equal("success", core.reason_name(0x00, AUTH))
            assert.are.equal("normal disconnection", core.reason_name(0x00, DISCONNECT))
            assert.are.equal("granted qos 0", core.reason_name(0x00, SUBACK))
            assert.are.equal("success", core.reason_name(0x00))
        end)

        it("names the codes of each packet in lower case", function()
            local cases = {
                { 0x01, SUBACK, "granted qos 1" }, { 0x02, SUBACK, "granted qos 2" },
                { 0x04, DISCONNECT, "disconnect with will message" },
                { 0x10, PUBACK, "no matching subscribers" },
                { 0x10, PUBREC, "no matching subscribers" },
                { 0x11, UNSUBACK, "no subscription existed" },
                { 0x18, AUTH, "continue authentication" }, { 0x19, AUTH, "re-authenticate" },
                { 0x80, SUBACK, "unspecified error" }, { 0x81, DISCONNECT, "malformed packet" },
                { 0x84, CONNACK, "unsupported protocol version" },
                { 0x87, PUBACK, "not authorized" }, { 0x92, PUBREL, "packet identifier not found" },
                { 0x92, PUBCOMP, "packet identifier not found" },
                { 0x93, DISCONNECT, "receive maximum exceeded" },
                { 0x95, CONNACK, "packet too large" }, { 0x97, SUBACK, "quota exceeded" },
                { 0x9A, CONNACK, "retain not supported" }, { 0x9B, DISCONNECT, "qos not supported" },
                { 0x9C, CONNACK, "use another server" }, { 0x9D, DISCONNECT, "server moved" },
                { 0xA2, SUBACK, "wildcard subscriptions not supported" },
            }
            for _, c in ipairs(cases) do
                assert.are.equal(c[3], core.reason_name(c[1], c[2]))
                assert.are.equal(c[3], core.reasons[c[1]][c[2]])
            end
        end)

        it("has no name for a code a packet cannot carry, or an unknown code", function()
            assert.is_nil(core.reason_name(0x04, PUBACK))
            assert.is_nil(core.reason_name(0x8B, CONNACK))
            assert.is_nil(core.reason_name(0x87, PUBREL))
            assert.is_nil(core.reason_name(0x03))
            assert.is_nil(core.reason_name(0xFF, DISCONNECT))
            assert.is_nil(core.reason_name(-1))
            assert.is_nil(core.reasons[0x03])
        end)

        it("covers the whole table of the specification (section 2.4)", function()
            local n = 0
            for code in pairs(core.reasons) do
                n = n + 1
                assert.is_string(core.reason_name(code))
            end
            assert.are.equal(43, n)
        end)
    end)
end)
