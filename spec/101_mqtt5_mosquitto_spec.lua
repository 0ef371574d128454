-- spec/101_mqtt5_mosquitto_spec.lua: MQTT 5.0 end to end against mosquitto
-- 2.0.11 (API.md "MQTT 5.0 (extension)", issue 14), for what
-- spec/100_mqtt5_spec.lua's mosquitto specs leave out: will delay and session
-- expiry, whose timers the broker runs; retain_handling and
-- retain_as_published; the client's own maximum_packet_size; outgoing topic
-- aliases as they go over the wire.
--
-- mosquitto checks both timers once per wall-clock second and fires a timer
-- set at second s for n seconds once the clock reads s + n + 1: a 1 s will
-- delay or session expiry ends 1 to 2 s after the connection does. The specs
-- never sleep to assert: they wait for the broker's own events (a will
-- arriving, its log saying a connection ended or a session expired) and put
-- a marker message through the broker to show what has not happened yet.
-- Clients whose timer must not have run out yet are cut before the one whose
-- event is awaited, so the broker's clock has passed theirs too by then.

local helpers = require("helpers")
local mqtt = require("mqtt")
local proxy = require("proxy")
local FB = require("fake_broker")

local HOST = helpers.HOST
local FAST = { min = 0.05, max = 0.2 }

-- Client options: MQTT 5.0, plus `extra`.
local function v5(extra)
    local o = { protocol = mqtt.MQTTv5, reconnect = FAST }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
end

-- The payloads of a list of messages, in order.
local function payloads(list)
    local t = {}
    for i, m in ipairs(list) do t[i] = m.payload end
    return t
end

