--- bench/floods.lua: hostile brokers against a client with default settings,
-- and what the client holds at its peak. For each flood a client runs in a
-- child process (so its RSS is its own) that never dispatches while the
-- flood lasts and samples its counters and RSS every 20 ms; this process
-- plays the broker (spec/fake_broker.lua) on a free loopback port. Prints one
-- row per flood: peak RSS growth, peak stats().event_bytes and queued_bytes,
-- RSS growth and event_bytes once the client dispatched what it held (RSS
-- then includes pages the allocator keeps), and how the client ended
-- (connected with reading paused, or lost with a named error). The bounds: max_event_bytes 64 MiB, max_queued.bytes 256 MiB.
--
-- Usage: make bench-floods, or LUA_PATH with lua/ and spec/, then
--        lua5.4 bench/floods.lua [flood ...]   (default: all)

local socket = require("socket")
local FB = require("fake_broker")

local LUA = os.getenv("ZMQTT_LUA") or "lua5.4"
local MiB = 1024 * 1024

local CLIENT = [[
local mqtt, socket = require("mqtt"), require("socket")
local port, seconds, keepalive = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
local function rss()
    local f = io.open("/proc/self/status")
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("VmRSS:%s*(%d+)")) * 1024
end
local c = mqtt.Client("flooded", true)
local lost
c:on(mqtt.DISCONNECT, function(_, d) lost = lost or (d.error and d.error.name) end)
collectgarbage("collect")
local rss0 = rss()
c:connect_async { host = "127.0.0.1", port = port, keepalive = keepalive }
local peak = { rss = 0, ev = 0, q = 0 }
local t0 = socket.gettime()
while socket.gettime() - t0 < seconds do
    local st = c:stats()
    peak.ev = math.max(peak.ev, st.event_bytes)
    peak.q = math.max(peak.q, st.queued_bytes)
    peak.rss = math.max(peak.rss, rss() - rss0)
    socket.sleep(0.02)
end
local st = c:stats()
local state = c:state() .. (st.read_pauses > 0 and c:is_connected() and ", reading paused" or "")
-- Dispatch what is held, then see what memory stays.
local t1 = socket.gettime()
while socket.gettime() - t1 < 3 and c:dispatch(0.05) > 0 do end
collectgarbage("collect")
io.write(("peak_rss=%d peak_events=%d peak_queued=%d state=%s lost=%s after=%d held_after=%d\n")
    :format(peak.rss, peak.ev, peak.q, state:gsub(" ", "_"), tostring(lost), rss() - rss0,
            c:stats().event_bytes))
c:close()
]]

local script = os.tmpname()
do
    local f = assert(io.open(script, "w"))
    f:write(CLIENT)
    f:close()
end

-- Starts the client child; returns a handle to read its report.
local function client(port, seconds, keepalive)
    return assert(io.popen(("%s %s %d %d %d 2>&1"):format(LUA, script, port, seconds,
                                                           keepalive), "r"))
end

-- Sends chunks made by make() until the deadline, never blocking long.
local function flood(fb, deadline, make)
    local pending = ""
    while socket.gettime() < deadline do
        if pending == "" then pending = make() end
        if not pending then break end
        local ok, err, sent = fb:send(pending, 0.02)
        if ok then
            pending = ""
        elseif err == "timeout" then
            pending = pending:sub(sent + 1)
        else
            break
        end
    end
end

local function idle(fb, deadline)
    while socket.gettime() < deadline do
        fb:read_packet(0.05)
    end
end

local function chunk_of(builder, n)
    local t = {}
    for i = 1, n do t[i] = builder(i) end
    return table.concat(t)
end

local FLOODS = {
    { "qos2", "QoS 2 PUBLISH of 1 MB, never a PUBREL", 8, 60, function(fb, deadline)
        local body, id = string.rep("q", MiB), 0
        flood(fb, deadline, function()
            id = id % 65535 + 1
            return FB.publish { topic = "f/q2", qos = 2, packet_id = id, payload = body }
        end)
    end },
    { "pubrel", "PUBREL for unknown ids, the broker never reads", 20, 5, function(fb, deadline)
        fb.client:setoption("recv-buffer-size", 4096)
        local chunk = chunk_of(FB.pubrel, 16384)
        flood(fb, deadline, function() return chunk end)
    end },
    { "pubrec", "PUBREC for unknown ids, the broker never reads", 20, 5, function(fb, deadline)
        fb.client:setoption("recv-buffer-size", 4096)
        local chunk = chunk_of(FB.pubrec, 16384)
        flood(fb, deadline, function() return chunk end)
    end },
    { "tiny", "QoS 0 PUBLISH of 12 bytes, nobody dispatching", 8, 60, function(fb, deadline)
        local chunk = chunk_of(function(i)
            return FB.publish { topic = "t/tiny", payload = string.char(i % 256, math.floor(i / 256) % 256) }
        end, 8192)
        flood(fb, deadline, function() return chunk end)
    end },
    { "trickle", "a 256 MB PUBLISH trickled one byte per second", 8, 2, function(fb, deadline)
        fb:send("\48" .. FB.encode_length(256 * MiB - 1))
        while socket.gettime() < deadline and fb:send("a", 0.1) do socket.sleep(1) end
    end },
    { "big", "one 200 MB message (memory after it is dispatched)", 10, 60, function(fb, deadline)
        local sent = false
        flood(fb, deadline, function()
            if sent then return nil end
            sent = true
            return FB.publish { topic = "big", payload = string.rep("b", 200 * MiB) }
        end)
        idle(fb, deadline)
    end },
}

local wanted = {}
for _, a in ipairs(arg) do wanted[a] = true end

print(("%-8s %-54s %10s %12s %12s %9s %9s  %s"):format("flood", "", "peak RSS", "events held",
    "owed bytes", "after", "held", "end state"))
for _, f in ipairs(FLOODS) do
    local name, what, seconds, keepalive, run = f[1], f[2], f[3], f[4], f[5]
    if next(wanted) == nil or wanted[name] then
        local fb = FB.new { timeout = 10 }
        local child = client(fb.port, seconds, keepalive)
        fb:handshake()
        run(fb, socket.gettime() + seconds)
        idle(fb, socket.gettime() + 0.5)
        local out = child:read("*a")
        child:close()
        fb:close()
        local v = {}
        for k, x in out:gmatch("([%w_]+)=(%S+)") do v[k] = x end
        if not v.peak_rss then
            print(name .. ": the client failed:\n" .. out)
        else
            local lost = v.lost ~= "nil" and (", lost: " .. v.lost) or ""
            print(("%-8s %-54s %7.1f MiB %8.1f MiB %8.1f MiB %5.1f MiB %5.1f MiB  %s%s"):format(
                name, what, v.peak_rss / MiB, v.peak_events / MiB, v.peak_queued / MiB,
                v.after / MiB, v.held_after / MiB, v.state:gsub("_", " "), lost))
        end
    end
end
os.remove(script)
