-- spec/16_servers_spec.lua: where a client connects (API.md "Transports and
-- brokers"): URIs for host, unix:// against mosquitto's Unix-socket
-- listener, mqtts:// without ssl_ctx against the system CA store, bad URIs
-- refused before anything is sent, servers lists with round robin and
-- back-off per round, failover of a QoS 1 stream when the first broker is
-- killed, and the rule that resets the back-off.

local helpers = require("helpers")
local mqtt = require("mqtt")

local HOST = helpers.HOST
local wait_for = helpers.wait_dispatch

-- A URI for a port of the loopback address.
local function uri(port, scheme)
    return (scheme or "mqtt") .. "://" .. HOST .. ":" .. port
end

-- A client options table whose logger keeps every line in `lines`.
local function logged(lines, more)
    local o = { logger = function(_, text) lines[#lines + 1] = text end }
    for k, v in pairs(more or {}) do o[k] = v end
    return o
end

-- The lines matching a Lua pattern, with their captures.
local function matching(lines, pattern)
    local out = {}
    for _, l in ipairs(lines) do
        local cap = l:match(pattern)
        if cap then out[#out + 1] = cap end
    end
    return out
end

-- Back-off steps logged so far ("back-off step n"), in order.
local function steps(lines)
    local out = {}
    for _, s in ipairs(matching(lines, "back%-off step (%d+)")) do out[#out + 1] = tonumber(s) end
    return out
end

describe("host as a URI", function()
    local clients = helpers.clients("zsrv")
    helpers.close_after_each(clients)
    teardown(function() helpers.stop_all() end)

    it("unix:// reaches mosquitto's Unix-socket listener: publish and subscribe", function()
        local dir = helpers.tmpdir("zmqtt-unix")
        local path = dir .. "/mqtt.sock"
        helpers.start_broker({ extra = "listener 0 " .. path })
        local c = clients:new()
        c:connect("unix://" .. path, 30)
        assert.is_true(c:is_connected())
        assert.equal("unix://" .. path, c:server())
        local got = helpers.watch(c, "zsrv/unix", 1)
        c:publish("zsrv/unix", "over a Unix socket", 1)
        assert.is_true(wait_for(function() return #got == 1 end))
        assert.equal("over a Unix socket", got[1].payload)
    end)

    it("a missing socket path is an MQTTConnectionError naming the path", function()
        local path = helpers.tmpdir("zmqtt-unix") .. "/absent.sock"
        local c = clients:new()
        local ok, err = pcall(c.connect, c, "unix://" .. path, 30)
        assert.is_false(ok)
        assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
        assert.truthy(tostring(err):find(path, 1, true), tostring(err))
    end)

    it("mqtt:// with its own port wins over the positional port", function()
        local b = helpers.start_broker()
        local c = clients:new()
        c:connect(uri(b.port), 30, 1)
        assert.is_true(c:is_connected())
        assert.equal(uri(b.port), c:server())
    end)

    it("mqtts:// without ssl_ctx verifies against the system CA store", function()
        local dir = helpers.tmpdir("zmqtt-selfsigned")
        local ok, _, out = helpers.run("cd " .. helpers.quote(dir) .. " && openssl req -x509 " ..
            "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout b.key -out b.crt " ..
            "-days 2 -subj /CN=" .. HOST .. " -addext subjectAltName=IP:" .. HOST .. " 2>&1", 30)
        assert(ok, out)
        local port = helpers.free_port()
        local b = helpers.start_broker({ extra = { "listener " .. port .. " " .. HOST,
            "certfile " .. dir .. "/b.crt", "keyfile " .. dir .. "/b.key" } })
        local c = clients:new()
        local done, err = pcall(c.connect, c, uri(port, "mqtts"), 30)
        assert.is_false(done)
        assert.equal("tls error", err.name, tostring(err))
        assert.truthy(tostring(err):find("not trusted", 1, true), tostring(err))
        -- The same broker over plain TCP is up: TLS verification refused it.
        c:connect(uri(b.port), 30)
        assert.is_true(c:is_connected())
    end)
end)

describe("bad URIs", function()
    local fakes = helpers.fake_brokers()
    local clients = helpers.clients("zsrv")
    helpers.close_after_each(clients, fakes)

    local cases = {
        { "unknown scheme", { host = "foo://h" }, "unknown scheme 'foo'" },
        { "bad port", { host = "mqtt://h:70000" }, "bad port '70000'" },
        { "port 0", { host = "mqtt://h:0" }, "bad port '0'" },
        { "empty host", { host = "mqtt://:1883" }, "empty host" },
        { "a port in a plain host", { host = "h:1883" }, "not a host name" },
        { "relative unix path", { host = "unix://x.sock" }, "absolute path" },
        { "a bad server in the list", { servers = { "mqtt://h", "http://h" } },
          "servers 2: unknown scheme 'http'" },
        { "an empty servers list", { servers = {} }, "servers must be a non-empty list" },
        { "servers not strings", { servers = { "mqtt://h", 5 } }, "servers[2] must be" },
        { "host and servers", { host = "h", servers = { "mqtt://h" } }, "not both" },
        { "ws_headers not strings", { host = "ws://h/", ws_headers = { ["X-A"] = 1 } },
          "ws_headers must map" },
        { "a header name with a blank", { host = "ws://h/", ws_headers = { ["X A"] = "1" } },
          "is not a header name" },
        { "a bad proxy URI", { host = "h", proxy = "ftp://h:1080" }, "proxy: " },
        { "an empty proxy", { host = "h", proxy = "" }, "proxy must be a URI string" },
    }
    for _, case in ipairs(cases) do
        it("raise an argument error and send nothing: " .. case[1], function()
            local fb = fakes:new()
            local c = clients:new()
            local args = { keepalive = 30, port = fb.port }
            for k, v in pairs(case[2]) do args[k] = v end
            local ok, err = pcall(c.connect_async, c, args)
            assert.is_false(ok)
            assert.equal("invalid argument", err.name, tostring(err))
            assert.truthy(tostring(err):find(case[3], 1, true), tostring(err))
            assert.truthy(tostring(err):find("bad argument #1 to 'connect_async'", 1, true))
            assert.equal(0, c:stats().connect_failures)
            assert.equal("disconnected", c:state())
            assert.is_nil(fb:accept(0.05))
        end)
    end

    it("mqtt.Client checks the same keys as defaults", function()
        for _, o in ipairs { { servers = "mqtt://h" }, { servers = { [2] = "h" } },
                              { ws_headers = { 1, 2 } }, { proxy = 5 } } do
            local ok, err = pcall(mqtt.Client, "id", true, o)
            assert.is_false(ok)
            assert.equal("invalid argument", err.name, tostring(err))
            assert.truthy(tostring(err):find("bad argument #3 to 'Client'", 1, true), tostring(err))
        end
    end)
end)

describe("servers", function()
    local clients = helpers.clients("zsrv")
    helpers.close_after_each(clients)
    teardown(function() helpers.stop_all() end)

    it("a blocking connect tries each server of the list once, in order", function()
        local b = helpers.start_broker()
        local dead1, dead2 = helpers.free_port(), helpers.free_port()
        local lines = {}
        local c = clients:new(nil, true, logged(lines))
        c:connect { servers = { uri(dead1), uri(dead2), HOST }, port = b.port, keepalive = 30 }
        assert.is_true(c:is_connected())
        assert.equal(HOST, c:server())
        assert.equal(2, c:stats().connect_failures)
        wait_for(function() return #matching(lines, "^connected to (.*)") == 1 end)
        assert.same({ uri(dead1), uri(dead2), HOST }, matching(lines, "^connecting to (.*)"))
        assert.same({ uri(dead1), uri(dead2) }, matching(lines, "^connect to (.-) failed"))
        assert.same({}, steps(lines), "no back-off within a round")
    end)

    it("connect_async goes through the round too: one CONNACK event for the call", function()
        local b = helpers.start_broker()
        local c = clients:new()
        local rec = helpers.record_events(c)
        c:connect_async { servers = { uri(helpers.free_port()), uri(b.port) }, keepalive = 30 }
        assert.is_true(wait_for(function() return #rec.connacks == 1 end))
        assert.equal(0, rec.connacks[1].return_code)
        assert.is_true(c:is_connected())
        assert.equal(1, c:stats().connect_failures)
        assert.equal(uri(b.port), c:server())
    end)

    it("a failed round raises the last failure; the next one starts after the back-off", function()
        local dead1, dead2 = helpers.free_port(), helpers.free_port()
        local lines = {}
        local c = clients:new(nil, true, logged(lines, { reconnect = { min = 0.02, max = 0.05 } }))
        local ok, err = pcall(c.connect, c, { servers = { uri(dead1), uri(dead2) }, keepalive = 30 })
        assert.is_false(ok)
        assert.truthy(tostring(err):find(HOST .. ":" .. dead2, 1, true), tostring(err))
        assert.equal(2, c:stats().connect_failures)
        -- Automatic reconnects: round robin, one back-off step per full round.
        c:loop()
        assert.is_true(wait_for(function() return c:stats().connect_failures >= 8 end, 10))
        c:disconnect()
        wait_for(function() return false end, 0.05) -- the logger lines queued so far
        local tried = matching(lines, "^connecting to (.*)")
        for i, u in ipairs(tried) do
            assert.equal(i % 2 == 1 and uri(dead1) or uri(dead2), u, "attempt " .. i)
        end
        local s = steps(lines)
        assert.is_true(#s >= 3, table.concat(lines, "\n"))
        for i, n in ipairs(s) do assert.equal(i, n, "back-off step of round " .. i) end
        -- Each step follows an attempt on the list's last server.
        local last
        for _, l in ipairs(lines) do
            if l:find("back-off step", 1, true) then
                assert.equal(uri(dead2), last)
            end
            last = l:match("^connect to (.-) failed") or last
        end
    end)

    it("mqtt.Client's servers are the defaults of every connect; host overrides them", function()
        local b = helpers.start_broker()
        local c = clients:new(nil, true, { servers = { uri(helpers.free_port()), uri(b.port) } })
        c:connect { keepalive = 30 }
        assert.equal(uri(b.port), c:server())
        assert.equal(1, c:stats().connect_failures)
        c:disconnect()
        c:connect(HOST, 30, b.port)
        assert.equal(HOST, c:server())
        assert.equal(1, c:stats().connect_failures)
    end)

    it("fail over a QoS 1 stream: the unacknowledged messages are resent on the next server", function()
        local a, b = helpers.start_broker(), helpers.start_broker()
        local sub = clients:new()
        sub:connect(HOST, 30, b.port)
        local got = helpers.watch(sub, "zsrv/stream", 1)
        local lines = {}
        local p = clients:new(nil, true, logged(lines, { reconnect = { min = 0.05, max = 0.2 },
                                                         max_inflight = 20 }))
        local acked_by_a, lost = {}, false
        local acks = 0
        p:on(mqtt.PUBACK, function(_, d)
            acks = acks + 1
            if not lost then acked_by_a[d.mid] = true end
        end)
        -- Events arrive in order: the PUBACKs before the loss came from a.
        p:on(mqtt.DISCONNECT, function() lost = true end)
        p:connect { servers = { uri(a.port), uri(b.port) }, keepalive = 30 }
        p:loop()
        assert.equal(uri(a.port), p:server())
        -- 100 messages acknowledged by a; then a stops answering (SIGSTOP)
        -- mid-stream, 400 more go out, and a is killed: they all must reach b.
        local N, FIRST, mids = 500, 100, {}
        for i = 1, FIRST do mids[i] = p:publish("zsrv/stream", tostring(i), 1) end
        assert.is_true(wait_for(function() return acks >= FIRST end, 10))
        assert(helpers.run("kill -STOP " .. a.pid))
        for i = FIRST + 1, N do mids[i] = p:publish("zsrv/stream", tostring(i), 1) end
        a.kill()
        assert.is_true(wait_for(function() return lost and p:is_connected() end, 10))
        assert.equal(uri(b.port), p:server())
        assert.is_true(wait_for(function() return acks >= N end, 20))
        local at_b = {}
        assert.is_true(wait_for(function()
            for _, m in ipairs(got) do at_b[tonumber(m.payload)] = true end
            for i = FIRST + 1, N do
                if not at_b[i] then return false end
            end
            return true
        end, 20))
        for i = 1, FIRST do assert.is_true(acked_by_a[mids[i]], "message " .. i .. " acked by a") end
        for i = FIRST + 1, N do
            assert.is_nil(acked_by_a[mids[i]], "message " .. i .. " acked by a stopped broker")
            assert.is_true(at_b[i], "message " .. i .. " lost")
        end
        assert.equal(0, p:stats().inflight)
        assert.same({ uri(a.port), uri(b.port) }, matching(lines, "^connected to (.*)"))
    end)
end)

describe("back-off", function()
    local fakes = helpers.fake_brokers()
    local clients = helpers.clients("zsrv")
    helpers.close_after_each(clients, fakes)

    -- The broker's side of one connection that ends: handshake, then cut.
    local function accept_and_drop(fb)
        fb:handshake()
        fb:close_client()
    end

    it("grows for a broker that accepts and drops at once, resets after min x 10 s up", function()
        local fb = fakes:new()
        local lines = {}
        local min = 0.1
        local c = clients:new(nil, true, logged(lines, { reconnect = { min = min, max = 5 } }))
        c:connect_async { host = HOST, port = fb.port, keepalive = 30 }
        c:loop()
        for _ = 1, 3 do accept_and_drop(fb) end
        fb:handshake()
        assert.is_true(wait_for(function() return c:is_connected() and #steps(lines) == 3 end))
        assert.same({ 1, 2, 3 }, steps(lines), "each quick drop is one more step")
        -- Up for longer than reconnect.min x 10: the next loss starts over.
        local up_since = c:stats().reconnects
        helpers.wait_until(function() return false end, min * 10 + 0.3)
        assert.equal(up_since, c:stats().reconnects)
        fb:close_client()
        assert.is_true(wait_for(function() return #steps(lines) == 4 end))
        assert.same({ 1, 2, 3, 1 }, steps(lines))
    end)
end)
