--- zmqtt: an MQTT 3.1.1 client with a C core and the Zerynth-style API.
-- This half owns what Lua does best: argument checking with clear errors,
-- the error values, MQTTMessage, and the priority-ordered dispatcher that
-- runs conditions and callbacks in the thread that owns the Lua state.
-- @module mqtt

local core = require("mqtt.core")

local type, error, pairs, ipairs, setmetatable, tostring, select =
    type, error, pairs, ipairs, setmetatable, tostring, select
local math_floor, string_format = math.floor, string.format
-- Lua 5.1, 5.2 and LuaJIT have only floats: an integral float is the integer.
local tointeger = math.tointeger or function(v) return v end -- luacheck: ignore 143

local mqtt = { _VERSION = "zmqtt 0.1" }

-- Packet types used with on(); CONNACK and DISCONNECT are extensions.
mqtt.CONNACK = 0x20
mqtt.PUBLISH = 0x30
mqtt.PUBACK = 0x40
mqtt.PUBREC = 0x50
mqtt.PUBREL = 0x60
mqtt.PUBCOMP = 0x70
mqtt.SUBACK = 0x90
mqtt.UNSUBACK = 0xB0
mqtt.PINGREQ = 0xC0
mqtt.PINGRESP = 0xD0
mqtt.DISCONNECT = 0xE0

local EV_BEFORE_RECONNECT, EV_LOG = 0x100, 0x101
local MAX_PAYLOAD = 256 * 1024 * 1024
local MAX_REMAINING = 268435455

local COMMANDS = {}
for _, k in ipairs { "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBACK",
    "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT" } do
    COMMANDS[mqtt[k]] = k
end

---------------------------------------------------------------------------
-- Errors: MQTTError with MQTTConnectionError and MQTTProtocolError under it.

local function error_kind(name, parent)
    local kind = { kind = name, parent = parent }
    kind.__index = kind
    kind.__name = name
    kind.__tostring = function(e)
        if e.code then
            return string_format("%s: %s (%s %s)", name, e.message, tostring(e.code), e.name)
        end
        return string_format("%s: %s", name, e.message)
    end
    return kind
end

mqtt.MQTTError = error_kind("MQTTError")
mqtt.MQTTConnectionError = error_kind("MQTTConnectionError", mqtt.MQTTError)
mqtt.MQTTProtocolError = error_kind("MQTTProtocolError", mqtt.MQTTError)

--- True when err is an error of kind (default mqtt.MQTTError) or of a kind under it.
function mqtt.is_error(err, kind)
    kind = kind or mqtt.MQTTError
    if type(err) ~= "table" then return false end
    local k = getmetatable(err)
    while k do
        if k == kind then return true end
        k = k.parent
    end
    return false
end

-- Which kind each core status name belongs to.
local PROTOCOL_NAMES = { ["malformed packet"] = true, ["protocol error"] = true }
local CONNECTION_NAMES = {
    ["connection refused"] = true, ["name resolution failed"] = true, ["connect failed"] = true,
    ["timeout"] = true, ["i/o error"] = true, ["connection closed"] = true,
    ["keepalive timeout"] = true, ["not connected"] = true, ["cancelled"] = true,
    ["tls error"] = true,
}

local function new_error(name, message, code)
    local kind = mqtt.MQTTError
    if PROTOCOL_NAMES[name] then
        kind = mqtt.MQTTProtocolError
    elseif CONNECTION_NAMES[name] then
        kind = mqtt.MQTTConnectionError
    end
    if name == "connection refused" and code and code > 0 then
        name = core.connack_name(code)
    else
        code = nil
    end
    return setmetatable({ name = name, message = message, code = code }, kind)
end

local function raise(name, message, code)
    error(new_error(name, message, code), 3)
end

local function argerror(n, fname, msg)
    local e = new_error("invalid argument",
        string_format("bad argument #%d to '%s' (%s)", n, fname, msg))
    error(e, 3)
end

---------------------------------------------------------------------------
-- MQTTMessage

local MQTTMessage = { __name = "MQTTMessage" }
MQTTMessage.__index = MQTTMessage
MQTTMessage.__tostring = function(m)
    local p = m.payload
    if #p > 64 then p = p:sub(1, 61) .. "..." end
    return string_format("MQTTMessage(topic=%q, payload=%q, qos=%d, retain=%s, mid=%d%s)",
        m.topic, p, m.qos, tostring(m.retain), m.mid, m.dup and ", dup=true" or "")
