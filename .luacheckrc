-- luacheck configuration (run by `make lint` on lua/, bin/, examples/, spec/).
-- The module runs on Lua 5.1 to 5.4 and LuaJIT, so the default standard is
-- "min", what all of them share: lint then catches math.tointeger,
-- table.unpack and other 5.2+ names used without a fallback. A fallback that
-- probes for a newer name says so where it does (-- luacheck: ignore 143).

std = "min"
-- House style aims at 100 columns (.editorconfig); 120 is the hard limit.
max_line_length = 120
codes = true

-- bin/zmqtt-pub and bin/zmqtt-sub (Lua without the suffix, named in mk/lint.mk)
-- keep the default: the specs run them with whichever Lua is under test.

-- busted specs and their helpers: describe/it/assert/spy/... as read-only
-- globals. They run on every Lua the module is built for, so still "min".
files["spec"] = { std = "min+busted" }
files["integration"] = { std = "min+busted" }
-- The specs' compatibility layer probes for the names of every version.
files["spec/compat.lua"] = { std = "max" }

-- Hosts that bring their own globals, both on LuaJIT.
files["examples/openresty"] = { std = "ngx_lua" }  -- ngx, ndk, coroutine.running...
files["examples/love"] = { std = "luajit+love" }   -- love, and love.load/update/draw set there
files["examples/eventloops"] = { std = "min" }     -- luv and cqueues are plain modules
