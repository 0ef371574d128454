-- integration/eventloops_spec.lua: the luv and cqueues examples
-- (examples/eventloops/) under every Lua they exist for. Each watches
-- client:fd() in its event loop, publishes COUNT messages to itself, prints
-- them as they are dispatched and exits; the spec checks the whole output.
-- Must not: talk to anything but 127.0.0.1 (a private mosquitto).

local helpers = require("helpers")

local quote = helpers.quote

local ROOT = os.getenv("ZMQTT_ROOT") or (select(3, helpers.run("pwd")):gsub("%s+$", ""))
local COUNT = 20

-- Each interpreter with the build of the module it loads.
local LUAS = {
    { lua = "lua5.4", build = "build" },
    { lua = "luajit", build = "build/luajit" },
    { lua = "lua5.3", build = "build/lua5.3" },
    { lua = "lua5.2", build = "build/lua5.2" },
    { lua = "lua5.1", build = "build/lua5.1" },
}

local function run_example(name, lua, port)
    local env = "LUA_PATH=" .. quote(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;") ..
                " LUA_CPATH=" .. quote(ROOT .. "/" .. lua.build .. "/?.so;;")
    return helpers.run(table.concat({ env, lua.lua, quote(ROOT .. "/examples/eventloops/" ..
                                      name .. ".lua"), "127.0.0.1", port, COUNT }, " "), 20)
end

-- The exact output: one line per message, in publishing order, then the total.
local function expected_output(name)
    local lines = {}
    for i = 1, COUNT do
        lines[i] = ("%s: received %d/%d: message %d"):format(name, i, COUNT, i)
    end
    lines[#lines + 1] = ("%s: %d messages received"):format(name, COUNT)
    return table.concat(lines, "\n") .. "\n"
end

describe("event loops watching client:fd()", function()
    local broker = helpers.with_broker()

    for _, name in ipairs { "luv", "cqueues" } do
        for _, lua in ipairs(LUAS) do
            it(name .. " on " .. lua.lua .. " dispatches when the fd is readable", function()
                local module = ROOT .. "/" .. lua.build .. "/mqtt/core.so"
                assert.is_truthy(helpers.read_file(module),
                                 module .. " is missing: `make integration` builds it")
                local ok, code, out = run_example(name, lua, broker.port)
                assert.is_true(ok, "exit " .. tostring(code) .. ":\n" .. out)
                -- Nothing else: no warning from luv about handles left open.
                assert.are.equal(expected_output(name), out)
            end)
        end
    end
end)