end
mqtt.MQTTMessage = MQTTMessage
core.init(MQTTMessage)

---------------------------------------------------------------------------
-- Topics

function mqtt.topic_matches(filter, topic)
    if type(filter) ~= "string" then argerror(1, "topic_matches", "filter must be a string") end
    if type(topic) ~= "string" then argerror(2, "topic_matches", "topic must be a string") end
    return core.topic_matches(filter, topic)
end

--- A condition for on(mqtt.PUBLISH, fn, cond) that matches messages by filter.
function mqtt.topic_filter(filter)
    if type(filter) ~= "string" then argerror(1, "topic_filter", "filter must be a string") end
    local ok, why = core.check_topic(filter, true)
    if not ok then argerror(1, "topic_filter", why) end
    local matches = core.topic_matches
    return function(data)
        local m = data.message
        return m ~= nil and matches(filter, m.topic)
    end
end

---------------------------------------------------------------------------
-- Argument checks

local REQUIRED = {}

local function check_int(v, n, fname, what, lo, hi, default)
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

local function check_qos(v, n, fname)
    return check_int(v, n, fname, "qos", 0, 2, 0)
end

local function check_callable(v, n, fname, what, optional)
    if v == nil and optional then return nil end
    local t = type(v)
    if t == "function" then return v end
    local mt = getmetatable(v)
    if mt and type(mt) == "table" and mt.__call then return v end
    argerror(n, fname, what .. " must be a function")
end

local function check_topic(topic, n, fname, filter)
    if type(topic) ~= "string" then
        argerror(n, fname, (filter and "topic filter" or "topic") .. " must be a string")
    end
    local ok, why = core.check_topic(topic, filter)
    if not ok then argerror(n, fname, why) end
    return topic
end

---------------------------------------------------------------------------
-- Client

local Client = {}
Client.__index = Client
Client.__name = "mqtt.Client"
mqtt.Client_class = Client

-- Every open client, weakly, so mqtt.dispatch/run can find them.
local clients = setmetatable({}, { __mode = "k" })

local function core_of(self, fname)
    local c = self._core
    if not c then
        error(new_error("bad state",
            string_format("cannot call '%s' on a closed client", fname)), 3)
    end
    return c
end

local OPTION_CHECKS = {
    max_inflight = true, max_queued = true, reconnect = true, connect_timeout = true,
    logger = true, disconnect_timeout = true, max_event_bytes = true,
}

local function core_options(options)
    if options == nil then return {} end
    if type(options) ~= "table" then argerror(3, "Client", "options must be a table") end
    for k in pairs(options) do
        if not OPTION_CHECKS[k] then
            argerror(3, "Client", "unknown option '" .. tostring(k) .. "'")
        end
    end
    local o = {}
    local f = "Client"
    o.max_inflight = check_int(options.max_inflight, 3, f, "max_inflight", 1, 65535, nil)
    local q = options.max_queued
    if type(q) == "table" then
        o.max_queued = check_int(q.messages, 3, f, "max_queued.messages", 1, 2^31, nil)
        o.max_queued_bytes = check_int(q.bytes, 3, f, "max_queued.bytes", 1, 2^52, nil)
    elseif q ~= nil then
        o.max_queued = check_int(q, 3, f, "max_queued", 1, 2^31, nil)
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
    o.max_event_bytes = check_int(options.max_event_bytes, 3, f, "max_event_bytes", 1, 2^52, nil)
    if options.logger ~= nil then
        check_callable(options.logger, 3, f, "logger")
        o.log = true
    end
    return o
end

--- Creates a client: mqtt.Client(client_id, clean_session = true [, options]).
function mqtt.Client(client_id, clean_session, options)
    if type(client_id) ~= "string" then argerror(1, "Client", "client_id must be a string") end
    if #client_id > 65535 then argerror(1, "Client", "client_id is longer than 65535 bytes") end
    if not core.utf8_valid(client_id) then
        argerror(1, "Client", "client_id must be valid UTF-8 without NUL")
    end
    if clean_session == nil then clean_session = true end
    if type(clean_session) ~= "boolean" then
        argerror(2, "Client", "clean_session must be a boolean")
    end
    if client_id == "" and not clean_session then
        argerror(1, "Client", "an empty client_id needs clean_session = true")
    end
    local o = core_options(options)
    local c, name, msg = core.new(client_id, clean_session, o)
    if not c then raise(name, msg) end
    local self = setmetatable({
        _core = c, _specific = {}, _generic = {}, _seq = 0, _waiting = {},
        _logger = options and options.logger,
        client_id = client_id,
    }, Client)
    clients[self] = true
    return self
