-- integration/states_spec.lua: several Lua states in one process, each with
-- its own clients. Runs examples/embed/host.c (built by `make integration`):
-- two Lua 5.4 states load the real mqtt/core.so through package.cpath;
-- all clients share one I/O thread; closing one state detaches only its
-- clients, the other keeps working, and closing the last one with clients
-- Lua never closed (in a global, in an unreachable cycle, in a suspended
-- coroutine, mid-connect) closes them all and ends the I/O thread. Then a client created by a finalizer while
-- lua_close runs (Lua 5.4 host and LuaJIT) must not crash the host.
-- Must not: talk to anything but 127.0.0.1 (a private mosquitto).

local helpers = require("helpers")

local quote = helpers.quote

local ROOT = os.getenv("ZMQTT_ROOT") or (select(3, helpers.run("pwd")):gsub("%s+$", ""))
local HOST = os.getenv("ZMQTT_EMBED_HOST") or (ROOT .. "/build/embed/host")
local LUA_PATH = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"

local function env(build)
    return "LUA_PATH=" .. quote(LUA_PATH) .. " LUA_CPATH=" .. quote(ROOT .. "/" .. build .. "/?.so;;")
end

-- The host's "ok N - ..." lines must all be there, and none "not ok".
local function assert_all_ok(out, plan)
    assert.matches("\n1%.%." .. plan .. "\n", "\n" .. out)
    assert.is_nil(out:find("not ok", 1, true), out)
    local oks = select(2, out:gsub("\nok %d+ ", ""))
    assert.are.equal(plan, oks + (out:find("^ok %d+ ") and 1 or 0), out)
end

describe("several Lua states in one process", function()
    local broker = helpers.with_broker()

    it("closing a state detaches only its clients; the last close ends the I/O thread", function()
        assert.is_truthy(helpers.read_file(HOST), HOST .. " is missing: `make integration` builds it")
        local ok, code, out = helpers.run(env("build") .. " " .. quote(HOST) .. " " .. broker.port, 20)
        assert.is_true(ok, "exit " .. tostring(code) .. ":\n" .. out)
        assert_all_ok(out, 17)
        assert.matches("ok %d+ %- closing state 1 detached only its client", out)
        assert.matches("ok %d+ %- closing state 2 closed its four clients and ended the I/O thread", out)
        -- core.so pins itself in memory: it stays mapped after the last close.
        assert.matches("# core.so still mapped after the last state closed", out, 1, true)
    end)

    -- Lua never finalizes an object made while lua_close runs (5.4), or
    -- finalizes it after the module was unloaded (LuaJIT): the client's
    -- thread would then run in unmapped code. luaopen_mqtt_core pins core.so
    -- in memory (dlopen RTLD_NODELETE) so that the host survives it.
    it("a client made by a finalizer during lua_close does not crash the host", function()
        local ok, code, out = helpers.run(env("build") .. " " .. quote(HOST) .. " " ..
                                          broker.port .. " --late-client", 20)
        assert.is_true(ok, "Lua 5.4 host: exit " .. tostring(code) .. ":\n" .. out)
        assert_all_ok(out, 3)
        -- LuaJIT (lua_close runs finalizers in rounds: the late client is
        -- finalized in the second, after package unloaded the module).
        local late_lua = [[
            local mqtt = require("mqtt")
            late = newproxy(true)
            getmetatable(late).__gc = function()
                survivor = mqtt.Client("", true)
                survivor:connect("127.0.0.1", 1, ]] .. broker.port .. [[)
                io.write("late client connected\n")
            end]]
        ok, code, out = helpers.run(env("build/luajit") .. " luajit -e " .. quote(late_lua), 20)
        assert.is_true(ok, "LuaJIT: exit " .. tostring(code) .. ":\n" .. out)
        assert.are.equal("late client connected\n", out)
    end)
end)
