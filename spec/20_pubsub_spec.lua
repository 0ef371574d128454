-- spec/20_pubsub_spec.lua: publish and subscribe through a private mosquitto:
-- QoS 0/1/2 both ways, payload and topic sizes, message fields, message ids
-- and acknowledgement callbacks, SUBACK/UNSUBACK, retained messages, QoS 2
-- exactly once, interop with mosquitto_pub/mosquitto_sub, and ordering.

local helpers = require("helpers")
local FakeBroker = require("fake_broker")
local mqtt = require("mqtt")
local compat = require("compat")

local HOST = helpers.HOST
local math_type = compat.math_type

local wait_for = helpers.wait_dispatch

-- x * 1103515245 + 12345 modulo 2^31, exact with doubles too (5.1, LuaJIT):
-- the product is split so that no intermediate value exceeds 2^53.
local function lcg(x)
    local lo, hi = x % 65536, compat.idiv(x, 65536)
    return ((hi * 1103515245) % 32768 * 65536 + lo * 1103515245 + 12345) % 2147483648
end

-- Deterministic bytes of length n covering all 256 byte values (NUL included).
local function binary(n, seed)
    local chunk = {}
    local x = seed or 7
    for i = 1, 4099 do   -- a block length prime to 256, so repeats shift
        x = lcg(x)
        chunk[i] = string.char((i - 1 + compat.rshift(x, 16)) % 256)
    end
    local block = table.concat(chunk)
    return string.rep(block, compat.idiv(n, #block) + 1):sub(1, n)
end

-- A short description of bytes for failure messages.
local function show(s)
    return ("%d bytes: %s"):format(#s, FakeBroker.hex(s, 16))
end

describe("publish and subscribe", function()
    local broker, clients = helpers.with_broker(nil, "zps")

    -- A connected client whose loop() on_message collects every message.
    local function client(opts)
        local c = clients:new(nil, true, opts)
        c:connect(HOST, 60, broker.port)
        return c, helpers.collect(c)
    end

    -- Subscribes and waits for the SUBACK; returns its data and the mid.
    local subscribe = helpers.subscribe_wait

    local function topic_prefix()
        return helpers.unique("ps"):gsub("%-", "/")
    end

    for qos = 0, 2 do
        it(("delivers QoS %d to the publishing client and to a second client, both ways")
           :format(qos), function()
            local base = topic_prefix()
            local a, got_a = client()
            local b, got_b = client()
            assert.same({ qos }, subscribe(a, base .. "/#", qos).granted_qos)
            assert.same({ qos }, subscribe(b, base .. "/#", qos).granted_qos)
            a:publish(base .. "/from-a", "hello from a", qos)
            b:publish(base .. "/from-b", "hello from b", qos)
            assert.is_true(wait_for(function() return #got_a >= 2 and #got_b >= 2 end))
            mqtt.sleep(0.05)  -- nothing more may come
            for _, got in ipairs({ got_a, got_b }) do
                assert.equal(2, #got)
                local by_topic = {}
                for _, m in ipairs(got) do by_topic[m.topic] = m end
                assert.equal("hello from a", by_topic[base .. "/from-a"].payload)
                assert.equal("hello from b", by_topic[base .. "/from-b"].payload)
                for _, m in ipairs(got) do
                    assert.equal(qos, m.qos)
                    assert.is_false(m.retain)
                    if qos == 0 then assert.equal(0, m.mid) else assert.is_true(m.mid > 0) end
                end
            end
        end)
    end

    local PAYLOADS = {
        { "empty (0 bytes)", "" },
        { "1 byte", "x" },
        { "binary with NUL bytes", "\0a\0\0b\255\254\0\r\n\0" },
        { "one NUL byte", "\0" },
        { "64 KiB", binary(65536, 1) },
        { "2 MiB", binary(2 * 1024 * 1024, 2) },
    }
    for _, case in ipairs(PAYLOADS) do
        local name, payload = case[1], case[2]
        it("carries a payload of " .. name .. " byte-exact at QoS 0, 1 and 2", function()
            local base = topic_prefix()
            local a, got_a = client()
            local b, got_b = client()
            subscribe(b, base .. "/#", 2)
            for qos = 0, 2 do
                a:publish(base .. "/q" .. qos, payload, qos)
            end
            assert.is_true(wait_for(function() return #got_b >= 3 end, 10))
            for _, m in ipairs(got_b) do
                assert.equal(base .. "/q" .. m.qos, m.topic)
                assert.equal(#payload, #m.payload)
                assert.is_true(m.payload == payload, "payload differs: " .. show(m.payload))
            end
            local seen = {}
            for _, m in ipairs(got_b) do seen[m.qos] = (seen[m.qos] or 0) + 1 end
            assert.same({ [0] = 1, 1, 1 }, seen)
            assert.equal(0, #got_a)
        end)
    end

    it("sends nil as an empty payload", function()
        local base = topic_prefix()
        local a, got = client()
        subscribe(a, base, 1)
        a:publish(base, nil, 1)
        assert.is_true(wait_for(function() return #got == 1 end))
        assert.equal("", got[1].payload)
    end)

    for _, len in ipairs({ 255, 256, 300, 1000, 65535 }) do
        it(("carries a topic of %d bytes"):format(len), function()
            local base = topic_prefix() .. "/"
            local topic = base .. string.rep("t", len - #base)
            assert.equal(len, #topic)
            local a, got = client()
            local ack = subscribe(a, topic, 1)
            assert.same({ 1 }, ack.granted_qos)
            a:publish(topic, "long topic " .. len, 1)
            a:publish(topic, "long topic " .. len .. " q2", 2)
            assert.is_true(wait_for(function() return #got == 2 end))
            for _, m in ipairs(got) do
                assert.equal(len, #m.topic)
                assert.is_true(m.topic == topic)
            end
            assert.equal("long topic " .. len, got[1].payload)
            assert.equal("long topic " .. len .. " q2", got[2].payload)
        end)
    end

    it("carries a UTF-8 topic byte-exact", function()
        local topic = topic_prefix() .. "/données/温度/✓"
        local a, got = client()
        subscribe(a, topic, 0)
        a:publish(topic, "utf8", 0)
        assert.is_true(wait_for(function() return #got == 1 end))
        assert.equal(topic, got[1].topic)
    end)

    it("fills every MQTTMessage field and shares the mqtt.MQTTMessage metatable", function()
        local base = topic_prefix()
        local a, got = client()
        subscribe(a, base .. "/#", 2)
        a:publish(base .. "/q0", "zero", 0)
        a:publish(base .. "/q1", "one", 1)
        a:publish(base .. "/q2", "two", 2)
        assert.is_true(wait_for(function() return #got == 3 end))
        local by_qos = {}
        for _, m in ipairs(got) do by_qos[m.qos] = m end
        for qos, payload in pairs({ [0] = "zero", "one", "two" }) do
            local m = by_qos[qos]
            assert.is_table(m)
            assert.equal(mqtt.MQTTMessage, getmetatable(m))
            assert.equal(base .. "/q" .. qos, m.topic)
            assert.equal(payload, m.payload)
            assert.equal(qos, m.qos)
            assert.equal("boolean", type(m.retain))
            assert.is_false(m.retain)
            assert.equal("boolean", type(m.dup))
            assert.is_false(m.dup)
            assert.equal("integer", math_type(m.mid))
            if qos == 0 then assert.equal(0, m.mid) else assert.is_true(m.mid > 0) end
            local s = tostring(m)
            assert.truthy(s:find("MQTTMessage", 1, true), s)
            assert.truthy(s:find(base .. "/q" .. qos, 1, true), s)
            assert.truthy(s:find(payload, 1, true), s)
            assert.truthy(s:find("qos=" .. qos, 1, true), s)
        end
        assert.is_true(getmetatable(by_qos[0]) == getmetatable(by_qos[2]))
    end)

    it("makes tostring(msg) readable for binary and long payloads", function()
        local base = topic_prefix()
        local a, got = client()
        subscribe(a, base, 0)
        a:publish(base, "\0\1\2" .. string.rep("z", 5000), 0)
        assert.is_true(wait_for(function() return #got == 1 end))
        local s = tostring(got[1])
        assert.is_true(#s < 400, "tostring is " .. #s .. " bytes long")
        assert.is_nil(s:find("\0", 1, true))
    end)

    it("returns a fresh non-zero mid from every publish, QoS 0 included", function()
        -- API: "returns at once with its message id (QoS 0 included, so the
        -- value can be used in conditions)".
        local base = topic_prefix()
        local a = client()
        local mids = {}
        for i = 1, 20 do
            for qos = 0, 2 do
                local mid = a:publish(base, "q" .. qos .. " " .. i, qos)
                assert.equal("integer", math_type(mid))
                assert.is_true(mid > 0 and mid <= 65535, "QoS " .. qos .. " mid " .. tostring(mid))
                assert.is_nil(mids[mid], "mid " .. mid .. " returned twice")
                mids[mid] = true
            end
        end
    end)

    it("passes to PUBACK callbacks the mid publish returned, exactly once each", function()
        local base = topic_prefix()
        local a = client()
        local acked = {}
        a:on(mqtt.PUBACK, function(_, d)
            assert.equal("integer", math_type(d.mid))
            assert.equal(0, d.return_code)
            acked[#acked + 1] = d.mid
        end)
        local sent = {}
        for i = 1, 10 do sent[#sent + 1] = a:publish(base, "m" .. i, 1) end
        assert.is_true(wait_for(function() return #acked == 10 end))
        mqtt.sleep(0.05)
        table.sort(sent)
        table.sort(acked)
        assert.same(sent, acked)
    end)

    it("runs a PUBACK callback whose condition is data.mid == mid for that message only",
       function()
        local base = topic_prefix()
        local a = client()
        local other = 0
        a:on(mqtt.PUBACK, function() other = other + 1 end)
        a:publish(base, "before", 1)
        local mid = a:publish(base, "watched", 1)
        a:publish(base, "after", 1)
        local hits = {}
        a:on(mqtt.PUBACK, function(_, d) hits[#hits + 1] = d.mid end,
             function(d) return d.mid == mid end)
        assert.is_true(wait_for(function() return #hits + other == 3 end))
        assert.same({ mid }, hits)
        assert.equal(2, other)
    end)

    it("passes to PUBREC and PUBCOMP callbacks the mid publish returned (QoS 2)", function()
        local base = topic_prefix()
        local a = client()
        local rec, comp, order = {}, {}, {}
        a:on(mqtt.PUBREC, function(_, d) rec[#rec + 1] = d.mid; order[#order + 1] = "rec" .. d.mid end)
        a:on(mqtt.PUBCOMP, function(_, d) comp[#comp + 1] = d.mid; order[#order + 1] = "comp" .. d.mid end)
        local sent = {}
        for i = 1, 5 do sent[#sent + 1] = a:publish(base, "m" .. i, 2) end
        assert.is_true(wait_for(function() return #comp == 5 end))
        mqtt.sleep(0.05)
        for _, list in ipairs({ rec, comp }) do
            local s = { compat.unpack(list) }
            table.sort(s)
            local want = { compat.unpack(sent) }
            table.sort(want)
            assert.same(want, s)
        end
        -- Each message's PUBREC comes before its PUBCOMP.
        for _, mid in ipairs(sent) do
            local r, c
            for i, e in ipairs(order) do
                if e == "rec" .. mid then r = i elseif e == "comp" .. mid then c = i end
            end
            assert.is_true(r < c, "PUBCOMP before PUBREC for mid " .. mid)
        end
    end)

    it("gives SUBACK the subscribe mid and one granted QoS per filter", function()
        local base = topic_prefix()
        local a = client()
        local ack, mid = subscribe(a, { { base .. "/zero", 0 }, { base .. "/one/+", 1 },
                                        { base .. "/two/#", 2 } })
        assert.equal("integer", math_type(mid))
        assert.is_true(mid > 0)
        assert.equal(mid, ack.mid)
        assert.equal(0, ack.return_code)
        assert.same({ 0, 1, 2 }, ack.granted_qos)
        -- The single-filter form.
        local ack2, mid2 = subscribe(a, base .. "/single", 1)
        assert.are_not.equal(mid, mid2)
        assert.equal(mid2, ack2.mid)
        assert.same({ 1 }, ack2.granted_qos)
    end)

    it("reports a refused filter as 0x80 in granted_qos", function()
        local fb = FakeBroker.new()
        finally(function() fb:close() end)
        local c = clients:new()
        c:connect_async(fb.host, 60, fb.port)
        fb:handshake()
        assert.is_true(wait_for(function() return c:is_connected() end))
        local ack
        c:on(mqtt.SUBACK, function(_, d) ack = d end)
        local mid = c:subscribe({ { "ok/a", 1 }, { "denied/b", 2 }, { "ok/c", 2 } })
        local p = fb:expect(FakeBroker.SUBSCRIBE)
        assert.equal(mid, p.packet_id)
        assert.same({ "ok/a", "denied/b", "ok/c" },
                    { p.topics[1].filter, p.topics[2].filter, p.topics[3].filter })
        assert.same({ 1, 2, 2 }, { p.topics[1].qos, p.topics[2].qos, p.topics[3].qos })
        fb:send(FakeBroker.suback(mid, { 1, 0x80, 2 }))
        assert.is_true(wait_for(function() return ack ~= nil end))
        assert.equal(mid, ack.mid)
        assert.same({ 1, 0x80, 2 }, ack.granted_qos)
    end)

    it("gives UNSUBACK the unsubscribe mid, and no message arrives after it", function()
        local base = topic_prefix()
        local a, got = client()
        subscribe(a, { { base .. "/a", 1 }, { base .. "/b", 1 } })
        local unack
        local mid = a:unsubscribe({ base .. "/a", base .. "/b" })
        assert.equal("integer", math_type(mid))
        assert.is_true(mid > 0)
        a:on(mqtt.UNSUBACK, function(_, d) unack = d end)
        assert.is_true(wait_for(function() return unack ~= nil end))
        assert.equal(mid, unack.mid)
        assert.equal(0, unack.return_code)
        local probe = a:publish(base .. "/a", "after unsubscribe", 1)
        local acked = false
        a:on(mqtt.PUBACK, function() acked = true end, function(d) return d.mid == probe end)
        assert.is_true(wait_for(function() return acked end))
        mqtt.sleep(0.1)
        assert.equal(0, #got)
        -- The single-filter form.
        subscribe(a, base .. "/c", 0)
        local mid2 = a:unsubscribe(base .. "/c")
        local unack2
        a:on(mqtt.UNSUBACK, function(_, d) unack2 = d end)
        assert.is_true(wait_for(function() return unack2 ~= nil end))
        assert.equal(mid2, unack2.mid)
    end)

    it("marks a retained message retain=true for a new subscriber, live delivery retain=false",
       function()
        local topic = topic_prefix() .. "/retained"
        local a = client()
        local mid = a:publish(topic, "kept", 1, true)
        local acked = false
        a:on(mqtt.PUBACK, function() acked = true end, function(d) return d.mid == mid end)
        assert.is_true(wait_for(function() return acked end))

        local b, got = client()
        subscribe(b, topic, 1)
        assert.is_true(wait_for(function() return #got == 1 end))
        assert.equal("kept", got[1].payload)
        assert.is_true(got[1].retain)
        assert.equal(topic, got[1].topic)

        -- Live: published with and without retain while b is subscribed.
        a:publish(topic, "live retained", 1, true)
        a:publish(topic, "live plain", 1, false)
        assert.is_true(wait_for(function() return #got == 3 end))
        assert.equal("live retained", got[2].payload)
        assert.is_false(got[2].retain)
        assert.equal("live plain", got[3].payload)
        assert.is_false(got[3].retain)

        -- The last retained one replaced the first; an empty retained payload clears it.
        local c, got_c = client()
        subscribe(c, topic, 0)
        assert.is_true(wait_for(function() return #got_c == 1 end))
        assert.equal("live retained", got_c[1].payload)
        assert.is_true(got_c[1].retain)
        local clear = a:publish(topic, "", 1, true)
        local cleared = false
        a:on(mqtt.PUBACK, function() cleared = true end, function(d) return d.mid == clear end)
        assert.is_true(wait_for(function() return cleared end))
        local d, got_d = client()
        subscribe(d, topic, 0)
        mqtt.sleep(0.1)
        assert.equal(0, #got_d)
    end)

    it("delivers QoS 2 exactly once: PUBLISH has the mid only, PUBREL carries the message",
       function()
        local base = topic_prefix()
        local a, got = client()
        local b = client()
        subscribe(a, base, 2)
        local publish_events, pubrel_events = {}, {}
        a:on(mqtt.PUBLISH, function(_, d) publish_events[#publish_events + 1] = d end)
        -- A specific PUBREL callback that never matches: it records what it is
        -- shown, and on_message (the generic PUBREL callback) still runs.
        a:on(mqtt.PUBREL, function() error("condition returned false") end, function(d)
            pubrel_events[#pubrel_events + 1] = d
            return false
        end)
        local N = 20
        for i = 1, N do b:publish(base, "exactly once " .. i, 2) end
        assert.is_true(wait_for(function() return #got >= N end))
        mqtt.sleep(0.2)
        assert.equal(N, #got)
        local seen = {}
        for _, m in ipairs(got) do
            assert.equal(2, m.qos)
            assert.is_nil(seen[m.payload], "delivered twice: " .. m.payload)
            seen[m.payload] = true
        end
        for i = 1, N do assert.is_true(seen["exactly once " .. i]) end

        assert.equal(N, #publish_events)
        assert.equal(N, #pubrel_events)
        local publish_mids = {}
        for _, d in ipairs(publish_events) do
            assert.is_nil(d.message)
            assert.equal("integer", math_type(d.mid))
            assert.is_true(d.mid > 0)
            publish_mids[d.mid] = true
        end
        for _, d in ipairs(pubrel_events) do
            assert.is_table(d.message)
            assert.equal(mqtt.MQTTMessage, getmetatable(d.message))
            assert.equal(d.mid, d.message.mid)
            assert.is_true(publish_mids[d.mid], "PUBREL for a mid PUBLISH never showed")
        end
    end)

    describe("with the reference clients", function()
        it("what zmqtt publishes reaches mosquitto_sub byte-exact", function()
            local base = topic_prefix()
            local payloads = { "", "plain text", "\0\1\2\0\255 nul inside", binary(100000, 3) }
            local sub = helpers.mosquitto_sub_collect(broker, { topic = base .. "/#", qos = 2,
                                                               count = #payloads * 3 })
            local a = client()
            for i, p in ipairs(payloads) do
                for qos = 0, 2 do a:publish(base .. "/" .. i .. "/" .. qos, p, qos) end
            end
            local msgs, done = sub.wait(10, helpers.dispatcher())
            assert.is_true(done, "mosquitto_sub did not get every message: " .. sub.output())
            assert.equal(#payloads * 3, #msgs)
            local by_topic = {}
            for _, m in ipairs(msgs) do by_topic[m.topic] = m end
            for i, p in ipairs(payloads) do
                for qos = 0, 2 do
                    local m = by_topic[base .. "/" .. i .. "/" .. qos]
                    assert.is_table(m, "missing " .. i .. "/" .. qos)
                    assert.equal(qos, m.qos)
                    assert.equal(#p, #m.payload)
                    assert.is_true(m.payload == p, "payload " .. i .. " differs: " ..
                                   show(m.payload))
                end
            end
        end)

        it("what mosquitto_pub publishes reaches zmqtt byte-exact", function()
            local base = topic_prefix()
            local a, got = client()
            subscribe(a, base .. "/#", 2)
            local payloads = { "", "plain text", "\0\1\2\0\255 nul inside", binary(200000, 4) }
            for i, p in ipairs(payloads) do
                local qos = (i - 1) % 3
                local ok, code, out = helpers.mosquitto_pub(broker, {
                    topic = base .. "/" .. i, message = p, qos = qos })
                assert.is_true(ok, "mosquitto_pub failed (" .. tostring(code) .. "): " .. out)
            end
            assert.is_true(wait_for(function() return #got == #payloads end))
            local by_topic = {}
            for _, m in ipairs(got) do by_topic[m.topic] = m end
            for i, p in ipairs(payloads) do
                local m = by_topic[base .. "/" .. i]
                assert.is_table(m)
                assert.equal((i - 1) % 3, m.qos)
                assert.equal(#p, #m.payload)
                assert.is_true(m.payload == p, "payload " .. i .. " differs: " .. show(m.payload))
            end
        end)

        it("receives a retained message from mosquitto_pub with retain=true", function()
            local topic = topic_prefix() .. "/r"
            local ok, _, out = helpers.mosquitto_pub(broker, { topic = topic, message = "ref",
                                                              qos = 1, retain = true })
            assert.is_true(ok, out)
            local a, got = client()
            subscribe(a, topic, 1)
            assert.is_true(wait_for(function() return #got == 1 end))
            assert.equal("ref", got[1].payload)
            assert.is_true(got[1].retain)
            helpers.mosquitto_pub(broker, { topic = topic, message = "", qos = 1, retain = true })
        end)
    end)

    it("delivers 1,000 QoS 1 messages published quickly, all of them, in order", function()
        local base = topic_prefix()
        local a = client()
        local b, got = client()
        subscribe(b, base, 1)
        local acked = 0
        a:on(mqtt.PUBACK, function() acked = acked + 1 end)
        local N = 1000
        for i = 1, N do a:publish(base, tostring(i), 1) end
        assert.is_true(wait_for(function() return #got >= N and acked >= N end, 20),
                       ("received %d, acknowledged %d of %d"):format(#got, acked, N))
        mqtt.sleep(0.05)
        assert.equal(N, #got)
        assert.equal(N, acked)
        for i = 1, N do
            if got[i].payload ~= tostring(i) then
                error(("message %d is %q: out of order or lost"):format(i, got[i].payload))
            end
        end
    end)
end)
