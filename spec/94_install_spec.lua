-- spec/94_install_spec.lua: `make install` and `make uninstall` for people
-- who do not use luarocks. Into a private DESTDIR with PREFIX=/usr/local:
-- every file in its place and nothing else, the module loads from there
-- alone, and a C program built against the installed header and static
-- library (through zmqtt.pc) talks to a broker. Into a private PREFIX: the
-- installed tools find the installed module without LUA_PATH. Uninstall
-- leaves no file behind. The module installed is the one under test (same
-- LUA, BUILD and sanitizer: make passes them down).
local helpers = require("helpers")
local compat = require("compat")

local quote = helpers.quote
local VERSION = require("mqtt")._VERSION
local LUA_NAME = compat.LUA                        -- what `make LUA=` calls this Lua
local ABI = compat.LUA_VERSION                     -- LuaJIT: 5.1
local PREFIX = "/usr/local"

local function run_ok(cmd, timeout)
    return helpers.run_ok(cmd, timeout or 120)
end

local ROOT = (run_ok("pwd"):gsub("%s+$", ""))

local function make(args)
    return run_ok("make -s --no-print-directory -C " .. quote(ROOT) .. " LUA=" .. LUA_NAME .. " " .. args, 300)
end

local function files_under(dir)
    local list = {}
    for f in run_ok("cd " .. quote(dir) .. " && find . -type f | sed 's|^\\./||' | sort"):gmatch("[^\n]+") do
        list[#list + 1] = f
    end
    return list
end

describe("make install", function()
    local tmp, dest, root
    setup(function()
        tmp = helpers.tmpdir("zmqtt-install")
        dest = tmp .. "/dest"
        root = dest .. PREFIX
        make("install DESTDIR=" .. quote(dest) .. " PREFIX=" .. PREFIX)
    end)
    teardown(function()
        helpers.stop_all()
        if tmp and tmp:match("/zmqtt%-install%.%w+$") then helpers.run("rm -rf " .. quote(tmp)) end
    end)

    it("puts the module, the tools, the header, the library and zmqtt.pc in their places", function()
        local want = { "bin/zmqtt-pub", "bin/zmqtt-sub", "include/zmqtt/mqtt.h", "lib/libzmqtt.a",
                       "lib/lua/" .. ABI .. "/mqtt/core.so", "lib/pkgconfig/zmqtt.pc" }
        for f in run_ok("ls lua/mqtt/*.lua"):gmatch("lua/mqtt/([^\n]+)") do
            want[#want + 1] = "share/lua/" .. ABI .. "/mqtt/" .. f
        end
        table.sort(want)
        assert.same(want, files_under(dest .. PREFIX))
        assert.equal(helpers.read_file("include/mqtt.h"), helpers.read_file(root .. "/include/zmqtt/mqtt.h"))
        local pc = helpers.read_file(root .. "/lib/pkgconfig/zmqtt.pc")
        assert.matches("\nVersion: " .. VERSION .. "\n", pc, 1, true)
        assert.matches("^prefix=" .. PREFIX .. "\n", pc)
    end)

    it("gives a module that loads from the installed files alone", function()
        local lmod, cmod = root .. "/share/lua/" .. ABI, root .. "/lib/lua/" .. ABI
        local out = helpers.run_installed(helpers.LUA, lmod, cmod, [[
            local m = require("mqtt")
            print(m._VERSION, where(package.path, "mqtt/init"), where(package.cpath, "mqtt/core"))
            print(m.topic_matches("a/+", "a/b"))
        ]])
        assert.equal(VERSION .. "\t" .. lmod .. "/mqtt/init.lua\t" .. cmod .. "/mqtt/core.so\ntrue\n", out)
    end)

    it("gives tools that start with the interpreter built for", function()
        for _, tool in ipairs({ "zmqtt-pub", "zmqtt-sub" }) do
            local text = helpers.read_file(root .. "/bin/" .. tool)
            assert.equal("#!/usr/bin/env " .. LUA_NAME .. "\n", text:match("^[^\n]*\n"))
        end
    end)

    it("lets a C program build with zmqtt.pc against the header and static library", function()
        local flags = run_ok("PKG_CONFIG_PATH=" .. quote(root .. "/lib/pkgconfig") ..
                             " PKG_CONFIG_SYSROOT_DIR=" .. quote(dest) .. " pkg-config --cflags --libs zmqtt")
        assert.matches("-I" .. root .. "/include/zmqtt", flags, 1, true)
        assert.matches("-L" .. root .. "/lib", flags, 1, true)
        local exe = tmp .. "/c_client"
        -- The build's include directory is not on the command line: only what was installed.
        run_ok("cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o " .. quote(exe) .. " examples/c_client.c " ..
               flags:gsub("%s+$", ""))
        local broker = helpers.start_broker()
        local out = run_ok(table.concat({ quote(exe), broker.host, broker.port, "install/topic",
                                          quote("hello from an installed C client") }, " "), 20)
        assert.matches("SUBACK for mid 1, granted 1", out, 1, true)
        assert.matches("message on install/topic: hello from an installed C client", out, 1, true)
    end)

    it("is undone by make uninstall", function()
        make("uninstall DESTDIR=" .. quote(dest) .. " PREFIX=" .. PREFIX)
        assert.same({}, files_under(dest))
    end)
end)

describe("make install into a PREFIX of its own", function()
    local tmp
    setup(function() tmp = helpers.tmpdir("zmqtt-install") end)
    teardown(function()
        if tmp and tmp:match("/zmqtt%-install%.%w+$") then helpers.run("rm -rf " .. quote(tmp)) end
    end)

    it("gives tools that find the installed module with no LUA_PATH", function()
        local prefix = tmp .. "/prefix"
        make("install PREFIX=" .. quote(prefix))
        for _, tool in ipairs({ "zmqtt-pub", "zmqtt-sub" }) do
            -- Search paths that hold nothing: the tool's own lines must point to the install.
            local out = run_ok("cd / && LUA_PATH=/nonexistent/?.lua LUA_CPATH=/nonexistent/?.so " ..
                               helpers.LUA .. " " .. quote(prefix .. "/bin/" .. tool) .. " --help")
            assert.equal(1, out:find("Usage: " .. tool .. " ", 1, true), out)
        end
        make("uninstall PREFIX=" .. quote(prefix))
        assert.same({}, files_under(prefix))
    end)
end)
