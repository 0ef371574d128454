-- spec/proxy.lua: a loopback TCP proxy for fault injection, between a client
-- and a real broker. It runs as a child Lua process (luasocket only), so it
-- keeps forwarding while the spec thread is blocked in connect() or not
-- dispatching, and is driven through a line protocol on a control port.
--
-- As a module (require("proxy")):
--   local p = proxy.start(target_port)   -- a proxy in front of 127.0.0.1:target_port
--   p.port                               -- where clients connect (127.0.0.1)
--   p:pass([dir])       forward normally again (clears stall, delay and split)
--   p:cut()             close every proxied connection now (both sides, FIN)
--   p:reset()           the same with RST (SO_LINGER 0)
--   p:stall(s, [dir])   stop forwarding (and reading) for s seconds (nil: until pass)
--   p:delay(ms, [dir])  hold each chunk ms milliseconds before forwarding it
--   p:split(on, [gap_ms], [dir])  forward one byte per write (TCP_NODELAY), gap_ms apart
--   p:refuse(on)        close new connections at once instead of proxying them
--   p:record(dir)       write each new connection's bytes to dir/conn-NNN-{up,down}.bin
--                       (as read from each side; nil stops recording)
--   p:drop(type, [dir]) discard the MQTT packets of that type ("PUBREC", ...) from
--                       now on (nil: stop discarding); the proxy follows the framing
--   p:packets([dir])    packets forwarded on the newest connection, by type name
--   p:stats()           {accepted=, active=, up_bytes=, down_bytes=, up_writes=, down_writes=}
--   p:stop()            ends the process (by its PID); proxy.stop_all() stops every one
-- dir is "up" (client to broker), "down" (broker to client) or nil for both;
-- settings apply to current and future connections alike.
--
-- As a program: lua5.x spec/proxy.lua serve TARGET_PORT OWNER_PID OWNER_START
-- binds two free 127.0.0.1 ports, prints "ready PORT CONTROL_PORT" and
-- serves until "quit" or until its owner process is gone.
--
-- Control protocol: one command per line, one reply line each, "ok ..." or
-- "err reason": pass [dir] | cut | reset | stall SECONDS|forever [dir] |
-- delay MS [dir] | split on|off [GAP_MS] [dir] | refuse on|off | record DIR|off |
-- drop TYPE|off [dir] | packets up|down | stats | quit.
-- Must not: listen or connect anywhere but 127.0.0.1, or outlive its owner.

local socket = require("socket")
local compat = require("compat")

local HOST = "127.0.0.1"
-- MQTT control packet types by the high nibble of their first byte.
local PACKET_NAMES = { "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
    "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT" }
local PACKET_TYPES = {}
for i, name in ipairs(PACKET_NAMES) do PACKET_TYPES[name] = i end
local MAX_BUFFER = 256 * 1024   -- bytes held per direction before reading stops
local READ_SIZE = 16 * 1024

---------------------------------------------------------------------------
-- The server (child process)
---------------------------------------------------------------------------

local function proc_start_time(pid)
    local f = io.open("/proc/" .. pid .. "/stat", "rb")
    if not f then return nil end
    local stat = compat.read_all(f)
    f:close()
    local rest = stat:match("^.*%) (.*)$")
    if not rest then return nil end
    local fields = {}
    for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
    if fields[1] == "Z" or fields[1] == "X" then return nil end
    return fields[20]
end

