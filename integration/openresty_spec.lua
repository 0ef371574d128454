-- integration/openresty_spec.lua: zmqtt inside nginx (examples/openresty/).
-- Starts a private mosquitto and an nginx (master + 2 workers, own prefix in a
-- temp dir, 127.0.0.1 on a free port) from examples/openresty/nginx.conf.in,
-- then checks HTTP -> MQTT and MQTT -> HTTP on every worker, a reload with
-- messages in flight, and a graceful quit in which every worker exits.
-- Must not: talk to anything but 127.0.0.1, or leave nginx behind: the master
-- and its workers are recorded in ZMQTT_TEST_PIDFILE and stopped by PID.

local helpers = require("helpers")
local json = require("dkjson")
local mime = require("mime")
local http = require("socket.http")
local ltn12 = require("ltn12")
local url = require("socket.url")

local quote = helpers.quote

local ROOT = os.getenv("ZMQTT_ROOT") or (select(3, helpers.run("pwd")):gsub("%s+$", ""))
local TOPIC_IN = "zmqtt/in/#"       -- what the owner worker subscribes to
local EXIT_TIMEOUT = 10             -- seconds for old workers to exit
http.TIMEOUT = 5

-- The nginx under test: dir (its prefix), conf, port, master (a process
-- record {pid, start}), workers seen (records by PID), client_id.
local ngx = {}

