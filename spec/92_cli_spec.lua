-- spec/92_cli_spec.lua: the command-line tools bin/zmqtt-pub and bin/zmqtt-sub,
-- run as child processes against private mosquitto brokers: help and usage
-- errors, publishing at QoS 0/1/2 byte-exact (to mosquitto_sub and to
-- zmqtt-sub), -C/-W/-v, retained, empty, file and stdin payloads, wills,
-- credentials, TLS, debug output and the exit codes.

local helpers = require("helpers")

local HOST = helpers.HOST
local quote = helpers.quote
local read_file = helpers.read_file

-- The checkout's root, from this file's path (busted runs from anywhere).
local SPEC_DIR = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
local ROOT = SPEC_DIR .. "/.."
local function tool(name)
    return helpers.child_env() .. " " .. helpers.LUA .. " " .. quote(ROOT .. "/bin/" .. name)
end
local PUB, SUB = tool("zmqtt-pub"), tool("zmqtt-sub")

-- All 256 byte values, NUL first and again in the middle, newlines included.
local BINARY = "\0"
for i = 0, 255 do BINARY = BINARY .. string.char(i) end
BINARY = BINARY .. "\0\n\0"

local function topic_base()
    return (helpers.unique("cli"):gsub("%-", "/"))
end

local function lines(s)
    local t = {}
    for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
    return t
end

-- Runs a tool against `broker` (-h/-p first, so args may override them);
-- returns ok, exit code, output (stdout and stderr unless args redirect).
local function run_tool(cmd, broker, args, timeout)
    return helpers.run(cmd .. " -h " .. HOST .. " -p " .. broker.port .. " " .. args, timeout or 15)
end

-- zmqtt-sub in the background: its stdout, stderr and exit code go to files
-- in the broker's dir. Returns once the broker has sent its SUBACK. Each
-- carries -W 10, and after_each stops any left running.
local background = {}

