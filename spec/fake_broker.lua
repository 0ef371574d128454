-- spec/fake_broker.lua: a scripted MQTT 3.1.1 broker for the corner cases a
-- real broker never produces (lost acks, malformed packets, cuts mid-flow).
-- It listens on a free 127.0.0.1 port and is driven step by step by the spec,
-- in the spec's own thread (the client under test does its I/O in its own C
-- thread). It has no logic of its own: it reads, decodes and sends what it is told.
--
-- Usage:
--   local FakeBroker = require("fake_broker")
--   local fb = FakeBroker.new()                  -- fb.port, fb.host; fb:close() at the end
--   client:connect_async{host = fb.host, port = fb.port, keepalive = 60}
--   local c = fb:handshake()                      -- accept + CONNECT + CONNACK(0)
--   local p = fb:expect(FakeBroker.PUBLISH)       -- errors on anything else
--   fb:send(FakeBroker.puback(p.packet_id))
--   fb:close_client()                             -- or {reset = true} for RST
-- client:connect() blocks the spec thread until CONNACK, which this broker
-- can only send when the spec thread runs: use connect_async with it.
--
-- Instance methods (timeouts in seconds, default fb.timeout = 5):
--   fb:accept(timeout)             -> socket | nil, "timeout"  (replaces any previous
--                                     connection, which is closed)
--   fb:read_packet(timeout)        -> packet | nil, "timeout" | "closed" | "malformed: ..."
--                                     (partial data stays buffered across timeouts)
--   fb:expect(type, timeout, opts) -> packet; raises on timeout, close or any other
--                                     type. PINGREQ is skipped (and answered with
--                                     PINGRESP) unless opts.skip_ping == false or
--                                     type is PINGREQ; see fb.skip_ping, fb.answer_ping.
--   fb:expect_nothing(duration)    -> true; raises if a packet (other than PINGREQ)
--                                     arrives or the connection closes
--   fb:expect_closed(timeout)      -> true, packets (PINGREQ/DISCONNECT seen before
--                                     the close); raises on anything else or timeout
--   fb:handshake(opts)             -> CONNECT packet; accepts, reads CONNECT, sends
--                                     CONNACK(opts.session_present, opts.return_code)
--                                     unless opts.connack == false
--   fb:send(bytes, timeout)        -> true | nil, err, bytes_sent
--   fb:close_client(opts)          cuts the connection (opts.reset: RST, not FIN)
--   fb:close()                     closes everything; idempotent; also <close> (5.4)
--   fb.received                    every packet read, in order; fb.pings, fb.accepted
--
-- A packet is {type = 0x30, name = "PUBLISH", flags = low nibble, body = bytes
-- after the fixed header, raw = whole packet} plus, per type:
--   CONNECT      protocol_name, protocol_level, connect_flags (the flags byte),
--                keepalive, client_id, clean_session, will (bool), will_qos,
--                will_retain, will_topic, will_payload, username, password
--   CONNACK      session_present, return_code
--   PUBLISH      topic, payload, qos, dup, retain, packet_id (nil for QoS 0)
--   PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK   packet_id
--   SUBSCRIBE    packet_id, topics = {{filter, qos, filter = , qos = }, ...}
--   SUBACK       packet_id, codes = {...}
--   UNSUBSCRIBE  packet_id, filters = {...}
--   PINGREQ, PINGRESP, DISCONNECT  nothing more
--
-- Module functions: builders returning exact bytes (connack, publish, puback,
-- pubrec, pubrel, pubcomp, suback, unsuback, pingresp, and client-side connect,
-- subscribe, unsubscribe, pingreq, disconnect), packet(first_byte, body),
-- encode_length(n), decode(buf, pos) -> packet, next_pos | nil, why,
-- type_name(t), describe(packet), hex(bytes), wrap(socket) (the same reading and
-- sending methods over any connected luasocket, e.g. a raw client of mosquitto).

local socket = require("socket")
local compat = require("compat")

local band, bor, lshift, rshift = compat.band, compat.bor, compat.lshift, compat.rshift

