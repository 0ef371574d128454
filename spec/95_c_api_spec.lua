-- The public C header used alone: examples/c_client.c, built by make test,
-- connects, subscribes, publishes at QoS 1 and receives through the event fd;
-- an MQTT 5.0 property is refused in words while the client speaks 3.1.1.
local helpers = require("helpers")

describe("the C API without Lua", function()
    local broker
    setup(function() broker = helpers.start_broker() end)
    teardown(function() helpers.stop_all() end)

    it("runs examples/c_client.c against a real broker", function()
        local exe = os.getenv("ZMQTT_C_CLIENT") or "build/c_client"
        local ok, code, out = helpers.run(table.concat({ exe, broker.host, broker.port,
            "capi/topic", helpers.quote("hello from C") }, " "), 20)
        assert.is_true(ok, "exit " .. tostring(code) .. ": " .. tostring(out))
        assert.matches("connected (session present: 0, API version 2)", out, 1, true)
        assert.matches("refused: PUBLISH properties need MQTT 5.0; the client speaks MQTT 3.1.1",
            out, 1, true)
        assert.matches("SUBACK for mid 1, granted 1", out, 1, true)
        assert.matches("message on capi/topic: hello from C", out, 1, true)
        assert.matches("PUBACK for mid 2", out, 1, true)
    end)

    it("reports a refused TCP connection in words", function()
        local exe = os.getenv("ZMQTT_C_CLIENT") or "build/c_client"
        local ok, _, out = helpers.run(exe .. " 127.0.0.1 " .. helpers.free_port() .. " t m", 20)
        assert.is_false(ok)
        assert.matches("connect: connect failed: 127.0.0.1:%d+: Connection refused", out)
    end)
end)
