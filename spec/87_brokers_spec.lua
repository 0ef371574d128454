-- spec/87_brokers_spec.lua: what real brokers do that the specification does
-- not expect, with default settings. RabbitMQ answers a QoS 2 PUBLISH with
-- PUBACK (played by the fake broker); a stock mosquitto acknowledges incoming
-- QoS 2 messages past its 20 in flight and drops them (a real mosquitto); and
-- a QoS 1 message reaches the application only once its PUBACK is written.

local helpers = require("helpers")
local mqtt = require("mqtt")
local FB = require("fake_broker")

local HOST = helpers.HOST
local now = helpers.now

local function wait_for(pred, timeout)
    return helpers.wait_dispatch(pred, timeout, 0.01)
end

describe("real brokers' ways", function()
    local clients = helpers.clients("zbrk")
    local brokers = helpers.fake_brokers({ timeout = 3 })
    helpers.close_after_each(clients, brokers)

    local function fake_connected(clean, opts)
        return helpers.fake_connected(clients, brokers, clean, opts)
    end

    describe("a QoS 2 publish answered with PUBACK (RabbitMQ)", function()
        it("completes as downgraded: PUBACK callback with downgraded = true, wait() returns " ..
           "it, the slot and the id are free, stats().downgraded counts", function()
            local c, fb = fake_connected(false, { max_inflight = 2 })
            c:loop()
            local acks = {}
            c:on(mqtt.PUBACK, function(_, d) acks[#acks + 1] = d end)
            local mids = {}
            for i = 1, 6 do mids[i] = c:publish("q2/down", "m" .. i, 2) end
            -- Two at a time (the window), each answered with PUBACK.
            for i = 1, 6 do
                local p = fb:expect(FB.PUBLISH)
                assert.equal(2, p.qos)
                assert.equal(mids[i], p.packet_id)
                fb:send(FB.puback(p.packet_id))
            end
            local data, err = c:wait(mids[6], 5)
            assert.is_nil(err)
            assert.equal(mids[6], data.mid)
            assert.is_true(data.downgraded)
            assert.is_true(wait_for(function() return #acks == 6 end))
            for i, d in ipairs(acks) do
                assert.equal(mids[i], d.mid)
                assert.is_true(d.downgraded)
            end
            local st = c:stats()
            assert.equal(6, st.downgraded)
            assert.equal(0, st.inflight)
            assert.equal(0, st.queued)
            -- Nothing of it is resent after a reconnect.
            fb:close_client()
            fb:handshake { session_present = true }
            assert.is_true(wait_for(function() return c:is_connected() end))
            fb:expect_nothing(0.3)
            -- And disconnect() has nothing to wait for.
            local t0 = now()
            c:disconnect()
            assert.is_true(now() - t0 < 1, ("disconnect took %.2f s"):format(now() - t0))
        end)

        it("a PUBACK after PUBREC is not a downgrade: PUBCOMP still completes it", function()
            local c, fb = fake_connected(true)
            local mid = c:publish("q2/late", "x", 2)
            local p = fb:expect(FB.PUBLISH)
            fb:send(FB.pubrec(p.packet_id))
            fb:expect(FB.PUBREL)
            fb:send(FB.puback(p.packet_id))
            assert.is_true(c:stats().inflight == 1)
            fb:send(FB.pubcomp(p.packet_id))
            local data = c:wait(mid, 5)
            assert.is_nil(data.downgraded)
            assert.equal(0, c:stats().downgraded)
        end)
    end)

    describe("the in-flight window", function()
        it("is 20 by default: the 21st QoS 1/2 publish waits for an acknowledgement", function()
            local c, fb = fake_connected(true)
            for i = 1, 25 do c:publish("w/t", "m" .. i, 1 + i % 2) end
            local ids = {}
            for _ = 1, 20 do ids[#ids + 1] = fb:expect(FB.PUBLISH).packet_id end
            fb:expect_nothing(0.3)
            assert.equal(20, c:stats().inflight)
            fb:send(FB.puback(ids[2]))    -- m2 was QoS 1
            assert.equal("PUBLISH", fb:expect(FB.PUBLISH).name)
            fb:expect_nothing(0.2)
        end)

        it("1,000 QoS 2 publishes with default settings all arrive through a stock mosquitto",
           function()
            local b = helpers.start_broker()   -- mosquitto's defaults: max_inflight_messages 20
            local sub = clients:new(nil, true)
            sub:connect(HOST, 30, b.port)
            local got = helpers.collect(sub)
            helpers.subscribe_wait(sub, "stock/q2", 2)
            local pub = clients:new(nil, true)
            pub:connect(HOST, 30, b.port)
            pub:loop()
            local N, last = 1000, nil
            for i = 1, N do last = pub:publish("stock/q2", ("%04d"):format(i), 2) end
            assert.is_truthy(pub:wait(last, 30))
            assert.is_true(wait_for(function() return #got >= N end, 20),
                           ("%d of %d messages arrived"):format(#got, N))
            mqtt.dispatch(0.2)
            assert.equal(N, #got)
            for i, m in ipairs(got) do assert.equal(("%04d"):format(i), m.payload) end
        end)
    end)

    it("a QoS 1 message reaches the application after its PUBACK was written", function()
        local c, fb = fake_connected(true)
        local seen = {}
        c:on(mqtt.PUBLISH, function(_, d)
            -- The PUBACK is already on its way: the broker can read it now.
            local p = fb:read_packet(0)
            seen[#seen + 1] = { mid = d.message.mid, ack = p and p.name == "PUBACK" and p.packet_id }
        end)
        for i = 1, 20 do
            fb:send(FB.publish { topic = "q1/order", payload = "x", qos = 1, packet_id = i })
            assert.is_true(wait_for(function() return #seen == i end))
        end
        for i, s in ipairs(seen) do
            assert.equal(i, s.mid)
            assert.equal(i, s.ack, "message " .. i .. " was handed over before its PUBACK")
        end
    end)
end)
