--- mqtt.client: the Client class that `mqtt.Client` makes: a Lua table
-- around the C client (its `_core`) with the methods of the Zerynth API.
-- It checks each call's arguments (mqtt.checks), hands the call to the core
-- and turns the core's failures into raised errors (mqtt.errors); the
-- callback methods (on, off, dispatch, wait) are the dispatcher's
-- (mqtt.dispatch), taken in here. It never runs user code itself, except
-- aconnect_cb after a connect and reconnect that the caller made.
-- Its public part is re-exported by mqtt, and its doc comments are part of
-- mqtt's reference (config.ld merges).
-- @module mqtt

local core = require("mqtt.core")
local errors = require("mqtt.errors")
local checks = require("mqtt.checks")
local dispatch = require("mqtt.dispatch")

local type, pairs, setmetatable = type, pairs, setmetatable
local string_format = string.format
local argerror, raise = errors.argerror, errors.raise
local check_open, check_qos = checks.open, checks.qos

local PT = core.packet_types
local PUBLISH, PUBREL = PT.PUBLISH, PT.PUBREL
local MAX_PAYLOAD, MAX_REMAINING = core.limits.max_payload, core.limits.max_remaining

local M = {}

---------------------------------------------------------------------------
-- Client: mqtt.Client makes one.
-- @section client

local Client = {}
Client.__index = Client
Client.__name = "mqtt.Client"
M.Client = Client
for name, method in pairs(dispatch.methods) do Client[name] = method end

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
-- @tab[opt] options.servers the default `servers` of every `connect`
-- @string[opt] options.proxy the default `proxy` of every `connect`
-- @tab[opt] options.ws_headers the default `ws_headers` of every `connect`
-- @bool[opt=false] options.follow_redirects the default `follow_redirects` of every `connect`
-- @func[opt] options.logger `logger(level, text)`, level "debug", "info",
-- "warning" or "error"; called while dispatching
-- @param[opt] options.store persistence (extension): a directory, or `{path =
-- directory, sync = "always" | "batch" | "never"}` (default "always"); the
-- outgoing messages until acknowledged, the offline queue and the incoming
-- QoS 2 messages awaiting PUBREL survive a crash (README, Persistence)
-- @treturn Client
-- @raise MQTTError "invalid argument" naming the bad argument or option; a
-- store that cannot be opened (a directory not writable, in use by another
-- client) raises with the reason
-- @usage local client = mqtt.Client("sensor-1", true, {reconnect = {min = 1, max = 60}})
-- @function Client
function M.new(client_id, clean_session, options)
    local o, defaults
    clean_session, o, defaults = checks.client(client_id, clean_session, options)
    local c, name, msg = core.new(client_id, clean_session, o)
    if not c then raise(name, msg) end
    local self = setmetatable({
        _core = c, _specific = {}, _generic = {}, _seq = 0, _waiting = {},
        _logger = options and options.logger, _connect_defaults = defaults,
        _client_id = client_id,
        _protocol_option = options and options.protocol or 4,
        _auth_method = options and options.properties and
            options.properties.authentication_method,
        _response_topic_option = options and options.response_topic,
    }, Client)
    dispatch.opened(self)
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
    return string_format("mqtt.Client(%q, %s)", self._client_id, state)
end

