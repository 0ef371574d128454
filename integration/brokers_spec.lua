-- integration/brokers_spec.lua: zmqtt with default settings against the
-- brokers people deploy besides mosquitto: RabbitMQ 3.10 (Debian's
-- rabbitmq-server with its MQTT plugin), ActiveMQ 5.17 (Debian's activemq,
-- with the MQTT codec of libmqtt-client-java) and aedes (npm, installed by
-- make integration into build/aedes). Each runs privately on free loopback
-- ports and is stopped by PID. The same checks for each: QoS 0, 1 and 2 both
-- ways and a burst of 500 QoS 2 publishes (ten times the default window),
-- all delivered in order; a retained message; a will on close(); a
-- persistent session; protocol "auto" falling back to 3.1.1 (none of them
-- speaks MQTT 5.0). RabbitMQ takes QoS 2 as QoS 1 and answers PUBACK: the
-- client completes those publishes as downgraded.

local helpers = require("helpers")
local mqtt = require("mqtt")

local HOST = helpers.HOST
local ROOT = os.getenv("ZMQTT_ROOT") or "."

local function wait_for(pred, timeout)
    return helpers.wait_dispatch(pred, timeout, 0.01)
end

local function wait_port(port, timeout, log)
    assert(helpers.wait_until(function() return helpers.port_open(port) end, timeout),
           "the broker did not open port " .. port .. ": " .. tostring(helpers.read_file(log)))
end

