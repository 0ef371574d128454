-- spec/80_tls_spec.lua: TLS against a real mosquitto. A throwaway PKI (CA,
-- another CA, broker certificates good, for another name, expired, not yet
-- valid and self-signed, a client certificate and an encrypted key) is made
-- with openssl at setup; one broker serves a TLS listener per case. Covers
-- ssl_context arguments and their errors, QoS 0/1/2 over TLS, mutual TLS,
-- refusals with the reason in words, ALPN, SNI and session resumption (seen
-- by openssl s_server), PSK, reconnection after a broker restart, and leaks
-- over many connect/disconnect cycles in a child process.

local helpers = require("helpers")
local mqtt = require("mqtt")
local tls = require("mqtt.tls")
local compat = require("compat")

local HOST = helpers.HOST
local quote = helpers.quote
-- Until init.lua exports it, the spec reaches the function through mqtt.tls.
local ssl_context = mqtt.ssl_context or tls.ssl_context

local wait_for = helpers.wait_dispatch

---------------------------------------------------------------------------
-- The PKI, made fresh by openssl for each run

local PKI_SCRIPT = [=[
set -e
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -out "$1.crt" -days 30 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
cat > ext.cnf <<'X'
[srv]
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$ENV::SAN
[cli]
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
X
cat > ca.cnf <<'X'
[ca]
default_ca = zca
[zca]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
X
: > index.txt
echo 1000 > serial
# leaf NAME CN SAN EXTENSIONS [START END]: signed by ca.crt; fixed dates need `openssl ca`.
leaf() {
    key "$1.key"
    openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2"
    if [ -n "${5:-}" ]; then
        SAN="$3" openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in "$1.csr" \
            -out "$1.crt" -notext -startdate "$5" -enddate "$6" -extfile ext.cnf \
            -extensions "$4" 2>/dev/null
    else
        SAN="$3" openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
            -days 30 -out "$1.crt" -extfile ext.cnf -extensions "$4" 2>/dev/null
    fi
}
ca ca "zmqtt test CA"
ca other-ca "zmqtt other CA"
leaf broker localhost "DNS:localhost,IP:127.0.0.1" srv
leaf wrongname other.example "DNS:other.example" srv
leaf expired localhost "DNS:localhost,IP:127.0.0.1" srv 20200101000000Z 20200201000000Z
leaf future localhost "DNS:localhost,IP:127.0.0.1" srv 20900101000000Z 20900201000000Z
leaf client "zmqtt client" "DNS:client" cli
key self.key
openssl req -x509 -new -key self.key -out self.crt -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
# Encrypted keys: traditional PEM with AES-256, PKCS#8 PBES2 with 3DES and
# HMAC-SHA1 (what mbedtls 2.28 reads), and OpenSSL 3's default PKCS#8 (AES and
# HMAC-SHA256), which mbedtls 2.28 cannot read.
openssl pkey -in client.key -out client-enc.key -traditional -aes256 -passout pass:s3cret
openssl pkcs8 -topk8 -in client.key -out client-p8.key -v2 des3 -v2prf hmacWithSHA1 \
    -passout pass:s3cret
openssl pkey -in client.key -out client-sha256.key -aes256 -passout pass:s3cret
cat client.crt client.key > client-both.pem
openssl x509 -in ca.crt -outform DER -out ca.der
mkdir capath
cp ca.crt capath/ca.pem
echo "not a certificate" > garbage.pem
]=]

local pki_dir
local function pki(name)
    return pki_dir .. "/" .. name
end

local function make_pki()
    pki_dir = helpers.tmpdir("zmqtt-pki")
    local ok, code, out = helpers.run("cd " .. quote(pki_dir) .. " && " .. PKI_SCRIPT, 60)
    assert(ok, "making the test PKI failed (" .. tostring(code) .. "): " .. out)
end

local function remove_pki()
    if pki_dir and pki_dir:match("/zmqtt%-pki%.%w+$") and not os.getenv("ZMQTT_KEEP_DIRS") then
        helpers.run("rm -rf " .. quote(pki_dir))
    end
end

