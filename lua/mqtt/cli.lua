--- mqtt.cli: what bin/zmqtt-pub and bin/zmqtt-sub share: option parsing and
-- help text, the connection options (broker, session, credentials, will,
-- TLS), debug output, and the mapping of every failure to an exit code.
-- It owns no protocol logic: everything goes through the public mqtt API.
-- @module mqtt.cli

local mqtt = require("mqtt")

local M = {}

--- Exit codes, the same for both tools.
M.EXIT = {
    OK = 0,          -- done
    ERROR = 1,       -- connection failed, refused or lost; TLS or file error; not acknowledged
    USAGE = 2,       -- bad options
    TIMEOUT = 3,     -- -W elapsed before the work was done
    INTERRUPTED = 130,
}

M.EXIT_HELP = [[
Exit status:
  0    success
  1    connection failed, was refused (e.g. "not authorized") or was lost;
       TLS setup or file error
  2    bad options (usage printed on stderr)
  3    %s
  130  interrupted (Ctrl-C)
]]

---------------------------------------------------------------------------
-- Failures, carried by error() to run() and turned into exit codes there.

local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return f.message end

--- Raises a usage error: message, usage on stderr, exit 2.
function M.usage_error(fmt, ...)
    error(setmetatable({ message = fmt:format(...), code = M.EXIT.USAGE }, Failure), 0)
end

--- Raises a failure: message on stderr, exit with code (default 1).
function M.fail(code, fmt, ...)
    error(setmetatable({ message = fmt:format(...), code = code or M.EXIT.ERROR }, Failure), 0)
end

-- Raised by parse() at --help: run() prints the help and exits 0.
local Exit = {}

---------------------------------------------------------------------------
-- Options

-- An option: short ("-h") and/or long ("--host") name, key (field of the
-- parsed table), arg (metavariable when it takes a value), check (converts
-- the text or returns nil, reason), list (repeatable: values collect in a
-- list), once (may be given only once), help (text, wrapped to 79 columns;
-- \n forces a break).

-- Lua 5.1 and LuaJIT have only floats: an integral float is the integer.
local tointeger = math.tointeger or function(v) return v end -- luacheck: ignore 143

local function integer(lo, hi)
    return function(s)
        local n = s:match("^%-?%d+$") and tointeger(tonumber(s))
        if not n or n < lo or n > hi then
            return nil, ("must be an integer from %d to %d"):format(lo, hi)
        end
        return n
    end
end

local function positive_seconds(s)
    local n = tonumber(s)
    if not n or n <= 0 or n ~= n or n == math.huge then
        return nil, "must be a positive number of seconds"
    end
    return n
end

local function qos(s)
    if s == "0" or s == "1" or s == "2" then return tonumber(s) end
    return nil, "must be 0, 1 or 2"
end

local function tls_version(s)
    local v = ({ ["tlsv1.2"] = "tls1.2", ["tlsv1.3"] = "tls1.3",
                 ["tls1.2"] = "tls1.2", ["tls1.3"] = "tls1.3" })[s]
    if not v then return nil, "must be tlsv1.2 or tlsv1.3" end
    return v
end

M.check = { integer = integer, positive_seconds = positive_seconds, qos = qos }

