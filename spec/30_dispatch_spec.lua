-- spec/30_dispatch_spec.lua: the Zerynth dispatch rule and the places where
-- callbacks run (dispatch, mqtt.dispatch, mqtt.sleep, mqtt.run, fd), against
-- a private mosquitto. Clients mostly publish to a subscription of their own.

local mqtt = require("mqtt")
local helpers = require("helpers")
local socket = require("socket")
local compat = require("compat")

local HOST = helpers.HOST
local math_type = compat.math_type

describe("dispatch", function()
    local broker, clients = helpers.with_broker(nil, "zdisp")
    local wait = helpers.wait_dispatch

    -- Dispatches for `seconds` more, so that anything wrongly delivered twice shows.
    local function settle(seconds)
        mqtt.sleep(seconds or 0.2)
    end

    local function connected(keepalive, id, clean)
        local c = clients:new(id, clean)
        c:connect(HOST, keepalive or 60, broker.port)
        return c
    end

    -- A connected client subscribed (QoS 2) to prefix/#; returns client, prefix.
    local function self_subscribed(keepalive)
        local c = connected(keepalive)
        local prefix = helpers.unique("zd")
        helpers.subscribe_wait(c, prefix .. "/#", 2)
        c:dispatch(0)
        return c, prefix
    end

    describe("the priority rule", function()
        it("considers specific callbacks from the highest priority down; the first true condition " ..
           "wins alone", function()
            local c, prefix = self_subscribed()
            local considered, ran = {}, {}
            local function reg(prio, result)
                c:on(mqtt.PUBLISH, function() ran[#ran + 1] = prio end,
                     function() considered[#considered + 1] = prio; return result end, prio)
            end
            reg(1, true)
            reg(5, false)
            reg(-2, true)
            reg(3, false)
            reg(0, true)
            c:publish(prefix .. "/x", "p", 0)
            assert.is_true(wait(function() return #ran > 0 end))
            settle()
            assert.are.same({ 5, 3, 1 }, considered)
            assert.are.same({ 1 }, ran)
        end)

        it("runs only the highest-priority match even when several conditions are true", function()
            local c, prefix = self_subscribed()
            local ran = {}
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "low" end, function() return true end, 1)
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "high" end, function() return true end, 10)
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "mid" end, function() return true end, 5)
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "generic" end)
            c:publish(prefix .. "/x", "p", 1)
            assert.is_true(wait(function() return #ran > 0 end))
            settle()
            assert.are.same({ "high" }, ran)
        end)

        it("treats any true value (not only true) as a match and nil/false as no match", function()
            local c, prefix = self_subscribed()
            local ran = {}
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "nil" end, function() return nil end, 3)
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "false" end, function() return false end, 2)
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "string" end, function() return "yes" end, 1)
            c:publish(prefix .. "/x", "p", 0)
            assert.is_true(wait(function() return #ran > 0 end))
            settle()
            assert.are.same({ "string" }, ran)
        end)

        it("gives equal priorities to the one registered first", function()
            local c, prefix = self_subscribed()
            local ran = {}
            for _, name in ipairs { "A", "B", "C" } do
                c:on(mqtt.PUBLISH, function() ran[#ran + 1] = name end, function() return true end, 2)
            end
            c:publish(prefix .. "/1", "p", 0)
            assert.is_true(wait(function() return #ran >= 1 end))
            -- A later registration at the same priority still loses ...
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "D" end, function() return true end, 2)
            c:publish(prefix .. "/2", "p", 0)
            assert.is_true(wait(function() return #ran >= 2 end))
            -- ... and one at a higher priority wins.
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "E" end, function() return true end, 3)
            c:publish(prefix .. "/3", "p", 0)
            assert.is_true(wait(function() return #ran >= 3 end))
            settle()
            assert.are.same({ "A", "A", "E" }, ran)
        end)

        it("runs the generic callback only when no specific condition matched", function()
            local c, prefix = self_subscribed()
            local specific, generic = {}, {}
            c:on(mqtt.PUBLISH, function(_, d) specific[#specific + 1] = d.message.topic end,
                 function(d) return d.message ~= nil and d.message.topic == prefix .. "/yes" end)
            c:on(mqtt.PUBLISH, function(_, d) generic[#generic + 1] = d.message.topic end)
            c:publish(prefix .. "/yes", "1", 0)
            c:publish(prefix .. "/no", "2", 0)
            c:publish(prefix .. "/yes", "3", 1)
            c:publish(prefix .. "/other", "4", 1)
            assert.is_true(wait(function() return #specific + #generic >= 4 end))
            settle()
            assert.are.same({ prefix .. "/yes", prefix .. "/yes" }, specific)
            assert.are.same({ prefix .. "/no", prefix .. "/other" }, generic)
        end)

        it("keeps at most one generic callback per command: setting another replaces it", function()
            local c, prefix = self_subscribed()
            local ran = {}
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "g1" end)
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "g2" end)
            -- a generic on another command is independent
            c:on(mqtt.PUBACK, function() ran[#ran + 1] = "puback" end)
            c:publish(prefix .. "/x", "p", 0)
            c:publish(prefix .. "/y", "p", 0)
            assert.is_true(wait(function() return #ran >= 2 end))
            settle()
            assert.are.same({ "g2", "g2" }, ran)
        end)

        it("passes the same data table to every condition and to the callback, and the client", function()
            local c, prefix = self_subscribed()
            local seen = {}
            local cb_client, cb_data
            c:on(mqtt.PUBLISH, function() error("must not run") end,
                 function(d) seen[#seen + 1] = d; return false end, 9)
            c:on(mqtt.PUBLISH, function() error("must not run") end,
                 function(d) seen[#seen + 1] = d; return false end, 5)
            c:on(mqtt.PUBLISH, function(cl, d) cb_client, cb_data = cl, d end,
                 function(d) seen[#seen + 1] = d; return true end, 1)
            c:publish(prefix .. "/x", "payload", 1)
            assert.is_true(wait(function() return cb_data ~= nil end))
            assert.are.equal(3, #seen)
            assert.is_true(rawequal(seen[1], seen[2]))
            assert.is_true(rawequal(seen[2], seen[3]))
            assert.is_true(rawequal(seen[3], cb_data))
            assert.is_true(rawequal(c, cb_client))
            assert.are.equal("payload", cb_data.message.payload)
            assert.are.equal(prefix .. "/x", cb_data.message.topic)
            assert.are.equal(1, cb_data.message.qos)
        end)

        it("uses priority 0 by default and orders negative priorities below it", function()
            local c, prefix = self_subscribed()
            local ran = {}
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "neg1" end, function() return true end, -1)
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "default" end, function() return true end)
            c:on(mqtt.PUBLISH, function() ran[#ran + 1] = "zero" end, function() return true end, 0)
            c:publish(prefix .. "/1", "p", 0)
            assert.is_true(wait(function() return #ran >= 1 end))
            settle(0.1)
            -- default (registered before the explicit 0) equals 0 and beats -1
            assert.are.same({ "default" }, ran)

            -- Only negative ones can match now: -1 beats -5.
            local c2, prefix2 = self_subscribed()
            local ran2 = {}
            c2:on(mqtt.PUBLISH, function() ran2[#ran2 + 1] = "neg5" end, function() return true end, -5)
            c2:on(mqtt.PUBLISH, function() ran2[#ran2 + 1] = "zero" end, function() return false end)
            c2:on(mqtt.PUBLISH, function() ran2[#ran2 + 1] = "neg1" end, function() return true end, -1)
            c2:on(mqtt.PUBLISH, function() ran2[#ran2 + 1] = "generic" end)
            c2:publish(prefix2 .. "/1", "p", 0)
            assert.is_true(wait(function() return #ran2 >= 1 end))
            settle(0.1)
            assert.are.same({ "neg1" }, ran2)
        end)

        it("off() removes a specific callback and the generic callback", function()
            local c, prefix = self_subscribed()
            local ran = {}
            local function spec_fn() ran[#ran + 1] = "specific" end
            local function gen_fn() ran[#ran + 1] = "generic" end
            c:on(mqtt.PUBLISH, spec_fn, function() return true end, 1)
            c:on(mqtt.PUBLISH, gen_fn)
            c:publish(prefix .. "/1", "p", 0)
            assert.is_true(wait(function() return #ran >= 1 end))
            c:off(mqtt.PUBLISH, spec_fn)
            c:publish(prefix .. "/2", "p", 0)
            assert.is_true(wait(function() return #ran >= 2 end))
            c:off(mqtt.PUBLISH, gen_fn)
            local before = #ran
            c:publish(prefix .. "/3", "p", 0)
            local n = 0
            assert.is_true(helpers.wait_until(function()
                n = n + c:dispatch(0)
                return n >= 1
            end, 5))
            settle()
            assert.are.same({ "specific", "generic" }, ran)
            assert.are.equal(before, #ran)
        end)
    end)

    describe("loop(on_message)", function()
        it("delivers QoS 0, 1 and 2 messages exactly once each", function()
            local c, prefix = self_subscribed()
            local got = {}
            c:loop(function(cl, d)
                assert.is_true(rawequal(c, cl))
                got[#got + 1] = d
            end)
            c:publish(prefix .. "/q0", "zero", 0)
            c:publish(prefix .. "/q1", "one", 1)
            c:publish(prefix .. "/q2", "two", 2)
            assert.is_true(wait(function() return #got >= 3 end))
            settle(0.5)
            assert.are.equal(3, #got)
            local by_topic = {}
            for _, d in ipairs(got) do
                assert.is_table(d.message)
                assert.is_nil(by_topic[d.message.topic])
                by_topic[d.message.topic] = d
            end
            assert.are.equal("zero", by_topic[prefix .. "/q0"].message.payload)
            assert.are.equal(0, by_topic[prefix .. "/q0"].message.qos)
            assert.are.equal("one", by_topic[prefix .. "/q1"].message.payload)
            assert.are.equal(1, by_topic[prefix .. "/q1"].message.qos)
            local q2 = by_topic[prefix .. "/q2"]
            assert.are.equal("two", q2.message.payload)
            assert.are.equal(2, q2.message.qos)
            -- QoS 2 comes with PUBREL, whose data also has the mid
            assert.are.equal(q2.message.mid, q2.mid)
            assert.is_true(q2.mid > 0)
        end)

        it("loses to a user PUBLISH callback at priority 0 with a topic condition", function()
            local c, prefix = self_subscribed()
            local mine, on_msg = {}, {}
            c:loop(function(_, d) on_msg[#on_msg + 1] = d.message.topic .. "#" .. d.message.qos end)
            c:on(mqtt.PUBLISH, function(_, d) mine[#mine + 1] = d.message.topic .. "#" .. d.message.qos end,
                 mqtt.topic_filter(prefix .. "/special"))
            c:publish(prefix .. "/special", "a", 0)
            c:publish(prefix .. "/special", "b", 1)
            c:publish(prefix .. "/other", "c", 0)
            c:publish(prefix .. "/other", "d", 1)
            assert.is_true(wait(function() return #mine + #on_msg >= 4 end))
            settle()
            table.sort(mine)
            table.sort(on_msg)
            assert.are.same({ prefix .. "/special#0", prefix .. "/special#1" }, mine)
            assert.are.same({ prefix .. "/other#0", prefix .. "/other#1" }, on_msg)
        end)

        it("keeps on_message across loop() without one, and replaces it with a new one", function()
            local c, prefix = self_subscribed()
            local first, second = {}, {}
            c:loop(function(_, d) first[#first + 1] = d.message.payload end)
            c:loop()
            c:publish(prefix .. "/a", "1", 2)
            assert.is_true(wait(function() return #first >= 1 end))
            c:loop(function(_, d) second[#second + 1] = d.message.payload end)
            c:publish(prefix .. "/a", "2", 1)
            assert.is_true(wait(function() return #second >= 1 end))
            settle()
            assert.are.same({ "1" }, first)
            assert.are.same({ "2" }, second)
        end)

        it("leaves QoS 2 PUBLISH data (mid only) to a generic PUBLISH callback set by the user", function()
            local c, prefix = self_subscribed()
            local on_msg, generic = {}, {}
            c:loop(function(_, d) on_msg[#on_msg + 1] = d.message.qos end)
            c:on(mqtt.PUBLISH, function(_, d) generic[#generic + 1] = d end)
            c:publish(prefix .. "/q0", "a", 0)
            c:publish(prefix .. "/q1", "b", 1)
            c:publish(prefix .. "/q2", "c", 2)
            assert.is_true(wait(function() return #on_msg >= 3 and #generic >= 1 end))
            settle()
            table.sort(on_msg)
            assert.are.same({ 0, 1, 2 }, on_msg)
            assert.are.equal(1, #generic)
            assert.is_nil(generic[1].message)
            assert.are.equal("integer", math_type(generic[1].mid))
            assert.is_true(generic[1].mid > 0)
            assert.are.equal(0, generic[1].return_code)
        end)
    end)

    describe("conditions", function()
        it("ack-by-mid conditions run exactly for their message", function()
            local c = connected()
            local topic = helpers.unique("zd") .. "/acks"
            local m1 = c:publish(topic, "1", 1)
            local m2 = c:publish(topic, "2", 1)
            local m3 = c:publish(topic, "3", 2)
            assert.are_not.equal(m1, m2)
            assert.are_not.equal(m2, m3)
            local got = { a1 = {}, a2 = {}, rec3 = {}, comp3 = {}, other = {} }
            c:on(mqtt.PUBACK, function(_, d) table.insert(got.a1, d.mid) end,
                 function(d) return d.mid == m1 end)
            c:on(mqtt.PUBACK, function(_, d) table.insert(got.a2, d.mid) end,
                 function(d) return d.mid == m2 end)
            c:on(mqtt.PUBACK, function(_, d) table.insert(got.other, d.mid) end)
            c:on(mqtt.PUBREC, function(_, d) table.insert(got.rec3, d.mid) end,
                 function(d) return d.mid == m3 end)
            c:on(mqtt.PUBCOMP, function(_, d) table.insert(got.comp3, d.mid) end,
                 function(d) return d.mid == m3 end)
            assert.is_true(wait(function()
                return #got.a1 >= 1 and #got.a2 >= 1 and #got.comp3 >= 1
            end))
            settle()
            assert.are.same({ m1 }, got.a1)
            assert.are.same({ m2 }, got.a2)
            assert.are.same({ m3 }, got.rec3)
            assert.are.same({ m3 }, got.comp3)
            assert.are.same({}, got.other)
        end)

        it("mqtt.topic_filter('a/+/c') routes matching messages", function()
            local c, prefix = self_subscribed()
            local hit, miss = {}, {}
            c:on(mqtt.PUBLISH, function(_, d) hit[#hit + 1] = d.message.topic end,
                 mqtt.topic_filter(prefix .. "/a/+/c"))
            c:on(mqtt.PUBLISH, function(_, d)
                if d.message then miss[#miss + 1] = d.message.topic end
            end)
            for _, t in ipairs { "/a/b/c", "/a/b/d", "/a/x/c", "/a/b/c/d", "/a/c" } do
                c:publish(prefix .. t, "p", 1)
            end
            assert.is_true(wait(function() return #hit + #miss >= 5 end))
            settle()
            table.sort(hit)
            table.sort(miss)
            assert.are.same({ prefix .. "/a/b/c", prefix .. "/a/x/c" }, hit)
            assert.are.same({ prefix .. "/a/b/c/d", prefix .. "/a/b/d", prefix .. "/a/c" }, miss)
        end)
    end)

    describe("data tables", function()
        it("every data has return_code == 0", function()
            local c = clients:new()
            local seen = {}
            local names = {
                [mqtt.CONNACK] = "CONNACK", [mqtt.PUBLISH] = "PUBLISH", [mqtt.PUBACK] = "PUBACK",
                [mqtt.PUBREC] = "PUBREC", [mqtt.PUBREL] = "PUBREL", [mqtt.PUBCOMP] = "PUBCOMP",
                [mqtt.SUBACK] = "SUBACK", [mqtt.UNSUBACK] = "UNSUBACK", [mqtt.PINGRESP] = "PINGRESP",
            }
            for cmd, name in pairs(names) do
                seen[name] = {}
                c:on(cmd, function(_, d) table.insert(seen[name], d) end)
            end
            c:connect(HOST, 1, broker.port)
            local prefix = helpers.unique("zd")
            local smid = c:subscribe({ { prefix .. "/#", 2 } })
            assert.is_true(wait(function() return #seen.SUBACK >= 1 end))
            c:publish(prefix .. "/0", "a", 0)
            c:publish(prefix .. "/1", "b", 1)
            c:publish(prefix .. "/2", "c", 2)
            assert.is_true(wait(function() return #seen.PUBREL >= 1 and #seen.PUBCOMP >= 1 end))
            local umid = c:unsubscribe({ prefix .. "/#" })
            -- keepalive 1: a PINGREQ follows a second without traffic
            assert.is_true(wait(function() return #seen.UNSUBACK >= 1 and #seen.PINGRESP >= 1 end, 5))
            for name, list in pairs(seen) do
                assert.is_true(#list >= 1, "no " .. name .. " event")
                for _, d in ipairs(list) do
                    assert.are.equal(0, d.return_code, name .. " return_code")
                    assert.are.equal("integer", math_type(d.return_code), name)
                end
            end
            assert.are.equal(smid, seen.SUBACK[1].mid)
            assert.are.same({ 2 }, seen.SUBACK[1].granted_qos)
            assert.are.equal(umid, seen.UNSUBACK[1].mid)
            -- QoS 0 and 1 with a message, QoS 2 with its mid only (the message comes with PUBREL)
            assert.are.equal(3, #seen.PUBLISH)
            local with_msg, mid_only = 0, 0
            for _, d in ipairs(seen.PUBLISH) do
                if d.message then with_msg = with_msg + 1 else mid_only = mid_only + 1 end
            end
            assert.are.equal(2, with_msg)
            assert.are.equal(1, mid_only)
            assert.are.equal(1, #seen.PUBREL)
            assert.are.equal("c", seen.PUBREL[1].message.payload)
        end)

        it("a CONNACK event follows connect with session_present and return_code", function()
            local id = helpers.unique("zdsess")
            local c = clients:new(id, false)
            local acks = {}
            c:on(mqtt.CONNACK, function(_, d) acks[#acks + 1] = d end)
            c:connect(HOST, 60, broker.port)
            assert.is_true(wait(function() return #acks >= 1 end))
            assert.are.equal(0, acks[1].return_code)
            assert.are.equal(false, acks[1].session_present)
            c:disconnect()
            assert.is_true(wait(function() return c:state() == "disconnected" end))

            -- the broker kept the persistent session
            local c2 = clients:new(id, false)
            local acks2 = {}
            c2:on(mqtt.CONNACK, function(_, d) acks2[#acks2 + 1] = d end)
            c2:connect(HOST, 60, broker.port)
            assert.is_true(wait(function() return #acks2 >= 1 end))
            settle(0.1)
            assert.are.equal(1, #acks2)
            assert.are.equal(0, acks2[1].return_code)
            assert.are.equal(true, acks2[1].session_present)
        end)
    end)

    describe("where callbacks run", function()
        it("client:dispatch(timeout) waits up to timeout and returns 0 when nothing came", function()
            local c = connected()
            c:dispatch(0)
            local t0 = mqtt.monotonic()
            assert.are.equal(0, c:dispatch(0))
            assert.is_true(mqtt.monotonic() - t0 < 0.1)
            t0 = mqtt.monotonic()
            assert.are.equal(0, c:dispatch(0.3))
            local dt = mqtt.monotonic() - t0
            assert.is_true(dt >= 0.28, "returned after " .. dt)
            assert.is_true(dt < 1.0, "returned after " .. dt)
            assert.are.equal(0, c:dispatch())
        end)

        it("client:dispatch returns the number of packets dispatched", function()
            local c, prefix = self_subscribed()
            local n_cb = 0
            c:on(mqtt.PUBLISH, function() n_cb = n_cb + 1 end)
            for i = 1, 3 do c:publish(prefix .. "/" .. i, "p", 0) end
            socket.sleep(0.5) -- no dispatch: the three PUBLISH events queue up
            assert.are.equal(0, n_cb)
            assert.are.equal(3, c:dispatch(0))
            assert.are.equal(3, n_cb)
            assert.are.equal(0, c:dispatch(0))
        end)

        it("client:dispatch(timeout) returns as soon as something arrives", function()
            local c, prefix = self_subscribed()
            local got = 0
            c:on(mqtt.PUBLISH, function() got = got + 1 end)
            c:publish(prefix .. "/x", "p", 0)
            local t0 = mqtt.monotonic()
            local n = c:dispatch(5)
            assert.is_true(mqtt.monotonic() - t0 < 2)
            assert.is_true(n >= 1)
            assert.are.equal(1, got)
        end)

        it("client:dispatch runs only its client; mqtt.dispatch runs all clients", function()
            local a, pa = self_subscribed()
            local b, pb = self_subscribed()
            local got_a, got_b = 0, 0
            a:on(mqtt.PUBLISH, function() got_a = got_a + 1 end)
            b:on(mqtt.PUBLISH, function() got_b = got_b + 1 end)
            a:publish(pa .. "/x", "p", 0)
            b:publish(pb .. "/x", "p", 0)
            socket.sleep(0.4)
            assert.are.equal(1, a:dispatch(0))
            assert.are.equal(1, got_a)
            assert.are.equal(0, got_b)
            assert.are.equal(1, mqtt.dispatch(0))
            assert.are.equal(1, got_b)
            a:publish(pa .. "/y", "p", 0)
            b:publish(pb .. "/y", "p", 0)
            socket.sleep(0.4)
            assert.are.equal(2, mqtt.dispatch(0))
            assert.are.equal(2, got_a)
            assert.are.equal(2, got_b)
        end)

        it("mqtt.sleep(s) dispatches while sleeping and lasts about s", function()
            local c, prefix = self_subscribed()
            local at
            local t0 = mqtt.monotonic()
            c:on(mqtt.PUBLISH, function() at = mqtt.monotonic() end)
            c:publish(prefix .. "/x", "p", 1)
            mqtt.sleep(0.6)
            local dt = mqtt.monotonic() - t0
            assert.is_number(at)
            assert.is_true(at - t0 < 0.5, "callback ran only after " .. (at - t0))
            assert.is_true(dt >= 0.59, "slept " .. dt)
            assert.is_true(dt < 1.0, "slept " .. dt)
            t0 = mqtt.monotonic()
            mqtt.sleep(0)
            assert.is_true(mqtt.monotonic() - t0 < 0.1)
        end)

        it("mqtt.run() returns once every client has disconnected (disconnect from a callback)", function()
            local a, pa = self_subscribed()
            local b = connected()
            local ran = 0
            a:on(mqtt.PUBLISH, function(cl)
                ran = ran + 1
                cl:disconnect()
                b:disconnect()
            end)
            a:publish(pa .. "/bye", "p", 1)
            -- clients other spec files dropped without closing would keep run() going
            collectgarbage()
            collectgarbage()
            -- watchdog: mqtt.run must not hang the suite
            local deadline = mqtt.monotonic() + 10
            debug.sethook(function()
                if mqtt.monotonic() > deadline then
                    debug.sethook()
                    error("mqtt.run() did not return within 10 s")
                end
            end, "", 1000)
            local ok, err = pcall(mqtt.run)
            debug.sethook()
            assert.is_true(ok, tostring(err))
            assert.are.equal(1, ran)
            assert.are.equal("disconnected", a:state())
            assert.are.equal("disconnected", b:state())
            assert.is_false(a:is_connected())
        end)

        it("client:fd() is an integer that is readable while events are queued", function()
            local c, prefix = self_subscribed()
            local fd = c:fd()
            assert.are.equal("integer", math_type(fd))
            assert.is_true(fd >= 0)
            assert.are.equal(fd, c:fd())
            local pollable = { getfd = function() return fd end }
            c:dispatch(0)
            local r = socket.select({ pollable }, nil, 0)
            assert.are.equal(0, #r)
            c:publish(prefix .. "/x", "p", 0)
            r = socket.select({ pollable }, nil, 3)
            assert.are.equal(1, #r)
            local n = 0
            assert.is_true(helpers.wait_until(function()
                n = n + c:dispatch(0)
                return n > 0
            end, 3))
            r = socket.select({ pollable }, nil, 0)
            assert.are.equal(0, #r)
        end)
    end)

    describe("errors in callbacks and conditions", function()
        local function publish_five(c, prefix, qos)
            for i = 1, 5 do c:publish(prefix .. "/n", tostring(i), qos or 1) end
        end

        -- Dispatches with pcall until an error comes out (or 5 s pass).
        local function dispatch_until_error(dispatch_fn)
            local ok, err = true, nil
            helpers.wait_until(function()
                ok, err = pcall(dispatch_fn, 0.02)
                return not ok
            end, 5, function() end)
            return ok, err
        end

        it("a callback error propagates out of mqtt.dispatch and later events are not lost", function()
            local c, prefix = self_subscribed()
            local got = {}
            c:on(mqtt.PUBLISH, function(_, d)
                got[#got + 1] = d.message.payload
                if d.message.payload == "2" then error("boom-2") end
            end)
            publish_five(c, prefix)
            local ok, err = dispatch_until_error(mqtt.dispatch)
            assert.is_false(ok)
            assert.matches("boom%-2", tostring(err))
            assert.are.same({ "1", "2" }, got)
            assert.is_true(wait(function() return #got >= 5 end))
            settle()
            assert.are.same({ "1", "2", "3", "4", "5" }, got)
        end)

        it("a callback error propagates out of client:dispatch unchanged, with its traceback", function()
            local c, prefix = self_subscribed()
            local got = {}
            local marker = setmetatable({}, { __tostring = function() return "marker error" end })
            local function raising_callback(_, d)
                got[#got + 1] = d.message.payload
                if d.message.payload == "2" then error(marker) end
            end
            c:on(mqtt.PUBLISH, raising_callback)
            publish_five(c, prefix, 0) -- QoS 0: five PUBLISH events, no PUBACKs
            socket.sleep(0.4) -- let all five queue up behind the failing one
            local ok, err = dispatch_until_error(function(t) return c:dispatch(t) end)
            assert.is_false(ok)
            assert.is_true(rawequal(marker, err))
            assert.are.same({ "1", "2" }, got)
            -- the rest come on the next calls
            local n = c:dispatch(0)
            assert.are.equal(3, n)
            assert.are.same({ "1", "2", "3", "4", "5" }, got)

            -- a string error keeps the traceback through the callback
            c:off(mqtt.PUBLISH, raising_callback)
            c:on(mqtt.PUBLISH, function() error("traced") end)
            c:publish(prefix .. "/t", "x", 0)
            local tb
            helpers.wait_until(function()
                local ok2, e2 = compat.xpcall(c.dispatch, debug.traceback, c, 0.02)
                if not ok2 then tb = e2 end
                return tb ~= nil
            end, 5, function() end)
            assert.is_string(tb)
            assert.matches("traced", tb, 1, true)
            assert.matches("30_dispatch_spec.lua", tb, 1, true)
        end)

        it("a condition error propagates the same way and later events are not lost", function()
            local c, prefix = self_subscribed()
            local got = {}
            c:on(mqtt.PUBLISH, function(_, d) got[#got + 1] = d.message.payload end,
                 function(d)
                     if d.message.payload == "2" then error("cond-boom") end
                     return true
                 end)
            publish_five(c, prefix)
            local ok, err = dispatch_until_error(mqtt.dispatch)
            assert.is_false(ok)
            assert.matches("cond%-boom", tostring(err))
            assert.are.same({ "1" }, got)
            assert.is_true(wait(function() return #got >= 4 end))
            settle()
            assert.are.same({ "1", "3", "4", "5" }, got)
        end)
    end)

    it("keeps the protocol going while the application does not dispatch", function()
        local sub, prefix = self_subscribed(1)
        local pub = connected(60)
        local lost = {}
        sub:on(mqtt.DISCONNECT, function(_, d) lost[#lost + 1] = d end)
        local got = {}
        sub:on(mqtt.PUBLISH, function(_, d) got[#got + 1] = d.message.payload end)
        for i = 1, 5 do pub:publish(prefix .. "/k", "m" .. i, 1) end
        socket.sleep(2.2) -- no dispatch at all, > 1.5 x keepalive
        assert.is_true(sub:is_connected())
        assert.are.equal("connected", sub:state())
        assert.is_true(pub:is_connected())
        -- pub's QoS 1 messages were acknowledged without any dispatch
        assert.are.equal(0, pub:stats().inflight)
        assert.is_nil(broker.log():find("has exceeded timeout", 1, true))
        assert.is_true(wait(function() return #got >= 5 end))
        settle(0.2)
        assert.are.same({ "m1", "m2", "m3", "m4", "m5" }, got)
        assert.are.same({}, lost)
        assert.are.equal(0, sub:stats().reconnects)
    end)
end)
