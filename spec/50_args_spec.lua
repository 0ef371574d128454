-- spec/50_args_spec.lua: argument checking of every public function, the
-- error values (kinds, fields, tostring) and the state after a bad call.
-- Most cases use a client that never connects (publishing before connect is
-- allowed and queues); one batch runs against a connected client and mosquitto.

local mqtt = require("mqtt")
local helpers = require("helpers")
local FakeBroker = require("fake_broker")
local compat = require("compat")

local math_type = compat.math_type

local HOST = helpers.HOST
local MAX_REMAINING = 268435455 -- the largest MQTT remaining length (256 MiB - 1)

-- 256 MiB + 1 byte, built once and only when first needed.
local big_payload
local function big()
    big_payload = big_payload or string.rep("x", 256 * 1024 * 1024 + 1)
    return big_payload
end

local function noop() end

-- Argument errors of mqtt.Client: {label, argn, fn, mentions}; argn nil means
-- any argument number.
local CLIENT_CASES = {
    { "Client(nil)", 1, function() return mqtt.Client(nil) end },
    { "Client()", 1, function() return mqtt.Client() end },
    { "Client(123)", 1, function() return mqtt.Client(123) end },
    { "Client({})", 1, function() return mqtt.Client({}) end },
    { "Client(id with invalid UTF-8)", 1, function() return mqtt.Client("id\255") end },
    { "Client(id with NUL)", 1, function() return mqtt.Client("a\0b") end },
    { "Client(id of 65536 bytes)", 1, function() return mqtt.Client(string.rep("i", 65536)) end },
    { "Client('id', 'yes')", 2, function() return mqtt.Client("id", "yes") end },
    { "Client('id', 1)", 2, function() return mqtt.Client("id", 1) end },
    -- MQTT 3.1.1 allows an empty client id only with a clean session; the
    -- error may blame either argument.
    { "Client('', false)", nil, function() return mqtt.Client("", false) end },
    { "Client options not a table", 3, function() return mqtt.Client("id", true, "opts") end },
    { "Client unknown option", 3, function() return mqtt.Client("id", true, { colour = "red" }) end,
      "colour" },
    { "max_inflight = 0", 3, function() return mqtt.Client("id", true, { max_inflight = 0 }) end,
      "max_inflight" },
    { "max_inflight = 65536", 3, function() return mqtt.Client("id", true, { max_inflight = 65536 }) end,
      "max_inflight" },
    { "max_inflight = 1.5", 3, function() return mqtt.Client("id", true, { max_inflight = 1.5 }) end,
      "max_inflight" },
    { "max_inflight = '5'", 3, function() return mqtt.Client("id", true, { max_inflight = "5" }) end,
      "max_inflight" },
    { "max_queued = 0", 3, function() return mqtt.Client("id", true, { max_queued = 0 }) end,
      "max_queued" },
    { "max_queued = 'many'", 3, function() return mqtt.Client("id", true, { max_queued = "many" }) end,
      "max_queued" },
    { "max_queued = {messages = 0}", 3,
      function() return mqtt.Client("id", true, { max_queued = { messages = 0 } }) end, "max_queued" },
    { "max_queued = {bytes = -1}", 3,
      function() return mqtt.Client("id", true, { max_queued = { bytes = -1 } }) end, "max_queued" },
    { "reconnect = 'yes'", 3, function() return mqtt.Client("id", true, { reconnect = "yes" }) end,
      "reconnect" },
    { "reconnect = {min = 5, max = 1}", 3,
      function() return mqtt.Client("id", true, { reconnect = { min = 5, max = 1 } }) end, "reconnect" },
    { "reconnect = {min = 0, max = 1}", 3,
      function() return mqtt.Client("id", true, { reconnect = { min = 0, max = 1 } }) end, "reconnect" },
    { "reconnect = {min = 'a'}", 3,
      function() return mqtt.Client("id", true, { reconnect = { min = "a", max = 2 } }) end, "reconnect" },
    { "connect_timeout = 0", 3, function() return mqtt.Client("id", true, { connect_timeout = 0 }) end,
      "connect_timeout" },
    { "connect_timeout = -1", 3, function() return mqtt.Client("id", true, { connect_timeout = -1 }) end,
      "connect_timeout" },
    { "connect_timeout = 'x'", 3, function() return mqtt.Client("id", true, { connect_timeout = "x" }) end,
      "connect_timeout" },
    { "disconnect_timeout = -1", 3,
      function() return mqtt.Client("id", true, { disconnect_timeout = -1 }) end, "disconnect_timeout" },
    { "logger = 5", 3, function() return mqtt.Client("id", true, { logger = 5 }) end, "logger" },
    { "logger = 'print'", 3, function() return mqtt.Client("id", true, { logger = "print" }) end,
      "logger" },
}

