--- bench/run.lua: runs the zmqtt benchmarks and prints the comparison table.
-- Every scenario runs for zmqtt (bench/zmqtt_bench.lua, Lua 5.4) and for
-- libmosquitto (bench/mosq_bench.c, C) in alternation, zmqtt then
-- libmosquitto, for BENCH_ROUNDS rounds. Each cell of the table is the
-- median over the rounds; the advantage is the median of the per-round
-- ratios, oriented so that > 1 means zmqtt did better. Brokers: our fake
-- broker (bench/fakebroker.c) in sink mode for publishing and the client
-- tests, in blast mode for receiving; a private mosquitto on a free
-- 127.0.0.1 port for the round trips. Everything is stopped by PID.
-- The routing scenarios (route, onoff) measure zmqtt alone, in a table of
-- their own: one run of route receives in segments, switching its callbacks
-- between segments, and reports each configuration's rate with its ratio to
-- the segments without filter callbacks of the same run.
-- MQTT 5.0: in pub0, pub1, pub2 and recv each round also runs zmqtt and
-- libmosquitto speaking 5.0 (ZMQTT_BENCH_PROTOCOL, MOSQ_BENCH_PROTOCOL; the
-- fake broker answers each CONNECT at its level and announces receive_maximum
-- 20, the window both clients use under 3.1.1), in the order zmqtt, zmqtt 5.0,
-- libmosquitto, libmosquitto 5.0. The 5.0 rows face libmosquitto 5.0 with the
-- 3.1.1 targets, and a table of their own sets zmqtt 5.0 against zmqtt 3.1.1
-- round by round, with the core's allocations per received message
-- (bench/alloc_bench.c) and the bytes the broker received for publishes to a
-- long topic with and without topic aliases (scenario wire); QoS 1 publishing
-- with a store (sync batch, always) against without, and the store's bytes
-- on disk per queued message (scenario store).
-- Transports (zmqtt alone, a table of their own): QoS 0 publish and receive
-- over ws:// against the same over TCP in the same round (wspub, wsrecv; the
-- fake broker speaks WebSocket itself with -W 1, so no gateway is measured),
-- and connect() to CONNACK, median of BENCH_HANDSHAKES connects, over
-- mqtt://, ws:// (fake broker), mqtts:// (mosquitto's TLS listener), and
-- ws:// and wss:// through websockify in front of mosquitto (websockify
-- forks a Python process per connection: its ws:// row is that cost).
--
-- Usage: lua5.4 bench/run.lua        (make bench builds the binaries first)
-- Environment (the defaults in brackets are full mode / BENCH_SHORT=1):
--   BENCH_SHORT=1          small counts: the whole run takes about two minutes
--   BENCH_ROUNDS           rounds per scenario [3 / 3]
--   BENCH_QOS0_COUNT       QoS 0 messages published [1000000 / 100000]
--   BENCH_QOS1_COUNT       QoS 1 messages published [200000 / 20000]
--   BENCH_QOS2_COUNT       QoS 2 messages published [100000 / 10000]
--   BENCH_RECV_COUNT       QoS 0 messages received [1000000 / 100000]
--   BENCH_RTT_COUNT        round trips per QoS [10000 / 1000]
--   BENCH_RTT_WARMUP       round trips before measuring [100 / 20]
--   BENCH_RTT_BROKER       mosquitto, or echo for our fake broker [mosquitto]
--   BENCH_RTT_NODELAY      1: mosquitto's set_tcp_nodelay and libmosquitto's
--                          MOSQ_OPT_TCP_NODELAY (zmqtt always sets it); 0: both
--                          off, as shipped, and Nagle dominates QoS 1/2 [1]
--   BENCH_IDLE_SECONDS     idle window measured [10 / 2]
--   BENCH_IDLE_KEEPALIVE   keepalive of the idle client, seconds; libmosquitto
--                          refuses less than 5 [5 / 5]
--   BENCH_CLIENTS          client counts for the memory test [300 1000 5000 / 100 300]
--   BENCH_CLIENTS_HOLD     seconds the clients stay connected before measuring [3 / 1]
--   BENCH_PAYLOAD          payload bytes [32]
--   BENCH_DISPATCH_EVERY   zmqtt publisher: dispatch(0) after this many publishes [1000]
--   BENCH_ROUTE_FILTERS    topic-filter callbacks registered in the route rows [1000]
--   BENCH_ROUTE_SEGMENT    messages per segment of the route rows [50000 / 10000]
--   BENCH_ONOFF_COUNT      on() and off() calls timed in the onoff rows [20000]
--   BENCH_SCENARIOS        subset to run, e.g. "pub0 recv"
--                          [pub0 pub1 pub2 recv alloc wire store route onoff rtt idle clients
--                           wspub wsrecv handshake]
--   BENCH_PROTOCOLS        protocol levels of pub0, pub1, pub2 and recv [4 5]
--   BENCH_ALLOC_COUNT      QoS 0 messages received by alloc_bench per level [100000 / 20000]
--   BENCH_WIRE_COUNT       QoS 0 publishes of the wire rows [100000 / 100000]
--   BENCH_WIRE_TOPIC       topic bytes of the wire rows [100]
--   BENCH_STORE_COUNT      QoS 1 publishes of the persistence rows, no store
--                          and sync "batch" [100000 / 20000]
--   BENCH_STORE_ALWAYS_COUNT  the same with sync "always" [3000 / 1000]
--   BENCH_STORE_SIZE_COUNT messages queued for the bytes-per-message row [10000]
--   BENCH_STORE_DIR        where the stores go [build/bench/store]
--                          Scenario instr (not in the default list; needs valgrind):
--                          instructions per message of zmqtt 3.1.1 and 5.0 under
--                          callgrind, one round, for pub0, pub1, pub2 and recv:
--                          rows of the 5.0 table that the machine's load cannot move
--   BENCH_HANDSHAKES       connects timed per round in the handshake rows [50 / 20]
--   BENCH_NOFILE           RLIMIT_NOFILE to ask for (capped by the hard limit) [65536]
--   BENCH_TIMEOUT          seconds one run may take before it is killed [600 / 120];
--                          a fake broker, which serves many runs, gets 30 times that
--   BENCH_BIN              where fakebroker and mosq_bench are [build/bench]
--   BENCH_BASELINE         a git revision of zmqtt to run as a third contestant
--                          (built once into BENCH_BIN/baseline-<rev>): the
--                          table gains its rates and zmqtt's per-round ratio to it
--   BENCH_OUT              the table is also written here [build/bench/results.md]
--   LUA                    the interpreter for zmqtt_bench.lua [lua5.4]

local socket = require("socket")

local fmt = string.format

---------------------------------------------------------------------------
-- Configuration

local function shell_quote(s)
    s = tostring(s)
    if s:match("^[%w%./_=:,+-]+$") then return s end
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function capture(cmd)
    local p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    return (out:gsub("%s+$", ""))
end

local HERE = arg[0]:match("^(.*)/[^/]*$") or "."
local ROOT = capture("cd " .. shell_quote(HERE) .. "/.. && pwd")
local SHORT = os.getenv("BENCH_SHORT") == "1"

local function env_number(name, full, short)
    local v = os.getenv(name)
    if v and v ~= "" then return assert(tonumber(v), name .. " must be a number") end
    if SHORT then return short end
    return full
end

