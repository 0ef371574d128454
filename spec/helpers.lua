-- spec/helpers.lua: shared infrastructure for the busted specs.
-- Owns private mosquitto brokers on free 127.0.0.1 ports (config, password
-- file, log and persistence in a fresh temp dir), polling with a deadline and
-- wrappers over the mosquitto_pub/mosquitto_sub reference clients.
-- Must not: talk to anything but 127.0.0.1, or leave a process behind: every
-- process it starts is tracked by PID (and start time) and stopped by stop_all(),
-- which also runs when busted exits.

local socket = require("socket")
local compat = require("compat")

local helpers = {}

-- The portability helpers (spec/compat.lua), for the specs.
helpers.compat = compat

local HOST = "127.0.0.1"
helpers.HOST = HOST
-- The interpreter for child Lua processes: make check sets a sanitizer build;
-- by default the plain interpreter of the running version (lua5.1, luajit, ...).
helpers.LUA = os.getenv("ZMQTT_LUA") or compat.LUA

local START_TIMEOUT = 5     -- seconds for a broker to accept connections
local STOP_GRACE = 3        -- seconds between SIGTERM and SIGKILL
local POLL = 0.01           -- seconds between polls
local COMMAND_TIMEOUT = 30  -- upper bound for one synchronous command

local brokers = {}          -- every broker this module started, running or not
local children = {}         -- other background processes (mosquitto_sub), by record
local ports_given = {}      -- free_port() never hands out the same port twice
local counter = 0

helpers.now = socket.gettime
helpers.sleep = socket.sleep

---------------------------------------------------------------------------
-- Small utilities
---------------------------------------------------------------------------

--- Quotes a string for /bin/sh.
function helpers.quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local quote = helpers.quote

--- Returns the whole content of a file, or nil.
function helpers.read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local data = compat.read_all(f)
    f:close()
    return data
end
local read_file = helpers.read_file

--- Writes data to a file, raising on failure.
function helpers.write_file(path, data)
    local f = assert(io.open(path, "wb"))
    assert(f:write(data))
    f:close()
end
local write_file = helpers.write_file

-- Inherited descriptors (luasocket sockets are not close-on-exec) would keep a
-- fake broker's connection or listening port alive in every child: close them.
-- helpers.CLOSE_FDS is that bash prefix, for specs that start children themselves.
local CLOSE_FDS = 'for f in /proc/$BASHPID/fd/*; do n=${f##*/}; ' ..
                  '[ "$n" -gt 2 ] && exec {n}>&-; done; '
helpers.CLOSE_FDS = CLOSE_FDS

--- Runs a shell command (bounded by `timeout` seconds, default 30) and
-- returns ok (exit status 0), the exit code and stdout+stderr.
function helpers.run(cmd, timeout)
    local wrapped = "timeout -k 2 " .. (timeout or COMMAND_TIMEOUT) .. " bash -c " ..
                    quote(CLOSE_FDS .. cmd) .. " </dev/null 2>&1"
    local out, how, code = compat.popen_read(wrapped)
    if how == "signal" then
        code = 128 + code
    end
    return code == 0, code, out
end
local run = helpers.run

