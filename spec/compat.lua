-- spec/compat.lua: what the specs need from Lua 5.3/5.4 that Lua 5.1, 5.2 and
-- LuaJIT 2.1 spell differently or lack: bit operations and integer division
-- on non-negative integers, integer checks, big-endian u16 and u16-prefixed
-- strings (string.pack ">I2"/">s2"), exit statuses of commands, finalizers,
-- xpcall with arguments, package.searchpath. Native operators where the
-- interpreter has them. Must not: change behaviour on 5.4, or need the mqtt module.

local compat = {}

--- "5.1" .. "5.4" (LuaJIT says "5.1"), whether this is LuaJIT, and the plain
-- interpreter command for this version ("lua5.3", "luajit").
compat.LUA_VERSION = _VERSION:match("%d+%.%d+")
compat.luajit = type(rawget(_G, "jit")) == "table"
compat.LUA = compat.luajit and "luajit" or ("lua" .. compat.LUA_VERSION)

compat.unpack = table.unpack or rawget(_G, "unpack")

local TWO32 = 4294967296

---------------------------------------------------------------------------
-- Bit operations and integer division, for non-negative integers below 2^32
-- (bytes, flags, packet ids, lengths): native on 5.3+, bit32 on 5.2, the
-- LuaJIT bit library, else arithmetic.
---------------------------------------------------------------------------

local native = rawget(math, "type") and load([[
    return {
        band = function(a, b) return a & b end,
        bor = function(a, b) return a | b end,
        bxor = function(a, b) return a ~ b end,
        lshift = function(a, n) return a << n end,
        rshift = function(a, n) return a >> n end,
        idiv = function(a, b) return a // b end,
    }
]])()

if native then
    for k, f in pairs(native) do compat[k] = f end
else
    local bitlib = rawget(_G, "bit32")
    if not bitlib and compat.luajit then
        bitlib = require("bit")
    end
    if bitlib then
        -- LuaJIT's bit answers signed 32-bit numbers: back to unsigned.
        local function u(x) return x < 0 and x + TWO32 or x end
        local band, bor, bxor = bitlib.band, bitlib.bor, bitlib.bxor
        local lshift, rshift = bitlib.lshift, bitlib.rshift
        compat.band = function(a, b) return u(band(a, b)) end
        compat.bor = function(a, b) return u(bor(a, b)) end
        compat.bxor = function(a, b) return u(bxor(a, b)) end
        compat.lshift = function(a, n) return u(lshift(a, n)) end
        compat.rshift = function(a, n) return u(rshift(a, n)) end
    else
        -- Bit by bit: op(x, y) says whether the result bit is set.
        local function bitwise(a, b, op)
            local r, p = 0, 1
            while a > 0 or b > 0 do
                local x, y = a % 2, b % 2
                if op(x, y) then r = r + p end
                a, b, p = (a - x) / 2, (b - y) / 2, p * 2
            end
            return r
        end
        local function f_and(x, y) return x == 1 and y == 1 end
        local function f_or(x, y) return x == 1 or y == 1 end
        local function f_xor(x, y) return x ~= y end
        compat.band = function(a, b) return bitwise(a, b, f_and) end
        compat.bor = function(a, b) return bitwise(a, b, f_or) end
        compat.bxor = function(a, b) return bitwise(a, b, f_xor) end
        compat.lshift = function(a, n) return (a * 2 ^ n) % TWO32 end
        compat.rshift = function(a, n) return math.floor(a / 2 ^ n) end
    end
    compat.idiv = function(a, b) return math.floor(a / b) end
end

---------------------------------------------------------------------------
-- Numbers
---------------------------------------------------------------------------

--- math.type on 5.3+. Elsewhere every number is a double: "integer" for a
-- finite number without a fraction, "float" for any other number (the most
-- that can be asserted there), nil for what is not a number.
function compat.math_type(v)
    if rawget(math, "type") then
        return math.type(v)
    end
    if type(v) ~= "number" then
        return nil
    end
    if v == math.floor(v) and v > -math.huge and v < math.huge then
        return "integer"
    end
    return "float"
end

--- Whether v is an integer (math.type(v) == "integer" on 5.3+; an
-- integer-valued number on 5.1, 5.2 and LuaJIT).
function compat.is_integer(v)
    return compat.math_type(v) == "integer"
end

--- The decimal text of an integer-valued number without ".0" on any version
-- (for commands: tostring(3.0) is "3.0" on 5.3+).
function compat.int_text(n)
    return ("%d"):format(n)
end

---------------------------------------------------------------------------
-- Big-endian u16 and u16-prefixed strings (string.pack ">I2" and ">s2")
---------------------------------------------------------------------------

