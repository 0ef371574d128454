--- mqtt.dispatch: the dispatcher. Turns what the core queued into
-- `MQTTMessage`s and `data` tables, and runs the conditions and callbacks in
-- the thread that owns the Lua state: callbacks set with on/off (kept in
-- dispatch order by mqtt.route), topic-filter conditions, the
-- breconnect/aconnect hooks and the logger; `dispatch`, `wait`, `sleep` and
-- `run` drive it. The per-message path (drain, run_callbacks) touches only
-- locals of this file: no table lookup or closure per message beyond its work.
-- Its public part is re-exported by mqtt (functions) and mqtt.Client
-- (methods), and its doc comments are part of mqtt's reference (config.ld merges).
-- @module mqtt

local core = require("mqtt.core")
local route = require("mqtt.route")
local errors = require("mqtt.errors")
local checks = require("mqtt.checks")

local type, pairs, ipairs, select, setmetatable, tostring, xpcall =
    type, pairs, ipairs, select, setmetatable, tostring, xpcall
local math_max, string_format, debug_traceback = math.max, string.format, debug.traceback
local route_first, core_wait, monotonic = route.first, core.wait, core.monotonic
local argerror, new_error, raise, is_error = errors.argerror, errors.new, errors.raise, errors.is_error
local is_status_error = errors.is_status_error
local check_open, check_callable, check_timeout = checks.open, checks.callable, checks.timeout

local PT, EV = core.packet_types, core.events
local CONNACK, PUBLISH, PUBREL, PINGRESP = PT.CONNACK, PT.PUBLISH, PT.PUBREL, PT.PINGRESP
local EV_BEFORE_RECONNECT, EV_LOG = EV.BEFORE_RECONNECT, EV.LOG

local M = {}

-- The commands of on() and off(), by value: the packet types the core
-- delivers as events, and PINGREQ (Zerynth's list has it; it never arrives).
local COMMANDS = { [PT.PINGREQ] = "PINGREQ" }
for name, v in pairs(EV) do
    if PT[name] then COMMANDS[v] = name end
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
-- @field properties MQTT 5.0: the message's properties (`content_type`,
-- `user_property` as a list of `{name, value}`, `subscription_identifier` as
-- a list, ...); absent when it had none
-- @table MQTTMessage
local MQTTMessage = { __name = "MQTTMessage" }
MQTTMessage.__index = MQTTMessage
MQTTMessage.__tostring = function(m)
    local p = m.payload
    if #p > 64 then p = p:sub(1, 61) .. "..." end
    return string_format("MQTTMessage(topic=%q, payload=%q, qos=%d, retain=%s, mid=%d%s)",
        m.topic, p, m.qos, tostring(m.retain), m.mid, m.dup and ", dup=true" or "")
end
M.MQTTMessage = MQTTMessage
-- Events become tables with this metatable; errors the core raises, values of new_error.
core.init(MQTTMessage, new_error)

---------------------------------------------------------------------------
-- Topics (extension): wildcard routing.
-- @section topics

--- Whether a topic name matches a filter, with the wildcards `+` and `#` and
-- MQTT's rule that they do not match topics that start with `$`.
-- @string filter a topic filter, e.g. "sensors/+/temp"
-- @string topic a topic name
-- @treturn boolean
function M.topic_matches(filter, topic)
    if type(filter) ~= "string" then argerror(1, "topic_matches", "filter must be a string") end
    if type(topic) ~= "string" then argerror(2, "topic_matches", "topic must be a string") end
    return core.topic_matches(filter, topic)
end

--- A condition for `Client:on` that matches messages by topic filter.
-- @string filter a topic filter
-- @treturn function `condition(data)`: true for a message whose topic matches
-- @raise MQTTError "invalid argument" for a malformed filter
-- @usage client:on(mqtt.PUBLISH, on_temp, mqtt.topic_filter("sensors/+/temp"))
function M.topic_filter(filter)
    if type(filter) ~= "string" then argerror(1, "topic_filter", "filter must be a string") end
    checks.filter(filter, 1, "topic_filter", "")
    local matches = core.topic_matches
    return function(data)
        local m = data.message
        return m ~= nil and matches(filter, m.topic)
    end
