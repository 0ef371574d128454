--- mqtt.checks: the argument checks of the public API. Each check returns
-- the value to use (a default filled in, an integral float made an integer)
-- or raises an `MQTTError` "invalid argument" whose message names the
-- argument, in Lua's words ("bad argument #2 to 'publish' (...)").
-- Holds no state and runs no user code. Internal to mqtt.
-- @module mqtt.checks

local core = require("mqtt.core")
local errors = require("mqtt.errors")

local type, pairs, ipairs, select, getmetatable, tostring = type, pairs, ipairs, select, getmetatable, tostring
local math_floor, string_format = math.floor, string.format
-- Lua 5.1, 5.2 and LuaJIT have only floats: an integral float is the integer.
local tointeger = math.tointeger or function(v) return v end -- luacheck: ignore 143
local argerror, new_error = errors.argerror, errors.new
local check_topic_text = core.check_topic

local M = {}

-- Passed as `default`: the argument has none, nil is an error.
local REQUIRED = {}
M.REQUIRED = REQUIRED

-- An integer in [lo, hi], or `default` for nil.
local function int(v, n, fname, what, lo, hi, default)
    if v == nil and default ~= REQUIRED then return default end
    -- v ~= floor(v) also rejects NaN; the range check comes before the
    -- conversion so that 1e300 is "out of range", not a failed conversion.
    if type(v) ~= "number" or v ~= math_floor(v) then
        argerror(n, fname, what .. " must be an integer")
    end
    if v < lo or v > hi then
        argerror(n, fname, string_format("%s must be between %d and %d", what, lo, hi))
    end
    return tointeger(v)
end
M.int = int

-- A QoS, 0 for nil.
local function qos(v, n, fname)
    return int(v, n, fname, "qos", 0, 2, 0)
end
M.qos = qos

-- A function or a callable table; nil too when optional.
local function callable(v, n, fname, what, optional)
    if v == nil and optional then return nil end
    local t = type(v)
    if t == "function" then return v end
    local mt = getmetatable(v)
    if mt and type(mt) == "table" and mt.__call then return v end
    argerror(n, fname, what .. " must be a function")
end
M.callable = callable

-- A string that is a valid topic filter; what is wrong with it follows `prefix`.
local function filter(f, n, fname, prefix)
    local ok, why = check_topic_text(f, true)
    if not ok then argerror(n, fname, prefix .. why) end
    return f
end
M.filter = filter

-- A topic name, or a topic filter when `is_filter`.
local function topic(t, n, fname, is_filter)
    if type(t) ~= "string" then
        argerror(n, fname, (is_filter and "topic filter" or "topic") .. " must be a string")
    end
    local ok, why = check_topic_text(t, is_filter)
    if not ok then argerror(n, fname, why) end
    return t
end
M.topic = topic

-- A string of at most `max` bytes, or nil.
function M.optional_string(v, n, fname, what, max, too_long)
    if v ~= nil and type(v) ~= "string" then
        argerror(n, fname, what .. " must be a string or nil")
    end
    if v and #v > max then argerror(n, fname, too_long) end
    return v
end

-- A boolean, or nil.
function M.optional_boolean(v, n, fname, what)
    if v ~= nil and type(v) ~= "boolean" then
        argerror(n, fname, what .. " must be a boolean")
    end
    return v
end

-- Seconds to wait, 0 for nil.
function M.timeout(timeout, fname, n)
    if timeout == nil then return 0 end
    if type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout then
        argerror(n or 1, fname, "timeout must be a non-negative number of seconds")
    end
    return timeout
end

-- The C client of an open client; a closed one, or one of the parent after
-- fork(), raises "bad state" (calling method fname).
function M.open(self, fname)
    local c = self._core
    if not c then
        error(new_error("bad state",
            string_format("cannot call '%s' on a closed client", fname)), 3)
    end
    c:owned() -- raises "bad state" in a child of fork()
    return c
end

-- mqtt.Client ------------------------------------------------------------

local OPTIONS = {
    max_inflight = true, max_queued = true, reconnect = true, connect_timeout = true,
    logger = true, disconnect_timeout = true, max_event_bytes = true, maximum_packet_size = true,
    protocol = true, topic_alias = true, session_expiry_interval = true, response_topic = true,
    properties = true,
    servers = true, proxy = true, ws_headers = true, follow_redirects = true, store = true,
}
local PROTOCOLS = { [4] = 4, [5] = 5, auto = -1 }
local ALIAS_MODES = { auto = 0, [false] = 1, manual = 2 }
local SYNC_MODES = { always = 0, batch = 1, never = 2 }

