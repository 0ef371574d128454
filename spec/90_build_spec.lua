-- The rock: its source list matches src/, and it installs offline into a
-- private tree from which require("mqtt") works, for the Lua version running
-- the specs (LuaJIT: the 5.1 tree, loaded by luajit).
local helpers = require("helpers")
local compat = require("compat")

local LUA_VERSION = compat.LUA_VERSION   -- "5.1" .. "5.4"

local function rockspec_sources()
    local text = assert(helpers.read_file("rockspec/zmqtt-scm-1.rockspec"))
    local list = {}
    for path in text:gmatch('"(src/[%w_]+%.c)"') do list[#list + 1] = path end
    table.sort(list)
    return list
end

local function tree_sources()
    local ok, _, out = helpers.run("ls src/*.c")
    assert(ok, out)
    local list = {}
    for path in out:gmatch("%S+") do list[#list + 1] = path end
    table.sort(list)
    return list
end

describe("the rockspec", function()
    it("lists exactly the C sources in src/", function()
        assert.same(tree_sources(), rockspec_sources())
    end)

    it("installs offline with luarocks and the installed module loads", function()
        local tree = helpers.tmpdir("rock")
        -- Built from a copy: luarocks make leaves objects next to the sources,
        -- and another suite may be building the same checkout at the same time.
        local copy = helpers.quote(tree .. "/source")
        local ok, code, out = helpers.run("mkdir " .. copy .. " && cp -r src lua bin rockspec "
            .. copy .. " && cd " .. copy .. " && luarocks --lua-version=" .. LUA_VERSION ..
            " --tree=" .. helpers.quote(tree) .. " make rockspec/zmqtt-scm-1.rockspec 2>&1", 120)
        assert.is_true(ok, "luarocks failed (" .. tostring(code) .. "): " .. tostring(out))
        local lua_path = tree .. "/share/lua/" .. LUA_VERSION .. "/?.lua;" ..
                         tree .. "/share/lua/" .. LUA_VERSION .. "/?/init.lua"
        local cpath = tree .. "/lib/lua/" .. LUA_VERSION .. "/?.so"
        -- Where require found mqtt.core: package.searchpath, which 5.1 lacks.
        local script = [[
            local m = require("mqtt")
            local where
            for t in package.cpath:gmatch("[^;]+") do
                local f = io.open((t:gsub("%?", "mqtt/core")), "rb")
                if f then f:close(); where = where or t:gsub("%?", "mqtt/core") end
            end
            print(m._VERSION, where)
        ]]
        local cmd = "cd / && LUA_PATH=" .. helpers.quote(lua_path) .. " LUA_CPATH=" .. helpers.quote(cpath)
            .. " " .. compat.LUA .. " -e " .. helpers.quote(script)
        local ok2, _, out2 = helpers.run(cmd)
        assert.is_true(ok2, out2)
        assert.matches("zmqtt", out2)
        assert.matches(tree, out2, 1, true)
    end)
end)
