-- A client with a store, for spec/18_store_spec.lua. Arguments: port, store
-- directory, client id, sync mode, then a mode:
--   publish FIRST1 FIRST2  publishes QoS 1 messages FIRST1, FIRST1+1, ... on
--                          store/1 and QoS 2 ones from FIRST2 on store/2,
--                          alternately, until it is killed, printing
--                          "I J" once both I and J were published;
--   drain ROUND            waits until what the store recovered is sent and
--                          complete, then publishes "end ROUND" on both topics
--                          and exits;
--   queue FIRST N          publishes N QoS 1 messages without connecting,
--                          prints "queued" and waits to be killed;
--   subscribe              prints "msg PAYLOAD" for each message delivered,
--                          until it is killed.
local mqtt = require("mqtt")

local port, dir, id, sync, mode, a, b = ...
local c = mqtt.Client(id, false, { store = { path = dir, sync = sync } })
io.stdout:setvbuf("no")

local function settled()
    local st = c:stats()
    return st.queued == 0 and st.inflight == 0
end

if mode == "queue" then
    for i = tonumber(a), tonumber(a) + tonumber(b) - 1 do
        c:publish("store/1", tostring(i), 1)
    end
    print("queued")
    while true do mqtt.sleep(1) end
end

if mode == "subscribe" then
    c:loop(function(_, d) print("msg " .. d.message.payload) end)
end
c:connect("127.0.0.1", 30, tonumber(port))
if mode == "subscribe" then
    while true do mqtt.dispatch(0.05) end
end
if mode == "publish" then
    local i, j = tonumber(a), tonumber(b)
    while true do
        c:publish("store/1", tostring(i), 1)
        c:publish("store/2", tostring(j), 2)
        -- Both publishes returned: durable ("always"), whatever happens next.
        io.write(i, " ", j, "\n")
        i, j = i + 1, j + 1
        mqtt.dispatch(0)
    end
end

assert(mode == "drain", "unknown mode " .. tostring(mode))
local deadline = mqtt.monotonic() + 10
while not settled() and mqtt.monotonic() < deadline do mqtt.dispatch(0.01) end
assert(settled(), "the recovered messages were not acknowledged")
c:publish("store/1", "end " .. a, 1)
c:publish("store/2", "end " .. a, 2)
while not settled() and mqtt.monotonic() < deadline do mqtt.dispatch(0.01) end
assert(settled(), "the end markers were not acknowledged")
c:disconnect()
c:close()
print("drained")