--- Runs `lua` on `script` in / with only the installed tree `lmod` (Lua
-- modules) and `cmod` (C modules) on the search paths; the script sees
-- where(path, name), the file `name` resolves to on `path` (5.1's way).
-- Returns the output; a failure raises.
function helpers.run_installed(lua, lmod, cmod, script)
    script = [[
        local function where(path, name)
            for t in path:gmatch("[^;]+") do
                local f = t:gsub("%?", name)
                local h = io.open(f, "rb")
                if h then h:close(); return f end
            end
        end
    ]] .. script
    return helpers.run_ok("cd / && LUA_PATH=" .. quote(lmod .. "/?.lua;" .. lmod .. "/?/init.lua") ..
                          " LUA_CPATH=" .. quote(cmod .. "/?.so") .. " " .. lua .. " -e " ..
                          quote(script))
end

--- helpers.run that must succeed: raises with the command and its output
-- otherwise; returns the output.
function helpers.run_ok(cmd, timeout)
    local ok, code, out = run(cmd, timeout or 60)
    assert(ok, cmd .. "\nfailed (" .. tostring(code) .. "): " .. tostring(out))
    return out
end

--- The resident set size of this process, in bytes.
function helpers.rss()
    local status = helpers.read_file("/proc/self/status") or ""
    return tonumber(status:match("VmRSS:%s*(%d+)%s*kB")) * 1024
end

--- True when this process runs under a sanitizer or valgrind, whose shadow
-- memory makes RSS say nothing about the library's own use: assert on the
-- library's counters then, and on RSS only otherwise.
function helpers.memory_instrumented()
    local maps = helpers.read_file("/proc/self/maps") or ""
    for _, lib in ipairs({ "libasan", "libtsan", "vgpreload" }) do
        if maps:find(lib, 1, true) then return true end
    end
    return false
end

--- Returns a string unique in this test run: prefix-<lua pid>-<counter>.
function helpers.unique(prefix)
    counter = counter + 1
    local stat = read_file("/proc/self/stat") or ""
    return (prefix or "zmqtt") .. "-" .. (stat:match("^(%d+)") or os.time()) .. "-" .. counter
end

--- Creates a fresh temporary directory and returns its path.
function helpers.tmpdir(prefix)
    local ok, _, out = run("mktemp -d -t " .. quote((prefix or "zmqtt") .. ".XXXXXX"))
    assert(ok, "mktemp failed: " .. out)
    return (out:gsub("%s+$", ""))
end

local function remove_dir(dir)
    -- Only ever remove what tmpdir() made.
    if dir and dir:match("/zmqtt[%w%-]*%.%w+$") and not os.getenv("ZMQTT_KEEP_DIRS") then
        run("rm -rf " .. quote(dir))
    end
end

local running_as_root
local function is_root()
    if running_as_root == nil then
        local _, _, out = run("id -u")
        running_as_root = out:match("^0%s") ~= nil
    end
    return running_as_root
end

---------------------------------------------------------------------------
-- Processes, always addressed by PID plus start time (so a recycled PID is
-- never signalled)
---------------------------------------------------------------------------

-- Returns state letter and start time of a PID, or nil when it does not exist.
local function proc_stat(pid)
    local stat = read_file("/proc/" .. pid .. "/stat")
    if not stat then
        return nil
    end
    local rest = stat:match("^.*%) (.*)$")   -- the command name may contain ") "
    if not rest then
        return nil
    end
    local fields = {}
    for w in rest:gmatch("%S+") do
        fields[#fields + 1] = w
    end
    return fields[1], fields[20]             -- state, starttime (fields 3 and 22)
end

local function proc_alive(rec)
    if not rec or not rec.pid then
        return false
    end
    local state, start = proc_stat(rec.pid)
    return state ~= nil and state ~= "Z" and state ~= "X" and start == rec.start
end

--- Whether a process record ({pid=, start=}) or a bare PID is still running.
function helpers.pid_alive(pid_or_rec)
    if type(pid_or_rec) == "table" then
        return proc_alive(pid_or_rec)
    end
    local state = proc_stat(pid_or_rec)
    return state ~= nil and state ~= "Z" and state ~= "X"
end

local function signal(rec, sig)
    if proc_alive(rec) then
        os.execute("kill -s " .. sig .. " " .. rec.pid .. " 2>/dev/null")
    end
end

local function wait_gone(rec, timeout)
    local deadline = socket.gettime() + timeout
    while proc_alive(rec) do
        if socket.gettime() > deadline then
            return false
        end
        socket.sleep(POLL)
    end
    return true
end

-- SIGTERM, then SIGKILL after `grace` seconds; returns once the process is gone.
local function proc_stop(rec, grace)
    if not proc_alive(rec) then
        return true
    end
    signal(rec, "TERM")
    if wait_gone(rec, grace or STOP_GRACE) then
        return true
    end
    signal(rec, "KILL")
    return wait_gone(rec, 2)
end

-- Starts `command` (a shell word list) in the background with stdout and
-- stderr redirected; the PID is the command's own (bash execs it).
local function spawn(command, out_path, err_path, dir)
    local redirect = " >" .. quote(out_path) ..
                     (err_path and (" 2>" .. quote(err_path)) or " 2>&1")
    local p = assert(io.popen("bash -c " .. quote(CLOSE_FDS .. "exec " .. command) ..
                              " </dev/null" .. redirect .. " & echo $!", "r"))
    local pid = tonumber(compat.read_all(p):match("%d+"))
    p:close()
    assert(pid, "could not start: " .. command)
    local _, start = proc_stat(pid)
    local rec = { pid = pid, start = start, command = command }
    -- spec/run-all.sh stops whatever is left in this file if the run crashes.
    local pidfile = os.getenv("ZMQTT_TEST_PIDFILE")
    if pidfile and start then
        local f = io.open(pidfile, "a")
        if f then
            f:write(pid, " ", start, " ", dir or "-", "\n")
            f:close()
        end
    end
    return rec
end

--- Starts `command` (a shell word list; bash execs it, so the PID is the
-- command's own) in the background in the environment given as shell
-- assignments (`env`, may be nil), output to `log`. It is stopped by PID
-- with helpers.stop_all() or rec.stop(). Returns the record {pid, stop}.
function helpers.start_process(command, log, env)
    local rec = spawn((env and ("env " .. env .. " ") or "") .. command, log)
    children[rec] = true
    function rec.stop(grace)
        local gone = proc_stop(rec, grace)
        children[rec] = nil
        return gone
    end
    return rec
end

---------------------------------------------------------------------------
-- Ports and polling
---------------------------------------------------------------------------

--- Returns a free TCP port on 127.0.0.1 (not handed out before in this run).
function helpers.free_port()
    for _ = 1, 50 do
        local srv = assert(socket.bind(HOST, 0))
        local _, port = srv:getsockname()
        srv:close()
        port = tonumber(port)
        if not ports_given[port] then
            ports_given[port] = true
            return port
        end
    end
    error("no free port found")
end

--- Whether something accepts TCP connections on 127.0.0.1:port.
function helpers.port_open(port)
    local c = socket.tcp()
    c:settimeout(0.5)
    local ok = c:connect(HOST, port)
    c:close()
    return ok == 1
end
local port_open = helpers.port_open

--- A listener on 127.0.0.1 whose TCP connects never complete: backlog 0 and
-- never accepting, so once one connection waits in its queue the kernel drops
-- further SYNs. Returns the port and a function that closes it all.
function helpers.full_backlog()
    local srv = assert(socket.bind(HOST, 0, 0))
    local _, port = srv:getsockname()
    local fillers = {}
    local function close()
        for _, s in ipairs(fillers) do s:close() end
        srv:close()
    end
    for _ = 1, 8 do
        local s = socket.tcp()
        s:settimeout(0.2)
        fillers[#fillers + 1] = s
        if not s:connect(HOST, tonumber(port)) then
            return tonumber(port), close
        end
    end
    close()
    error("could not fill the listen backlog")
end

--- Whether 127.0.0.1:port can be bound (with SO_REUSEADDR, as mosquitto does).
function helpers.port_bindable(port)
    local s = socket.tcp4()   -- tcp() would create the fd only at bind, without the option
    assert(s:setoption("reuseaddr", true))
    local ok = s:bind(HOST, port)
    s:close()
    return ok == 1
end
local port_bindable = helpers.port_bindable

--- Polls pred() until it returns a true value or `timeout` seconds (default
-- 5) pass; between polls calls step_fn() (e.g. function() mqtt.dispatch(0.01)
-- end) or, without one, sleeps 10 ms (a number step_fn is a sleep interval).
-- Returns true when pred held, false on timeout.
function helpers.wait_until(pred, timeout, step_fn)
    local deadline = socket.gettime() + (timeout or 5)
    while true do
        if pred() then
            return true
        end
        if socket.gettime() >= deadline then
            return pred() and true or false
        end
        if type(step_fn) == "function" then
            step_fn()
        else
            socket.sleep(step_fn or POLL)
        end
    end
end

---------------------------------------------------------------------------
-- Brokers
---------------------------------------------------------------------------

local function broker_logs(b)
    return ("--- %s\n%s--- %s\n%s"):format(b.log_file, read_file(b.log_file) or "",
                                           b.stdout_file, read_file(b.stdout_file) or "")
end

-- Starts mosquitto once; returns true, or nil and a reason.
local function launch(b)
    -- The log is appended to across restarts; readiness is judged on the new part.
    local before = #(read_file(b.log_file) or "")
    b.proc = spawn("mosquitto -c " .. quote(b.conf), b.stdout_file, nil, b.dir)
    b.pid = b.proc.pid
    local deadline = socket.gettime() + START_TIMEOUT
    while socket.gettime() < deadline do
        if not proc_alive(b.proc) then
            return nil, "mosquitto exited"
        end
        local log = (read_file(b.log_file) or ""):sub(before + 1)
        if log:find(" running", 1, true) and port_open(b.port) then
            return true
        end
        socket.sleep(POLL)
    end
    proc_stop(b.proc)
    return nil, "mosquitto did not accept connections within " .. START_TIMEOUT .. " s"
end

-- mosquitto options start_broker takes by name (written after the listener
-- line, so the per-listener ones apply to it). What an MQTT 5 client sees:
-- max_inflight_messages -> CONNACK receive_maximum, max_keepalive ->
-- server_keep_alive, max_packet_size -> maximum_packet_size, max_qos ->
-- maximum_qos, retain_available, max_topic_alias -> topic_alias_maximum,
-- allow_zero_length_clientid / auto_id_prefix -> assigned_client_identifier,
-- message_size_limit -> PUBACK/PUBREC "implementation specific error".
local BROKER_KNOBS = {
    "max_inflight_messages", "max_keepalive", "max_packet_size", "max_qos",
    "retain_available", "max_topic_alias", "allow_zero_length_clientid",
    "auto_id_prefix", "message_size_limit", "max_queued_messages",
    "persistent_client_expiration",
}

local function config_lines(b, opts)
    local lines = {
        "# written by spec/helpers.lua",
        "listener " .. b.port .. " " .. HOST,
        "log_dest file " .. b.log_file,
        "log_type all",
        "connection_messages true",
    }
    if is_root() then
        -- Otherwise mosquitto drops to user "mosquitto", which cannot use the temp dir.
        lines[#lines + 1] = "user root"
    end
    if opts.users then
        lines[#lines + 1] = "allow_anonymous false"
        lines[#lines + 1] = "password_file " .. b.dir .. "/passwd"
    else
        lines[#lines + 1] = "allow_anonymous true"
    end
    if opts.persistence then
        lines[#lines + 1] = "persistence true"
        lines[#lines + 1] = "persistence_location " .. b.dir .. "/"
    else
        lines[#lines + 1] = "persistence false"
    end
    for _, knob in ipairs(BROKER_KNOBS) do
        local v = opts[knob]
        if v ~= nil then
            lines[#lines + 1] = knob .. " " .. tostring(v)
        end
    end
    local extra = opts.extra
    if type(extra) == "table" then
        extra = table.concat(extra, "\n")
    end
    if extra then
        lines[#lines + 1] = extra
    end
    return table.concat(lines, "\n") .. "\n"
end

local function write_passwords(b, users)
    local file = b.dir .. "/passwd"
    write_file(file, "")
    local names = {}
    for name in pairs(users) do
        names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
        local ok, _, out = run("mosquitto_passwd -b " .. quote(file) .. " " .. quote(name) ..
                               " " .. quote(users[name]))
        assert(ok, "mosquitto_passwd failed: " .. out)
    end
    run("chmod 600 " .. quote(file))
end

--- Starts a private mosquitto on a free 127.0.0.1 port. opts (all optional):
--   users = {name = password, ...}  password file, anonymous refused
--   persistence = true              persistence on, stored in the temp dir
--   extra = "lines" or {lines}      raw config lines appended
--   port = n                        a fixed port instead of a free one
--   max_inflight_messages, max_keepalive, max_packet_size, max_qos,
--   retain_available, max_topic_alias, allow_zero_length_clientid,
--   auto_id_prefix, message_size_limit, max_queued_messages,
--   persistent_client_expiration    those mosquitto options (see BROKER_KNOBS)
-- Every listener accepts MQTT 3.1, 3.1.1 and 5.0 clients (mosquitto 2.0).
-- Returns the broker {host, port, pid, dir, conf, log_file, users, stop,
-- kill, restart, running, log}; its functions work with . or :. With `into`
-- (a table), that table is filled in and returned instead of a new one (see
-- helpers.with_broker). Raises with the broker's log when it does not come up
-- within 5 s.
function helpers.start_broker(opts, into)
    opts = opts or {}
    local b = into or {}
    b.host, b.port, b.users = HOST, opts.port or helpers.free_port(), opts.users
    b.dir = helpers.tmpdir("zmqtt-broker")
    b.conf = b.dir .. "/mosquitto.conf"
    b.log_file = b.dir .. "/mosquitto.log"
    b.stdout_file = b.dir .. "/stdout.log"
    b.address = HOST .. ":" .. b.port
    if opts.users then
        write_passwords(b, opts.users)
    end
    write_file(b.conf, config_lines(b, opts))
    brokers[#brokers + 1] = b

    --- Whether this broker's mosquitto process is running.
    function b.running()
        return proc_alive(b.proc)
    end

    --- The broker's log file so far (mosquitto.log, then its stdout/stderr).
    function b.log()
        return broker_logs(b)
    end

    --- SIGTERM by PID, SIGKILL after 3 s; returns once the process is gone.
    function b.stop()
        return proc_stop(b.proc)
    end

    --- SIGKILL by PID (an abnormal loss: no DISCONNECT, no persistence save).
    function b.kill()
        signal(b.proc, "KILL")
        return wait_gone(b.proc, 2)
    end

    --- Starts the broker again, same port and config (stopping it first if it
    -- runs); retries for up to 5 s while the port is not yet bindable.
    function b.restart()
        proc_stop(b.proc)
        local deadline = socket.gettime() + START_TIMEOUT
        local ok, why
        repeat
            if port_bindable(b.port) then
                ok, why = launch(b)
                if ok then
                    return b
                end
            else
                why = "port " .. b.port .. " not bindable"
            end
            socket.sleep(0.05)
        until socket.gettime() > deadline
        error("mosquitto restart on port " .. b.port .. " failed: " .. why .. "\n" ..
              broker_logs(b), 2)
    end

    local ok, why = launch(b)
    -- A port picked by free_port may be taken before mosquitto binds it (by
    -- another suite on the machine): with no port asked for, try new ones.
    for _ = 1, 3 do
        if ok or opts.port then break end
        b.port = helpers.free_port()
        b.address = HOST .. ":" .. b.port
        write_file(b.conf, config_lines(b, opts))
        ok, why = launch(b)
    end
    if not ok then
        error("mosquitto did not start on port " .. b.port .. ": " .. why .. "\n" ..
              broker_logs(b), 2)
    end
    return b
end

--- Stops every broker and background client still running and removes their
-- temp dirs (set ZMQTT_KEEP_DIRS=1 to keep them). Safe to call repeatedly.
function helpers.stop_all()
    -- Signal everything first, then wait: the processes shut down in parallel.
    for rec in pairs(children) do
        signal(rec, "TERM")
    end
    for _, b in ipairs(brokers) do
        signal(b.proc, "TERM")
    end
    for rec in pairs(children) do
        proc_stop(rec, 1)
        children[rec] = nil
    end
    for i = #brokers, 1, -1 do
        local b = brokers[i]
        proc_stop(b.proc)
        remove_dir(b.dir)
        brokers[i] = nil
    end
end

---------------------------------------------------------------------------
-- Reference clients
---------------------------------------------------------------------------

local function client_args(broker, args)
    local words = { "-h", HOST, "-p", tostring(broker.port), "-V", "mqttv311" }
    local function add(...)
        for _, w in ipairs({ ... }) do
            words[#words + 1] = w
        end
    end
    if args.id then
        add("-i", quote(args.id))
    end
    if args.username then
        add("-u", quote(args.username))
    end
    if args.password then
        add("-P", quote(args.password))
    end
    if args.qos then
        add("-q", tostring(args.qos))
    end
    if args.keepalive then
        add("-k", tostring(args.keepalive))
    end
    return words, add
end

--- Runs mosquitto_pub against a broker. args is a string of raw arguments
-- (appended after -h/-p) or a table: topic, message (any bytes; nil or "" sends
-- an empty payload), qos, retain, id, username, password, keepalive, extra
-- (raw arguments), timeout (seconds). Returns ok, exit code, output.
function helpers.mosquitto_pub(broker, args)
    if type(args) == "string" then
        return run("mosquitto_pub -h " .. HOST .. " -p " .. broker.port .. " " .. args)
    end
    args = args or {}
    local words, add = client_args(broker, args)
    add("-t", quote(args.topic or "zmqtt/test"))
    local msg = args.message
    if msg == nil or msg == "" then
        add("-n")
    elseif msg:find("\0", 1, true) or #msg > 65536 then
        -- argv cannot carry NUL bytes or very long strings: go through a file.
        local file = os.tmpname()
        write_file(file, msg)
        add("-f", quote(file))
        words.cleanup = file
    else
        add("-m", quote(msg))
    end
    if args.retain then
        add("-r")
    end
    if args.extra then
        add(args.extra)
    end
    local ok, code, out = run("mosquitto_pub " .. table.concat(words, " "), args.timeout)
    if words.cleanup then
        os.remove(words.cleanup)
    end
    return ok, code, out
end

local function unhex(h)
    return (h:gsub("%x%x", function(byte)
        return string.char(tonumber(byte, 16))
    end))
end

local SUB_FORMAT = [[MSG\t%q\t%r\t%m\t%t\t%x]]

--- Starts mosquitto_sub in the background and returns once the broker has
-- sent its SUBACK (so a publish made afterwards is seen). args: topic (string
-- or list), qos, count (-C: exit after that many messages), timeout (-W,
-- seconds, default 10), id, username, password, clean (false: persistent
-- session), extra (raw arguments). Returns a collector:
--   sub.messages()              messages so far: {topic, payload, qos, retain, mid}
--   sub.wait(timeout, step_fn)  waits until mosquitto_sub exits (count reached
--                               or -W); returns messages, finished (boolean)
--   sub.wait_for(n, timeout, step_fn)  waits for at least n messages; returns
--                               messages, reached (boolean)
--   sub.running(), sub.stop(), sub.output() (its stderr), sub.pid, sub.id
-- Raises with the output when mosquitto_sub exits before subscribing.
function helpers.mosquitto_sub_collect(broker, args)
    args = args or {}
    local id = args.id or helpers.unique("zsub")
    local words, add = client_args(broker, { id = id, username = args.username,
                                             password = args.password, qos = args.qos })
    local topics = args.topic or "#"
    if type(topics) == "string" then
        topics = { topics }
    end
    for _, t in ipairs(topics) do
        add("-t", quote(t))
    end
    if args.count then
        add("-C", tostring(args.count))
    end
    add("-W", tostring(args.timeout or 10))
    if args.clean == false then
        add("-c")
    end
    if args.extra then
        add(args.extra)
    end
    add("-F", quote(SUB_FORMAT))

    local out_file = broker.dir .. "/" .. id .. ".out"
    local err_file = broker.dir .. "/" .. id .. ".err"
    local log_start = #(read_file(broker.log_file) or "")
    local rec = spawn("stdbuf -oL mosquitto_sub " .. table.concat(words, " "), out_file, err_file)
    children[rec] = true

    local sub = { id = id, pid = rec.pid }

    function sub.running()
        return proc_alive(rec)
    end

    function sub.output()
        return read_file(err_file) or ""
    end

    function sub.messages()
        local list = {}
        for line in (read_file(out_file) or ""):gmatch("[^\n]+") do
            local qos, retain, mid, topic, hex =
                line:match("^MSG\t(%d)\t(%d)\t(%d+)\t(.*)\t(%x*)$")
            if qos then
                list[#list + 1] = { topic = topic, payload = unhex(hex), qos = tonumber(qos),
                                    retain = retain == "1", mid = tonumber(mid) }
            end
        end
        return list
    end

    function sub.stop()
        proc_stop(rec, 1)
        children[rec] = nil
    end

    function sub.wait(timeout, step_fn)
        local done = helpers.wait_until(function() return not proc_alive(rec) end,
                                        timeout or (args.timeout or 10) + 1, step_fn)
        if done then
            children[rec] = nil
        end
        return sub.messages(), done
    end

    function sub.wait_for(n, timeout, step_fn)
        local reached = helpers.wait_until(function() return #sub.messages() >= n end,
                                           timeout, step_fn)
        return sub.messages(), reached
    end

    local needle = "Sending SUBACK to " .. id
    local function subscribed()
        return (read_file(broker.log_file) or ""):find(needle, log_start + 1, true) ~= nil
    end
    helpers.wait_until(function() return subscribed() or not proc_alive(rec) end,
                       START_TIMEOUT)
    if not subscribed() then
        sub.stop()
        error("mosquitto_sub did not subscribe: " .. sub.output(), 2)
    end
    return sub
end

---------------------------------------------------------------------------
-- Spec scaffolding: child Lua processes, dispatching waits, sets of clients
-- and fake brokers closed after each test, a broker per describe block, and
-- subscribing. The mqtt module (the C core), fake_broker and busted are
-- required on first use only: loading this module needs none of them.
---------------------------------------------------------------------------

local function mqtt_module()
    return require("mqtt")
end

-- The busted API (setup, teardown, after_each, ...) of the running busted.
local function busted_api()
    local ok, api = pcall(require, "busted")
    assert(ok and type(api) == "table", "helpers: this needs to run inside busted")
    return api
end

--- The Lua search paths of this process as shell assignments
-- ("LUA_PATH=... LUA_CPATH=..."), to put before a child helpers.LUA command.
function helpers.child_env()
    return "LUA_PATH=" .. quote(package.path) .. " LUA_CPATH=" .. quote(package.cpath)
end

--- Runs the Lua chunk `script` in a child helpers.LUA with this process's
-- search paths (through helpers.run, bounded by `timeout` seconds); returns
-- ok, exit code, output as helpers.run does.
function helpers.run_lua(script, timeout)
    return run(helpers.child_env() .. " " .. helpers.LUA .. " -e " .. quote(script), timeout)
end

--- A step function for wait_until that runs the callbacks of every client:
-- function() mqtt.dispatch(slice) end, slice in seconds (default 0.02).
function helpers.dispatcher(slice)
    slice = slice or 0.02
    return function()
        mqtt_module().dispatch(slice)
    end
end

--- wait_until(pred, timeout) that dispatches between polls: runs the callbacks
-- of every client (mqtt.dispatch(slice), slice default 0.02 s) until pred()
-- holds or `timeout` seconds (default 5) pass. Returns true, or false on timeout.
function helpers.wait_dispatch(pred, timeout, slice)
    return helpers.wait_until(pred, timeout or 5, helpers.dispatcher(slice))
end

---------------------------------------------------------------------------
-- WebSocket gateway and proxies (Debian's websockify, tinyproxy, microsocks)
---------------------------------------------------------------------------

local SPEC_DIR = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."

-- Starts `command` (helpers.start_process) with its output in a new temp
-- dir, and waits until it listens on `port`. Returns the port and the dir.
local function start_listening(command, port, name, dir)
    dir = dir or helpers.tmpdir("zmqtt-" .. name)
    local log = dir .. "/" .. name .. "-" .. port .. ".log"
    helpers.start_process(command, log)
    if not helpers.wait_until(function() return port_open(port) end, START_TIMEOUT * 2) then
        error(name .. " did not listen on port " .. port .. ":\n" .. (read_file(log) or ""), 3)
    end
    return port, dir
end

--- websockify in front of 127.0.0.1:target (spec/tools/mqtt_websockify.py:
-- it answers the "mqtt" subprotocol), on a new free port; with cert and key
-- (file paths) TLS only (wss://). Returns its port.
function helpers.start_websockify(target, cert, key)
    local port = helpers.free_port()
    return (start_listening("/usr/bin/python3 " .. quote(SPEC_DIR .. "/tools/mqtt_websockify.py") ..
        (cert and (" --ssl-only --cert " .. quote(cert) .. " --key " .. quote(key)) or "") ..
        " " .. HOST .. ":" .. port .. " " .. HOST .. ":" .. target, port,
        cert and "wss" or "ws"))
end

--- tinyproxy (HTTP CONNECT) on a new free port, allowing CONNECT to the
-- given ports only; auth "user password" adds BasicAuth. Returns its port.
function helpers.start_tinyproxy(connect_ports, auth)
    local port = helpers.free_port()
    local dir = helpers.tmpdir("zmqtt-tinyproxy")
    assert(run("chmod 755 " .. quote(dir))) -- it reads its file as nobody when run as root
    local conf = { "Port " .. port, "Listen " .. HOST, "Timeout 30", "MaxClients 16",
                   "Allow " .. HOST }
    for _, p in ipairs(connect_ports) do conf[#conf + 1] = "ConnectPort " .. p end
    if auth then conf[#conf + 1] = "BasicAuth " .. auth end
    if is_root() then conf[#conf + 1] = "User nobody\nGroup nogroup" end
    write_file(dir .. "/tinyproxy.conf", table.concat(conf, "\n") .. "\n")
    return (start_listening("/usr/bin/tinyproxy -d -c " .. quote(dir .. "/tinyproxy.conf"), port,
                            "tinyproxy", dir))
end

--- microsocks (SOCKS5) on a new free port, with user and password when
-- given. Returns its port.
function helpers.start_microsocks(user, password)
    local port = helpers.free_port()
    return (start_listening("/usr/bin/microsocks -i " .. HOST .. " -p " .. port ..
        (user and (" -u " .. quote(user) .. " -P " .. quote(password)) or ""), port, "microsocks"))
end

-- A list of objects with a close() method: set:new(...) makes one with
-- make(...) and remembers it, set:add(x) remembers x, set:close_all() closes
-- them newest first and forgets them. All return what they were given or made.
local CloseSet = {}
CloseSet.__index = CloseSet

local function close_set(make)
    return setmetatable({ make = make }, CloseSet)
end

function CloseSet:new(...)
    return self:add(self.make(...))
end

function CloseSet:add(x)
    self[#self + 1] = x
    return x
end

function CloseSet:close_all()
    for i = #self, 1, -1 do
        self[i]:close()
        self[i] = nil
    end
end

--- A set of mqtt clients that close together. set:new(id, clean, opts) returns
-- mqtt.Client(id or helpers.unique(prefix), clean, opts or defaults) and
-- remembers it; set:add(c) remembers a client made otherwise and returns it;
-- set:close_all() closes every remembered client, newest first, and forgets
-- them. prefix defaults to "zc". Close them after each test with
-- helpers.close_after_each(set) (helpers.with_broker does it for its set).
function helpers.clients(prefix, defaults)
    prefix = prefix or "zc"
    return close_set(function(id, clean, opts)
        return mqtt_module().Client(id or helpers.unique(prefix), clean, opts or defaults)
    end)
end

--- A set of fake brokers (spec/fake_broker.lua) that close together:
-- set:new(opts) returns FakeBroker.new(opts or defaults) and remembers it;
-- set:add and set:close_all as for helpers.clients.
function helpers.fake_brokers(defaults)
    return close_set(function(opts)
        return require("fake_broker").new(opts or defaults)
    end)
end

--- Call while declaring a describe block: registers an after_each there that
-- runs close_all() on each given set (helpers.clients, helpers.fake_brokers),
-- in the order given.
function helpers.close_after_each(...)
    local sets = { ... }
    busted_api().after_each(function()
        for _, set in ipairs(sets) do
            set:close_all()
        end
    end)
end

--- Call while declaring a describe block: its tests get a private mosquitto
-- and a set of clients closed after each test. Registers there
--   setup:      helpers.start_broker(broker_opts) (broker_opts optional)
--   after_each: clients:close_all()
--   teardown:   clients:close_all(), then helpers.stop_all() (every broker and
--               mosquitto_sub this spec file started)
-- and returns broker, clients. `broker` is the table setup fills in with the
-- broker (port, log_file, stop, restart, ...): empty while the describe block
-- is declared, so use it only inside tests (it) and hooks. `clients` is
-- helpers.clients(client_prefix, client_defaults).
function helpers.with_broker(broker_opts, client_prefix, client_defaults)
    local api = busted_api()
    local broker = {}
    local clients = helpers.clients(client_prefix, client_defaults)
    api.setup(function()
        helpers.start_broker(broker_opts, broker)
    end)
    api.teardown(function()
        clients:close_all()
        helpers.stop_all()
    end)
    helpers.close_after_each(clients)
    return broker, clients
end

--- Subscribes client c (c:subscribe(topics, qos)) and dispatches until the
-- SUBACK of that subscription arrives, within `timeout` seconds (default 5); a
-- missing SUBACK fails the test. The SUBACK is taken by a specific callback at
-- priority 1e9 (ahead of any the test registered), removed afterwards.
-- Returns the SUBACK data and the mid.
function helpers.subscribe_wait(c, topics, qos, timeout)
    local mqtt = mqtt_module()
    local mid = c:subscribe(topics, qos)
    local ack
    local function on_ack(_, d)
        ack = d
    end
    c:on(mqtt.SUBACK, on_ack, function(d) return d.mid == mid end, 1e9)
    local acked = helpers.wait_dispatch(function() return ack ~= nil end, timeout)
    c:off(mqtt.SUBACK, on_ack)
    local what = type(topics) == "string" and (" for " .. topics) or ""
    require("luassert").is_true(acked, "no SUBACK" .. what)
    return ack, mid
end

--- A client connected to a fake broker: a new client of the set `client_set`
-- (clean session `clean`, options `opts`), a new broker of `broker_set`,
-- connect_async with the connect options `connect` (keepalive 30 unless
-- given), the broker's handshake, and the client connected. Returns the
-- client, the broker and the client's recorded events (helpers.record_events).
function helpers.fake_connected(client_set, broker_set, clean, opts, connect)
    local fb = broker_set:new()
    local c = client_set:new(nil, clean, opts)
    local rec = helpers.record_events(c)
    local args = { host = HOST, port = fb.port, keepalive = 30 }
    for k, v in pairs(connect or {}) do args[k] = v end
    c:connect_async(args)
    fb:handshake()
    require("luassert").is_true(helpers.wait_dispatch(function() return c:is_connected() end))
    return c, fb, rec
end

--- Records the events of client c (callbacks it registers now) in a table it
-- returns: connacks and disconnects (the event data, in order), messages
-- (every delivered MQTTMessage; QoS 2 ones at PUBREL) and arrivals (the mids
-- of PUBLISH events without a message: QoS 2 before its PUBREL).
function helpers.record_events(c)
    local mqtt = mqtt_module()
    local rec = { connacks = {}, disconnects = {}, messages = {}, arrivals = {} }
    c:on(mqtt.CONNACK, function(_, d) rec.connacks[#rec.connacks + 1] = d end)
    c:on(mqtt.DISCONNECT, function(_, d) rec.disconnects[#rec.disconnects + 1] = d end)
    c:on(mqtt.PUBLISH, function(_, d)
        if d.message then
            rec.messages[#rec.messages + 1] = d.message
        else
            rec.arrivals[#rec.arrivals + 1] = d.mid
        end
    end)
    c:on(mqtt.PUBREL, function(_, d) rec.messages[#rec.messages + 1] = d.message end)
    return rec
end

--- Makes client c collect every message delivered to it: c:loop(on_message)
-- appending data.message to a list. Returns the list.
function helpers.collect(c)
    local got = {}
    c:loop(function(_, d)
        got[#got + 1] = d.message
    end)
    return got
end

--- A watcher: helpers.collect(c), then helpers.subscribe_wait(c, topics, qos).
-- Returns the list of messages and the SUBACK data.
function helpers.watch(c, topics, qos)
    local got = helpers.collect(c)
    return got, (helpers.subscribe_wait(c, topics, qos))
end

local finalizers = {}
helpers._finalizers = finalizers

---------------------------------------------------------------------------
-- Never leave a process behind: stop everything when busted exits, and when
-- this Lua state closes (os.exit(code, true) runs finalizers).
---------------------------------------------------------------------------

--- Runs fn when busted exits and when this Lua state closes.
function helpers.at_exit(fn)
    local ok_busted, busted = pcall(require, "busted")
    if ok_busted and type(busted) == "table" and type(busted.subscribe) == "function" then
        busted.subscribe({ "exit" }, function()
            fn()
            return nil, true
        end)
    end
    finalizers[#finalizers + 1] = compat.finalizer(fn)
end

helpers.at_exit(helpers.stop_all)

return helpers