end

function Client:__tostring()
    local c = self._core
    return string_format("mqtt.Client(%q, %s)", self.client_id, c and c:state() or "closed")
end

--- on(command, fn, condition = nil, priority = 0)
function Client:on(command, fn, condition, priority)
    local c = core_of(self, "on")
    if not COMMANDS[command] then argerror(1, "on", "unknown command " .. tostring(command)) end
    check_callable(fn, 2, "on", "callback")
    check_callable(condition, 3, "on", "condition", true)
    if priority == nil then priority = 0 end
    if type(priority) ~= "number" then argerror(4, "on", "priority must be a number") end
    if command == mqtt.PINGRESP then c:want_pingresp(true) end
    if not condition then
        self._generic[command] = fn
        return
    end
    self._seq = self._seq + 1
    local entry = { fn = fn, cond = condition, prio = priority, seq = self._seq }
    local list = self._specific[command]
    if not list then
        list = {}
        self._specific[command] = list
    end
    -- Highest priority first; equal priorities keep registration order.
    local i = #list + 1
    while i > 1 and list[i - 1].prio < priority do
        list[i] = list[i - 1]
        i = i - 1
    end
    list[i] = entry
end

--- off(command, fn): removes fn as a specific and as the generic callback.
function Client:off(command, fn)
    core_of(self, "off")
    if not COMMANDS[command] then argerror(1, "off", "unknown command " .. tostring(command)) end
    if self._generic[command] == fn then self._generic[command] = nil end
    local list = self._specific[command]
    if list then
        for i = #list, 1, -1 do
            if list[i].fn == fn then table.remove(list, i) end
        end
    end
end

function Client:set_will(topic, payload, qos, retain)
    local c = core_of(self, "set_will")
    check_topic(topic, 1, "set_will")
    if payload ~= nil and type(payload) ~= "string" then
        argerror(2, "set_will", "payload must be a string or nil")
    end
    if payload and #payload > 65535 then
        argerror(2, "set_will", "a will payload is at most 65535 bytes")
    end
    qos = check_qos(qos, 3, "set_will")
    if retain ~= nil and type(retain) ~= "boolean" then
        argerror(4, "set_will", "retain must be a boolean")
    end
    local ok, name, msg = c:set_will(topic, payload or "", qos, retain or false)
    if not ok then raise(name, msg) end
end

function Client:set_username_pw(username, password)
    local c = core_of(self, "set_username_pw")
    if type(username) ~= "string" then argerror(1, "set_username_pw", "username must be a string") end
    if #username > 65535 or not core.utf8_valid(username) then
        argerror(1, "set_username_pw", "username must be valid UTF-8, at most 65535 bytes")
    end
    if password ~= nil and type(password) ~= "string" then
        argerror(2, "set_username_pw", "password must be a string or nil")
    end
    if password and #password > 65535 then
        argerror(2, "set_username_pw", "password is longer than 65535 bytes")
    end
    local ok, name, msg = c:set_credentials(username, password)
    if not ok then raise(name, msg) end
end

local CONNECT_KEYS = { "host", "keepalive", "port", "ssl_ctx", "breconnect_cb", "aconnect_cb",
    "sock_keepalive" }