describe("MQTT 5.0 (mosquitto, more)", function()
    local broker, clients = helpers.with_broker(nil, "z5x", v5())

    -- Connects c (MQTT 5.0, to the broker or to `port`) with its events
    -- recorded and dispatched up to the CONNACK; returns c and the record.
    local function connect(c, port)
        local rec = helpers.record_events(c)
        c:connect(HOST, 10, port or broker.port)
        assert.are.equal(5, c:protocol())
        assert.is_true(helpers.wait_dispatch(function() return #rec.connacks == 1 end))
        return c, rec
    end

    -- Dispatches until the broker's log has `text` (its id makes it unique).
    local function broker_logged(text)
        local found = helpers.wait_dispatch(function()
            return (helpers.read_file(broker.log_file) or ""):find(text, 1, true) ~= nil
        end, 5)
        assert.is_true(found, "the broker never logged: " .. text)
    end

    -- A watcher subscribed to `filter`; returns the list of what it gets and
    -- mark(), which puts a message through the broker to the watcher and
    -- returns once it arrived: whatever the broker had sent before is there.
    local function watch(filter, marker_topic)
        local c = connect(clients:new())
        local got = helpers.watch(c, filter, 1)
        local n = 0
        local function mark()
            n = n + 1
            local payload = "marker " .. n
            assert(c:wait(c:publish(marker_topic, payload, 1), 5))
            assert.is_true(helpers.wait_dispatch(function()
                return got[#got] and got[#got].payload == payload
            end), "the marker did not come back")
        end
        return got, mark
    end

    -- A persistent-session client with a will on `topic` whose payload is
    -- its topic; `will` and `opts` add will properties and client options.
    local function with_will(topic, will, opts)
        local c = clients:new(nil, false, v5(opts))
        c:set_will(topic, topic, 1, false, will)
        return connect(c)
    end

    describe("will delay", function()
        it("a cut connection and disconnect(0x04) publish the will only after the delay",
           function()
            local got, mark = watch("wd1/#", "wd1/marker")
            local cut = with_will("wd1/cut", { will_delay_interval = 1, content_type = "w/d" })
            local asked = with_will("wd1/asked", { will_delay_interval = 1 })
            local cut_id, asked_id = cut:client_id(), asked:client_id()
            cut:close()
            asked:disconnect(0x04)
            broker_logged("Client " .. cut_id .. " closed its connection.")
            broker_logged("Client " .. asked_id .. " disconnected.")
            mark()
            assert.are.same({ "marker 1" }, payloads(got))   -- both wills still held
            assert.is_true(helpers.wait_dispatch(function() return #got == 3 end, 5))
            local wills = { got[2].payload, got[3].payload }
            table.sort(wills)
            assert.are.same({ "wd1/asked", "wd1/cut" }, wills)
            local m = got[2].payload == "wd1/cut" and got[2] or got[3]
            assert.are.equal("w/d", m.properties.content_type)
        end)

        it("is cancelled by resuming the session in time, cut short when the session ends",
           function()
            local got, mark = watch("wd2/#", "wd2/marker")
            local back = with_will("wd2/back", { will_delay_interval = 1 })
            -- A 60 s delay, but a session that ends 1 s after the connection.
            local gone = with_will("wd2/gone", { will_delay_interval = 60 },
                                   { session_expiry_interval = 1 })
            local back_id, gone_id = back:client_id(), gone:client_id()
            back:close()
            broker_logged("Client " .. back_id .. " closed its connection.")
            local again, rec = connect(clients:new(back_id, false, v5()))
            assert.is_true(rec.connacks[1].session_present)
            gone:close()
            broker_logged("Expiring client " .. gone_id .. " due to timeout.")
            assert.is_true(helpers.wait_dispatch(function() return #got == 1 end, 5))
            -- back was cut before gone: its 1 s had passed when gone's
            -- session ended, and no will of its came before the marker.
            mark()
            assert.are.same({ "wd2/gone", "marker 1" }, payloads(got))
            assert.is_true(again:is_connected())
        end)
    end)

    describe("session expiry", function()
        -- A persistent session subscribed to `topic` at QoS 1, its client
        -- connected; returns the client, its record and its id.
        local function session(topic, opts)
            local c, rec = connect(clients:new(nil, false, v5(opts)))
            helpers.subscribe_wait(c, topic, 1)
            return c, rec, c:client_id()
        end

        -- Publishes payload at QoS 1 through a client of its own, acknowledged.
        local publisher
        local function publish(topic, payload)
            publisher = publisher and publisher:is_connected() and publisher or
                        connect(clients:new())
            assert(publisher:wait(publisher:publish(topic, payload, 1), 5))
        end
        after_each(function() publisher = nil end)

        -- Connects id again (persistent, client options opts) collecting
        -- messages; returns the CONNACK's session_present, the list of
        -- messages and the client.
        local function resume(id, topic, opts)
            local c = clients:new(id, false, v5(opts))
            local got = helpers.collect(c)
            local _, rec = connect(c)
            local present = rec.connacks[1].session_present
            if not present then helpers.subscribe_wait(c, topic, 1) end
            return present, got, c
        end

        -- Puts a marker through `topic` to c, which collects into got.
        local function marked(got, topic)
            publish(topic, "marker")
            assert.is_true(helpers.wait_dispatch(function()
                return got[#got] and got[#got].payload == "marker"
            end), "the marker did not come back")
            return payloads(got)
        end

        it("resumes within the interval with the queued messages; after it, nothing is left",
           function()
            -- 5 s: ample time to come back; each CONNECT sets the interval
            -- again, so the next one asks for 1 s.
            local c, _, id = session("se1/t", { session_expiry_interval = 5 })
            c:close()
            broker_logged("Client " .. id .. " closed its connection.")
            publish("se1/t", "queued 1")
            local present, got, again = resume(id, "se1/t", { session_expiry_interval = 1 })
            assert.is_true(present)
            assert.are.same({ "queued 1", "marker" }, marked(got, "se1/t"))

            again:disconnect()
            broker_logged("Client " .. id .. " disconnected.")
            publish("se1/t", "queued 2")
            broker_logged("Expiring client " .. id .. " due to timeout.")
            present, got = resume(id, "se1/t")
            assert.is_false(present)
            assert.are.same({ "marker" }, marked(got, "se1/t"))
        end)

        it("DISCONNECT's session_expiry_interval replaces the CONNECT's", function()
            -- 0xFFFFFFFF (persistent default) -> 0: gone at the disconnect.
            local ended, _, ended_id = session("se2/a")
            ended:disconnect(0, { session_expiry_interval = 0 })
            broker_logged("Client " .. ended_id .. " disconnected.")
            publish("se2/a", "lost")
            local present, got = resume(ended_id, "se2/a")
            assert.is_false(present)
            assert.are.same({ "marker" }, marked(got, "se2/a"))

            -- 1 -> 3600: kept past the second the CONNECT asked for, which a
            -- session left at 1 s, disconnected after it, shows has passed.
            local kept, _, kept_id = session("se2/b", { session_expiry_interval = 1 })
            local short, _, short_id = session("se2/c", { session_expiry_interval = 1 })
            kept:disconnect(0, { session_expiry_interval = 3600 })
            broker_logged("Client " .. kept_id .. " disconnected.")
            short:disconnect()
            publish("se2/b", "kept")
            broker_logged("Expiring client " .. short_id .. " due to timeout.")
            present, got = resume(kept_id, "se2/b")
            assert.is_true(present)
            assert.are.same({ "kept", "marker" }, marked(got, "se2/b"))
        end)
    end)

    -- What spec/100's mosquitto specs leave out of issue 14's list.

    describe("subscription options", function()
        it("retain_handling 0, 1 and 2, and retain_as_published", function()
            local pub = connect(clients:new())
            assert(pub:wait(pub:publish("rh/t", "kept", 1, true), 5))
            -- Each subscriber's options, and whether it subscribes twice.
            local subs = {
                always = { { qos = 1, retain_handling = 0 }, true },
                new = { { qos = 1, retain_handling = 1 }, true },
                never = { { qos = 1, retain_handling = 2 } },
                as_published = { { qos = 1, retain_as_published = true } },
            }
            local got = {}
            for name, s in pairs(subs) do
                local c = connect(clients:new())
                got[name] = helpers.collect(c)
                for _ = 1, s[2] and 2 or 1 do
                    local ack = assert(c:wait(c:subscribe({ { "rh/t", s[1] } }), 5))
                    assert.are.same({ 1 }, ack.reason_codes)
                end
            end
            -- A live message published with retain set, after every SUBACK.
            assert(pub:wait(pub:publish("rh/t", "live", 1, true), 5))
            assert.is_true(helpers.wait_dispatch(function()
                for _, list in pairs(got) do
                    if #list == 0 or list[#list].payload ~= "live" then return false end
                end
                return true
            end), "the live message did not reach every subscriber")
            local seen = {}
            for name, list in pairs(got) do
                seen[name] = {}
                for i, m in ipairs(list) do seen[name][i] = m.payload .. (m.retain and "/r" or "") end
            end
            -- What the broker sends at SUBSCRIBE is flagged retained; a live
            -- message keeps its flag only with retain_as_published.
            assert.are.same({
                always = { "kept/r", "kept/r", "live" },
                new = { "kept/r", "live" },
                never = { "live" },
                as_published = { "kept/r", "live/r" },
            }, seen)
        end)
    end)

    describe("limits the client announces", function()
        it("maximum_packet_size: the broker drops what would not fit, sends the rest", function()
            local c = clients:new(nil, true, v5({ properties = { maximum_packet_size = 200 } }))
            local got = helpers.watch(connect(c), "mp/#", 1)
            local pub = connect(clients:new())
            assert(pub:wait(pub:publish("mp/big", string.rep("b", 500), 1), 5))
            assert(pub:wait(pub:publish("mp/small", "fits", 1), 5))
            assert.is_true(helpers.wait_dispatch(function() return #got == 1 end))
            assert.are.equal("fits", got[1].payload)
            broker_logged("Dropping too large outgoing PUBLISH for " .. c:client_id())
            assert.is_true(c:is_connected())
        end)
    end)

    describe("topic aliases", function()
        it("the broker takes the client's aliases: the topic once, then the alias alone",
           function()
            local topic = "ta/" .. string.rep("t", 100)
            local got = helpers.watch(connect(clients:new()), "ta/#", 1)
            local p = proxy.start(broker.port)
            finally(function() p:stop() end)
            local dir = helpers.tmpdir("zmqtt-alias")
            p:record(dir)
            local c = connect(clients:new(), p.port)
            for i = 1, 3 do assert(c:wait(c:publish(topic, "m" .. i, 1), 5)) end
            assert.is_true(helpers.wait_dispatch(function() return #got == 3 end))
            for i = 1, 3 do
                assert.are.equal(topic, got[i].topic)
                assert.are.equal("m" .. i, got[i].payload)
            end
            -- What went up the wire: every PUBLISH with alias 1, the topic
            -- only in the first.
            local up = helpers.read_file(dir .. "/conn-001-up.bin")
            local sent, pos = {}, 1
            while pos <= #up do
                local packet, after = FB.decode(up, pos, 5)
                assert(packet, after)
                if packet.name == "PUBLISH" then
                    sent[#sent + 1] = packet.topic .. "@" .. packet.properties.topic_alias
                end
                pos = after
            end
            assert.are.same({ topic .. "@1", "@1", "@1" }, sent)
        end)
    end)
end)
