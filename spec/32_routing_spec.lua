-- spec/32_routing_spec.lua: routing by topic, on(PUBLISH or PUBREL, fn,
-- "filter" [, priority]). The filter tree and the router are checked against
-- a plain model (every callback tried in order, filters through
-- mqtt.topic_matches); the client API against a scripted broker that sends
-- any topic ($SYS, $share, empty levels) in a known order, and against a
-- private mosquitto for QoS 2 and shared subscriptions.

local mqtt = require("mqtt")
local route = require("mqtt.route")
local core = require("mqtt.core")
local helpers = require("helpers")
local FakeBroker = require("fake_broker")

local HOST = helpers.HOST
local wait = helpers.wait_dispatch

-- A deterministic generator, the same on every Lua (math.random is not).
local function generator(seed)
    local x = seed
    return function(n)
        x = x * 16807 % 2147483647
        return x % n + 1
    end
end

local function pick(rand, list)
    return list[rand(#list)]
end

---------------------------------------------------------------------------
-- Topics and filters over a small vocabulary, so that they overlap a lot.

local TOPIC_LEVELS = { "a", "b", "", "$SYS", "$share", "g" }
local FILTER_LEVELS = { "a", "b", "", "+", "$SYS", "$share", "g" }

local function random_topic(rand)
    local t = {}
    for i = 1, rand(4) do t[i] = pick(rand, TOPIC_LEVELS) end
    local s = table.concat(t, "/")
    if s == "" then return "a" end
    return s
end

-- A valid filter ("$share/+/a" and "$share/a" are not: a shared
-- subscription names a group without wildcards, then a filter).
local function random_filter(rand)
    while true do
        if rand(12) == 1 then return "#" end
        local t = {}
        for i = 1, rand(4) do t[i] = pick(rand, FILTER_LEVELS) end
        if rand(4) == 1 then t[#t + 1] = "#" end
        local s = table.concat(t, "/")
        if s == "" then return "+" end
        if core.check_topic(s, true) then return s end
    end
end

-- Every topic of up to three levels over the vocabulary.
local function all_topics()
    local list, seen = {}, {}
    local function grow(prefix, depth)
        for _, l in ipairs(TOPIC_LEVELS) do
            local t = prefix and (prefix .. "/" .. l) or l
            if t ~= "" and not seen[t] then
                seen[t] = true
                list[#list + 1] = t
            end
            if depth < 3 then grow(t, depth + 1) end
        end
    end
    grow(nil, 1)
    return list
end

describe("the filter tree", function()
    -- The ids tree_match finds: the first it returns, the others in out[2..n].
    local function match(tree, topic)
        local out = {}
        local n, first = core.tree_match(tree, topic, out)
        out[1] = first
        assert.are.equal(n, #out)
        return out
    end

    -- Checks that tree_match finds exactly the ids of the filters topic_matches accepts.
    local function check_against_topic_matches(tree, ids_of, topics)
        for _, topic in ipairs(topics) do
            local want = {}
            for filter, id in pairs(ids_of) do
                if mqtt.topic_matches(filter, topic) then want[id] = filter end
            end
            local got = {}
            for _, id in ipairs(match(tree, topic)) do
                assert.is_nil(got[id], "id returned twice for " .. topic)
                got[id] = assert(want[id], "tree matched a filter topic_matches rejects for "
                    .. topic .. ": id " .. tostring(id))
            end
            for id, filter in pairs(want) do
                assert.are.equal(filter, got[id], filter .. " should match " .. topic)
            end
        end
    end

    it("matches exactly the filters mqtt.topic_matches accepts, through additions and removals", function()
        local rand = generator(7)
        local tree = core.filter_tree()
        local topics = all_topics()
        assert.is_true(#topics > 200)
        local ids_of, count = {}, {}
        for _ = 1, 400 do
            local f = random_filter(rand)
            local id = core.tree_add(tree, f)
            assert.is_true(ids_of[f] == nil or ids_of[f] == id, "one id per filter")
            ids_of[f] = id
            count[f] = (count[f] or 0) + 1
        end
        check_against_topic_matches(tree, ids_of, topics)
        -- Remove every registration of about half the filters, then check again.
        local n = 0
        for f, k in pairs(count) do
            n = n + 1
            if n % 2 == 0 then
                for _ = 1, k do core.tree_remove(tree, ids_of[f]) end
                ids_of[f] = nil
            end
        end
        check_against_topic_matches(tree, ids_of, topics)
        for f, id in pairs(ids_of) do
            for _ = 1, count[f] do core.tree_remove(tree, id) end
        end
        assert.are.same({}, match(tree, "a/b"))
    end)

    it("keeps a level with hundreds of children exact while they come and go", function()
        local tree = core.filter_tree()
        local ids_of = {}
        for i = 1, 600 do ids_of["k/" .. i] = core.tree_add(tree, "k/" .. i) end
        local rand = generator(11)
        local topics = { "k", "k/0", "k/601" }
        for i = 1, 600, 7 do topics[#topics + 1] = "k/" .. i end
        for round = 1, 4 do
            for i = 1, 600 do
                local f = "k/" .. i
                if ids_of[f] and rand(3) == 1 then
                    core.tree_remove(tree, ids_of[f])
                    ids_of[f] = nil
                elseif not ids_of[f] and round > 1 and rand(2) == 1 then
                    ids_of[f] = core.tree_add(tree, f)
                end
            end
            for i = 1, 600 do
                assert.are.same({ ids_of["k/" .. i] }, match(tree, "k/" .. i))
            end
            check_against_topic_matches(tree, ids_of, topics)
        end
    end)

    it("refuses a malformed filter and an id where no filter ends", function()
        local tree = core.filter_tree()
        assert.has_error(function() core.tree_add(tree, "a/#/b") end)
        assert.has_error(function() core.tree_add(tree, "") end)
        local id = core.tree_add(tree, "a/+")
        core.tree_remove(tree, id)
        assert.has_error(function() core.tree_remove(tree, id) end)
        assert.has_error(function() core.tree_remove(tree, 0) end)
        assert.has_error(function() core.tree_remove(tree, 1e6) end)
        assert.are.equal(0, core.tree_match(tree, "a/b", {}))
    end)
end)

describe("the router", function()
    -- The model: every live callback sorted by priority then registration,
    -- the first whose condition holds wins.
    local function model_first(entries, data)
        local live = {}
        for _, e in ipairs(entries) do
            if not e.removed then live[#live + 1] = e end
        end
        table.sort(live, function(a, b)
            return a.prio > b.prio or (a.prio == b.prio and a.seq < b.seq)
        end)
        for _, e in ipairs(live) do
            local holds
            if type(e.cond) == "string" then
                holds = data.message ~= nil and mqtt.topic_matches(e.cond, data.message.topic)
            else
                holds = e.cond(data)
            end
            if holds then return e.fn end
        end
        return nil
    end

    -- Function conditions that hold for some topics and not others.
    local CONDITIONS = {
        function(d) return d.message ~= nil and #d.message.topic % 3 == 0 end,
        function(d) return d.message ~= nil and d.message.topic:sub(1, 1) == "b" end,
        function(d) return d.message == nil end,
        function() return false end,
    }
    local PRIORITIES = { -1, 0, 0, 1, 2.5, 1e9 }

    it("picks the callback the model picks, through a random mix of on, off and messages", function()
        local rand = generator(3)
        local r = route.new()
        local entries, fns, seq = {}, {}, 0
        for step = 1, 3000 do
            local what = rand(10)
            if what <= 4 then
                -- A new callback, or another registration of an existing one.
                local fn
                if #fns > 0 and rand(4) == 1 then
                    fn = pick(rand, fns)
                else
                    fn = function() return step end
                    fns[#fns + 1] = fn
                end
                local cond = rand(3) == 1 and pick(rand, CONDITIONS) or random_filter(rand)
                local prio = pick(rand, PRIORITIES)
                seq = seq + 1
                route.add(r, fn, cond, prio, seq)
                entries[#entries + 1] = { fn = fn, cond = cond, prio = prio, seq = seq }
            elseif what == 5 and #fns > 0 then
                local i = rand(#fns)
                local fn = fns[i]
                local expected = 0
                for _, e in ipairs(entries) do
                    if e.fn == fn and not e.removed then
                        e.removed = true
                        expected = expected + 1
                    end
                end
                assert.are.equal(expected, route.remove(r, fn))
                table.remove(fns, i)
            else
                local data
                if rand(8) == 1 then
                    data = { mid = 1 } -- a QoS 2 PUBLISH: no message, no filter holds
                else
                    data = { message = { topic = random_topic(rand) } }
                end
                local e = route.first(r, data, seq)
                local got = e and e.fn
                assert.is_true(got == model_first(entries, data), "step " .. step .. ": "
                    .. (data.message and data.message.topic or "(no message)"))
            end
        end
    end)

    it("skips what a condition removes and ignores what it adds, as a replay of the walk expects", function()
        local rand = generator(5)
        local r = route.new()
        local entries, seq, clock = {}, 0, 0
        local evaluated
        -- How often the walk met each change, so the test knows it tried them.
        local seen = { removed_self = 0, removed_filter = 0, added = 0 }

        local function add(cond, prio)
            local x = { prio = prio }
            seq = seq + 1
            x.seq = seq
            x.fn = function() return x end
            if cond == "function" then
                -- A condition that holds for about one topic in four, its own
                -- set of them (so that the ones before it do not hide it),
                -- and, now and then, removes a callback or adds one; some
                -- remove their own callback when they hold.
                local salt, plan = rand(1000), rand(4)
                local function holds(d)
                    local h, t = salt, d.message.topic
                    for i = 1, #t do h = (h * 31 + t:byte(i)) % 1000003 end
                    return h % 4 == 0
                end
                x.cond = function(d)
                    evaluated[#evaluated + 1] = x
                    x.result = holds(d)
                    local victim = (plan == 1 and pick(rand, entries)) or (plan == 2 and x.result and x)
                    if victim and not victim.removed then
                        clock = clock + 1
                        victim.removed = clock
                        route.remove(r, victim.fn)
                        if victim == x then seen.removed_self = seen.removed_self + 1 end
                        if type(victim.cond) == "string" then seen.removed_filter = seen.removed_filter + 1 end
                    elseif plan == 3 and #entries < 600 then
                        seen.added = seen.added + 1
                        clock = clock + 1
                        add(rand(2) == 1 and random_filter(rand) or "function", pick(rand, PRIORITIES))
                    end
                    x.after = clock
                    return x.result
                end
            else
                x.cond = cond
            end
            route.add(r, x.fn, x.cond, prio, x.seq)
            entries[#entries + 1] = x
            return x
        end

        -- What the walk should have chosen: the callbacks present when it
        -- began, in order; one is skipped once removed, a function condition
        -- is the next one evaluated, a filter holds when it matches.
        local function replay(data, started, last_seq)
            local live = {}
            for _, x in ipairs(entries) do
                if x.seq <= last_seq and not (x.removed and x.removed <= started) then
                    live[#live + 1] = x
                end
            end
            table.sort(live, function(a, b)
                return a.prio > b.prio or (a.prio == b.prio and a.seq < b.seq)
            end)
            local now, k = started, 1
            for _, x in ipairs(live) do
                if not (x.removed and x.removed <= now) then
                    if type(x.cond) == "string" then
                        if data.message and mqtt.topic_matches(x.cond, data.message.topic) then
                            return x, k
                        end
                    else
                        assert.is_true(rawequal(evaluated[k], x), "condition " .. k .. " out of order")
                        now = x.after
                        k = k + 1
                        if x.result and not (x.removed and x.removed <= now) then return x, k end
                    end
                end
            end
            return nil, k
        end

        for _ = 1, 150 do
            add(rand(2) == 1 and random_filter(rand) or "function", pick(rand, PRIORITIES))
        end
        for step = 1, 1500 do
            local data = { message = { topic = random_topic(rand) } }
            evaluated = {}
            local started, last_seq = clock, seq
            local got = route.first(r, data, last_seq)
            local want, k = replay(data, started, last_seq)
            assert.are.equal(k - 1, #evaluated, "step " .. step .. ": conditions evaluated")
            assert.is_true((got and got.fn()) == want, "step " .. step)
            if #entries < 600 and rand(2) == 1 then
                add(rand(3) == 1 and random_filter(rand) or "function", pick(rand, PRIORITIES))
            end
        end
        assert.is_true(seen.removed_self >= 5 and seen.removed_filter >= 5 and seen.added >= 5,
            string.format("walks met %d self-removals that held, %d filter removals, %d additions",
                seen.removed_self, seen.removed_filter, seen.added))
    end)

    it("goes on past entries a condition removed and before ones it added, mid-walk", function()
        local r, seq, log = route.new(), 0, {}
        local fns = {}
        local function add(name, cond, prio)
            seq = seq + 1
            local cb = function() return name end
            local c = cond
            if type(cond) == "function" then
                c = function(d)
                    log[#log + 1] = name
                    return cond(d)
                end
            end
            route.add(r, cb, c, prio, seq)
            fns[name] = cb
        end
        local function first(topic)
            local e = route.first(r, { message = { topic = topic } }, seq)
            return e and e.fn()
        end
        -- A removes itself, then B (its next): the walk goes from A to B,
        -- removed, without trying B. C removes the filter that would win, F;
        -- G, the next filter, wins before D.
        add("A", function()
            route.remove(r, fns.A)
            route.remove(r, fns.B)
            return true
        end, 3)
        add("B", function() return true end, 2)
        add("C", function()
            route.remove(r, fns.F)
            return false
        end, 1)
        add("F", "t/#", 0)
        add("G", "t/+", -0.5)
        add("D", function() return true end, -1)
        assert.are.equal("G", first("t/1"))
        assert.are.same({ "A", "C" }, log)
        -- H adds X right after itself, then removes itself: X waits for the next walk.
        log = {}
        add("H", function()
            add("X", function() return true end, 4.5)
            route.remove(r, fns.H)
            return false
        end, 5)
        assert.are.equal("G", first("t/2"))
        assert.are.same({ "H", "C" }, log)
        log = {}
        assert.are.equal("X", first("t/3"))
        assert.are.same({ "X" }, log)
    end)

    it("holds 20,000 callbacks registered with ascending priorities, and removes them", function()
        local r = route.new()
        local fns = {}
        for i = 1, 20000 do
            fns[i] = function() return i end
            if i % 2 == 0 then
                route.add(r, fns[i], "d/" .. i .. "/+", i, i)
            else
                route.add(r, fns[i], CONDITIONS[4], i, i)
            end
        end
        -- The highest priority comes first: the last filter registered.
        assert.are.equal(fns[20000], route.first(r, { message = { topic = "d/20000/x" } }, 20000).fn)
        assert.are.equal(fns[2], route.first(r, { message = { topic = "d/2/x" } }, 20000).fn)
        for i = 20000, 1, -2 do assert.are.equal(1, route.remove(r, fns[i])) end
        assert.is_nil(route.first(r, { message = { topic = "d/2/x" } }, 20000))
        for i = 19999, 1, -2 do assert.are.equal(1, route.remove(r, fns[i])) end
        assert.are.equal(0, route.remove(r, fns[1]))
        assert.is_nil(r.head[1])
    end)
end)

describe("routing by topic", function()
    local broker, clients = helpers.with_broker(nil, "zroute")
    local fakes = helpers.fake_brokers()
    helpers.close_after_each(fakes)

    -- A callback maker that records, per message index, which callback got it.
    local function recorder(routed)
        return function(name)
            return function(_, d) routed[tonumber(d.message.payload)] = name end
        end
    end

    -- A client connected to a scripted broker, its CONNACK dispatched;
    -- deliver(topics): the broker sends one QoS 0 message per topic, payload
    -- its index (counting on from the previous deliveries), and deliver
    -- returns once the client has dispatched them all; routed, where rec(name)
    -- makes callbacks record name at that index (recorder).
    local function scripted()
        local fb = fakes:new()
        local c = clients:new()
        local acked = false
        local function on_connack() acked = true end
        c:on(mqtt.CONNACK, on_connack)
        c:connect_async { host = fb.host, port = fb.port, keepalive = 60 }
        fb:handshake()
        assert.is_true(helpers.wait_until(function()
            c:dispatch(0.02)
            return acked
        end, 5))
        c:off(mqtt.CONNACK, on_connack)
        local sent = 0
        local function deliver(topics)
            for _, t in ipairs(topics) do
                sent = sent + 1
                assert(fb:send(FakeBroker.publish { topic = t, payload = tostring(sent) }))
            end
            local n = 0
            assert.is_true(helpers.wait_until(function()
                n = n + c:dispatch(0.02)
                return n >= #topics
            end, 5), "dispatched " .. n .. " of " .. #topics)
            assert.are.equal(#topics, n)
        end
        local routed = {}
        return c, deliver, routed, recorder(routed)
    end

    it("orders filters and function conditions together by priority, then registration", function()
        local c, deliver, routed, rec = scripted()
        local function has_x(d) return d.message ~= nil and d.message.topic:find("x", 1, true) ~= nil end
        c:on(mqtt.PUBLISH, rec("a/#@3"), "a/#", 3)
        c:on(mqtt.PUBLISH, rec("x-fn@5"), has_x, 5)
        c:on(mqtt.PUBLISH, rec("a/+/c@3"), "a/+/c", 3)      -- same priority, later: loses to a/#
        c:on(mqtt.PUBLISH, rec("any-fn@3"), function() return true end, 3)
        c:on(mqtt.PUBLISH, rec("a/b/c@4"), "a/b/c", 4)
        c:on(mqtt.PUBLISH, rec("b/+@3"), "b/+", 3)          -- after any-fn: never reached
        c:on(mqtt.PUBLISH, rec("z/#@9"), "z/#", 9)
        c:on(mqtt.PUBLISH, rec("generic"))
        deliver({ "a/b/c", "a/x/c", "a/q/c", "b/q", "zz", "z/x", "x", "a" })
        assert.are.same({ "a/b/c@4", "x-fn@5", "a/#@3", "any-fn@3", "any-fn@3", "z/#@9", "x-fn@5",
            "a/#@3" }, routed)
    end)

    it("with overlapping filters at one priority, the one registered first wins", function()
        local c, deliver, routed, rec = scripted()
        c:on(mqtt.PUBLISH, rec("a/b"), "a/b")
        c:on(mqtt.PUBLISH, rec("+/b"), "+/b")
        c:on(mqtt.PUBLISH, rec("a/+"), "a/+")
        c:on(mqtt.PUBLISH, rec("a/#"), "a/#")
        c:on(mqtt.PUBLISH, rec("#"), "#")
        c:on(mqtt.PUBLISH, rec("a/b/-1"), "a/b", -1)
        c:on(mqtt.PUBLISH, rec("generic"))
        deliver({ "a/b", "c/b", "a/c", "a", "a/b/c", "c", "/b", "a/" })
        assert.are.same({ "a/b", "+/b", "a/+", "a/#", "a/#", "#", "+/b", "a/+" }, routed)
    end)

    it("the same filter twice: the higher priority wins, then the earlier registration", function()
        local c, deliver, routed, rec = scripted()
        c:on(mqtt.PUBLISH, rec("first@0"), "s/+")
        c:on(mqtt.PUBLISH, rec("second@0"), "s/+")
        deliver({ "s/1" })
        c:on(mqtt.PUBLISH, rec("third@1"), "s/+", 1)
        deliver({ "s/2", "s/3" })
        assert.are.same({ "first@0", "third@1", "third@1" }, routed)
    end)

    it("off removes filter callbacks: every registration of the function, and only those", function()
        local c, deliver, routed, rec = scripted()
        local twice = rec("twice")
        c:on(mqtt.PUBLISH, twice, "t/+", 2)
        c:on(mqtt.PUBLISH, twice, "u/#", 2)
        c:on(mqtt.PUBLISH, twice, function(d) return d.message.topic == "v" end, 2)
        local keep = rec("keep")
        c:on(mqtt.PUBLISH, keep, "t/+", 1)
        c:on(mqtt.PUBLISH, rec("generic"))
        deliver({ "t/1", "u/1/2", "v" })
        c:off(mqtt.PUBLISH, twice)
        c:off(mqtt.PUBLISH, function() end) -- never registered: nothing changes
        c:off(mqtt.PUBREL, keep)            -- another command: nothing changes
        deliver({ "t/1", "u/1/2", "v" })
        c:off(mqtt.PUBLISH, keep)
        deliver({ "t/1" })
        -- Registered again, it goes after those of its priority registered meanwhile.
        c:on(mqtt.PUBLISH, rec("late"), "t/+", 1)
        c:on(mqtt.PUBLISH, keep, "t/+", 1)
        deliver({ "t/9" })
        assert.are.same({ "twice", "twice", "twice", "keep", "generic", "generic", "generic", "late" },
            routed)
    end)

    it("applies the $ rule: a wildcard first level does not match a $-topic", function()
        local c, deliver, routed, rec = scripted()
        c:on(mqtt.PUBLISH, rec("#"), "#", 9)
        c:on(mqtt.PUBLISH, rec("+/broker/+"), "+/broker/+", 8)
        c:on(mqtt.PUBLISH, rec("$SYS/broker/+"), "$SYS/broker/+", 7)
        c:on(mqtt.PUBLISH, rec("$SYS/#"), "$SYS/#", 6)
        c:on(mqtt.PUBLISH, rec("generic"))
        deliver({ "$SYS/broker/load", "$SYS", "$SYS/x/y", "sys/broker/load", "$other/broker/x",
            "a/$SYS" })
        assert.are.same({ "$SYS/broker/+", "$SYS/#", "$SYS/#", "#", "generic", "#" }, routed)
        for i, topic in ipairs { "$SYS/broker/load", "$SYS", "$other/broker/x" } do
            assert.is_false(mqtt.topic_matches("#", topic), i)
        end
    end)

    it("matches $share/group/ filters exactly as mqtt.topic_matches does", function()
        local c, deliver, routed, rec = scripted()
        local filters = { "$share/g/a/+", "$share/g/#", "$share/h/a/b", "a/+", "+/g/a/b" }
        for _, f in ipairs(filters) do c:on(mqtt.PUBLISH, rec(f), f) end
        c:on(mqtt.PUBLISH, rec("generic"))
        local topics = { "a/b", "$share/g/a/b", "$share/h/a/b", "$share/g", "share/g/a/b", "a/b/c" }
        deliver(topics)
        for i, topic in ipairs(topics) do
            local want = "generic"
            for _, f in ipairs(filters) do
                if mqtt.topic_matches(f, topic) then
                    want = f
                    break
                end
            end
            assert.are.equal(want, routed[i], topic)
        end
    end)

    it("a callback registered or removed inside a dispatch applies from the next packet", function()
        local c, deliver, routed, rec = scripted()
        local registered = 0
        -- A callback that registers a better one for the topic it is handling.
        c:on(mqtt.PUBLISH, function(cl, d)
            routed[tonumber(d.message.payload)] = "first"
            if registered == 0 then
                registered = 1
                cl:on(mqtt.PUBLISH, rec("added in a callback"), d.message.topic, 5)
            end
        end, "p/+")
        -- A condition that registers a better one, and one that removes the
        -- next in line: neither changes who gets this packet.
        local doomed = rec("removed by a condition")
        c:on(mqtt.PUBLISH, rec("q/+ after the condition"), "q/+", -3)
        c:on(mqtt.PUBLISH, doomed, "q/+", -2)
        c:on(mqtt.PUBLISH, rec("never"), function(d)
            if d.message.topic == "q/1" and registered == 1 then
                registered = 2
                c:on(mqtt.PUBLISH, rec("added in a condition"), "q/+", 9)
                c:off(mqtt.PUBLISH, doomed)
            end
            return false
        end, -1)
        c:on(mqtt.PUBLISH, rec("generic"))
        deliver({ "p/1", "p/1", "p/2", "q/1", "q/1" })
        assert.are.same({ "first", "added in a callback", "first", "q/+ after the condition",
            "added in a condition" }, routed)
    end)

    it("a callback that removes itself runs once", function()
        local c, deliver, routed, rec = scripted()
        local function once(cl, d)
            routed[tonumber(d.message.payload)] = "once"
            cl:off(mqtt.PUBLISH, once)
        end
        c:on(mqtt.PUBLISH, once, "o/#", 1)
        c:on(mqtt.PUBLISH, rec("generic"))
        deliver({ "o/1", "o/2", "o" })
        assert.are.same({ "once", "generic", "generic" }, routed)
    end)

    it("routes QoS 2 messages on PUBREL; a QoS 2 PUBLISH (mid only) matches no filter", function()
        local c = clients:new()
        c:connect(HOST, 60, broker.port)
        local prefix = helpers.unique("zr")
        helpers.subscribe_wait(c, prefix .. "/#", 2)
        local pub, rel, generic = {}, {}, {}
        c:on(mqtt.PUBLISH, function(_, d) pub[#pub + 1] = d.message.payload end, prefix .. "/q/+")
        c:on(mqtt.PUBLISH, function(_, d) generic[#generic + 1] = d end)
        c:on(mqtt.PUBREL, function(_, d) rel[#rel + 1] = d.message.payload end, prefix .. "/q/+")
        c:on(mqtt.PUBREL, function(_, d) rel[#rel + 1] = "other " .. d.message.payload end)
        c:publish(prefix .. "/q/0", "zero", 0)
        c:publish(prefix .. "/q/1", "one", 1)
        c:publish(prefix .. "/q/2", "two", 2)
        c:publish(prefix .. "/elsewhere", "three", 2)
        assert.is_true(wait(function() return #rel >= 2 and #pub >= 2 and #generic >= 2 end))
        table.sort(pub)
        assert.are.same({ "one", "zero" }, pub)
        table.sort(rel)
        assert.are.same({ "other three", "two" }, rel)
        assert.are.equal(2, #generic)
        for _, d in ipairs(generic) do
            assert.is_nil(d.message)
            assert.is_true(d.mid > 0)
        end
    end)

    it("routes what a $share subscription delivers as mqtt.topic_matches decides", function()
        local c = clients:new()
        c:connect(HOST, 60, broker.port)
        local prefix = helpers.unique("zr")
        local shared = "$share/grp/" .. prefix .. "/#"
        local got = {}
        local function rec(name)
            return function(_, d) got[d.message.topic] = name end
        end
        c:on(mqtt.PUBLISH, rec("shared"), shared, 1)
        c:on(mqtt.PUBLISH, rec("plain"), prefix .. "/+")
        c:on(mqtt.PUBLISH, rec("generic"))
        helpers.subscribe_wait(c, shared, 1)
        local topics = { prefix .. "/s", prefix .. "/s/deeper" }
        for _, t in ipairs(topics) do c:publish(t, "x", 1) end
        assert.is_true(wait(function() return got[topics[1]] and got[topics[2]] end))
        for _, t in ipairs(topics) do
            -- The broker delivers the message under its own topic, not the shared filter's.
            local want = mqtt.topic_matches(shared, t) and "shared"
                or (mqtt.topic_matches(prefix .. "/+", t) and "plain" or "generic")
            assert.are.equal(want, got[t], t)
        end
    end)

    it("takes its place around loop's on_message (priority -1)", function()
        local c, deliver, routed, rec = scripted()
        c:loop(rec("on_message"))
        c:on(mqtt.PUBLISH, rec("hi/+@0"), "hi/+")
        c:on(mqtt.PUBLISH, rec("lo/+@-2"), "lo/+", -2)
        deliver({ "hi/1", "lo/1", "other" })
        assert.are.same({ "hi/+@0", "on_message", "on_message" }, routed)
    end)

    it("routes each message to its one filter among thousands", function()
        local c, deliver, routed, rec = scripted()
        local fns = {}
        for i = 1, 3000 do
            fns[i] = rec(i)
            c:on(mqtt.PUBLISH, fns[i], "dev/" .. i .. "/+")
        end
        c:on(mqtt.PUBLISH, rec("generic"))
        deliver({ "dev/1/t", "dev/3000/t", "dev/1234/t", "dev/3001/t", "dev/12/t/x" })
        for i = 1, 3000, 2 do c:off(mqtt.PUBLISH, fns[i]) end
        deliver({ "dev/1/t", "dev/3000/t", "dev/1235/t", "dev/1234/t" })
        assert.are.same({ 1, 3000, 1234, "generic", "generic", "generic", 3000, "generic", 1234 },
            routed)
    end)

    it("raises argument errors for bad filters and filters on other commands", function()
        local c = clients:new()
        local function noop() end
        local function arg_error(pattern, ...)
            local ok, err = pcall(c.on, c, ...)
            assert.is_false(ok)
            assert.is_true(mqtt.is_error(err))
            assert.are.equal("invalid argument", err.name)
            assert.matches(pattern, err.message)
        end
        arg_error("#3 to 'on' %(topic filter: '#' not alone", mqtt.PUBLISH, noop, "a/#/b")
        arg_error("#3 to 'on' %(topic filter: '%+' not alone", mqtt.PUBREL, noop, "a+/b")
        arg_error("#3 to 'on' %(topic filter", mqtt.PUBLISH, noop, "")
        arg_error("#3 to 'on' %(a topic filter condition needs PUBLISH or PUBREL, not PUBACK",
            mqtt.PUBACK, noop, "a/b")
        arg_error("#3 to 'on'.*SUBACK", mqtt.SUBACK, noop, "#")
        arg_error("#4 to 'on' %(priority must not be NaN", mqtt.PUBLISH, noop, "a", 0 / 0)
        arg_error("#4 to 'on' %(priority must be a number", mqtt.PUBLISH, noop, "a", "1")
        -- None of them was registered.
        assert.is_nil(c._specific[mqtt.PUBLISH])
        c:on(mqtt.PUBLISH, noop, "a/+/#", math.huge)
        c:on(mqtt.PUBREL, noop, "#", -math.huge)
    end)
end)