-- Argument errors of client methods and module functions, called with the
-- fresh client c: {label, function name, argn, fn(c), mentions}.
local CASES = {
    -- publish
    { "publish(nil)", "publish", 1, function(c) return c:publish(nil, "x") end },
    { "publish(42)", "publish", 1, function(c) return c:publish(42, "x") end },
    { "publish({})", "publish", 1, function(c) return c:publish({}, "x") end },
    { "publish topic with +", "publish", 1, function(c) return c:publish("a/+/c", "x") end },
    { "publish topic with #", "publish", 1, function(c) return c:publish("a/#", "x") end },
    { "publish topic '#'", "publish", 1, function(c) return c:publish("#", "x") end },
    { "publish empty topic", "publish", 1, function(c) return c:publish("", "x") end },
    { "publish invalid UTF-8 topic", "publish", 1, function(c) return c:publish("a/\195\040", "x") end },
    { "publish topic with NUL", "publish", 1, function(c) return c:publish("a\0b", "x") end },
    { "publish topic over 65535 bytes", "publish", 1,
      function(c) return c:publish(string.rep("t", 65536), "x") end },
    { "publish payload table", "publish", 2, function(c) return c:publish("a", { "x" }) end },
    { "publish payload function", "publish", 2, function(c) return c:publish("a", noop) end },
    { "publish payload over 256 MiB", "publish", 2, function(c) return c:publish("a", big(), 1) end },
    { "publish payload that overflows the packet size", "publish", 2,
      function(c) return c:publish("a", big():sub(1, MAX_REMAINING), 0) end },
    { "publish qos 3", "publish", 3, function(c) return c:publish("a", "x", 3) end },
    { "publish qos -1", "publish", 3, function(c) return c:publish("a", "x", -1) end },
    { "publish qos 1.5", "publish", 3, function(c) return c:publish("a", "x", 1.5) end },
    { "publish qos '1'", "publish", 3, function(c) return c:publish("a", "x", "1") end },
    { "publish qos true", "publish", 3, function(c) return c:publish("a", "x", true) end },
    { "publish retain 1", "publish", 4, function(c) return c:publish("a", "x", 0, 1) end },
    { "publish retain 'true'", "publish", 4, function(c) return c:publish("a", "x", 1, "true") end },
    -- subscribe
    { "subscribe(nil)", "subscribe", 1, function(c) return c:subscribe(nil) end },
    { "subscribe(42)", "subscribe", 1, function(c) return c:subscribe(42) end },
    { "subscribe({})", "subscribe", 1, function(c) return c:subscribe({}) end },
    { "subscribe a/#/b", "subscribe", 1, function(c) return c:subscribe({ { "a/#/b", 0 } }) end },
    { "subscribe a#", "subscribe", 1, function(c) return c:subscribe({ { "a#", 0 } }) end },
    { "subscribe a+/b", "subscribe", 1, function(c) return c:subscribe({ { "a+/b", 0 } }) end },
    { "subscribe empty filter", "subscribe", 1, function(c) return c:subscribe({ { "", 0 } }) end },
    { "subscribe qos 3", "subscribe", 1, function(c) return c:subscribe({ { "a", 3 } }) end },
    { "subscribe second entry qos 3", "subscribe", 1,
      function(c) return c:subscribe({ { "a", 0 }, { "b", 3 } }) end },
    { "subscribe non-table entry", "subscribe", 1, function(c) return c:subscribe({ "a/b" }) end },
    { "subscribe numeric entry", "subscribe", 1, function(c) return c:subscribe({ { "a", 1 }, 7 }) end },
    { "subscribe entry with a numeric filter", "subscribe", 1, function(c) return c:subscribe({ { 5, 1 } }) end },
    { "subscribe('a/#/b', 1)", "subscribe", 1, function(c) return c:subscribe("a/#/b", 1) end },
    { "subscribe('a/+', 3)", "subscribe", 2, function(c) return c:subscribe("a/+", 3) end },
    { "subscribe('a/+', -1)", "subscribe", 2, function(c) return c:subscribe("a/+", -1) end },
    -- unsubscribe
    { "unsubscribe(nil)", "unsubscribe", 1, function(c) return c:unsubscribe(nil) end },
    { "unsubscribe({})", "unsubscribe", 1, function(c) return c:unsubscribe({}) end },
    { "unsubscribe({1})", "unsubscribe", 1, function(c) return c:unsubscribe({ 1 }) end },
    { "unsubscribe({{'a', 0}})", "unsubscribe", 1, function(c) return c:unsubscribe({ { "a", 0 } }) end },
    { "unsubscribe a/#/b", "unsubscribe", 1, function(c) return c:unsubscribe({ "a/#/b" }) end },
    { "unsubscribe empty filter", "unsubscribe", 1, function(c) return c:unsubscribe({ "ok", "" }) end },
    -- on / off
    { "on(unknown command)", "on", 1, function(c) return c:on(0x99, noop) end },
    { "on(nil command)", "on", 1, function(c) return c:on(nil, noop) end },
    { "on('PUBLISH')", "on", 1, function(c) return c:on("PUBLISH", noop) end },
    { "on(PUBLISH, nil)", "on", 2, function(c) return c:on(mqtt.PUBLISH, nil) end },
    { "on(PUBLISH, 'fn')", "on", 2, function(c) return c:on(mqtt.PUBLISH, "fn") end },
    { "on(PUBLISH, fn, 5)", "on", 3, function(c) return c:on(mqtt.PUBLISH, noop, 5) end },
    { "on(PUBLISH, fn, 'a/#/b')", "on", 3, function(c) return c:on(mqtt.PUBLISH, noop, "a/#/b") end },
    { "on(PUBLISH, fn, '')", "on", 3, function(c) return c:on(mqtt.PUBLISH, noop, "") end },
    { "on(PUBACK, fn, 'a/b')", "on", 3, function(c) return c:on(mqtt.PUBACK, noop, "a/b") end },
    { "on(PUBLISH, fn, cond, NaN)", "on", 4, function(c) return c:on(mqtt.PUBLISH, noop, noop, 0 / 0) end },
    { "on(PUBLISH, fn, cond, 'high')", "on", 4,
      function(c) return c:on(mqtt.PUBLISH, noop, noop, "high") end },
    { "on(PUBLISH, fn, cond, {})", "on", 4, function(c) return c:on(mqtt.PUBLISH, noop, noop, {}) end },
    { "off(unknown command)", "off", 1, function(c) return c:off(0x99, noop) end },
    -- connect / connect_async
    { "connect(nil, 60)", "connect", 1, function(c) return c:connect(nil, 60) end },
    { "connect(5, 60)", "connect", 1, function(c) return c:connect(5, 60) end },
    { "connect('', 60)", "connect", 1, function(c) return c:connect("", 60) end },
    { "connect keepalive nil", "connect", 2, function(c) return c:connect(HOST, nil) end },
    { "connect keepalive -1", "connect", 2, function(c) return c:connect(HOST, -1) end },
    { "connect keepalive 65536", "connect", 2, function(c) return c:connect(HOST, 65536) end },
    { "connect keepalive 'x'", "connect", 2, function(c) return c:connect(HOST, "x") end },
    { "connect keepalive 1.5", "connect", 2, function(c) return c:connect(HOST, 1.5) end },
    { "connect port 0", "connect", 3, function(c) return c:connect(HOST, 60, 0) end },
    { "connect port 70000", "connect", 3, function(c) return c:connect(HOST, 60, 70000) end },
    { "connect port -1", "connect", 3, function(c) return c:connect(HOST, 60, -1) end },
    { "connect port 'mqtt'", "connect", 3, function(c) return c:connect(HOST, 60, "mqtt") end },
    { "connect ssl_ctx 'tls'", "connect", 4, function(c) return c:connect(HOST, 60, 1883, "tls") end },
    { "connect breconnect_cb 5", "connect", 5,
      function(c) return c:connect(HOST, 60, 1883, nil, 5) end },
    { "connect aconnect_cb 'f'", "connect", 6,
      function(c) return c:connect(HOST, 60, 1883, nil, nil, "f") end },
    { "connect sock_keepalive 5", "connect", 7,
      function(c) return c:connect(HOST, 60, 1883, nil, nil, nil, 5) end },
    { "connect sock_keepalive {1, 2}", "connect", 7,
      function(c) return c:connect(HOST, 60, 1883, nil, nil, nil, { 1, 2 }) end },
    { "connect sock_keepalive {1, 2, 3, 4}", "connect", 7,
      function(c) return c:connect(HOST, 60, 1883, nil, nil, nil, { 1, 2, 3, 4 }) end },
    { "connect sock_keepalive {1, 2, 'x'}", "connect", 7,
      function(c) return c:connect(HOST, 60, 1883, nil, nil, nil, { 1, 2, "x" }) end },
    { "connect sock_keepalive {0, 2, 3}", "connect", 7,
      function(c) return c:connect(HOST, 60, 1883, nil, nil, nil, { 0, 2, 3 }) end },
    { "connect sock_keepalive {1, -2, 3}", "connect", 7,
      function(c) return c:connect(HOST, 60, 1883, nil, nil, nil, { 1, -2, 3 }) end },
    { "connect{} unknown key", "connect", 1,
      function(c) return c:connect { host = HOST, keepalive = 60, colour = "red" } end, "colour" },
    { "connect{} keepalive -1", "connect", nil,
      function(c) return c:connect { host = HOST, keepalive = -1 } end, "keepalive" },
    { "connect{} port 0", "connect", nil,
      function(c) return c:connect { host = HOST, keepalive = 60, port = 0 } end, "port" },
    { "connect{} host missing", "connect", nil, function(c) return c:connect { keepalive = 60 } end, "host" },
    { "connect_async keepalive -1", "connect_async", 2, function(c) return c:connect_async(HOST, -1) end },
    { "connect_async port 70000", "connect_async", 3,
      function(c) return c:connect_async(HOST, 60, 70000) end },
    { "connect_async(nil, 60)", "connect_async", 1, function(c) return c:connect_async(nil, 60) end },
    -- set_will / set_username_pw
    { "set_will(nil)", "set_will", 1, function(c) return c:set_will(nil, "x", 0, false) end },
    { "set_will wildcard +", "set_will", 1, function(c) return c:set_will("a/+", "x", 0, false) end },
    { "set_will wildcard #", "set_will", 1, function(c) return c:set_will("a/#", "x", 0, false) end },
    { "set_will empty topic", "set_will", 1, function(c) return c:set_will("", "x", 0, false) end },
    { "set_will payload table", "set_will", 2, function(c) return c:set_will("a", {}, 0, false) end },
    { "set_will qos 3", "set_will", 3, function(c) return c:set_will("a", "x", 3, false) end },
    { "set_will qos -1", "set_will", 3, function(c) return c:set_will("a", "x", -1, false) end },
    { "set_will retain 'yes'", "set_will", 4, function(c) return c:set_will("a", "x", 1, "yes") end },
    { "set_username_pw(nil)", "set_username_pw", 1, function(c) return c:set_username_pw(nil) end },
    { "set_username_pw(42)", "set_username_pw", 1, function(c) return c:set_username_pw(42, "pw") end },
    { "set_username_pw('u', 42)", "set_username_pw", 2, function(c) return c:set_username_pw("u", 42) end },
    { "set_username_pw('u', {})", "set_username_pw", 2, function(c) return c:set_username_pw("u", {}) end },
    -- loop / dispatch / sleep
    { "loop(5)", "loop", 1, function(c) return c:loop(5) end },
    { "loop('f')", "loop", 1, function(c) return c:loop("f") end },
    { "dispatch(-1)", "dispatch", 1, function(c) return c:dispatch(-1) end },
    { "dispatch('x')", "dispatch", 1, function(c) return c:dispatch("x") end },
    { "mqtt.dispatch(-1)", "dispatch", 1, function() return mqtt.dispatch(-1) end },
    { "mqtt.dispatch({})", "dispatch", 1, function() return mqtt.dispatch({}) end },
    { "mqtt.sleep(nil)", "sleep", 1, function() return mqtt.sleep(nil) end },
    { "mqtt.sleep(-1)", "sleep", 1, function() return mqtt.sleep(-1) end },
    { "mqtt.sleep('1')", "sleep", 1, function() return mqtt.sleep("1") end },
    -- topics
    { "topic_matches(nil, 'a')", "topic_matches", 1, function() return mqtt.topic_matches(nil, "a") end },
    { "topic_matches('a', {})", "topic_matches", 2, function() return mqtt.topic_matches("a", {}) end },
    { "topic_filter(nil)", "topic_filter", 1, function() return mqtt.topic_filter(nil) end },
    { "topic_filter('a/#/b')", "topic_filter", 1, function() return mqtt.topic_filter("a/#/b") end },
}

