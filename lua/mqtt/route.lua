--- mqtt.route: the specific callbacks of one command, kept in dispatch order.
-- Callbacks with a function condition sit in a skip list ordered by priority
-- (highest first), then registration; callbacks with a topic filter sit in a
-- tree of filter levels whose nodes hold their callbacks in a heap, best
-- first. For a message the tree yields the best matching filter callback and
-- the walk over function conditions stops where that one ranks, so neither
-- routing nor on/off grows with the number of filter callbacks.
-- Runs no user code except the conditions tried by `first`. Internal to mqtt.
-- @module mqtt.route

local core = require("mqtt.core")

local type = type
local math_floor = math.floor

local M = {}

-- Total order of specific callbacks: priority descending, then registration.
local function before(a, b)
    local pa, pb = a.prio, b.prio
    return pa > pb or (pa == pb and a.seq < b.seq)
end

---------------------------------------------------------------------------
-- Skip list of function-condition entries. An entry's forward pointers are
-- its array part (e[1] is the next entry); the head holds the first ones.

local MAX_LEVEL = 32
local QUARTER = 536870912 -- 2^29, about a quarter of the generator's range

-- A private Park-Miller generator, exact in doubles and in integers alike,
-- so the levels never disturb the sequence of math.random.
local seed = 48271
local function random_level()
    seed = seed * 16807 % 2147483647
    local level, u = 1, seed
    while u < QUARTER and level < MAX_LEVEL do
        level = level + 1
        u = u * 4
    end
    return level
end

-- Walks down to e's place at every level: links e in at the levels up to
-- `level`, or, with level 0, unlinks it (leaving e's own pointers alone, so
-- that a walk standing on e still reaches the entries after it). The
-- comparison is before(nx, e), written out: this is the hot loop of on/off.
local function list_place(r, e, level)
    local p, s, x = e.prio, e.seq, r.head
    for i = r.levels, 1, -1 do
        local nx = x[i]
        while nx and (nx.prio > p or (nx.prio == p and nx.seq < s)) do
            x = nx
            nx = x[i]
        end
        if level == 0 then
            if nx == e then x[i] = e[i] end
        elseif i <= level then
            e[i] = nx
            x[i] = e
        end
    end
end

local function list_insert(r, e)
    local level = random_level()
    if level > r.levels then r.levels = level end
    list_place(r, e, level)
end

local function list_remove(r, e)
    list_place(r, e, 0)
    local head = r.head
    while r.levels > 1 and not head[r.levels] do r.levels = r.levels - 1 end
end

---------------------------------------------------------------------------
-- Heap of the entries registered with one filter (a tree node), best on top.

local function heap_set(h, i, e)
    h[i] = e
    e.slot = i
end

-- Moves the entry at slot i to its place: up while it comes before its
-- parent, else down while the better of its children comes before it. One
-- walk serves both: an entry that went up comes before both children of its
-- new slot, so it never turns down.
local function heap_fix(h, i)
    local e, n = h[i], #h
    while true do
        local j = math_floor(i / 2)
        if i == 1 or not before(e, h[j]) then
            j = 2 * i
            if j < n and before(h[j + 1], h[j]) then j = j + 1 end
            if j > n or not before(h[j], e) then break end
        end
        heap_set(h, i, h[j])
        i = j
    end
    heap_set(h, i, e)
end

local function heap_remove(h, e)
    local i, n = e.slot, #h
    local last = h[n]
    h[n] = nil
    if i < n then
        heap_set(h, i, last)
        heap_fix(h, i)
    end
end

---------------------------------------------------------------------------
-- Filter entries: the C filter tree (mqtt.core) gives each distinct filter a
-- node id, and here each id has the heap of the entries registered with it.

local tree_new, tree_add, tree_remove, tree_match =
    core.filter_tree, core.tree_add, core.tree_remove, core.tree_match

