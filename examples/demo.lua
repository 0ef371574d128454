-- The zmqtt demo: connect, subscribe, publish at QoS 0, 1 and 2, and print
-- what the callbacks receive. Usage: lua5.4 examples/demo.lua [host] [port]
local mqtt = require("mqtt")

local host, port = arg[1] or "127.0.0.1", tonumber(arg[2] or "1883")
local client = mqtt.Client("zmqtt-demo-" .. os.time(), true)

client:connect(host, 30, port, nil, nil, function(c)
    print("connected to " .. host .. ":" .. port .. ", is_connected = " .. tostring(c:is_connected()))
end)

local received, completed = 0, {}

-- A specific callback: only messages on demo/cool, ahead of the generic one.
client:on(mqtt.PUBLISH, function(_, data)
    print("cool:     ", data.message)
    received = received + 1
end, mqtt.topic_filter("demo/cool"))

client:on(mqtt.SUBACK, function(_, data)
    print("SUBACK    mid " .. data.mid .. ", granted QoS " .. table.concat(data.granted_qos, ", "))
end)
for _, cmd in ipairs { "PUBACK", "PUBREC", "PUBCOMP" } do
    client:on(mqtt[cmd], function(_, data)
        print(string.format("%-9s mid %d", cmd, data.mid))
        completed[data.mid] = true
    end)
end

-- loop() starts the automatic protocol handling and sets the generic message callback.
client:loop(function(_, data)
    print("message:  ", data.message)
    received = received + 1
end)

client:subscribe({ { "demo/#", 2 } })
mqtt.sleep(0.2)

local mids = {}
for qos = 0, 2 do
    mids[qos] = client:publish("demo/qos" .. qos, "hello at QoS " .. qos, qos)
    print("published mid " .. mids[qos] .. " at QoS " .. qos)
end
client:publish("demo/cool", "binary \0 payload", 1)

local deadline = mqtt.monotonic() + 5
while (received < 4 or not (completed[mids[1]] and completed[mids[2]]))
    and mqtt.monotonic() < deadline do
    mqtt.dispatch(0.1)
end

client:disconnect()
client:close()
if received < 4 then
    print("demo failed: received " .. received .. " of 4 messages")
    os.exit(1)
end
print("demo done: " .. received .. " messages received")
