-- examples/love/main.lua: zmqtt in a LÖVE 11 game. The client connects
-- without blocking (connect_async) and love.update drains what arrived with
-- client:dispatch(0), which never waits: callbacks run inside the frame.
-- A worker thread (worker.lua) owns a second client in its own Lua state.
--
-- Run from the repository root (after `make LUA=luajit`):
--   love examples/love [host] [port] [seconds] [expected]
-- It subscribes to zmqtt/love/#, publishes one message to itself, lets the
-- worker publish three, and quits after `seconds` (default 5) or as soon as
-- `expected` messages arrived; the exit status is 0 when they all did.

-- Load the checkout's Lua files and LuaJIT build (ahead of any installed copy).
local source = love.filesystem.getSource()
local root = source:match("^(.*)/examples/love/?$") or (source .. "/../..")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/luajit/?.so;" .. package.cpath

local mqtt = require("mqtt")

local client
local host, port, seconds, expected
local received, frames, elapsed = {}, 0, 0
local worker
local WORKER_MESSAGES = 3

io.stdout:setvbuf("line")

local function say(fmt, ...)
    print("love: " .. fmt:format(...))
end

local function hex(s)
    return (s:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end

-- OS threads of this process (the game's, LÖVE's and the clients' one I/O thread).
local function thread_count()
    local f = io.open("/proc/self/status")
    if not f then return -1 end
    local n = f:read("*a"):match("\nThreads:%s*(%d+)")
    f:close()
    return tonumber(n)
end

function love.load(args)
    host = args[1] or "127.0.0.1"
    port = tonumber(args[2] or "1883")
    seconds = tonumber(args[3] or "5")
    expected = tonumber(args[4] or tostring(1 + WORKER_MESSAGES))

    client = mqtt.Client("", true)
    client:on(mqtt.CONNACK, function(c, data)
        if data.return_code ~= 0 then
            say("connect failed: %s", tostring(data.error or data.return_code))
            love.event.quit(1)
            return
        end
        c:subscribe("zmqtt/love/#", 1)
    end)
    client:on(mqtt.SUBACK, function(c)
        say("subscribed")
        c:publish("zmqtt/love/self", "hello from LÖVE", 1)
        local before = thread_count()
        worker = love.thread.newThread("worker.lua")
        worker:start(package.path, package.cpath, host, port, "zmqtt/love/worker",
                     WORKER_MESSAGES, false)
        say("threads before the worker: %d", before)
    end)
    client:on(mqtt.PUBLISH, function(_, data)
        local m = data.message
        received[#received + 1] = m
        say("message %s %d %s", m.topic, m.qos, hex(m.payload))
    end)
    client:connect_async(host, 30, port)
end

-- The worker reports through a channel; once it has published, wait for its
-- thread to end: its Lua state is closed, and its client with it.
local function watch_worker()
    local status = love.thread.getChannel("zmqtt-worker"):pop()
    if status and status:find("^connected") then
        say("worker: %s", status)
    elseif status then
        say("worker: %s", status)
        worker:wait()
        local err = worker:getError()
        if err then say("worker error: %s", err) end
        say("threads after the worker ended: %d", thread_count())
        worker = nil
    end
end

function love.update(dt)
    frames = frames + 1
    elapsed = elapsed + dt
    client:dispatch(0)   -- runs the callbacks of whatever arrived; never blocks
    if worker then watch_worker() end
    if (#received >= expected and not worker) or elapsed >= seconds then
        love.event.quit(#received >= expected and 0 or 1)
    end
end

function love.quit()
    say("%d frames, %d messages", frames, #received)
    client:disconnect()
    client:close()
end
