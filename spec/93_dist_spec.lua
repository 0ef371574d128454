-- spec/93_dist_spec.lua: the release archives. `make dist` into a private
-- directory writes the tarball and the source rock: they hold the tracked
-- files and the versioned rockspec, their checksums verify, and a second run
-- gives the same bytes. The source rock then installs with `luarocks install`
-- offline (its only server is a closed loopback port) into a fresh tree for
-- each Lua of ZMQTT_DIST_LUAS, in parallel: by default the one running the
-- specs; `make test-dist` names lua5.1, lua5.2, lua5.3, lua5.4 and luajit.
-- From each tree require("mqtt") gives the release's _VERSION, and the
-- installed command-line tools run.
local helpers = require("helpers")
local compat = require("compat")

local quote = helpers.quote

local run_ok = helpers.run_ok

-- The version as make reads it from lua/mqtt/init.lua (spec/90_build_spec.lua
-- checks that the module reports the same): no build of the module needed.
local VERSION = (run_ok("make -s --no-print-directory version"):gsub("%s+$", ""))
local NAME = "zmqtt-" .. VERSION
local ROCK = NAME .. "-1.src.rock"
local ROCKSPEC = NAME .. "-1.rockspec"

local function lines(text)
    local list = {}
    for l in text:gmatch("[^\n]+") do list[#list + 1] = l end
    table.sort(list)
    return list
end

-- A tree for LuaJIT holds 5.1 modules, which luarocks builds with lua5.1.
local function abi(lua)
    return lua == "luajit" and "5.1" or lua:match("^lua(%d%.%d)$")
end

local ROOT = (run_ok("pwd"):gsub("%s+$", ""))
local in_git = helpers.run("git rev-parse --is-inside-work-tree")

local function make_dist(dir)
    return run_ok("make -s --no-print-directory -C " .. quote(ROOT) .. " dist DIST_DIR=" .. quote(dir), 120)
end

describe("make dist", function()
    if not in_git then
        pending("packs the files git tracks: needs a git checkout")
        return
    end

    local tmp, dist
    setup(function()
        tmp = helpers.tmpdir("zmqtt-dist")
        dist = tmp .. "/a"
        make_dist(dist)
    end)
    teardown(function()
        if tmp and tmp:match("/zmqtt%-dist%.%w+$") then helpers.run("rm -rf " .. quote(tmp)) end
    end)

    it("writes the tarball of the tracked files under " .. NAME .. "/", function()
        local want = {}
        for _, f in ipairs(lines(run_ok("git ls-files"))) do want[#want + 1] = NAME .. "/" .. f end
        table.sort(want)
        assert.same(want, lines(run_ok("tar -tzf " .. quote(dist .. "/" .. NAME .. ".tar.gz"))))
    end)

    it("writes the source rock: the versioned rockspec, and the sources in zmqtt/", function()
        local want = { ROCKSPEC }
        for _, f in ipairs(lines(run_ok("git ls-files"))) do want[#want + 1] = "zmqtt/" .. f end
        table.sort(want)
        assert.same(want, lines(run_ok("unzip -Z1 " .. quote(dist .. "/" .. ROCK))))
        assert.equal(helpers.read_file("rockspec/" .. ROCKSPEC),
                     run_ok("unzip -p " .. quote(dist .. "/" .. ROCK) .. " " .. ROCKSPEC))
    end)

    it("writes checksums that verify", function()
        local out = run_ok("cd " .. quote(dist) .. " && sha256sum -c SHA256SUMS")
        assert.matches(NAME .. ".tar.gz: OK", out, 1, true)
        assert.matches(ROCK .. ": OK", out, 1, true)
    end)

    it("gives the same bytes when run again", function()
        make_dist(tmp .. "/b")
        run_ok("cmp " .. quote(dist .. "/" .. NAME .. ".tar.gz") .. " " .. quote(tmp .. "/b/" .. NAME .. ".tar.gz"))
        run_ok("cmp " .. quote(dist .. "/" .. ROCK) .. " " .. quote(tmp .. "/b/" .. ROCK))
    end)

    it("refuses a versioned rockspec out of step with the scm one", function()
        -- A copy of the tree whose scm rockspec gained a module.
        local copy = tmp .. "/tree"
        run_ok("mkdir -p " .. quote(copy) .. " && git ls-files -z | xargs -0 cp --parents -t " .. quote(copy) ..
               " && cd " .. quote(copy) ..
               " && sed -i 's|\\[\"mqtt.tls\"\\]|[\"mqtt.extra\"] = \"lua/mqtt/tls.lua\", &|' " ..
               "rockspec/zmqtt-scm-1.rockspec && grep -q mqtt.extra rockspec/zmqtt-scm-1.rockspec")
        local ok, _, out = helpers.run("make -s --no-print-directory -C " .. quote(copy) ..
                                       " dist DIST_DIR=" .. quote(tmp .. "/c"), 60)
        assert.is_false(ok)
        assert.matches("out of step with rockspec/zmqtt-scm-1.rockspec: run make rockspec", out, 1, true)
    end)

    describe("source rock", function()
        local luas = {}
        for lua in (os.getenv("ZMQTT_DIST_LUAS") or compat.LUA):gmatch("%S+") do
            luas[#luas + 1] = lua
        end

        -- All installs at once, each into its own tree, its log and exit
        -- code into files; the cases below read them.
        local result = {}
        setup(function()
            local jobs = {}
            for _, lua in ipairs(luas) do
                local tree = tmp .. "/tree-" .. lua
                jobs[#jobs + 1] = "( cd / && luarocks --only-server=http://127.0.0.1:9/ --lua-version=" ..
                    abi(lua) .. " --tree=" .. quote(tree) .. " install " .. quote(dist .. "/" .. ROCK) ..
                    " >" .. quote(tree .. ".log") .. " 2>&1; echo $? >" .. quote(tree .. ".rc") .. " ) &"
            end
            run_ok(table.concat(jobs, " ") .. " wait", 600)
            for _, lua in ipairs(luas) do
                local tree = tmp .. "/tree-" .. lua
                result[lua] = { tree = tree, rc = (helpers.read_file(tree .. ".rc") or ""):match("%d+"),
                                log = helpers.read_file(tree .. ".log") or "" }
            end
        end)

        for _, lua in ipairs(luas) do
            it("installs offline for " .. lua .. ", which loads it and reports " .. VERSION, function()
                local r = result[lua]
                assert.equal("0", r.rc, "luarocks install failed:\n" .. r.log)
                local lmod, cmod = r.tree .. "/share/lua/" .. abi(lua), r.tree .. "/lib/lua/" .. abi(lua)
                -- Only the tree on the paths; where the modules came from, 5.1's way.
                local out = helpers.run_installed(lua, lmod, cmod, [[
                    local m = require("mqtt")
                    print(m._VERSION)
                    print(where(package.path, "mqtt/init"))
                    print(where(package.cpath, "mqtt/core"))
                ]])
                assert.same({ VERSION, lmod .. "/mqtt/init.lua", cmod .. "/mqtt/core.so" },
                            { out:match("^([^\n]*)\n([^\n]*)\n([^\n]*)\n$") })
            end)

            it("installs the command-line tools for " .. lua, function()
                local r = result[lua]
                assert.equal("0", r.rc, "luarocks install failed:\n" .. r.log)
                for _, tool in ipairs({ "zmqtt-pub", "zmqtt-sub" }) do
                    local out = run_ok("cd / && env -u LUA_PATH -u LUA_CPATH " .. quote(r.tree .. "/bin/" .. tool) ..
                                       " --help")
                    assert.equal(1, out:find("Usage: " .. tool .. " ", 1, true), out)
                end
            end)
        end
    end)
end)
