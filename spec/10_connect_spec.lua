-- spec/10_connect_spec.lua: connecting, refusals, timeouts, the connection's
-- state, disconnect/close and the ways a client ends (close, <close>, GC,
-- os.exit) against private mosquitto brokers and a scripted fake broker.

local helpers = require("helpers")
local FakeBroker = require("fake_broker")
local mqtt = require("mqtt")
local socket = require("socket")

local HOST = helpers.HOST

-- Runs callbacks of every client until pred() holds or timeout seconds pass.
local wait_for = helpers.wait_dispatch

-- The part of a broker's log written since `from` (a byte offset).
local function log_since(b, from)
    return (helpers.read_file(b.log_file) or ""):sub((from or 0) + 1)
end

-- How many times a client id connected, according to the broker's log.
local function connects_of(b, id)
    local n = 0
    for _ in log_since(b):gmatch("New client connected from [^\n]* as " .. id:gsub("%p", "%%%0")
                                 .. " ") do
        n = n + 1
    end
    return n
end

-- True when the broker's log shows that client id's connection ended.
local function broker_saw_drop(b, id)
    local log = log_since(b)
    return log:find("Client " .. id .. " disconnected", 1, true) ~= nil
        or log:find("Client " .. id .. " closed its connection", 1, true) ~= nil
end

-- Whether ::1 can be bound here.
local function ipv6_loopback()
    local s = socket.tcp6 and socket.tcp6()
    if not s then return false end
    local ok = s:bind("::1", 0)
    s:close()
    return ok == 1
end

