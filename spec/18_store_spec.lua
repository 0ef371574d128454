-- spec/18_store_spec.lua: persistence (options.store) at the client level:
-- a publisher killed with SIGKILL at random points and restarted with its
-- store loses nothing (QoS 1 at least once, QoS 2 exactly once, in order);
-- an offline queue survives a kill; a subscriber killed between PUBREC and
-- PUBREL gets the message once; damaged store files are cut, reported and
-- counted; bad options, unwritable directories and a store in use are
-- refused at mqtt.Client.

local helpers = require("helpers")
local FakeBroker = require("fake_broker")
local mqtt = require("mqtt")

local HOST = helpers.HOST
local CHILD = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") .. "/tools/store_child.lua"

-- The child's command line: helpers.LUA running store_child.lua with args.
local function child_command(...)
    local args = {}
    for i, v in ipairs { ... } do args[i] = helpers.quote(tostring(v)) end
    return helpers.LUA .. " " .. helpers.quote(CHILD) .. " " .. table.concat(args, " ")
end

local function start_child(log, ...)
    return helpers.start_process(child_command(...), log, helpers.child_env())
end

-- SIGKILL by PID (a child this spec started), then wait until it is gone.
local function kill9(rec)
    os.execute("kill -9 " .. rec.pid .. " 2>/dev/null")
    assert(helpers.wait_until(function() return not helpers.pid_alive(rec) end, 5))
end

local function run_child(timeout, ...)
    local ok, code, out = helpers.run(helpers.child_env() .. " " .. child_command(...), timeout)
    assert(ok, "store child failed (" .. tostring(code) .. "): " .. tostring(out))
    return out
end

local function store_log(dir)
    local p = io.popen("ls " .. helpers.quote(dir) .. "/*.log 2>/dev/null")
    local path = p:read("*l")
    p:close()
    return assert(path, "no store log in " .. dir)
end

local function file_size(path)
    local f = assert(io.open(path, "rb"))
    local n = f:seek("end")
    f:close()
    return n
end

