-- zmqtt in a cqueues controller: a coroutine waits with cqueues.poll on a
-- pollable object whose pollfd is client:fd() (readable while events are
-- queued) and dispatches. The client subscribes, publishes `count` messages to
-- itself and exits.
-- Usage: lua5.4 examples/eventloops/cqueues.lua [host] [port] [count]
local cqueues = require("cqueues")
local mqtt = require("mqtt")

local host, port = arg[1] or "127.0.0.1", tonumber(arg[2] or "1883")
local count = tonumber(arg[3] or "10")
local topic = string.format("zmqtt/cqueues/%d-%d", os.time(), math.random(1e6))

local client = mqtt.Client("", true)
local received, failure = 0, nil

client:on(mqtt.CONNACK, function(c, data)
    if data.return_code ~= 0 then
        failure = "connect failed: " .. tostring(data.error or data.return_code)
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
    print(string.format("cqueues: received %d/%d: %s", received, count, data.message.payload))
end, mqtt.topic_filter(topic))

-- Any table with pollfd and events is pollable by cqueues.
local events = { pollfd = client:fd(), events = "r" }

local cq = cqueues.new()
cq:wrap(function()
    local deadline = cqueues.monotime() + 10
    client:connect_async(host, 30, port)   -- the outcome arrives as CONNACK
    while received < count and not failure do
        local left = deadline - cqueues.monotime()
        if left <= 0 then
            failure = "timed out"
            break
        end
        cqueues.poll(events, left)   -- yields to the controller until readable
        client:dispatch(0)
    end
end)
local ok, err = cq:loop()

-- cqueues caches what it polls: forget the descriptor before it is closed.
cqueues.cancel(events.pollfd)
client:disconnect()
client:close()

if not ok then
    print("cqueues: " .. tostring(err))
    os.exit(1)
elseif failure then
    print("cqueues: " .. failure .. " after " .. received .. " of " .. count .. " messages")
    os.exit(1)
end
print("cqueues: " .. received .. " messages received")