-- options.store: a directory, or {path = directory, sync = mode}.
local function store_option(s, o, f)
    local path, sync = s, "always"
    if type(s) == "table" then
        for k in pairs(s) do
            if k ~= "path" and k ~= "sync" then
                argerror(3, f, "unknown store option '" .. tostring(k) .. "'")
            end
        end
        path, sync = s.path, s.sync == nil and "always" or s.sync
    end
    if type(path) ~= "string" or path == "" then
        argerror(3, f, "store must be a directory path or {path = directory, sync = mode}")
    end
    o.store_sync = SYNC_MODES[sync]
    if not o.store_sync then
        argerror(3, f, "store.sync must be \"always\", \"batch\" or \"never\"")
    end
    o.store = path
end

-- The connect options that mqtt.Client's options give defaults for. The C
-- core parses the URIs (and names what is wrong with one) when connecting.
local SERVER_KEYS = { "servers", "proxy", "ws_headers", "follow_redirects" }

local function servers_list(v, n, fname)
    if type(v) ~= "table" or #v == 0 then
        argerror(n, fname, "servers must be a non-empty list of URI strings")
    end
    for k in pairs(v) do
        if type(k) ~= "number" or k ~= math_floor(k) or k < 1 or k > #v then
            argerror(n, fname, "servers must be a list (keys 1 to n), not a map")
        end
    end
    for i, s in ipairs(v) do
        if type(s) ~= "string" or s == "" then
            argerror(n, fname, "servers[" .. i .. "] must be a non-empty URI string")
        end
    end
    return v
end

local function header_table(v, n, fname)
    if type(v) ~= "table" then argerror(n, fname, "ws_headers must be a table of name = value strings") end
    for k, val in pairs(v) do
        if type(k) ~= "string" or type(val) ~= "string" then
            argerror(n, fname, "ws_headers must map header names (strings) to values (strings)")
        end
    end
    return v
end

-- servers, proxy, ws_headers and follow_redirects of t (connect's table, or Client's options),
-- checked; argument n of fname in errors.
local function server_options(t, n, fname)
    local o = {}
    if t.servers ~= nil then o.servers = servers_list(t.servers, n, fname) end
    if t.proxy ~= nil and (type(t.proxy) ~= "string" or t.proxy == "") then
        argerror(n, fname, "proxy must be a URI string (socks5://, http://) or \"env\"")
    end
    o.proxy = t.proxy
    if t.ws_headers ~= nil then o.ws_headers = header_table(t.ws_headers, n, fname) end
    if t.follow_redirects ~= nil and type(t.follow_redirects) ~= "boolean" then
        argerror(n, fname, "follow_redirects must be a boolean")
    end
    o.follow_redirects = t.follow_redirects
    return o
end
local MAX_REMAINING = core.limits.max_remaining

