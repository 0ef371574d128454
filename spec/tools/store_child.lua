-- A client with a store, for spec/18_store_spec.lua. Arguments: port, store
-- directory, client id, sync mode, then a mode:
--   run ROUND N GO         one life of a publisher that a test kills and
--                          starts again: prints "recovered B" (messages the
--                          store gave back), connects, prints "left X" as
--                          what it recovered goes out and is acknowledged,
--                          publishes "end ROUND" on store/1 (QoS 1) and
--                          store/2 (QoS 2), prints "marked ROUND" once both
--                          are acknowledged, waits for the file GO ("I J":
--                          where the test saw the numbers stop), then
--                          publishes QoS 1 messages I..N on store/1 and QoS 2
--                          ones J..N on store/2, alternately, printing
--                          "I J" after each pair, and at the end "end fin"
--                          on both, "done" when all is acknowledged;
--   drain ROUND            waits until what the store recovered is sent and
--                          complete, then publishes "end ROUND" on both topics
--                          and exits;
--   queue FIRST N          publishes N QoS 1 messages without connecting,
--                          prints "queued" and waits to be killed;
--   subscribe              prints "msg PAYLOAD" for each message delivered,
--                          until it is killed.
local mqtt = require("mqtt")

local port, dir, id, sync, mode, a, b, go = ...
local c = mqtt.Client(id, false, { store = { path = dir, sync = sync } })
io.stdout:setvbuf("no")

-- Messages held: not yet sent, or not yet complete.
local function held()
    local st = c:stats()
    return st.queued + st.inflight
end

-- Dispatches until nothing is held; calls report(n) when the count changes.
local function settle(limit, report)
    local deadline = mqtt.monotonic() + limit
    local last
    while mqtt.monotonic() < deadline do
        local n = held()
        if n ~= last and report then report(n) end
        last = n
        if n == 0 then return end
        mqtt.dispatch(0.002)
    end
    error("the store's messages were not acknowledged within " .. limit .. " s")
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
if mode == "run" then print("recovered " .. held()) end
c:connect("127.0.0.1", 30, tonumber(port))
if mode == "subscribe" then
    while true do mqtt.dispatch(0.05) end
end

local function mark(text)
    c:publish("store/1", "end " .. text, 1)
    c:publish("store/2", "end " .. text, 2)
end

if mode == "drain" then
    settle(10)
    mark(a)
    settle(10)
    c:disconnect()
    c:close()
    print("drained")
    return
end

assert(mode == "run", "unknown mode " .. tostring(mode))
local n = tonumber(b)
settle(30, function(x) io.write("left ", x, "\n") end)
mark(a)
settle(30)
print("marked " .. a)
local i, j
while not i do
    local f = io.open(go, "r")
    if f then
        i, j = f:read("*n", "*n")
        f:close()
    end
    if not i then mqtt.dispatch(0.005) end
end
-- "batch" returns before the disk has it: the backlog is bounded so that a
-- kill finds plenty to resend, and no more.
local window = sync == "batch" and 200 or math.huge
while i <= n or j <= n do
    if i <= n then c:publish("store/1", tostring(i), 1) end
    if j <= n then c:publish("store/2", tostring(j), 2) end
    -- Both publishes returned: durable under "always", whatever happens next.
    io.write(math.min(i, n), " ", math.min(j, n), "\n")
    i, j = i + 1, j + 1
    mqtt.dispatch(0)
    while held() > window do mqtt.dispatch(0.002) end
end
settle(30)
mark("fin")
settle(30)
c:disconnect()
c:close()
print("done")