-- Raises what the core refused: "invalid argument" as an argument error of
-- argument argn (the core's words say what), anything else as its error.
local function refused(fname, name, msg, argn)
    if name == "invalid argument" then argerror(argn or 1, fname, msg) end
    raise(name, msg, argn) -- "not allowed": the reason code the broker would have given
end

--- Sets the will: the message the broker publishes when the connection is lost
-- without DISCONNECT. Takes effect at the next connect or reconnect.
-- @string topic a topic name (no wildcards)
-- @tparam[opt] string payload at most 65535 bytes; nil for an empty payload
-- @int[opt=0] qos 0, 1 or 2
-- @bool[opt=false] retain
-- @tab[opt] properties MQTT 5.0: the will's properties (`will_delay_interval`,
-- `payload_format_indicator`, `message_expiry_interval`, `content_type`,
-- `response_topic`, `correlation_data`, `user_property`)
-- @raise MQTTError "invalid argument" naming a bad argument or property;
-- properties under MQTT 3.1.1
function Client:set_will(topic, payload, qos, retain, properties)
    local c = check_open(self, "set_will")
    checks.topic(topic, 1, "set_will")
    checks.optional_string(payload, 2, "set_will", "payload", 65535, "a will payload is at most 65535 bytes")
    qos = check_qos(qos, 3, "set_will")
    checks.optional_boolean(retain, 4, "set_will", "retain")
    local ok, name, msg, argn = c:set_will(topic, payload or "", qos, retain or false, properties)
    if not ok then refused("set_will", name, msg, argn) end
end

--- Sets the credentials. They take effect at the next connect or reconnect, so
-- a `breconnect_cb` can refresh an expiring token.
-- @string username UTF-8, at most 65535 bytes
-- @tparam[opt] string password at most 65535 bytes
function Client:set_username_pw(username, password)
    local c = check_open(self, "set_username_pw")
    if type(username) ~= "string" then argerror(1, "set_username_pw", "username must be a string") end
    if #username > 65535 or not core.utf8_valid(username) then
        argerror(1, "set_username_pw", "username must be valid UTF-8, at most 65535 bytes")
    end
    checks.optional_string(password, 2, "set_username_pw", "password", 65535,
        "password is longer than 65535 bytes")
    local ok, name, msg = c:set_credentials(username, password)
    if not ok then raise(name, msg) end
end

local function start_connect(self, fname, async, ...)
    local c = check_open(self, fname)
    local host, keepalive, port, bcb, acb, ska, ssl_ctx, srv =
        checks.connect(fname, self._connect_defaults, ...)
    self._breconnect, self._aconnect = bcb, acb
    c:set_hook(bcb ~= nil)
    ska = ska or {}
    -- The core checks every URI before anything is sent: a bad one is the
    -- caller's argument error.
    -- With enhanced authentication the AUTH callbacks run inside a blocking
    -- connect(): it connects in the background and dispatches until CONNACK.
    local auth = not async and self._auth_method ~= nil
    local ok, name, msg, code = c:connect(host, port, keepalive, ska[1], ska[2], ska[3],
        async or auth, ssl_ctx, srv.servers, srv.proxy, srv.ws_headers, srv.follow_redirects)
    if not ok and name == "invalid argument" then argerror(1, fname, msg) end
    if not ok then raise(name, msg, code) end
    if auth then
        self._last_connack = false
        while not self._last_connack and self._core do self:dispatch(1) end
        local d = self._last_connack
        self._last_connack = nil
        if d and d.error then error(d.error, 3) end
        return
    end
    if not async and acb then acb(self) end
end

--- Connects to a broker; returns when the CONNACK has been accepted.
-- Extension: the same arguments may be given as one table,
-- `client:connect{host = "h", keepalive = 60, port = 8883, ssl_ctx = ctx}`,
-- which also takes `servers` (a list of URIs or hosts instead of `host`:
-- tried in order, and round robin for reconnects with the back-off per full
-- round), `proxy` (`"socks5://[user:pass@]host:port"`,
-- `"http://[user:pass@]host:port"` or `"env"`) and `ws_headers` (name = value strings for the
-- WebSocket upgrade), and `follow_redirects` (MQTT 5.0: a refusal or
-- DISCONNECT with reason 0x9C/0x9D and a `server_reference` puts that server
-- at the front of the list, tried next). `mqtt.Client`'s options give
-- defaults for these four.
-- @string host a name or an IPv4/IPv6 address, or a URI: `mqtt://host[:1883]`,
-- `mqtts://host[:8883]` (TLS: `ssl_ctx`, else the system CA store),
-- `ws://host[:80]/path`, `wss://host[:443]/path`, `unix:///path`
-- @int keepalive seconds: when nothing is sent for that long the client sends
-- PINGREQ; when nothing is heard for 1.5 times as long the connection is lost
-- @int[opt=1883] port for a plain host name (a URI carries its own)
-- @param[opt] ssl_ctx a context from `mqtt.ssl_context`: TLS for a plain
-- host name, and the context of `mqtts://` and `wss://` URIs
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