describe("connect", function()
    -- clients:new(id, clean, opts) makes a client that after_each closes.
    local broker, clients = helpers.with_broker(nil, "zc")

    it("returns once the CONNACK is accepted and the client is connected", function()
        local c = clients:new()
        local acks = {}
        c:on(mqtt.CONNACK, function(_, d) acks[#acks + 1] = d end)
        assert.is_nil(c:connect(HOST, 60, broker.port))
        assert.is_true(c:is_connected())
        assert.equal("connected", c:state())
        assert.is_true(wait_for(function() return #acks == 1 end))
        assert.equal(0, acks[1].return_code)
        assert.is_false(acks[1].session_present)
        assert.is_nil(acks[1].error)
        assert.equal(1, connects_of(broker, c:client_id()))
    end)

    it("connects to a host given by name (localhost)", function()
        local c = clients:new()
        c:connect("localhost", 60, broker.port)
        assert.is_true(c:is_connected())
        assert.equal(1, connects_of(broker, c:client_id()))
    end)

    it("connects to an IPv6 address (::1)", function()
        if not ipv6_loopback() then
            pending("this machine has no IPv6 loopback")
            return
        end
        local port6 = helpers.free_port()
        local b6 = helpers.start_broker({ extra = "listener " .. port6 .. " ::1" })
        local c = clients:new()
        c:connect("::1", 60, port6)
        assert.is_true(c:is_connected())
        assert.truthy(log_since(b6):find("New client connected from ::1:%d+ as " ..
                                         c:client_id():gsub("%p", "%%%0")))
        -- And it carries traffic both ways.
        local got
        c:on(mqtt.SUBACK, function(_, d) got = d end)
        c:subscribe("v6/t", 1)
        assert.is_true(wait_for(function() return got ~= nil end))
        assert.same({ 1 }, got.granted_qos)
        b6.stop()
    end)

    it("accepts the table form, every argument by name", function()
        local c = clients:new()
        local after = 0
        c:connect { host = HOST, port = broker.port, keepalive = 30, ssl_ctx = nil,
                    breconnect_cb = function() end, sock_keepalive = { 3, 30, 5 },
                    aconnect_cb = function(cl) assert.equal(c, cl); after = after + 1 end }
        assert.is_true(c:is_connected())
        assert.equal(1, after)
        assert.truthy(log_since(broker):find("as " .. c:client_id():gsub("%p", "%%%0") ..
                                             " %(p2, c1, k30%)"))
    end)

    it("rejects unknown keys in the table form", function()
        local c = clients:new()
        local ok, err = pcall(c.connect, c, { host = HOST, port = broker.port, keepalive = 30,
                                              hots = "x" })
        assert.is_false(ok)
        assert.is_true(mqtt.is_error(err))
        assert.matches("hots", tostring(err))
        assert.is_false(c:is_connected())
    end)

    it("raises MQTTConnectionError quickly with a readable message on a closed port", function()
        local port = helpers.free_port()
        local c = clients:new()
        local t0 = mqtt.monotonic()
        local ok, err = pcall(c.connect, c, HOST, 60, port)
        local elapsed = mqtt.monotonic() - t0
        assert.is_false(ok)
        assert.is_true(elapsed < 1, "took " .. elapsed .. " s")
        assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError))
        assert.is_true(mqtt.is_error(err, mqtt.MQTTError))
        assert.equal(mqtt.MQTTConnectionError, getmetatable(err))
        assert.is_nil(err.code)
        local text = tostring(err)
        assert.matches("^MQTTConnectionError: ", text)
        assert.truthy(text:find(tostring(port), 1, true), text)
        assert.truthy(text:lower():find("refused", 1, true), text)
        assert.is_false(c:is_connected())
        assert.equal("disconnected", c:state())
    end)

    describe("with a password file", function()
        local pbroker

        setup(function()
            pbroker = helpers.start_broker({ users = { alice = "s3cret" } })
        end)

        teardown(function()
            pbroker.stop()
        end)

        it("raises MQTTConnectionError 5 'not authorized' for a wrong password", function()
            -- mosquitto 2.0.11 answers a wrong MQTT 3.1.1 password with CONNACK 5.
            local ok_ref, _, out = helpers.mosquitto_pub(pbroker, { topic = "t", message = "x",
                username = "alice", password = "nope" })
            assert.is_false(ok_ref)
            assert.matches("not authori[sz]ed", out)

            local c = clients:new()
            c:set_username_pw("alice", "nope")
            local ok, err = pcall(c.connect, c, HOST, 60, pbroker.port)
            assert.is_false(ok)
            assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError))
            assert.equal(5, err.code)
            assert.equal("not authorized", err.name)
            assert.matches("not authorized", tostring(err))
            assert.is_false(c:is_connected())
        end)

        it("raises MQTTConnectionError 5 without credentials (anonymous refused)", function()
            local c = clients:new()
            local ok, err = pcall(c.connect, c, HOST, 60, pbroker.port)
            assert.is_false(ok)
            assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError))
            assert.equal(5, err.code)
            assert.equal("not authorized", err.name)
        end)

        it("connects with the right credentials", function()
            local c = clients:new()
            c:set_username_pw("alice", "s3cret")
            c:connect(HOST, 60, pbroker.port)
            assert.is_true(c:is_connected())
            assert.truthy(log_since(pbroker):find("as " .. c:client_id():gsub("%p", "%%%0") ..
                                                  " %(p2, c1, k60, u'alice'%)"))
        end)

        it("reports the refusal of connect_async as a CONNACK with error and code 5", function()
            local c = clients:new()
            c:set_username_pw("alice", "nope")
            local ack
            c:on(mqtt.CONNACK, function(_, d) ack = d end)
            c:connect_async(HOST, 60, pbroker.port)
            assert.is_true(wait_for(function() return ack ~= nil end))
            assert.equal(5, ack.return_code)
            assert.is_true(mqtt.is_error(ack.error, mqtt.MQTTConnectionError))
            assert.equal(5, ack.error.code)
            assert.equal("not authorized", ack.error.name)
            assert.is_false(c:is_connected())
        end)
    end)

    it("runs aconnect_cb after the connect, when the client is connected", function()
        local c = clients:new()
        local seen = {}
        c:connect(HOST, 60, broker.port, nil, nil, function(cl)
            seen[#seen + 1] = { cl = cl, connected = cl:is_connected() }
        end)
        assert.equal(1, #seen)
        assert.equal(c, seen[1].cl)
        assert.is_true(seen[1].connected)
        -- A blocking connect runs it once, not again when its CONNACK is dispatched.
        mqtt.sleep(0.1)
        assert.equal(1, #seen)
    end)

    it("does not run aconnect_cb when the connect fails", function()
        local c = clients:new()
        local runs = 0
        local ok = pcall(c.connect, c, HOST, 60, helpers.free_port(), nil, nil,
                         function() runs = runs + 1 end)
        assert.is_false(ok)
        mqtt.sleep(0.05)
        assert.equal(0, runs)
    end)

    describe("connect_async", function()
        it("returns at once, then a CONNACK callback gets return_code 0", function()
            local fb = FakeBroker.new()
            finally(function() fb:close() end)
            local c = clients:new()
            local ack
            c:on(mqtt.CONNACK, function(_, d) ack = d end)
            local t0 = mqtt.monotonic()
            c:connect_async { host = fb.host, port = fb.port, keepalive = 60 }
            assert.is_true(mqtt.monotonic() - t0 < 0.2)
            -- The fake broker has not answered: the client cannot be connected yet.
            assert.is_false(c:is_connected())
            assert.equal("connecting", c:state())
            local connect = fb:handshake()
            assert.equal(c:client_id(), connect.client_id)
            assert.is_true(wait_for(function() return ack ~= nil end))
            assert.equal(0, ack.return_code)
            assert.is_false(ack.session_present)
            assert.is_nil(ack.error)
            assert.is_true(c:is_connected())
            assert.equal("connected", c:state())
        end)

        it("runs aconnect_cb once the asynchronous connect succeeded", function()
            local c = clients:new()
            local runs, connected_then = 0, nil
            c:connect_async(HOST, 60, broker.port, nil, nil, function(cl)
                runs = runs + 1
                connected_then = cl:is_connected()
            end)
            assert.is_true(wait_for(function() return runs > 0 end))
            assert.is_true(connected_then)
            mqtt.sleep(0.05)
            assert.equal(1, runs)
        end)

        it("against mosquitto gets return_code 0 and ends connected", function()
            local c = clients:new()
            local acks = {}
            c:on(mqtt.CONNACK, function(_, d) acks[#acks + 1] = d end)
            c:connect_async(HOST, 60, broker.port)
            assert.is_true(wait_for(function() return #acks > 0 end))
            assert.equal(1, #acks)
            assert.equal(0, acks[1].return_code)
            assert.is_true(c:is_connected())
        end)

        it("is still running for mqtt.run(), which dispatches its CONNACK", function()
            -- mqtt.run() dispatches until every client has disconnected: a client
            -- connecting in the background has not.
            local c = clients:new()
            local ack
            c:on(mqtt.CONNACK, function(cl, d)
                ack = d
                cl:disconnect()
            end)
            c:connect_async(HOST, 60, broker.port)
            mqtt.run()
            assert.is_table(ack, "mqtt.run() returned before the CONNACK was dispatched")
            assert.equal(0, ack.return_code)
            assert.equal("disconnected", c:state())
        end)

        it("for a closed port gets data.error (MQTTConnectionError) and return_code ~= 0", function()
            local c = clients:new()
            local acks = {}
            c:on(mqtt.CONNACK, function(_, d) acks[#acks + 1] = d end)
            local t0 = mqtt.monotonic()
            c:connect_async(HOST, 60, helpers.free_port())
            assert.is_true(mqtt.monotonic() - t0 < 0.2)
            assert.is_true(wait_for(function() return #acks > 0 end, 3))
            local d = acks[1]
            assert.is_true(mqtt.is_error(d.error, mqtt.MQTTConnectionError))
            assert.are_not.equal(0, d.return_code)
            assert.matches("^MQTTConnectionError: ", tostring(d.error))
            assert.is_false(c:is_connected())
        end)
    end)

    it("connect_timeout bounds a connect to a broker that never answers", function()
        -- The kernel completes the TCP handshake (backlog) but nobody ever reads
        -- the CONNECT or sends a CONNACK.
        local fb = FakeBroker.new()
        finally(function() fb:close() end)
        local c = clients:new(nil, true, { connect_timeout = 0.5 })
        local t0 = mqtt.monotonic()
        local ok, err = pcall(c.connect, c, fb.host, 60, fb.port)
        local elapsed = mqtt.monotonic() - t0
        assert.is_false(ok)
        assert.is_true(elapsed >= 0.45, "gave up after " .. elapsed .. " s")
        assert.is_true(elapsed < 1.5, "took " .. elapsed .. " s")
        assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError))
        assert.equal("timeout", err.name)
        assert.is_false(c:is_connected())
    end)

    it("connect_timeout bounds a TCP connect that never completes (full backlog)", function()
        local port, close = helpers.full_backlog()
        finally(close)
        local c = clients:new(nil, true, { connect_timeout = 0.5 })
        local t0 = mqtt.monotonic()
        local ok, err = pcall(c.connect, c, HOST, 60, port)
        local elapsed = mqtt.monotonic() - t0
        assert.is_false(ok)
        assert.is_true(elapsed >= 0.45 and elapsed < 1.5, "took " .. elapsed .. " s")
        assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError))
        assert.equal("timeout", err.name)
        assert.matches("timed out", tostring(err))
    end)

    it("connect_timeout bounds connect_async too: a CONNACK event with an error", function()
        local fb = FakeBroker.new()
        finally(function() fb:close() end)
        local c = clients:new(nil, true, { connect_timeout = 0.3 })
        local ack
        c:on(mqtt.CONNACK, function(_, d) ack = d end)
        local t0 = mqtt.monotonic()
        c:connect_async(fb.host, 60, fb.port)
        assert.is_true(wait_for(function() return ack ~= nil end, 3))
        local elapsed = mqtt.monotonic() - t0
        assert.is_true(elapsed < 1.3, "took " .. elapsed .. " s")
        assert.is_true(mqtt.is_error(ack.error, mqtt.MQTTConnectionError))
        assert.equal("timeout", ack.error.name)
        assert.are_not.equal(0, ack.return_code)
    end)

    it("reports is_connected() and state() through the client's life", function()
        local c = clients:new(nil, true, { reconnect = { min = 0.05, max = 0.2 } })
        assert.is_false(c:is_connected())
        assert.equal("disconnected", c:state())
        c:connect(HOST, 60, broker.port)
        assert.is_true(c:is_connected())
        assert.equal("connected", c:state())
        c:disconnect()
        assert.is_false(c:is_connected())
        assert.equal("disconnected", c:state())
        c:connect(HOST, 60, broker.port)
        assert.is_true(c:is_connected())
        assert.equal("connected", c:state())
        c:close()
        assert.is_false(c:is_connected())
        assert.equal("closed", c:state())
    end)

    it("shows a lost connection as 'reconnecting' under loop() and 'disconnected' without",
       function()
        local b = helpers.start_broker()
        local looping = clients:new(nil, true, { reconnect = { min = 0.05, max = 0.2 } })
        local plain = clients:new(nil, true, { reconnect = { min = 0.05, max = 0.2 } })
        local lost = {}
        looping:on(mqtt.DISCONNECT, function(_, d) lost[#lost + 1] = d end)
        plain:on(mqtt.DISCONNECT, function(_, d) lost[#lost + 1] = d end)
        looping:connect(HOST, 60, b.port)
        plain:connect(HOST, 60, b.port)
        looping:loop()
        b.kill()
        assert.is_true(wait_for(function() return #lost == 2 end))
        for _, d in ipairs(lost) do
            assert.is_true(mqtt.is_error(d.error, mqtt.MQTTConnectionError))
        end
        assert.is_false(looping:is_connected())
        assert.is_false(plain:is_connected())
        assert.equal("reconnecting", looping:state())
        assert.equal("disconnected", plain:state())
        -- reconnect() brings the one without loop() back by hand.
        b.restart()
        plain:reconnect()
        assert.is_true(plain:is_connected())
        assert.is_true(wait_for(function() return looping:is_connected() end))
        b.stop()
    end)

    it("does not reconnect after disconnect(), even with loop() running", function()
        local c = clients:new(nil, true, { reconnect = { min = 0.05, max = 0.1 } })
        local events = {}
        c:on(mqtt.CONNACK, function() events[#events + 1] = "CONNACK" end)
        c:on(mqtt.DISCONNECT, function(_, d)
            events[#events + 1] = "DISCONNECT"
            assert.is_nil(d.error)   -- asked for: no error
        end)
        c:connect(HOST, 60, broker.port)
        c:loop()
        c:disconnect()
        assert.is_false(c:is_connected())
        -- Several back-off periods: a reconnect would have happened by now.
        mqtt.sleep(0.6)
        assert.is_false(c:is_connected())
        assert.equal("disconnected", c:state())
        assert.same({ "CONNACK", "DISCONNECT" }, events)
        assert.equal(1, connects_of(broker, c:client_id()))
        assert.truthy(log_since(broker):find("Client " .. c:client_id() .. " disconnected.", 1, true))
        -- loop() again after disconnect() does not reconnect either.
        c:loop()
        mqtt.sleep(0.3)
        assert.is_false(c:is_connected())
        assert.equal(1, connects_of(broker, c:client_id()))
    end)

    it("stops reconnecting when disconnect() is called while the broker is down", function()
        local b = helpers.start_broker()
        local c = clients:new(nil, true, { reconnect = { min = 0.05, max = 0.1 } })
        local lost = 0
        c:on(mqtt.DISCONNECT, function() lost = lost + 1 end)
        c:connect(HOST, 60, b.port)
        c:loop()
        b.kill()
        assert.is_true(wait_for(function() return lost == 1 end))
        assert.equal("reconnecting", c:state())
        c:disconnect()
        assert.equal("disconnected", c:state())
        b.restart()
        mqtt.sleep(0.5)
        assert.is_false(c:is_connected())
        assert.equal("disconnected", c:state())
        assert.equal(1, connects_of(b, c:client_id()))
        b.stop()
    end)

    it("disconnect() flushes what was queued before sending DISCONNECT", function()
        local topic = "flush/" .. helpers.unique("t")
        local watcher = clients:new()
        local got = {}
        watcher:connect(HOST, 60, broker.port)
        watcher:loop(function(_, d) got[#got + 1] = d.message.payload end)
        local subacked = false
        watcher:on(mqtt.SUBACK, function() subacked = true end)
        watcher:subscribe(topic, 1)
        assert.is_true(wait_for(function() return subacked end))
        local c = clients:new()
        c:connect(HOST, 60, broker.port)
        for i = 1, 50 do c:publish(topic, "m" .. i, i % 2) end
        c:disconnect()
        assert.is_true(wait_for(function() return #got == 50 end),
                       "only " .. #got .. " of 50 messages were sent before DISCONNECT")
        -- (The broker may reorder QoS 0 against QoS 1: compare as sets.)
        local seen = {}
        for _, p in ipairs(got) do seen[p] = true end
        for i = 1, 50 do assert.is_true(seen["m" .. i], "m" .. i .. " lost") end
    end)

    it("disconnect() sends every queued PUBLISH, in order, then DISCONNECT, then closes", function()
        local fb = FakeBroker.new()
        finally(function() fb:close() end)
        -- The fake broker cannot acknowledge while disconnect() blocks this
        -- thread, so the wait for acknowledgements is kept short.
        local c = clients:new(nil, true, { disconnect_timeout = 0.3 })
        c:connect_async(fb.host, 60, fb.port)
        fb:handshake()
        assert.is_true(wait_for(function() return c:is_connected() end))
        for i = 1, 20 do c:publish("flush/t", "m" .. i, i % 3) end
        c:disconnect()
        for i = 1, 20 do
            local p = fb:expect(FakeBroker.PUBLISH, 2)
            assert.equal("m" .. i, p.payload)
            assert.equal(i % 3, p.qos)
        end
        fb:expect(FakeBroker.DISCONNECT, 2)
        assert.is_true(fb:expect_closed(2))
        assert.equal("disconnected", c:state())
    end)

    it("close() is idempotent", function()
        local c = clients:new()
        c:connect(HOST, 60, broker.port)
        c:close()
        assert.has_no.errors(function() c:close() end)
        assert.has_no.errors(function() c:close() end)
        assert.equal("closed", c:state())
        assert.is_true(wait_for(function() return broker_saw_drop(broker, c:client_id()) end))
    end)

    it("raises an MQTTError for methods called on a closed client", function()
        local c = clients:new()
        c:connect(HOST, 60, broker.port)
        c:close()
        local calls = {
            connect = function() c:connect(HOST, 60, broker.port) end,
            connect_async = function() c:connect_async(HOST, 60, broker.port) end,
            reconnect = function() c:reconnect() end,
            publish = function() c:publish("a/b", "x", 1) end,
            subscribe = function() c:subscribe("a/b", 0) end,
            unsubscribe = function() c:unsubscribe({ "a/b" }) end,
            disconnect = function() c:disconnect() end,
            loop = function() c:loop() end,
            dispatch = function() c:dispatch() end,
            on = function() c:on(mqtt.PUBLISH, function() end) end,
            set_will = function() c:set_will("w", "x", 0, false) end,
            set_username_pw = function() c:set_username_pw("u", "p") end,
            stats = function() c:stats() end,
            fd = function() c:fd() end,
        }
        for name, f in pairs(calls) do
            local ok, err = pcall(f)
            assert.is_false(ok, name .. " did not raise")
            assert.is_true(mqtt.is_error(err, mqtt.MQTTError), name .. ": " .. tostring(err))
            assert.truthy(tostring(err):find("closed", 1, true), name .. ": " .. tostring(err))
        end
        assert.is_false(c:is_connected())
        assert.equal("closed", c:state())
    end)

    it("closes a client declared <close> at the end of its block", function()
        -- <close> is Lua 5.4 syntax: the block is compiled only there.
        if _VERSION ~= "Lua 5.4" then
            pending("<close> variables need Lua 5.4 (this is " .. _VERSION .. ")")
            return
        end
        local id = helpers.unique("zclose")
        local block = assert(load([[
            local mqtt, assert, id, host, port = ...
            local kept
            do
                local c <close> = mqtt.Client(id)
                c:connect(host, 60, port)
                assert.is_true(c:is_connected())
                kept = c
            end
            return kept
        ]], "=<close> block", "t"))
        local kept = block(mqtt, assert, id, HOST, broker.port)
        assert.equal("closed", kept:state())
        assert.is_false(kept:is_connected())
        assert.is_true(wait_for(function() return broker_saw_drop(broker, id) end))
    end)

    it("closes an unreferenced connected client when it is garbage collected", function()
        local id = helpers.unique("zgc")
        -- Watch the client's will, which the broker sends when the connection
        -- drops without DISCONNECT, and the log, which records either way.
        local c = mqtt.Client(id)
        c:connect(HOST, 60, broker.port)
        assert.is_true(c:is_connected())
        assert.truthy(log_since(broker):find("as " .. id, 1, true))
        assert.is_false(broker_saw_drop(broker, id))
        c = nil -- luacheck: ignore (the only reference goes)
        collectgarbage()
        collectgarbage()
        assert.is_true(wait_for(function() return broker_saw_drop(broker, id) end, 3),
                       "the broker still sees " .. id .. " connected")
    end)

    it("lets os.exit(0, true) end a process with a live connected client promptly", function()
        local id = helpers.unique("zexit")
        local script = ([[
            local mqtt = require("mqtt")
            local c = mqtt.Client(%q, true, { reconnect = { min = 0.05, max = 0.2 } })
            c:connect("127.0.0.1", 60, %d)
            c:subscribe("exit/#", 1)
            c:loop()
            mqtt.sleep(0.05)
            assert(c:is_connected())
            io.stdout:write("connected\n")
            os.exit(0, true)
        ]]):format(id, broker.port)
        local t0 = mqtt.monotonic()
        local ok, code, out = helpers.run_lua(script, 10)
        local elapsed = mqtt.monotonic() - t0
        assert.is_true(ok, "exit status " .. tostring(code) .. ": " .. out)
        assert.equal(0, code)
        assert.matches("connected", out)
        assert.is_true(elapsed < 3, "took " .. elapsed .. " s")
        assert.is_true(wait_for(function() return broker_saw_drop(broker, id) end, 3))
    end)
end)