-- The options of mqtt.Client as the core takes them.
local function client_options(options)
    if options == nil then return {} end
    if type(options) ~= "table" then argerror(3, "Client", "options must be a table") end
    for k in pairs(options) do
        if not OPTIONS[k] then
            argerror(3, "Client", "unknown option '" .. tostring(k) .. "'")
        end
    end
    local o = {}
    local f = "Client"
    o.max_inflight = int(options.max_inflight, 3, f, "max_inflight", 1, 65535, nil)
    local q = options.max_queued
    if type(q) == "table" then
        o.max_queued = int(q.messages, 3, f, "max_queued.messages", 1, 2^31, nil)
        o.max_queued_bytes = int(q.bytes, 3, f, "max_queued.bytes", 1, 2^52, nil)
    elseif q ~= nil then
        o.max_queued = int(q, 3, f, "max_queued", 1, 2^31, nil)
    end
    local r = options.reconnect
    if r == false then
        o.reconnect = false
    elseif type(r) == "table" then
        local lo, hi = r.min or 1, r.max or 30
        if type(lo) ~= "number" or type(hi) ~= "number" or lo <= 0 or hi < lo then
            argerror(3, f, "reconnect must be false or {min = seconds, max = seconds} with 0 < min <= max")
        end
        o.reconnect_min, o.reconnect_max = lo, hi
    elseif r ~= nil and r ~= true then
        argerror(3, f, "reconnect must be false or {min = seconds, max = seconds}")
    end
    for _, k in ipairs { "connect_timeout", "disconnect_timeout" } do
        local v = options[k]
        if v ~= nil and (type(v) ~= "number" or v <= 0) then
            argerror(3, f, k .. " must be a positive number of seconds")
        end
        o[k] = v
    end
    o.max_event_bytes = int(options.max_event_bytes, 3, f, "max_event_bytes", 1, 2^52, nil)
    o.maximum_packet_size = int(options.maximum_packet_size, 3, f, "maximum_packet_size", 2,
        MAX_REMAINING + 5, nil)
    if options.logger ~= nil then
        callable(options.logger, 3, f, "logger")
        o.log = true
    end
    if options.protocol ~= nil then
        o.protocol = PROTOCOLS[options.protocol]
        if not o.protocol then
            argerror(3, f, "protocol must be mqtt.MQTTv311 (4), mqtt.MQTTv5 (5) or \"auto\"")
        end
    end
    if options.store ~= nil then store_option(options.store, o, f) end
    if options.topic_alias ~= nil then
        o.topic_alias = ALIAS_MODES[options.topic_alias]
        if not o.topic_alias then
            argerror(3, f, "topic_alias must be \"auto\", \"manual\" or false")
        end
    end
    local rt = options.response_topic
    if rt ~= nil and (type(rt) ~= "string" or not check_topic_text(rt, false)) then
        argerror(3, f, "response_topic must be a topic name (no wildcards)")
    end
    local sei = int(options.session_expiry_interval, 3, f, "session_expiry_interval", 0,
        0xFFFFFFFF, nil)
    local props = options.properties
    if props ~= nil and type(props) ~= "table" then argerror(3, f, "properties must be a table") end
    if (sei or props) and (o.protocol or 4) == 4 then
        argerror(3, f, "properties and session_expiry_interval need protocol = mqtt.MQTTv5 or \"auto\"")
    end
    -- The top-level session_expiry_interval is the CONNECT property's other name.
    if sei then
        local given = props and props.session_expiry_interval
        if given ~= nil and given ~= sei then
            argerror(3, f, "session_expiry_interval differs from properties.session_expiry_interval")
        end
        local t = {}
        for k, v in pairs(props or {}) do t[k] = v end
        t.session_expiry_interval = sei
        props = t
    end
    o.properties = props
    return o
end

-- The arguments of mqtt.Client: clean_session (true for nil), the
-- options as the core takes them, and the defaults for every connect.
function M.client(client_id, clean_session, options)
    if type(client_id) ~= "string" then argerror(1, "Client", "client_id must be a string") end
    if #client_id > 65535 then argerror(1, "Client", "client_id is longer than 65535 bytes") end
    if not core.utf8_valid(client_id) then
        argerror(1, "Client", "client_id must be valid UTF-8 without NUL")
    end
    if clean_session == nil then clean_session = true end
    if type(clean_session) ~= "boolean" then
        argerror(2, "Client", "clean_session must be a boolean")
    end
    local proto = type(options) == "table" and options.protocol or 4
    if client_id == "" and not clean_session and proto == 4 then
        argerror(1, "Client", "an empty client_id needs clean_session = true")
    end
    return clean_session, client_options(options), server_options(options or {}, 3, "Client")
end

-- Client methods ---------------------------------------------------------

local CONNECT_KEYS = { "host", "keepalive", "port", "ssl_ctx", "breconnect_cb", "aconnect_cb",
    "sock_keepalive" }

-- The table form's servers, proxy and ws_headers, over the client's defaults.
local function connect_servers(fname, t, defaults)
    local given = server_options(t, 1, fname)
    if t.host ~= nil and given.servers then
        argerror(1, fname, "give host or servers, not both")
    end
    local o = {}
    for _, k in ipairs(SERVER_KEYS) do
        if given[k] ~= nil then o[k] = given[k] else o[k] = defaults[k] end
    end
    if t.host ~= nil then o.servers = nil end -- the call's host wins over default servers
    return o
end

