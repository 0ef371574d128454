-- spec/60_topics_spec.lua: mqtt.topic_matches and mqtt.topic_filter against
-- MQTT 3.1.1 section 4.7 (topic names and topic filters). No broker needed.

local mqtt = require("mqtt")

-- {filter, topic, expected}
local CASES = {
    -- 4.7.1.2 multi-level wildcard
    { "sport/tennis/player1/#", "sport/tennis/player1", true },
    { "sport/tennis/player1/#", "sport/tennis/player1/ranking", true },
    { "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true },
    { "sport/tennis/player1/#", "sport/tennis/player2", false },
    { "sport/tennis/player1/#", "sport/tennis", false },
    { "sport/#", "sport", true },
    { "sport/#", "sport/tennis/player1", true },
    { "sport/#", "sports", false },
    { "#", "sport", true },
    { "#", "sport/tennis/player1", true },
    { "#", "/", true },
    { "#", "/finance", true },
    -- 4.7.1.3 single-level wildcard
    { "sport/tennis/+", "sport/tennis/player1", true },
    { "sport/tennis/+", "sport/tennis/player2", true },
    { "sport/tennis/+", "sport/tennis/player1/ranking", false },
    { "sport/+", "sport", false },
    { "sport/+", "sport/", true },
    { "+", "sport", true },
    { "+/tennis/#", "sport/tennis/player1", true },
    { "+/tennis/#", "sport/tennis", true },
    { "+/tennis/#", "sport/golf", false },
    { "sport/+/player1", "sport/tennis/player1", true },
    { "sport/+/player1", "sport/tennis/player2", false },
    { "+/+", "/finance", true },
    { "/+", "/finance", true },
    { "+", "/finance", false },
    { "a/+/c", "a//c", true },
    { "a/+/c", "a/b/c/d", false },
    { "+/#", "a", true },
    -- 4.7.2 topics beginning with $
    { "#", "$SYS/broker/uptime", false },
    { "#", "$SYS", false },
    { "+", "$SYS", false },
    { "+/monitor/Clients", "$SYS/monitor/Clients", false },
    { "+/#", "$SYS/x", false },
    { "$SYS/#", "$SYS/x", true },
    { "$SYS/#", "$SYS", true },
    { "$SYS/monitor/+", "$SYS/monitor/Clients", true },
    { "$SYS/monitor/+", "$SYS/monitor/Clients/x", false },
    -- 4.7.3 topic semantics: case sensitive, levels separated by '/', exact
    { "ACCOUNTS", "ACCOUNTS", true },
    { "ACCOUNTS", "Accounts", false },
    { "Accounts payable", "Accounts payable", true },
    { "a/b", "a/b", true },
    { "a/b", "a//b", false },
    { "a/b", "a/b/", false },
    { "a/", "a", false },
    { "/finance", "finance", false },
    { "a/b", "a/bc", false },
    { "ab", "a", false },
    -- MQTT 5.0 4.8.2 shared subscriptions: the filter part is matched
    { "$share/group/sport/+", "sport/tennis", true },
    { "$share/group/#", "sport/tennis", true },
    { "$share/group/#", "$SYS/x", false },
    { "$share/group/sport/+", "$share/group/sport/tennis", false },
    { "$share/g/$SYS/#", "$SYS/x", true },
}

describe("mqtt.topic_matches", function()
    for _, case in ipairs(CASES) do
        local filter, topic, expected = case[1], case[2], case[3]
        it(("%q %s %q"):format(filter, expected and "matches" or "does not match", topic), function()
            local got = mqtt.topic_matches(filter, topic)
            assert.are.equal(expected, got)
            assert.are.equal("boolean", type(got))
        end)
    end

    it("is binary-safe on UTF-8 levels", function()
        assert.is_true(mqtt.topic_matches("caf\195\169/+", "caf\195\169/cr\195\168me"))
        assert.is_false(mqtt.topic_matches("caf\195\169/+", "cafe/creme"))
    end)

    it("raises an argument error for non-string arguments", function()
        local ok, err = pcall(mqtt.topic_matches, nil, "a")
        assert.is_false(ok)
        assert.is_true(mqtt.is_error(err))
        assert.matches("bad argument #1 to 'topic_matches'", tostring(err), 1, true)
        ok, err = pcall(mqtt.topic_matches, "a", 42)
        assert.is_false(ok)
        assert.is_true(mqtt.is_error(err))
        assert.matches("bad argument #2 to 'topic_matches'", tostring(err), 1, true)
    end)
end)

local function msg_data(topic, qos)
    qos = qos or 0
    return {
        return_code = 0,
        message = setmetatable({ topic = topic, payload = "p", qos = qos, retain = false,
                                 mid = qos > 0 and 7 or 0, dup = false }, mqtt.MQTTMessage),
    }
end

describe("mqtt.topic_filter", function()
    it("returns a function", function()
        assert.are.equal("function", type(mqtt.topic_filter("a/+/c")))
    end)

    it("accepts data whose message topic matches a '+' filter", function()
        local cond = mqtt.topic_filter("a/+/c")
        assert.is_true(cond(msg_data("a/b/c")))
        assert.is_true(cond(msg_data("a/xyz/c", 1)))
        assert.is_true(cond(msg_data("a//c")))
    end)

    it("rejects data whose message topic does not match", function()
        local cond = mqtt.topic_filter("a/+/c")
        assert.is_false(cond(msg_data("a/b")))
        assert.is_false(cond(msg_data("a/b/c/d")))
        assert.is_false(cond(msg_data("x/b/c")))
        assert.is_false(cond(msg_data("A/b/c")))
    end)

    it("rejects data without a message (QoS 2 PUBLISH: mid only)", function()
        local cond = mqtt.topic_filter("#")
        assert.is_false(cond({ mid = 12, return_code = 0 }))
        assert.is_false(mqtt.topic_filter("a/+/c")({ mid = 3, return_code = 0 }))
        assert.is_false(mqtt.topic_filter("a/b/c")({ return_code = 0 }))
    end)

    it("applies '#' and the $-topic rule", function()
        local all = mqtt.topic_filter("#")
        assert.is_true(all(msg_data("a")))
        assert.is_true(all(msg_data("a/b/c")))
        assert.is_false(all(msg_data("$SYS/broker/load")))
        local sport = mqtt.topic_filter("sport/#")
        assert.is_true(sport(msg_data("sport")))
        assert.is_true(sport(msg_data("sport/tennis/player1")))
        assert.is_false(sport(msg_data("sports")))
        local sys = mqtt.topic_filter("$SYS/monitor/+")
        assert.is_true(sys(msg_data("$SYS/monitor/Clients")))
        assert.is_false(sys(msg_data("monitor/Clients")))
    end)

    it("matches exact topics only when there is no wildcard", function()
        local cond = mqtt.topic_filter("sensors/kitchen/temp")
        assert.is_true(cond(msg_data("sensors/kitchen/temp")))
        assert.is_false(cond(msg_data("sensors/kitchen/temp/x")))
        assert.is_false(cond(msg_data("sensors/kitchen")))
    end)

    it("each condition keeps its own filter", function()
        local a, b = mqtt.topic_filter("a/#"), mqtt.topic_filter("b/#")
        assert.is_true(a(msg_data("a/1")))
        assert.is_false(a(msg_data("b/1")))
        assert.is_true(b(msg_data("b/1")))
        assert.is_false(b(msg_data("a/1")))
    end)

    for _, bad in ipairs { "sport/tennis#", "sport/tennis/#/ranking", "a/#/b", "a#", "a+/b",
                           "a/b+", "", "a\0b", "$share/g", "$share/g/", "$share//a",
                           "$share/+/a", "$share/#/a" } do
        it(("raises an argument error for the invalid filter %q"):format(bad), function()
            local ok, err = pcall(mqtt.topic_filter, bad)
            assert.is_false(ok)
            assert.is_true(mqtt.is_error(err))
            assert.are.equal("invalid argument", err.name)
            assert.matches("bad argument #1 to 'topic_filter'", tostring(err), 1, true)
        end)
    end

    it("raises an argument error for a non-string filter", function()
        local ok, err = pcall(mqtt.topic_filter, 5)
        assert.is_false(ok)
        assert.is_true(mqtt.is_error(err))
        assert.matches("bad argument #1 to 'topic_filter'", tostring(err), 1, true)
    end)
end)