local function connect_args(fname, ...)
    local a = {}
    if select("#", ...) == 1 and type((...)) == "table" then
        local t = ...
        for k in pairs(t) do
            local known = false
            for _, key in ipairs(CONNECT_KEYS) do known = known or key == k end
            if not known then argerror(1, fname, "unknown connect option '" .. tostring(k) .. "'") end
        end
        for i, k in ipairs(CONNECT_KEYS) do a[i] = t[k] end
    else
        for i = 1, #CONNECT_KEYS do a[i] = select(i, ...) end
    end
    local host, keepalive, port, ssl_ctx, bcb, acb, ska = a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    if type(host) ~= "string" or host == "" then argerror(1, fname, "host must be a non-empty string") end
    keepalive = check_int(keepalive, 2, fname, "keepalive", 0, 65535, REQUIRED)
    port = check_int(port, 3, fname, "port", 1, 65535, 1883)
    if ssl_ctx ~= nil and not core.is_ssl_context(ssl_ctx) then
        argerror(4, fname, "ssl_ctx must be a context from mqtt.ssl_context")
    end
    check_callable(bcb, 5, fname, "breconnect_cb", true)
    check_callable(acb, 6, fname, "aconnect_cb", true)
    if ska ~= nil then
        if type(ska) ~= "table" or #ska ~= 3 then
            argerror(7, fname, "sock_keepalive must be {count, idle, interval}")
        end
        for i = 1, 3 do check_int(ska[i], 7, fname, "sock_keepalive[" .. i .. "]", 1, 32767, REQUIRED) end
    end
    return host, keepalive, port, bcb, acb, ska, ssl_ctx
end

local function start_connect(self, fname, async, ...)
    local c = core_of(self, fname)
    local host, keepalive, port, bcb, acb, ska, ssl_ctx = connect_args(fname, ...)
    self._breconnect, self._aconnect = bcb, acb
    c:set_hook(bcb ~= nil)
    local ok, name, msg, code
    if ska then
        ok, name, msg, code = c:connect(host, port, keepalive, ska[1], ska[2], ska[3], async, ssl_ctx)
    else
        ok, name, msg, code = c:connect(host, port, keepalive, nil, nil, nil, async, ssl_ctx)
    end
    if not ok then raise(name, msg, code) end
    if not async and acb then acb(self) end
end

--- connect(host, keepalive, port, ssl_ctx, breconnect_cb, aconnect_cb, sock_keepalive) or connect{...}
function Client:connect(...)
    start_connect(self, "connect", false, ...)
end

--- Like connect, but returns at once; the outcome arrives as a CONNACK callback.
function Client:connect_async(...)
    start_connect(self, "connect_async", true, ...)
end

function Client:reconnect()
    local c = core_of(self, "reconnect")
    local ok, name, msg, code = c:reconnect()
    if not ok then raise(name, msg, code) end
    if self._aconnect then self._aconnect(self) end
end

function Client:publish(topic, payload, qos, retain)
    local c = self._core or core_of(self, "publish")
    if type(topic) ~= "string" then argerror(1, "publish", "topic must be a string") end
    if payload ~= nil then
        if type(payload) ~= "string" then argerror(2, "publish", "payload must be a string or nil") end
        if #payload > MAX_PAYLOAD then argerror(2, "publish", "payload is larger than 256 MiB") end
    end
    if qos ~= 0 and qos ~= nil then qos = check_qos(qos, 3, "publish") end
    if retain ~= nil and type(retain) ~= "boolean" then
        argerror(4, "publish", "retain must be a boolean")
    end
    if payload and 2 + #topic + ((qos or 0) > 0 and 2 or 0) + #payload > MAX_REMAINING then
        argerror(2, "publish", "topic and payload do not fit in one MQTT packet (256 MiB)")
    end
    local mid, name, msg = c:publish(topic, payload, qos, retain)
    if not mid then
        if name == "invalid argument" then argerror(1, "publish", msg) end
        raise(name, msg)
    end
    return mid
end

local function subscription_list(fname, topics, qos)
    local filters, levels = {}, {}
    if type(topics) == "string" then
        filters[1] = check_topic(topics, 1, fname, true)
        levels[1] = check_qos(qos, 2, fname)
        return filters, levels
    end
    if type(topics) ~= "table" then
        argerror(1, fname, "topics must be a filter string or a list of {filter, qos}")
    end
    if #topics == 0 then argerror(1, fname, "the topic list is empty") end
    for i, t in ipairs(topics) do
        if type(t) ~= "table" then argerror(1, fname, "entry " .. i .. " must be {filter, qos}") end
        if type(t[1]) ~= "string" then argerror(1, fname, "entry " .. i .. ": filter must be a string") end
        local ok, why = core.check_topic(t[1], true)
        if not ok then argerror(1, fname, "entry " .. i .. ": " .. why) end
        filters[i] = t[1]
        levels[i] = check_qos(t[2], 1, fname)
    end
    return filters, levels
end