-- The arguments of connect and connect_async, positional or one table:
-- host, keepalive, port, breconnect_cb, aconnect_cb, sock_keepalive,
-- ssl_ctx, and the table form's servers, proxy and ws_headers (the client's
-- defaults for those not given), returned as one table.
function M.connect(fname, defaults, ...)
    local a = {}
    local srv
    if select("#", ...) == 1 and type((...)) == "table" then
        local t = ...
        for k in pairs(t) do
            local known = false
            for _, key in ipairs(CONNECT_KEYS) do known = known or key == k end
            for _, key in ipairs(SERVER_KEYS) do known = known or key == k end
            if not known then argerror(1, fname, "unknown connect option '" .. tostring(k) .. "'") end
        end
        for i, k in ipairs(CONNECT_KEYS) do a[i] = t[k] end
        srv = connect_servers(fname, t, defaults)
    else
        for i = 1, #CONNECT_KEYS do a[i] = select(i, ...) end
        srv = connect_servers(fname, { host = a[1] }, defaults)
    end
    local host, keepalive, port, ssl_ctx, bcb, acb, ska = a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    if host == nil and not srv.servers then
        argerror(1, fname, "host must be a non-empty string (or give servers)")
    end
    if host ~= nil and (type(host) ~= "string" or host == "") then
        argerror(1, fname, "host must be a non-empty string")
    end
    keepalive = int(keepalive, 2, fname, "keepalive", 0, 65535, REQUIRED)
    port = int(port, 3, fname, "port", 1, 65535, 1883)
    if ssl_ctx ~= nil and not core.is_ssl_context(ssl_ctx) then
        argerror(4, fname, "ssl_ctx must be a context from mqtt.ssl_context")
    end
    callable(bcb, 5, fname, "breconnect_cb", true)
    callable(acb, 6, fname, "aconnect_cb", true)
    if ska ~= nil then
        if type(ska) ~= "table" or #ska ~= 3 then
            argerror(7, fname, "sock_keepalive must be {count, idle, interval}")
        end
        for i = 1, 3 do int(ska[i], 7, fname, "sock_keepalive[" .. i .. "]", 1, 32767, REQUIRED) end
    end
    return host, keepalive, port, bcb, acb, ska, ssl_ctx, srv
end

local SUB_OPTIONS = { qos = true, no_local = true, retain_as_published = true, retain_handling = true }

-- One entry's options for filter f: a QoS (nil: 0), or a table of
-- subscription options. Returns the QoS alone when no MQTT 5.0 option is
-- set (the core then refuses nothing under 3.1.1), else the options as the
-- core reads them. `where` starts each error text.
local function sub_options(o, f, n, fname, where)
    if type(o) ~= "table" then return int(o, n, fname, where .. "qos", 0, 2, 0) end
    for k in pairs(o) do
        if not SUB_OPTIONS[k] then
            argerror(n, fname, string_format("%sunknown subscription option '%s' (known: qos, " ..
                "no_local, retain_as_published, retain_handling)", where, tostring(k)))
        end
    end
    local q = int(o.qos, n, fname, where .. "qos", 0, 2, 0)
    M.optional_boolean(o.no_local, n, fname, where .. "no_local")
    M.optional_boolean(o.retain_as_published, n, fname, where .. "retain_as_published")
    local rh = int(o.retain_handling, n, fname, where .. "retain_handling", 0, 2, 0)
    if o.no_local and core.shared_filter(f) then
        -- MQTT-3.8.3-4: a protocol error the broker would end the connection for.
        argerror(n, fname, where .. "no_local is not allowed on a shared subscription")
    end
    if not o.no_local and not o.retain_as_published and rh == 0 then return q end
    return { qos = q, no_local = o.no_local or false,
        retain_as_published = o.retain_as_published or false, retain_handling = rh }
end

-- The arguments of subscribe: (filter, qos or options, properties) or
-- ({{filter, qos or options}, ...}, properties). Returns the list of
-- filters, the list of their options (sub_options), the properties, the
-- properties' argument number and the options' one.
function M.subscriptions(fname, topics, a, b)
    local filters, levels = {}, {}
    if type(topics) == "string" then
        filters[1] = topic(topics, 1, fname, true)
        levels[1] = sub_options(a, topics, 2, fname, "")
        return filters, levels, b, 3, 2
    end
    if type(topics) ~= "table" then
        argerror(1, fname, "topics must be a filter string or a list of {filter, qos}")
    end
    if #topics == 0 then argerror(1, fname, "the topic list is empty") end
    for i, t in ipairs(topics) do
        if type(t) ~= "table" then argerror(1, fname, "entry " .. i .. " must be {filter, qos}") end
        if type(t[1]) ~= "string" then argerror(1, fname, "entry " .. i .. ": filter must be a string") end
        filters[i] = filter(t[1], 1, fname, "entry " .. i .. ": ")
        levels[i] = sub_options(t[2], t[1], 1, fname, "entry " .. i .. ": ")
    end
    return filters, levels, a, 2, 1
end

-- The topics of unsubscribe: a filter or a list of filters; returns the list.
function M.filters(fname, topics)
    if type(topics) == "string" then topics = { topics } end
    if type(topics) ~= "table" then argerror(1, fname, "topics must be a list of filters") end
    if #topics == 0 then argerror(1, fname, "the topic list is empty") end
    for i, f in ipairs(topics) do
        if type(f) ~= "string" then argerror(1, fname, "entry " .. i .. " must be a string") end
        filter(f, 1, fname, "entry " .. i .. ": ")
    end
    return topics
end

return M