end

--- The name of an MQTT 5.0 reason code, as `data.reason` gives it: the
-- specification's name in lower case.
-- @int code 0 to 255
-- @int[opt] command the packet type it came in (e.g. `mqtt.SUBACK`: 1 is
-- "granted qos 1"); without it, the first name the code has in any packet
-- @treturn string|nil nil for a code that does not exist (in that packet)
-- @usage mqtt.reason_name(0x87) --> "not authorized"
-- mqtt.reason_name(0, mqtt.DISCONNECT) --> "normal disconnection"
function M.reason_name(code, command)
    code = checks.int(code, 1, "reason_name", "code", 0, 255, checks.REQUIRED)
    if command ~= nil and not core.packet_names[command] then
        argerror(2, "reason_name", "command must be a packet type, e.g. mqtt.SUBACK")
    end
    return core.reason_name(code, command)
end

-- Open clients -----------------------------------------------------------

-- Every open client, weakly, so mqtt.dispatch/run can find them.
local clients = setmetatable({}, { __mode = "k" })

-- Counts a new client among the open ones.
function M.opened(client)
    clients[client] = true
end

-- A closed client is no longer dispatched.
function M.closed(client)
    clients[client] = nil
end

-- Client methods (mqtt.Client takes each as its own) ---------------------

--- A client, made by `mqtt.Client`.
-- @type Client
local Client = {}
M.methods = Client

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
    local c = check_open(self, "on")
    if not COMMANDS[command] then argerror(1, "on", "unknown command " .. tostring(command)) end
    check_callable(fn, 2, "on", "callback")
    if type(condition) == "string" then
        if command ~= PUBLISH and command ~= PUBREL then
            argerror(3, "on", "a topic filter condition needs PUBLISH or PUBREL, not "
                .. COMMANDS[command])
        end
        checks.filter(condition, 3, "on", "topic filter: ")
    else
        check_callable(condition, 3, "on", "condition", true)
    end
    if priority == nil then priority = 0 end
    if type(priority) ~= "number" then argerror(4, "on", "priority must be a number") end
    if priority ~= priority then argerror(4, "on", "priority must not be NaN") end
    if command == PINGRESP then c:want_pingresp(true) end
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
    check_open(self, "off")
    if not COMMANDS[command] then argerror(1, "off", "unknown command " .. tostring(command)) end
    if self._generic[command] == fn then self._generic[command] = nil end
    local r = self._specific[command]
    if r then route.remove(r, fn) end
end

-- Running callbacks ------------------------------------------------------

local LEVELS = { [0] = "debug", "info", "warning", "error" }

-- An error raised by a callback or condition leaves dispatch with where it
-- was raised: appended to a string, as `traceback` on an MQTTError.
local function add_traceback(e)
    if type(e) == "string" then
        if e:find("\nstack traceback:", 1, true) then return e end
        return debug_traceback(e, 2)
    end
    if is_error(e) and e.traceback == nil then
        e.traceback = debug_traceback("", 2):sub(2)
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

-- The events that are not packets, and what CONNACK and DISCONNECT carry
-- beyond `data`; returns true when the event was handled here alone.
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
    local name = data.error_name
    if name and is_status_error(name) then
        data.error = new_error(name, data.text or name,
            data.error_code or (data.return_code > 0 and data.return_code) or nil)
        local props = data.properties
        if props and props.server_reference then
            data.error.server_reference = props.server_reference
        end
    end
    if command == CONNACK and self._last_connack == false then
        self._last_connack = data -- a blocking connect() with enhanced authentication waits
    end
    if command == CONNACK and data.return_code == 0 and not data.sync and self._aconnect then
        self._aconnect(self)
    end
    data.sync, data.error_name, data.error_code = nil, nil, nil
    data.text = data.error and data.text or nil
    return false
end

-- The acknowledgements that complete a mid, for Client:wait.
local COMPLETES = { [PT.PUBACK] = true, [PT.PUBCOMP] = true, [PT.SUBACK] = true,
    [PT.UNSUBACK] = true }