--- subscribe({{filter, qos}, ...}) or subscribe(filter, qos) -> mid
function Client:subscribe(topics, qos)
    local c = core_of(self, "subscribe")
    local filters, levels = subscription_list("subscribe", topics, qos)
    local mid, name, msg = c:subscribe(filters, levels, false)
    if not mid then raise(name, msg) end
    return mid
end

--- unsubscribe({filter, ...}) or unsubscribe(filter) -> mid
function Client:unsubscribe(topics)
    local c = core_of(self, "unsubscribe")
    if type(topics) == "string" then topics = { topics } end
    if type(topics) ~= "table" then argerror(1, "unsubscribe", "topics must be a list of filters") end
    if #topics == 0 then argerror(1, "unsubscribe", "the topic list is empty") end
    for i, f in ipairs(topics) do
        if type(f) ~= "string" then argerror(1, "unsubscribe", "entry " .. i .. " must be a string") end
        local ok, why = core.check_topic(f, true)
        if not ok then argerror(1, "unsubscribe", "entry " .. i .. ": " .. why) end
    end
    local mid, name, msg = c:subscribe(topics, nil, true)
    if not mid then raise(name, msg) end
    return mid
end

function Client:disconnect()
    core_of(self, "disconnect"):disconnect()
end

--- Releases everything at once; idempotent.
function Client:close()
    local c = self._core
    if c then
        self._core = nil
        clients[self] = nil
        c:close()
    end
end
Client.__gc = Client.close
Client.__close = Client.close

function Client:is_connected()
    local c = self._core
    return c ~= nil and c:is_connected()
end

--- "connected", "connecting", "reconnecting", "disconnecting", "disconnected" or "closed".
function Client:state()
    local c = self._core
    return c and c:state() or "closed"
end

function Client:fd()
    return core_of(self, "fd"):fd()
end

--- Counters: queued, inflight, queued_bytes, event_bytes, reconnects, read_pauses.
function Client:stats()
    return core_of(self, "stats"):stats()
end

local function has_message(data)
    return data.message ~= nil
end

--- loop(on_message): automatic reconnects on, and on_message for every message.
function Client:loop(on_message)
    local c = core_of(self, "loop")
    check_callable(on_message, 1, "loop", "on_message", true)
    if self._on_message then
        self:off(mqtt.PUBLISH, self._on_message)
        self:off(mqtt.PUBREL, self._on_message)
        self._on_message = nil
    end
    if on_message then
        self._on_message = on_message
        self:on(mqtt.PUBLISH, on_message, has_message, -1)
        self:on(mqtt.PUBREL, on_message)
    end
    c:set_auto_reconnect(true)
end

---------------------------------------------------------------------------
-- Dispatch

local LEVELS = { [0] = "debug", "info", "warning", "error" }

local function run_callbacks(self, command, data)
    local list = self._specific[command]
    if list then
        for i = 1, #list do
            local h = list[i]
            if h.cond(data) then
                h.fn(self, data)
                return
            end
        end
    end
    local g = self._generic[command]
    if g then g(self, data) end
end

local function special(self, c, command, data)
    if command == EV_BEFORE_RECONNECT then
        local cb = self._breconnect
        if cb then
            local ok, err = pcall(cb, self)
            c:proceed()
            if not ok then error(err, 0) end
        else
            c:proceed()
        end
        return true
    elseif command == EV_LOG then
        if self._logger then self._logger(LEVELS[data.level] or "info", data.text) end
        return true
    end
    if data.error_name and data.error_name ~= "ok" then
        data.error = new_error(data.error_name, data.text or data.error_name,
            data.return_code > 0 and data.return_code or nil)
    end
    if command == mqtt.CONNACK and data.return_code == 0 and not data.sync and self._aconnect then
        self._aconnect(self)
    end
    data.sync, data.error_name, data.text = nil, nil, data.error and data.text or nil
    return false
end

-- The acknowledgements that complete a mid, for Client:wait.
local COMPLETES = { [mqtt.PUBACK] = true, [mqtt.PUBCOMP] = true, [mqtt.SUBACK] = true,
    [mqtt.UNSUBACK] = true }

-- Runs the callbacks of what is queued now; returns how many events ran.
local function drain(self)
    local c = self._core
    if not c then return 0 end
    local n = 0
    local waiting = self._waiting
    local command, data = c:next_event()
    while command do
        n = n + 1
        if COMPLETES[command] and waiting[data.mid] == false then waiting[data.mid] = data end
        if command < 0x30 or command > 0xD0 then
            if not special(self, c, command, data) then run_callbacks(self, command, data) end
        else
            run_callbacks(self, command, data)
        end
        if not self._core then break end
        command, data = c:next_event(true)
    end
    return n