local function filter_insert(r, e)
    local id = tree_add(r.tree, e.cond)
    local h = r.heaps[id]
    e.node = id
    if h then
        h[#h + 1] = e
        heap_fix(h, #h)
    else
        r.heaps[id] = { e }
        e.slot = 1
    end
end

local function filter_remove(r, e)
    local id = e.node
    local h = r.heaps[id]
    heap_remove(h, e)
    if h[1] == nil then r.heaps[id] = nil end
    tree_remove(r.tree, id)
end

-- The better of best and the best entry of heap h registered up to limit.
local function best_in(h, best, limit)
    local top = h[1]
    if top.seq <= limit then
        if not best or before(top, best) then return top end
        return best
    end
    -- Entries added while this packet was dispatched do not see it: look past them.
    for i = 2, #h do
        local e = h[i]
        if e.seq <= limit and (not best or before(e, best)) then best = e end
    end
    return best
end

-- Ids of the matching filters after the first, filled by tree_match; read
-- before any condition runs, so one table serves every router.
local matched = {}

-- The best entry of the n filters tree_match found (id, then matched[2..n]).
local function matched_best(r, n, id, limit)
    local heaps = r.heaps
    local h = heaps[id]
    local best = h[1]
    if n == 1 and best.seq <= limit then return best end
    best = best_in(h, nil, limit)
    for i = 2, n do best = best_in(heaps[matched[i]], best, limit) end
    return best
end

---------------------------------------------------------------------------
-- The router of one command.

-- Counts the changes of any router: a walk that sees it move knows that a
-- condition added or removed callbacks, and goes on with care.
local changes = 0

--- A router with no callbacks.
function M.new()
    return { head = {}, levels = 1, tree = tree_new(), heaps = {}, filters = 0, byfn = {} }
end

--- Adds a specific callback: cond is a function or a checked topic filter
-- string; seq must exceed every seq given before. Returns the entry.
function M.add(r, fn, cond, prio, seq)
    -- Every field the entry will have, so that none grows the table later;
    -- `same` chains the entries of one fn, newest first.
    local e = { false, fn = fn, cond = cond, prio = prio, seq = seq, same = r.byfn[fn],
        node = false, slot = false, dead = false }
    r.byfn[fn] = e
    changes = changes + 1
    if type(cond) == "string" then
        filter_insert(r, e)
        r.filters = r.filters + 1
    else
        list_insert(r, e)
    end
    return e
end

--- Removes every specific callback registered with fn; returns how many.
function M.remove(r, fn)
    local e, n = r.byfn[fn], 0
    if not e then return 0 end
    r.byfn[fn] = nil
    changes = changes + 1
    repeat
        e.dead = true
        if e.node then
            filter_remove(r, e)
            r.filters = r.filters - 1
        else
            list_remove(r, e)
        end
        n = n + 1
        e = e.same
    until not e
    return n
end

-- The rest of a walk after a condition changed the callbacks: e is where it
-- stands, `holds` what e's condition returned. A removed entry is never
-- chosen; one added since the walk began (seq above limit) is not considered.
local function careful(r, data, limit, best, e, holds)
    if holds and not e.dead then return e end
    e = e[1]
    while true do
        if best and (e == nil or before(best, e)) then
            if not best.dead then return best end
            -- A condition removed it: the next best ranks after every entry tried.
            local n, id = tree_match(r.tree, data.message.topic, matched)
            best = n > 0 and matched_best(r, n, id, limit) or nil
        elseif e == nil then
            return nil
        else
            if e.seq <= limit and not e.dead and e.cond(data) and not e.dead then return e end
            e = e[1]
        end
    end
end

--- The entry whose callback runs for data: among the entries registered up
-- to seq limit, the first in order whose condition holds (a filter holds for
-- a message whose topic it matches), or nil. Conditions run here; one may
-- add or remove callbacks: additions wait for the next packet, and a removed
-- callback is not chosen.
function M.first(r, data, limit)
    local best, m = nil, data.message
    if m and r.filters > 0 then
        local n, id = tree_match(r.tree, m.topic, matched)
        if n > 0 then best = matched_best(r, n, id, limit) end
    end
    local e, seen = r.head[1], changes
    -- Until a condition changes the callbacks, every entry linked is live
    -- and older than limit: the walk needs no other test.
    while e do
        -- before(best, e) written out: this runs for every packet.
        if best and (best.prio > e.prio or (best.prio == e.prio and best.seq < e.seq)) then
            return best
        end
        local holds = e.cond(data)
        if changes ~= seen then return careful(r, data, limit, best, e, holds) end
        if holds then return e end
        e = e[1]
    end
    return best
end

return M