-- The packets from PUBLISH to PINGRESP go straight to their callbacks. drain
-- tests that range with literals, immediate operands in Lua 5.4's VM (a test
-- against upvalues costs about 4% of the Lua side of a message); here they
-- are checked against the core's values, so they cannot drift from C.
assert(PUBLISH == 0x30 and PINGRESP == 0xD0, "mqtt.core: PUBLISH and PINGRESP moved")

-- An MQTT 5.0 acknowledgement with a code of 0x80 or more refuses the
-- packet; a SUBACK's codes are per filter and never refuse the whole.
local function command_refused(data)
    return (data.reason_code or 0) >= 0x80 and data.reason_codes == nil
end

-- Runs the callbacks of what is queued now; returns how many events ran.
local function drain(self)
    local c = self._core
    if not c then return 0 end
    local n = 0
    local waiting = self._waiting
    local command, data = c:next_event()
    while command do
        n = n + 1
        -- A PUBLISH never completes a wait: the hot path skips the lookup.
        if command ~= 0x30 and waiting[data.mid] == false and
            (COMPLETES[command] or (data.reason_code or 0) >= 0x80) then
            waiting[data.mid] = data -- an ack, or a refusal (MQTT 5.0 PUBREC too)
        end
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

--- Runs the callbacks of what is queued for this client (extension), waiting
-- up to `timeout` seconds for something to arrive. An error raised by a
-- callback propagates with its traceback; nothing queued behind it is lost.
-- @number[opt=0] timeout seconds
-- @treturn int how many packets were dispatched
function Client:dispatch(timeout)
    local c = check_open(self, "dispatch")
    timeout = check_timeout(timeout, "dispatch")
    local n = dispatch_once(self)
    if n == 0 and timeout > 0 and core_wait({ c }, timeout) > 0 then
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
    local c = check_open(self, "wait")
    mid = checks.int(mid, 1, "wait", "mid", 1, 65535, checks.REQUIRED)
    local deadline = timeout ~= nil and monotonic() + check_timeout(timeout, "wait", 2)
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
            -- The broker refused it (MQTT 5.0): the reason code is the error.
            if got and command_refused(got) then
                return nil, new_error("not allowed", string_format(
                    "the broker refused mid %d: %s (0x%02X)", mid, got.reason, got.reason_code),
                    got.reason_code)
            end
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
            left = deadline - monotonic()
            if left <= 0 then
                waiting[mid] = nil
                return nil, new_error("timeout",
                    string_format("no acknowledgement of mid %d within %g s", mid, timeout))
            end
        end
        core_wait({ c }, left)
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
function M.dispatch(timeout)
    timeout = check_timeout(timeout, "dispatch")
    local list, cores = open_clients()
    local n = 0
    for _, cl in ipairs(list) do n = n + dispatch_once(cl) end
    if n == 0 and timeout > 0 and core_wait(cores, timeout) > 0 then
        for _, cl in ipairs(list) do n = n + dispatch_once(cl) end
    end
    return n
end
local dispatch = M.dispatch

--- Sleeps while dispatching: the drop-in for the `sleep()` of a Zerynth main loop.
-- @number seconds
function M.sleep(seconds)
    if type(seconds) ~= "number" or seconds < 0 then
        argerror(1, "sleep", "seconds must be a non-negative number")
    end
    local deadline = monotonic() + seconds
    repeat
        dispatch(math_max(0, deadline - monotonic()))
    until monotonic() >= deadline
end

local IDLE = { disconnected = true, closed = true }

--- Dispatches until every client has disconnected.
function M.run()
    while true do
        local list = open_clients()
        local active = false
        for _, cl in ipairs(list) do
            if not IDLE[cl._core:state()] then active = true end
        end
        -- Every change that can end the run arrives as an event (or happens
        -- in a callback), so waiting long costs no wake-ups and misses nothing.
        local n = dispatch(active and 60 or 0)
        if not active and n == 0 then return end
    end
end

return M