local function serve(target_port, owner_pid, owner_start)
    target_port = assert(tonumber(target_port), "target port")
    local now = socket.gettime

    local listener = assert(socket.bind(HOST, 0))
    local control = assert(socket.bind(HOST, 0))
    listener:settimeout(0)
    control:settimeout(0)
    local _, port = listener:getsockname()
    local _, ctl_port = control:getsockname()

    -- Per direction settings, shared by every connection.
    local dirs = {
        up = { stall_until = 0, delay = 0, split = false, gap = 0 },
        down = { stall_until = 0, delay = 0, split = false, gap = 0 },
    }
    local refuse = false
    local record_dir = nil  -- when set: each connection's bytes go to files there
    local drops = { up = {}, down = {} }   -- packet types discarded, per direction
    local stats = { accepted = 0, up_bytes = 0, down_bytes = 0, up_writes = 0, down_writes = 0 }
    local pairs_list = {}   -- proxied connections: {a = client side, b = broker side, up = flow, down = flow}
    local controls = {}     -- control connections: {sock =, buf =}
    local running = true

    local function new_flow(src, dst)
        return { src = src, dst = dst, chunks = {}, first = 1, last = 0, bytes = 0,
                 next_write = 0, eof = false, counts = {},
                 parser = { state = "type", drop = false, rl = 0, mult = 1, left = 0 } }
    end

    -- Follows the MQTT framing of a flow: counts the packets it forwards by
    -- type and removes those of the types dropped in that direction.
    -- Returns the bytes to forward.
    local function filter(f, name, data)
        local ps, dropping = f.parser, drops[name]
        local out, run_start = {}, nil
        local pos, n = 1, #data
        while pos <= n do
            local start = pos
            if ps.state == "type" then
                local t = compat.rshift(data:byte(pos), 4)
                ps.drop = dropping[t] or false
                if not ps.drop then f.counts[t] = (f.counts[t] or 0) + 1 end
                ps.rl, ps.mult, ps.state = 0, 1, "len"
                pos = pos + 1
            elseif ps.state == "len" then
                local b = data:byte(pos)
                ps.rl = ps.rl + (b % 128) * ps.mult
                ps.mult = ps.mult * 128
                pos = pos + 1
                if b < 128 then
                    ps.state = ps.rl == 0 and "type" or "body"
                    ps.left = ps.rl
                end
            else
                local take = math.min(ps.left, n - pos + 1)
                pos = pos + take
                ps.left = ps.left - take
                if ps.left == 0 then ps.state = "type" end
            end
            if ps.drop then
                if run_start then
                    out[#out + 1] = data:sub(run_start, start - 1)
                    run_start = nil
                end
            elseif not run_start then
                run_start = start
            end
        end
        if run_start then out[#out + 1] = data:sub(run_start, n) end
        return table.concat(out)
    end

    local function close_pair(p, rst)
        if p.closed then return end
        p.closed = true
        for _, f in ipairs({ p.up, p.down }) do
            if f.file then f.file:close() end
        end
        for _, s in ipairs({ p.a, p.b }) do
            if rst then pcall(s.setoption, s, "linger", { on = true, timeout = 0 }) end
            s:close()
        end
    end

    local function accept_client()
        local a = listener:accept()
        if not a then return end
        stats.accepted = stats.accepted + 1
        if refuse then
            a:close()
            return
        end
        local b = socket.tcp()
        b:settimeout(2)
        if not b:connect(HOST, target_port) then
            b:close()
            a:close()
            return
        end
        a:settimeout(0)
        b:settimeout(0)
        a:setoption("tcp-nodelay", true)
        b:setoption("tcp-nodelay", true)
        local p = { a = a, b = b }
        p.up = new_flow(a, b)
        p.down = new_flow(b, a)
        if record_dir then
            local base = ("%s/conn-%03d-"):format(record_dir, stats.accepted)
            p.up.file = io.open(base .. "up.bin", "wb")
            p.down.file = io.open(base .. "down.bin", "wb")
        end
        pairs_list[#pairs_list + 1] = p
    end

    local function parse_dir(word)
        if word == nil or word == "both" then return { "up", "down" } end
        if word == "up" or word == "down" then return { word } end
        return nil
    end

    local function command(line)
        local words = {}
        for w in line:gmatch("%S+") do words[#words + 1] = w end
        local cmd = words[1]
        if cmd == "pass" then
            local ds = parse_dir(words[2])
            if not ds then return "err bad direction" end
            for _, d in ipairs(ds) do
                dirs[d].stall_until, dirs[d].delay, dirs[d].split, dirs[d].gap = 0, 0, false, 0
            end
            return "ok"
        elseif cmd == "cut" or cmd == "reset" then
            local n = 0
            for _, p in ipairs(pairs_list) do
                if not p.closed then n = n + 1 end
                close_pair(p, cmd == "reset")
            end
            pairs_list = {}
            return "ok " .. n
        elseif cmd == "stall" then
            local ds = parse_dir(words[3])
            local secs = words[2] == "forever" and math.huge or tonumber(words[2])
            if not secs or secs < 0 or not ds then return "err usage: stall SECONDS|forever [dir]" end
            for _, d in ipairs(ds) do dirs[d].stall_until = now() + secs end
            return "ok"
        elseif cmd == "delay" then
            local ms, ds = tonumber(words[2]), parse_dir(words[3])
            if not ms or ms < 0 or not ds then return "err usage: delay MS [dir]" end
            for _, d in ipairs(ds) do dirs[d].delay = ms / 1000 end
            return "ok"
        elseif cmd == "split" then
            local on = words[2] == "on"
            if words[2] ~= "on" and words[2] ~= "off" then return "err usage: split on|off" end
            local gap, dword = tonumber(words[3]), words[3]
            if gap then dword = words[4] end
            local ds = parse_dir(dword)
            if not ds then return "err bad direction" end
            for _, d in ipairs(ds) do
                dirs[d].split = on
                dirs[d].gap = (gap or 0) / 1000
            end
            return "ok"
        elseif cmd == "drop" then
            local ds = parse_dir(words[3])
            local t = PACKET_TYPES[words[2] or ""] or tonumber(words[2] or "")
            if not ds or not (t or words[2] == "off") then
                return "err usage: drop TYPE|off [dir]"
            end
            for _, d in ipairs(ds) do
                if t then drops[d][t] = true else drops[d] = {} end
            end
            return "ok"
        elseif cmd == "packets" then
            -- Packets forwarded on the newest connection, in direction words[2].
            local name = words[2] or "up"
            if name ~= "up" and name ~= "down" then return "err usage: packets up|down" end
            local p = pairs_list[#pairs_list]
            if p and p.closed then p = nil end
            local parts = {}
            if p then
                for t, n in pairs(p[name].counts) do
                    parts[#parts + 1] = (PACKET_NAMES[t] or tostring(t)) .. "=" .. n
                end
            end
            return "ok " .. (p and "live" or "none") .. " " .. table.concat(parts, " ")
        elseif cmd == "record" then
            record_dir = words[2] ~= "off" and words[2] or nil
            return "ok"
        elseif cmd == "refuse" then
            refuse = words[2] == "on"
            return "ok"
        elseif cmd == "stats" then
            local active = 0
            for _, p in ipairs(pairs_list) do if not p.closed then active = active + 1 end end
            return ("ok accepted=%d active=%d up_bytes=%d down_bytes=%d up_writes=%d down_writes=%d")
                :format(stats.accepted, active, stats.up_bytes, stats.down_bytes,
                        stats.up_writes, stats.down_writes)
        elseif cmd == "quit" then
            running = false
            return "ok"
        end
        return "err unknown command " .. tostring(cmd)
    end

    local function control_read(c)
        local data, err, partial = c.sock:receive(4096)
        local got = data or partial
        if got and #got > 0 then c.buf = c.buf .. got end
        while true do
            local line, rest = c.buf:match("^([^\n]*)\n(.*)$")
            if not line then break end
            c.buf = rest
            local reply = command(line)
            c.sock:settimeout(2)
            c.sock:send(reply .. "\n")
            c.sock:settimeout(0)
        end
        if err == "closed" then
            c.sock:close()
            c.closed = true
        end
    end

    -- Reads what src has into the flow's queue; marks eof on close.
    local function flow_read(name, f)
        local data, err, partial = f.src:receive(READ_SIZE)
        local got = data or partial
        if got and #got > 0 and f.file then
            f.file:write(got)
            f.file:flush()
        end
        if got and #got > 0 then got = filter(f, name, got) end
        if got and #got > 0 then
            f.last = f.last + 1
            f.chunks[f.last] = { data = got, pos = 1, due = now() + dirs[name].delay }
            f.bytes = f.bytes + #got
        end
        if err == "closed" then f.eof = true end
    end

    -- Writes what is due; returns false when the connection failed.
    local function flow_write(name, f)
        local d = dirs[name]
        local t = now()
        while f.first <= f.last do
            local ch = f.chunks[f.first]
            if ch.due > t or t < d.stall_until or t < f.next_write then return true end
            local j = d.split and ch.pos or #ch.data
            local last, err, partial = f.dst:send(ch.data, ch.pos, j)
            local sent_to = last or partial or (ch.pos - 1)
            if sent_to >= ch.pos then
                stats[name .. "_writes"] = stats[name .. "_writes"] + 1
                stats[name .. "_bytes"] = stats[name .. "_bytes"] + (sent_to - ch.pos + 1)
                f.bytes = f.bytes - (sent_to - ch.pos + 1)
                ch.pos = sent_to + 1
            end
            if err and err ~= "timeout" then return false end
            if ch.pos > #ch.data then
                f.chunks[f.first] = nil
                f.first = f.first + 1
            end
            if err == "timeout" then return true end
            if d.split then
                f.next_write = d.gap > 0 and (now() + d.gap) or 0
                if d.gap > 0 then return true end
            end
        end
        return true
    end

    io.stdout:write(("ready %d %d\n"):format(port, ctl_port))
    io.stdout:flush()

    local next_owner_check = 0
    while running do
        local t = now()
        if t >= next_owner_check then
            next_owner_check = t + 0.5
            if owner_pid and proc_start_time(owner_pid) ~= owner_start then break end
        end
        local recvt, sendt = { listener, control }, {}
        local owner_of = {}
        local timeout = 0.25
        local function wake_at(at)
            if at - t < timeout then timeout = math.max(0, at - t) end
        end
        for _, c in ipairs(controls) do
            if not c.closed then recvt[#recvt + 1] = c.sock end
        end
        local live = {}
        for _, p in ipairs(pairs_list) do
            if not p.closed then
                live[#live + 1] = p
                for _, name in ipairs({ "up", "down" }) do
                    local f, d = p[name], dirs[name]
                    local stalled = t < d.stall_until
                    if stalled then wake_at(d.stall_until) end
                    if not stalled and not f.eof and f.bytes < MAX_BUFFER then
                        recvt[#recvt + 1] = f.src
                        owner_of[f.src] = owner_of[f.src] or {}
                        owner_of[f.src].read = { p, name, f }
                    end
                    if not stalled and f.first <= f.last then
                        local ch = f.chunks[f.first]
                        local at = math.max(ch.due, f.next_write)
                        if at <= t then
                            sendt[#sendt + 1] = f.dst
                            owner_of[f.dst] = owner_of[f.dst] or {}
                            owner_of[f.dst].write = { p, name, f }
                        else
                            wake_at(at)
                        end
                    end
                end
            end
        end
        pairs_list = live
        local readable, writable = socket.select(recvt, sendt, timeout)
        for _, s in ipairs(readable) do
            if s == listener then
                accept_client()
            elseif s == control then
                local c = control:accept()
                if c then
                    c:settimeout(0)
                    controls[#controls + 1] = { sock = c, buf = "" }
                end
            elseif owner_of[s] and owner_of[s].read then
                local p, name, f = compat.unpack(owner_of[s].read)
                if not p.closed then flow_read(name, f) end
            else
                for _, c in ipairs(controls) do
                    if c.sock == s and not c.closed then control_read(c) end
                end
            end
        end
        for _, s in ipairs(writable) do
            local w = owner_of[s] and owner_of[s].write
            if w and not w[1].closed then
                if not flow_write(w[2], w[3]) then close_pair(w[1]) end
            end
        end
        -- A side that closed ends the pair once what it sent has been forwarded.
        for _, p in ipairs(pairs_list) do
            if not p.closed and ((p.up.eof and p.up.first > p.up.last) or
                                 (p.down.eof and p.down.first > p.down.last)) then
                close_pair(p)
            end
        end
        local open = {}
        for _, c in ipairs(controls) do if not c.closed then open[#open + 1] = c end end
        controls = open
    end
    for _, p in ipairs(pairs_list) do close_pair(p) end
    listener:close()
    control:close()
end

if select(1, ...) == "serve" then
    local _, target, owner, start = ...
    serve(target, tonumber(owner), start)
    os.exit(0)
end

---------------------------------------------------------------------------
-- The module (spec side)
---------------------------------------------------------------------------

local helpers = require("helpers")

local proxy = {}
local Proxy = {}
Proxy.__index = Proxy

local all = {}   -- every proxy started and not yet stopped

-- Closes inherited descriptors in the child (luasocket sockets are not
-- close-on-exec): the same bash prefix helpers uses for its children.
local CLOSE_FDS = 'for f in /proc/$BASHPID/fd/*; do n=${f##*/}; ' ..
                  '[ "$n" -gt 2 ] && exec {n}>&-; done; '

local function self_pid()
    local f = assert(io.open("/proc/self/stat", "rb"))
    local pid = tonumber(compat.read_all(f):match("^(%d+)"))
    f:close()
    return pid
end

local function script_path()
    local path = compat.searchpath("proxy", package.path)
    assert(path, "spec/proxy.lua not found in package.path")
    return path
end

--- Starts a proxy in front of 127.0.0.1:target_port; returns it once it listens.
function proxy.start(target_port)
    local q = helpers.quote
    local owner = self_pid()
    local dir = helpers.tmpdir("zmqtt-proxy")
    local out = dir .. "/proxy.out"
    local cmd = "exec env LUA_PATH=" .. q(package.path) .. " LUA_CPATH=" .. q(package.cpath) ..
                " " .. helpers.LUA .. " " .. q(script_path()) .. " serve " .. tonumber(target_port) ..
                " " .. owner .. " " .. proc_start_time(owner)
    local p = assert(io.popen("bash -c " .. q(CLOSE_FDS .. cmd) .. " </dev/null >" .. q(out) ..
                              " 2>&1 & echo $!", "r"))
    local pid = tonumber(compat.read_all(p):match("%d+"))
    p:close()
    assert(pid, "could not start the proxy")
    local self = setmetatable({ pid = pid, start = proc_start_time(pid), dir = dir, out = out,
                                target = target_port }, Proxy)
    local pidfile = os.getenv("ZMQTT_TEST_PIDFILE")
    if pidfile and self.start then
        local f = io.open(pidfile, "a")
        if f then
            f:write(pid, " ", self.start, " ", dir, "\n")
            f:close()
        end
    end
    all[self] = true
    local ready = helpers.wait_until(function()
        local text = helpers.read_file(out) or ""
        local port, ctl = text:match("ready (%d+) (%d+)")
        if port then
            self.port, self.ctl_port = tonumber(port), tonumber(ctl)
            return true
        end
        return not self:running()
    end, 10)
    if not (ready and self.port) then
        local text = helpers.read_file(out) or ""
        self:stop()
        error("the proxy did not start: " .. text, 2)
    end
    self.ctl = assert(socket.connect(HOST, self.ctl_port))
    self.ctl:settimeout(5)
    return self
end

--- Whether the proxy process still runs (same PID and start time).
function Proxy:running()
    return self.start ~= nil and proc_start_time(self.pid) == self.start
end

--- Sends one control line; returns the rest of the "ok" reply, raises on "err".
function Proxy:command(line)
    assert(self.ctl, "the proxy is stopped")
    assert(self.ctl:send(line .. "\n"))
    local reply, err = self.ctl:receive("*l")
    assert(reply, "no reply from the proxy to '" .. line .. "': " .. tostring(err))
    local rest = reply:match("^ok ?(.*)$")
    assert(rest, "proxy: '" .. line .. "' -> " .. reply)
    return rest
end

local function dir_word(dir)
    assert(dir == nil or dir == "up" or dir == "down" or dir == "both", "bad direction")
    return dir and (" " .. dir) or ""
end

function Proxy:pass(dir) self:command("pass" .. dir_word(dir)) end
function Proxy:cut() return tonumber(self:command("cut")) end
function Proxy:reset() return tonumber(self:command("reset")) end
function Proxy:refuse(on) self:command("refuse " .. (on and "on" or "off")) end

function Proxy:stall(seconds, dir)
    self:command("stall " .. (seconds and ("%.3f"):format(seconds) or "forever") .. dir_word(dir))
end

function Proxy:delay(ms, dir)
    self:command(("delay %d"):format(ms) .. dir_word(dir))
end

function Proxy:split(on, gap_ms, dir)
    self:command("split " .. (on and "on" or "off") .. (gap_ms and (" " .. gap_ms) or "") ..
                 dir_word(dir))
end

function Proxy:record(dir)
    assert(dir == nil or not dir:find("%s"), "no spaces in the record directory")
    self:command("record " .. (dir or "off"))
end

--- Discards every packet of type `name` ("PUBREC", ...) read from then on in
-- direction dir (default both); name nil stops dropping.
function Proxy:drop(name, dir)
    self:command("drop " .. (name or "off") .. dir_word(dir))
end

--- Packets forwarded so far on the newest connection in direction dir ("up"
-- or "down"): {PUBREC = n, ...}, plus live = whether that connection is open.
function Proxy:packets(dir)
    local rest = self:command("packets " .. (dir or "up"))
    local t = { live = rest:match("^live") ~= nil }
    for k, v in rest:gmatch("(%u+)=(%d+)") do t[k] = tonumber(v) end
    return t
end

function Proxy:stats()
    local st = {}
    for k, v in self:command("stats"):gmatch("([%w_]+)=(%d+)") do st[k] = tonumber(v) end
    return st
end

--- Ends the proxy: "quit", then SIGTERM/SIGKILL by PID if it lingers.
function Proxy:stop()
    if self.ctl then
        pcall(self.command, self, "quit")
        self.ctl:close()
        self.ctl = nil
    end
    local gone = helpers.wait_until(function() return not self:running() end, 2)
    for _, sig in ipairs({ "TERM", "KILL" }) do
        if gone then break end
        if self:running() then os.execute("kill -s " .. sig .. " " .. self.pid .. " 2>/dev/null") end
        gone = helpers.wait_until(function() return not self:running() end, 2)
    end
    if self.dir and self.dir:match("/zmqtt[%w%-]*%.%w+$") and not os.getenv("ZMQTT_KEEP_DIRS") then
        helpers.run("rm -rf " .. helpers.quote(self.dir))
        self.dir = nil
    end
    all[self] = nil
    return gone
end

--- Stops every proxy still running.
function proxy.stop_all()
    for p in pairs(all) do p:stop() end
end

helpers.at_exit(proxy.stop_all)

return proxy