-- The numbers of a topic's messages in arrival order; markers ("end X") apart.
local function numbers(got, topic)
    local list, ends = {}, {}
    for _, m in ipairs(got) do
        if m.topic == topic then
            local e = m.payload:match("^end (%w+)$")
            if e then ends[e] = true else list[#list + 1] = tonumber(m.payload) end
        end
    end
    return list, ends
end

local function max_of(list)
    local m = 0
    for _, v in ipairs(list) do if v > m then m = v end end
    return m
end

-- The full workload of the issue in plain `make test` (lua5.4); smaller where
-- the suite runs again: sanitizers (ZMQTT_LUA names their interpreter, where
-- make otherwise exports plain lua5.4), the collector modes of `make
-- check-gc` (LUA_INIT_5_4), other interpreters.
local CHILD_LUA = os.getenv("ZMQTT_LUA") or "lua5.4"
local FULL = _VERSION == "Lua 5.4" and not rawget(_G, "jit") and CHILD_LUA:match("lua5%.4$")
             and not os.getenv("LUA_INIT_5_4")
local KILLS, MESSAGES = 20, 2000
if not FULL then KILLS, MESSAGES = 5, 250 end

-- A child's output, read as it grows: the last of each kind of line.
local function reader(path)
    local r, off, part = {}, 0, ""
    function r.poll()
        local f = io.open(path, "rb")
        if not f then return r end
        f:seek("set", off)
        local data = f:read("*a") or ""
        f:close()
        off = off + #data
        part = part .. data
        for line in part:gmatch("([^\n]*)\n") do
            local x, y = line:match("^(%d+) (%d+)$")
            if x then
                r.i, r.j = tonumber(x), tonumber(y)
            elseif line:match("^recovered ") then
                r.recovered = tonumber(line:match("%d+"))
            elseif line:match("^left ") then
                r.left = tonumber(line:match("%d+"))
            elseif line:match("^marked ") then
                r.marked = true
            elseif line == "done" then
                r.done = true
            end
        end
        part = part:match("([^\n]*)$")
        return r
    end
    return r
end

-- Before the broker restarts (the publisher down): the watcher has all the
-- broker held for it, and the broker has read its acknowledgements. Markers
-- of its own go through after what the publisher left; a QoS 1 round trip
-- after its last acknowledgement. mosquitto 2.0.11 sends a QoS 2 message
-- whose PUBREL went out before a restart as a new PUBLISH (DUP) after it,
-- which the watcher rightly takes as a new message: a double that is the
-- broker's, not the store's.
local function quiesce(sub, got, tag)
    sub:publish("store/1", "end " .. tag, 1)
    sub:publish("store/2", "end " .. tag, 2)
    local function idle()
        local st = sub:stats()
        return st.inflight == 0 and st.queued == 0 and st.queued_bytes == 0
    end
    assert(helpers.wait_dispatch(function()
        local _, e1 = numbers(got, "store/1")
        local _, e2 = numbers(got, "store/2")
        return e1[tag] and e2[tag] and idle()
    end, 10), "the watcher's markers did not come back")
    sub:publish("store-sync", "x", 1)
    assert(helpers.wait_dispatch(idle, 10), "the watcher's round trip did not end")
end

-- The publisher of the issue's kill test: one workload of MESSAGES QoS 1 and
-- MESSAGES QoS 2 messages, numbered, published by a child (store_child.lua
-- "run") killed with SIGKILL at KILLS seeded instants and started again each
-- time with the same id and store (clean_session false), then run to the end.
-- Each life resends what its store recovered, publishes markers, and goes on
-- from the numbers the test saw arrive before them (so nothing is published
-- twice by the test: what came twice came from the library). Kills are picked
-- against what the child reports: while it resends (what is left), while it
-- publishes (how far it got, plus up to 5 ms), now and then right after its
-- markers. Lives alternate sync "always" and "batch" (QoS 2 exactly once
-- under both); under "always" nothing the child saw published may be lost.
-- `sub`, a connected client, watches; restart(round), when given, says
-- whether to restart the broker while the child is down.
local function kill_rounds(broker, sub, dir, restart)
    math.randomseed(20261202)
    local got = helpers.watch(sub, "store/#", 2)
    local id = helpers.unique("zpub")
    local per_life = math.floor(2 * MESSAGES / (KILLS + 1))
    local durable1, durable2 = 0, 0
    local phases = { resend = 0, markers = 0, publish = 0 }
    for round = 1, KILLS + 1 do
        local sync = round % 2 == 1 and "always" or "batch"
        local log, go = dir .. "/child" .. round .. ".log", dir .. "/go" .. round
        local rec = start_child(log, broker.port, dir, id, sync, "run", round, MESSAGES, go)
        local r = reader(log)
        local step = function() mqtt.dispatch(0.002) end
        local last = round == KILLS + 1
        -- A failure's message: what went wrong and the end of the child's output.
        local function says(what)
            return ("round %d: %s; the child said:\n%s"):format(round, what,
                                                                 (helpers.read_file(log) or ""):sub(-400))
        end
        assert(helpers.wait_until(function() return r.poll().recovered end, 30, step),
               says("the child did not start"))
        -- While it resends, when there is enough to resend (every time in the
        -- few rounds of a small run): once what is left falls to a seeded
        -- fraction of it. Now and then right after its markers. Otherwise
        -- while it publishes.
        local pick = math.random()
        local kind = last and "publish"
                     or (r.recovered >= 10 and (pick < 0.5 or not FULL)) and "resend"
                     or pick > 0.9 and "markers" or "publish"
        if kind == "resend" then
            local left = math.floor(r.recovered * math.random())
            assert(helpers.wait_until(function()
                r.poll()
                return r.marked or (r.left and r.left <= left)
            end, 30, step), says("the child did not resend"))
        elseif kind == "markers" then
            assert(helpers.wait_until(function() return r.poll().marked end, 30, step),
                   says("no markers"))
        end
        if kind == "publish" or (kind == "resend" and r.marked) then
            assert(helpers.wait_until(function() return r.poll().marked end, 30, step),
                   says("no markers"))
            assert(helpers.wait_dispatch(function()
                local _, e1 = numbers(got, "store/1")
                local _, e2 = numbers(got, "store/2")
                return e1[tostring(round)] and e2[tostring(round)]
            end, 10), says("the markers did not arrive"))
            -- Everything the store kept came before the markers.
            local q1, q2 = numbers(got, "store/1"), numbers(got, "store/2")
            local next1, next2 = max_of(q1) + 1, max_of(q2) + 1
            assert(next1 > durable1 and next2 > durable2, ("round %d: published under " ..
                   "\"always\" up to %d and %d, arrived up to %d and %d"):format(
                   round, durable1, durable2, next1 - 1, next2 - 1))
            helpers.write_file(go .. ".tmp", next1 .. " " .. next2 .. "\n")
            assert(os.rename(go .. ".tmp", go))
            if kind == "publish" and not last then
                local stop = next1 + math.random(1, per_life)
                assert(helpers.wait_until(function()
                    r.poll()
                    return r.done or (r.i or 0) >= stop
                end, 30, step), says("the child did not publish"))
                helpers.sleep(math.random() * 0.005)
            end
        end
        if last then
            assert(helpers.wait_until(function() return r.poll().done end, 60, step),
                   says("the last life did not finish"))
        else
            kill9(rec)
            r.poll()
            local phase = r.i and "publish" or (r.left or 0) > 0 and not r.marked and "resend"
                          or "markers"
            phases[phase] = phases[phase] + 1
            if sync == "always" then
                durable1, durable2 = math.max(durable1, r.i or 0), math.max(durable2, r.j or 0)
            end
            if restart and restart(round) then
                quiesce(sub, got, "k" .. round)
                broker.restart()
            end
        end
    end
    assert.is_true(helpers.wait_dispatch(function()
        local _, e1 = numbers(got, "store/1")
        local _, e2 = numbers(got, "store/2")
        return e1.fin and e2.fin
    end, 10), "the last markers did not arrive")
    local q1, q2 = numbers(got, "store/1"), numbers(got, "store/2")
    local seen, first = {}, {}
    for _, n in ipairs(q1) do
        if not seen[n] then seen[n] = true; first[#first + 1] = n end
    end
    assert.are.equal(MESSAGES, #first, "QoS 1: messages missing")
    for k, n in ipairs(first) do
        assert.are.equal(k, n, "QoS 1: message " .. k .. " missing or out of order")
    end
    local count, twice = {}, {}
    for _, n in ipairs(q2) do
        count[n] = (count[n] or 0) + 1
        if count[n] == 2 then twice[#twice + 1] = n end
    end
    assert.are.equal(0, #twice, "QoS 2: delivered twice: " .. table.concat(twice, " "))
    assert.are.equal(MESSAGES, #q2, "QoS 2: messages missing")
    for k, n in ipairs(q2) do
        assert.are.equal(k, n, "QoS 2: message " .. k .. " missing, doubled or out of order")
    end
    -- Where the kills landed, for the record.
    print(("\n%d kills: %d resending, %d after the markers, %d publishing; %d QoS 1 arrivals")
          :format(KILLS, phases.resend, phases.markers, phases.publish, #q1))
    return phases
end

-- The brokers send to the watcher without a window: mosquitto 2.0.11 lets a
-- message that arrives as its window to a client opens overtake the ones
-- queued behind that window, which the order checks would blame on the store.
describe("store", function()
    local broker, clients = helpers.with_broker({ max_inflight_messages = 0 }, "zst")
    local dir
    before_each(function()
        dir = helpers.tmpdir("zmqtt-store")
    end)

    it("loses nothing of a publisher killed with SIGKILL at random points", function()
        local sub = clients:new(nil, true)
        sub:connect(HOST, 60, broker.port)
        local phases = kill_rounds(broker, sub, dir)
        assert.is_true(phases.publish > 0, "no kill while publishing")
        -- Every few rounds there is a backlog to resend and a kill meant for it:
        -- with 20 of them, some land before it is done.
        assert.is_true(not FULL or phases.resend > 0, "no kill while resending")
    end)

    it("keeps an offline queue across a kill", function()
        local N = 500
        local sub = clients:new(nil, true)
        sub:connect(HOST, 60, broker.port)
        local got = helpers.watch(sub, "store/#", 2)
        local id = helpers.unique("zoff")
        local log = dir .. "/queue.log"
        local rec = start_child(log, broker.port, dir, id, "batch", "queue", 1, N)
        assert.is_true(helpers.wait_until(function()
            return (helpers.read_file(log) or ""):find("queued", 1, true) ~= nil
        end, 10), "the child did not queue its messages")
        -- "batch": durable within 100 ms of the publish.
        helpers.sleep(0.25)
        kill9(rec)
        run_child(20, broker.port, dir, id, "always", "drain", 1)
        assert.is_true(helpers.wait_dispatch(function()
            local _, e = numbers(got, "store/1")
            return e["1"]
        end, 10))
        local q1 = numbers(got, "store/1")
        assert.are.equal(N, #q1)
        for i, n in ipairs(q1) do assert.are.equal(i, n) end
    end)

    it("delivers once a QoS 2 message whose subscriber was killed between PUBREC and PUBREL",
       function()
        local fb = FakeBroker.new()
        finally(function() fb:close() end)
        local id = helpers.unique("zsub")
        local log = dir .. "/sub.log"
        local rec = start_child(log, fb.port, dir, id, "always", "subscribe")
        fb:handshake()
        assert(fb:send(FakeBroker.publish { topic = "t/x", payload = "once", qos = 2,
                                            packet_id = 7 }))
        local p = assert(fb:expect("PUBREC"))
        assert.are.equal(7, p.packet_id)
        kill9(rec)
        fb:close_client()
        rec = start_child(log, fb.port, dir, id, "always", "subscribe")
        fb:handshake { session_present = true }
        assert(fb:send(FakeBroker.pubrel(7)))
        p = assert(fb:expect("PUBCOMP"))
        assert.are.equal(7, p.packet_id)
        -- And a PUBREL resent again, after the message was handed over.
        assert(fb:send(FakeBroker.pubrel(7)))
        assert(fb:expect("PUBCOMP"))
        assert.is_true(helpers.wait_until(function()
            return (helpers.read_file(log) or ""):find("msg once", 1, true) ~= nil
        end, 5))
        kill9(rec)
        local out = helpers.read_file(log)
        local _, count = out:gsub("msg once", "")
        assert.are.equal(1, count, out)
    end)

    -- A store of `n` queued QoS 1 messages, written by a client of this
    -- process that never connected; returns the path of its log.
    local function queued_store(id, n)
        local c = mqtt.Client(id, false, { store = dir })
        for i = 1, n do c:publish("store/1", ("m%03d"):format(i), 1) end
        c:close()
        return store_log(dir)
    end

    -- A client on the store, its log lines and its stats.
    local function reopen(id)
        local lines = {}
        local c = clients:new(id, false, { store = dir, logger = function(level, text)
            lines[#lines + 1] = level .. " " .. text
        end })
        mqtt.dispatch(0.05)
        return c, table.concat(lines, "\n"), c:stats()
    end

    it("cuts off a truncated tail, reports it and counts it", function()
        local id = helpers.unique("ztr")
        local path = queued_store(id, 10)
        local size = file_size(path)
        assert(os.execute("truncate -s " .. (size - 7) .. " " .. helpers.quote(path)))
        local c, lines, st = reopen(id)
        assert.are.equal(1, st.store_corruptions)
        assert.are.equal(9, st.queued)
        assert.matches("damaged tail was cut off", lines)
        c:close()
        -- Cut once: the next open finds an intact log.
        local _, _, st2 = reopen(id)
        assert.are.equal(0, st2.store_corruptions)
        assert.are.equal(9, st2.queued)
    end)

    it("cuts off from a flipped bit on, never refusing to start", function()
        local id = helpers.unique("zbf")
        local path = queued_store(id, 10)
        local size = file_size(path)
        local f = assert(io.open(path, "r+b"))
        local at = size - 30
        f:seek("set", at)
        local b = f:read(1):byte()
        f:seek("set", at)
        -- bit 4 flipped (no ~ operator before Lua 5.3)
        f:write(string.char(math.floor(b / 16) % 2 == 1 and b - 16 or b + 16))
        f:close()
        local c, lines, st = reopen(id)
        assert.are.equal(1, st.store_corruptions)
        assert.is_true(st.queued < 10 and st.queued >= 8, "queued " .. st.queued)
        assert.matches("damaged tail", lines)
        -- What was kept goes out as usual.
        local sub = clients:new(nil, true)
        sub:connect(HOST, 60, broker.port)
        local got = helpers.watch(sub, "store/#", 1)
        c:connect(HOST, 60, broker.port)
        assert.is_true(helpers.wait_dispatch(function() return #got == st.queued end))
        assert.are.equal("m001", got[1].payload)
    end)

    it("refuses bad options, an unwritable directory and a store in use, clearly", function()
        local function refusal(opts, id)
            local ok, err = pcall(mqtt.Client, id or helpers.unique("zrf"), id == "", opts)
            assert.is_false(ok)
            assert.is_true(mqtt.is_error(err), tostring(err))
            return tostring(err)
        end
        assert.matches("store", refusal { store = 42 })
        assert.matches("store", refusal { store = "" })
        assert.matches("sync", refusal { store = { path = dir, sync = "sometimes" } })
        assert.matches("store", refusal { store = { path = dir, colour = 1 } })
        assert.matches("client id", refusal({ store = dir }, ""))
        assert.matches("store", refusal { store = "/proc/zmqtt-no-such/dir" })
        local id = helpers.unique("zin")
        local first = clients:new(id, false, { store = { path = dir, sync = "batch" } })
        assert.matches("in use", refusal({ store = dir }, id))
        assert.has_error(function() mqtt.store_clear(dir, id) end)
        first:close()
        -- close() keeps the store; store_clear removes it.
        local again = clients:new(id, false, { store = dir })
        again:publish("store/1", "kept", 1)
        again:close()
        local third = clients:new(id, false, { store = dir })
        assert.are.equal(1, third:stats().queued)
        third:close()
        assert.is_true(mqtt.store_clear(dir, id))
        local fresh = clients:new(id, false, { store = dir })
        assert.are.equal(0, fresh:stats().queued)
    end)
end)

describe("store, with the broker restarted while the publisher is down", function()
    local broker, clients = helpers.with_broker({ persistence = true, max_inflight_messages = 0 },
                                                "zsr")

    it("loses nothing either", function()
        local dir = helpers.tmpdir("zmqtt-store")
        -- A session of its own, so that the broker keeps what comes meanwhile.
        local sub = clients:new(helpers.unique("zsrsub"), false, { reconnect = { min = 0.1, max = 0.2 } })
        sub:connect(HOST, 60, broker.port)
        -- The broker restarted after every kill, not every other one: each
        -- life then resends into a broker that kept its session on disk
        -- (the test above covers lives that find the broker running), and
        -- the restarts cost about a quarter of a second each.
        local restarts = 0
        kill_rounds(broker, sub, dir, function()
            restarts = restarts + 1
            return true
        end)
        assert.are.equal(KILLS, restarts)
    end)
end)