-- mosquitto listener lines: one TLS listener with broker certificate `cert`.
local function listener(port, cert, more)
    local lines = {
        "listener " .. port .. " " .. HOST,
        "cafile " .. pki("ca.crt"),
        "certfile " .. pki(cert .. ".crt"),
        "keyfile " .. pki(cert .. ".key"),
    }
    for _, l in ipairs(more or {}) do lines[#lines + 1] = l end
    return table.concat(lines, "\n")
end

-- Starts a mosquitto whose TLS listeners are named in `spec` (name -> {cert, lines});
-- returns the broker and the ports by name. A free port can be taken by another
-- process before mosquitto binds it: then it tries again with new ports.
local function tls_broker(spec)
    for attempt = 1, 3 do
        local ports, extra = {}, {}
        for name, l in pairs(spec) do
            ports[name] = helpers.free_port()
            extra[#extra + 1] = listener(ports[name], l[1], l[2])
        end
        local ok, b = pcall(helpers.start_broker, { extra = extra })
        if ok then return b, ports end
        if attempt == 3 or not tostring(b):find("Address already in use", 1, true) then
            error(b, 2)
        end
    end
end

---------------------------------------------------------------------------
-- openssl s_server, to see what the client sends (ALPN, SNI, resumption)

local function record_pid(pid)
    local pidfile = os.getenv("ZMQTT_TEST_PIDFILE")
    local stat = helpers.read_file("/proc/" .. pid .. "/stat")
    local start = stat and stat:match("^.*%) %S+" .. (" %S+"):rep(18) .. " (%d+)")
    if pidfile and start then
        local f = io.open(pidfile, "a")
        if f then
            f:write(pid, " ", start, " -\n")
            f:close()
        end
    end
end

-- Runs `openssl s_server ARGS -naccept n` on a free port for at most 20 s;
-- returns the port, a function returning its output so far, and a function
-- that waits (up to 5 s) for it to end after its n connections, then stops it.
local function s_server(args, n)
    local port = helpers.free_port()
    local out = pki("s_server-" .. port .. ".out")
    local cmd = ("timeout 20 stdbuf -oL openssl s_server -accept %s:%d -cert %s -key %s -www" ..
                 " -naccept %d %s >%s 2>&1 & echo $!"):format(HOST, port,
                 quote(pki("broker.crt")), quote(pki("broker.key")), n, args, quote(out))
    local ok, _, pid_text = helpers.run(cmd)
    local pid = assert(ok and tonumber(pid_text:match("%d+")), "s_server did not start")
    record_pid(pid)
    local function output() return helpers.read_file(out) or "" end
    local function stop()
        helpers.wait_until(function() return not helpers.pid_alive(pid) end, 5)
        if helpers.pid_alive(pid) then os.execute("kill -TERM " .. pid .. " 2>/dev/null") end
        helpers.wait_until(function() return not helpers.pid_alive(pid) end, 3)
    end
    assert(helpers.wait_until(function() return output():find("ACCEPT", 1, true) end, 5),
           "s_server is not listening: " .. output())
    return port, output, stop
end

---------------------------------------------------------------------------

describe("TLS", function()
    local broker, ports
    local clients = helpers.clients("ztls")
    helpers.close_after_each(clients)

    setup(function()
        make_pki()
        broker, ports = tls_broker({
            tls = { "broker" },
            mtls = { "broker", { "require_certificate true" } },
            wrongname = { "wrongname" },
            expired = { "expired" },
            future = { "future" },
            self = { "self" },
            tls13 = { "broker", { "tls_version tlsv1.3" } },
        })
    end)

    teardown(function()
        clients:close_all()
        helpers.stop_all()
        remove_pki()
    end)

    local function new_client(opts)
        return clients:new(nil, true, opts)
    end

    local function connect(ctx, port, opts)
        local c = new_client(opts)
        c:connect(HOST, 30, port, ctx)
        return c
    end

    -- Connecting with ctx to port must fail with a TLS connection error whose
    -- message contains every one of the plain strings given; returns the error.
    local function refused(ctx, port, ...)
        local c = new_client()
        local ok, err = pcall(c.connect, c, HOST, 30, port, ctx)
        assert.is_false(ok, "connected although it should not")
        assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError), tostring(err))
        assert.equal("tls error", err.name)
        for _, text in ipairs({ ... }) do
            assert.is_truthy(err.message:find(text, 1, true),
                             ("%q not in %q"):format(text, err.message))
        end
        assert.is_false(c:is_connected())
        return err
    end

    -- ssl_context(opts) must raise an "invalid argument" MQTTError whose
    -- message contains every one of the plain strings given.
    local function bad_context(opts, ...)
        local ok, err = pcall(ssl_context, opts)
        assert.is_false(ok, "ssl_context accepted bad options")
        assert.is_true(mqtt.is_error(err, mqtt.MQTTError), tostring(err))
        assert.is_false(mqtt.is_error(err, mqtt.MQTTConnectionError))
        assert.equal("invalid argument", err.name)
        for _, text in ipairs({ ... }) do
            assert.is_truthy(err.message:find(text, 1, true),
                             ("%q not in %q"):format(text, err.message))
        end
        assert.is_truthy(tostring(err):find("MQTTError", 1, true))
    end

    -- Subscribes c to topic at qos and waits for the SUBACK, which must grant qos.
    local function subscribe(c, topic, qos)
        assert.same({ qos }, helpers.subscribe_wait(c, topic, qos).granted_qos)
    end

    -- Collects c's messages (loop) and subscribes it as subscribe() does;
    -- returns the list of messages.
    local function watch(c, topic, qos)
        local got = helpers.collect(c)
        subscribe(c, topic, qos)
        return got
    end

    describe("mqtt.ssl_context", function()
        it("is exported by the mqtt module", function()
            assert.equal("function", type(mqtt.ssl_context),
                         "init.lua lacks: mqtt.ssl_context = require(\"mqtt.tls\").ssl_context")
            assert.is_true(tls.is_ssl_context(mqtt.ssl_context { cafile = pki("ca.crt") }))
        end)

        it("returns a context that connect accepts, and connect refuses anything else", function()
            local ctx = ssl_context { cafile = pki("ca.crt") }
            assert.is_true(tls.is_ssl_context(ctx))
            assert.is_false(tls.is_ssl_context({}))
            assert.matches("^mqtt.ssl_context", tostring(ctx))
            local c = new_client()
            local ok, err = pcall(c.connect, c, HOST, 30, ports.tls, { cafile = pki("ca.crt") })
            assert.is_false(ok)
            assert.equal("invalid argument", err.name)
            assert.matches("ssl_ctx", err.message)
        end)

        it("raises for unknown options and wrong types, naming them", function()
            bad_context({ ca_file = pki("ca.crt") }, "unknown option 'ca_file'", "cafile")
            bad_context({ verify = "false" }, "verify must be true or false")
            bad_context({ verify = 0 }, "verify must be true or false")
            bad_context({ cafile = 42 }, "cafile must be a string")
            bad_context({ alpn = "mqtt" }, "alpn must be a list")
            bad_context({ alpn = { "" } }, "alpn[1]")
            bad_context({ min_version = "tls1.1" }, "min_version must be 'tls1.2' or 'tls1.3'")
            bad_context("cafile", "options must be a table")
        end)

        it("says this mbedtls cannot do TLS 1.3 when min_version asks for it", function()
            bad_context({ cafile = pki("ca.crt"), min_version = "tls1.3" },
                        "min_version 'tls1.3'", "does not support TLS 1.3")
            assert.is_true(tls.is_ssl_context(ssl_context {
                cafile = pki("ca.crt"), min_version = "tls1.2" }))
        end)

        it("raises at once for missing or unreadable files, naming the file", function()
            local missing = pki("no-such-file.pem")
            bad_context({ cafile = missing }, "cafile '" .. missing .. "'", "No such file")
            bad_context({ capath = missing }, "capath '" .. missing .. "'")
            bad_context({ capath = pki("index.txt") }, "capath '" .. pki("index.txt") .. "'")
            bad_context({ cafile = pki("garbage.pem") }, "cafile '" .. pki("garbage.pem") .. "'",
                        "not a certificate")
            bad_context({ cafile = pki("ca.crt"), certfile = missing, keyfile = pki("client.key") },
                        "certfile '" .. missing .. "'")
            bad_context({ cafile = pki("ca.crt"), certfile = pki("client.crt"), keyfile = missing },
                        "keyfile '" .. missing .. "'", "No such file")
            bad_context({ cafile = pki("ca.crt"), certfile = pki("client.crt"),
                          keyfile = pki("garbage.pem") },
                        "keyfile '" .. pki("garbage.pem") .. "'", "not a private key")
            bad_context({ cafile = pki("ca.crt"), certfile = pki("client.crt") },
                        "certfile '" .. pki("client.crt") .. "' holds no private key")
            bad_context({ cafile = pki("ca.crt"), certfile = pki("client.crt"),
                          keyfile = pki("broker.key") },
                        "keyfile '" .. pki("broker.key") .. "' does not belong")
        end)

        it("raises for an encrypted key without key_password or with a wrong one", function()
            local enc = pki("client-enc.key")
            bad_context({ cafile = pki("ca.crt"), certfile = pki("client.crt"), keyfile = enc },
                        "keyfile '" .. enc .. "'", "give key_password")
            bad_context({ cafile = pki("ca.crt"), certfile = pki("client.crt"), keyfile = enc,
                          key_password = "wrong" },
                        "keyfile '" .. enc .. "'", "wrong key_password")
            for _, key in ipairs({ enc, pki("client-p8.key") }) do
                assert.is_true(tls.is_ssl_context(ssl_context {
                    cafile = pki("ca.crt"), certfile = pki("client.crt"), keyfile = key,
                    key_password = "s3cret" }))
            end
            bad_context({ cafile = pki("ca.crt"), certfile = pki("client.crt"),
                          keyfile = pki("client-sha256.key"), key_password = "s3cret" },
                        "keyfile '" .. pki("client-sha256.key") .. "'", "cannot read",
                        "-traditional")
        end)

        it("checks psk and psk_identity", function()
            bad_context({ psk = "xyz1", psk_identity = "id" }, "psk must be an even number of hex")
            bad_context({ psk = "abc", psk_identity = "id" }, "psk must be an even number of hex")
            bad_context({ psk = "abcd" }, "psk and psk_identity go together")
            bad_context({ psk_identity = "id" }, "psk and psk_identity go together")
            bad_context({ psk = ("ab"):rep(33), psk_identity = "id" }, "psk must be 1 to 32 bytes")
            assert.is_true(tls.is_ssl_context(ssl_context { psk = "00ff10", psk_identity = "id" }))
        end)

        it("verifies by default: without a CA it trusts the system bundle, not our CA", function()
            local ok, ctx = pcall(ssl_context, {})
            if not ok then
                -- No system bundle on this machine: then it must say so.
                assert.equal("invalid argument", ctx.name)
                assert.matches("no CA to verify the broker with", ctx.message)
                return
            end
            refused(ctx, ports.tls, "certificate not trusted (unknown CA)")
        end)
    end)

    describe("connects", function()
        it("by IP address, checked against the certificate's IP-address entries", function()
            local c = connect(ssl_context { cafile = pki("ca.crt") }, ports.tls)
            assert.is_true(c:is_connected())
            assert.equal("connected", c:state())
        end)

        it("delivers bursts of 60 kB messages whole, with no traffic after them", function()
            -- Large messages leave large partial packets at the end of a
            -- read, so the loop's buffer comes close to full: reads must stay
            -- whole ones (MQTT_TRANSPORT_WHOLE_READ) or the end of a burst
            -- may wait inside TLS, where no poll sees it, for the next ping.
            local ctx = ssl_context { cafile = pki("ca.crt") }
            local sub = connect(ctx, ports.tls)
            local got = watch(sub, "tls/burst", 0)
            local pub = connect(ctx, ports.tls)
            local N, body = 40, ("x"):rep(60000)
            for round = 1, 3 do
                for _ = 1, N do pub:publish("tls/burst", body, 0) end
                assert.is_true(helpers.wait_dispatch(function() return #got >= round * N end, 10),
                               ("round %d: %d of %d messages"):format(round, #got, round * N))
            end
        end)

        it("by server_name, checked against its DNS names", function()
            local c = connect(ssl_context { cafile = pki("ca.crt"), server_name = "localhost" },
                              ports.tls)
            assert.is_true(c:is_connected())
        end)

        it("with trust from a DER cafile, a capath directory or cadata text", function()
            for _, opts in ipairs({
                { cafile = pki("ca.der") },
                { capath = pki("capath") },
                { cadata = helpers.read_file(pki("ca.crt")) },
                { cafile = pki("other-ca.crt"), cadata = helpers.read_file(pki("ca.crt")) },
            }) do
                assert.is_true(connect(ssl_context(opts), ports.tls):is_connected())
            end
        end)

        for qos = 0, 2 do
            it(("publishes, subscribes and receives at QoS %d, both ways with mosquitto")
               :format(qos), function()
                local topic = "tls/" .. helpers.unique("q") .. "/" .. qos
                local c = connect(ssl_context { cafile = pki("ca.crt") }, ports.tls)
                local acked = {}
                local got = watch(c, topic, qos)
                local ack = ({ [1] = mqtt.PUBACK, [2] = mqtt.PUBCOMP })[qos]
                if ack then c:on(ack, function(_, d) acked[d.mid] = true end) end
                local payload = ("\0\1\2binary\255"):rep(100)
                local mids = {}
                for i = 1, 5 do mids[i] = c:publish(topic, payload .. i, qos) end
                -- And from mosquitto_pub through the broker's plain listener.
                local ok, _, out = helpers.mosquitto_pub(broker, { topic = topic, qos = qos,
                                                                    message = "from mosquitto" })
                assert.is_true(ok, out)
                assert.is_true(wait_for(function() return #got == 6 end),
                               ("got %d of 6 messages"):format(#got))
                local seen = {}
                for _, m in ipairs(got) do
                    seen[m.payload] = (seen[m.payload] or 0) + 1
                    assert.equal(topic, m.topic)
                    assert.equal(qos, m.qos)
                end
                for i = 1, 5 do assert.equal(1, seen[payload .. i]) end
                assert.equal(1, seen["from mosquitto"])
                if ack then
                    assert.is_true(wait_for(function()
                        for i = 1, 5 do if not acked[mids[i]] then return false end end
                        return true
                    end), "not every message was acknowledged")
                end
                -- mosquitto_sub on the plain listener sees what the TLS client sends.
                local sub = helpers.mosquitto_sub_collect(broker, { topic = topic, qos = qos,
                                                                    count = 1 })
                c:publish(topic, "to mosquitto", qos)
                local msgs = sub.wait(5, helpers.dispatcher())
                assert.equal("to mosquitto", msgs[1] and msgs[1].payload)
            end)
        end

        it("carries large messages and bursts whole (nothing left inside mbedtls)", function()
            local topic = "tls/" .. helpers.unique("big")
            local c = connect(ssl_context { cafile = pki("ca.crt") }, ports.tls)
            local got, bytes = {}, 0
            c:loop(function(_, d)
                got[#got + 1] = d.message
                bytes = bytes + #d.message.payload
            end)
            subscribe(c, topic, 1)
            local big = {}
            for i = 1, compat.idiv(3 * 1024 * 1024, 64) do big[i] = ("%063d\n"):format(i) end
            big = table.concat(big)
            c:publish(topic, big, 1)
            for i = 1, 2000 do c:publish(topic, "small " .. i, 0) end
            c:publish(topic, "last", 1)
            assert.is_true(wait_for(function() return #got == 2002 end, 15),
                           ("got %d of 2002 messages"):format(#got))
            assert.equal(big, got[1].payload)
            assert.equal("last", got[2002].payload)
        end)

        it("with a client certificate (mutual TLS) from files, one PEM, or strings", function()
            local read = helpers.read_file
            for _, opts in ipairs({
                { certfile = pki("client.crt"), keyfile = pki("client.key") },
                { certfile = pki("client-both.pem") },
                { certfile = pki("client.crt"), keyfile = pki("client-enc.key"),
                  key_password = "s3cret" },
                { certdata = read(pki("client.crt")), keydata = read(pki("client.key")) },
                { certdata = read(pki("client.crt")), keydata = read(pki("client-enc.key")),
                  key_password = "s3cret" },
            }) do
                opts.cadata = read(pki("ca.crt"))
                local c = connect(ssl_context(opts), ports.mtls)
                assert.is_true(c:is_connected())
                c:close()
            end
        end)

        it("to broker certificates it cannot verify only with an explicit verify = false", function()
            local ctx = ssl_context { verify = false }
            for _, name in ipairs({ "tls", "self", "expired", "future", "wrongname" }) do
                assert.is_true(connect(ctx, ports[name]):is_connected(), name)
            end
            assert.is_true(connect(ssl_context { cafile = pki("other-ca.crt"), verify = false },
                                   ports.tls):is_connected())
        end)

        it("many clients through one context at once; the context outlives its Lua value",
           function()
            local ctx = ssl_context { cafile = pki("ca.crt"), certfile = pki("client.crt"),
                                      keyfile = pki("client.key") }
            local list = {}
            for i = 1, 8 do
                list[i] = new_client()
                list[i]:connect_async(HOST, 30, ports.mtls, ctx)
            end
            ctx = nil -- luacheck: ignore
            collectgarbage()
            collectgarbage()
            assert.is_true(wait_for(function()
                for _, c in ipairs(list) do if not c:is_connected() then return false end end
                return true
            end, 10), "not every client connected")
            -- Each client reconnects with its own reference to the collected context.
            list[1]:disconnect()
            list[1]:reconnect()
            assert.is_true(list[1]:is_connected())
        end)
    end)

    describe("refuses, saying why", function()
        it("a broker certificate from an unknown CA", function()
            refused(ssl_context { cafile = pki("other-ca.crt") }, ports.tls,
                    "TLS handshake with 127.0.0.1 port " .. ports.tls,
                    "certificate not trusted (unknown CA)")
        end)

        it("a certificate for another host name, by address and by name", function()
            refused(ssl_context { cafile = pki("ca.crt") }, ports.wrongname,
                    "host name mismatch: certificate is not for 127.0.0.1")
            refused(ssl_context { cafile = pki("ca.crt"), server_name = "localhost" },
                    ports.wrongname, "host name mismatch: certificate is not for localhost")
            -- The right certificate, the wrong expected name.
            refused(ssl_context { cafile = pki("ca.crt"), server_name = "other.example" },
                    ports.tls, "host name mismatch: certificate is not for other.example")
            refused(ssl_context { cafile = pki("ca.crt"), server_name = "127.0.0.2" },
                    ports.tls, "host name mismatch: certificate is not for 127.0.0.2")
        end)

        it("an expired certificate and one not yet valid", function()
            refused(ssl_context { cafile = pki("ca.crt") }, ports.expired, "certificate expired")
            refused(ssl_context { cafile = pki("ca.crt") }, ports.future,
                    "certificate not yet valid")
        end)

        it("a self-signed broker certificate", function()
            refused(ssl_context { cafile = pki("ca.crt") }, ports.self,
                    "certificate not trusted (unknown CA)", "self-signed")
        end)

        it("a mutual-TLS listener without a client certificate", function()
            refused(ssl_context { cafile = pki("ca.crt") }, ports.mtls,
                    "the broker requires a client certificate")
        end)

        it("a broker that speaks only TLS 1.3", function()
            refused(ssl_context { cafile = pki("ca.crt") }, ports.tls13,
                    "TLS protocol version mismatch")
        end)

        it("a port that does not speak TLS", function()
            refused(ssl_context { cafile = pki("ca.crt") }, broker.port,
                    "is the port a TLS listener?")
        end)

        it("a handshake that does not finish within the connect timeout", function()
            local socket = require("socket")
            local srv = assert(socket.bind(HOST, 0)) -- the kernel accepts; nobody answers
            local _, port = srv:getsockname()
            local c = new_client({ connect_timeout = 0.5 })
            local t0 = mqtt.monotonic()
            local ok, err = pcall(c.connect, c, HOST, 30, tonumber(port),
                                  ssl_context { cafile = pki("ca.crt") })
            local took = mqtt.monotonic() - t0
            srv:close()
            assert.is_false(ok)
            assert.is_true(mqtt.is_error(err, mqtt.MQTTConnectionError))
            assert.equal("timeout", err.name)
            assert.matches("TLS handshake with 127.0.0.1 port %d+ timed out", err.message)
            assert.is_true(took >= 0.4 and took < 3, "took " .. took .. " s")
        end)
    end)

    describe("as openssl s_server sees it", function()
        it("offers ALPN, and the broker's choice is accepted", function()
            local port, output, stop = s_server("-alpn mqtt", 1)
            local c = new_client({ connect_timeout = 0.5 })
            local ok, err = pcall(c.connect, c, HOST, 30, port,
                                  ssl_context { cafile = pki("ca.crt"), alpn = { "mqtt" } })
            stop()
            -- s_server is no MQTT broker: the handshake succeeds, the CONNACK never comes.
            assert.is_false(ok)
            assert.matches("no CONNACK", err.message)
            assert.matches("ALPN protocols advertised by the client: mqtt", output())
            assert.matches("ALPN protocols selected: mqtt", output())
            -- And mosquitto, which has no ALPN of its own, accepts the offer.
            assert.is_true(connect(ssl_context { cafile = pki("ca.crt"), alpn = { "mqtt" } },
                                   ports.tls):is_connected())
        end)

        it("says so when the broker accepts none of the offered ALPN protocols", function()
            local port, _, stop = s_server("-alpn other", 1)
            local ctx = ssl_context { cafile = pki("ca.crt"), alpn = { "mqtt", "x-zmqtt" } }
            local ok, err = pcall(function() connect(ctx, port, { connect_timeout = 2 }) end)
            stop()
            assert.is_false(ok)
            assert.matches("none of the offered ALPN protocols", err.message)
        end)

        it("sends server_name as SNI, and no SNI for an address", function()
            local port, output, stop = s_server("-servername localhost -cert2 " ..
                quote(pki("broker.crt")) .. " -key2 " .. quote(pki("broker.key")), 2)
            for _, opts in ipairs({ { cafile = pki("ca.crt") },
                                    { cafile = pki("ca.crt"), server_name = "localhost" } }) do
                local c = new_client({ connect_timeout = 0.5 })
                local ok, err = pcall(c.connect, c, HOST, 30, port, ssl_context(opts))
                assert.is_false(ok)
                assert.matches("no CONNACK", err.message)
            end
            stop()
            local _, count = output():gsub('Hostname in TLS extension: "localhost"', "")
            assert.equal(1, count, output())
        end)

        it("resumes the session when the same client connects again", function()
            local port, output, stop = s_server("", 2)
            local c = new_client({ connect_timeout = 0.5 })
            local ctx = ssl_context { cafile = pki("ca.crt") }
            for _ = 1, 2 do
                local ok, err = pcall(c.connect, c, HOST, 30, port, ctx)
                assert.is_false(ok)
                assert.matches("no CONNACK", err.message)
            end
            assert.is_true(helpers.wait_until(function()
                return output():find("session cache hits", 1, true) ~= nil
            end, 5), output())
            stop()
            assert.matches("2 server accepts that finished", output())
            assert.matches("1 session cache hits", output())
        end)
    end)

    describe("with a pre-shared key", function()
        local pbroker, pport, why_not
        local PSK, IDENTITY = "3f1c2b9a0d4e5f60718293a4b5c6d7e8", "zmqtt-device"

        setup(function()
            helpers.write_file(pki("psk.txt"), IDENTITY .. ":" .. PSK .. "\n")
            for _ = 1, 3 do
                pport = helpers.free_port()
                local ok, b = pcall(helpers.start_broker, { extra = {
                    "listener " .. pport .. " " .. HOST,
                    "psk_hint zmqtt",
                    "psk_file " .. pki("psk.txt"),
                } })
                if ok then
                    pbroker = b
                    return
                end
                why_not = tostring(b)
                if not why_not:find("Address already in use", 1, true) then break end
            end
        end)

        -- A mosquitto built without TLS-PSK refuses psk_hint: then skip.
        local function need_psk()
            if pbroker then return true end
            if why_not and why_not:lower():find("psk", 1, true) then
                pending("this mosquitto does not accept a psk_hint listener (built without PSK?)")
                return false
            end
            error("the PSK broker did not start: " .. tostring(why_not))
        end

        it("connects, publishes and receives", function()
            if not need_psk() then return end
            local c = connect(ssl_context { psk = PSK, psk_identity = IDENTITY }, pport)
            local topic = "psk/" .. helpers.unique("t")
            local got = watch(c, topic, 1)
            c:publish(topic, "over psk", 1)
            assert.is_true(wait_for(function() return #got == 1 end))
            assert.equal("over psk", got[1].payload)
        end)

        it("is refused with a wrong key or an unknown identity", function()
            if not need_psk() then return end
            refused(ssl_context { psk = PSK:gsub("^3f", "40"), psk_identity = IDENTITY }, pport,
                    "the broker rejected the pre-shared key")
            refused(ssl_context { psk = PSK, psk_identity = "nobody" }, pport,
                    "the broker does not know this psk_identity")
        end)
    end)

    describe("reconnecting", function()
        it("after a broker restart, over TLS, resends the messages that were in flight",
           function()
            local b, p = tls_broker({ tls = { "broker" } })
            local ctx = ssl_context { cafile = pki("ca.crt") }
            local topic = "tls/restart/" .. helpers.unique("t")
            -- First retry 1..2 s after the loss: time to bring a subscriber up first.
            local pub = connect(ctx, p.tls, { reconnect = { min = 2, max = 2 } })
            pub:loop()
            -- The broker stops reading: what is published now stays unacknowledged.
            os.execute("kill -STOP " .. b.pid)
            local N = 5
            for i = 1, N do
                pub:publish(topic, "q1 " .. i, 1)
                pub:publish(topic, "q2 " .. i, 2)
            end
            assert.is_true(wait_for(function() return pub:stats().inflight == 2 * N end),
                           "in flight: " .. pub:stats().inflight)
            b.kill()
            assert.is_true(wait_for(function() return not pub:is_connected() end))
            b.restart()
            local sub = connect(ctx, p.tls)
            local got = watch(sub, topic, 2)
            assert.is_false(pub:is_connected(), "reconnected before the subscriber was ready")
            assert.is_true(wait_for(function() return pub:is_connected() end, 6),
                           "no reconnect")
            assert.is_true(wait_for(function() return #got >= 2 * N end, 5),
                           ("got %d of %d"):format(#got, 2 * N))
            local seen = {}
            for _, m in ipairs(got) do seen[m.payload] = (seen[m.payload] or 0) + 1 end
            for i = 1, N do
                assert.is_true((seen["q1 " .. i] or 0) >= 1, "lost q1 " .. i)
                assert.equal(1, seen["q2 " .. i], "q2 " .. i)
            end
            assert.is_true(wait_for(function() return pub:stats().inflight == 0 end))
            assert.equal(1, pub:stats().reconnects)
        end)
    end)

    describe("leaks", function()
        -- Runs `cycles` connect/publish/disconnect cycles (with refused
        -- handshakes, bad contexts and reconnects among them) in a child Lua.
        local CHILD = [=[
local mqtt = require("mqtt")
local ssl_context = mqtt.ssl_context or require("mqtt.tls").ssl_context
local pki, port, mport, cycles = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
local stat = io.open("/proc/self/stat")
local pid = stat:read("*a"):match("^(%d+)")
stat:close()
-- os.execute opens nothing in this process (popen's pipe would race with ls).
local function fds()
    local list = os.tmpname()
    local status = os.execute("ls /proc/" .. pid .. "/fd > " .. list)
    assert(status == true or status == 0, "ls failed")   -- 5.1 and LuaJIT: 0
    local n = 0
    for _ in io.lines(list) do n = n + 1 end
    os.remove(list)
    return n
end
local function f(name) return pki .. "/" .. name end
local before = fds()
local ctx, mctx, bad
for i = 1, cycles do
    if i % 10 == 1 then
        ctx = ssl_context { cafile = f("ca.crt") }
        mctx = ssl_context { cafile = f("ca.crt"), certfile = f("client.crt"),
                             keyfile = f("client-enc.key"), key_password = "s3cret" }
        bad = ssl_context { cafile = f("other-ca.crt"), alpn = { "mqtt" } }
        assert(not pcall(ssl_context, { cafile = f("ca.crt"), certfile = f("client.crt"),
                                        keyfile = f("client-enc.key"), key_password = "no" }))
        collectgarbage()
    end
    local c = mqtt.Client("leak-" .. i, true, { connect_timeout = 10 })
    if i % 5 == 0 then
        local ok, err = pcall(c.connect, c, "127.0.0.1", 30, port, bad)
        assert(not ok and err.name == "tls error", tostring(err))
    else
        c:connect("127.0.0.1", 30, i % 3 == 0 and mport or port, i % 3 == 0 and mctx or ctx)
        c:loop()
        local done = false
        local mid = c:publish("leak/t", ("x"):rep(i * 10), 1)
        c:on(mqtt.PUBACK, function() done = true end, function(d) return d.mid == mid end)
        local t = mqtt.monotonic() + 10
        while not done and mqtt.monotonic() < t do c:dispatch(0.05) end
        assert(done, "no PUBACK")
        if i % 4 == 0 then
            c:disconnect()
            c:reconnect()
        end
        c:disconnect()
    end
    c:close()
end
ctx, mctx, bad = nil, nil, nil
collectgarbage()
collectgarbage()
local after = fds()
print(("cycles=%d fds_before=%d fds_after=%d"):format(cycles, before, after))
assert(after == before, "file descriptors leaked")
os.exit(0, true)
]=]

        local function run_child(prefix, cycles, timeout)
            local script = pki("leak_child.lua")
            helpers.write_file(script, CHILD)
            local cmd = ("%s %s %s %s %s %d %d %d"):format(helpers.child_env(), prefix, helpers.LUA, quote(script),
                quote(pki_dir), ports.tls, ports.mtls, cycles)
            local t0 = mqtt.monotonic()
            local ok, code, out = helpers.run(cmd, timeout)
            return ok, code, out, mqtt.monotonic() - t0
        end

        it("none over 200 connect/disconnect cycles (file descriptors; LSan under ASan)",
           function()
            local ok, code, out, took = run_child("", 200, 240)
            assert.is_true(ok, ("exit %s after %.1f s:\n%s"):format(code, took, out))
            assert.matches("cycles=200 ", out)
        end)

        it("none under valgrind memcheck over 50 cycles", function()
            if helpers.memory_instrumented() then
                pending("the module is built with a sanitizer or already under valgrind")
                return
            end
            if not helpers.run("command -v valgrind") then
                pending("valgrind is not installed")
                return
            end
            local ok, code, out, took = run_child("valgrind -q --error-exitcode=99 " ..
                "--leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite",
                50, 600)
            assert.is_true(ok, ("exit %s after %.1f s:\n%s"):format(code, took, out))
            assert.matches("cycles=50 ", out)
            assert.is_nil(out:find("definitely lost", 1, true), out)
        end)
    end)
end)
