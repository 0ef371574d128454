-- spec/45_ioloop_spec.lua: one I/O loop serves every client of the process.
-- Many connected clients run on 1 + pool threads, and so do many clients
-- still opening their connections (the loop drives every open itself);
-- closing one leaves the others working, and the loop's threads are gone
-- once the last client is.

local helpers = require("helpers")
local mqtt = require("mqtt")

local HOST = helpers.HOST
local N = 200

local function threads()
    local f = assert(io.open("/proc/self/status"))
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("Threads:%s*(%d+)"))
end

-- Connects n clients at once (connect_async) and waits for every one.
local function connect_many(clients, port, n, prefix)
    local list = {}
    for i = 1, n do
        local c = clients:new(("%s-%d"):format(prefix, i), true)
        c:connect_async(HOST, 60, port)
        list[i] = c
    end
    assert.is_true(helpers.wait_dispatch(function()
        for _, c in ipairs(list) do
            if not c:is_connected() then return false end
        end
        return true
    end, 60), "not every client connected")
    return list
end

describe("the I/O loop", function()
    local broker, clients = helpers.with_broker({ extra = "max_connections -1" }, "zloop")

    it("serves " .. N .. " connected clients on one thread; a close leaves the others working",
       function()
        collectgarbage("collect") -- clients of earlier specs leave, and maybe their loop
        local before, loops = threads(), mqtt.io_stats().threads
        local list = connect_many(clients, broker.port, N, helpers.unique("zloop"))
        local io = mqtt.io_stats()
        assert.equal(1, io.threads)
        assert.is_true(io.clients >= N)
        -- Only the loop's thread is new (and maybe a sanitizer's own, started on the way).
        local expected = before + 1 - loops
        local slack = helpers.memory_instrumented() and 1 or 0
        local function as_expected()
            return threads() >= expected and threads() <= expected + slack
        end
        assert.is_true(helpers.wait_until(as_expected, 10),
                       ("threads: %d, expected %d"):format(threads(), expected))

        list[1]:close()
        assert.equal(io.clients - 1, mqtt.io_stats().clients)
        for i = 2, N do
            assert.is_true(list[i]:is_connected(), "client " .. i .. " lost its connection")
        end
        -- Traffic both ways on two of the others.
        local a, b = list[2], list[N]
        local got
        b:on(mqtt.PUBLISH, function(_, data) got = data.message.payload end, "zloop/t")
        assert(b:wait(b:subscribe("zloop/t", 1), 5), "no SUBACK")
        assert(a:wait(a:publish("zloop/t", "after close", 1), 5), "no PUBACK")
        assert.is_true(helpers.wait_dispatch(function() return got == "after close" end))
        assert.is_true(as_expected(), ("threads: %d, expected %d"):format(threads(), expected))
    end)

    it("opens 50 connections at once on the loop's thread alone, each timing out by name",
       function()
        collectgarbage("collect")
        local before, loops = threads(), mqtt.io_stats().threads
        local port, close = helpers.full_backlog() -- every TCP connect hangs
        finally(close)
        local list, acks = {}, {}
        for i = 1, 50 do
            local c = clients:new(helpers.unique("zopen"), true, { connect_timeout = 1.5 })
            c:on(mqtt.CONNACK, function(_, d) acks[#acks + 1] = d end)
            c:connect_async(HOST, 60, port)
            list[i] = c
        end
        local expected = before + 1 - loops
        local slack = helpers.memory_instrumented() and 1 or 0
        local most, samples = 0, 0
        local t0 = mqtt.monotonic()
        while mqtt.monotonic() - t0 < 0.5 do
            for _, c in ipairs(list) do
                assert.equal("connecting", c:state())
            end
            most = math.max(most, threads())
            samples = samples + 1
            mqtt.sleep(0.02)
        end
        assert.is_true(samples > 5)
        assert.equal(1, mqtt.io_stats().threads)
        assert.is_true(most >= expected and most <= expected + slack,
                       ("threads while connecting: %d, expected %d"):format(most, expected))
        assert.is_true(helpers.wait_dispatch(function() return #acks == 50 end, 10),
                       #acks .. " of 50 timed out")
        for _, d in ipairs(acks) do
            assert.equal("timeout", d.error.name)
            assert.matches("connecting to 127.0.0.1:" .. port .. " timed out", d.error.message,
                           1, true)
        end
    end)

    it("spreads clients over a pool set before the first client, ends its threads with the last",
       function()
        local script = ([[
            local mqtt, socket = require("mqtt"), require("socket")
            local function threads()
                local f = assert(io.open("/proc/self/status"))
                local n = tonumber(f:read("*a"):match("Threads:%%s*(%%d+)"))
                f:close()
                return n
            end
            -- A sanitizer's runtime may start a thread of its own on the way.
            local base, slack = threads(), %d
            mqtt.io_threads(2)
            local list = {}
            for i = 1, 40 do
                list[i] = mqtt.Client("zpool-" .. i, true)
                list[i]:connect_async("%s", 60, %d)
            end
            local deadline = socket.gettime() + 30
            local function all()
                for _, c in ipairs(list) do
                    if not c:is_connected() then return false end
                end
                return true
            end
            while not all() and socket.gettime() < deadline do socket.sleep(0.01) end
            assert(all(), "not every client connected")
            assert(mqtt.io_stats().threads == 2, "io threads: " .. mqtt.io_stats().threads)
            deadline = socket.gettime() + 10
            local function two_more()
                return threads() >= base + 2 and threads() <= base + 2 + slack
            end
            while not two_more() and socket.gettime() < deadline do socket.sleep(0.01) end
            assert(two_more(), "threads: " .. threads() .. ", before: " .. base)
            assert(not pcall(mqtt.io_threads, 1), "the pool changed with clients alive")
            for _, c in ipairs(list) do c:close() end
            assert(mqtt.io_stats().threads == 0, "the loop outlived its clients")
            assert(threads() <= base + slack, "threads left: " .. threads() .. ", before: " .. base)
            io.write("pool ok")
        ]]):format(helpers.memory_instrumented() and 1 or 0, HOST, broker.port)
        local ok, _, out = helpers.run_lua(script, 60)
        assert.is_true(ok, out)
        assert.matches("pool ok", out)
    end)
end)
