-- integration/rabbitmq_spec.lua: zmqtt against RabbitMQ's MQTT plugin
-- (Debian's rabbitmq-server), with default client settings. RabbitMQ takes a
-- QoS 2 PUBLISH as QoS 1 and answers PUBACK: the client must finish it as a
-- downgraded publish (at least once), free its slot and id, and never resend
-- it. Starts a private node (its own epmd, ports, data dir, 127.0.0.1 only)
-- and stops both by PID.

local helpers = require("helpers")
local mqtt = require("mqtt")

local HOST = helpers.HOST

local function wait_for(pred, timeout)
    return helpers.wait_dispatch(pred, timeout, 0.01)
end

local SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"

describe("RabbitMQ", function()
    local node = {}
    local clients = helpers.clients("zrmq")
    helpers.close_after_each(clients)

    setup(function()
        local dir = helpers.tmpdir("zrmq")
        node.dir, node.port = dir, helpers.free_port()
        local epmd_port, amqp_port, dist_port = helpers.free_port(), helpers.free_port(),
            helpers.free_port()
        helpers.write_file(dir .. "/enabled_plugins", "[rabbitmq_mqtt].\n")
        helpers.write_file(dir .. "/rabbitmq.conf", table.concat({
            "listeners.tcp.1 = 127.0.0.1:" .. amqp_port,
            "mqtt.listeners.tcp.1 = 127.0.0.1:" .. node.port,
            "mqtt.allow_anonymous = true",
            "loopback_users = none",
        }, "\n") .. "\n")
        local env = table.concat({
            "HOME=" .. dir, "ERL_EPMD_ADDRESS=127.0.0.1", "ERL_EPMD_PORT=" .. epmd_port,
            "RABBITMQ_NODENAME=zmqtt@localhost", "RABBITMQ_DIST_PORT=" .. dist_port,
            "RABBITMQ_MNESIA_BASE=" .. dir .. "/mnesia", "RABBITMQ_LOG_BASE=" .. dir .. "/log",
            "RABBITMQ_CONFIG_FILE=" .. dir .. "/rabbitmq",
            "RABBITMQ_ENABLED_PLUGINS_FILE=" .. dir .. "/enabled_plugins",
            "RABBITMQ_FEATURE_FLAGS_FILE=" .. dir .. "/feature_flags",
            "RABBITMQ_PLUGINS_EXPAND_DIR=" .. dir .. "/plugins",
            "RABBITMQ_PID_FILE=" .. dir .. "/pid",
            -- The script then execs the Erlang VM (no wrapper shell, no
            -- input): the PID started is the broker's own.
            "RUNNING_UNDER_SYSTEMD=1",
        }, " ")
        node.epmd = helpers.start_process("epmd -address 127.0.0.1 -port " .. epmd_port,
                                          dir .. "/epmd.log")
        assert(helpers.wait_until(function() return helpers.port_open(epmd_port) end, 5),
               "epmd did not start")
        node.server = helpers.start_process(SERVER, dir .. "/server.log", env)
        assert(helpers.wait_until(function() return helpers.port_open(node.port) end, 60),
               "RabbitMQ's MQTT listener did not open: " ..
               tostring(helpers.read_file(dir .. "/server.log")))
    end)

    teardown(function()
        clients:close_all()
        if node.server then node.server.stop(10) end
        if node.epmd then node.epmd.stop() end
    end)

    it("answers QoS 2 with PUBACK: the client completes each publish as downgraded, " ..
       "frees its slot and id, resends nothing, and every message arrives", function()
        local sub = clients:new(nil, true)
        sub:connect(HOST, 30, node.port)
        local got = {}
        sub:loop(function(_, d) got[#got + 1] = d.message.payload end)
        helpers.subscribe_wait(sub, "zmqtt/q2/#", 1)

        local c = clients:new(nil, true)
        c:connect(HOST, 30, node.port)
        c:loop()
        local acks = {}
        c:on(mqtt.PUBACK, function(_, d) acks[#acks + 1] = d end)
        local N, last = 200, nil   -- ten times the default window
        for i = 1, N do last = c:publish("zmqtt/q2/t", tostring(i), 2) end
        local data, err = c:wait(last, 10)
        assert.is_nil(err)
        assert.is_true(data.downgraded)
        assert.is_true(wait_for(function() return #acks == N and #got == N end, 10),
                       ("%d acks, %d messages"):format(#acks, #got))
        for i = 1, N do
            assert.is_true(acks[i].downgraded)
            assert.equal(tostring(i), got[i])
        end
        local st = c:stats()
        assert.equal(N, st.downgraded)
        assert.equal(0, st.inflight)
        local t0 = helpers.now()
        c:disconnect()
        assert.is_true(helpers.now() - t0 < 1, "disconnect waited for acks that had come")
    end)

    it("QoS 1 and QoS 0 round trips, and a refused connection from a bad password", function()
        local c = clients:new(nil, true)
        c:connect(HOST, 30, node.port)
        local got = {}
        c:loop(function(_, d) got[#got + 1] = d.message end)
        helpers.subscribe_wait(c, "zmqtt/rt/#", 1)
        assert.is_truthy(c:wait(c:publish("zmqtt/rt/1", "one", 1), 5))
        c:publish("zmqtt/rt/0", "zero", 0)
        assert.is_true(wait_for(function() return #got == 2 end, 5))
        local bad = clients:new(nil, true, { reconnect = false })
        bad:set_username_pw("nobody", "wrong")
        local ok, e = pcall(bad.connect, bad, HOST, 30, node.port)
        assert.is_false(ok)
        assert.is_true(mqtt.is_error(e, mqtt.MQTTConnectionError), tostring(e))
    end)
end)