-- Each starter returns the MQTT port and a function that stops what it started.
local BROKERS = {
    {
        name = "RabbitMQ", downgrades = true,
        available = function() return helpers.run("test -x /usr/lib/rabbitmq/bin/rabbitmq-server") end,
        start = function(dir)
            local port, epmd_port = helpers.free_port(), helpers.free_port()
            helpers.write_file(dir .. "/enabled_plugins", "[rabbitmq_mqtt].\n")
            helpers.write_file(dir .. "/rabbitmq.conf", table.concat({
                "listeners.tcp.1 = 127.0.0.1:" .. helpers.free_port(),
                "mqtt.listeners.tcp.1 = 127.0.0.1:" .. port,
                "mqtt.allow_anonymous = true",
                "loopback_users = none",
            }, "\n") .. "\n")
            local env = table.concat({
                "HOME=" .. dir, "ERL_EPMD_ADDRESS=127.0.0.1", "ERL_EPMD_PORT=" .. epmd_port,
                "RABBITMQ_NODENAME=zmqtt@localhost", "RABBITMQ_DIST_PORT=" .. helpers.free_port(),
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
            local epmd = helpers.start_process("epmd -address 127.0.0.1 -port " .. epmd_port,
                                               dir .. "/epmd.log")
            wait_port(epmd_port, 5, dir .. "/epmd.log")
            local server = helpers.start_process("/usr/lib/rabbitmq/bin/rabbitmq-server",
                                                 dir .. "/server.log", env)
            wait_port(port, 60, dir .. "/server.log")
            return port, function()
                server.stop(10)
                epmd.stop()
            end
        end,
    },
    {
        name = "ActiveMQ",
        available = function() return helpers.run("test -f /usr/share/java/activemq-run.jar") end,
        start = function(dir)
            local port = helpers.free_port()
            helpers.run("mkdir -p " .. helpers.quote(dir .. "/conf") .. " " ..
                        helpers.quote(dir .. "/lib"))
            -- Debian's activemq leaves out the MQTT codec: it comes from
            -- libmqtt-client-java, through the instance's own lib/.
            helpers.run("ln -s /usr/share/java/mqtt-client.jar /usr/share/java/hawtdispatch.jar " ..
                        "/usr/share/java/hawtdispatch-transport.jar " .. helpers.quote(dir .. "/lib"))
            local schemas = "http://www.springframework.org/schema/beans " ..
                "http://www.springframework.org/schema/beans/spring-beans-2.0.xsd " ..
                "http://activemq.apache.org/schema/core " ..
                "http://activemq.apache.org/schema/core/activemq-core.xsd"
            helpers.write_file(dir .. "/conf/activemq.xml", ([[
<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="%s">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="zmqtt"
          dataDirectory="%s/data">
    <persistenceAdapter><kahaDB directory="%s/data/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="mqtt" uri="mqtt://127.0.0.1:%d"/>
    </transportConnectors>
  </broker>
</beans>
]]):format(schemas, dir, dir, port))
            local java = ("java -Xms64M -Xmx256M -Dactivemq.home=/usr/share/activemq " ..
                          "-Dactivemq.base=%s -Dactivemq.conf=%s/conf -Dactivemq.data=%s/data " ..
                          "-jar /usr/share/java/activemq-run.jar start xbean:file:%s/conf/activemq.xml")
                :format(dir, dir, dir, dir)
            local server = helpers.start_process(java, dir .. "/server.log")
            wait_port(port, 60, dir .. "/server.log")
            return port, function() server.stop(10) end
        end,
    },
    {
        name = "aedes",
        available = function()
            return helpers.run("test -d " .. helpers.quote(ROOT .. "/build/aedes/node_modules/aedes"))
        end,
        start = function(dir)
            local port = helpers.free_port()
            local js = dir .. "/server.js"
            helpers.write_file(js, ([[
const aedes = require(%q)()
require('net').createServer(aedes.handle).listen(%d, '127.0.0.1')
]]):format(ROOT .. "/build/aedes/node_modules/aedes", port))
            local server = helpers.start_process("node " .. helpers.quote(js), dir .. "/server.log")
            wait_port(port, 20, dir .. "/server.log")
            return port, function() server.stop() end
        end,
    },
}

for _, broker in ipairs(BROKERS) do
    describe(broker.name, function()
        local node = {}
        local clients = helpers.clients("zb")
        helpers.close_after_each(clients)

        setup(function()
            if not broker.available() then return end
            node.dir = helpers.tmpdir("zbroker")
            node.port, node.stop = broker.start(node.dir)
        end)

        teardown(function()
            clients:close_all()
            if node.stop then node.stop() end
        end)

        local function client(clean)
            local c = clients:new(nil, clean)
            c:connect(HOST, 30, node.port)
            return c
        end

        local function skipped()
            if node.port then return false end
            pending(broker.name .. " is not installed")
            return true
        end

        it("QoS 0, 1 and 2 both ways, and 500 QoS 2 publishes with default settings, all " ..
           "delivered in order", function()
            if skipped() then return end
            local sub = client(true)
            local got = helpers.collect(sub)
            helpers.subscribe_wait(sub, "zmqtt/iop/#", 2)
            local pub = client(true)
            pub:loop()
            local down = 0
            pub:on(mqtt.PUBACK, function(_, d) if d.downgraded then down = down + 1 end end)
            for q = 0, 2 do pub:publish("zmqtt/iop/q" .. q, "q" .. q, q) end
            local N, last = 500, nil
            for i = 1, N do last = pub:publish("zmqtt/iop/burst", tostring(i), 2) end
            local data, err = pub:wait(last, 30)
            assert.is_nil(err)
            assert.is_true(wait_for(function() return #got >= N + 3 end, 20),
                           ("%d of %d messages"):format(#got, N + 3))
            local burst = {}
            for _, m in ipairs(got) do
                if m.topic == "zmqtt/iop/burst" then burst[#burst + 1] = m.payload end
            end
            assert.equal(N, #burst)
            for i = 1, N do assert.equal(tostring(i), burst[i]) end
            local st = pub:stats()
            assert.equal(0, st.inflight)
            if broker.downgrades then
                -- RabbitMQ: every QoS 2 publish came back as a downgraded PUBACK.
                assert.is_true(data.downgraded)
                assert.equal(N + 1, down)
                assert.equal(N + 1, st.downgraded)
                local t0 = helpers.now()
                pub:disconnect()
                assert.is_true(helpers.now() - t0 < 1, "disconnect waited for acks that had come")
            else
                assert.equal(0, st.downgraded)
            end
        end)

        it("a retained message reaches a later subscriber with retain set", function()
            if skipped() then return end
            local pub = client(true)
            pub:loop()
            assert.is_truthy(pub:wait(pub:publish("zmqtt/iop/retained", "kept", 1, true), 5))
            local late = client(true)
            local got = helpers.collect(late)
            helpers.subscribe_wait(late, "zmqtt/iop/retained", 1)
            assert.is_true(wait_for(function() return #got >= 1 end, 5))
            assert.equal("kept", got[1].payload)
            assert.is_true(got[1].retain)
            pub:wait(pub:publish("zmqtt/iop/retained", "", 1, true), 5)
        end)

        it("close() without DISCONNECT makes the broker publish the will", function()
            if skipped() then return end
            local watcher = client(true)
            local got = helpers.collect(watcher)
            helpers.subscribe_wait(watcher, "zmqtt/iop/will", 1)
            local w = clients:new(nil, true)
            w:set_will("zmqtt/iop/will", "gone", 1, false)
            w:connect(HOST, 5, node.port)
            w:close()
            assert.is_true(wait_for(function() return #got >= 1 end, 10), "no will")
            assert.equal("gone", got[1].payload)
        end)

        it("protocol \"auto\" falls back to 3.1.1, keeps it for reconnects, and works",
           function()
            if skipped() then return end
            -- These brokers speak 3.1.1 only: each refuses 5.0 in its own way
            -- (a CONNACK code or a closed connection).
            local c = clients:new(nil, true, { protocol = "auto" })
            c:connect(HOST, 30, node.port)
            assert.equal(4, c:protocol())
            local got = helpers.collect(c)
            helpers.subscribe_wait(c, "zmqtt/iop/auto", 1)
            assert.is_truthy(c:wait(c:publish("zmqtt/iop/auto", "fell back", 1), 5))
            assert.is_true(wait_for(function() return #got >= 1 end, 10), "no message")
            assert.equal("fell back", got[1].payload)
            c:disconnect()
            c:connect(HOST, 30, node.port)
            assert.equal(4, c:protocol())
        end)

        it("a persistent session keeps what was published while the client was away", function()
            if skipped() then return end
            local id = helpers.unique("zbp")
            local c = clients:new(id, false)
            c:connect(HOST, 30, node.port)
            helpers.subscribe_wait(c, "zmqtt/iop/persist", 1)
            c:disconnect()
            local pub = client(true)
            pub:loop()
            assert.is_truthy(pub:wait(pub:publish("zmqtt/iop/persist", "while away", 1), 5))
            local got = helpers.collect(c)
            c:connect(HOST, 30, node.port)
            assert.is_true(wait_for(function() return #got >= 1 end, 10), "nothing kept")
            assert.equal("while away", got[1].payload)
        end)
    end)
end