end

local function check_timeout(timeout, fname, n)
    if timeout == nil then return 0 end
    if type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout then
        argerror(n or 1, fname, "timeout must be a non-negative number of seconds")
    end
    return timeout
end

--- dispatch([timeout]): runs the callbacks of this client; waits up to timeout for events.
function Client:dispatch(timeout)
    local c = core_of(self, "dispatch")
    timeout = check_timeout(timeout, "dispatch")
    local n = drain(self)
    if n == 0 and timeout > 0 and core.wait({ c }, timeout) > 0 then
        n = drain(self)
    end
    return n
end

--- wait(mid [, timeout]): dispatches this client's events until the packet
-- with this mid is acknowledged: PUBACK for a QoS 1 publish, PUBCOMP for
-- QoS 2, SUBACK, UNSUBACK. Returns that event's data ({mid=, granted_qos=}
-- for a SUBACK). Returns {mid=mid} at once when nothing with this mid awaits
-- an acknowledgement (a QoS 0 publish, or one acknowledged before the call).
-- On timeout, or once the client is disconnected with no reconnect coming:
-- nil and an MQTTConnectionError ("timeout" or "not connected"). Without a
-- timeout it waits as long as the client keeps (re)connecting.
function Client:wait(mid, timeout)
    local c = core_of(self, "wait")
    mid = check_int(mid, 1, "wait", "mid", 1, 65535, REQUIRED)
    local deadline = timeout ~= nil and core.monotonic() + check_timeout(timeout, "wait", 2)
    local waiting = self._waiting
    waiting[mid] = false
    while true do
        local pending = c:pending(mid)
        -- Not pending: the ack's event is queued already, or ran before this call.
        drain(self)
        local got = waiting[mid]
        if got or not pending or not self._core then
            waiting[mid] = nil
            if got or not pending then return got or { mid = mid } end
            return nil, new_error("bad state", "the client was closed while waiting")
        end
        if c:state() == "disconnected" then
            waiting[mid] = nil
            return nil, new_error("not connected",
                string_format("the client disconnected before mid %d was acknowledged", mid))
        end
        local left = 60
        if deadline then
            left = deadline - core.monotonic()
            if left <= 0 then
                waiting[mid] = nil
                return nil, new_error("timeout",
                    string_format("no acknowledgement of mid %d within %g s", mid, timeout))
            end
        end
        core.wait({ c }, left)
    end
end

local function open_clients()
    local list, cores = {}, {}
    for cl in pairs(clients) do
        if cl._core then
            list[#list + 1] = cl
            cores[#cores + 1] = cl._core
        end
    end
    return list, cores
end

--- mqtt.dispatch([timeout]): dispatch for every client.
function mqtt.dispatch(timeout)
    timeout = check_timeout(timeout, "dispatch")
    local list, cores = open_clients()
    local n = 0
    for _, cl in ipairs(list) do n = n + drain(cl) end
    if n == 0 and timeout > 0 and core.wait(cores, timeout) > 0 then
        for _, cl in ipairs(list) do n = n + drain(cl) end
    end
    return n
end

--- mqtt.sleep(seconds): sleeps while dispatching.
function mqtt.sleep(seconds)
    if type(seconds) ~= "number" or seconds < 0 then
        argerror(1, "sleep", "seconds must be a non-negative number")
    end
    local deadline = core.monotonic() + seconds
    repeat
        mqtt.dispatch(math.max(0, deadline - core.monotonic()))
    until core.monotonic() >= deadline
end

local IDLE = { disconnected = true, closed = true }

--- mqtt.run(): dispatches until every client has disconnected.
function mqtt.run()
    while true do
        local list = open_clients()
        local active = false
        for _, cl in ipairs(list) do
            if not IDLE[cl._core:state()] then active = true end
        end
        -- Every change that can end the run arrives as an event (or happens
        -- in a callback), so waiting long costs no wake-ups and misses nothing.
        local n = mqtt.dispatch(active and 60 or 0)
        if not active and n == 0 then return end
    end
end

mqtt.monotonic = core.monotonic
mqtt.ssl_context = require("mqtt.tls").ssl_context

return mqtt
