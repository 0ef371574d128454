-- integration/love_spec.lua: the LÖVE 11 example (examples/love/), headless
-- (its conf.lua turns off the window, graphics and audio), on LuaJIT with
-- build/luajit. The game subscribes, publishes to itself and starts a
-- love.thread worker with a second client in its own Lua state; once it has
-- subscribed, the spec publishes with mosquitto_pub. The game must receive
-- exactly what was published, dispatching in love.update, and the worker's
-- client must be torn down with the worker's Lua state.
-- Must not: talk to anything but 127.0.0.1 (a private mosquitto); LÖVE runs
-- under helpers.run's time limit, which stops it with its process group.

local helpers = require("helpers")

local quote = helpers.quote

local ROOT = os.getenv("ZMQTT_ROOT") or (select(3, helpers.run("pwd")):gsub("%s+$", ""))
local SECONDS = 15   -- the game's own deadline; it quits much earlier on success

local function unhex(h)
    return (h:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end))
end

-- What mosquitto_pub sends once the game has subscribed: topic, qos, payload
-- (mosquitto_pub -m cannot send an empty payload: "" is sent with -n).
local FROM_CI = {
    { "zmqtt/love/ci/0", 0, "qos 0 from CI" },
    { "zmqtt/love/ci/1", 1, "qos 1 from CI" },
    { "zmqtt/love/ci/2", 2, "qos 2 from CI, delivered at the subscription's qos 1" },
    { "zmqtt/love/ci/empty", 1, "" },
}

local function publish_commands(port)
    local cmds = {}
    for _, m in ipairs(FROM_CI) do
        cmds[#cmds + 1] = ("mosquitto_pub -h 127.0.0.1 -p %d -V mqttv311 -t %s -q %d %s")
            :format(port, quote(m[1]), m[2], m[3] == "" and "-n" or ("-m " .. quote(m[3])))
    end
    return table.concat(cmds, " && ")
end

describe("LÖVE 11", function()
    local broker = helpers.with_broker()

    it("drains messages in love.update and closes a worker thread's client", function()
        local dir = helpers.tmpdir("zmqtt-love")
        local out_file = dir .. "/out"
        local expected = 1 + 3 + #FROM_CI   -- itself, the worker, mosquitto_pub
        -- No LUA_PATH/LUA_CPATH: main.lua finds the checkout's lua/ and build/luajit.
        local script = table.concat({
            "env -u LUA_PATH -u LUA_CPATH -u DISPLAY love " .. quote(ROOT .. "/examples/love") ..
                " 127.0.0.1 " .. broker.port .. " " .. SECONDS .. " " .. expected ..
                " >" .. quote(out_file) .. " 2>&1 & game=$!",
            "for i in $(seq 200); do grep -q '^love: subscribed' " .. quote(out_file) ..
                " && break; sleep 0.05; done",
            publish_commands(broker.port) .. " || echo 'mosquitto_pub failed'",
            "wait $game; echo \"exit status $?\"",
        }, "\n")
        local ok, code, ctl = helpers.run(script, SECONDS + 10)
        local out = helpers.read_file(out_file) or ""
        helpers.run("rm -rf " .. quote(dir))
        local report = "control:\n" .. ctl .. "\ngame:\n" .. out
        assert.is_true(ok, "exit " .. tostring(code) .. "\n" .. report)
        assert.are.equal("exit status 0\n", ctl, report)

        -- Every message exactly once, with its QoS.
        local got = {}
        for topic, qos, hex in out:gmatch("\nlove: message (%S+) (%d) (%x*)") do
            local key = topic .. " " .. qos .. " " .. unhex(hex)
            assert.is_nil(got[key], "received twice: " .. key .. "\n" .. report)
            got[key] = true
        end
        local want = { ["zmqtt/love/self 1 hello from LÖVE"] = true }
        for i = 1, 3 do
            want["zmqtt/love/worker 1 from the worker " .. i] = true
        end
        for _, m in ipairs(FROM_CI) do
            want[m[1] .. " " .. math.min(m[2], 1) .. " " .. m[3]] = true
        end
        assert.are.same(want, got, report)

        -- Dispatched across frames of a running game loop.
        local frames, count = out:match("\nlove: (%d+) frames, (%d+) messages")
        assert.is_truthy(frames, report)
        assert.are.equal(expected, tonumber(count), report)
        assert.is_true(tonumber(frames) > 1, report)

        -- The worker's thread came and went; its client shared the process's
        -- one I/O thread, which the game's own client had started already.
        local before = tonumber(out:match("threads before the worker: (%d+)"))
        local with = tonumber(out:match("worker: connected, threads: (%d+)"))
        local after = tonumber(out:match("threads after the worker ended: (%d+)"))
        assert.is_truthy(before and with and after, report)
        assert.are.equal(before + 1, with, report)
        assert.are.equal(before, after, report)
        assert.matches("love: worker: published", out, 1, true)
        assert.is_nil(out:find("worker error", 1, true), report)
    end)
end)