--- The server in use (extension): connected, being tried, or the next to
-- try, as the connect call gave it (a URI or a host name).
-- @treturn ?string nil before the first connect
function Client:server()
    return check_open(self, "server"):server()
end

--- Reconnects a client that lost its connection, resending its
-- unacknowledged messages. While `loop` is on, lost connections are also
-- re-established automatically, with back-off.
-- @raise MQTTConnectionError as `connect` does
function Client:reconnect()
    local c = check_open(self, "reconnect")
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
-- @tab[opt] properties MQTT 5.0: the PUBLISH properties
-- (`payload_format_indicator`, `message_expiry_interval`, `topic_alias`,
-- `response_topic`, `correlation_data`, `user_property`, `content_type`),
-- e.g. `{content_type = "application/json", user_property = {{"k", "v"}}}`
-- @treturn int the message id (QoS 0 included), for conditions and `wait`
-- @raise MQTTError "invalid argument" before anything is sent (naming the
-- argument, or the property that is unknown, mistyped, out of range or not
-- allowed in PUBLISH); "queue full" when `max_queued` is reached
function Client:publish(topic, payload, qos, retain, properties)
    -- The checks are written out, not calls of mqtt.checks: this is the
    -- publishing hot path.
    local c = self._core or check_open(self, "publish")
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
    local mid, name, msg, argn = c:publish(topic, payload, qos, retain, properties)
    if not mid then refused("publish", name, msg, argn) end
    return mid
end

--- Subscribes; the SUBACK arrives as a SUBACK callback.
-- Each entry is `{filter, qos}` or, MQTT 5.0, `{filter, {qos = 1, no_local =
-- true, retain_as_published = true, retain_handling = 0|1|2}}` (under 3.1.1
-- only `qos` may be given). A filter may be a shared subscription,
-- `"$share/group/filter"`, under both versions.
-- @param topics `{{filter1, qos1}, {filter2, qos2}, ...}`, or (extension) one
-- filter string: then `subscribe(filter, qos or options, properties)`
-- @tab[opt] properties MQTT 5.0: the SUBSCRIBE properties
-- (`subscription_identifier`, `user_property`)
-- @treturn int the SUBSCRIBE packet's message id
-- @raise MQTTError "invalid argument" naming the entry, option or property
-- @usage client:subscribe{{"sensors/#", 1}, {"alerts/+", 2}}
-- client:subscribe("sensors/#", 1)
-- client:subscribe({{"jobs/+", {qos = 1, no_local = true}}}, {subscription_identifier = 7})
function Client:subscribe(topics, ...)
    local c = check_open(self, "subscribe")
    local filters, levels, props, props_arg, options_arg = checks.subscriptions("subscribe", topics, ...)
    local mid, name, msg, argn = c:subscribe(filters, levels, false, props, props_arg)
    -- The core blames the properties or else the entries (argument 1).
    if not mid then
        if name == "invalid argument" then argn = argn == props_arg and argn or options_arg end
        refused("subscribe", name, msg, argn)
    end
    return mid
end

--- Unsubscribes; the UNSUBACK arrives as an UNSUBACK callback.
-- @param topics a list of filter strings, or one filter
-- @tab[opt] properties MQTT 5.0: the UNSUBSCRIBE properties (`user_property`)
-- @treturn int the UNSUBSCRIBE packet's message id
function Client:unsubscribe(topics, properties)
    local c = check_open(self, "unsubscribe")
    local filters = checks.filters("unsubscribe", topics)
    local mid, name, msg, argn = c:subscribe(filters, nil, true, properties, 2)
    if not mid then refused("unsubscribe", name, msg, argn) end
    return mid