local function spawn_sub(broker, args)
    local id = helpers.unique("zclisub")
    local base = broker.dir .. "/" .. id
    local log_start = #(read_file(broker.log_file) or "")
    local script = helpers.CLOSE_FDS .. SUB .. " -h " .. HOST .. " -p " .. broker.port ..
        " -i " .. id .. " -W 10 " .. args ..
        " >" .. quote(base .. ".out") .. " 2>" .. quote(base .. ".err") .. " </dev/null & " ..
        "echo $! >" .. quote(base .. ".pid") .. "; wait $!; echo $? >" .. quote(base .. ".rc")
    os.execute("bash -c " .. quote(script) .. " </dev/null >/dev/null 2>&1 &")
    local sub = { id = id }
    -- The shell creates the file before it writes the PID and its newline.
    local function pid_written() return (read_file(base .. ".pid") or ""):match("^(%d+)\n") end
    assert(helpers.wait_until(pid_written, 5), "zmqtt-sub did not start")
    sub.pid = tonumber(pid_written())
    background[#background + 1] = sub

    function sub.out() return read_file(base .. ".out") or "" end
    function sub.err() return read_file(base .. ".err") or "" end
    function sub.rc()
        -- nil until the shell has written the whole code and its newline
        local rc = (read_file(base .. ".rc") or ""):match("^(%d+)\n")
        return rc and tonumber(rc)
    end
    function sub.running() return sub.rc() == nil end
    --- Waits for it to exit; returns the exit code, or nil after `timeout` s.
    function sub.wait(timeout)
        helpers.wait_until(function() return not sub.running() end, timeout or 12)
        return sub.rc()
    end
    function sub.kill(sig)
        if sub.running() and helpers.pid_alive(sub.pid) then
            os.execute("kill -s " .. (sig or "TERM") .. " " .. sub.pid .. " 2>/dev/null")
        end
    end

    local needle = "Sending SUBACK to " .. id
    local function subscribed()
        return (read_file(broker.log_file) or ""):find(needle, log_start + 1, true) ~= nil
    end
    helpers.wait_until(function() return subscribed() or not sub.running() end, 5)
    assert(subscribed(), "zmqtt-sub did not subscribe: " .. sub.err())
    return sub
end

local function stop_background()
    for i = #background, 1, -1 do
        local s = background[i]
        s.kill("TERM")
        if s.wait(3) == nil then s.kill("KILL") end
        background[i] = nil
    end
end

describe("zmqtt-pub and zmqtt-sub", function()
    local broker = helpers.with_broker(nil, "zcli")
    after_each(stop_background)

    local function pub(args, timeout) return run_tool(PUB, broker, args, timeout) end
    local function sub(args, timeout) return run_tool(SUB, broker, args, timeout) end

    describe("--help", function()
        for _, case in ipairs {
            { PUB, { "-t", "-m", "-f", "-s", "-n", "-q", "-r", "-W" } },
            { SUB, { "-t", "-C", "-W", "-v", "-c" } },
        } do
            it("exits 0 and lists the options and exit codes (" .. case[1]:match("zmqtt%-%a+") .. ")",
                function()
                    -- stdout only: the help is not an error.
                    local ok, code, out = helpers.run(case[1] .. " --help 2>/dev/null")
                    assert.is_true(ok, out)
                    assert.equal(0, code)
                    assert.truthy(out:find("^Usage: zmqtt%-"))
                    local want = { "-h, --host", "-p, --port", "-i, --id", "-k, --keepalive",
                        "-u, --username", "-P, --pw", "-d, --debug", "--will-topic", "--will-payload",
                        "--will-qos", "--will-retain", "--cafile", "--capath", "--cert", "--key",
                        "--key-password", "--tls-server-name", "--insecure", "--alpn", "--psk",
                        "--psk-identity", "--help", "Exit status" }
                    for _, o in ipairs(case[2]) do want[#want + 1] = "  " .. o .. ", " end
                    for _, w in ipairs(want) do
                        assert.truthy(out:find(w, 1, true), "help lacks " .. w .. ":\n" .. out)
                    end
                    for code_line in ("0 1 2 3"):gmatch("%d") do
                        assert.truthy(out:find("\n  " .. code_line .. "  ", 1, true),
                            "help lacks exit code " .. code_line)
                    end
                end)
        end
    end)

    describe("bad options", function()
        local CASES = {
            { PUB, "--bogus -t a -m x", "unknown option '--bogus'" },
            { PUB, "-t a -m x -q 3", "-q '3': must be 0, 1 or 2" },
            { PUB, "-t a -m x -p", "needs a value" },
            { PUB, "-t a -m x -p 70000", "integer from 1 to 65535" },
            { PUB, "-m x", "-t/--topic is required" },
            { PUB, "-t a", "give the message with -m, -f, -s or -n" },
            { PUB, "-t a -m x -n", "only one of -m, -f, -s and -n" },
            { PUB, "-t 'a/#' -m x", "wildcards" },
            { PUB, "-t a -m x -P pw", "needs -u" },
            { PUB, "-t a -m x --will-qos 1", "need --will-topic" },
            { PUB, "-t a -m x --cert c.pem", "--cert and --key go together" },
            { PUB, "-t a -m x stray", "unexpected argument 'stray'" },
            { SUB, "--bogus -t a", "unknown option '--bogus'" },
            { SUB, "-v", "at least one topic filter" },
            { SUB, "-t 'a/#/b'", "-t/--topic 'a/#/b'" },
            { SUB, "-t a -C 0", "-C '0'" },
            { SUB, "-t a -W soon", "-W 'soon'" },
            { SUB, "-t a -c", "-c needs -i" },
        }
        it("exit 2 with the reason and the usage on stderr, before connecting", function()
            local dead = helpers.free_port()   -- nothing listens: a connect would exit 1
            for _, case in ipairs(CASES) do
                local cmd = case[1] .. " -p " .. dead .. " " .. case[2]
                -- stderr into the pipe, stdout discarded: everything said is on stderr.
                local ok, code, out = helpers.run(cmd .. " 2>&1 >/dev/null")
                assert.is_false(ok)
                assert.equal(2, code, case[2] .. ": " .. out)
                assert.truthy(out:find(case[3], 1, true), case[2] .. ": " .. out)
                assert.truthy(out:find("\nUsage: zmqtt%-"), case[2] .. ": " .. out)
                assert.truthy(out:find("--help", 1, true), case[2] .. ": " .. out)
            end
        end)
    end)

    for qos = 0, 2 do
        it(("publishes at QoS %d byte-exact to mosquitto_sub"):format(qos), function()
            local base = topic_base()
            local ms = helpers.mosquitto_sub_collect(broker, { topic = base .. "/#", qos = 2, count = 2 })
            local text = "h\195\169llo 'single' \"double\" $HOME `x` \\ * -dash  two  spaces"
            local ok, code, out = pub(("-t %s -q %d -m %s"):format(quote(base .. "/text"), qos, quote(text)))
            assert.is_true(ok, out)
            assert.equal(0, code)
            local file = os.tmpname()
            helpers.write_file(file, BINARY)
            ok, code, out = pub(("-t %s -q %d -f %s"):format(quote(base .. "/bin"), qos, quote(file)))
            os.remove(file)
            assert.is_true(ok, out)
            assert.equal(0, code)
            assert.equal("", out)   -- nothing printed on success
            local got, done = ms.wait(5)
            assert.is_true(done, "mosquitto_sub did not get 2 messages")
            assert.equal(2, #got)
            assert.same({ base .. "/text", text, qos, false },
                { got[1].topic, got[1].payload, got[1].qos, got[1].retain })
            assert.same({ base .. "/bin", qos }, { got[2].topic, got[2].qos })
            assert.is_true(got[2].payload == BINARY, "binary payload differs")
        end)
    end

    it("publishes QoS 0, 1 and 2 to zmqtt-sub -v -q 2 -C 3, which prints 'topic payload' lines", function()
        local base = topic_base()
        local s = spawn_sub(broker, ("-q 2 -C 3 -v -t %s"):format(quote(base .. "/#")))
        for qos = 0, 2 do
            local ok, _, out = pub(("-t %s/q%d -q %d -m %s"):format(base, qos, qos,
                quote("payload " .. qos .. " with  spaces")))
            assert.is_true(ok, out)
        end
        assert.equal(0, s.wait(), s.err())
        local want = {}
        for qos = 0, 2 do want[#want + 1] = ("%s/q%d payload %d with  spaces"):format(base, qos, qos) end
        assert.same(want, lines(s.out()))
        assert.equal("", s.err())
    end)

    it("zmqtt-sub -C 3 prints the payloads of 3 messages from mosquitto_pub and exits 0", function()
        local base = topic_base()
        local s = spawn_sub(broker, "-q 1 -C 3 -t " .. quote(base))
        for i = 1, 3 do
            local ok, _, out = helpers.mosquitto_pub(broker, { topic = base, message = "m" .. i, qos = 1 })
            assert.is_true(ok, out)
        end
        assert.equal(0, s.wait(), s.err())
        assert.equal("m1\nm2\nm3\n", s.out())
        -- A fourth message finds nobody: the tool disconnected.
        assert.truthy(read_file(broker.log_file):find("Client " .. s.id .. " disconnected", 1, true))
    end)

    it("zmqtt-sub subscribes to every -t and prints binary payloads byte-exact", function()
        local base = topic_base()
        local s = spawn_sub(broker, ("-q 2 -C 2 -t %s/a -t %s/b"):format(base, base))
        local file = os.tmpname()
        helpers.write_file(file, BINARY)
        assert.is_true((pub(("-t %s/a -q 2 -f %s"):format(base, quote(file)))))
        assert.is_true((pub(("-t %s/b -q 1 -s < %s"):format(base, quote(file)))))
        os.remove(file)
        assert.equal(0, s.wait(), s.err())
        assert.is_true(s.out() == BINARY .. "\n" .. BINARY .. "\n", "output differs")
    end)

    it("-r retains the message: a later zmqtt-sub and mosquitto_sub see it, with the retain flag", function()
        local topic = topic_base()
        local ok, code, out = pub("-r -q 1 -t " .. quote(topic) .. " -m kept")
        assert.is_true(ok, out)
        assert.equal(0, code)
        ok, code, out = sub("-C 1 -W 5 -t " .. quote(topic) .. " 2>/dev/null")
        assert.is_true(ok)
        assert.equal(0, code)
        assert.equal("kept\n", out)
        local ms = helpers.mosquitto_sub_collect(broker, { topic = topic, count = 1 })
        local got = ms.wait(5)
        assert.equal(1, #got)
        assert.same({ "kept", true }, { got[1].payload, got[1].retain })
    end)

    it("-n sends an empty payload, -s sends stdin's bytes", function()
        local base = topic_base()
        local ms = helpers.mosquitto_sub_collect(broker, { topic = base .. "/#", qos = 1, count = 2 })
        local ok, _, out = pub("-q 1 -n -t " .. base .. "/null")
        assert.is_true(ok, out)
        ok, _, out = pub("-q 1 -s -t " .. base .. "/stdin" .. " < <(printf 'from\\0stdin\\n')")
        assert.is_true(ok, out)
        local got = ms.wait(5)
        assert.equal(2, #got)
        assert.same({ base .. "/null", "" }, { got[1].topic, got[1].payload })
        assert.same({ base .. "/stdin", "from\0stdin\n" }, { got[2].topic, got[2].payload })
    end)

    it("-f with a missing file exits 1 naming it", function()
        local ok, code, out = pub("-t a -f /nonexistent/zmqtt-payload")
        assert.is_false(ok)
        assert.equal(1, code)
        assert.truthy(out:find("/nonexistent/zmqtt-payload", 1, true), out)
    end)

    it("--will-* set the will: the broker publishes it when zmqtt-sub dies", function()
        local will = topic_base()
        local ms = helpers.mosquitto_sub_collect(broker, { topic = will, qos = 1, count = 1 })
        local s = spawn_sub(broker, "-t unused/" .. will .. " --will-topic " .. will ..
            " --will-payload 'gone away' --will-qos 1")
        s.kill("KILL")
        local got = ms.wait(5)
        assert.equal(1, #got)
        assert.same({ will, "gone away", 1 }, { got[1].topic, got[1].payload, got[1].qos })
    end)

    it("SIGINT makes zmqtt-sub disconnect cleanly (so no will) and exit 130", function()
        local log_start = #(read_file(broker.log_file) or "")
        local s = spawn_sub(broker, "-t unused --will-topic " .. topic_base() .. " --will-payload x")
        s.kill("INT")
        assert.equal(130, s.wait(5))
        -- The broker logs the DISCONNECT once it has read it, maybe after the exit.
        local log
        helpers.wait_until(function()
            log = read_file(broker.log_file):sub(log_start + 1)
            return log:find("Received DISCONNECT from " .. s.id, 1, true) ~= nil
        end, 5)
        assert.truthy(log:find("Received DISCONNECT from " .. s.id, 1, true), log)
    end)

    it("-W exits 3 when -C's count does not arrive in time, 0 without -C", function()
        local t0 = helpers.now()
        local ok, code, out = sub("-t nothing/here -C 1 -W 0.3")
        assert.is_false(ok)
        assert.equal(3, code, out)
        assert.truthy(out:find("timed out", 1, true), out)
        ok, code, out = sub("-t nothing/here -W 0.3")
        assert.is_true(ok, out)
        assert.equal(0, code)
        assert.equal("", out)
        assert.is_true(helpers.now() - t0 < 3)
    end)

    it("-d prints the protocol exchange on stderr only", function()
        local ok, code, err = pub("-d -q 2 -t " .. topic_base() .. " -m x 2>&1 >/dev/null")
        assert.is_true(ok, err)
        assert.equal(0, code)
        for _, w in ipairs { "sending CONNECT", "received CONNACK", "sending PUBLISH (d0, q2, r0, m1",
            "received PUBREC (Mid: 1)", "received PUBCOMP (Mid: 1)", "sending DISCONNECT" } do
            assert.truthy(err:find(w, 1, true), "no '" .. w .. "' in:\n" .. err)
        end
        local _, _, out = pub("-d -q 1 -t " .. topic_base() .. " -m x 2>/dev/null")
        assert.equal("", out)
    end)

    it("an unreachable port makes both tools exit 1 at once, with the error's text", function()
        local dead = helpers.free_port()
        for _, cmd in ipairs { PUB .. " -q 1 -t a -m x", SUB .. " -t a -W 5" } do
            local t0 = helpers.now()
            local ok, code, out = helpers.run(cmd .. " -h " .. HOST .. " -p " .. dead)
            assert.is_false(ok)
            assert.equal(1, code, out)
            assert.truthy(out:find("MQTTConnectionError: connect failed: 127.0.0.1:" .. dead, 1, true), out)
            assert.is_true(helpers.now() - t0 < 2, "took too long")
        end
    end)
end)

describe("zmqtt-pub and zmqtt-sub with URIs", function()
    local broker = helpers.with_broker(nil, "zcliu")

    it("take a URI for -h: the message arrives", function()
        local topic = topic_base()
        local ms = helpers.mosquitto_sub_collect(broker, { topic = topic, qos = 1, count = 1 })
        local ok, code, out = helpers.run(PUB .. " -h mqtt://" .. HOST .. ":" .. broker.port ..
            " -q 1 -t " .. topic .. " -m 'by URI'", 15)
        assert.is_true(ok, code .. ": " .. out)
        local got = ms.wait(5)
        assert.equal(1, #got)
        assert.equal("by URI", got[1].payload)
    end)

    it("refuse a bad URI, -p with a URI and a proxy (not supported yet) with exit 2", function()
        for args, words in pairs {
            ["-h foo://x"] = "unknown scheme 'foo'",
            ["-h mqtt://" .. HOST .. ":" .. broker.port .. " -p 1"] = "-p/--port is for a plain host",
            ["-h mqtt://" .. HOST .. " --cafile /nonexistent"] = "TLS options need a TLS URI",
            ["-h " .. HOST .. " -p " .. broker.port .. " --proxy ftp://" .. HOST .. ":1"] =
                "--proxy: proxy: ",
        } do
            local ok, code, out = helpers.run(PUB .. " " .. args .. " -t a -m x", 15)
            assert.is_false(ok)
            assert.equal(2, code, out)
            assert.truthy(out:find(words, 1, true), out)
        end
    end)

    it("name the path of a missing Unix socket, exit 1", function()
        local path = broker.dir .. "/absent.sock"
        local ok, code, out = helpers.run(SUB .. " -h unix://" .. path .. " -t a -W 5", 15)
        assert.is_false(ok)
        assert.equal(1, code, out)
        assert.truthy(out:find("MQTTConnectionError: connect failed: " .. path, 1, true), out)
    end)
end)

describe("zmqtt-pub and zmqtt-sub with credentials", function()
    local broker = helpers.with_broker({ users = { alice = "s3cret word" } }, "zclia")
    after_each(stop_background)

    it("work with the right user name and password", function()
        local topic = topic_base()
        local ms = helpers.mosquitto_sub_collect(broker, { topic = topic, count = 1,
            username = "alice", password = "s3cret word" })
        local ok, code, out = run_tool(PUB, broker, "-u alice -P 's3cret word' -q 1 -t " .. topic .. " -m hi")
        assert.is_true(ok, out)
        assert.equal(0, code)
        assert.equal("hi", ms.wait(5)[1].payload)
        ok, code, out = run_tool(SUB, broker, "-u alice -P 's3cret word' -t " .. topic .. " -W 0.2")
        assert.is_true(ok, out)
        assert.equal(0, code)
    end)

    it("exit 1 with 'not authorized' for a wrong password or none", function()
        for _, cmd in ipairs { PUB .. " -q 1 -t a -m x", SUB .. " -t a -W 5" } do
            for _, creds in ipairs { "-u alice -P wrong", "-u alice", "" } do
                local ok, code, out = run_tool(cmd, broker, creds)
                assert.is_false(ok)
                assert.equal(1, code, out)
                assert.truthy(out:find("not authorized", 1, true), creds .. ": " .. out)
                assert.truthy(out:find("^zmqtt%-%a+: MQTTConnectionError"), out)
            end
        end
    end)
end)

describe("zmqtt-pub and zmqtt-sub over TLS", function()
    local broker, tls_port, dir

    setup(function()
        dir = helpers.tmpdir("zmqtt-clitls")
        local ok, _, out = helpers.run("cd " .. quote(dir) .. " && " ..
            "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out self.key && " ..
            "openssl req -x509 -new -key self.key -out self.crt -days 30 -subj /CN=localhost " ..
            "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>&1", 30)
        assert(ok, "openssl failed: " .. out)
        tls_port = helpers.free_port()
        broker = helpers.start_broker({ extra = {
            "listener " .. tls_port .. " " .. HOST,
            "certfile " .. dir .. "/self.crt",
            "keyfile " .. dir .. "/self.key",
        } })
    end)
    teardown(function()
        stop_background()
        helpers.stop_all()
        if dir and dir:match("/zmqtt%-clitls%.%w+$") then helpers.run("rm -rf " .. quote(dir)) end
    end)

    local function tls_pub(args)
        return helpers.run(PUB .. " -h " .. HOST .. " -p " .. tls_port .. " -q 1 -m secure " .. args)
    end

    it("publish with --cafile, --insecure, and fail on an untrusted or misnamed certificate", function()
        local topic = topic_base()
        local s = spawn_sub(broker, "-C 2 -t " .. topic)   -- on the plain listener
        local ok, code, out = tls_pub("-t " .. topic .. " --cafile " .. quote(dir .. "/self.crt"))
        assert.is_true(ok, out)
        assert.equal(0, code)
        ok, code, out = tls_pub("-t " .. topic .. " --insecure")
        assert.is_true(ok, out)
        assert.equal(0, code)
        assert.equal(0, s.wait(), s.err())
        assert.equal("secure\nsecure\n", s.out())

        ok, code, out = tls_pub("-t " .. topic .. " --tls-use-os-certs")
        assert.is_false(ok)
        assert.equal(1, code, out)
        assert.truthy(out:find("certificate not trusted", 1, true), out)
        ok, code, out = tls_pub("-t " .. topic .. " --cafile " .. quote(dir .. "/self.crt") ..
            " --tls-server-name other.example")
        assert.is_false(ok)
        assert.equal(1, code, out)
        assert.truthy(out:find("host name mismatch", 1, true), out)
        ok, code, out = tls_pub("-t " .. topic .. " --cafile " .. quote(dir .. "/missing.crt"))
        assert.is_false(ok)
        assert.equal(1, code, out)
        assert.truthy(out:find("zmqtt-pub: TLS: cafile '" .. dir .. "/missing.crt'", 1, true), out)
    end)
end)

describe("zmqtt-sub across a broker restart", function()
    local broker = helpers.with_broker(nil, "zclir")
    after_each(stop_background)

    it("reconnects, subscribes again and goes on counting", function()
        local topic = topic_base()
        local s = spawn_sub(broker, "-q 1 -C 2 -t " .. topic)
        assert.is_true((run_tool(PUB, broker, "-q 1 -t " .. topic .. " -m before")))
        assert.is_true(helpers.wait_until(function() return s.out() == "before\n" end, 5))
        local log_start = #read_file(broker.log_file)   -- appended to across restarts
        broker.restart()
        local needle = "Sending SUBACK to " .. s.id
        assert.is_true(helpers.wait_until(function()
            return read_file(broker.log_file):find(needle, log_start + 1, true) ~= nil
        end, 8), "no new subscription: " .. s.err())
        assert.is_true((run_tool(PUB, broker, "-q 1 -t " .. topic .. " -m after")))
        assert.equal(0, s.wait(5), s.err())
        assert.equal("before\nafter\n", s.out())
    end)
end)
