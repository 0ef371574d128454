-- spec/fake_broker.lua: a scripted MQTT 3.1.1 and 5.0 broker for the corner
-- cases a real broker never produces (lost acks, malformed packets, cuts
-- mid-flow). It listens on a free 127.0.0.1 port and is driven step by step by
-- the spec, in the spec's own thread (the client under test does its I/O in its
-- own C thread). It has no logic of its own: it reads, decodes and sends what
-- it is told. Pure Lua, independent of the library's codec, so that it checks
-- the library instead of agreeing with it.
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
--                                     unless opts.connack == false; to a 5.0 CONNECT
--                                     a 5.0 CONNACK with opts.reason_code and
--                                     opts.connack_properties (fb:connack_for)
--   fb:send(bytes, timeout)        -> true | nil, err, bytes_sent
--   fb:close_client(opts)          cuts the connection (opts.reset: RST, not FIN)
--   fb:close()                     closes everything; idempotent; also <close> (5.4)
--   fb.received                    every packet read, in order; fb.pings, fb.accepted
--   fb.version                     4 or 5: how the connection's packets are decoded;
--                                     set by the CONNECT read (reset by accept); for
--                                     wrap(), by the CONNECT sent or opts.version
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
-- Under MQTT 5.0 packets also have version = 5 and `properties` (a table keyed
-- by the snake_case names of API.md: integers as integers, yes/no bytes as
-- booleans except payload_format_indicator, user_property a list of {name,
-- value} in order, subscription_identifier a list in PUBLISH) with
-- `prop_bytes` (the properties' raw bytes, without their length; nil when the
-- packet left the property length out), and per type:
--   CONNECT      properties, will_properties and will_prop_bytes (with a will),
--                clean_start (= clean_session)
--   CONNACK      reason_code (= return_code)
--   PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT, AUTH  reason_code (0 when left out)
--   SUBSCRIBE    topics entries gain options (the byte), no_local,
--                retain_as_published, retain_handling
--   SUBACK, UNSUBACK  codes (one reason code per filter)
-- An unknown property, one not allowed in that packet, one given twice, a
-- value the specification forbids (0 for receive_maximum, topic_alias,
-- maximum_packet_size, subscription_identifier; not 0/1 for a byte flag),
-- reserved subscription option bits or a property block that does not add up
-- are reported as "malformed: ...".
--
-- Module functions: builders returning exact bytes (connack, publish, puback,
-- pubrec, pubrel, pubcomp, suback, unsuback, pingresp, and client-side connect,
-- subscribe, unsubscribe, pingreq, disconnect), packet(first_byte, body),
-- encode_length(n), decode(buf, pos) -> packet, next_pos | nil, why,
-- type_name(t), describe(packet), hex(bytes), wrap(socket, opts) (the same
-- reading and sending methods over any connected luasocket, e.g. a raw client
-- of mosquitto; opts.version).
--
-- MQTT 5.0 builders, FakeBroker.v5.*, each from one table (properties = {...}
-- as decoded; or prop_bytes = raw properties, their length added; or
-- prop_block = raw, length included, for hostile cases):
--   connack{session_present, reason_code, properties}
--   publish{topic, payload, qos, retain, dup, packet_id, properties} (topic ""
--       with properties.topic_alias: the alias alone)
--   puback/pubrec/pubrel/pubcomp{packet_id, reason_code, properties, full} (or a
--       packet id alone); disconnect{reason_code, properties, full};
--       auth{reason_code, properties, full}: code 0 and no properties -> the short
--       form, a code without properties -> no property length, unless full = true
--   suback/unsuback{packet_id, codes, properties}
--   client side: connect{client_id, keepalive, clean_start, properties, will =
--       {topic, payload, qos, retain, properties}, username, password,
--       protocol_level = 5, connect_flags (raw)}, subscribe{packet_id, topics =
--       {{filter, qos} or {filter, {qos, no_local, retain_as_published,
--       retain_handling}} or {filter, {options = raw byte}}}, properties},
--       unsubscribe{packet_id, filters, properties}, pingreq, pingresp
-- FakeBroker.encode_properties(props) -> the bytes (ascending identifiers,
-- user_property last, in the order given; a name -> value map is sorted);
-- FakeBroker.PROPERTIES[id or name] -> {id, name, type, packets}.