--- The options both tools take, in help order; a tool adds its own (with
-- `section`) before or after them.
function M.common_options()
    return {
        { section = "Connection:" },
        { "-h", "--host", key = "host", arg = "HOST",
          help = "broker host name or address (default localhost), or a URI: mqtt://host[:1883], " ..
              "mqtts://host[:8883], ws://host[:80]/path, wss://host[:443]/path, unix:///path" },
        { "-p", "--port", key = "port", arg = "PORT", check = integer(1, 65535),
          help = "broker port of a plain host (default 1883, or 8883 with TLS)" },
        { nil, "--proxy", key = "proxy", arg = "URI",
          help = "connect through a proxy: socks5://[user:pass@]host:port, " ..
              "http://[user:pass@]host:port (CONNECT), or env (all_proxy, https_proxy, " ..
              "http_proxy, no_proxy, as curl reads them)" },
        { "-k", "--keepalive", key = "keepalive", arg = "SECONDS", check = integer(0, 65535),
          help = "keepalive interval (default 60; 0 turns it off)" },
        { "-i", "--id", key = "id", arg = "ID", help = "client id (default zmqtt-pub-PID / zmqtt-sub-PID)" },
        { "-u", "--username", key = "username", arg = "USER", help = "user name" },
        { "-P", "--pw", key = "password", arg = "PASSWORD", help = "password (needs -u)" },
        { nil, "--connect-timeout", key = "connect_timeout", arg = "SECONDS", check = positive_seconds,
          help = "give up connecting after this long (default 10)" },
        { section = "Will (sent by the broker if the connection is lost):" },
        { nil, "--will-topic", key = "will_topic", arg = "TOPIC", help = "topic of the will message" },
        { nil, "--will-payload", key = "will_payload", arg = "TEXT", help = "payload of the will (default empty)" },
        { nil, "--will-qos", key = "will_qos", arg = "QOS", check = qos, help = "QoS of the will (default 0)" },
        { nil, "--will-retain", key = "will_retain", help = "retain the will" },
        { section = "TLS (any of these turns TLS on):" },
        { nil, "--cafile", key = "cafile", arg = "FILE", help = "CA certificates (PEM) that sign the broker's" },
        { nil, "--capath", key = "capath", arg = "DIR", help = "directory of CA certificates" },
        { nil, "--cert", key = "cert", arg = "FILE", help = "client certificate (PEM; needs --key)" },
        { nil, "--key", key = "key", arg = "FILE", help = "client private key (PEM; needs --cert)" },
        { nil, "--key-password", key = "key_password", arg = "TEXT", help = "password of an encrypted --key" },
        { nil, "--tls-server-name", key = "tls_server_name", arg = "NAME",
          help = "name for SNI and certificate verification (default: the host)" },
        { nil, "--tls-version", key = "tls_version", arg = "VERSION", check = tls_version,
          help = "lowest TLS version: tlsv1.2 (default) or tlsv1.3" },
        { nil, "--tls-use-os-certs", key = "tls_os_certs", help = "TLS, trusting the system's CA bundle" },
        { nil, "--insecure", key = "insecure",
          help = "do not verify the broker's certificate or name (testing only)" },
        { nil, "--alpn", key = "alpn", arg = "PROTOCOL", list = true,
          help = "ALPN protocol to offer (repeatable, e.g. --alpn mqtt)" },
        { nil, "--psk", key = "psk", arg = "HEX", help = "TLS pre-shared key, as hex digits (needs --psk-identity)" },
        { nil, "--psk-identity", key = "psk_identity", arg = "ID", help = "identity for --psk" },
        { section = "Other:" },
        { "-d", "--debug", key = "debug", help = "print protocol events and client log on stderr" },
        { nil, "--help", key = "help", help = "print this help and exit" },
    }
end

local function option_name(o)
    if o[1] and o[2] then return o[1] .. "/" .. o[2] end
    return o[1] or o[2]
end

--- Parses argv (a list of strings) against options; returns a table keyed by
-- each option's key. Raises a usage error for an unknown option, a missing or
-- bad value or a stray argument. "--name=value" works for long options.
function M.parse(options, argv)
    local by_name = {}
    for _, o in ipairs(options) do
        if not o.section then
            if o[1] then by_name[o[1]] = o end
            if o[2] then by_name[o[2]] = o end
        end
    end
    local r = {}
    local i = 1
    while i <= #argv do
        local a = argv[i]
        local name, inline = a:match("^(%-%-[^=]+)=(.*)$")
        name = name or a
        local o = by_name[name]
        if not o then
            if a:sub(1, 1) == "-" and a ~= "-" then
                M.usage_error("unknown option '%s'", name)
            end
            M.usage_error("unexpected argument '%s'", a)
        end
        local value = true
        if o.arg then
            if inline then
                value = inline
            else
                i = i + 1
                value = argv[i]
                if value == nil then
                    M.usage_error("option %s needs a value (%s)", name, o.arg)
                end
            end
            if o.check then
                local v, why = o.check(value)
                if v == nil then M.usage_error("%s '%s': %s", name, value, why) end
                value = v
            end
        elseif inline then
            M.usage_error("option %s takes no value", name)
        end
        if o.list then
            r[o.key] = r[o.key] or {}
            table.insert(r[o.key], value)
        elseif o.once and r[o.key] ~= nil then
            M.usage_error("option %s may be given only once", option_name(o))
        else
            r[o.key] = value
        end
        if o.key == "help" then error(Exit, 0) end
        i = i + 1
    end
    return r
