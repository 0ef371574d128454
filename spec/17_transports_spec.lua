-- spec/17_transports_spec.lua: WebSocket and proxies through the public Lua
-- API (API.md "Transports and brokers"), against real components started
-- here on free loopback ports and stopped by PID: mosquitto (plain and TLS
-- listeners), websockify in front of it for ws:// and wss:// (Debian's
-- mosquitto has no websockets), tinyproxy (HTTP CONNECT, one with BasicAuth)
-- and microsocks (SOCKS5, one with a password); scripted servers in Lua for
-- the upgrade request's headers, a refused upgrade, fragments, ping, pong
-- and close frames through the client, and a proxy that never answers;
-- proxy = "env" in child processes with the proxy variables set; and
-- follow_redirects (MQTT 5.0) against fake brokers.

local helpers = require("helpers")
local mqtt = require("mqtt")
local socket = require("socket")

local HOST = helpers.HOST
local quote = helpers.quote
local wait_for = helpers.wait_dispatch

-- Everything the specs reach, started once for the file.
local env = {}

local function start_all()
    env.dir = helpers.tmpdir("zmqtt-transports")
    local ok, _, out = helpers.run("cd " .. quote(env.dir) .. " && openssl req -x509 " ..
        "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout b.key -out b.crt " ..
        "-days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:" .. HOST ..
        " 2>&1", 30)
    assert(ok, out)
    env.mqtts = helpers.free_port()
    local b = helpers.start_broker({ extra = { "listener " .. env.mqtts .. " " .. HOST,
        "certfile " .. env.dir .. "/b.crt", "keyfile " .. env.dir .. "/b.key" } })
    env.mqtt = b.port
    env.ws = helpers.start_websockify(env.mqtt)
    env.wss = helpers.start_websockify(env.mqtt, env.dir .. "/b.crt", env.dir .. "/b.key")
    local targets = { env.mqtt, env.mqtts, env.ws, env.wss }
    env.http = helpers.start_tinyproxy(targets)
    env.http_auth = helpers.start_tinyproxy(targets, "carol pa55")
    env.socks = helpers.start_microsocks()
    env.socks_auth = helpers.start_microsocks("bob", "s3cret")
    env.ctx = mqtt.ssl_context { cafile = env.dir .. "/b.crt" }
end

local function url(scheme, port, path)
    return scheme .. "://" .. HOST .. ":" .. port .. (path or "")
end