local function snapshot(c)
    local s = c:stats()
    return { queued = s.queued, queued_bytes = s.queued_bytes, inflight = s.inflight }
end

-- Asserts err is an argument error naming argument argn (nil: any) of fname.
local function assert_argerror(err, fname, argn, mentions)
    assert.is_true(mqtt.is_error(err), "not an MQTTError: " .. tostring(err))
    assert.is_true(mqtt.is_error(err, mqtt.MQTTError))
    assert.is_false(mqtt.is_error(err, mqtt.MQTTConnectionError))
    assert.is_false(mqtt.is_error(err, mqtt.MQTTProtocolError))
    assert.are.equal("invalid argument", err.name)
    assert.are.equal("MQTTError", err.kind)
    assert.is_string(err.message)
    local text = tostring(err)
    local prefix = argn and ("bad argument #" .. argn .. " to '" .. fname .. "'")
    if prefix then
        assert.matches(prefix, text, 1, true)
        assert.matches(prefix, err.message, 1, true)
    else
        assert.matches("bad argument #%d+ to '" .. fname:gsub("%p", "%%%0") .. "'", text)
    end
    if mentions then
        assert.matches(mentions, text, 1, true)
    end
end

describe("argument errors", function()
    local c

    before_each(function()
        c = mqtt.Client(helpers.unique("zargs"))
    end)

    after_each(function()
        if c then c:close() end
        c = nil
    end)

    teardown(function()
        big_payload = nil
        collectgarbage()
    end)

    describe("mqtt.Client", function()
        for _, case in ipairs(CLIENT_CASES) do
            local label, argn, fn, mentions = case[1], case[2], case[3], case[4]
            it(label .. " raises a clear argument error", function()
                local ok, err = pcall(fn)
                assert.is_false(ok, "accepted: " .. label)
                assert_argerror(err, "Client", argn, mentions)
            end)
        end

        it("accepts valid ids, clean_session values and each option on its own", function()
            local made = {}
            local function make(...)
                local ok, cl = pcall(mqtt.Client, ...)
                if ok then made[#made + 1] = cl end
                return ok, cl
            end
            local good = {
                { "plain" }, { "plain", true }, { "plain", false }, { "", true }, { "" },
                { string.rep("i", 65535) }, { "caf\195\169" },
                { "o", true, {} },
                { "o", true, { max_inflight = 5 } },
                { "o", true, { max_queued = 10 } },
                { "o", true, { max_queued = { messages = 10, bytes = 4096 } } },
                { "o", true, { reconnect = false } },
                { "o", true, { reconnect = { min = 1, max = 5 } } },
                { "o", true, { connect_timeout = 2 } },
                { "o", true, { disconnect_timeout = 1 } },
                { "o", true, { logger = noop } },
            }
            local failures = {}
            for i, args in ipairs(good) do
                local ok, err = make(compat.unpack(args, 1, 3))
                if not ok then failures[#failures + 1] = "case " .. i .. ": " .. tostring(err) end
            end
            for _, cl in ipairs(made) do cl:close() end
            assert.are.same({}, failures)
        end)
    end)

    for _, case in ipairs(CASES) do
        local label, fname, argn, fn, mentions = case[1], case[2], case[3], case[4], case[5]
        it(label .. " raises a clear argument error, sends nothing and leaves the client usable", function()
            local before = snapshot(c)
            local ok, err = pcall(fn, c)
            assert.is_false(ok, "accepted: " .. label)
            assert_argerror(err, fname, argn, mentions)
            assert.are.same(before, snapshot(c))
            assert.are.equal("disconnected", c:state())
            -- still usable: publishing before connect queues
            local mid = c:publish("zargs/ok", "fine", 1)
            assert.are.equal("integer", math_type(mid))
            assert.are.equal(before.queued + 1, c:stats().queued)
        end)
    end

    describe("valid calls on a client that never connected", function()
        it("publish queues and returns an integer mid, QoS 0 included", function()
            local s0 = c:stats().queued
            local m0 = c:publish("a/b", "x")
            local m1 = c:publish("a/b", nil, 1)
            local m2 = c:publish("a/b", "\0binary\255", 2, true)
            assert.are.equal("integer", math_type(m0))
            assert.are.equal("integer", math_type(m1))
            assert.are.equal("integer", math_type(m2))
            assert.are_not.equal(m1, m2)
            assert.are.equal(s0 + 3, c:stats().queued)
        end)

        it("subscribe accepts the single-string form and the list form", function()
            local m1 = c:subscribe("a/+", 1)
            local m2 = c:subscribe({ { "a/#", 0 }, { "+/b", 2 }, { "#", 1 } })
            assert.are.equal("integer", math_type(m1))
            assert.are.equal("integer", math_type(m2))
            assert.are_not.equal(m1, m2)
            assert.are.equal("integer", math_type(c:unsubscribe({ "a/+", "a/#" })))
        end)

        it("on accepts a condition, negative and fractional priorities, and off removes", function()
            c:on(mqtt.PUBLISH, noop)
            c:on(mqtt.PUBLISH, noop, noop)
            c:on(mqtt.PUBLISH, noop, noop, -3)
            c:on(mqtt.PUBLISH, noop, noop, 2.5)
            c:on(mqtt.PUBACK, noop, function() return true end, 0)
            c:off(mqtt.PUBLISH, noop)
            c:off(mqtt.PUBACK, noop)
        end)
    end)
end)

describe("a closed client", function()
    local METHODS = {
        { "on", { mqtt.PUBLISH, noop } },
        { "off", { mqtt.PUBLISH, noop } },
        { "set_will", { "a", "b", 0, false } },
        { "set_username_pw", { "u", "p" } },
        { "connect", { HOST, 60, 1883 } },
        { "connect_async", { HOST, 60, 1883 } },
        { "reconnect", {} },
        { "publish", { "a", "b" } },
        { "subscribe", { "a", 0 } },
        { "unsubscribe", { { "a" } } },
        { "disconnect", {} },
        { "loop", {} },
        { "dispatch", { 0 } },
        { "fd", {} },
        { "stats", {} },
    }
    for _, m in ipairs(METHODS) do
        local name, args = m[1], m[2]
        it(name .. "() raises an MQTTError naming the method", function()
            local c = mqtt.Client(helpers.unique("zclosed"))
            c:close()
            local ok, err = pcall(c[name], c, compat.unpack(args))
            assert.is_false(ok, name .. " did not raise on a closed client")
            assert.is_true(mqtt.is_error(err), tostring(err))
            assert.is_string(err.message)
            assert.is_truthy(tostring(err):find("%f[%w_]" .. name .. "%f[^%w_]"),
                             "message does not name " .. name .. ": " .. tostring(err))
        end)
    end

    it("reports closed, not connected, and close() again is harmless", function()
        local c = mqtt.Client(helpers.unique("zclosed"))
        c:close()
        assert.is_false(c:is_connected())
        assert.are.equal("closed", c:state())
        assert.has_no.errors(function() c:close() end)
    end)
end)

describe("errors", function()
    local broker, clients = helpers.with_broker({ users = { alice = "secret" } }, "zerr")

    it("a refused connect raises an MQTTConnectionError with code, name, message", function()
        local c = clients:new()
        c:set_username_pw("alice", "wrong")
        local ok, err = pcall(c.connect, c, HOST, 10, broker.port)
        assert.is_false(ok)
        assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError))
        assert.is_true(mqtt.is_error(err, mqtt.MQTTError))
        assert.is_true(mqtt.is_error(err))
        assert.is_false(mqtt.is_error(err, mqtt.MQTTProtocolError))
        assert.are.equal("MQTTConnectionError", err.kind)
        assert.are.equal(5, err.code)
        assert.are.equal("not authorized", err.name)
        assert.is_string(err.message)
        local text = tostring(err)
        assert.matches("MQTTConnectionError", text, 1, true)
        assert.matches("not authorized", text, 1, true)
        assert.matches("5", text, 1, true)
        assert.is_false(c:is_connected())

        -- without credentials: refused too
        local c2 = clients:new()
        local ok2, err2 = pcall(c2.connect, c2, HOST, 10, broker.port)
        assert.is_false(ok2)
        assert.is_true(mqtt.is_error(err2, mqtt.MQTTConnectionError))
        assert.are.equal(5, err2.code)

        -- and the client stays usable
        c:set_username_pw("alice", "secret")
        c:connect(HOST, 10, broker.port)
        assert.is_true(c:is_connected())
    end)

    it("a failed TCP connect raises an MQTTConnectionError without a CONNACK code", function()
        local c = clients:new()
        local port = helpers.free_port() -- nothing listens there
        local ok, err = pcall(c.connect, c, HOST, 10, port)
        assert.is_false(ok)
        assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError))
        assert.is_true(mqtt.is_error(err))
        assert.is_false(mqtt.is_error(err, mqtt.MQTTProtocolError))
        assert.are.equal("MQTTConnectionError", err.kind)
        assert.is_nil(err.code)
        assert.is_string(err.name)
        assert.is_string(err.message)
        assert.matches("^MQTTConnectionError: ", tostring(err))
        assert.matches(err.message, tostring(err), 1, true)
    end)

    it("a protocol error is an MQTTProtocolError and an MQTTError", function()
        local fb = FakeBroker.new()
        finally(function() fb:close() end)
        local c = clients:new()
        local errors = {}
        local function collect(_, d)
            if d.error then errors[#errors + 1] = d.error end
        end
        c:on(mqtt.CONNACK, collect)
        c:on(mqtt.DISCONNECT, collect)
        c:connect_async { host = fb.host, port = fb.port, keepalive = 10 }
        assert(fb:accept())
        fb:expect(FakeBroker.CONNECT)
        fb:send(FakeBroker.packet(0x20, "\0\0\0")) -- CONNACK with remaining length 3
        assert.is_true(helpers.wait_dispatch(function() return #errors > 0 end, 5))
        local err = errors[1]
        assert.is_true(mqtt.is_error(err, mqtt.MQTTProtocolError))
        assert.is_true(mqtt.is_error(err, mqtt.MQTTError))
        assert.is_true(mqtt.is_error(err))
        assert.is_false(mqtt.is_error(err, mqtt.MQTTConnectionError))
        assert.are.equal("MQTTProtocolError", err.kind)
        assert.is_string(err.name)
        assert.is_string(err.message)
        assert.matches("^MQTTProtocolError: ", tostring(err))
        assert.is_false(c:is_connected())
    end)

    it("mqtt.is_error is false for what is not an error of that kind", function()
        assert.is_false(mqtt.is_error(nil))
        assert.is_false(mqtt.is_error("MQTTError: x"))
        assert.is_false(mqtt.is_error(42))
        assert.is_false(mqtt.is_error({ kind = "MQTTError", message = "x" }))
        local ok, err = pcall(mqtt.Client, nil)
        assert.is_false(ok)
        assert.is_true(mqtt.is_error(err))
        assert.is_false(mqtt.is_error(err, mqtt.MQTTConnectionError))
    end)

    it("after a batch of bad calls on a connected client, only the good publish reaches a subscriber", function()
        local id = helpers.unique("zbatch")
        local c = clients:new(id)
        c:set_username_pw("alice", "secret")
        c:connect(HOST, 30, broker.port)
        -- The bad calls take long under sanitizers: the subscriber must outlive them.
        local sub = helpers.mosquitto_sub_collect(broker, { topic = "#", qos = 1, username = "alice",
                                                             password = "secret", timeout = 600 })
        local log_start = #(helpers.read_file(broker.log_file) or "")
        local failures = {}
        for _, case in ipairs(CASES) do
            local label, fname, fn = case[1], case[2], case[4]
            local before = snapshot(c)
            local ok, err = pcall(fn, c)
            if ok then
                failures[#failures + 1] = label .. ": accepted"
            elseif not (mqtt.is_error(err) and err.name == "invalid argument" and
                        tostring(err):find("to '" .. fname .. "'", 1, true)) then
                failures[#failures + 1] = label .. ": " .. tostring(err)
            end
            local after = snapshot(c)
            if after.queued ~= before.queued or after.queued_bytes ~= before.queued_bytes or
               after.inflight ~= before.inflight then
                failures[#failures + 1] = label .. ": something was queued"
            end
        end
        assert.are.same({}, failures)
        assert.is_true(c:is_connected())
        c:publish("zbatch/good", "the only one", 1)
        sub.wait_for(1, 5, helpers.dispatcher())
        mqtt.sleep(0.5)
        local msgs = sub.messages()
        sub.stop()
        assert.are.equal(1, #msgs)
        assert.are.equal("zbatch/good", msgs[1].topic)
        assert.are.equal("the only one", msgs[1].payload)
        assert.is_true(c:is_connected())
        local log = (helpers.read_file(broker.log_file) or ""):sub(log_start + 1)
        local _, publishes = log:gsub("Received PUBLISH from " .. id:gsub("%p", "%%%0"), "")
        assert.are.equal(1, publishes)
        assert.is_nil(log:find("Received SUBSCRIBE from " .. id, 1, true))
        assert.is_nil(log:find("Received UNSUBSCRIBE from " .. id, 1, true))
    end)
end)

-- Lua takes these from the C core (mqtt.core, built from include/mqtt.h):
-- they must still be what API.md promises.
describe("what Lua takes from the C core", function()
    it("the packet-type constants have API.md's values", function()
        local want = { CONNACK = 0x20, PUBLISH = 0x30, PUBACK = 0x40, PUBREC = 0x50, PUBREL = 0x60,
            PUBCOMP = 0x70, SUBACK = 0x90, UNSUBACK = 0xB0, PINGREQ = 0xC0, PINGRESP = 0xD0,
            DISCONNECT = 0xE0 }
        for name, v in pairs(want) do assert.are.equal(v, mqtt[name], name) end
    end)

    it("every status name raises as the kind API.md gives it; the others as MQTTError", function()
        local core = require("mqtt.core")
        local errors = require("mqtt.errors")
        local documented = {
            MQTTConnectionError = { "connection refused", "name resolution failed", "connect failed",
                "timeout", "i/o error", "connection closed", "keepalive timeout", "not connected",
                "cancelled", "tls error", "proxy error" },
            MQTTProtocolError = { "malformed packet", "protocol error", "packet too large" },
            MQTTError = { "invalid argument", "bad state", "out of memory", "queue full", "system error" },
        }
        local seen = {}
        for kind, names in pairs(documented) do
            for _, name in ipairs(names) do
                seen[name] = true
                assert.is_not_nil(core.status_kinds[name], name .. " is not a status name of the core")
                assert.are.equal(kind, errors.new(name, "m").kind, name)
            end
        end
        for name in pairs(core.status_kinds) do
            if not seen[name] then assert.are.equal("MQTTError", errors.new(name, "m").kind, name) end
        end
        assert.is_false(errors.is_status_error("ok"))
        assert.is_true(errors.is_status_error("timeout"))
    end)
end)
