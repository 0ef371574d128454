--- bench/zmqtt_bench.lua: the zmqtt side of the benchmarks, in plain Lua 5.4.
-- Written the way a user writes it: library defaults, callbacks registered
-- with on() or loop(), dispatch() where the script waits. A publisher
-- publishes in batches and calls dispatch(0) between them; when the client
-- pushes back ("queue full", "no packet id": at most 65535 QoS 1/2 messages
-- can be outstanding) it dispatches with a short timeout and retries. The
-- scenarios mirror bench/mosq_bench.c:
--
--   pub     HOST PORT QOS COUNT SIZE [EVERY [TOPIC]]  COUNT messages to TOPIC
--                                             [bench/pub], then a QoS 1 fence;
--                                             done when it is acked
--   sub     HOST PORT COUNT TOPIC             subscribe at QoS 0, count COUNT
--                                             messages in the loop() callback
--   rtt     HOST PORT QOS COUNT SIZE WARMUP   publish to a topic we are
--                                             subscribed to, wait for it, repeat
--   idle    HOST PORT KEEPALIVE SECONDS       connect, say "ready", mqtt.sleep
--   clients HOST PORT N HOLD                  N connected clients in this process
--   route   HOST PORT COUNT TOPIC K SEGMENT   as sub, switching every SEGMENT
--                                             messages between no filter callbacks,
--                                             K that do not match, and K - 1 of them
--                                             plus a matching one registered last
--   onoff   N                                 N on() with ascending priorities, then
--                                             N off(), each timed (no broker)
--   handshake URI N [CAFILE]                  N connects, each timed from connect() to
--                                             CONNACK; HOST may be any URI
--
-- Prints one line "result key=value ..." on stdout; times are seconds, CPU
-- is the sum over this process's threads (the schedstat of each task).
-- Environment: ZMQTT_BENCH_PROTOCOL 4 [default], 5 or auto: the protocol
-- option of every client; ZMQTT_BENCH_TOPIC_ALIAS auto, manual or false:
-- their topic_alias option (MQTT 5.0 only; the library's default otherwise);
-- ZMQTT_BENCH_STORE a directory and ZMQTT_BENCH_STORE_SYNC always, batch or
-- never: their store option (persistence), removed at the end of the run.
--
--   storesize COUNT SIZE                      COUNT QoS 1 messages queued in a
--                                             store, never connected: its size

local mqtt = require("mqtt")

local monotonic = mqtt.monotonic

local function self_pid()
    local f = assert(io.open("/proc/self/stat"))
    local pid = f:read("n")
    f:close()
    return math.tointeger(pid)
end
local PID = self_pid()

--- CPU seconds used so far by every thread of this process.
local function cpu_seconds()
    local p = assert(io.popen("cat /proc/" .. PID .. "/task/*/schedstat 2>/dev/null"))
    local ns = 0
    for line in p:lines() do
        ns = ns + (tonumber(line:match("^(%d+)")) or 0)
    end
    p:close()
    return ns / 1e9
end

--- VmRSS of this process in KiB, read from status, an open /proc/self/status:
-- kept open, it can still be read once clients have taken every descriptor.
--- A number field of /proc/self/status, e.g. "VmRSS" (KiB) or "Threads".
local function status_field(status, name)
    status:seek("set", 0)
    return tonumber(status:read("a"):match(name .. ":%s*(%d+)"))
end

local function rss_kib(status)
    return status_field(status, "VmRSS")
end

local function result(fields)
    local out = { "result" }
    for _, kv in ipairs(fields) do
        local v = kv[2]
        if math.type(v) == "float" then v = string.format("%.9f", v) end
        out[#out + 1] = kv[1] .. "=" .. tostring(v)
    end
    print(table.concat(out, " "))
    io.stdout:flush()
end

local function make_payload(size)
    local t = {}
    for i = 0, size - 1 do t[#t + 1] = string.char(97 + i % 26) end
    return table.concat(t)
end

local function client_options()
    local protocol = os.getenv("ZMQTT_BENCH_PROTOCOL")
    local alias = os.getenv("ZMQTT_BENCH_TOPIC_ALIAS")
    if (not protocol or protocol == "" or protocol == "4") and (not alias or alias == "") then
        return nil -- the 3.1.1 rows call the API as before MQTT 5.0 existed
    end
    local o = { protocol = tonumber(protocol) or protocol }
    if alias == "false" then o.topic_alias = false elseif alias and alias ~= "" then o.topic_alias = alias end
    return o
end
local STORE = os.getenv("ZMQTT_BENCH_STORE")
if STORE == "" then STORE = nil end
local OPTIONS = client_options()
if STORE then
    OPTIONS = OPTIONS or {}
    OPTIONS.store = { path = STORE, sync = os.getenv("ZMQTT_BENCH_STORE_SYNC") or "always" }
end

local function client_id(index)
    return string.format("zmqtt-bench-%d-%d", PID, index or 0)
end

local function new_client(index)
    return mqtt.Client(client_id(index), true, OPTIONS)
end

-- The store of client `index` is removed once its run is over.
local function drop_store(index)
    if STORE then mqtt.store_clear(STORE, client_id(index)) end
end

--- Bytes in the files of directory dir.
local function dir_bytes(dir)
    local p = assert(io.popen("du -sb --apparent-size " .. string.format("%q", dir)))
    local n = tonumber(p:read("a"):match("^(%d+)"))
    p:close()
    return n
end

local BACK_PRESSURE = { ["queue full"] = true, ["no packet id"] = true }

--- Publishes n messages in batches of `every`, dispatching between batches
-- and waiting for acknowledgements whenever the client pushes back.
local function publish_all(c, topic, payload, qos, n, every)
    local sent = 0
    local function batch(k)
        for _ = 1, k do
            c:publish(topic, payload, qos)
            sent = sent + 1
        end
    end
    while sent < n do
        local ok, err = pcall(batch, math.min(every, n - sent))
        if ok then
            c:dispatch(0)
        elseif mqtt.is_error(err) and BACK_PRESSURE[err.name] then
            c:dispatch(0.01)
        else
            error(err, 0)
        end
    end
end

local function run_pub(host, port, qos, count, size, every, topic)
    local c = new_client()
    c:connect(host, 60, port)
    if OPTIONS and OPTIONS.protocol == 5 and c:protocol() ~= 5 then
        error("the broker did not accept MQTT 5.0")
    end
    local payload = make_payload(size)
    local acked = 0
    local function on_ack() acked = acked + 1 end
    c:on(mqtt.PUBACK, on_ack)
    c:on(mqtt.PUBCOMP, on_ack)
    local expect = (qos > 0 and count or 0) + 1
    local cpu0, t0 = cpu_seconds(), monotonic()
    publish_all(c, topic or "bench/pub", payload, qos, count, every)
    publish_all(c, topic or "bench/pub", payload, 1, 1, every) -- the fence
    while acked < expect do c:dispatch(1) end
    local t1, cpu1 = monotonic(), cpu_seconds()
    result { { "count", count }, { "elapsed", t1 - t0 }, { "cpu", cpu1 - cpu0 } }
    c:disconnect()
    c:close()
    drop_store()
end

local function run_sub(host, port, count, topic)
    local c = new_client()
    c:connect(host, 60, port)
    local received = 0
    c:loop(function() received = received + 1 end)
    local cpu0, t0 = cpu_seconds(), monotonic()
    c:subscribe(topic, 0)
    while received < count do c:dispatch(1) end
    local t1, cpu1 = monotonic(), cpu_seconds()
    result { { "count", count }, { "elapsed", t1 - t0 }, { "cpu", cpu1 - cpu0 } }
    c:disconnect()
    c:close()
end

--- Nearest-rank percentile of a sorted list.
local function percentile(v, p)
    local k = math.ceil(p * #v)
    return v[math.max(1, math.min(#v, k))]
end

local function run_rtt(host, port, qos, count, size, warmup)
    local c = new_client()
    c:connect(host, 60, port)
    local topic = "bench/rtt/zmqtt-" .. PID
    local received, subscribed = 0, false
    c:loop(function() received = received + 1 end)
    c:on(mqtt.SUBACK, function() subscribed = true end)
    c:subscribe(topic, qos)
    while not subscribed do c:dispatch(1) end
    local payload = make_payload(size)
    local lat = {}
    local cpu0, t_start = cpu_seconds(), monotonic()
    for i = -warmup + 1, count do
        if i == 1 then cpu0, t_start = cpu_seconds(), monotonic() end
        local want = received + 1
        local t0 = monotonic()
        c:publish(topic, payload, qos)
        while received < want do c:dispatch(1) end
        if i >= 1 then lat[i] = monotonic() - t0 end
    end
    local elapsed, cpu = monotonic() - t_start, cpu_seconds() - cpu0
    local sum = 0
    for i = 1, count do sum = sum + lat[i] end
    table.sort(lat)
    result { { "count", count }, { "elapsed", elapsed }, { "cpu", cpu },
        { "p50", percentile(lat, 0.50) }, { "p99", percentile(lat, 0.99) },
        { "mean", sum / count }, { "max", lat[#lat] } }
    c:disconnect()
    c:close()
end

local function median(list)
    table.sort(list)
    local n = #list
    if n % 2 == 1 then return list[(n + 1) // 2] end
    return (list[n // 2] + list[n // 2 + 1]) / 2
end

--- Receives count messages in segments of `segment`, switching the callbacks
-- between segments, in turn: none (loop's on_message counts), miss (k filter
-- callbacks that do not match, on_message counts), last (k - 1 of them, then
-- the matching one, which counts). The first segment warms up. Reports each
-- configuration's median rate and the median ratio of miss and last to the
-- none segment just before them, so that the machine's drift cancels out.
local function run_route(host, port, count, topic, k, segment)
    local c = new_client()
    c:connect(host, 60, port)
    local fns = {}
    for i = 1, k do fns[i] = function() error("a filter that does not match ran") end end
    local ORDER = { "none", "miss", "last" }
    local rates = { none = {}, miss = {}, last = {} }
    local ratios = { miss = {}, last = {} }
    local received, stray, boundary, config, index, t0 = 0, 0, segment, "warm-up", 0, nil
    local counter

    local function switch(to)
        for i = 1, k do c:off(mqtt.PUBLISH, fns[i]) end
        c:off(mqtt.PUBLISH, counter)
        local n = (to == "miss" and k) or (to == "last" and k - 1) or 0
        for i = 1, n do c:on(mqtt.PUBLISH, fns[i], "other/" .. i .. "/+") end
        if to == "last" then c:on(mqtt.PUBLISH, counter, topic) end
        config = to
    end

    counter = function()
        received = received + 1
        if received ~= boundary then return end
        local t = monotonic()
        if t0 then
            local rate = segment / (t - t0)
            local list = rates[config]
            list[#list + 1] = rate
            if config ~= "none" then
                local none = rates.none[#rates.none]
                ratios[config][#ratios[config] + 1] = rate / none
            end
        end
        index = index % #ORDER + 1
        switch(ORDER[index])
        boundary = boundary + segment
        t0 = monotonic()
    end

    c:loop(function()
        if config == "last" then stray = stray + 1 end
        counter()
    end)
    c:subscribe(topic, 0)
    while received < count do c:dispatch(1) end
    if stray > 0 then error(stray .. " messages missed the matching filter callback") end
    if #ratios.last == 0 then error("too few segments: count must be at least 4 segments") end
    result { { "segments", #rates.none + #rates.miss + #rates.last },
        { "none", median(rates.none) }, { "miss", median(rates.miss) },
        { "last", median(rates.last) }, { "miss_ratio", median(ratios.miss) },
        { "last_ratio", median(ratios.last) } }
    c:disconnect()
    c:close()
end

--- Times n on() with ascending priorities (each one first in the order),
-- half topic filters and half function conditions, then n off().
local function run_onoff(n)
    local c = new_client()
    local fns = {}
    for i = 1, n do fns[i] = function() return i end end
    local function cond() return false end
    local t0 = monotonic()
    for i = 1, n do
        if i % 2 == 0 then
            c:on(mqtt.PUBLISH, fns[i], "devices/" .. i .. "/+", i)
        else
            c:on(mqtt.PUBLISH, fns[i], cond, i)
        end
    end
    local t1 = monotonic()
    for i = 1, n do c:off(mqtt.PUBLISH, fns[i]) end
    local t2 = monotonic()
    result { { "count", n }, { "on", t1 - t0 }, { "off", t2 - t1 } }
    c:close()
end

local function run_idle(host, port, keepalive, seconds)
    local c = new_client()
    c:connect(host, keepalive, port)
    c:loop(function() end)
    print("ready pid=" .. PID)
    io.stdout:flush()
    mqtt.sleep(seconds)
    result { { "connected", c:is_connected() and 1 or 0 } }
    c:disconnect()
    c:close()
end

local function run_clients(host, port, n, hold)
    local status = assert(io.open("/proc/self/status"))
    local rss0 = rss_kib(status)
    local clients = {}
    local t0 = monotonic()
    for i = 1, n do
        local ok, err = pcall(function()
            local c = new_client(i)
            clients[#clients + 1] = c
            c:connect(host, 60, port)
        end)
        if not ok then
            io.stderr:write(string.format("zmqtt_bench: client %d of %d failed: %s\n", i, n,
                tostring(err)))
            break
        end
    end
    local connect_time = monotonic() - t0
    mqtt.sleep(hold)
    local rss1 = rss_kib(status)
    local connected = 0
    for _, c in ipairs(clients) do
        if c:is_connected() then connected = connected + 1 end
    end
    result { { "clients", n }, { "connected", connected },
        { "connect_time", connect_time }, { "rss_kib", rss1 }, { "base_kib", rss0 },
        { "threads", status_field(status, "Threads") } }
    for _, c in ipairs(clients) do c:close() end
    return connected == n
end

--- connect() to CONNACK, n times (a new client each, so no TLS session is
-- resumed): the median and the fastest, in seconds, and this process's CPU
-- per connect (every thread: what the client costs, whatever the server).
local function run_handshake(uri, n, cafile)
    local ctx = cafile and mqtt.ssl_context { cafile = cafile } or nil
    local times = {}
    -- Connected throughout, so the shared I/O thread (whose CPU is counted
    -- while it runs) lives across the timed connects.
    local anchor = new_client(0)
    anchor:connect { host = uri, keepalive = 60, ssl_ctx = ctx }
    local cpu0 = cpu_seconds()
    for i = 1, n do
        local c = new_client(i)
        local t0 = monotonic()
        c:connect { host = uri, keepalive = 60, ssl_ctx = ctx }
        times[i] = monotonic() - t0
        c:disconnect()
        c:close()
    end
    local cpu = (cpu_seconds() - cpu0) / n
    anchor:disconnect()
    anchor:close()
    table.sort(times)
    result { { "count", n }, { "median", times[(n + 1) // 2] }, { "min", times[1] },
        { "cpu", cpu } }
end

local function usage()
    io.stderr:write([==[
usage: zmqtt_bench.lua pub HOST PORT QOS COUNT SIZE [EVERY [TOPIC]]
       zmqtt_bench.lua sub HOST PORT COUNT TOPIC
       zmqtt_bench.lua rtt HOST PORT QOS COUNT SIZE WARMUP
       zmqtt_bench.lua idle HOST PORT KEEPALIVE SECONDS
       zmqtt_bench.lua clients HOST PORT N HOLD_SECONDS
       zmqtt_bench.lua route HOST PORT COUNT TOPIC K SEGMENT
       zmqtt_bench.lua onoff N
       zmqtt_bench.lua handshake URI N [CAFILE]
       zmqtt_bench.lua storesize COUNT SIZE
]==])
    os.exit(2)
end

local function run_storesize(count, size)
    assert(STORE, "storesize needs ZMQTT_BENCH_STORE")
    local c = new_client()
    local payload = make_payload(size)
    local before = dir_bytes(STORE)
    for _ = 1, count do c:publish("bench/pub", payload, 1) end
    c:close()
    local bytes = dir_bytes(STORE) - before
    drop_store()
    result { { "count", count }, { "bytes", bytes }, { "per_message", bytes / count } }
end

local mode, host = arg[1], arg[2]
local a = {}
for i = 3, #arg do a[#a + 1] = tonumber(arg[i]) or arg[i] end
local ok = true
if mode == "pub" and #a >= 4 then
    run_pub(host, a[1], a[2], a[3], a[4], a[5] or 1000, a[6] and tostring(a[6]))
elseif mode == "sub" and #a == 3 then
    run_sub(host, a[1], a[2], a[3])
elseif mode == "rtt" and #a == 5 then
    run_rtt(host, a[1], a[2], a[3], a[4], a[5])
elseif mode == "idle" and #a == 3 then
    run_idle(host, a[1], a[2], a[3])
elseif mode == "clients" and #a == 3 then
    ok = run_clients(host, a[1], a[2], a[3])
elseif mode == "route" and #a == 5 then
    run_route(host, a[1], a[2], a[3], a[4], a[5])
elseif mode == "handshake" and #a >= 1 then
    run_handshake(host, a[1], a[2])
elseif mode == "storesize" and tonumber(host) and #a == 1 then
    run_storesize(tonumber(host), a[1])
elseif mode == "onoff" and tonumber(host) then
    run_onoff(tonumber(host))
else
    usage()
end
os.exit(ok and 0 or 1)