end

--- Sends DISCONNECT after flushing what is queued (bounded by
-- `disconnect_timeout`), closes the connection and stops the background
-- thread; no automatic reconnect follows.
function Client:disconnect(reason_code, properties)
    local c = check_open(self, "disconnect")
    if reason_code ~= nil then
        reason_code = checks.int(reason_code, 1, "disconnect", "reason_code", 0, 255, nil)
    end
    if properties ~= nil and type(properties) ~= "table" then
        argerror(2, "disconnect", "properties must be a table")
    end
    local ok, name, msg, argn = c:disconnect(reason_code, properties)
    if not ok then refused("disconnect", name, msg, argn) end
end

--- Replaces the CONNECT properties (MQTT 5.0) from the next (re)connect on:
-- the whole set; a property left out takes its default again.
-- @tab properties
function Client:set_connect_properties(properties)
    local c = check_open(self, "set_connect_properties")
    if type(properties) ~= "table" then
        argerror(1, "set_connect_properties", "properties must be a table")
    end
    local ok, name, msg = c:set_connect_properties(properties)
    if not ok then refused("set_connect_properties", name, msg, 1) end
    self._auth_method = properties.authentication_method
end

--- Sends AUTH (MQTT 5.0 enhanced authentication): by default 0x18, the
-- answer to the broker's AUTH in an `mqtt.AUTH` callback; 0x19 starts a
-- re-authentication of a live connection.
-- @tab properties `authentication_method`, `authentication_data`, ...
-- @int[opt=0x18] reason_code
function Client:auth(properties, reason_code)
    local c = check_open(self, "auth")
    if properties ~= nil and type(properties) ~= "table" then
        argerror(1, "auth", "properties must be a table")
    end
    reason_code = checks.int(reason_code, 2, "auth", "reason_code", 0, 255, nil)
    local ok, name, msg, argn = c:auth(properties, reason_code)
    if not ok then refused("auth", name, msg, argn) end
end

--- The last CONNACK's properties (MQTT 5.0): what the broker announced;
-- an empty table under 3.1.1 or before the first CONNACK.
-- @treturn table
function Client:server_properties()
    return check_open(self, "server_properties"):server_properties()
end

--- Releases everything at once (extension); calling it again does nothing.
-- Garbage collection and Lua 5.4's `<close>` close a client too.
function Client:close()
    local c = self._core
    if c then
        self._core = nil
        dispatch.closed(self)
        c:close()
    end
end
Client.__gc = Client.close
Client.__close = Client.close

--- The client identifier in use: the one given to `mqtt.Client`, or the one
-- the broker assigned (MQTT 5.0) once a CONNACK carried it.
-- @treturn string
function Client:client_id()
    local c = self._core
    return c and c:client_id() or self._client_id
end

--- The protocol level of the last CONNACK: 4 (MQTT 3.1.1) or 5; nil before
-- the first.
-- @treturn ?int
function Client:protocol()
    local v = check_open(self, "protocol"):protocol()
    return v ~= 0 and v or nil
end

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
    return check_open(self, "fd"):fd()
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
    return check_open(self, "stats"):stats()
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
    local c = check_open(self, "loop")
    checks.callable(on_message, 1, "loop", "on_message", true)
    if on_message then
        if self._on_message then
            self:off(PUBLISH, self._on_message)
            self:off(PUBREL, self._on_message)
        end
        self._on_message = on_message
        self:on(PUBLISH, on_message, has_message, -1)
        self:on(PUBREL, on_message)
    end
    c:set_auto_reconnect(true)
end

require("mqtt.request").install(Client)

return M