-- A connected client's round trip through the broker: it subscribes to a
-- topic of its own and gets back what it publishes, at every QoS.
local function round_trip(c, payloads)
    local topic = helpers.unique("ztr/")
    local got = helpers.watch(c, topic, 2)
    for qos = 0, 2 do c:publish(topic, payloads[qos + 1], qos) end
    assert.is_true(wait_for(function() return #got == 3 end, 10), "got " .. #got .. " of 3")
    table.sort(got, function(a, b) return a.qos < b.qos end)
    for qos = 0, 2 do
        assert.equal(qos, got[qos + 1].qos)
        assert.is_true(got[qos + 1].payload == payloads[qos + 1], "payload at QoS " .. qos)
    end
end

local function uri_of(fb)
    return "mqtt://" .. fb.host .. ":" .. fb.port
end

local function connection_error(err, text)
    assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
    assert.truthy(tostring(err):find(text, 1, true), tostring(err))
end

describe("transports", function()
    local clients = helpers.clients("ztr")
    helpers.close_after_each(clients)
    setup(start_all)
    teardown(function()
        clients:close_all()
        helpers.stop_all()
    end)

    describe("WebSocket", function()
        it("ws:// to mosquitto behind websockify: QoS 0, 1, 2, one message of 300 kB", function()
            local c = clients:new()
            c:connect { host = url("ws", env.ws, "/mqtt"), keepalive = 30 }
            assert.equal(url("ws", env.ws, "/mqtt"), c:server())
            round_trip(c, { "zero", string.rep("ws! ", 75000), "two" })
        end)

        it("wss:// with an ssl_ctx: QoS 0, 1, 2, one message of 300 kB", function()
            local c = clients:new()
            c:connect { host = url("wss", env.wss), keepalive = 30, ssl_ctx = env.ctx }
            round_trip(c, { string.rep("wss ", 75000), "one", "two" })
        end)

        it("wss:// without the test CA fails verification", function()
            local c = clients:new()
            local ok, err = pcall(c.connect, c, { host = url("wss", env.wss), keepalive = 30 })
            assert.is_false(ok)
            assert.equal("tls error", err.name, tostring(err))
        end)

        -- A scripted server: the client's upgrade request, answered 403.
        it("ws_headers reach the server; a refused upgrade names its status", function()
            local srv = assert(socket.bind(HOST, 0))
            local _, port = srv:getsockname()
            local c = clients:new(nil, true, { reconnect = false })
            c:connect_async { host = url("ws", port, "/a/b?x=1"), keepalive = 30,
                              ws_headers = { Authorization = "Bearer t0k", ["X-Zmqtt"] = "yes" } }
            srv:settimeout(5)
            local conn = assert(srv:accept())
            conn:settimeout(5)
            local request = {}
            repeat
                local line = assert(conn:receive("*l"))
                request[#request + 1] = line
            until line == ""
            conn:send("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            local rec = helpers.record_events(c)
            assert.is_true(wait_for(function() return #rec.connacks == 1 end))
            conn:close()
            srv:close()
            local text = table.concat(request, "\n")
            assert.equal("GET /a/b?x=1 HTTP/1.1", request[1])
            assert.truthy(text:find("\nAuthorization: Bearer t0k\n", 1, true), text)
            assert.truthy(text:find("\nX-Zmqtt: yes\n", 1, true), text)
            assert.truthy(text:lower():find("\nsec%-websocket%-protocol: mqtt\n"), text)
            assert.truthy(text:find("\nHost: " .. HOST .. ":" .. port .. "\n", 1, true), text)
            local err = rec.connacks[1].error
            connection_error(err, "websocket upgrade refused: 403")
            assert.equal(1, c:stats().connect_failures)
        end)
    end)

    describe("proxies", function()
        local cases = {
            { "HTTP CONNECT", function() return url("http", env.http) end },
            { "HTTP CONNECT with BasicAuth", function()
                return "http://carol:pa55@" .. HOST .. ":" .. env.http_auth end },
            { "SOCKS5", function() return url("socks5", env.socks) end },
            { "SOCKS5 with a password", function()
                return "socks5://bob:s3cret@" .. HOST .. ":" .. env.socks_auth end },
        }
        for _, case in ipairs(cases) do
            it(case[1] .. ": mqtt://, mqtts://, ws:// and wss:// through it", function()
                local proxy = case[2]()
                for _, target in ipairs { { url("mqtt", env.mqtt) }, { url("mqtts", env.mqtts), env.ctx },
                                           { url("ws", env.ws) }, { url("wss", env.wss), env.ctx } } do
                    local c = clients:new()
                    c:connect { host = target[1], keepalive = 30, proxy = proxy, ssl_ctx = target[2] }
                    assert.equal(target[1], c:server())
                    round_trip(c, { "a", "b", "c" })
                    c:close()
                end
            end)
        end

        it("the client's proxy option is the default of every connect", function()
            local c = clients:new(nil, true, { proxy = url("socks5", env.socks) })
            c:connect { host = url("mqtt", env.mqtt), keepalive = 30 }
            round_trip(c, { "a", "b", "c" })
        end)

        it("an unreachable proxy: MQTTConnectionError naming the step", function()
            local dead = helpers.free_port()
            local c = clients:new()
            local ok, err = pcall(c.connect, c, { host = url("mqtt", env.mqtt), keepalive = 30,
                                                  proxy = url("http", dead) })
            assert.is_false(ok)
            connection_error(err, "proxy connect failed")
            assert.truthy(tostring(err):find(tostring(dead), 1, true), tostring(err))
        end)

        it("BasicAuth without credentials: proxy refused: 407", function()
            local c = clients:new()
            local ok, err = pcall(c.connect, c, { host = url("mqtt", env.mqtt), keepalive = 30,
                                                  proxy = url("http", env.http_auth) })
            assert.is_false(ok)
            connection_error(err, "proxy refused: 407")
        end)

        it("SOCKS5 with a wrong password: proxy authentication failed", function()
            local c = clients:new()
            local ok, err = pcall(c.connect, c, { host = url("mqtt", env.mqtt), keepalive = 30,
                proxy = "socks5://bob:wrong@" .. HOST .. ":" .. env.socks_auth })
            assert.is_false(ok)
            connection_error(err, "proxy authentication failed")
        end)

        it("connect_timeout covers a proxy that accepts and never answers", function()
            local srv = assert(socket.bind(HOST, 0)) -- the kernel accepts; nobody answers
            local _, port = srv:getsockname()
            local c = clients:new(nil, true, { connect_timeout = 0.3 })
            local t0 = socket.gettime()
            local ok, err = pcall(c.connect, c, { host = url("mqtt", env.mqtt), keepalive = 30,
                                                  proxy = url("http", port) })
            local took = socket.gettime() - t0
            srv:close()
            assert.is_false(ok)
            assert.equal("timeout", err.name, tostring(err))
            assert.truthy(tostring(err):find("proxy", 1, true), tostring(err))
            assert.is_true(took < 5, "took " .. took .. " s")
        end)

        local bad = {
            { "an unknown proxy scheme", "ftp://h:21", "proxy: " },
            { "a proxy URI with a path", "http://h:3128/x", "takes no path" },
            { "a proxy with a bad port", "socks5://h:99999", "bad port" },
        }
        for _, case in ipairs(bad) do
            it("bad proxy URI, an argument error before anything is sent: " .. case[1], function()
                local srv = assert(socket.bind(HOST, 0))
                local _, port = srv:getsockname()
                local c = clients:new()
                local ok, err = pcall(c.connect_async, c, { host = url("mqtt", port), keepalive = 30,
                                                            proxy = case[2] })
                assert.is_false(ok)
                assert.equal("invalid argument", err.name, tostring(err))
                assert.truthy(tostring(err):find(case[3], 1, true), tostring(err))
                assert.equal(0, c:stats().connect_failures)
                srv:settimeout(0.05)
                assert.is_nil(srv:accept())
                srv:close()
            end)
        end
    end)

    describe('proxy = "env"', function()
        -- A child connects with proxy = "env" in the environment `vars`;
        -- returns "ok" or the error's text.
        local function child(vars, target, cafile)
            local script = [[
local mqtt = require("mqtt")
local c = mqtt.Client("ztr-env", true, { connect_timeout = 5 })
local ok, err = pcall(c.connect, c, { host = arg_target, keepalive = 30, proxy = "env",
    ssl_ctx = arg_ca and mqtt.ssl_context { cafile = arg_ca } or nil })
io.write(ok and "ok" or tostring(err))
c:close()
]]
            script = "arg_target = " .. string.format("%q", target) .. "; arg_ca = " ..
                (cafile and string.format("%q", cafile) or "nil") .. "\n" .. script
            local ok, _, out = helpers.run("env -u http_proxy -u https_proxy -u all_proxy " ..
                "-u no_proxy -u HTTPS_PROXY -u ALL_PROXY -u NO_PROXY " .. vars .. " " ..
                helpers.child_env() .. " " .. helpers.LUA .. " -e " .. quote(script), 30)
            assert(ok ~= nil, out)
            return out
        end

        it("follows curl: http_proxy for mqtt:// and ws://, https_proxy for mqtts:// and wss://",
           function()
            local dead = helpers.free_port()
            local dead_http = "http_proxy=" .. url("http", dead)
            local dead_https = "https_proxy=" .. url("http", dead)
            -- A dead proxy for the scheme shows the variable was read.
            assert.truthy(child(dead_http, url("mqtt", env.mqtt)):find("proxy connect failed", 1, true))
            assert.truthy(child(dead_http, url("ws", env.ws)):find("proxy connect failed", 1, true))
            assert.equal("ok", child(dead_http, url("mqtts", env.mqtts), env.dir .. "/b.crt"))
            assert.truthy(child(dead_https, url("mqtts", env.mqtts), env.dir .. "/b.crt")
                :find("proxy connect failed", 1, true))
            assert.equal("ok", child(dead_https, url("mqtt", env.mqtt)))
            -- Live ones carry the connection.
            assert.equal("ok", child("http_proxy=" .. url("http", env.http), url("ws", env.ws)))
            assert.equal("ok", child("https_proxy=" .. url("socks5", env.socks),
                                     url("wss", env.wss), env.dir .. "/b.crt"))
        end)

        it("all_proxy when the scheme's variable is unset; no_proxy exempts hosts", function()
            local dead = "all_proxy=" .. url("socks5", helpers.free_port())
            assert.truthy(child(dead, url("mqtt", env.mqtt)):find("proxy connect failed", 1, true))
            assert.equal("ok", child("all_proxy=" .. url("socks5", env.socks), url("mqtt", env.mqtt)))
            assert.equal("ok", child(dead .. " no_proxy=" .. HOST, url("mqtt", env.mqtt)))
            assert.equal("ok", child(dead .. " no_proxy='*'", url("mqtt", env.mqtt)))
            assert.equal("ok", child("", url("mqtt", env.mqtt)))
        end)
    end)
end)

-- A scripted WebSocket server on one accepted luasocket connection: the
-- upgrade answered 101, frames written as given and the client's read.
local function ws_accept(request)
    local key = request:match("\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: *([^\r\n]+)")
    local ok, _, out = helpers.run("printf %s " .. quote(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11") ..
        " | openssl sha1 -binary | base64", 10)
    assert(ok, out)
    return (out:gsub("%s+$", ""))
end

local function bxor(a, b)
    local r, bit = 0, 1
    for _ = 1, 8 do
        local x, y = a % 2, b % 2
        if x ~= y then r = r + bit end
        a, b, bit = math.floor(a / 2), math.floor(b / 2), bit * 2
    end
    return r
end

-- A server frame: fin, opcode, payload (unmasked, under 126 bytes).
local function frame(fin, opcode, payload)
    return string.char((fin and 0x80 or 0) + opcode, #payload) .. payload
end

-- The client's next frame: opcode, unmasked payload, whether it was masked.
local function read_frame(conn)
    local h = assert(conn:receive(2))
    local b0, b1 = h:byte(1, 2)
    local n = b1 % 128
    if n == 126 then
        local e = assert(conn:receive(2))
        n = e:byte(1) * 256 + e:byte(2)
    end
    assert(n < 65536, "a frame this spec does not expect")
    local masked = b1 >= 128
    local mask = masked and assert(conn:receive(4)) or "\0\0\0\0"
    local data = n > 0 and assert(conn:receive(n)) or ""
    local out = {}
    for i = 1, #data do out[i] = string.char(bxor(data:byte(i), mask:byte((i - 1) % 4 + 1))) end
    return b0 % 16, table.concat(out), masked
end

describe("a scripted WebSocket server", function()
    local clients = helpers.clients("ztr")
    helpers.close_after_each(clients)

    it("fragments with a ping between them, a pong back, a close frame answered and reported", function()
        local srv = assert(socket.bind(HOST, 0))
        local _, port = srv:getsockname()
        local c = clients:new(nil, true, { reconnect = false })
        local rec = helpers.record_events(c)
        c:connect_async { host = url("ws", port, "/mqtt"), keepalive = 30 }
        srv:settimeout(5)
        local conn = assert(srv:accept())
        srv:close()
        conn:settimeout(5)
        local request = {}
        repeat
            local line = assert(conn:receive("*l"))
            request[#request + 1] = line
        until line == ""
        conn:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
            "Sec-WebSocket-Accept: " .. ws_accept(table.concat(request, "\n")) .. "\r\n" ..
            "Sec-WebSocket-Protocol: mqtt\r\n\r\n")
        local op, connect, masked = read_frame(conn)
        assert.equal(2, op, "CONNECT in a binary frame")
        assert.is_true(masked, "client frames are masked")
        assert.equal(0x10, connect:byte(1))
        -- CONNACK in two fragments, a ping between them.
        conn:send(frame(false, 2, "\32\2") .. frame(true, 9, "abcd") .. frame(true, 0, "\0\0"))
        assert.is_true(wait_for(function() return c:is_connected() end))
        local pop, pong = read_frame(conn)
        assert.same({ 10, "abcd" }, { pop, pong }, "the ping's pong")
        -- A PUBLISH in three fragments.
        local got = helpers.collect(c)
        local publish = "\48\11\0\4t/wshello"
        conn:send(frame(false, 2, publish:sub(1, 3)) .. frame(false, 0, publish:sub(4, 8)) ..
            frame(true, 0, publish:sub(9)))
        assert.is_true(wait_for(function() return #got == 1 end))
        assert.same({ "t/ws", "hello" }, { got[1].topic, got[1].payload })
        -- The server closes: the client answers with the same code and reports the loss.
        conn:send(frame(true, 8, "\3\232"))
        local cop, code = read_frame(conn)
        assert.same({ 8, "\3\232" }, { cop, code }, "the close echoed, code 1000")
        assert.is_true(wait_for(function() return #rec.disconnects == 1 end))
        assert.is_false(c:is_connected())
        conn:close()
    end)
end)

describe("follow_redirects (MQTT 5.0, fake brokers)", function()
    local FB = require("fake_broker")
    local clients, brokers = helpers.clients("ztr"), helpers.fake_brokers({ timeout = 3 })
    helpers.close_after_each(clients, brokers)

    local function client(opts, lines)
        local o = { protocol = mqtt.MQTTv5, reconnect = { min = 0.05, max = 0.2 },
                    logger = function(_, text) lines[#lines + 1] = text end }
        for k, v in pairs(opts or {}) do o[k] = v end
        return clients:new(nil, true, o)
    end

    local function logged(lines, pattern)
        for _, l in ipairs(lines) do
            if l:find(pattern, 1, true) then return true end
        end
        return false
    end

    it("a CONNACK 0x9C with server_reference: the same connect goes on there", function()
        local a, b = brokers:new(), brokers:new()
        local lines = {}
        local c = client({ reconnect = false }, lines)
        local rec = helpers.record_events(c)
        c:connect_async { host = uri_of(a), keepalive = 30, follow_redirects = true }
        a:handshake { reason_code = 0x9C, connack_properties = { server_reference = HOST .. ":" .. b.port } }
        b:handshake()
        assert.is_true(wait_for(function() return c:is_connected() end))
        assert.equal("mqtt://" .. HOST .. ":" .. b.port, c:server())
        -- is_connected() follows the I/O thread; the events come at dispatch,
        -- the refusal's (if reported) before the success's.
        assert.is_true(wait_for(function()
            local last = rec.connacks[#rec.connacks]
            return last ~= nil and last.return_code == 0
        end))
        assert.equal(1, c:stats().connect_failures)
        assert.is_true(logged(lines, "redirected to mqtt://" .. HOST .. ":" .. b.port))
    end)

    it("without follow_redirects the reference is only reported", function()
        local a, b = brokers:new(), brokers:new()
        local c = client({ reconnect = false }, {})
        local rec = helpers.record_events(c)
        c:connect_async { host = uri_of(a), keepalive = 30 }
        a:handshake { reason_code = 0x9C, connack_properties = { server_reference = HOST .. ":" .. b.port } }
        assert.is_true(wait_for(function() return #rec.connacks == 1 end))
        assert.equal(HOST .. ":" .. b.port, rec.connacks[1].error.server_reference)
        assert.is_nil(b:accept(0.1))
        assert.equal(uri_of(a), c:server())
    end)

    it("the Client option's default; a DISCONNECT 0x9D moves the client, a bad reference does not",
       function()
        local a, b = brokers:new(), brokers:new()
        local lines = {}
        local c = client({ follow_redirects = true }, lines)
        c:connect_async { host = uri_of(a), keepalive = 30 }
        c:loop() -- automatic reconnects
        a:handshake()
        assert.is_true(wait_for(function() return c:is_connected() end))
        a:send(FB.v5.disconnect({ reason_code = 0x9D,
                                  properties = { server_reference = "mqtt://" .. HOST .. ":" .. b.port } }))
        a:close_client()
        b:handshake()
        assert.is_true(wait_for(function()
            return c:is_connected() and c:server() == uri_of(b)
        end))
        -- A reference that is no server: logged, the list goes on as before.
        b:send(FB.v5.disconnect({ reason_code = 0x9C,
                                  properties = { server_reference = HOST .. ":99999" } }))
        b:close_client()
        assert.is_true(wait_for(function() return logged(lines, "redirect not followed") end))
        a:handshake()
        assert.is_true(wait_for(function() return c:is_connected() and c:server() == uri_of(a) end))
        assert.is_true(logged(lines, "bad port '99999'"))
    end)

    it("follow_redirects must be a boolean", function()
        local c = clients:new()
        local ok, err = pcall(c.connect_async, c, { host = HOST, keepalive = 30, follow_redirects = 1 })
        assert.is_false(ok)
        assert.equal("invalid argument", err.name, tostring(err))
        assert.truthy(tostring(err):find("follow_redirects must be a boolean", 1, true))
        ok, err = pcall(mqtt.Client, "id", true, { follow_redirects = "yes" })
        assert.is_false(ok)
        assert.truthy(tostring(err):find("follow_redirects must be a boolean", 1, true))
    end)
end)