local FakeBroker = {}
FakeBroker.__index = FakeBroker

local TYPES = {
    CONNECT = 0x10, CONNACK = 0x20, PUBLISH = 0x30, PUBACK = 0x40, PUBREC = 0x50,
    PUBREL = 0x60, PUBCOMP = 0x70, SUBSCRIBE = 0x80, SUBACK = 0x90, UNSUBSCRIBE = 0xA0,
    UNSUBACK = 0xB0, PINGREQ = 0xC0, PINGRESP = 0xD0, DISCONNECT = 0xE0,
}
local NAMES = {}
for name, t in pairs(TYPES) do
    FakeBroker[name] = t
    NAMES[t] = name
end

local MAX_REMAINING = 268435455
local DEFAULT_TIMEOUT = 5

--- The name of a packet type ("PUBLISH"), or a hex string for an unknown one.
function FakeBroker.type_name(t)
    return NAMES[t] or ("0x%02X"):format(t or 0)
end

-- Accepts a type as a number or as its name.
local function type_of(t)
    if type(t) == "string" then
        return assert(TYPES[t:upper()], "unknown packet type " .. t)
    end
    return t
end

--- Hex dump of at most `max` bytes (default 64) of a string.
function FakeBroker.hex(s, max)
    max = max or 64
    local shown = s:sub(1, max):gsub(".", function(c)
        return ("%02x "):format(c:byte())
    end)
    return shown:gsub(" $", "") .. (#s > max and (" ... (%d bytes)"):format(#s) or "")
end

---------------------------------------------------------------------------
-- Encoding
---------------------------------------------------------------------------

--- The variable-length "remaining length" encoding of n (1 to 4 bytes).
function FakeBroker.encode_length(n)
    assert(compat.is_integer(n) and n >= 0 and n <= MAX_REMAINING,
           "remaining length out of range: " .. tostring(n))
    local out = {}
    repeat
        local digit = n % 128
        n = compat.idiv(n, 128)
        if n > 0 then
            digit = bor(digit, 0x80)
        end
        out[#out + 1] = string.char(digit)
    until n == 0
    return table.concat(out)
end
local encode_length = FakeBroker.encode_length

--- A whole packet: first byte (type | flags), remaining length, body.
function FakeBroker.packet(first, body)
    body = body or ""
    return string.char(first) .. encode_length(#body) .. body
end
local packet = FakeBroker.packet

local str = compat.str16    -- string.pack(">s2", s)
local u16 = compat.u16      -- string.pack(">I2", n)

--- CONNACK. session_present: boolean (or 0/1); rc: return code, default 0.
function FakeBroker.connack(session_present, rc)
    local sp = (session_present == true or session_present == 1) and 1 or 0
    return packet(0x20, string.char(sp, rc or 0))
end

--- PUBLISH from {topic, payload = "", qos = 0, retain, dup, packet_id}
-- (packet_id is required for QoS 1 and 2).
function FakeBroker.publish(p)
    local qos = p.qos or 0
    local flags = bor(bor(p.dup and 0x08 or 0, lshift(qos, 1)), p.retain and 0x01 or 0)
    local id = ""
    if qos > 0 then
        id = u16(assert(p.packet_id, "publish: QoS > 0 needs packet_id"))
    end
    return packet(bor(0x30, flags), str(p.topic) .. id .. (p.payload or ""))
end

function FakeBroker.puback(id) return packet(0x40, u16(id)) end
function FakeBroker.pubrec(id) return packet(0x50, u16(id)) end
function FakeBroker.pubrel(id) return packet(0x62, u16(id)) end
function FakeBroker.pubcomp(id) return packet(0x70, u16(id)) end
function FakeBroker.unsuback(id) return packet(0xB0, u16(id)) end
function FakeBroker.pingresp() return packet(0xD0, "") end

--- SUBACK with one return code per filter (default {0}; 0x80 = refused).
function FakeBroker.suback(id, codes)
    return packet(0x90, u16(id) .. string.char(compat.unpack(codes or { 0 })))
end

-- Client-side packets, for testing the decoder and for raw clients.

--- CONNECT from {client_id = "", keepalive = 60, clean_session = true,
-- will = {topic, payload, qos, retain}, username, password,
-- protocol_name = "MQTT", protocol_level = 4}.
function FakeBroker.connect(c)
    c = c or {}
    local flags = (c.clean_session ~= false) and 0x02 or 0
    local tail = {}
    if c.will then
        flags = bor(bor(bor(flags, 0x04), lshift(c.will.qos or 0, 3)),
                    c.will.retain and 0x20 or 0)
        tail[#tail + 1] = str(c.will.topic) .. str(c.will.payload or "")
    end
    if c.username then
        flags = bor(flags, 0x80)
        tail[#tail + 1] = str(c.username)
    end
    if c.password then
        flags = bor(flags, 0x40)
        tail[#tail + 1] = str(c.password)
    end
    return packet(0x10, str(c.protocol_name or "MQTT") ..
                        string.char(c.protocol_level or 4, flags) ..
                        u16(c.keepalive or 60) .. str(c.client_id or "") ..
                        table.concat(tail))
end

--- SUBSCRIBE from a packet id and {{filter, qos}, ...}.
function FakeBroker.subscribe(id, topics)
    local parts = { u16(id) }
    for _, t in ipairs(topics) do
        parts[#parts + 1] = str(t[1] or t.filter) .. string.char(t[2] or t.qos or 0)
    end
    return packet(0x82, table.concat(parts))
end

--- UNSUBSCRIBE from a packet id and a list of filters.
function FakeBroker.unsubscribe(id, filters)
    local parts = { u16(id) }
    for _, f in ipairs(filters) do
        parts[#parts + 1] = str(f)
    end
    return packet(0xA2, table.concat(parts))
end

function FakeBroker.pingreq() return packet(0xC0, "") end
function FakeBroker.disconnect() return packet(0xE0, "") end

---------------------------------------------------------------------------
-- Decoding
---------------------------------------------------------------------------

local MALFORMED = {}   -- error tag raised inside body parsers

local function malformed(why)
    error({ [MALFORMED] = why }, 0)
end

-- A cursor over a packet body.
local function cursor(body)
    local pos = 1
    local c = {}
    function c.left()
        return #body - pos + 1
    end
    function c.bytes(n)
        if c.left() < n then
            malformed(("truncated: need %d bytes, %d left"):format(n, c.left()))
        end
        local s = body:sub(pos, pos + n - 1)
        pos = pos + n
        return s
    end
    function c.u8()
        return c.bytes(1):byte()
    end
    function c.u16()
        return compat.get_u16(c.bytes(2))
    end
    function c.str()
        return c.bytes(c.u16())
    end
    function c.rest()
        return c.bytes(c.left())
    end
    function c.done()
        if c.left() ~= 0 then
            malformed(("%d unexpected trailing bytes"):format(c.left()))
        end
    end
    return c
end

local parsers = {}

parsers[0x10] = function(p, c)
    p.protocol_name = c.str()
    p.protocol_level = c.u8()
    local f = c.u8()
    p.connect_flags = f
    p.keepalive = c.u16()
    p.client_id = c.str()
    p.reserved_flag = band(f, 0x01) ~= 0
    p.clean_session = band(f, 0x02) ~= 0
    p.will = band(f, 0x04) ~= 0
    p.will_qos = band(rshift(f, 3), 0x03)
    p.will_retain = band(f, 0x20) ~= 0
    if p.will then
        p.will_topic = c.str()
        p.will_payload = c.str()
    end
    if band(f, 0x80) ~= 0 then
        p.username = c.str()
    end
    if band(f, 0x40) ~= 0 then
        p.password = c.str()
    end
    c.done()
end

parsers[0x20] = function(p, c)
    p.session_present = band(c.u8(), 0x01) ~= 0
    p.return_code = c.u8()
    c.done()
end

parsers[0x30] = function(p, c)
    p.qos = band(rshift(p.flags, 1), 0x03)
    p.dup = band(p.flags, 0x08) ~= 0
    p.retain = band(p.flags, 0x01) ~= 0
    if p.qos == 3 then
        malformed("PUBLISH with QoS 3")
    end
    p.topic = c.str()
    if p.qos > 0 then
        p.packet_id = c.u16()
    end
    p.payload = c.rest()
end

local function id_only(p, c)
    p.packet_id = c.u16()
    c.done()
end
parsers[0x40], parsers[0x50], parsers[0x60], parsers[0x70], parsers[0xB0] =
    id_only, id_only, id_only, id_only, id_only

parsers[0x80] = function(p, c)
    p.packet_id = c.u16()
    p.topics = {}
    repeat
        local filter = c.str()
        local qos = c.u8()
        p.topics[#p.topics + 1] = { filter, qos, filter = filter, qos = qos }
    until c.left() == 0
end

parsers[0x90] = function(p, c)
    p.packet_id = c.u16()
    p.codes = { c.rest():byte(1, -1) }
end

parsers[0xA0] = function(p, c)
    p.packet_id = c.u16()
    p.filters = {}
    repeat
        p.filters[#p.filters + 1] = c.str()
    until c.left() == 0
end

local function empty(_, c)
    c.done()
end
parsers[0xC0], parsers[0xD0], parsers[0xE0] = empty, empty, empty

-- Decodes the fixed header at pos: first byte, remaining length, header size;
-- or nil, "incomplete" / "malformed: ...".
local function decode_header(buf, pos)
    local value, mult = 0, 1
    for i = 1, 4 do
        local b = buf:byte(pos + i)
        if not b then
            return nil, "incomplete"
        end
        value = value + (b % 128) * mult
        if b < 128 then
            return buf:byte(pos), value, i + 1
        end
        mult = mult * 128
    end
    return nil, "malformed: remaining length longer than 4 bytes"
end

-- Decodes one body; returns the packet, or nil, "malformed: ..." and the packet.
local function decode_body(first, body, raw)
    local t = band(first, 0xF0)
    local p = { type = t, name = FakeBroker.type_name(t), flags = band(first, 0x0F),
                body = body, raw = raw }
    local parse = parsers[t]
    if not parse then
        return nil, "malformed: reserved packet type " .. FakeBroker.type_name(t), p
    end
    local ok, err = pcall(parse, p, cursor(body))
    if not ok then
        if type(err) == "table" and err[MALFORMED] then
            return nil, "malformed: " .. p.name .. " " .. err[MALFORMED], p
        end
        error(err, 0)
    end
    return p
end

--- Decodes the packet starting at buf[pos] (default 1). Returns the packet and
-- the position after it, or nil and "incomplete" (more bytes needed) or
-- "malformed: ..." (plus the partly decoded packet when the header was fine).
function FakeBroker.decode(buf, pos)
    pos = pos or 1
    local first, len, hlen = decode_header(buf, pos)
    if not first then
        return nil, len
    end
    local stop = pos + hlen + len
    if #buf < stop - 1 then
        return nil, "incomplete"
    end
    local p, err, partial = decode_body(first, buf:sub(pos + hlen, stop - 1),
                                        buf:sub(pos, stop - 1))
    if not p then
        return nil, err, partial
    end
    return p, stop
end

--- A one-line description of a packet, for error messages.
function FakeBroker.describe(p)
    local fields = {}
    for _, k in ipairs({ "client_id", "topic", "qos", "dup", "retain", "packet_id",
                         "return_code", "session_present" }) do
        if p[k] ~= nil then
            fields[#fields + 1] = k .. "=" .. tostring(p[k])
        end
    end
    if p.payload then
        fields[#fields + 1] = #p.payload .. " payload bytes"
    end
    return ("%s(%s) [%s]"):format(p.name, table.concat(fields, ", "),
                                  FakeBroker.hex(p.raw or "", 32))
end
local describe = FakeBroker.describe

---------------------------------------------------------------------------
-- The broker
---------------------------------------------------------------------------

--- Listens on 127.0.0.1 (opts.port, default a free one). opts: timeout
-- (default 5 s), skip_ping (default true), answer_ping (default true).
function FakeBroker.new(opts)
    opts = opts or {}
    local server = assert(socket.bind("127.0.0.1", opts.port or 0))
    local _, port = server:getsockname()
    return setmetatable({
        host = "127.0.0.1",
        port = tonumber(port),
        server = server,
        client = nil,
        buf = "",
        timeout = opts.timeout or DEFAULT_TIMEOUT,
        skip_ping = opts.skip_ping ~= false,
        answer_ping = opts.answer_ping ~= false,
        received = {},
        pings = 0,
        accepted = 0,
    }, FakeBroker)
end

--- The reading and sending methods over an already connected luasocket (a raw
-- client talking to mosquitto, say). PINGREQ is neither skipped nor answered.
function FakeBroker.wrap(sock, opts)
    opts = opts or {}
    return setmetatable({
        host = "127.0.0.1", client = sock, buf = "", timeout = opts.timeout or DEFAULT_TIMEOUT,
        skip_ping = false, answer_ping = false, received = {}, pings = 0, accepted = 1,
    }, FakeBroker)
end

--- Accepts one connection (closing the previous one, if any).
function FakeBroker:accept(timeout)
    assert(self.server, "fake broker: not listening")
    self.server:settimeout(timeout or self.timeout)
    local c, err = self.server:accept()
    if not c then
        return nil, err
    end
    self:close_client()
    c:setoption("tcp-nodelay", true)
    self.client = c
    self.accepted = self.accepted + 1
    return c
end

--- Whether a connection is held.
function FakeBroker:connected()
    return self.client ~= nil
end

-- Makes self.buf hold at least n bytes; true, or nil and "timeout"/"closed".
local function fill(self, n, deadline)
    while #self.buf < n do
        local c = self.client
        if not c then
            return nil, "closed"
        end
        c:settimeout(math.max(0, deadline - socket.gettime()))
        local data, err, partial = c:receive(n - #self.buf)
        local got = data or partial
        if got and #got > 0 then
            self.buf = self.buf .. got
        end
        if err == "closed" then
            return nil, "closed"
        elseif err and socket.gettime() >= deadline then
            return nil, err
        end
    end
    return true
end

--- Reads one packet (see the top of this file), waiting up to `timeout`.
function FakeBroker:read_packet(timeout)
    local deadline = socket.gettime() + (timeout or self.timeout)
    local first, len, hlen
    while true do
        first, len, hlen = decode_header(self.buf, 1)
        if first then
            break
        elseif len ~= "incomplete" then
            return nil, len
        end
        local ok, err = fill(self, #self.buf + 1, deadline)
        if not ok then
            return nil, err
        end
    end
    local ok, err = fill(self, hlen + len, deadline)
    if not ok then
        return nil, err
    end
    local raw = self.buf:sub(1, hlen + len)
    self.buf = self.buf:sub(hlen + len + 1)
    local p, why, partial = decode_body(first, raw:sub(hlen + 1), raw)
    self.received[#self.received + 1] = p or partial
    if not p then
        return nil, why, partial
    end
    return p
end

-- Handles a PINGREQ that is skipped: counts it and answers unless told not to.
function FakeBroker:_ping_seen()
    self.pings = self.pings + 1
    if self.answer_ping then
        self:send(FakeBroker.pingresp())
    end
end

--- Reads until a packet of type `ptype` (number or name) and returns it;
-- raises on timeout, on a closed connection and on any other packet.
function FakeBroker:expect(ptype, timeout, opts)
    ptype = type_of(ptype)
    local skip_ping = opts and opts.skip_ping
    if skip_ping == nil then
        skip_ping = self.skip_ping
    end
    skip_ping = skip_ping and ptype ~= TYPES.PINGREQ
    local want = FakeBroker.type_name(ptype)
    local deadline = socket.gettime() + (timeout or self.timeout)
    while true do
        local p, err = self:read_packet(math.max(0, deadline - socket.gettime()))
        if not p then
            error(("fake broker: expected %s, got %s"):format(want, err), 2)
        elseif p.type == TYPES.PINGREQ and skip_ping then
            self:_ping_seen()
        elseif p.type ~= ptype then
            error(("fake broker: expected %s, got %s"):format(want, describe(p)), 2)
        else
            return p
        end
    end
end

--- Asserts that nothing but PINGREQ arrives for `duration` seconds.
function FakeBroker:expect_nothing(duration)
    local deadline = socket.gettime() + duration
    while true do
        local left = deadline - socket.gettime()
        if left <= 0 then
            return true
        end
        local p, err = self:read_packet(left)
        if p and p.type == TYPES.PINGREQ then
            self:_ping_seen()
        elseif p then
            error("fake broker: expected nothing, got " .. describe(p), 2)
        elseif err ~= "timeout" then
            error("fake broker: expected nothing, got " .. err, 2)
        end
    end
end

--- Waits until the client closes the connection; PINGREQ and DISCONNECT may
-- come first (returned in a list). Raises on anything else or on timeout.
function FakeBroker:expect_closed(timeout)
    local deadline = socket.gettime() + (timeout or self.timeout)
    local seen = {}
    while true do
        local p, err = self:read_packet(math.max(0, deadline - socket.gettime()))
        if err == "closed" then
            self:close_client()
            return true, seen
        elseif not p then
            error("fake broker: expected the connection to close, got " .. err, 2)
        elseif p.type == TYPES.PINGREQ or p.type == TYPES.DISCONNECT then
            seen[#seen + 1] = p
        else
            error("fake broker: expected the connection to close, got " .. describe(p), 2)
        end
    end
end

--- Accepts a connection, reads its CONNECT and answers CONNACK. opts:
-- timeout, session_present, return_code (default 0), connack = false to send
-- nothing. Returns the CONNECT packet; raises if any step fails.
function FakeBroker:handshake(opts)
    opts = opts or {}
    local ok, err = self:accept(opts.timeout)
    if not ok then
        error("fake broker: no connection: " .. err, 2)
    end
    local c, why = self:read_packet(opts.timeout)
    if not c or c.type ~= TYPES.CONNECT then
        error("fake broker: expected CONNECT, got " .. (c and describe(c) or why), 2)
    end
    if opts.connack ~= false then
        assert(self:send(FakeBroker.connack(opts.session_present, opts.return_code or 0)))
    end
    return c
end

--- Sends raw bytes; returns true, or nil, the error and how many bytes went out.
function FakeBroker:send(bytes, timeout)
    local c = self.client
    if not c then
        return nil, "closed", 0
    end
    local deadline = socket.gettime() + (timeout or self.timeout)
    local sent = 0
    while sent < #bytes do
        c:settimeout(math.max(0, deadline - socket.gettime()))
        local last, err, partial = c:send(bytes, sent + 1)
        sent = last or partial or sent
        if not last and (err ~= "timeout" or socket.gettime() >= deadline) then
            return nil, err, sent
        end
    end
    return true
end

--- Cuts the current connection: FIN, or RST with opts.reset. Idempotent.
function FakeBroker:close_client(opts)
    local c = self.client
    if c then
        if opts and opts.reset then
            c:setoption("linger", { on = true, timeout = 0 })
        end
        c:close()
        self.client = nil
    end
    self.buf = ""
end

--- Closes the connection and the listening socket. Idempotent.
function FakeBroker:close()
    self:close_client()
    if self.server then
        self.server:close()
        self.server = nil
    end
end

FakeBroker.__close = FakeBroker.close
FakeBroker.__gc = FakeBroker.close

function FakeBroker:__tostring()
    return ("FakeBroker(127.0.0.1:%s, %s)"):format(self.port or "-",
                                                   self.client and "connected" or "idle")
end

return FakeBroker
