-- spec/88_misuse_spec.lua: misuse and odd cases that must fail cleanly: waits
-- and closes inside breconnect_cb, a SUBACK that does not match its
-- SUBSCRIBE, more offline publishes than there are packet ids, running out
-- of file descriptors, and errors raised by callbacks (with their traceback).
-- fork() with live clients is spec/c/lua_fork.c (it needs fork from Lua).

local helpers = require("helpers")
local mqtt = require("mqtt")
local FB = require("fake_broker")

local HOST = helpers.HOST
local unpack = table.unpack or unpack -- luacheck: ignore 113 143

local function wait_for(pred, timeout)
    return helpers.wait_dispatch(pred, timeout, 0.01)
end

describe("misuse and odd cases", function()
    local clients = helpers.clients("zmis", { reconnect = { min = 0.05, max = 0.1 } })
    local brokers = helpers.fake_brokers({ timeout = 3 })
    helpers.close_after_each(clients, brokers)

    local function fake_connected(connect)
        return helpers.fake_connected(clients, brokers, true, nil, connect)
    end

    -- Dispatches until the dispatching call `fn` raises; returns the error.
    local function dispatch_error(fn, ...)
        local args = { ... }
        local ok, err
        helpers.wait_until(function()
            ok, err = pcall(fn, unpack(args))
            return not ok
        end, 3)
        assert.is_false(ok, "nothing raised")
        return err
    end

    describe("inside breconnect_cb", function()
        it("wait() without a timeout raises MQTTError 'bad state' (it would wait on itself); " ..
           "with a timeout it returns", function()
            local results = {}
            local c, fb
            c, fb = fake_connected { breconnect_cb = function(cl)
                local mid = cl:publish("t", "x", 1)
                local ok, err = pcall(cl.wait, cl, mid)
                results.no_timeout = ok and "returned" or err
                results.timeout = { cl:wait(mid, 0.05) }
            end }
            c:loop()
            fb:close_client()
            assert.is_true(wait_for(function() return results.timeout ~= nil end, 3))
            local err = results.no_timeout
            assert.is_true(mqtt.is_error(err), tostring(err))
            assert.equal("bad state", err.name)
            assert.matches("breconnect_cb", err.message)
            assert.is_nil(results.timeout[1])
            assert.equal("timeout", results.timeout[2].name)
            -- The reconnect goes ahead, and the message goes out on it.
            fb:handshake()
            assert.equal(FB.PUBLISH, fb:expect(FB.PUBLISH).type)
        end)

        it("close() ends quietly: the dispatch that ran it returns, nothing raises later",
           function()
            local closed = false
            local c, fb
            c, fb = fake_connected { breconnect_cb = function(cl)
                cl:close()
                closed = true
            end }
            c:loop()
            fb:close_client()
            local ok, err = pcall(function()
                helpers.wait_until(function()
                    mqtt.dispatch(0.01)
                    return closed
                end, 3)
            end)
            assert.is_true(ok, tostring(err))
            assert.is_true(closed)
            assert.equal("closed", c:state())
            assert.equal(0, mqtt.dispatch(0))
            assert.is_nil(fb:accept(0.3))   -- no reconnect follows
        end)
    end)

    describe("a SUBACK whose return codes do not match the filters (MQTT-3.9.3-1)", function()
        for _, codes in ipairs({ { 1 }, { 1, 1, 1 } }) do
            it(("with %d codes for 2 filters is a protocol error; the SUBSCRIBE is resent")
               :format(#codes), function()
                local c, fb, rec = fake_connected()
                c:loop()
                local mid = c:subscribe({ { "a/1", 1 }, { "a/2", 1 } })
                assert.equal(mid, fb:expect(FB.SUBSCRIBE).packet_id)
                fb:send(FB.suback(mid, codes))
                assert.is_true(wait_for(function() return #rec.disconnects == 1 end, 3))
                local err = rec.disconnects[1].error
                assert.is_true(mqtt.is_error(err, mqtt.MQTTProtocolError), tostring(err))
                assert.equal("protocol error", err.name)
                assert.matches("SUBACK", err.message)
                fb:handshake()
                local p = fb:expect(FB.SUBSCRIBE)
                assert.equal(mid, p.packet_id)
                fb:send(FB.suback(mid, { 1, 0x80 }))
                local data = c:wait(mid, 3)
                assert.same({ 1, 0x80 }, data.granted_qos)
            end)
        end
    end)

    describe("more offline QoS 1 publishes than packet ids", function()
        it("only max_queued limits them: 70,000 are accepted, the 65,536th shares id 1, " ..
           "and all of them arrive once connected", function()
            local N = 70000
            local b = helpers.start_broker { extra = { "max_queued_messages 1000000" } }
            local sub = clients:new(nil, true)
            sub:connect(HOST, 30, b.port)
            local got = 0
            sub:loop(function() got = got + 1 end)
            helpers.subscribe_wait(sub, "ids/#", 1)
            local c = clients:new(nil, true)
            local mids = {}
            for i = 1, N do mids[i] = c:publish("ids/x", tostring(i), 1) end
            assert.equal(65535, mids[65535])
            assert.equal(1, mids[65536])
            assert.equal(N, c:stats().queued)
            c:connect(HOST, 30, b.port)
            c:loop()
            assert.is_true(wait_for(function()
                local st = c:stats()
                return st.queued == 0 and st.inflight == 0
            end, 60), "the publisher still holds messages")
            assert.is_true(wait_for(function() return got >= N end, 30),
                           ("%d of %d arrived"):format(got, N))
        end)

        it("past max_queued the error is 'queue full', never 'no packet id'", function()
            local c = clients:new(nil, true, { max_queued = 66000 })
            for i = 1, 66000 do c:publish("ids/y", tostring(i), 1 + i % 2) end
            local ok, err = pcall(c.publish, c, "ids/y", "one more", 1)
            assert.is_false(ok)
            assert.equal("queue full", err.name)
            ok, err = pcall(c.subscribe, c, "ids/#", 1)
            assert.is_false(ok)
            assert.equal("queue full", err.name)
        end)
    end)

    it("mqtt.Client() without file descriptors left names the call and the reason", function()
        local script = [[
            local mqtt = require("mqtt")
            local keep = {}
            for i = 1, 200 do
                local ok, c = pcall(mqtt.Client, "fd" .. i)
                if not ok then
                    io.write(c.name, "|", c.message, "\n")
                    -- Descriptors back before exit: a leak checker needs one.
                    for _, k in ipairs(keep) do k:close() end
                    os.exit(0)
                end
                keep[i] = c
            end
            io.write("never ran out\n")
        ]]
        local ok, code, out = helpers.run("ulimit -n 64; " .. helpers.child_env() .. " " ..
                                          helpers.LUA .. " -e " .. helpers.quote(script))
        assert.is_true(ok, ("exit %s: %s"):format(tostring(code), out))
        assert.matches("^system error|eventfd: Too many open files", out)
    end)

    describe("an error raised by a callback", function()
        it("leaves dispatch with its traceback; what was queued behind it stays queued",
           function()
            local c, fb = fake_connected()
            local seen = {}
            local function on_message(_, d)
                seen[#seen + 1] = d.message.payload
                if d.message.payload == "boom" then error("callback failed") end
            end
            c:on(mqtt.PUBLISH, on_message)
            fb:send(FB.publish { topic = "t", payload = "boom" } ..
                    FB.publish { topic = "t", payload = "after" })
            local err = dispatch_error(c.dispatch, c, 0.05)
            assert.equal("string", type(err))
            assert.matches("callback failed", err)
            assert.matches("stack traceback:", err)
            assert.matches("88_misuse_spec.lua:%d+: in ", err)   -- where the callback raised
            assert.is_true(wait_for(function() return #seen == 2 end))
            assert.same({ "boom", "after" }, seen)
        end)

        it("an MQTTError raised in a callback keeps its kind and carries the traceback",
           function()
            local c, fb = fake_connected()
            c:on(mqtt.PUBLISH, function(cl) cl:publish("t", "x", 3) end)
            fb:send(FB.publish { topic = "t", payload = "x" })
            local err = dispatch_error(c.dispatch, c, 0.05)
            assert.is_true(mqtt.is_error(err), tostring(err))
            assert.equal("invalid argument", err.name)
            assert.matches("stack traceback:", err.traceback)
            assert.matches("stack traceback:", tostring(err))
        end)

        it("a condition's error carries its traceback too, from mqtt.dispatch and wait",
           function()
            local c, fb = fake_connected()
            c:on(mqtt.PUBLISH, function() end, function() error("condition failed") end)
            fb:send(FB.publish { topic = "t", payload = "x" })
            local err = dispatch_error(mqtt.dispatch, 0.05)
            assert.matches("condition failed", err)
            assert.matches("stack traceback:", err)
            local mid = c:publish("t", "y", 1)
            fb:expect(FB.PUBLISH)
            fb:send(FB.publish { topic = "t", payload = "z" } .. FB.puback(mid))
            local ok
            ok, err = pcall(c.wait, c, mid, 3)
            assert.is_false(ok)
            assert.matches("stack traceback:", err)
        end)
    end)
end)
