--- zmqtt: an MQTT 3.1.1 client with a C core and the Zerynth-style API.
-- This half owns what Lua does best: argument checking with clear errors,
-- the error values, MQTTMessage, and the priority-ordered dispatcher that
-- runs conditions and callbacks in the thread that owns the Lua state.
--
-- The background I/O thread never calls Lua: callbacks run when the
-- application dispatches (`Client:dispatch`, `Client:wait`, `mqtt.dispatch`,
-- `mqtt.sleep`, `mqtt.run`). Misuse raises at once an `MQTTError` named
-- "invalid argument" or "bad state"; runtime failures raise the error kinds
-- below.
-- @module mqtt
-- @usage
-- local mqtt = require("mqtt")
-- local client = mqtt.Client("sensor-1")
-- client:connect("localhost", 60)
-- client:loop(function(c, data) print(data.message.topic, data.message.payload) end)
-- client:subscribe("sensors/#", 1)
-- client:wait(client:publish("sensors/temp", "21.5", 1), 5)
-- mqtt.sleep(2)  -- dispatches the messages that arrive meanwhile
-- client:disconnect()

local core = require("mqtt.core")
local route = require("mqtt.route")

local type, error, pairs, ipairs, setmetatable, tostring, select =
    type, error, pairs, ipairs, setmetatable, tostring, select
local math_floor, string_format = math.floor, string.format
-- Lua 5.1, 5.2 and LuaJIT have only floats: an integral float is the integer.
local tointeger = math.tointeger or function(v) return v end -- luacheck: ignore 143

local mqtt = { _VERSION = "0.2.0" }

--- Packet types.
-- The MQTT packet-type values, the `command` of `Client:on` and `Client:off`.
-- CONNACK and DISCONNECT are extensions. What each callback's `data` holds is
-- listed with each constant and under `data`.
-- @section constants

--- 0x20, extension: after every connect and reconnect, successful or not;
-- `data.session_present`, `data.return_code` (0: accepted; -1: no CONNACK
-- came) and, when it failed, `data.error`.
mqtt.CONNACK = 0x20
--- 0x30: a message arrived; `data.message` at QoS 0 and 1, only `data.mid` at
-- QoS 2 (its message is delivered once, with PUBREL).
mqtt.PUBLISH = 0x30
--- 0x40: a QoS 1 publish was acknowledged; `data.mid`. A QoS 2 publish that
-- the broker acknowledged with PUBACK (it took it as QoS 1: delivered at least
-- once) completes here too, with `data.downgraded = true`.
mqtt.PUBACK = 0x40
--- 0x50: the broker received a QoS 2 publish; `data.mid`.
mqtt.PUBREC = 0x50
--- 0x60: a QoS 2 message is released, exactly once; `data.message`, `data.mid`.
mqtt.PUBREL = 0x60
--- 0x70: a QoS 2 publish is complete; `data.mid`.
mqtt.PUBCOMP = 0x70
--- 0x90: a subscription was answered; `data.mid`, `data.granted_qos`.
mqtt.SUBACK = 0x90
--- 0xB0: an unsubscription was answered; `data.mid`.
mqtt.UNSUBACK = 0xB0
--- 0xC0: the ping the client sends; a broker never sends one.
mqtt.PINGREQ = 0xC0
--- 0xD0: the broker answered a keepalive ping.
mqtt.PINGRESP = 0xD0
--- 0xE0, extension: the connection was lost or closed; `data.error` when it
-- was not asked for.
mqtt.DISCONNECT = 0xE0

--- The `data` table a callback receives (`fn(client, data)`); which fields
-- are set depends on the command (see each constant).
-- @field return_code 0 for compatibility; for CONNACK the broker's return code
-- @field message an `MQTTMessage` (PUBLISH at QoS 0 and 1, PUBREL)
-- @field mid the packet's message id (acknowledgements, PUBLISH at QoS 2, PUBREL)
-- @field granted_qos SUBACK: a list, one entry per requested filter; 0x80 means refused
-- @field session_present CONNACK: whether the broker kept a session
-- @field downgraded PUBACK: true when it completes a QoS 2 publish the broker took as QoS 1
-- @field error CONNACK and DISCONNECT: an error value, when the connection failed or was lost
-- @table data

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
-- @section errors