local function env_list(name, full, short)
    local v = os.getenv(name)
    if not v or v == "" then v = SHORT and short or full end
    local t = {}
    for w in v:gmatch("[^%s,]+") do t[#t + 1] = w end
    return t
end

local cfg = {
    rounds = env_number("BENCH_ROUNDS", 3, 3),
    qos0 = env_number("BENCH_QOS0_COUNT", 1000000, 100000),
    qos1 = env_number("BENCH_QOS1_COUNT", 200000, 20000),
    qos2 = env_number("BENCH_QOS2_COUNT", 100000, 10000),
    recv = env_number("BENCH_RECV_COUNT", 1000000, 100000),
    rtt = env_number("BENCH_RTT_COUNT", 10000, 1000),
    rtt_warmup = env_number("BENCH_RTT_WARMUP", 100, 20),
    rtt_broker = os.getenv("BENCH_RTT_BROKER") or "mosquitto",
    rtt_nodelay = env_number("BENCH_RTT_NODELAY", 1, 1),
    idle = env_number("BENCH_IDLE_SECONDS", 10, 2),
    keepalive = env_number("BENCH_IDLE_KEEPALIVE", 5, 5),
    settle = SHORT and 0.5 or 1,
    clients = env_list("BENCH_CLIENTS", "300 1000 5000", "100 300"),
    hold = env_number("BENCH_CLIENTS_HOLD", 3, 1),
    payload = env_number("BENCH_PAYLOAD", 32, 32),
    every = env_number("BENCH_DISPATCH_EVERY", 1000, 1000),
    route_filters = env_number("BENCH_ROUTE_FILTERS", 1000, 1000),
    route_segment = env_number("BENCH_ROUTE_SEGMENT", 50000, 10000),
    onoff = env_number("BENCH_ONOFF_COUNT", 20000, 20000),
    alloc = env_number("BENCH_ALLOC_COUNT", 100000, 20000),
    wire = env_number("BENCH_WIRE_COUNT", 100000, 100000),
    wire_topic = env_number("BENCH_WIRE_TOPIC", 100, 100),
    store = env_number("BENCH_STORE_COUNT", 100000, 20000),
    store_always = env_number("BENCH_STORE_ALWAYS_COUNT", 3000, 1000),
    store_size = env_number("BENCH_STORE_SIZE_COUNT", 10000, 10000),
    store_dir = os.getenv("BENCH_STORE_DIR") or (ROOT .. "/build/bench/store"),
    nofile = env_number("BENCH_NOFILE", 65536, 65536),
    timeout = env_number("BENCH_TIMEOUT", 600, 120),
    bin = os.getenv("BENCH_BIN") or (ROOT .. "/build/bench"),
    out = os.getenv("BENCH_OUT") or (ROOT .. "/build/bench/results.md"),
    lua = os.getenv("LUA") or "lua5.4",
    handshakes = env_number("BENCH_HANDSHAKES", 50, 20),
}
cfg.scenarios = {}
local ALL_SCENARIOS = "pub0 pub1 pub2 recv alloc wire store route onoff rtt idle clients wspub wsrecv handshake"
for _, s in ipairs(env_list("BENCH_SCENARIOS", ALL_SCENARIOS, ALL_SCENARIOS)) do
    cfg.scenarios[s] = true
end
cfg.v5 = false
for _, level in ipairs(env_list("BENCH_PROTOCOLS", "4 5", "4 5")) do
    assert(level == "4" or level == "5", "BENCH_PROTOCOLS: 4 and/or 5")
    if level == "5" then cfg.v5 = true end
end
assert(cfg.rounds >= 1, "BENCH_ROUNDS must be at least 1")
assert(cfg.rtt_broker == "mosquitto" or cfg.rtt_broker == "echo",
    "BENCH_RTT_BROKER must be mosquitto or echo")

local HOST = "127.0.0.1"
local LOG = cfg.bin .. "/bench.log"
-- The module from this checkout, unless the caller (make bench) says where it is.
local ZMQTT_ENV = fmt("LUA_PATH=%s LUA_CPATH=%s",
    shell_quote(os.getenv("LUA_PATH") or (ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;")),
    shell_quote(os.getenv("LUA_CPATH") or (ROOT .. "/build/?.so;;")))
-- Thousands of clients need thousands of descriptors: ask, and settle for the hard limit.
local ULIMIT = fmt("ulimit -n %d 2>/dev/null || ulimit -n \"$(ulimit -Hn)\" 2>/dev/null;",
    cfg.nofile)

do -- a fresh log for each run
    local f = io.open(LOG, "w")
    if f then f:close() end
end

local function log(text)
    local f = io.open(LOG, "a")
    if f then
        f:write(text, "\n")
        f:close()
    end
end

local function note(text)
    io.stderr:write(text, "\n")
    io.stderr:flush()
end

---------------------------------------------------------------------------
-- Processes

local function args(...)
    local t = {}
    for i = 1, select("#", ...) do t[i] = shell_quote((select(i, ...))) end
    return table.concat(t, " ")
end

-- The zmqtt build a command runs: this checkout's, or the baseline's, and
-- the protocol settings of the contestant (run_scenario).
local module_env = ZMQTT_ENV
local client_env = ""

local wrapper = "" -- what runs the interpreter (scenario instr: valgrind)

local function zmqtt_cmd(...)
    return fmt("env %s %s %s %s %s %s", module_env, client_env, wrapper, cfg.lua,
        shell_quote(ROOT .. "/bench/zmqtt_bench.lua"), args(...))
end

local function mosq_cmd(...)
    return fmt("env %s %s %s", client_env, shell_quote(cfg.bin .. "/mosq_bench"), args(...))
end

--- Starts cmd with its stdout readable; stderr goes to the log. It is killed
-- after limit seconds [cfg.timeout].
local function spawn(cmd, limit)
    log("$ " .. cmd)
    return io.popen(fmt("%s exec timeout -k 5 %d %s 2>>%s", ULIMIT, limit or cfg.timeout, cmd,
        shell_quote(LOG)))
end

--- The fields of the last "result k=v ..." line of out, numbers where they parse.
local function parse_result(out)
    local line
    for l in out:gmatch("[^\n]+") do
        if l:match("^result ") then line = l end
    end
    if not line then return nil end
    local r = {}
    for k, v in line:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
    return r
end

--- Runs cmd to the end; returns its result fields, or nil and why.
local function run(cmd)
    local p = spawn(cmd)
    local out = p:read("a")
    local ok, how, code = p:close()
    local r = parse_result(out)
    if not r then
        return nil, fmt("%s %s without a result line (see %s)", how, tostring(code), LOG)
    end
    if not ok then log(fmt("(%s %s, result kept)", how, tostring(code))) end
    return r
end

local function pid_alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return false end
    local state = f:read("a"):match("^%d+ %b() (%a)")
    f:close()
    return state ~= "Z" and state ~= "X"
end

local function stop_pid(pid, handle)
    os.execute("kill " .. pid .. " 2>/dev/null")
    for _ = 1, 50 do
        if not pid_alive(pid) then break end
        socket.sleep(0.1)
    end
    if pid_alive(pid) then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
    if handle then handle:close() end
end

--- Our fake broker; returns {host, port, stop}.
local function start_fake(mode, ...)
    local p = spawn(shell_quote(cfg.bin .. "/fakebroker") .. " " .. mode .. " " .. args(...),
        30 * cfg.timeout)
    local line = p:read("l") or ""
    local port, pid = line:match("^port (%d+) pid (%d+)")
    if not port then
        p:close()
        error("fakebroker " .. mode .. " did not start (see " .. LOG .. ")")
    end
    return {
        host = HOST, port = tonumber(port),
        stop = function() stop_pid(pid, p) end,
        -- The next line the broker prints (fakebroker -b 1: one per connection that ended).
        line = function() return p:read("l") end,
    }
end

local function free_port()
    local s = assert(socket.bind(HOST, 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end

local function port_open(port)
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect(HOST, port)
    c:close()
    return ok ~= nil
end

--- A private mosquitto on a free loopback port; returns {host, port, stop}.
local function start_mosquitto(extra)
    local dir = capture("mktemp -d /tmp/zmqtt-bench-mosquitto.XXXXXX")
    local port = free_port()
    local conf = dir .. "/mosquitto.conf"
    local f = assert(io.open(conf, "w"))
    f:write("# written by bench/run.lua\n",
        fmt("listener %d %s\n", port, HOST),
        "allow_anonymous true\npersistence false\n",
        "log_dest file ", dir, "/mosquitto.log\n",
        cfg.rtt_nodelay == 1 and "set_tcp_nodelay true\n" or "", extra or "")
    -- As root, mosquitto would drop to user "mosquitto", who cannot write dir.
    if capture("id -u") == "0" then f:write("user root\n") end
    f:close()
    log("$ mosquitto -c " .. conf)
    local p = io.popen(fmt("echo $$; exec mosquitto -c %s >>%s 2>&1", shell_quote(conf),
        shell_quote(LOG)))
    local pid = p:read("l")
    for _ = 1, 100 do
        if port_open(port) then break end
        socket.sleep(0.05)
    end
    if not port_open(port) then
        stop_pid(pid, p)
        error("mosquitto did not start on port " .. port .. " (see " .. dir .. ")")
    end
    return {
        host = HOST, port = port,
        stop = function()
            stop_pid(pid, p)
            os.execute("rm -rf " .. shell_quote(dir))
        end,
    }
end

--- A server started by cmd that listens on port; returns {host, port, stop}.
local function start_daemon(cmd, port)
    log("$ " .. cmd)
    local p = io.popen(fmt("echo $$; exec %s >>%s 2>&1", cmd, shell_quote(LOG)))
    local pid = p:read("l")
    for _ = 1, 200 do
        if port_open(port) then break end
        socket.sleep(0.05)
    end
    if not port_open(port) then
        stop_pid(pid, p)
        error("did not start on port " .. port .. ": " .. cmd .. " (see " .. LOG .. ")")
    end
    return { host = HOST, port = port, stop = function() stop_pid(pid, p) end }
end

--- A self-signed certificate for 127.0.0.1 (the handshake rows): its dir.
local function make_pki()
    local dir = capture("mktemp -d /tmp/zmqtt-bench-pki.XXXXXX")
    assert(os.execute(fmt("cd %s && openssl req -x509 -newkey ec -pkeyopt " ..
        "ec_paramgen_curve:P-256 -nodes -keyout key.pem -out crt.pem -days 2 -subj /CN=localhost " ..
        "-addext subjectAltName=IP:%s >>%s 2>&1 && chmod 644 key.pem", shell_quote(dir), HOST,
        shell_quote(LOG))), "openssl could not make the bench certificate")
    return { dir = dir, stop = function() os.execute("rm -rf " .. shell_quote(dir)) end }
end

--- CPU nanoseconds and voluntary context switches of each thread of pid.
local function snapshot(pid)
    local p = io.popen(fmt("grep -H '' /proc/%s/task/*/schedstat; " ..
        "grep -H '^voluntary_ctxt_switches' /proc/%s/task/*/status", pid, pid))
    local s = { ns = 0, wakeups = 0, threads = {} }
    for line in p:lines() do
        local tid, ns = line:match("/task/(%d+)/schedstat:(%d+)")
        if tid then s.ns = s.ns + tonumber(ns) end
        local tid2, v = line:match("/task/(%d+)/status:voluntary_ctxt_switches:%s*(%d+)")
        if tid2 then
            s.wakeups = s.wakeups + tonumber(v)
            s.threads[tonumber(tid2)] = tonumber(v)
        end
    end
    p:close()
    return s
end

--- Runs an idle client: after its "ready pid=N" line, lets the connection
-- settle, then measures pid from outside for the idle window.
local function run_idle(cmd)
    local p = spawn(cmd)
    local pid = (p:read("l") or ""):match("^ready pid=(%d+)")
    if not pid then
        p:read("a")
        p:close()
        return nil, "the idle client did not get ready (see " .. LOG .. ")"
    end
    socket.sleep(cfg.settle)
    local s0 = snapshot(pid)
    socket.sleep(cfg.idle)
    local s1 = snapshot(pid)
    local r = parse_result(p:read("a")) or {}
    p:close()
    local per_thread, tids = {}, {}
    for tid in pairs(s1.threads) do tids[#tids + 1] = tid end
    table.sort(tids)
    for _, tid in ipairs(tids) do
        per_thread[#per_thread + 1] = tostring(s1.threads[tid] - (s0.threads[tid] or 0))
    end
    r.wakeups = s1.wakeups - s0.wakeups
    r.cpu_ms = (s1.ns - s0.ns) / 1e6
    r.per_thread = table.concat(per_thread, "+")
    return r
end

---------------------------------------------------------------------------
-- Scenarios: each has a broker, a command per client, and the metrics read
-- from a run's result. better = "higher" or "lower"; target = {ratio = x}
-- (the advantage must reach x) or {text =, check = function(z, runs)}.
-- A solo scenario runs zmqtt only: cmd(broker), and a metric may have
-- ratio(result), shown as the median over the rounds.

local function count_label(n)
    local s = tostring(math.tointeger(n) or n)
    return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local function rate(r) return r.count / r.elapsed end
local function cpu_us(r) return r.cpu / r.count * 1e6 end

local function publish_scenario(id, qos, n, target)
    return {
        id = id, broker = "sink", v5 = cfg.v5,
        cmd = function(b, zmqtt)
            if zmqtt then
                return zmqtt_cmd("pub", b.host, b.port, qos, n, cfg.payload, cfg.every)
            end
            return mosq_cmd("pub", b.host, b.port, qos, n, cfg.payload)
        end,
        metrics = {
            { label = fmt("publish %s × %d B, QoS %d (msg/s)", count_label(n), cfg.payload, qos),
                better = "higher", value = rate, target = { ratio = target } },
            { label = fmt("CPU per message, publish QoS %d (µs)", qos), better = "lower",
                value = cpu_us },
        },
    }
end

local scenarios = {}
local function add(s)
    scenarios[#scenarios + 1] = s
end

if cfg.scenarios.pub0 then add(publish_scenario("pub0", 0, cfg.qos0, 2)) end
if cfg.scenarios.pub1 then add(publish_scenario("pub1", 1, cfg.qos1, 3)) end
if cfg.scenarios.pub2 then add(publish_scenario("pub2", 2, cfg.qos2, 3)) end
if cfg.scenarios.recv then
    add {
        id = "recv", broker = "blast", v5 = cfg.v5,
        cmd = function(b, zmqtt)
            if zmqtt then return zmqtt_cmd("sub", b.host, b.port, cfg.recv, "bench/blast") end
            return mosq_cmd("sub", b.host, b.port, cfg.recv, "bench/blast")
        end,
        metrics = {
            { label = fmt("receive %s × %d B QoS 0 into a callback (msg/s)", count_label(cfg.recv),
                cfg.payload), better = "higher", value = rate, target = { ratio = 3 } },
            { label = "CPU per message, receive (µs)", better = "lower", value = cpu_us },
        },
    }
end
-- The table of zmqtt 5.0 against 3.1.1 (own = true: not in the other tables).
if cfg.scenarios.alloc then
    add {
        id = "alloc", broker = "blast", own = true,
        runners = { { name = "zmqtt", protocol = 4 }, { name = "zmqtt-v5", protocol = 5 } },
        cmd = function(b, _, client)
            return fmt("%s %s", shell_quote(cfg.bin .. "/alloc_bench"),
                args(b.host, b.port, cfg.recv, "bench/blast", client.protocol))
        end,
        metrics = {
            { label = fmt("core allocations per received message (%d B QoS 0, no properties)",
                cfg.payload), better = "lower", value = function(r) return r.per_message end },
        },
    }
end
local WIRE_TOPIC = ("bench/wire/"):rep(cfg.wire_topic):sub(1, cfg.wire_topic)
if cfg.scenarios.wire then
    add {
        id = "wire", broker = "count", own = true,
        runners = {
            { name = "alias-off", zmqtt = true, protocol = 5, alias = "false" },
            { name = "alias-auto", zmqtt = true, protocol = 5, alias = "auto" },
        },
        cmd = function(b)
            return zmqtt_cmd("pub", b.host, b.port, 0, cfg.wire, cfg.payload, cfg.every, WIRE_TOPIC)
        end,
        -- The broker's line for the connection that just ended.
        after = function(b, r)
            local line = b.line() or ""
            r.bytes_in = tonumber(line:match("bytes_in=(%d+)"))
            r.publish_in = tonumber(line:match("publish_in=(%d+)"))
        end,
        metrics = {
            { label = fmt("bytes the broker received: %s QoS 0 publishes × %d B to a %d-byte topic",
                count_label(cfg.wire), cfg.payload, cfg.wire_topic), better = "lower",
                value = function(r) return r.bytes_in end },
        },
    }
end
-- Persistence: QoS 1 publishing with a store against without, same rounds,
-- and the store's bytes on disk per queued message.
if cfg.scenarios.store then
    os.execute("mkdir -p " .. shell_quote(cfg.store_dir))
    add {
        id = "store", broker = "sink", own = true,
        runners = {
            { name = "no-store", zmqtt = true },
            { name = "store-batch", zmqtt = true, store = "batch" },
            { name = "store-always", zmqtt = true, store = "always" },
        },
        cmd = function(b, _, client)
            local n = client.store == "always" and cfg.store_always or cfg.store
            return zmqtt_cmd("pub", b.host, b.port, 1, n, cfg.payload, cfg.every)
        end,
        metrics = {
            { label = fmt("publish × %d B, QoS 1 (msg/s)", cfg.payload), better = "higher",
                value = rate },
        },
    }
    add {
        id = "storesize", broker = "sink", own = true,
        runners = { { name = "zmqtt", zmqtt = true, store = "batch" } },
        cmd = function()
            return zmqtt_cmd("storesize", cfg.store_size, cfg.payload)
        end,
        metrics = {
            { label = fmt("store bytes on disk per queued QoS 1 message (%d B payload, " ..
                "9-byte topic)", cfg.payload), better = "lower",
                value = function(r) return r.per_message end },
        },
    }
end
-- Instructions per message: a run of 3n messages less one of n, over 2n, so
-- that start-up and connecting cancel out.
local INSTR = {
    { id = "pub0", label = "publish QoS 0", n = 10000, broker = "sink", mode = "pub", qos = 0 },
    { id = "pub1", label = "publish QoS 1", n = 4000, broker = "sink", mode = "pub", qos = 1 },
    { id = "pub2", label = "publish QoS 2", n = 3000, broker = "sink", mode = "pub", qos = 2 },
    -- broker "blast:N" sends exactly the N messages each run receives.
    { id = "recv", label = "receive QoS 0", n = 20000, broker = "blast:", mode = "sub" },
}
if cfg.scenarios.instr then
    local metrics = {}
    for _, w in ipairs(INSTR) do
        metrics[#metrics + 1] = { label = fmt("instructions per message, %s (callgrind)", w.label),
            better = "lower", value = function(r) return r[w.id] end }
    end
    add {
        id = "instr", own = true, rounds = 1,
        runners = { { name = "zmqtt", zmqtt = true, protocol = 4 },
            { name = "zmqtt-v5", zmqtt = true, protocol = 5 } },
        run = function(get_broker)
            local r = {}
            wrapper = "valgrind --tool=callgrind --callgrind-out-file=/dev/null"
            for _, w in ipairs(INSTR) do
                local ir = {}
                for k, n in ipairs({ w.n, 3 * w.n }) do
                    local b = get_broker(w.broker == "blast:" and "blast:" .. n or w.broker)
                    local cmd = w.mode == "pub"
                        and zmqtt_cmd("pub", b.host, b.port, w.qos, n, cfg.payload, cfg.every)
                        or zmqtt_cmd("sub", b.host, b.port, n, "bench/blast")
                    log("$ " .. cmd)
                    local p = io.popen(fmt("timeout -k 5 %d %s 2>&1", cfg.timeout, cmd))
                    ir[k] = tonumber((p:read("a"):match("Collected : (%d+)")))
                    p:close()
                end
                if not ir[1] or not ir[2] then
                    wrapper = ""
                    return nil, "callgrind gave no count (is valgrind installed?)"
                end
                r[w.id] = (ir[2] - ir[1]) / (2 * w.n)
            end
            wrapper = ""
            return r
        end,
        metrics = metrics,
    }
end
if cfg.scenarios.route then
    local k = count_label(cfg.route_filters)
    local received = fmt("receive %d B QoS 0 (segments of %s)", cfg.payload,
        count_label(cfg.route_segment))
    add {
        id = "route", broker = "blast", solo = true,
        cmd = function(b)
            return zmqtt_cmd("route", b.host, b.port, cfg.recv, "bench/blast", cfg.route_filters,
                cfg.route_segment)
        end,
        metrics = {
            { label = received .. ", no topic-filter callbacks (msg/s)", better = "higher",
                value = function(r) return r.none end },
            { label = fmt("%s, %s topic-filter callbacks that do not match (msg/s)", received, k),
                better = "higher", value = function(r) return r.miss end,
                ratio = function(r) return r.miss_ratio end, target = { ratio = 0.8 } },
            { label = fmt("%s, %s topic-filter callbacks, the matching one registered last (msg/s)",
                received, k), better = "higher", value = function(r) return r.last end,
                ratio = function(r) return r.last_ratio end, target = { ratio = 0.8 } },
        },
    }
end
if cfg.scenarios.onoff then
    local n = count_label(cfg.onoff)
    local under = {
        text = "< 0.1 s",
        check = function(z) return z < 0.1 end,
    }
    add {
        id = "onoff", solo = true,
        cmd = function() return zmqtt_cmd("onoff", cfg.onoff) end,
        metrics = {
            { label = n .. " on() with ascending priorities, half topic filters (s)",
                better = "lower", value = function(r) return r.on end, target = under },
            { label = n .. " off() (s)", better = "lower", value = function(r) return r.off end,
                target = under },
        },
    }
end
if cfg.scenarios.rtt then
    for qos = 0, 2 do
        add {
            id = "rtt" .. qos, broker = cfg.rtt_broker,
            cmd = function(b, zmqtt)
                if zmqtt then
                    return zmqtt_cmd("rtt", b.host, b.port, qos, cfg.rtt, cfg.payload,
                        cfg.rtt_warmup)
                end
                return mosq_cmd("rtt", b.host, b.port, qos, cfg.rtt, cfg.payload, cfg.rtt_warmup,
                    cfg.rtt_nodelay)
            end,
            metrics = {
                { label = fmt("round trip QoS %d via %s, p50 (µs)", qos, cfg.rtt_broker),
                    better = "lower", value = function(r) return r.p50 * 1e6 end,
                    target = { ratio = 1 } },
                { label = fmt("round trip QoS %d via %s, p99 (µs)", qos, cfg.rtt_broker),
                    better = "lower", value = function(r) return r.p99 * 1e6 end,
                    target = { ratio = 1 } },
            },
        }
    end
end
if cfg.scenarios.idle then
    local pings = math.ceil(cfg.idle / cfg.keepalive)
    local allowed = 4 * pings
    add {
        id = "idle", broker = "sink", idle = true,
        cmd = function(b, zmqtt)
            local seconds = cfg.settle + cfg.idle + 0.5
            if zmqtt then return zmqtt_cmd("idle", b.host, b.port, cfg.keepalive, seconds) end
            return mosq_cmd("idle", b.host, b.port, cfg.keepalive, seconds)
        end,
        metrics = {
            { label = fmt("idle %g s, keepalive %g s: wake-ups", cfg.idle, cfg.keepalive),
                better = "lower", value = function(r) return r.wakeups end,
                target = {
                    text = fmt("≤ 4 per keepalive (≤ %d)", allowed),
                    check = function(z) return z <= allowed end,
                },
            },
            { label = fmt("idle %g s: CPU (ms)", cfg.idle), better = "lower",
                value = function(r) return r.cpu_ms end },
        },
    }
end
-- WebSocket against TCP: the same zmqtt run over both, in each round.
local WS_FLOOR = 0.7
local function ws_scenario(id, kind, cmd, label)
    add {
        id = id, transports = true,
        runners = { { name = "tcp" }, { name = "ws", ws = true } },
        run = function(get_broker, client)
            local b = get_broker(client.ws and kind .. "-ws" or kind)
            return run(cmd(client.ws and fmt("ws://%s:%d/mqtt", b.host, b.port) or b.host, b.port))
        end,
        metrics = {
            { label = label, better = "higher", value = rate, target = { ratio = WS_FLOOR } },
            { label = "CPU per message, " .. label:gsub(" %(msg/s%)$", "") .. " (µs)",
                better = "lower", value = cpu_us },
        },
    }
end
if cfg.scenarios.wspub then
    ws_scenario("wspub", "sink", function(host, port)
        return zmqtt_cmd("pub", host, port, 0, cfg.qos0, cfg.payload, cfg.every)
    end, fmt("publish %s × %d B, QoS 0 (msg/s)", count_label(cfg.qos0), cfg.payload))
end
if cfg.scenarios.wsrecv then
    ws_scenario("wsrecv", "blast", function(host, port)
        return zmqtt_cmd("sub", host, port, cfg.recv, "bench/blast")
    end, fmt("receive %s × %d B QoS 0 into a callback (msg/s)", count_label(cfg.recv),
        cfg.payload))
end
if cfg.scenarios.handshake then
    local paths = {
        { name = "mqtt://", broker = "sink", scheme = "mqtt", via = "fake broker" },
        { name = "ws://", broker = "sink-ws", scheme = "ws", via = "fake broker -W 1" },
        { name = "mqtts://", broker = "mosquitto-tls", scheme = "mqtts", via = "mosquitto",
            tls = true },
        { name = "ws:// (websockify)", broker = "websockify", scheme = "ws",
            via = "websockify, mosquitto" },
        { name = "wss://", broker = "websockify-tls", scheme = "wss", via = "websockify, mosquitto",
            tls = true },
    }
    add {
        id = "handshake", transports = true, runners = paths,
        run = function(get_broker, client)
            local b = get_broker(client.broker)
            local uri = fmt("%s://%s:%d%s", client.scheme, b.host, b.tls_port or b.port,
                client.scheme:match("^ws") and "/" or "")
            if client.tls then
                return run(zmqtt_cmd("handshake", uri, cfg.handshakes,
                    get_broker("pki").dir .. "/crt.pem"))
            end
            return run(zmqtt_cmd("handshake", uri, cfg.handshakes))
        end,
        metrics = {
            { label = "connect() to CONNACK, median (ms)", better = "lower",
                value = function(r) return r.median * 1e3 end },
            { label = "fastest (ms)", better = "lower", value = function(r) return r.min * 1e3 end },
            { label = "client CPU per connect (ms)", better = "lower",
                value = function(r) return r.cpu * 1e3 end },
        },
    }
end
--- A memory target: every round had all clients connected, and the median is at most kib.
local function all_connected_within(kib)
    return {
        text = fmt("all connected, ≤ %g KiB", kib),
        check = function(z, runs)
            for _, v in ipairs(runs) do if not v then return false end end
            return z <= kib
        end,
    }
end

if cfg.scenarios.clients then
    local largest = 0
    for _, n in ipairs(cfg.clients) do largest = math.max(largest, tonumber(n)) end
    for _, n in ipairs(cfg.clients) do
        n = tonumber(n)
        add {
            id = "clients" .. n, broker = "sink",
            cmd = function(b, zmqtt)
                if zmqtt then return zmqtt_cmd("clients", b.host, b.port, n, cfg.hold) end
                return mosq_cmd("clients", b.host, b.port, n, cfg.hold)
            end,
            metrics = {
                { label = fmt("%s connected clients: process RSS per client (KiB)",
                    count_label(n)), better = "lower",
                    value = function(r)
                        if r.connected ~= r.clients then
                            return nil, fmt("only %s/%s connected (%.1f KiB each)",
                                count_label(r.connected), count_label(r.clients),
                                r.rss_kib / math.max(1, r.connected))
                        end
                        return r.rss_kib / r.clients
                    end,
                    target = n == largest and n >= 5000 and all_connected_within(32) or nil,
                },
                { label = fmt("%s connected clients: RSS growth per client (KiB)",
                    count_label(n)), better = "lower",
                    value = function(r)
                        if r.connected ~= r.clients then return nil, "—" end
                        return (r.rss_kib - r.base_kib) / r.clients
                    end,
                    target = n == largest and n >= 5000 and all_connected_within(4) or nil,
                },
                { label = fmt("%s connected clients: threads in the process", count_label(n)),
                    better = "lower", value = function(r) return r.threads end,
                    target = n == largest and n >= 5000 and {
                        text = "≤ 2 (the application's and one I/O thread)",
                        check = function(z) return z <= 2 end,
                    } or nil,
                },
            },
        }
    end
end

---------------------------------------------------------------------------
-- Running

local function median(list)
    local t = {}
    for _, v in ipairs(list) do if v then t[#t + 1] = v end end
    if #t == 0 then return nil end
    table.sort(t)
    local m = (#t + 1) // 2
    if #t % 2 == 1 then return t[m] end
    return (t[m] + t[m + 1]) / 2
end

local function advantage(metric, z, m)
    if not z or not m then return nil end
    if metric.better == "higher" then
        if m == 0 then return nil end
        return z / m
    end
    if z == 0 then return m == 0 and 1 or nil end
    return m / z
end

local brokers = {}
local function broker(kind)
    if kind == nil then return nil end
    if not brokers[kind] then
        if kind == "sink" then
            brokers[kind] = start_fake("sink")
        elseif kind == "count" then
            brokers[kind] = start_fake("sink", "-b", 1)
        elseif kind == "blast" then
            brokers[kind] = start_fake("blast", "-n", cfg.recv, "-s", cfg.payload, "-t",
                "bench/blast")
        elseif kind:match("^blast:%d+$") then
            brokers[kind] = start_fake("blast", "-n", kind:match("%d+"), "-s", cfg.payload, "-t",
                "bench/blast")
        elseif kind == "echo" then
            brokers[kind] = start_fake("echo")
        elseif kind == "sink-ws" then
            brokers[kind] = start_fake("sink", "-W", 1)
        elseif kind == "blast-ws" then
            brokers[kind] = start_fake("blast", "-n", cfg.recv, "-s", cfg.payload, "-t",
                "bench/blast", "-W", 1)
        elseif kind == "pki" then
            brokers[kind] = make_pki()
        elseif kind == "mosquitto-tls" then
            local dir, tls_port = broker("pki").dir, free_port()
            brokers[kind] = start_mosquitto(fmt("listener %d %s\ncertfile %s/crt.pem\n" ..
                "keyfile %s/key.pem\n", tls_port, HOST, dir, dir))
            brokers[kind].tls_port = tls_port
            assert(port_open(tls_port), "mosquitto's TLS listener did not open")
        elseif kind == "websockify" or kind == "websockify-tls" then
            local port, dir = free_port(), broker("pki").dir
            brokers[kind] = start_daemon(fmt("/usr/bin/python3 %s %s %s:%d %s:%d",
                shell_quote(ROOT .. "/spec/tools/mqtt_websockify.py"),
                kind == "websockify" and "" or fmt("--ssl-only --cert %s/crt.pem --key %s/key.pem",
                    shell_quote(dir), shell_quote(dir)),
                HOST, port, HOST, broker("mosquitto-tls").port), port)
        else
            brokers[kind] = start_mosquitto()
        end
    end
    return brokers[kind]
end

local function stop_brokers()
    for k, b in pairs(brokers) do
        b.stop()
        brokers[k] = nil
    end
end

local CLIENTS = {
    { name = "zmqtt", zmqtt = true, env = ZMQTT_ENV },
    { name = "libmosquitto", zmqtt = false },
}

--- Builds revision rev of zmqtt once into cfg.bin/baseline-<rev>; returns the
-- LUA_PATH/LUA_CPATH settings that load it.
local function build_baseline(rev)
    local short = capture(fmt("git -C %s rev-parse --short %s", shell_quote(ROOT), shell_quote(rev)))
    assert(short ~= "", "BENCH_BASELINE: no revision " .. rev)
    local dir = cfg.bin .. "/baseline-" .. short
    local so = io.open(dir .. "/build/mqtt/core.so")
    if so then
        so:close()
    else
        note("building the baseline " .. short .. " into " .. dir)
        local ok = os.execute(fmt("rm -rf %s && mkdir -p %s && git -C %s archive %s | tar -x -C %s" ..
            " && make -C %s -s all >>%s 2>&1", shell_quote(dir), shell_quote(dir),
            shell_quote(ROOT), shell_quote(short), shell_quote(dir), shell_quote(dir),
            shell_quote(LOG)))
        assert(ok, "building the baseline failed (see " .. LOG .. ")")
    end
    return fmt("LUA_PATH=%s LUA_CPATH=%s", shell_quote(dir .. "/lua/?.lua;" .. dir .. "/lua/?/init.lua;;"),
        shell_quote(dir .. "/build/?.so;;")), short
end

local BASELINE = os.getenv("BENCH_BASELINE")
local baseline_rev
if BASELINE and BASELINE ~= "" then
    local env
    env, baseline_rev = build_baseline(BASELINE)
    CLIENTS[3] = { name = "baseline", zmqtt = true, env = env }
end

local started = socket.gettime()
local results = {} -- results[scenario.id][client name][round] = fields or false
local raw = {}

-- What runs in each round: every contestant, with both clients at 5.0 too
-- where the scenario has 5.0 rows, or the zmqtt builds alone.
local function runners(s)
    if s.runners then return s.runners end
    if s.v5 then
        local t = { CLIENTS[1], { name = "zmqtt-v5", zmqtt = true, protocol = 5 }, CLIENTS[2],
            { name = "libmosquitto-v5", zmqtt = false, protocol = 5 } }
        for i = 3, #CLIENTS do t[#t + 1] = CLIENTS[i] end
        return t
    end
    if not s.solo then return CLIENTS end
    local t = {}
    for _, c in ipairs(CLIENTS) do if c.zmqtt then t[#t + 1] = c end end
    return t
end

-- The environment a contestant's command runs with (zmqtt_cmd, mosq_cmd).
local function env_of(client)
    local t = {}
    if client.protocol == 5 then
        t[#t + 1] = "ZMQTT_BENCH_PROTOCOL=5 MOSQ_BENCH_PROTOCOL=5"
    end
    if client.alias then t[#t + 1] = "ZMQTT_BENCH_TOPIC_ALIAS=" .. client.alias end
    if client.store then
        t[#t + 1] = "ZMQTT_BENCH_STORE=" .. shell_quote(cfg.store_dir) ..
            " ZMQTT_BENCH_STORE_SYNC=" .. client.store
    end
    return table.concat(t, " ")
end

local function run_scenario(s)
    local b = broker(s.broker)
    results[s.id] = {}
    for _, client in ipairs(runners(s)) do results[s.id][client.name] = {} end
    for round = 1, s.rounds or cfg.rounds do
        for _, client in ipairs(runners(s)) do
            module_env = client.env or ZMQTT_ENV
            client_env = env_of(client)
            local t0 = socket.gettime()
            local r, err
            if s.run then
                r, err = s.run(broker, client)
            else
                local cmd = s.cmd(b, client.zmqtt, client)
                if s.idle then r, err = run_idle(cmd) else r, err = run(cmd) end
            end
            if r and s.after then s.after(b, r) end
            results[s.id][client.name][round] = r or false
            local line = fmt("%-9s round %d %-12s %5.1f s  %s", s.id, round, client.name,
                socket.gettime() - t0, r and "" or ("FAILED: " .. tostring(err)))
            if r then
                local keys = {}
                for k in pairs(r) do keys[#keys + 1] = k end
                table.sort(keys)
                for _, k in ipairs(keys) do line = line .. " " .. k .. "=" .. tostring(r[k]) end
            end
            note(line)
            log(line)
            raw[#raw + 1] = line
        end
    end
end

local ok, err = pcall(function()
    for _, s in ipairs(scenarios) do run_scenario(s) end
end)
stop_brokers()
if not ok then
    note("bench: " .. tostring(err))
    os.exit(1)
end

---------------------------------------------------------------------------
-- The table

local function num(v)
    if v == nil then return "—" end
    local a = math.abs(v)
    if v == math.floor(v) and a < 1e15 then return count_label(math.tointeger(v)) end
    if a >= 10000 then return count_label(math.floor(v + 0.5)) end
    if a >= 100 then return fmt("%.0f", v) end
    if a >= 10 then return fmt("%.1f", v) end
    return fmt("%.2f", v)
end

local function cell(values, notes)
    local m = median(values)
    if m then return num(m) end
    return notes[1] or "failed"
end

local rows, solo_rows = {}, {}
local targets, met_count = 0, 0

-- The verdict on metric's target for the median z of runs and the median ratio.
-- base: what z is compared with, for a check that needs it (the 5.0 table).
local function verdict(metric, z, runs, ratio, base)
    if not metric.target then return "—", "" end
    local target, met
    if metric.target.ratio then
        target = fmt("≥ %g×", metric.target.ratio)
        met = ratio and ratio >= metric.target.ratio
    else
        target = metric.target.text
        met = z and metric.target.check(z, runs, base)
    end
    targets = targets + 1
    if met then met_count = met_count + 1 end
    return target, met and "yes" or "**no**"
end

--- One contestant's values of metric per round (false where a run failed or
-- the metric has none), and the notes of the failures.
local function values_of(s, metric, name)
    local vals, notes = {}, {}
    for round = 1, cfg.rounds do
        local r = results[s.id][name] and results[s.id][name][round]
        local v, why = false, "failed"
        if r then v, why = metric.value(r) end
        vals[round] = v or false
        if not v then notes[#notes + 1] = why end
    end
    return vals, notes
end

--- The median of the per-round advantages of a over b, and the rounds' ratios.
local function ratio_cells(metric, a, b)
    local ratios, per_round = {}, {}
    for round = 1, cfg.rounds do
        ratios[round] = advantage(metric, a[round] or nil, b[round] or nil) or false
        per_round[round] = ratios[round] and fmt("%.2f", ratios[round]) or "—"
    end
    return median(ratios), table.concat(per_round, " ")
end

--- The baseline's cells of a row ("" without a baseline): its value, and
-- zmqtt's advantage over it with the per-round ratios.
local function baseline_cells(s, metric, zvals)
    if not baseline_rev then return "" end
    local bvals, bnotes = values_of(s, metric, "baseline")
    local adv, per_round = ratio_cells(metric, zvals, bvals)
    return fmt(" %s | %s (%s) |", cell(bvals, bnotes), adv and fmt("%.2f×", adv) or "—", per_round)
end

-- A row of the solo table: the median of zmqtt's runs and of their ratios.
local function solo_row(s, metric)
    local vals, notes = values_of(s, metric, "zmqtt")
    local ratios, per_round = {}, {}
    for round = 1, metric.ratio and cfg.rounds or 0 do
        local r = results[s.id].zmqtt[round]
        ratios[round] = r and metric.ratio(r) or false
        per_round[round] = ratios[round] and fmt("%.2f", ratios[round]) or "—"
    end
    local ratio = median(ratios)
    local target, met = verdict(metric, median(vals), vals, ratio)
    return fmt("| %s | %s | %s | %s | %s | %s |%s", metric.label, cell(vals, notes),
        ratio and fmt("%.2f×", ratio) or "—", #per_round > 0 and table.concat(per_round, " ") or "—",
        target, met, baseline_cells(s, metric, vals))
end

-- A row of the main table: contestant a (zmqtt's column) against b.
local function versus_row(s, metric, label, a, b, v5)
    local zvals, znotes = values_of(s, metric, a)
    local mvals, mnotes = values_of(s, metric, b)
    local adv, per_round = ratio_cells(metric, zvals, mvals)
    local target, met = verdict(metric, median(zvals), zvals, adv)
    return fmt("| %s | %s | %s | %s | %s | %s | %s |%s", label, cell(zvals, znotes),
        cell(mvals, mnotes), adv and fmt("%.2f×", adv) or "—", per_round, target, met,
        v5 and (baseline_rev and " — | — |" or "") or baseline_cells(s, metric, zvals))
end

--- "publish … (msg/s)" -> "publish …, MQTT 5.0 (msg/s)".
local function v5_label(label)
    local head, unit = label:match("^(.-) (%b())$")
    if head then return head .. ", MQTT 5.0 " .. unit end
    return label .. ", MQTT 5.0"
end

-- The 5.0 table: zmqtt 5.0 against zmqtt 3.1.1, round by round.
local V5_FLOOR = 0.9 -- the rates at 5.0 against 3.1.1
local ALLOC_SLACK = 0.01 -- allocations per message: what "nothing more" leaves for noise
local v5_rows = {}
local function v5_row(s, metric, label)
    local avals, anotes = values_of(s, metric, "zmqtt")
    local bvals, bnotes = values_of(s, metric, "zmqtt-v5")
    local adv, per_round = ratio_cells(metric, bvals, avals)
    local target, met = verdict(metric, median(bvals), bvals, adv, median(avals))
    v5_rows[#v5_rows + 1] = fmt("| %s | %s | %s | %s | %s | %s | %s |", label,
        cell(avals, anotes), cell(bvals, bnotes), adv and fmt("%.2f×", adv) or "—", per_round,
        target, met)
end

-- The wire table: bytes with topic aliases against without, one row.
local wire_rows = {}
local function wire_row(s, metric)
    local offs, onotes = values_of(s, metric, "alias-off")
    local autos, anotes = values_of(s, metric, "alias-auto")
    local saved, share = {}, {}
    for round = 1, cfg.rounds do
        local off = results[s.id]["alias-off"][round]
        if offs[round] and autos[round] and off.publish_in then
            saved[#saved + 1] = 1 - autos[round] / offs[round]
            share[#share + 1] = cfg.wire_topic * off.publish_in / offs[round]
        end
    end
    local function per_msg(vals, notes, name)
        local m = median(vals)
        local r = results[s.id][name][1]
        if not m or not r or not r.publish_in then return cell(vals, notes) end
        return fmt("%s (%.1f B/msg)", num(m), m / r.publish_in)
    end
    local sv, sh = median(saved), median(share)
    local target, met = verdict({ target = {
        text = "saved ≥ 90% of the topic's share",
        check = function() return sv and sh and sv >= 0.9 * sh end,
    } }, sv, saved)
    wire_rows[#wire_rows + 1] = fmt("| %s | %s | %s | %s | %s | %s | %s |", metric.label,
        per_msg(offs, onotes, "alias-off"), per_msg(autos, anotes, "alias-auto"),
        sv and fmt("%.1f%%", sv * 100) or "—", sh and fmt("%.1f%%", sh * 100) or "—", target, met)
end

-- The transports table: zmqtt over ws:// against zmqtt over TCP, round by round.
local ws_rows = {}
local function ws_row(s, metric)
    local tvals, tnotes = values_of(s, metric, "tcp")
    local wvals, wnotes = values_of(s, metric, "ws")
    local adv, per_round = ratio_cells(metric, wvals, tvals)
    local target, met = verdict(metric, median(wvals), wvals, adv)
    ws_rows[#ws_rows + 1] = fmt("| %s | %s | %s | %s | %s | %s | %s |", metric.label,
        cell(tvals, tnotes), cell(wvals, wnotes), adv and fmt("%.2f×", adv) or "—", per_round,
        target, met)
end

-- The handshake table: one row per path, the median over the rounds.
local handshake_list = {}
local function handshake_rows(s)
    for _, path in ipairs(s.runners) do
        local cells = {}
        for i, metric in ipairs(s.metrics) do
            local vals, notes = values_of(s, metric, path.name)
            cells[i] = cell(vals, notes)
        end
        handshake_list[#handshake_list + 1] = fmt("| %s | %s | %s | %s | %s |", path.name,
            cells[1], cells[2], cells[3], path.via)
    end
end

-- The persistence table: rates with a store against without, round by round.
local store_rows = {}
local STORE_BATCH_FLOOR = 0.5
local function store_row(s, metric)
    local none, nnotes = values_of(s, metric, "no-store")
    local batch, bnotes = values_of(s, metric, "store-batch")
    local always, anotes = values_of(s, metric, "store-always")
    local badv, bper = ratio_cells(metric, batch, none)
    local aadv, aper = ratio_cells(metric, always, none)
    local target, met = verdict({ target = { ratio = STORE_BATCH_FLOOR } }, median(batch), batch,
        badv)
    store_rows[#store_rows + 1] = fmt("| %s | %s | %s | %s (%s) | %s | %s (%s) | batch %s | %s |",
        metric.label, cell(none, nnotes), cell(batch, bnotes), badv and fmt("%.2f×", badv) or "—",
        bper, cell(always, anotes), aadv and fmt("%.2f×", aadv) or "—", aper, target, met)
end
local function store_size_row(s, metric)
    local vals, notes = values_of(s, metric, "zmqtt")
    store_rows[#store_rows + 1] = fmt("| %s | — | %s | — | — | — | — | — |", metric.label,
        cell(vals, notes))
end

for _, s in ipairs(scenarios) do
    if s.id == "store" then store_row(s, s.metrics[1]) end
    if s.id == "storesize" then store_size_row(s, s.metrics[1]) end
    for _, metric in ipairs((s.solo or s.own or s.transports) and {} or s.metrics) do
        rows[#rows + 1] = versus_row(s, metric, metric.label, "zmqtt", "libmosquitto")
    end
    for _, metric in ipairs(s.v5 and s.metrics or {}) do
        rows[#rows + 1] = versus_row(s, metric, v5_label(metric.label), "zmqtt-v5",
            "libmosquitto-v5", true)
        v5_row(s, { better = metric.better, value = metric.value,
            target = metric.target and { ratio = V5_FLOOR } or nil }, metric.label)
    end
    if s.id == "instr" then
        for _, metric in ipairs(s.metrics) do
            v5_row(s, { better = metric.better, value = metric.value,
                target = { ratio = V5_FLOOR } }, metric.label)
        end
    elseif s.id == "alloc" then
        local metric = s.metrics[1]
        v5_row(s, { better = metric.better, value = metric.value, target = {
            text = fmt("5.0 ≤ 3.1.1 + %g", ALLOC_SLACK),
            check = function(z, _, base) return base and z <= base + ALLOC_SLACK end,
        } }, metric.label)
    elseif s.id == "wire" then
        wire_row(s, s.metrics[1])
    end
    if s.solo then
        for _, metric in ipairs(s.metrics) do solo_rows[#solo_rows + 1] = solo_row(s, metric) end
    end
    if s.id == "wspub" or s.id == "wsrecv" then
        for _, metric in ipairs(s.metrics) do ws_row(s, metric) end
    elseif s.id == "handshake" then
        handshake_rows(s)
    end
end

local function first_line(cmd)
    return capture(cmd .. " 2>/dev/null"):match("[^\n]*")
end

local cpu = first_line("grep -m1 'model name' /proc/cpuinfo"):gsub("^.-:%s*", "")
local versions = fmt("%s, libmosquitto %s, mosquitto %s, Linux %s",
    first_line(cfg.lua .. " -v"):match("^Lua [%d.]+") or cfg.lua,
    first_line("dpkg-query -W -f='${Version}' libmosquitto1"),
    first_line("dpkg-query -W -f='${Version}' mosquitto"),
    first_line("uname -r"))
local git = first_line("git -C " .. shell_quote(ROOT) .. " describe --always --dirty")

local out = {}
local function say(s) out[#out + 1] = s end
say(fmt("zmqtt %s vs libmosquitto, %s mode, %d rounds (A B A B …), %s, %s cores; %s; %.0f s.",
    git, SHORT and "short" or "full", cfg.rounds, cpu, first_line("nproc"), versions,
    socket.gettime() - started))
local function say_table(header, align, list)
    if #list == 0 then return end
    say("")
    say(header)
    say(align)
    for _, r in ipairs(list) do say(r) end
end
local bhead, balign = "", ""
if baseline_rev then
    bhead = fmt(" baseline %s | zmqtt vs baseline (per round) |", baseline_rev)
    balign = "---:|---|"
end
say_table("| scenario | zmqtt | libmosquitto | zmqtt advantage | per round | target | met |" .. bhead,
    "|---|---:|---:|---:|---|---|---|" .. balign, rows)
say_table("| zmqtt, MQTT 5.0 against 3.1.1 | 3.1.1 | 5.0 | 5.0 advantage | per round | target | met |",
    "|---|---:|---:|---:|---|---|---|", v5_rows)
say_table("| bytes on the wire (zmqtt, MQTT 5.0) | topic_alias = false | topic_alias = \"auto\" | saved |" ..
    " topic's share | target | met |", "|---|---:|---:|---:|---:|---|---|", wire_rows)
say_table("| persistence (zmqtt, 3.1.1) | no store | store, batch | batch / none (per round) |" ..
    " store, always | always / none (per round) | target | met |",
    "|---|---:|---:|---:|---:|---:|---|---|", store_rows)
say_table("| routing (zmqtt alone) | zmqtt | ratio to no filter callbacks | per round | target | met |" ..
    bhead, "|---|---:|---:|---|---|---|" .. balign, solo_rows)
say_table("| transports (zmqtt alone) | TCP | ws:// | ws:// / TCP | per round | target | met |",
    "|---|---:|---:|---:|---|---|---|", ws_rows)
say_table(fmt("| handshake (zmqtt, %d connects per round) | connect() to CONNACK, median (ms) |" ..
    " fastest (ms) | client CPU per connect (ms) | server |", cfg.handshakes), "|---|---:|---:|---:|---|",
    handshake_list)
say("")
say("Cells are medians over the rounds; the advantage is the median of the per-round")
say("ratios, oriented so that > 1 means zmqtt did better (faster, fewer µs, fewer")
say("wake-ups, less memory); a routing ratio is the median, within one run, of each")
say("segment's rate over that of the segment without filter callbacks before it.")
say("Rows marked MQTT 5.0 have both clients speak 5.0 (the others 3.1.1); the 5.0")
say("table's advantage is zmqtt 5.0 over zmqtt 3.1.1 in the same round (> 1: 5.0 did")
say("better). Allocations are the core's (libzmqtt's allocator), per message received.")
say("Targets met: " .. met_count .. " of " .. targets .. ".")
local text = table.concat(out, "\n")
print(text)

local f = io.open(cfg.out, "w")
if f then
    f:write(text, "\n\n<details><summary>runs</summary>\n\n```\n", table.concat(raw, "\n"),
        "\n```\n</details>\n")
    f:close()
    note("table written to " .. cfg.out .. "; commands and stderr in " .. LOG)
end
os.exit(0)
