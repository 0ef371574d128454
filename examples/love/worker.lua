-- examples/love/worker.lua: a love.thread with its own Lua state and its own
-- zmqtt client. Clients never cross Lua states: this one is created, used and
-- dropped here; the main thread hears about it through a love.thread channel.
-- Arguments: package.path, package.cpath, host, port, topic, count, close_it.
local path, cpath, host, port, topic, count, close_it = ...
package.path, package.cpath = path, cpath
require("love.thread")   -- threads start with no love modules loaded
local mqtt = require("mqtt")
local status = love.thread.getChannel("zmqtt-worker")

local client = mqtt.Client("", true)
client:connect(host, 30, port)   -- blocking is fine here: this is not the game thread
local acked = 0
client:on(mqtt.PUBACK, function() acked = acked + 1 end)
-- This process's OS threads now: LÖVE's and both clients' (shown by main.lua).
local f = io.open("/proc/self/status")
local threads = f and f:read("*a"):match("\nThreads:%s*(%d+)") or "?"
if f then f:close() end
status:push("connected, threads: " .. threads)
for i = 1, count do
    client:publish(topic, "from the worker " .. i, 1)
end
-- Wait until the broker has every message, dispatching meanwhile.
local deadline = mqtt.monotonic() + 5
while acked < count and mqtt.monotonic() < deadline do
    client:dispatch(0.1)
end
status:push(acked == count and "published" or ("acked only " .. acked))
if close_it then
    client:close()
end
-- Otherwise the client is still connected when this thread ends: closing the
-- thread's Lua state closes it and joins its I/O thread.
