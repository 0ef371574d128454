-- zmqtt in a libuv loop (luv): a poll handle watches client:fd(), which is
-- readable while events are queued, and dispatches them without blocking.
-- The client subscribes, publishes `count` messages to itself and exits.
-- Usage: lua5.4 examples/eventloops/luv.lua [host] [port] [count]
local uv = require("luv")
local mqtt = require("mqtt")

local host, port = arg[1] or "127.0.0.1", tonumber(arg[2] or "1883")
local count = tonumber(arg[3] or "10")
local topic = string.format("zmqtt/luv/%d-%d", os.time(), math.random(1e6))

local client = mqtt.Client("", true)
local received, failure = 0, nil

client:on(mqtt.CONNACK, function(c, data)
    if data.return_code ~= 0 then
        failure = "connect failed: " .. tostring(data.error or data.return_code)
        uv.stop()
        return
    end
    c:subscribe(topic, 1)
end)
client:on(mqtt.SUBACK, function(c)
    for i = 1, count do
        c:publish(topic, "message " .. i, 1)
    end
end)
client:on(mqtt.PUBLISH, function(_, data)
    received = received + 1
    print(string.format("luv: received %d/%d: %s", received, count, data.message.payload))
    if received == count then
        uv.stop()
    end
end, mqtt.topic_filter(topic))

-- Readable while events wait: dispatch(0) runs their callbacks and returns.
local poll = uv.new_poll(client:fd())
poll:start("r", function(err)
    assert(not err, err)
    client:dispatch(0)
end)

-- A deadline, so a lost broker cannot hang the program.
local deadline = uv.new_timer()
deadline:start(10000, 0, function()
    failure = "timed out"
    uv.stop()
end)

client:connect_async(host, 30, port)   -- the outcome arrives as CONNACK
uv.run()

-- Close the handles before the client (which closes the fd under the poll
-- handle), then give libuv one more run to finish closing them: luv's
-- handles are only released by their close callbacks.
poll:close()
deadline:close()
uv.run()
client:disconnect()
client:close()

if failure then
    print("luv: " .. failure .. " after " .. received .. " of " .. count .. " messages")
    os.exit(1)
end
print("luv: " .. received .. " messages received")