local socket = require("socket")
local compat = require("compat")

local band, bor, lshift, rshift = compat.band, compat.bor, compat.lshift, compat.rshift

local FakeBroker = {}
FakeBroker.__index = FakeBroker

local TYPES = {
    CONNECT = 0x10, CONNACK = 0x20, PUBLISH = 0x30, PUBACK = 0x40, PUBREC = 0x50,
    PUBREL = 0x60, PUBCOMP = 0x70, SUBSCRIBE = 0x80, SUBACK = 0x90, UNSUBSCRIBE = 0xA0,
    UNSUBACK = 0xB0, PINGREQ = 0xC0, PINGRESP = 0xD0, DISCONNECT = 0xE0,
    AUTH = 0xF0,    -- MQTT 5.0 only; a reserved type under 3.1.1
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

--- Hex dump of at most `max` bytes (default 64, "all": the whole) of a string.
function FakeBroker.hex(s, max)
    s = s or ""
    max = max == "all" and math.max(1, #s) or max or 64
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

-- A PUBLISH with props (an encoded property section under 5.0, "" under 3.1.1).
local function publish_with(p, props)
    local qos = p.qos or 0
    local flags = bor(bor(p.dup and 0x08 or 0, lshift(qos, 1)), p.retain and 0x01 or 0)
    local id = ""
    if qos > 0 then
        id = u16(assert(p.packet_id, "publish: QoS > 0 needs packet_id"))
    end
    return packet(bor(0x30, flags), str(p.topic) .. id .. props .. (p.payload or ""))
end

--- PUBLISH from {topic, payload = "", qos = 0, retain, dup, packet_id}
-- (packet_id is required for QoS 1 and 2).
function FakeBroker.publish(p)
    return publish_with(p, "")
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

-- A CONNECT at level (unless c.protocol_level says); section(t) is the
-- property section of c or its will ("" under 3.1.1).
local function connect_with(c, level, section)
    c = c or {}
    local flags = (c.clean_start ~= false and c.clean_session ~= false) and 0x02 or 0
    local tail = {}
    local w = c.will
    if w then
        flags = bor(bor(bor(flags, 0x04), lshift(w.qos or 0, 3)), w.retain and 0x20 or 0)
        tail[#tail + 1] = section(w) .. str(w.topic) .. str(w.payload or "")
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
                        string.char(c.protocol_level or level, c.connect_flags or flags) ..
                        u16(c.keepalive or 60) .. section(c) ..
                        str(c.client_id or "") .. table.concat(tail))
end

local function empty_section() return "" end

--- CONNECT from {client_id = "", keepalive = 60, clean_session = true,
-- will = {topic, payload, qos, retain}, username, password,
-- protocol_name = "MQTT", protocol_level = 4, connect_flags (a raw byte)}.
function FakeBroker.connect(c)
    return connect_with(c, 4, empty_section)
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
-- MQTT 5.0: properties and the builders of FakeBroker.v5
---------------------------------------------------------------------------

-- The property table of MQTT 5.0 (§2.2.2.2): identifier -> Lua name, wire
-- type, and the packets (WILL: the will properties of CONNECT) that may carry
-- it. Types: byte (integer), flag (a yes/no byte, a boolean in Lua), u16, u32,
-- varint, string (UTF-8), binary, pair (a UTF-8 string pair).
local PROPERTY_LIST = {
    { 0x01, "payload_format_indicator", "byte", "PUBLISH WILL" },
    { 0x02, "message_expiry_interval", "u32", "PUBLISH WILL" },
    { 0x03, "content_type", "string", "PUBLISH WILL" },
    { 0x08, "response_topic", "string", "PUBLISH WILL" },
    { 0x09, "correlation_data", "binary", "PUBLISH WILL" },
    { 0x0B, "subscription_identifier", "varint", "PUBLISH SUBSCRIBE" },
    { 0x11, "session_expiry_interval", "u32", "CONNECT CONNACK DISCONNECT" },
    { 0x12, "assigned_client_identifier", "string", "CONNACK" },
    { 0x13, "server_keep_alive", "u16", "CONNACK" },
    { 0x15, "authentication_method", "string", "CONNECT CONNACK AUTH" },
    { 0x16, "authentication_data", "binary", "CONNECT CONNACK AUTH" },
    { 0x17, "request_problem_information", "flag", "CONNECT" },
    { 0x18, "will_delay_interval", "u32", "WILL" },
    { 0x19, "request_response_information", "flag", "CONNECT" },
    { 0x1A, "response_information", "string", "CONNACK" },
    { 0x1C, "server_reference", "string", "CONNACK DISCONNECT" },
    { 0x1F, "reason_string", "string",
      "CONNACK PUBACK PUBREC PUBREL PUBCOMP SUBACK UNSUBACK DISCONNECT AUTH" },
    { 0x21, "receive_maximum", "u16", "CONNECT CONNACK" },
    { 0x22, "topic_alias_maximum", "u16", "CONNECT CONNACK" },
    { 0x23, "topic_alias", "u16", "PUBLISH" },
    { 0x24, "maximum_qos", "byte", "CONNACK" },
    { 0x25, "retain_available", "flag", "CONNACK" },
    { 0x26, "user_property", "pair", "*" },
    { 0x27, "maximum_packet_size", "u32", "CONNECT CONNACK" },
    { 0x28, "wildcard_subscription_available", "flag", "CONNACK" },
    { 0x29, "subscription_identifier_available", "flag", "CONNACK" },
    { 0x2A, "shared_subscription_available", "flag", "CONNACK" },
}

-- Values the specification forbids (a protocol error): 0 for these, and
-- anything but 0 or 1 for the byte-sized ones.
local NONZERO = { receive_maximum = true, maximum_packet_size = true, topic_alias = true,
                  subscription_identifier = true }

--- FakeBroker.PROPERTIES[id] and FakeBroker.PROPERTIES[name] are
-- {id, name, type, packets}: the MQTT 5.0 property table.
FakeBroker.PROPERTIES = {}
for _, e in ipairs(PROPERTY_LIST) do
    local def = { id = e[1], name = e[2], type = e[3], packets = e[4] }
    FakeBroker.PROPERTIES[def.id] = def
    FakeBroker.PROPERTIES[def.name] = def
end
local PROPERTIES = FakeBroker.PROPERTIES
local USER_PROPERTY = 0x26
local SUBSCRIPTION_IDENTIFIER = 0x0B

-- Whether property `def` may appear in packet `where` ("PUBLISH", "WILL"...).
local function allowed_in(def, where)
    return def.packets == "*" or (" " .. def.packets .. " "):find(" " .. where .. " ", 1, true)
end

local function u32(n)
    if not (compat.is_integer(n) and n >= 0 and n <= 4294967295) then
        error("u32: " .. tostring(n) .. " is not an integer from 0 to 4294967295", 2)
    end
    return u16(compat.idiv(n, 65536)) .. u16(n % 65536)
end

-- The bytes of one value of a property (without its identifier).
local function encode_value(def, v)
    local t = def.type
    if t == "flag" then
        if type(v) == "boolean" then
            v = v and 1 or 0
        end
        return string.char(v)
    elseif t == "byte" then
        return string.char(v)
    elseif t == "u16" then
        return u16(v)
    elseif t == "u32" then
        return u32(v)
    elseif t == "varint" then
        return encode_length(v)
    elseif t == "pair" then
        return str(v[1]) .. str(v[2])
    end
    assert(type(v) == "string", def.name .. ": a string is needed")
    return str(v)
end

-- A property's values as a list, in the order they go out: user_property
-- from a list of pairs (order kept) or a name -> value map (sorted by name);
-- subscription_identifier from one integer or a list.
local function values_of(def, v)
    if def.id == USER_PROPERTY then
        if v[1] ~= nil or next(v) == nil then
            return v
        end
        local names, list = {}, {}
        for name in pairs(v) do
            names[#names + 1] = name
        end
        table.sort(names)
        for _, name in ipairs(names) do
            list[#list + 1] = { name, v[name] }
        end
        return list
    elseif def.id == SUBSCRIPTION_IDENTIFIER and type(v) == "table" then
        return v
    end
    return { v }
end

--- The bytes of a property set (without the property length): ascending
-- identifier order, user_property last, in the order given. Raises for an
-- unknown name (a mistake in the spec, not a test of the client).
function FakeBroker.encode_properties(props)
    local ids = {}
    for name in pairs(props or {}) do
        local def = PROPERTIES[name]
        if type(name) ~= "string" or not def then
            error("encode_properties: unknown property " .. tostring(name), 2)
        end
        ids[#ids + 1] = def.id
    end
    table.sort(ids, function(a, b)
        if (a == USER_PROPERTY) ~= (b == USER_PROPERTY) then
            return b == USER_PROPERTY
        end
        return a < b
    end)
    local out = {}
    for _, id in ipairs(ids) do
        local def = PROPERTIES[id]
        for _, v in ipairs(values_of(def, props[def.name])) do
            out[#out + 1] = string.char(id) .. encode_value(def, v)
        end
    end
    return table.concat(out)
end

-- The property section of a packet from o.properties, or o.prop_bytes (the
-- properties' bytes, length added), or o.prop_block (used as it is, length
-- included: for hostile cases).
local function property_section(o)
    if o.prop_block then
        return o.prop_block
    end
    local block = o.prop_bytes or FakeBroker.encode_properties(o.properties)
    return encode_length(#block) .. block
end

-- Whether o asks for no property section at all.
local function no_properties(o)
    return not (o.properties and next(o.properties) ~= nil) and not o.prop_bytes
           and not o.prop_block
end

local v5 = {}
--- Builders of MQTT 5.0 packets (see the top of this file).
FakeBroker.v5 = v5

function v5.connack(o)
    o = o or {}
    local sp = (o.session_present == true or o.session_present == 1) and 1 or 0
    return packet(0x20, string.char(sp, o.reason_code or 0) .. property_section(o))
end

function v5.publish(p)
    return publish_with(p, property_section(p))
end

-- The tail of an ack, DISCONNECT or AUTH: nothing for success without
-- properties, the reason code alone without properties, else both (o.full:
-- always the reason code and the property length).
local function reason_tail(o)
    local rc = o.reason_code or 0
    if no_properties(o) and not o.full then
        return rc == 0 and "" or string.char(rc)
    end
    return string.char(rc) .. property_section(o)
end

local function ack_builder(first)
    return function(o)
        if type(o) == "number" then
            o = { packet_id = o }
        end
        return packet(first, u16(o.packet_id) .. reason_tail(o))
    end
end
v5.puback, v5.pubrec = ack_builder(0x40), ack_builder(0x50)
v5.pubrel, v5.pubcomp = ack_builder(0x62), ack_builder(0x70)

-- SUBACK and UNSUBACK: packet id, properties, one reason code per filter.
local function codes_builder(first)
    return function(o)
        return packet(first, u16(o.packet_id) .. property_section(o) ..
                             string.char(compat.unpack(o.codes or { 0 })))
    end
end
v5.suback, v5.unsuback = codes_builder(0x90), codes_builder(0xB0)

function v5.disconnect(o)
    return packet(0xE0, reason_tail(o or {}))
end

function v5.auth(o)
    return packet(0xF0, reason_tail(o or {}))
end

v5.pingreq, v5.pingresp = FakeBroker.pingreq, FakeBroker.pingresp

function v5.connect(c)
    return connect_with(c, 5, property_section)
end

-- The subscription options byte of {filter, qos} or {filter, {qos = ,
-- no_local = , retain_as_published = , retain_handling = }} (or the same
-- keys in the entry itself; `options` = a raw byte).
local function options_byte(t)
    local o = t[2]
    if type(o) ~= "table" then
        o = t
    end
    if o.options then
        return o.options
    end
    local b = (type(t[2]) == "number" and t[2]) or o.qos or 0
    b = bor(b, o.no_local and 0x04 or 0)
    b = bor(b, o.retain_as_published and 0x08 or 0)
    return bor(b, lshift(o.retain_handling or 0, 4))
end

--- SUBSCRIBE from {packet_id, topics = {entries as above}, properties}.
function v5.subscribe(o)
    local parts = { u16(o.packet_id), property_section(o) }
    for _, t in ipairs(o.topics) do
        parts[#parts + 1] = str(t[1] or t.filter) .. string.char(options_byte(t))
    end
    return packet(0x82, table.concat(parts))
end

--- UNSUBSCRIBE from {packet_id, filters = {...}, properties}.
function v5.unsubscribe(o)
    local parts = { u16(o.packet_id), property_section(o) }
    for _, f in ipairs(o.filters) do
        parts[#parts + 1] = str(f)
    end
    return packet(0xA2, table.concat(parts))
end

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
    function c.u32()
        return c.u16() * 65536 + c.u16()
    end
    -- A variable byte integer: at most 4 bytes, in the fewest bytes (§1.5.5).
    function c.varint()
        local value, mult = 0, 1
        for i = 1, 4 do
            local b = c.u8()
            value = value + (b % 128) * mult
            if b < 128 then
                if b == 0 and i > 1 then
                    malformed("variable byte integer not in its shortest form")
                end
                return value
            end
            mult = mult * 128
        end
        malformed("variable byte integer longer than 4 bytes")
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

-- Whether s is well-formed UTF-8 without U+0000, as MQTT strings must be
-- (§1.5.4): no overlong forms, no surrogates, nothing above U+10FFFF.
local function valid_utf8(s)
    local i, n = 1, #s
    while i <= n do
        local b = s:byte(i)
        local len, lo, hi = 1, 0x80, 0xBF     -- lo/hi: the range of the 2nd byte
        if b == 0 or (b >= 0x80 and b < 0xC2) or b > 0xF4 then
            return false
        elseif b >= 0xF0 then
            len = 4
            lo = b == 0xF0 and 0x90 or 0x80
            hi = b == 0xF4 and 0x8F or 0xBF
        elseif b >= 0xE0 then
            len = 3
            lo = b == 0xE0 and 0xA0 or 0x80
            hi = b == 0xED and 0x9F or 0xBF
        elseif b >= 0xC2 then
            len = 2
        end
        for k = 1, len - 1 do
            local c = s:byte(i + k)
            local min, max = 0x80, 0xBF
            if k == 1 then
                min, max = lo, hi
            end
            if not c or c < min or c > max then
                return false
            end
        end
        i = i + len
    end
    return true
end

-- A UTF-8 string property value; malformed when it is not valid UTF-8.
local function utf8_str(c)
    local s = c.str()
    if not valid_utf8(s) then
        malformed("property string is not valid UTF-8: " .. FakeBroker.hex(s, 16))
    end
    return s
end

-- Reads one property value of type t.
local readers = {
    byte = function(c) return c.u8() end,
    flag = function(c) return c.u8() end,
    u16 = function(c) return c.u16() end,
    u32 = function(c) return c.u32() end,
    varint = function(c) return c.varint() end,
    string = utf8_str,
    binary = function(c) return c.str() end,
    pair = function(c)
        local name = utf8_str(c)
        return { name, utf8_str(c) }
    end,
}

-- Raises when v is a value the specification forbids for property def.
local function check_value(def, v)
    if (def.type == "byte" or def.type == "flag") and v > 1 then
        malformed(("property %s: value %d is not 0 or 1"):format(def.name, v))
    elseif NONZERO[def.name] and v == 0 then
        malformed(("property %s: value 0 is not allowed"):format(def.name))
    end
end

-- Reads a property length and the properties after it, for packet `where`
-- (a packet name, or WILL). Returns the properties table and the raw bytes of
-- the properties (without the length).
local function read_properties(c, where)
    local block = c.bytes(c.varint())
    local pc = cursor(block)
    local props = {}
    while pc.left() > 0 do
        local id = pc.varint()
        local def = PROPERTIES[id]
        if not def then
            malformed(("unknown property identifier 0x%02X in %s"):format(id, where))
        elseif not allowed_in(def, where) then
            malformed(("property %s is not allowed in %s"):format(def.name, where))
        end
        local v = readers[def.type](pc)
        if def.id == USER_PROPERTY then
            props.user_property = props.user_property or {}
            table.insert(props.user_property, v)
        else
            check_value(def, v)
            if def.id == SUBSCRIPTION_IDENTIFIER and where == "PUBLISH" then
                props[def.name] = props[def.name] or {}
                table.insert(props[def.name], v)
            elseif props[def.name] ~= nil then
                malformed(("property %s given twice in %s"):format(def.name, where))
            else
                if def.type == "flag" then
                    v = v == 1
                end
                props[def.name] = v
            end
        end
    end
    return props, block
end

local parsers = {}

parsers[0x10] = function(p, c)
    p.protocol_name = c.str()
    p.protocol_level = c.u8()
    local f = c.u8()
    p.connect_flags = f
    p.keepalive = c.u16()
    local is5 = p.protocol_level == 5
    if is5 then
        p.properties, p.prop_bytes = read_properties(c, "CONNECT")
    end
    p.client_id = c.str()
    p.reserved_flag = band(f, 0x01) ~= 0
    p.clean_session = band(f, 0x02) ~= 0
    if is5 then
        p.clean_start = p.clean_session
    end
    p.will = band(f, 0x04) ~= 0
    p.will_qos = band(rshift(f, 3), 0x03)
    p.will_retain = band(f, 0x20) ~= 0
    if p.will then
        if is5 then
            p.will_properties, p.will_prop_bytes = read_properties(c, "WILL")
        end
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

-- PUBLISH; under 5.0 (is5 true) with properties before the payload.
local function publish_parser(is5)
    return function(p, c)
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
        if is5 then
            p.properties, p.prop_bytes = read_properties(c, "PUBLISH")
        end
        p.payload = c.rest()
    end
end
parsers[0x30] = publish_parser(false)

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

-- UNSUBSCRIBE; under 5.0 (is5 true) with properties before the filters.
local function unsubscribe_parser(is5)
    return function(p, c)
        p.packet_id = c.u16()
        if is5 then
            p.properties, p.prop_bytes = read_properties(c, "UNSUBSCRIBE")
        end
        p.filters = {}
        repeat
            p.filters[#p.filters + 1] = c.str()
        until c.left() == 0
    end
end
parsers[0xA0] = unsubscribe_parser(false)

local function empty(_, c)
    c.done()
end
parsers[0xC0], parsers[0xD0], parsers[0xE0] = empty, empty, empty

-- MQTT 5.0 bodies (CONNECT, PINGREQ and PINGRESP are shared with 3.1.1).
local parsers5 = { [0x10] = parsers[0x10], [0xC0] = empty, [0xD0] = empty }

-- A reason code and properties that may be left out from the end: absent
-- means 0 and no properties (prop_bytes stays nil when the packet had none).
local function optional_tail(p, c)
    p.reason_code = 0
    p.properties = {}
    if c.left() > 0 then
        p.reason_code = c.u8()
    end
    if c.left() > 0 then
        p.properties, p.prop_bytes = read_properties(c, p.name)
    end
    c.done()
end

parsers5[0x20] = function(p, c)
    local flags = c.u8()
    if flags > 1 then
        malformed(("CONNACK flags 0x%02X: reserved bits set"):format(flags))
    end
    p.session_present = flags == 1
    p.reason_code = c.u8()
    p.return_code = p.reason_code
    p.properties = {}
    -- A broker that speaks only 3.1.1 answers a 5.0 CONNECT with 2 bytes.
    if c.left() > 0 then
        p.properties, p.prop_bytes = read_properties(c, "CONNACK")
    end
    c.done()
end

parsers5[0x30] = publish_parser(true)

local function ack5(p, c)
    p.packet_id = c.u16()
    optional_tail(p, c)
end
parsers5[0x40], parsers5[0x50], parsers5[0x60], parsers5[0x70] = ack5, ack5, ack5, ack5

parsers5[0x80] = function(p, c)
    p.packet_id = c.u16()
    p.properties, p.prop_bytes = read_properties(c, "SUBSCRIBE")
    p.topics = {}
    repeat
        local filter = c.str()
        local o = c.u8()
        local e = { filter, band(o, 0x03), filter = filter, qos = band(o, 0x03), options = o,
                    no_local = band(o, 0x04) ~= 0, retain_as_published = band(o, 0x08) ~= 0,
                    retain_handling = band(rshift(o, 4), 0x03) }
        if band(o, 0xC0) ~= 0 then
            malformed(("subscription options 0x%02X: reserved bits set"):format(o))
        elseif e.qos == 3 then
            malformed("subscription with QoS 3")
        elseif e.retain_handling == 3 then
            malformed("subscription with retain handling 3")
        end
        p.topics[#p.topics + 1] = e
    until c.left() == 0
end

local function codes5(p, c)
    p.packet_id = c.u16()
    p.properties, p.prop_bytes = read_properties(c, p.name)
    p.codes = { c.rest():byte(1, -1) }
end
parsers5[0x90], parsers5[0xB0] = codes5, codes5

parsers5[0xA0] = unsubscribe_parser(true)

parsers5[0xE0], parsers5[0xF0] = optional_tail, optional_tail

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

-- Decodes one body under protocol `version` (4 or 5; CONNECT says its own);
-- returns the packet, or nil, "malformed: ..." and the packet.
local function decode_body(first, body, raw, version)
    local t = band(first, 0xF0)
    local p = { type = t, name = FakeBroker.type_name(t), flags = band(first, 0x0F),
                body = body, raw = raw }
    local parse = (version == 5 and parsers5 or parsers)[t]
    if not parse then
        return nil, ("malformed: reserved packet type 0x%02X"):format(t), p
    end
    if version == 5 then
        p.version = 5
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

--- Decodes the packet starting at buf[pos] (default 1) as MQTT 3.1.1, or 5.0
-- when version is 5. Returns the packet and the position after it, or nil and
-- "incomplete" (more bytes needed) or "malformed: ..." (plus the partly
-- decoded packet when the header was fine).
function FakeBroker.decode(buf, pos, version)
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
                                        buf:sub(pos, stop - 1), version)
    if not p then
        return nil, err, partial
    end
    return p, stop
end

--- A one-line description of a packet, for error messages.
function FakeBroker.describe(p)
    local fields = {}
    for _, k in ipairs({ "client_id", "topic", "qos", "dup", "retain", "packet_id",
                         "return_code", "session_present", "reason_code" }) do
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
        version = 4,
    }, FakeBroker)
end

--- The reading and sending methods over an already connected luasocket (a raw
-- client talking to mosquitto, say). PINGREQ is neither skipped nor answered.
function FakeBroker.wrap(sock, opts)
    opts = opts or {}
    return setmetatable({
        host = "127.0.0.1", client = sock, buf = "", timeout = opts.timeout or DEFAULT_TIMEOUT,
        skip_ping = false, answer_ping = false, received = {}, pings = 0, accepted = 1,
        version = opts.version or 4,
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
    self.version = 4
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
    local p, why, partial = decode_body(first, raw:sub(hlen + 1), raw, self.version)
    self.received[#self.received + 1] = p or partial
    local connect = p or partial
    if connect.type == TYPES.CONNECT and connect.protocol_level then
        -- The rest of this connection is decoded in the version it asked for.
        self.version = connect.protocol_level == 5 and 5 or 4
    end
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
        assert(self:send(self:connack_for(opts)))
    end
    return c
end

--- The CONNACK handshake(opts) sends, in the version of the CONNECT read:
-- under 5.0 opts.reason_code (or return_code), opts.connack_properties (or
-- connack_prop_bytes, raw) and session_present; opts.connack_version = 4
-- forces the 3.1.1 form (a broker that knows only 3.1.1). Properties for a
-- 3.1.1 CONNACK are a mistake in the spec and raise.
function FakeBroker:connack_for(opts)
    local rc = opts.reason_code or opts.return_code or 0
    if self.version == 5 and opts.connack_version ~= 4 then
        return v5.connack({ session_present = opts.session_present, reason_code = rc,
                            properties = opts.connack_properties,
                            prop_bytes = opts.connack_prop_bytes })
    end
    assert(opts.connack_properties == nil and opts.connack_prop_bytes == nil,
           "fake broker: CONNACK properties for a 3.1.1 CONNACK")
    return FakeBroker.connack(opts.session_present, rc)
end

--- Sends raw bytes; returns true, or nil, the error and how many bytes went out.
function FakeBroker:send(bytes, timeout)
    local c = self.client
    if not c then
        return nil, "closed", 0
    end
    if not self.server and bytes:byte(1) == TYPES.CONNECT then
        -- A raw client (wrap) reads its broker's answers in the version it asks for.
        local level = FakeBroker.decode(bytes)
        self.version = (level and level.protocol_level == 5) and 5 or self.version
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
