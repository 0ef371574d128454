--- mqtt.errors: the error kinds (MQTTError, with MQTTConnectionError and
-- MQTTProtocolError under it) and the error values the module raises.
-- Which kind a status name raises as comes from the C core
-- (`core.status_kinds`, built from MQTT_STATUS_LIST), never from a list here.
-- Holds no state and runs no user code. Its public part is re-exported by
-- mqtt, and its doc comments are part of mqtt's reference (config.ld merges).
-- @module mqtt

local core = require("mqtt.core")

local type, error, setmetatable, getmetatable, tostring = type, error, setmetatable, getmetatable, tostring
local string_format = string.format

local M = {}

--- Errors: MQTTError with MQTTConnectionError and MQTTProtocolError under it.
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
M.MQTTError = error_kind("MQTTError")
--- Connection failures, an `MQTTError`.
-- Names: "connection refused" (then `name` is the refusal's, such as "not
-- authorized", and `code` its return code), "name resolution failed", "connect
-- failed", "timeout", "i/o error", "connection closed", "keepalive timeout",
-- "not connected", "cancelled", "tls error".
M.MQTTConnectionError = error_kind("MQTTConnectionError", M.MQTTError)
--- The broker broke the protocol, an `MQTTError`.
-- Names: "malformed packet", "protocol error", "packet too large" (over
-- `maximum_packet_size`).
M.MQTTProtocolError = error_kind("MQTTProtocolError", M.MQTTError)

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
function M.is_error(err, kind)
    kind = kind or M.MQTTError
    if type(err) ~= "table" then return false end
    local k = getmetatable(err)
    while k do
        if k == kind then return true end
        k = k.parent
    end
    return false
end

-- The kind of each core status name, as the core classifies it; a name the
-- core does not list ("ok", "unknown") is a plain MQTTError.
local KIND_OF = {
    protocol = M.MQTTProtocolError, connection = M.MQTTConnectionError, error = M.MQTTError,
}
local STATUS_KIND = {}
for name, kind in pairs(core.status_kinds) do
    STATUS_KIND[name] = assert(KIND_OF[kind], kind)
end

-- Whether a core status name is an error (every name but "ok").
function M.is_status_error(name)
    return STATUS_KIND[name] ~= nil
end

-- The error value for a core status name; a refused connection's `code`
-- (the CONNACK return code) replaces the name with the refusal's.
function M.new(name, message, code)
    local kind = STATUS_KIND[name] or M.MQTTError
    if name == "connection refused" and code and code >= 0x80 then
        name = core.reason_name(code, 0x20) -- an MQTT 5.0 CONNACK's reason code
    elseif name == "connection refused" and code and code > 0 then
        name = core.connack_name(code)
    elseif name == "not allowed" and code then
        name = core.reason_name(code, 0) -- what the broker would have answered
    elseif not (code and code >= 0x80) then
        code = nil -- only an MQTT 5.0 reason code (a DISCONNECT's) stays, with the status name
    end
    return setmetatable({ name = name, message = message, code = code }, kind)
end

-- Raises the error value for a core status name (`new`).
function M.raise(name, message, code)
    error(M.new(name, message, code), 3)
end

-- Raises "invalid argument" for argument n of fname, in Lua's words.
function M.argerror(n, fname, msg)
    error(M.new("invalid argument", string_format("bad argument #%d to '%s' (%s)", n, fname, msg)), 3)
end

return M