local function error_kind(name, parent)
    local kind = { kind = name, parent = parent }
    kind.__index = kind
    kind.__name = name
    kind.__tostring = function(e)
        local text
        if e.code then
            text = string_format("%s: %s (%s %s)", name, e.message, tostring(e.code), e.name)
        else
            text = string_format("%s: %s", name, e.message)
        end
        -- Raised by a callback: where it was raised.
        if e.traceback then text = text .. "\n" .. e.traceback end
        return text
    end
    return kind
end

--- The kind of every error this module raises; the other kinds are under it.
-- Names of its own errors: "invalid argument", "bad state", "out of memory", "queue full",
-- "system error".
mqtt.MQTTError = error_kind("MQTTError")
--- Connection failures, an `MQTTError`.
-- Names: "connection refused" (then `name` is the refusal's, such as "not
-- authorized", and `code` its return code), "name resolution failed", "connect
-- failed", "timeout", "i/o error", "connection closed", "keepalive timeout",
-- "not connected", "cancelled", "tls error".
mqtt.MQTTConnectionError = error_kind("MQTTConnectionError", mqtt.MQTTError)
--- The broker broke the protocol, an `MQTTError`.
-- Names: "malformed packet", "protocol error", "packet too large" (over
-- `maximum_packet_size`).
mqtt.MQTTProtocolError = error_kind("MQTTProtocolError", mqtt.MQTTError)

--- An error value, as raised with `error()`; `tostring(err)` reads
-- "MQTTConnectionError: message (5 not authorized)".
-- @field kind "MQTTError", "MQTTConnectionError" or "MQTTProtocolError"
-- @field name a stable short name to branch on, e.g. "timeout"
-- @field code for a refused connection, the CONNACK return code (1 to 5); else nil
-- @field message readable text
-- @field traceback raised by a callback or condition: where (`debug.traceback`)
-- @table error

--- Tests the kind of an error.
-- @param err any value, e.g. what `pcall` returned
-- @param[opt=mqtt.MQTTError] kind an error kind
-- @treturn boolean true when `err` is an error of `kind` or of a kind under it
-- @usage local ok, err = pcall(client.connect, client, "localhost", 60)
-- if not ok and mqtt.is_error(err, mqtt.MQTTConnectionError) then print(err.name) end
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
local PROTOCOL_NAMES = {
    ["malformed packet"] = true, ["protocol error"] = true, ["packet too large"] = true,
}
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
-- @section message

--- An incoming message, `data.message` in PUBLISH and PUBREL callbacks.
-- Messages share this metatable, `mqtt.MQTTMessage`, so `tostring(msg)` reads well.
-- @field topic string
-- @field payload string, binary-safe; `""` for an empty payload
-- @field qos 0, 1 or 2
-- @field retain boolean: true when the broker delivered it as a retained message
-- @field mid integer message id; 0 for QoS 0
-- @field dup boolean, extension: the DUP flag (the broker may have sent it before)
-- @table MQTTMessage
local MQTTMessage = { __name = "MQTTMessage" }
MQTTMessage.__index = MQTTMessage
MQTTMessage.__tostring = function(m)
    local p = m.payload
    if #p > 64 then p = p:sub(1, 61) .. "..." end
    return string_format("MQTTMessage(topic=%q, payload=%q, qos=%d, retain=%s, mid=%d%s)",
        m.topic, p, m.qos, tostring(m.retain), m.mid, m.dup and ", dup=true" or "")
end
mqtt.MQTTMessage = MQTTMessage
core.init(MQTTMessage, new_error)

---------------------------------------------------------------------------
-- Topics (extension): wildcard routing.
-- @section topics

--- Whether a topic name matches a filter, with the wildcards `+` and `#` and
-- MQTT's rule that they do not match topics that start with `$`.
-- @string filter a topic filter, e.g. "sensors/+/temp"
-- @string topic a topic name
-- @treturn boolean
function mqtt.topic_matches(filter, topic)
    if type(filter) ~= "string" then argerror(1, "topic_matches", "filter must be a string") end
    if type(topic) ~= "string" then argerror(2, "topic_matches", "topic must be a string") end
    return core.topic_matches(filter, topic)
end

--- A condition for `Client:on` that matches messages by topic filter.
-- @string filter a topic filter
-- @treturn function `condition(data)`: true for a message whose topic matches
-- @raise MQTTError "invalid argument" for a malformed filter
-- @usage client:on(mqtt.PUBLISH, on_temp, mqtt.topic_filter("sensors/+/temp"))
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
-- Client: mqtt.Client makes one.
-- @section client

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
    c:owned() -- raises "bad state" in a child of fork()
    return c
end

local OPTION_CHECKS = {
    max_inflight = true, max_queued = true, reconnect = true, connect_timeout = true,
    logger = true, disconnect_timeout = true, max_event_bytes = true, maximum_packet_size = true,
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
    o.maximum_packet_size = check_int(options.maximum_packet_size, 3, f, "maximum_packet_size", 2,
        MAX_REMAINING + 5, nil)
    if options.logger ~= nil then
        check_callable(options.logger, 3, f, "logger")
        o.log = true
    end
    return o
end

--- Creates a client.
-- Whatever `clean_session` says, the client never discards its own outgoing
-- QoS 1/2 messages when the connection drops: it resends them, with the DUP
-- flag where the protocol asks for it, after the next successful (re)connect.
-- @string client_id UTF-8, at most 65535 bytes; `""` asks the broker to assign
-- one, which MQTT 3.1.1 allows only with a clean session
-- @bool[opt=true] clean_session false for a persistent session: the broker
-- keeps subscriptions and queued messages across disconnects
-- @tab[opt] options extension, every field optional:
-- @int[opt=20] options.max_inflight outgoing QoS 1/2 messages awaiting
-- acknowledgement; beyond it new ones wait in the queue. 20 is what brokers
-- take unasked (mosquitto's `max_inflight_messages`): past it, mosquitto acks
-- incoming QoS 2 messages and drops them, which MQTT 3.1.1 cannot report
-- @param[opt=100000] options.max_queued messages held while offline or over the
-- in-flight window, or `{messages = n, bytes = n}` (bytes default 256 MiB);
-- when full, `publish` raises "queue full" instead of dropping silently. The
-- bytes also bound what the client owes a broker that stops reading (acks):
-- past them the client stops reading too
-- @param[opt={min=1; max=30}] options.reconnect `false`, or `{min = seconds,
-- max = seconds}` for exponential back-off with jitter
-- @number[opt=10] options.connect_timeout seconds, name resolution included
-- @number[opt=5] options.disconnect_timeout seconds `disconnect` spends flushing
-- @int[opt=64 MiB] options.max_event_bytes received data held for the
-- application (events not yet dispatched, QoS 2 messages awaiting PUBREL)
-- before the client stops reading from the socket
-- @int[opt=268435460] options.maximum_packet_size the largest packet accepted
-- from the broker, fixed header included; a larger one ends the connection
-- with an `MQTTProtocolError` "packet too large"
-- @func[opt] options.logger `logger(level, text)`, level "debug", "info",
-- "warning" or "error"; called while dispatching
-- @treturn Client
-- @raise MQTTError "invalid argument" naming the bad argument or option
-- @usage local client = mqtt.Client("sensor-1", true, {reconnect = {min = 1, max = 60}})
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

--- A client, made by `mqtt.Client`. Once `close` has run, every method but
-- `close`, `is_connected` and `state` raises an `MQTTError` "bad state".
-- @type Client

function Client:__tostring()
    local c = self._core
    local state = "closed"
    if c then
        local owner = c:foreign()
        state = owner and ("belongs to process " .. owner) or c:state()
    end
    return string_format("mqtt.Client(%q, %s)", self.client_id, state)
end

--- Sets a callback for a packet type received from the broker.
-- A callback with a condition is specific: for each packet of that type the
-- specific callbacks are considered from highest to lowest `priority` (equal
-- priorities: the one registered first wins), and the first whose condition
-- returns a true value is the only one that runs. A callback without a
-- condition is generic: at most one per command (setting another replaces
-- it), run only when no specific callback's condition matched.
--
-- Extension: a string condition on PUBLISH or PUBREL is a topic filter
-- (wildcards as in `topic_matches`), true for a message whose topic it
-- matches. The library matches it through a filter tree, so routing a
-- message costs the same with one or thousands of filter callbacks; it takes
-- its place in the order above like any condition.
-- A callback added while a packet is being dispatched (from a callback or a
-- condition) applies from the next packet on; one removed is not run again.
-- @int command a packet type, e.g. `mqtt.PUBLISH` (see Constants)
-- @func fn `fn(client, data)`, with `data` as described under `data`
-- @param[opt] condition `condition(data)`, true or false; or a topic filter
-- string (PUBLISH and PUBREL)
-- @number[opt=0] priority
-- @raise MQTTError "invalid argument" for an unknown command, a non-callable
-- fn, a malformed filter or a filter on another command
-- @usage local mid = client:publish("jobs/1", "start", 1)
-- client:on(mqtt.PUBACK, on_acked, function(d) return d.mid == mid end)
-- client:on(mqtt.PUBLISH, on_temperature, "sensors/+/temp")
function Client:on(command, fn, condition, priority)
    local c = core_of(self, "on")
    if not COMMANDS[command] then argerror(1, "on", "unknown command " .. tostring(command)) end
    check_callable(fn, 2, "on", "callback")
    if type(condition) == "string" then
        if command ~= mqtt.PUBLISH and command ~= mqtt.PUBREL then
            argerror(3, "on", "a topic filter condition needs PUBLISH or PUBREL, not "
                .. COMMANDS[command])
        end
        local ok, why = core.check_topic(condition, true)
        if not ok then argerror(3, "on", "topic filter: " .. why) end
    else
        check_callable(condition, 3, "on", "condition", true)
    end
    if priority == nil then priority = 0 end
    if type(priority) ~= "number" then argerror(4, "on", "priority must be a number") end
    if priority ~= priority then argerror(4, "on", "priority must not be NaN") end
    if command == mqtt.PINGRESP then c:want_pingresp(true) end
    if not condition then
        self._generic[command] = fn
        return
    end
    local r = self._specific[command]
    if not r then
        r = route.new()
        self._specific[command] = r
    end
    self._seq = self._seq + 1
    route.add(r, fn, condition, priority, self._seq)
end

--- Removes a callback (extension): every specific registration of `fn` for
-- `command`, filter ones included, and the generic one if it is `fn`.
-- @int command a packet type
-- @func fn the callback given to `on`
function Client:off(command, fn)
    core_of(self, "off")
    if not COMMANDS[command] then argerror(1, "off", "unknown command " .. tostring(command)) end
    if self._generic[command] == fn then self._generic[command] = nil end
    local r = self._specific[command]
    if r then route.remove(r, fn) end
end

--- Sets the will: the message the broker publishes when the connection is lost
-- without DISCONNECT. Takes effect at the next connect or reconnect.
-- @string topic a topic name (no wildcards)
-- @tparam[opt] string payload at most 65535 bytes; nil for an empty payload
-- @int[opt=0] qos 0, 1 or 2
-- @bool[opt=false] retain
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

--- Sets the credentials. They take effect at the next connect or reconnect, so
-- a `breconnect_cb` can refresh an expiring token.
-- @string username UTF-8, at most 65535 bytes
-- @tparam[opt] string password at most 65535 bytes
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

--- Connects to a broker; returns when the CONNACK has been accepted.
-- Extension: the same arguments may be given as one table,
-- `client:connect{host = "h", keepalive = 60, port = 8883, ssl_ctx = ctx}`.
-- @string host a name or an IPv4/IPv6 address
-- @int keepalive seconds: when nothing is sent for that long the client sends
-- PINGREQ; when nothing is heard for 1.5 times as long the connection is lost
-- @int[opt=1883] port
-- @param[opt] ssl_ctx a context from `mqtt.ssl_context`: connect with TLS
-- @func[opt] breconnect_cb `breconnect_cb(client)`, before each automatic reconnect
-- @func[opt] aconnect_cb `aconnect_cb(client)`, after each successful connect
-- @tab[opt] sock_keepalive `{count, idle, interval}` for the TCP keepalive options
-- @raise MQTTConnectionError when the connection cannot be made or is refused
-- (`code` and `name` say why, e.g. 5 "not authorized"); MQTTProtocolError for a
-- bad CONNACK
-- @usage client:connect("broker.example", 60, 8883, mqtt.ssl_context{cafile = "ca.pem"})
function Client:connect(...)
    start_connect(self, "connect", false, ...)
end

--- Like `connect`, but returns at once (extension) and connects in the
-- background, so a game frame or an nginx worker never blocks. The outcome
-- arrives as a CONNACK callback: `data.return_code` (0 on success) and, when
-- the connection could not be made at all, `data.error`.
-- @param ... the arguments of `connect`
function Client:connect_async(...)
    start_connect(self, "connect_async", true, ...)
end

--- Reconnects a client that lost its connection, resending its
-- unacknowledged messages. While `loop` is on, lost connections are also
-- re-established automatically, with back-off.
-- @raise MQTTConnectionError as `connect` does
function Client:reconnect()
    local c = core_of(self, "reconnect")
    local ok, name, msg, code = c:reconnect()
    if not ok then raise(name, msg, code) end
    if self._aconnect then self._aconnect(self) end
end

--- Queues a message and returns at once. QoS 1 and 2 messages stay owned by
-- the client until the broker has acknowledged them.
-- @string topic a topic name (no wildcards)
-- @tparam[opt] string payload any bytes, up to 256 MiB; nil for an empty payload
-- @int[opt=0] qos 0, 1 or 2
-- @bool[opt=false] retain
-- @treturn int the message id (QoS 0 included), for conditions and `wait`
-- @raise MQTTError "invalid argument" before anything is sent; "queue full"
-- when `max_queued` is reached
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

--- Subscribes; the SUBACK arrives as a SUBACK callback.
-- @param topics `{{filter1, qos1}, {filter2, qos2}, ...}`, or (extension) one
-- filter string
-- @int[opt=0] qos the QoS when `topics` is one filter
-- @treturn int the SUBSCRIBE packet's message id
-- @usage client:subscribe{{"sensors/#", 1}, {"alerts/+", 2}}
-- client:subscribe("sensors/#", 1)
function Client:subscribe(topics, qos)
    local c = core_of(self, "subscribe")
    local filters, levels = subscription_list("subscribe", topics, qos)
    local mid, name, msg = c:subscribe(filters, levels, false)
    if not mid then raise(name, msg) end
    return mid
end

--- Unsubscribes; the UNSUBACK arrives as an UNSUBACK callback.
-- @param topics a list of filter strings, or one filter
-- @treturn int the UNSUBSCRIBE packet's message id
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

--- Sends DISCONNECT after flushing what is queued (bounded by
-- `disconnect_timeout`), closes the connection and stops the background
-- thread; no automatic reconnect follows.
function Client:disconnect()
    core_of(self, "disconnect"):disconnect()
end

--- Releases everything at once (extension); calling it again does nothing.
-- Garbage collection and Lua 5.4's `<close>` close a client too.
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

--- Whether the client is connected now.
-- @treturn boolean
function Client:is_connected()
    local c = self._core
    return c ~= nil and c:is_connected()
end

--- The connection's state (extension).
-- @treturn string "connected", "connecting", "reconnecting", "disconnecting",
-- "disconnected" or "closed"
function Client:state()
    local c = self._core
    return c and c:state() or "closed"
end

--- A file descriptor that becomes readable when something is queued for
-- dispatch, for event loops (luv, cqueues, nginx, a game engine's poller).
-- @treturn int
function Client:fd()
    return core_of(self, "fd"):fd()
end

--- Counters (extension).
-- @treturn table `queued`, `inflight`, `queued_bytes` (records and what the
-- client still owes the broker), `event_bytes` (held for the application,
-- bounded by `max_event_bytes`), `held_bytes` (of which QoS 2 messages
-- awaiting PUBREL), `reconnects`, `read_pauses`, `downgraded` (QoS 2
-- publishes the broker acknowledged with PUBACK), `connect_failures` (connect
-- attempts that failed, refusals included), `logs_dropped` (log lines dropped
-- while `max_event_bytes` was reached)
function Client:stats()
    return core_of(self, "stats"):stats()
end

local function has_message(data)
    return data.message ~= nil
end

--- Turns on automatic reconnects and, with `on_message`, receives every
-- message: `on_message(client, data)` becomes a generic callback on PUBREL and
-- a specific callback on PUBLISH (condition: the data carries a message;
-- priority -1), so it gets each message of QoS 0, 1 and 2 once. Returns at once.
-- @func[opt] on_message replaces the one a previous `loop` set; without it,
-- that one stays (as in Zerynth's loop)
function Client:loop(on_message)
    local c = core_of(self, "loop")
    check_callable(on_message, 1, "loop", "on_message", true)
    if on_message then
        if self._on_message then
            self:off(mqtt.PUBLISH, self._on_message)
            self:off(mqtt.PUBREL, self._on_message)
        end
        self._on_message = on_message
        self:on(mqtt.PUBLISH, on_message, has_message, -1)
        self:on(mqtt.PUBREL, on_message)
    end
    c:set_auto_reconnect(true)
end

---------------------------------------------------------------------------
-- Dispatch

local LEVELS = { [0] = "debug", "info", "warning", "error" }
local route_first = route.first

-- An error raised by a callback or condition leaves dispatch with where it
-- was raised: appended to a string, as `traceback` on an MQTTError.
local function add_traceback(e)
    if type(e) == "string" then
        if e:find("\nstack traceback:", 1, true) then return e end
        return debug.traceback(e, 2)
    end
    if mqtt.is_error(e) and e.traceback == nil then
        e.traceback = debug.traceback("", 2):sub(2)
    end
    return e
end

-- xpcall with arguments: native on 5.2+ and LuaJIT, through a closure on 5.1.
local XPCALL_ARGS = select(2, xpcall(function(a) return a end, function() end, true)) == true
local function traced_call(fn, a)
    if XPCALL_ARGS then return xpcall(fn, add_traceback, a) end
    return xpcall(function() return fn(a) end, add_traceback)
end

local function run_callbacks(self, command, data)
    local r = self._specific[command]
    if r then
        local e = route_first(r, data, self._seq)
        if e then
            e.fn(self, data)
            return
        end
    end
    local g = self._generic[command]
    if g then g(self, data) end
end

local function special(self, c, command, data)
    if command == EV_BEFORE_RECONNECT then
        local cb = self._breconnect
        local ok, err = true, nil
        if cb then
            self._in_breconnect = true
            ok, err = traced_call(cb, self)
            self._in_breconnect = nil
        end
        -- A callback that closed the client leaves nothing to proceed.
        if self._core then c:proceed() end
        if not ok then error(err, 0) end
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

-- drain, re-raising a callback's error with its traceback.
local function dispatch_once(self)
    local ok, n = traced_call(drain, self)
    if not ok then error(n, 0) end
    return n
end

local function check_timeout(timeout, fname, n)
    if timeout == nil then return 0 end
    if type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout then
        argerror(n or 1, fname, "timeout must be a non-negative number of seconds")
    end
    return timeout
end

--- Runs the callbacks of what is queued for this client (extension), waiting
-- up to `timeout` seconds for something to arrive. An error raised by a
-- callback propagates with its traceback; nothing queued behind it is lost.
-- @number[opt=0] timeout seconds
-- @treturn int how many packets were dispatched
function Client:dispatch(timeout)
    local c = core_of(self, "dispatch")
    timeout = check_timeout(timeout, "dispatch")
    local n = dispatch_once(self)
    if n == 0 and timeout > 0 and core.wait({ c }, timeout) > 0 then
        n = dispatch_once(self)
    end
    return n
end

--- Dispatches this client's callbacks until the packet with this mid is
-- acknowledged (extension): PUBACK for a QoS 1 publish, PUBCOMP for QoS 2,
-- SUBACK, UNSUBACK. Returns at once with `{mid = mid}` when nothing with
-- this mid awaits an acknowledgement (a QoS 0 publish, or one acknowledged
-- before the call). Without a timeout it waits as long as the client keeps
-- (re)connecting. Works inside coroutines.
-- @int mid what `publish`, `subscribe` or `unsubscribe` returned
-- @number[opt] timeout seconds
-- @treturn table the acknowledgement's `data` (`mid`; `granted_qos` for a SUBACK)
-- @treturn[2] nil on timeout, or once the client is disconnected with no reconnect coming
-- @treturn[2] MQTTError an `MQTTConnectionError` named `"timeout"` or `"not connected"`
-- @usage assert(client:wait(client:publish("jobs/1", "start", 2), 5))
function Client:wait(mid, timeout)
    local c = core_of(self, "wait")
    mid = check_int(mid, 1, "wait", "mid", 1, 65535, REQUIRED)
    local deadline = timeout ~= nil and core.monotonic() + check_timeout(timeout, "wait", 2)
    if self._in_breconnect and not deadline then
        -- The reconnect waits for this callback: waiting for it would never end.
        raise("bad state", "wait() without a timeout inside breconnect_cb would wait forever")
    end
    local waiting = self._waiting
    waiting[mid] = false
    while true do
        local pending = c:pending(mid)
        -- Not pending: the ack's event is queued already, or ran before this call.
        dispatch_once(self)
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

--- Running callbacks (extension): the background thread never calls Lua.
-- @section dispatch

local function open_clients()
    local list, cores = {}, {}
    for cl in pairs(clients) do
        -- After fork(), the parent's clients are not this process's to dispatch.
        if cl._core and not cl._core:foreign() then
            list[#list + 1] = cl
            cores[#cores + 1] = cl._core
        end
    end
    return list, cores
end

--- Runs the callbacks of what is queued for every client, waiting up to
-- `timeout` seconds for something to arrive. A game calls it once per frame.
-- @number[opt=0] timeout seconds
-- @treturn int how many packets were dispatched
function mqtt.dispatch(timeout)
    timeout = check_timeout(timeout, "dispatch")
    local list, cores = open_clients()
    local n = 0
    for _, cl in ipairs(list) do n = n + dispatch_once(cl) end
    if n == 0 and timeout > 0 and core.wait(cores, timeout) > 0 then
        for _, cl in ipairs(list) do n = n + dispatch_once(cl) end
    end
    return n
end

--- Sleeps while dispatching: the drop-in for the `sleep()` of a Zerynth main loop.
-- @number seconds
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

--- Dispatches until every client has disconnected.
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

--- Seconds from a monotonic clock (extension), the clock timeouts use.
-- @function monotonic
-- @treturn number
mqtt.monotonic = core.monotonic

--- Sets how many I/O threads serve this process's clients (extension): one
-- by default; clients spread over them. Only before the first client exists
-- (raises MQTTError "bad state" otherwise).
-- @function io_threads
-- @int n from 1 to 16
mqtt.io_threads = core.io_threads

--- What the process's I/O loop is doing (extension).
-- @function io_stats
-- @treturn table `threads` (I/O threads running), `clients` (clients they
-- serve), `wakeups` (times a thread woke up), `services` (client turns)
mqtt.io_stats = core.io_stats

--- A TLS context for `connect`'s `ssl_ctx` (extension of Zerynth's ssl_ctx).
-- Files are read at once: a missing file, a wrong `key_password` or an unknown
-- option raises here, naming it. Contexts are immutable and may be shared.
-- @function ssl_context
-- @tab[opt] opts every field optional:
-- @string[opt] opts.cafile CA certificates (PEM or DER file); without any CA,
-- the system's bundle
-- @string[opt] opts.capath a directory of CA certificates
-- @string[opt] opts.cadata CA certificates as PEM text
-- @string[opt] opts.certfile the client's certificate chain
-- @string[opt] opts.keyfile its private key
-- @string[opt] opts.certdata the client's certificate as PEM text
-- @string[opt] opts.keydata its private key as PEM text
-- @string[opt] opts.key_password for an encrypted private key
-- @string[opt] opts.server_name the name for SNI and verification instead of
-- the host
-- @bool[opt=true] opts.verify check the broker's chain and host name (its DNS
-- names, or its IP addresses when connecting to one); off only when false
-- @tab[opt] opts.alpn protocol names, e.g. `{"mqtt"}`
-- @string[opt="tls1.2"] opts.min_version "tls1.2" or "tls1.3"
-- @string[opt] opts.psk a pre-shared key as hex text (as mosquitto's tools take it)
-- @string[opt] opts.psk_identity
-- @return a context
-- @raise MQTTError "invalid argument" naming the option or file
-- @usage local ctx = mqtt.ssl_context{cafile = "ca.pem", certfile = "me.crt", keyfile = "me.key"}
-- client:connect("broker.example", 60, 8883, ctx)
mqtt.ssl_context = require("mqtt.tls").ssl_context

return mqtt