end

--- The --help text: the synopsis, the options by section, then `epilogue`.
function M.help_text(prog, synopsis, options, epilogue)
    local out = { synopsis, "" }
    local rows = {}
    for _, o in ipairs(options) do
        if o.section then
            rows[#rows + 1] = { section = o.section }
        else
            local names = o[1] and o[2] and (o[1] .. ", " .. o[2]) or (o[1] and o[1] or "    " .. o[2])
            rows[#rows + 1] = { names .. (o.arg and (" " .. o.arg) or ""), o.help }
        end
    end
    local width = 0
    for _, r in ipairs(rows) do
        if r[1] and #r[1] > width then width = #r[1] end
    end
    for _, r in ipairs(rows) do
        if r.section then
            if #out > 2 then out[#out + 1] = "" end
            out[#out + 1] = r.section
        else
            -- Explicit \n breaks, then words wrapped to 79 columns.
            local lines, room = {}, math.max(30, 79 - width - 4)
            for para in (r[2] .. "\n"):gmatch("(.-)\n") do
                local line = ""
                for word in para:gmatch("%S+") do
                    if line ~= "" and #line + 1 + #word > room then
                        lines[#lines + 1] = line
                        line = word
                    else
                        line = line == "" and word or (line .. " " .. word)
                    end
                end
                lines[#lines + 1] = line
            end
            out[#out + 1] = ("  %-" .. width .. "s  %s"):format(r[1], lines[1])
            for k = 2, #lines do
                out[#out + 1] = (" "):rep(width + 4) .. lines[k]
            end
        end
    end
    out[#out + 1] = ""
    out[#out + 1] = epilogue
    return (table.concat(out, "\n"):gsub("%%PROG", prog))
end

---------------------------------------------------------------------------
-- Running a tool

local function pid()
    local f = io.open("/proc/self/stat", "r")
    local stat = f and f:read("*l")
    if f then f:close() end
    return stat and stat:match("^(%d+)") or tostring(os.time() % 100000)
end

--- The default client id of a tool: "<prefix>-<pid>".
function M.default_id(prefix)
    return prefix .. "-" .. pid()
end

--- Runs main(argv) and exits: with main's return value (default 0), with 0
-- after --help (help printed on stdout), 2 after a usage error (message and
-- synopsis on stderr), 1 (or the failure's code) after a failure or an
-- MQTTError (its text on stderr), 130 when interrupted (SIGINT), after
-- disconnecting tool.client if main set it. `tool` has prog, synopsis and
-- help (a function returning the --help text).
function M.run(tool, main, argv)
    local prog = tool.prog
    -- A closure, as Lua 5.1's xpcall passes no arguments.
    local ok, res = xpcall(function() return main(argv) end, function(e)
        if e == Exit or getmetatable(e) == Failure or mqtt.is_error(e) then return e end
        if type(e) == "string" and e:find("interrupted!", 1, true) then return "interrupted" end
        return debug.traceback(tostring(e), 2)
    end)
    local code
    if ok then
        code = res or M.EXIT.OK
    elseif res == Exit then
        io.stdout:write(tool.help())
        code = M.EXIT.OK
    elseif getmetatable(res) == Failure then
        io.stderr:write(prog, ": ", res.message, "\n")
        if res.code == M.EXIT.USAGE then
            io.stderr:write(tool.synopsis, "\nRun '", prog, " --help' for the options.\n")
        end
        code = res.code
    elseif res == "interrupted" then
        -- Like mosquitto's tools: leave cleanly (DISCONNECT, so no will).
        if tool.client then pcall(tool.client.disconnect, tool.client) end
        code = M.EXIT.INTERRUPTED
    elseif mqtt.is_error(res) then
        io.stderr:write(prog, ": ", tostring(res), "\n")
        code = M.EXIT.ERROR
    else
        io.stderr:write(prog, ": internal error: ", tostring(res), "\n")
        code = M.EXIT.ERROR
    end
    io.stdout:flush()
    -- Closing the Lua state closes every client (and joins its thread).
    os.exit(code, true)
end

--- A debug printer: prints "Client <id> <text>" on stderr when on, else nothing.
function M.debugger(on, id)
    if not on then return function() end end
    return function(fmt, ...)
        io.stderr:write("Client ", id, " ", fmt:format(...), "\n")
        io.stderr:flush()
    end
end

-- mqtt.ssl_context's argument errors, without the "bad argument" wrapping.
local function tls_failure(e)
    local msg = mqtt.is_error(e) and e.message or tostring(e)
    msg = msg:match("^bad argument #1 to 'ssl_context' %((.*)%)$") or msg
    M.fail(M.EXIT.ERROR, "TLS: %s", msg)
end

-- Whether the options ask for TLS.
local function wants_tls(o)
    return o.cafile or o.capath or o.cert or o.key or o.key_password or o.psk or
        o.psk_identity or o.insecure or o.tls_server_name or o.alpn or o.tls_version or
        o.tls_os_certs
end

--- The TLS context the options ask for, or nil when they ask for none.
function M.tls_context(o)
    if not wants_tls(o) then return nil end
    if (o.cert ~= nil) ~= (o.key ~= nil) then
        M.usage_error("--cert and --key go together")
    end
    if (o.psk ~= nil) ~= (o.psk_identity ~= nil) then
        M.usage_error("--psk and --psk-identity go together")
    end
    local t = {
        cafile = o.cafile, capath = o.capath, certfile = o.cert, keyfile = o.key,
        key_password = o.key_password, server_name = o.tls_server_name,
        alpn = o.alpn, min_version = o.tls_version, psk = o.psk, psk_identity = o.psk_identity,
    }
    if o.insecure then t.verify = false end
    local ok, ctx = pcall(mqtt.ssl_context, t)
    if not ok then tls_failure(ctx) end
    return ctx
end

-- Turns an argument error of the mqtt API into a usage error.
local function as_usage(what, ok, e, ...)
    if ok then return e, ... end
    if mqtt.is_error(e) and e.name == "invalid argument" then
        M.usage_error("%s: %s", what, (e.message:gsub("^bad argument #%d+ to '[^']*' %((.*)%)$", "%1")))
    end
    error(e, 0)
end

--- Checks a topic name (publish) or filter (subscribe) before connecting.
function M.check_topic(t, filter, what)
    if t == "" then M.usage_error("%s: a topic must not be empty", what) end
    as_usage(what .. " '" .. t .. "'", pcall(mqtt.topic_filter, t))
    if not filter and t:find("[#+]") then
        M.usage_error("%s '%s': wildcards (+ #) are for subscribing, not publishing", what, t)
    end
end

--- Makes the client from the common options: id (already defaulted), clean
-- session, will and credentials. client_opts go to mqtt.Client; with -d a
-- logger printing through dbg is added. Raises usage errors for bad values.
function M.client(o, clean, client_opts, dbg)
    if o.password and not o.username then
        M.usage_error("-P/--pw needs -u/--username (MQTT 3.1.1 has no password without a user name)")
    end
    if not o.will_topic and (o.will_payload or o.will_qos or o.will_retain) then
        M.usage_error("--will-payload, --will-qos and --will-retain need --will-topic")
    end
    if o.will_topic then M.check_topic(o.will_topic, false, "--will-topic") end
    client_opts.connect_timeout = client_opts.connect_timeout or o.connect_timeout or 10
    if o.debug then
        client_opts.logger = function(level, text) dbg("log (%s): %s", level, text) end
    end
    local c = as_usage("client id", pcall(mqtt.Client, o.id, clean, client_opts))
    if o.will_topic then
        as_usage("will", pcall(c.set_will, c, o.will_topic, o.will_payload or "",
            o.will_qos or 0, o.will_retain or false))
    end
    if o.username then
        as_usage("credentials", pcall(c.set_username_pw, c, o.username, o.password))
    end
    return c
end

--- The connect{} arguments from the common options (TLS context included).
-- A URI host carries its own port and says itself whether it is TLS.
function M.connect_args(o, aconnect_cb)
    local scheme = o.host and o.host:match("^(%w+)://")
    if scheme and o.port then
        M.usage_error("-p/--port is for a plain host: put the port in the URI (%s://host:port)", scheme)
    end
    if wants_tls(o) and scheme and scheme ~= "mqtts" and scheme ~= "wss" then
        M.usage_error("TLS options need a TLS URI (mqtts:// or wss://), not %s://", scheme)
    end
    local ctx = M.tls_context(o)
    return {
        host = o.host or "localhost",
        port = (not scheme) and (o.port or (ctx and 8883 or 1883)) or nil,
        keepalive = o.keepalive or 60,
        ssl_ctx = ctx,
        proxy = o.proxy,
        aconnect_cb = aconnect_cb,
    }
end

--- Connects c with connect{} arguments `args`, printing the exchange with
-- -d. Raises the MQTTError of a failed or refused connection; a bad URI or
-- proxy is a usage error.
function M.connect(c, args, dbg)
    if args.port then
        dbg("sending CONNECT to %s port %d%s", args.host, args.port, args.ssl_ctx and " (TLS)" or "")
    else
        dbg("sending CONNECT to %s", args.host)
    end
    -- aconnect_cb runs after every accepted CONNACK (this connect's and each
    -- reconnect's) before anything else sees it: the place to report it.
    local after = args.aconnect_cb
    args.aconnect_cb = function(cl)
        dbg("received CONNACK (0)")
        if after then after(cl) end
    end
    local ok, e = pcall(c.connect, c, args)
    if not ok and mqtt.is_error(e) and e.name == "invalid argument" and
        e.message:find("to 'connect'", 1, true) then
        -- connect's own argument error (a bad URI or proxy), not a callback's
        as_usage(args.proxy and "-h/--host or --proxy" or "-h/--host", false, e)
    end
    if not ok then error(e, 0) end
end

--- Registers debug printers for the acknowledgement and connection events
-- (generic callbacks: a tool's own specific ones take precedence).
function M.debug_events(c, dbg)
    -- Accepted CONNACKs are reported by connect's aconnect_cb; refusals and
    -- failures of reconnect attempts arrive only here.
    c:on(mqtt.CONNACK, function(_, d)
        if d.error then
            dbg("connection failed: %s", tostring(d.error))
        elseif d.return_code ~= 0 then
            dbg("received CONNACK (%d)", d.return_code)
        end
    end)
    c:on(mqtt.DISCONNECT, function(_, d)
        dbg("disconnected%s", d.error and (": " .. tostring(d.error)) or "")
    end)
    c:on(mqtt.PINGRESP, function() dbg("received PINGRESP") end)
    for _, name in ipairs { "PUBACK", "PUBREC", "PUBCOMP", "UNSUBACK" } do
        c:on(mqtt[name], function(_, d) dbg("received %s (Mid: %d)", name, d.mid) end)
    end
end

--- One line describing a message for -d.
function M.describe(m)
    return ("(d%d, q%d, r%d, m%d, '%s', ... (%d bytes))"):format(m.dup and 1 or 0, m.qos,
        m.retain and 1 or 0, m.mid, m.topic, #m.payload)
end

return M
