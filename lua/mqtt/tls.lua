--- mqtt.tls: `mqtt.ssl_context{...}`, the TLS contexts `connect` takes as ssl_ctx.
-- This half checks the options (names, types, hex psk, min_version) and raises
-- the errors of API.md; mqtt.core parses files and keys into an immutable
-- context that any number of clients share. It keeps no state of its own.
-- @module mqtt.tls

local core = require("mqtt.core")
local errors = require("mqtt.errors")

local type, pairs, ipairs, error, setmetatable, tostring =
    type, pairs, ipairs, error, setmetatable, tostring
local string_format = string.format

local M = {}

-- Every option and the type it takes.
local OPTIONS = {
    cafile = "path", capath = "path", cadata = "data",
    certfile = "path", keyfile = "path", certdata = "data", keydata = "data",
    key_password = "data", server_name = "name",
    verify = "boolean", alpn = "list", min_version = "version",
    psk = "hex", psk_identity = "name",
}

local KNOWN = {}
for k in pairs(OPTIONS) do KNOWN[#KNOWN + 1] = k end
table.sort(KNOWN)
KNOWN = table.concat(KNOWN, ", ")

local VERSIONS = { ["tls1.2"] = 2, ["tls1.3"] = 3 }

-- Every error of ssl_context is a plain MQTTError, whatever its name (a file
-- the TLS layer rejects is "tls error" here, not a connection failure).
local function raise(name, message)
    error(setmetatable({ name = name, message = message }, errors.MQTTError), 3)
end

local function argerror(msg)
    errors.argerror(1, "ssl_context", msg)
end

local function unhex(key, s)
    if #s == 0 or #s % 2 ~= 0 or s:find("[^%x]") then
        argerror(key .. " must be an even number of hex digits (as mosquitto takes it)")
    end
    return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

-- Checks one option; returns the value mqtt.core takes.
local function check(key, kind, v)
    local t = type(v)
    if kind == "boolean" then
        if t ~= "boolean" then argerror(key .. " must be true or false") end
        return v
    elseif kind == "version" then
        if not VERSIONS[v] then argerror("min_version must be 'tls1.2' or 'tls1.3'") end
        return VERSIONS[v]
    elseif kind == "list" then
        if t ~= "table" then argerror(key .. " must be a list of protocol names, e.g. {\"mqtt\"}") end
        local list = {}
        for i, name in ipairs(v) do
            if type(name) ~= "string" or #name == 0 or #name > 255 or name:find("\0", 1, true) then
                argerror(string_format("%s[%d] must be a protocol name of 1 to 255 bytes", key, i))
            end
            list[i] = name
        end
        return list
    end
    if t ~= "string" then argerror(key .. " must be a string") end
    if kind ~= "data" and (v == "" or v:find("\0", 1, true)) then
        argerror(key .. " must be a non-empty string without NUL bytes")
    end
    if kind == "hex" then return unhex(key, v) end
    return v
end

--- ssl_context{cafile=, capath=, cadata=, certfile=, keyfile=, certdata=, keydata=,
-- key_password=, server_name=, verify = true, alpn = {...}, min_version = "tls1.2",
-- psk=, psk_identity=} -> a context for connect's ssl_ctx.
-- Verification of the broker (chain and host name) is on unless verify = false.
-- Files are read now: a missing or unreadable file, a wrong key_password or an
-- unknown option raises here, naming the file or option.
function M.ssl_context(opts)
    if opts == nil then opts = {} end
    if type(opts) ~= "table" then argerror("options must be a table") end
    local o = {}
    for k, v in pairs(opts) do
        local kind = type(k) == "string" and OPTIONS[k]
        if not kind then
            argerror(string_format("unknown option '%s' (known: %s)", tostring(k), KNOWN))
        end
        o[k] = check(k, kind, v)
    end
    local ctx, name, msg = core.ssl_context(o)
    if not ctx then
        raise(name, string_format("bad argument #1 to 'ssl_context' (%s)", msg))
    end
    return ctx
end

--- Whether v is a context made by ssl_context.
M.is_ssl_context = core.is_ssl_context

return M