--- Two bytes, big-endian; raises for what is not an integer 0..65535.
function compat.u16(n)
    if not (compat.is_integer(n) and n >= 0 and n <= 65535) then
        error("u16: " .. tostring(n) .. " is not an integer from 0 to 65535", 2)
    end
    return string.char(compat.idiv(n, 256), n % 256)
end

--- The string with its length as a big-endian u16 in front; raises when it
-- is longer than 65535 bytes.
function compat.str16(s)
    if #s > 65535 then
        error("str16: string of " .. #s .. " bytes does not fit a u16 length", 2)
    end
    return compat.u16(#s) .. s
end

--- The big-endian u16 at s[pos] (default 1); raises when s is too short.
function compat.get_u16(s, pos)
    pos = pos or 1
    local hi, lo = s:byte(pos, pos + 1)
    if not lo then
        error("get_u16: data string too short", 2)
    end
    return hi * 256 + lo
end

---------------------------------------------------------------------------
-- Files and commands
---------------------------------------------------------------------------

--- The rest of an open file ("*a": 5.1 and 5.2 know no "a").
function compat.read_all(f)
    return f:read("*a")
end

--- One line of an open file, without its newline.
function compat.read_line(f)
    return f:read("*l")
end

-- Turns a wait status (what os.execute answers on 5.1 and LuaJIT) into
-- true|nil, "exit"|"signal", code, as 5.2+ answer.
local function from_status(st)
    if st == -1 then
        return nil, "exit", -1
    end
    local sig = st % 128
    if sig ~= 0 then
        return nil, "signal", sig
    end
    local code = math.floor(st / 256) % 256
    return code == 0 or nil, "exit", code
end

--- os.execute with the 5.2+ results on every version: true or nil, "exit" or
-- "signal", and the exit code or signal number.
function compat.execute(cmd)
    local a, b, c = os.execute(cmd)
    if type(a) == "number" then
        return from_status(a)
    end
    return a, b, c
end

local STATUS_MARK = "\1zmqtt-status:"

--- Runs a shell command through io.popen and returns its whole output, then
-- "exit" or "signal" and the code, as p:close() does on 5.2+ (on 5.1 and
-- LuaJIT, where close() tells nothing, the shell appends $? to the output).
function compat.popen_read(cmd)
    if compat.LUA_VERSION ~= "5.1" then
        local p = assert(io.popen(cmd, "r"))
        local out = p:read("*a")
        local _, how, code = p:close()
        return out, how, code
    end
    -- The command runs in a subshell (an exit in it ends only that) with the
    -- original stderr; the outer shell's own stderr, where it would report
    -- "Killed" for a command ended by a signal, goes to /dev/null.
    local p = assert(io.popen("exec 3>&2 2>/dev/null\n(\nexec 2>&3 3>&-\n" .. cmd ..
                              "\n)\nprintf '\\001zmqtt-status:%d' \"$?\"", "r"))
    local out = p:read("*a")
    p:close()
    local body, code = out:match("^(.*)" .. STATUS_MARK:gsub("%p", "%%%0") .. "(%d+)$")
    if not body then
        return out, "exit", -1
    end
    return body, "exit", tonumber(code)
end

--- package.searchpath (which 5.1 lacks): the first file of `path` (";"
-- separated templates) that exists for module `name`, or nil and the list tried.
function compat.searchpath(name, path)
    if package.searchpath then
        return package.searchpath(name, path)
    end
    local file = name:gsub("%.", "/")
    local tried = {}
    for template in path:gmatch("[^;]+") do
        local candidate = template:gsub("%?", file)
        local f = io.open(candidate, "r")
        if f then
            f:close()
            return candidate
        end
        tried[#tried + 1] = "\n\tno file '" .. candidate .. "'"
    end
    return nil, table.concat(tried)
end

---------------------------------------------------------------------------
-- Functions
---------------------------------------------------------------------------

--- xpcall(f, handler, ...) on every version (5.1 passes no arguments to f).
function compat.xpcall(f, handler, ...)
    if compat.LUA_VERSION ~= "5.1" or compat.luajit then
        return xpcall(f, handler, ...)
    end
    local n, args = select("#", ...), { ... }
    return xpcall(function() return f(compat.unpack(args, 1, n)) end, handler)
end

--- An object that calls fn() when it is collected or its Lua state closes (a
-- table with __gc on 5.2+; tables have no finalizers on 5.1 and LuaJIT, so
-- there a newproxy userdata). Keep a reference to it as long as fn must wait.
function compat.finalizer(fn)
    local newproxy = rawget(_G, "newproxy")
    if newproxy and compat.LUA_VERSION == "5.1" then
        local p = newproxy(true)
        getmetatable(p).__gc = function() fn() end
        return p
    end
    return setmetatable({}, { __gc = function() fn() end })
end

return compat