local function proc_start(pid)
    local stat = helpers.read_file("/proc/" .. pid .. "/stat")
    local rest = stat and stat:match("^.*%) (.*)$")
    local fields = {}
    for w in (rest or ""):gmatch("%S+") do fields[#fields + 1] = w end
    return fields[20], fields[2]     -- start time, parent PID
end

local function record(pid)
    local start = proc_start(pid)
    local rec = { pid = pid, start = start }
    local pidfile = os.getenv("ZMQTT_TEST_PIDFILE")
    if pidfile and start then       -- spec/run-all.sh stops it if we crash
        local f = io.open(pidfile, "a")
        if f then
            f:write(pid, " ", start, " ", ngx.dir or "-", "\n")
            f:close()
        end
    end
    return rec
end

-- The running children of the master (its workers), as a sorted PID list;
-- each one is recorded in ngx.workers the first time it is seen.
local function worker_pids()
    local pids = {}
    local _, _, out = helpers.run("ps -o pid= --ppid " .. ngx.master.pid)
    for pid in out:gmatch("%d+") do
        pid = tonumber(pid)
        if helpers.pid_alive(pid) then
            pids[#pids + 1] = pid
            ngx.workers[pid] = ngx.workers[pid] or record(pid)
        end
    end
    table.sort(pids)
    return pids
end

local function stop_proc(rec, sig)
    if helpers.pid_alive(rec) then
        os.execute("kill -s " .. sig .. " " .. rec.pid .. " 2>/dev/null")
    end
end

-- Stops nginx by PID: master and every worker seen, TERM then KILL.
local function stop_nginx()
    if not ngx.master then return end
    local all = { ngx.master }
    for _, rec in pairs(ngx.workers) do all[#all + 1] = rec end
    for _, rec in ipairs(all) do stop_proc(rec, "TERM") end
    local gone = helpers.wait_until(function()
        for _, rec in ipairs(all) do
            if helpers.pid_alive(rec) then return false end
        end
        return true
    end, 5)
    if not gone then
        for _, rec in ipairs(all) do stop_proc(rec, "KILL") end
    end
    ngx.master = nil
end

local function nginx_cmd(args)
    return ("nginx -p %s -c %s -e stderr %s"):format(quote(ngx.dir .. "/"), quote(ngx.conf),
                                                     args or "")
end

local function error_log()
    return helpers.read_file(ngx.dir .. "/stderr.log") or ""
end

local function render(template, vars)
    return (template:gsub("@([%u_]+)@", function(k)
        return assert(vars[k], "no value for @" .. k .. "@")
    end))
end

local function start_nginx(broker)
    ngx.dir = helpers.tmpdir("zmqtt-nginx")
    ngx.conf = ngx.dir .. "/nginx.conf"
    ngx.port = helpers.free_port()
    ngx.client_id = helpers.unique("zngx")
    ngx.workers = {}
    assert(os.execute("mkdir -p " .. quote(ngx.dir .. "/tmp")))
    local _, _, user = helpers.run("id -un")
    helpers.write_file(ngx.conf, render(
        assert(helpers.read_file(ROOT .. "/examples/openresty/nginx.conf.in")), {
            ROOT = ROOT, USER = user:gsub("%s+$", ""), HTTP_PORT = tostring(ngx.port),
            MQTT_HOST = broker.host, MQTT_PORT = tostring(broker.port),
            CLIENT_ID = ngx.client_id, TOPIC = TOPIC_IN,
        }))
    local ok, _, out = helpers.run(nginx_cmd("-t"))
    assert(ok, "nginx -t failed:\n" .. out)
    -- bash execs nginx, so the PID is the master's; daemon off keeps it ours.
    local p = assert(io.popen("bash -c " .. quote(helpers.CLOSE_FDS .. "exec " .. nginx_cmd()) ..
                              " </dev/null >" .. quote(ngx.dir .. "/stderr.log") ..
                              " 2>&1 & echo $!", "r"))
    local pid = tonumber(p:read("a"):match("%d+"))
    p:close()
    ngx.master = record(assert(pid, "could not start nginx"))
    local up = helpers.wait_until(function()
        return helpers.port_open(ngx.port) or not helpers.pid_alive(ngx.master)
    end, 5)
    assert(up and helpers.pid_alive(ngx.master), "nginx did not start:\n" .. error_log())
end

-- One HTTP request; returns the status code and the body.
local function request(method, path, body)
    local out = {}
    local _, code = http.request {
        url = "http://127.0.0.1:" .. ngx.port .. path,
        method = method,
        source = body and ltn12.source.string(body),
        headers = body and { ["content-length"] = #body,
                             ["content-type"] = "application/octet-stream" } or nil,
        sink = ltn12.sink.table(out),
    }
    return code, table.concat(out)
end

local function get_json(path)
    local code, body = request("GET", path)
    assert.are.equal(200, code, body)
    return assert(json.decode(body), body)
end

local function publish(topic, payload, qos)
    local code, body = request("POST", ("/publish?topic=%s&qos=%d"):format(url.escape(topic), qos),
                               payload)
    assert.are.equal(202, code, body)
    return json.decode(body)
end

-- Polls /status until the owner worker (worker 0 of the running generation)
-- has its subscription; returns that status.
local function wait_owner(timeout)
    local status
    local ok = helpers.wait_until(function()
        status = get_json("/status")
        local pids = worker_pids()
        return status.owner_state == "subscribed" and #pids == 2 and
               (status.owner_pid == pids[1] or status.owner_pid == pids[2])
    end, timeout or 5, 0.05)
    assert.is_true(ok, "the owner did not subscribe: " .. json.encode(status) .. "\n" ..
                   error_log())
    return status
end

-- GET /messages?since=since until `want` messages (a set of payloads) have
-- arrived, asking until each worker has answered at least once with all of
-- them; returns the messages by payload (distinct) and the last seq.
local function wait_messages(since, want, timeout)
    local got, served_full, last = {}, {}, since
    local missing
    helpers.wait_until(function()
        local r = get_json("/messages?since=" .. since)
        local here = {}
        for _, m in ipairs(r.messages) do
            m.payload = mime.unb64(m.payload) or ""
            got[m.payload] = m
            here[m.payload] = true
        end
        missing = {}
        for p in pairs(want) do
            if not here[p] then missing[#missing + 1] = p end
        end
        if #missing == 0 then
            served_full[r.worker] = true
            last = math.max(last, r.last)
        end
        return served_full[0] and served_full[1]
    end, timeout or 5, 0.02)
    assert.are.same({}, missing, "messages missing from /messages")
    assert.is_true(served_full[0] and served_full[1], "not served by both workers")
    return got, last
end

-- The broker's log lines saying that client id sent DISCONNECT (a clean close).
-- (after byte `from` of its log file, when given).
local function broker_log(broker)
    return helpers.read_file(broker.log_file) or ""
end

local function disconnected_cleanly(broker, id, from)
    local line = "Client " .. id .. " disconnected."
    return broker_log(broker):find(line, (from or 0) + 1, true) ~= nil
end

describe("OpenResty (examples/openresty)", function()
    -- Persistence: the owner's session (its subscription, and QoS 1 messages
    -- for it) survives a broker restart, as a deployment would have it.
    local broker, clients = helpers.with_broker({ persistence = true })
    local since = 0

    setup(function()
        local so = ROOT .. "/build/luajit/mqtt/core.so"
        assert(helpers.read_file(so),
               so .. " is missing: run make LUA=luajit (make integration does)")
        start_nginx(broker)
        helpers.at_exit(stop_nginx)
    end)

    teardown(function()
        stop_nginx()
        if ngx.dir and not os.getenv("ZMQTT_KEEP_DIRS") then
            helpers.run("rm -rf " .. quote(ngx.dir))
        end
    end)

    -- Whether the workers (and the master, if given) all exit within EXIT_TIMEOUT.
    local function all_exit(pids, master)
        return helpers.wait_until(function()
            if master and helpers.pid_alive(master) then return false end
            for _, pid in ipairs(pids) do
                if helpers.pid_alive(ngx.workers[pid]) then return false end
            end
            return true
        end, EXIT_TIMEOUT)
    end

    it("starts a client in each worker and one subscriber in worker 0", function()
        local status = wait_owner()
        local pids = worker_pids()
        assert.are.equal(2, #pids)
        -- Each worker's publisher connected under its own id.
        for _, pid in ipairs(pids) do
            local id = ngx.client_id .. "-pub-" .. pid
            assert.is_true(helpers.wait_until(function()
                return broker_log(broker):find("Sending CONNACK to " .. id, 1, true) ~= nil
            end), "no connection from " .. id)
        end
        local owner_line = "Sending CONNACK to " .. ngx.client_id .. " "
        assert.is_truthy(broker_log(broker):find(owner_line, 1, true))
        assert.are.equal(0, status.dropped)
    end)

    it("publishes HTTP requests on every worker to MQTT subscribers", function()
        local sub = helpers.mosquitto_sub_collect(broker, { topic = "zmqtt/out/#", qos = 2 })
        local sent, workers = {}, {}
        -- New connections until both workers have answered (reuseport spreads
        -- them), at least 30 messages in all QoS, binary payloads included.
        local i = 0
        while i < 30 or not (workers[0] and workers[1]) do
            i = i + 1
            assert(i <= 300, "every request went to the same worker")
            local payload = ("http-%d-\0\1\255-%s"):format(i, ("x"):rep(i))
            local r = publish("zmqtt/out/" .. i % 3, payload, i % 3)
            assert.is_true(r.mid >= 0)
            workers[r.worker] = true
            sent[payload] = i % 3
        end
        local n = 0
        for _ in pairs(sent) do n = n + 1 end
        local msgs, reached = sub.wait_for(n, 5)
        assert.is_true(reached, ("%d of %d messages reached mosquitto_sub"):format(#msgs, n))
        sub.stop()
        local seen = {}
        for _, m in ipairs(msgs) do
            assert.is_not_nil(sent[m.payload], "unexpected payload " .. m.payload)
            assert.are.equal(sent[m.payload], m.qos)
            assert.is_nil(seen[m.payload], "duplicate " .. m.payload)
            seen[m.payload] = true
        end
    end)

    it("serves messages received over MQTT from every worker", function()
        local want = {}
        for qos = 0, 2 do
            for k = 1, 5 do
                local payload = ("mqtt-q%d-%d-\0\255\n"):format(qos, k)
                want[payload] = qos
                local ok, _, out = helpers.mosquitto_pub(broker, {
                    topic = "zmqtt/in/q" .. qos, message = payload, qos = qos })
                assert(ok, out)
            end
        end
        local got
        got, since = wait_messages(since, want)
        for payload, qos in pairs(want) do
            local m = got[payload]
            assert.are.equal("zmqtt/in/q" .. qos, m.topic)
            assert.are.equal(math.min(qos, 1), m.qos)    -- the owner subscribed with QoS 1
            assert.is_false(m.retain)
        end
    end)

    it("brings HTTP publishes back over HTTP (a round trip through the broker)", function()
        local want = {}
        for k = 1, 6 do
            local payload = "round-trip-" .. k
            want[payload] = true
            publish("zmqtt/in/rt", payload, k % 3)
        end
        local got
        got, since = wait_messages(since, want)
        assert.are.equal("zmqtt/in/rt", got["round-trip-1"].topic)
    end)

    it("queues publishes while the broker is down and resubscribes after it", function()
        broker.stop()
        assert.is_true(helpers.wait_until(function()
            return get_json("/status").owner_state == "disconnected"
        end, 5, 0.02), "the owner did not see the broker go")
        -- Accepted at once (202) while offline; sent after the reconnect.
        local want = {}
        for k = 1, 6 do
            local payload = "offline-" .. k
            want[payload] = true
            local r = publish("zmqtt/in/offline", payload, 1)
            assert.is_false(r.connected)
        end
        broker.restart()
        -- Reconnect back-off is 0.5 s to 10 s (the first retry within 0.5 s).
        -- The publishers may reconnect before the owner: its session kept
        -- the subscription, so their messages wait there for it.
        wait_owner(10)
        local got
        got, since = wait_messages(since, want, 10)
        assert.are.equal("zmqtt/in/offline", got["offline-1"].topic)
    end)

    it("reloads: old workers close their clients and exit, nothing is lost", function()
        local old = worker_pids()
        assert.are.equal(2, #old)
        -- A zmqtt client of this process publishes QoS 1 messages before,
        -- during and after the reload.
        local c = clients:new()
        c:connect(broker.host, 10, broker.port)
        local want, k = {}, 0
        local function burst(n)
            for _ = 1, n do
                k = k + 1
                local payload = "reload-" .. k
                want[payload] = true
                c:publish("zmqtt/in/reload", payload, 1)
            end
            c:dispatch(0)
        end
        burst(20)
        local ok, _, out = helpers.run(nginx_cmd("-s reload"))
        assert(ok, out)
        for _ = 1, 20 do
            burst(5)
            helpers.sleep(0.01)
        end

        -- Every old worker exits within EXIT_TIMEOUT: no I/O thread keeps one alive.
        local exited = all_exit(old)
        assert.is_true(exited, "old workers still running after " .. EXIT_TIMEOUT .. " s:\n" ..
                       error_log())
        assert.is_true(helpers.pid_alive(ngx.master))
        local status = wait_owner()
        local new = worker_pids()
        for _, pid in ipairs(new) do
            assert.is_nil(({ [old[1]] = true, [old[2]] = true })[pid], "worker survived reload")
        end
        assert.is_truthy(status.owner_pid == new[1] or status.owner_pid == new[2])
        burst(20)

        -- QoS 1 messages published around the reload all reached /messages:
        -- the new owner took over the old one's persistent session.
        _, since = wait_messages(since, want, 10)
        -- The old workers closed their clients: DISCONNECT sent, threads joined.
        for _, pid in ipairs(old) do
            assert.is_true(helpers.wait_until(function()
                return disconnected_cleanly(broker, ngx.client_id .. "-pub-" .. pid)
            end, 2), "old publisher of worker " .. pid .. " did not disconnect")
            local closed = pid .. "#%d+: [^\n]*clients closed, I/O threads joined"
            assert.is_truthy(error_log():find(closed),
                             "worker " .. pid .. " did not close its clients")
        end
        -- And the new workers publish.
        local sub = helpers.mosquitto_sub_collect(broker, { topic = "zmqtt/out/after", qos = 1 })
        publish("zmqtt/out/after", "after reload", 1)
        local msgs, reached = sub.wait_for(1, 5)
        sub.stop()
        assert.is_true(reached)
        assert.are.equal("after reload", msgs[1].payload)
    end)

    it("quits gracefully: every process exits and every client disconnects", function()
        local pids = worker_pids()
        local log_start = #broker_log(broker)
        local ok, _, out = helpers.run(nginx_cmd("-s quit"))
        assert(ok, out)
        local exited = all_exit(pids, ngx.master)
        assert.is_true(exited, "nginx still running after " .. EXIT_TIMEOUT .. " s:\n" ..
                       error_log())
        for _, pid in ipairs(pids) do
            assert.is_true(disconnected_cleanly(broker, ngx.client_id .. "-pub-" .. pid),
                           "publisher of worker " .. pid .. " did not disconnect")
        end
        assert.is_true(disconnected_cleanly(broker, ngx.client_id, log_start),
                       "the owner did not disconnect:\n" .. broker_log(broker):sub(log_start + 1))
        local log = error_log()
        for _, level in ipairs({ "error", "crit", "alert", "emerg" }) do
            assert.is_nil(log:find("[" .. level .. "]", 1, true),
                          "nginx logged " .. level .. ":\n" .. log)
        end
        ngx.master = nil
    end)
end)
