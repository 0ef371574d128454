--- bench/idle.lua: many idle connected clients in one Lua process. Starts a
-- private mosquitto (spec/helpers.lua) allowing that many connections,
-- connects IDLE_CLIENTS clients (keepalive 60) with connect_async, waits
-- until every one reports connected (c:is_connected(), the library's own
-- state), then prints one row: RSS growth per client (VmRSS of
-- /proc/self/status, before the first client and with all connected), the
-- process's thread count (Threads:), and the I/O loop's wake-ups and client
-- turns per client over IDLE_SECONDS of idling (no dispatch: the application
-- does nothing); the default 65 s holds one keepalive of every client, whose
-- ping (a timer) and PINGRESP (a read) are its two turns.
--
-- Each client holds two descriptors (its socket and its notification
-- eventfd): IDLE_CLIENTS is cut to what the descriptor limit allows, and the
-- row says so. `make bench-idle` raises the limit as far as it may first.
--
-- Usage: make bench-idle [IDLE_CLIENTS=20000] [IDLE_THREADS=1] [IDLE_SECONDS=65]

local socket = require("socket")
local helpers = require("helpers")
local mqtt = require("mqtt")

local want = tonumber(os.getenv("IDLE_CLIENTS") or "20000")
local pool = tonumber(os.getenv("IDLE_THREADS") or "1")
local idle_seconds = tonumber(os.getenv("IDLE_SECONDS") or "65")
local KEEPALIVE = 60
local CONNECT_TIMEOUT = 300 -- seconds for all of them

local function status_field(name)
    local f = assert(io.open("/proc/self/status"))
    local s = f:read("*a")
    f:close()
    return tonumber(s:match(name .. ":%s*(%d+)"))
end

local function fd_limit()
    local p = assert(io.popen("ulimit -n"))
    local n = tonumber(p:read("*l"))
    p:close()
    return n or 1024
end

-- Two descriptors a client, and some for Lua, luasocket and the loop.
local limit = fd_limit()
local n = math.min(want, (limit - 128) // 2)
local note = n < want and ("cut from %d: descriptor limit %d"):format(want, limit) or ""

local broker = helpers.start_broker({ extra = { "max_connections -1" } })
mqtt.io_threads(pool)

collectgarbage("collect")
local rss0 = status_field("VmRSS") * 1024
local threads0 = status_field("Threads")

local t0 = socket.gettime()
local clients, waiting = {}, {}
for i = 1, n do
    -- A burst of opens outruns mosquitto's accept backlog: dropped SYNs are
    -- retried after 1, 3, 7 s, so the connect timeout is generous.
    local c = mqtt.Client(("idle-%d"):format(i), true, { connect_timeout = 120 })
    c:connect_async({ host = "127.0.0.1", port = broker.port, keepalive = KEEPALIVE })
    clients[i] = c
    waiting[i] = c
end

-- Polls the library's own state; the CONNACK events wait in the queues.
local deadline = t0 + CONNECT_TIMEOUT
while #waiting > 0 and socket.gettime() < deadline do
    local rest = {}
    for _, c in ipairs(waiting) do
        if not c:is_connected() then rest[#rest + 1] = c end
    end
    waiting = rest
    if #waiting > 0 then socket.sleep(0.05) end
end
local connect_s = socket.gettime() - t0
local connected = n - #waiting

-- Take the CONNACK events, as a running application would.
for _, c in ipairs(clients) do c:dispatch(0) end
collectgarbage("collect")
local rss1 = status_field("VmRSS") * 1024
local threads1 = status_field("Threads")
local io1 = mqtt.io_stats()

socket.sleep(idle_seconds)
local io2 = mqtt.io_stats()
local still = 0
for _, c in ipairs(clients) do
    if c:is_connected() then still = still + 1 end
end
local per_client = 1 / math.max(connected, 1)

io.write(("idle clients=%d connected=%d still_connected=%d connect_s=%.1f " ..
          "rss_per_client=%.0f B (%.2f KiB) threads=%d (before %d) io_threads=%d pool=%d " ..
          "per client over %d s idle (keepalive %d): wakeups=%.2f turns=%.2f %s\n"):format(
    n, connected, still, connect_s, (rss1 - rss0) * per_client,
    (rss1 - rss0) * per_client / 1024, threads1, threads0, io1.threads, pool,
    idle_seconds, KEEPALIVE, (io2.wakeups - io1.wakeups) * per_client,
    (io2.services - io1.services) * per_client, note))

for _, c in ipairs(clients) do c:close() end
local after = mqtt.io_stats()
helpers.stop_all()
local ok = connected == n and still == n and threads1 <= threads0 + pool and after.threads == 0
if not ok then
    io.write("idle: FAILED (every client connected, threads <= 1 + pool, all joined at the end)\n")
    os.exit(1)
end
