-- spec/25_wait_spec.lua: client:wait(mid, timeout), which dispatches until a
-- publish, subscribe or unsubscribe is acknowledged, so that scripts can be
-- written top to bottom.

local helpers = require("helpers")
local FakeBroker = require("fake_broker")
local mqtt = require("mqtt")

local HOST = helpers.HOST

describe("client:wait", function()
    local broker, clients = helpers.with_broker(nil, "zwait")

    local function connected()
        local c = clients:new()
        c:connect(HOST, 60, broker.port)
        return c
    end

    -- A client connected to a scripted broker, which the spec closes.
    local function fake_connected()
        local fb = FakeBroker.new()
        finally(function() fb:close() end)
        local c = clients:new()
        c:connect_async(fb.host, 60, fb.port)
        fb:handshake()
        assert.is_true(helpers.wait_dispatch(function() return c:is_connected() end))
        return fb, c
    end

    it("returns the SUBACK's data for a subscribe mid", function()
        local c = connected()
        local d = assert(c:wait(c:subscribe({ { "wait/a", 1 }, { "wait/b", 2 } }), 5))
        assert.same({ 1, 2 }, d.granted_qos)
        d = assert(c:wait(c:unsubscribe("wait/a"), 5))
        assert.is_number(d.mid)
    end)

    it("returns once a QoS 1 or QoS 2 publish is complete, running callbacks meanwhile", function()
        local c = connected()
        local topic = helpers.unique("wait/t")
        assert(c:wait(c:subscribe(topic, 2), 5))
        local got, acks = helpers.collect(c), {}
        c:on(mqtt.PUBACK, function(_, d) acks[#acks + 1] = d.mid end)
        c:on(mqtt.PUBCOMP, function(_, d) acks[#acks + 1] = d.mid end)
        for qos = 1, 2 do
            local mid = c:publish(topic, "m" .. qos, qos)
            local d = assert(c:wait(mid, 5))
            assert.equal(mid, d.mid)
            assert.equal(mid, acks[#acks], "the ack's own callback ran before wait returned")
        end
        assert.is_true(helpers.wait_dispatch(function() return #got == 2 end))
        assert.same({ "m1", "m2" }, { got[1].payload, got[2].payload })
    end)

    it("returns {mid = mid} at once for a QoS 0 mid and for a mid acknowledged earlier", function()
        local c = connected()
        local m0 = c:publish("wait/zero", "x", 0)
        local t0 = helpers.now()
        assert.same({ mid = m0 }, c:wait(m0, 5))
        local m1 = c:publish("wait/one", "x", 1)
        local acked = false
        c:on(mqtt.PUBACK, function() acked = true end, function(d) return d.mid == m1 end)
        assert.is_true(helpers.wait_dispatch(function() return acked end))
        assert.same({ mid = m1 }, c:wait(m1, 5))
        assert.is_true(helpers.now() - t0 < 2)
    end)

    it("works inside a coroutine", function()
        local c = connected()
        local co = coroutine.create(function()
            local mid = c:publish("wait/co", "x", 2)
            coroutine.yield(mid)
            return c:wait(mid, 5)
        end)
        local ok, mid = coroutine.resume(co)
        assert.is_true(ok)
        local ok2, d = coroutine.resume(co)
        assert.is_true(ok2)
        assert.equal(mid, d.mid)
    end)

    it("returns nil and a timeout error when no ack comes in time; a late ack still counts", function()
        local fb, c = fake_connected()
        local mid = c:publish("wait/slow", "x", 1)
        assert.equal(mid, fb:expect(FakeBroker.PUBLISH).packet_id)
        local t0 = helpers.now()
        local d, err = c:wait(mid, 0.3)
        local took = helpers.now() - t0
        assert.is_nil(d)
        assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError))
        assert.equal("timeout", err.name)
        assert.is_true(took >= 0.28 and took < 2, "waited " .. took .. " s")
        fb:send(FakeBroker.puback(mid))
        d = assert(c:wait(mid, 5))
        assert.equal(mid, d.mid)
    end)

    it("returns nil and 'not connected' when the client disconnects for good", function()
        local fb, c = fake_connected()
        local mid = c:publish("wait/lost", "x", 2)
        fb:expect(FakeBroker.PUBLISH)
        fb:close_client()
        local d, err = c:wait(mid)
        assert.is_nil(d)
        assert.equal("not connected", err.name)
        assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError))
    end)

    it("rejects bad arguments and a closed client with clear errors", function()
        local c = clients:new()
        for _, bad in ipairs({ 0, 65536, 1.5, "1", false }) do
            local ok, err = pcall(c.wait, c, bad, 1)
            assert.is_false(ok)
            assert.matches("bad argument #1 to 'wait'", tostring(err), 1, true)
        end
        for _, bad in ipairs({ -1, "1", 0 / 0, true }) do
            local ok, err = pcall(c.wait, c, 1, bad)
            assert.is_false(ok)
            assert.matches("bad argument #2 to 'wait'", tostring(err), 1, true)
        end
        c:close()
        local ok, err = pcall(c.wait, c, 1, 1)
        assert.is_false(ok)
        assert.equal("bad state", err.name)
    end)
end)
