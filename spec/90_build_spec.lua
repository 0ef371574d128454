-- The rock: its source list matches src/, and it installs offline into a
-- private tree from which require("mqtt") works.
local helpers = require("helpers")

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
        local ok, code, out = helpers.run("luarocks --lua-version=5.4 --tree=" .. helpers.quote(tree)
            .. " make rockspec/zmqtt-scm-1.rockspec 2>&1 && rm -rf mqtt src/*.o", 120)
        assert.is_true(ok, "luarocks failed (" .. tostring(code) .. "): " .. tostring(out))
        local lua_path = tree .. "/share/lua/5.4/?.lua;" .. tree .. "/share/lua/5.4/?/init.lua"
        local cpath = tree .. "/lib/lua/5.4/?.so"
        local cmd = "cd / && LUA_PATH=" .. helpers.quote(lua_path) .. " LUA_CPATH=" .. helpers.quote(cpath)
            .. " lua5.4 -e 'local m = require\"mqtt\"; print(m._VERSION, "
            .. "package.searchpath(\"mqtt.core\", package.cpath))'"
        local ok2, _, out2 = helpers.run(cmd)
        assert.is_true(ok2, out2)
        assert.matches("zmqtt", out2)
        assert.matches(tree, out2, 1, true)
    end)
end)
