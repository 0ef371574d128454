--[[
Writes the committed seed corpora of the fuzz targets into
spec/fuzz/corpus/<target>/golden-<name>: the codec's golden vectors from
spec/c/test_codec.c for the decoders, and short scripts for the session and
client targets. Run from the repository root: lua5.4 spec/fuzz/seeds.lua.
Crash inputs saved by run.sh sit beside these and are never overwritten.
]]

local root = "spec/fuzz/corpus/"

local function bytes(t)
    local out = {}
    for _, v in ipairs(t) do
        out[#out + 1] = type(v) == "string" and v or string.char(v)
    end
    return table.concat(out)
end

local function write(target, name, data)
    os.execute("mkdir -p " .. root .. target)
    local f = assert(io.open(root .. target .. "/golden-" .. name, "wb"))
    f:write(data)
    f:close()
end

-- ---- fixed header: the varint table and the header cases ------------------

local varints = {
    { 0x00 }, { 0x7F }, { 0x80, 0x01 }, { 0xFF, 0x7F }, { 0x80, 0x80, 0x01 },
    { 0xFF, 0xFF, 0x7F }, { 0x80, 0x80, 0x80, 0x01 }, { 0xFF, 0xFF, 0xFF, 0x7F },
}
for i, v in ipairs(varints) do
    write("fuzz_fixed_header", "varint-" .. i, bytes({ 0x30 }) .. bytes(v))
end
write("fuzz_fixed_header", "five-length-bytes", bytes({ 0x3B, 0x80, 0x80, 0x80, 0x80, 0x01 }))
write("fuzz_fixed_header", "nonminimal-zero", bytes({ 0x3B, 0x80, 0x80, 0x80, 0x00 }))
write("fuzz_fixed_header", "pubrel-then-more", bytes({ 0x62, 0x02, 0xFF }))
write("fuzz_fixed_header", "continuation-pending", bytes({ 0x3B, 0x80, 0x80 }))

-- ---- packets a broker sends (valid and rejected vectors) ------------------

local packets = {
    connack = { 0x20, 0x02, 0x00, 0x00 },
    connack_sp = { 0x20, 0x02, 0x01, 0x00 },
    connack_rc5 = { 0x20, 0x02, 0x00, 0x05 },
    connack_rc6 = { 0x20, 0x02, 0x00, 0x06 },
    connack_flags = { 0x20, 0x02, 0x02, 0x00 },
    connack_sp_refused = { 0x20, 0x02, 0x01, 0x04 },
    connack_long = { 0x20, 0x03, 0x00, 0x00, 0x00 },
    puback = { 0x40, 0x02, 0x12, 0x34 },
    pubrec = { 0x50, 0x02, 0x12, 0x34 },
    pubrel = { 0x62, 0x02, 0x12, 0x34 },
    pubcomp = { 0x70, 0x02, 0x12, 0x34 },
    unsuback = { 0xB0, 0x02, 0x12, 0x34 },
    puback_id0 = { 0x40, 0x02, 0x00, 0x00 },
    pubrel_flags0 = { 0x60, 0x02, 0x00, 0x01 },
    puback_long = { 0x40, 0x03, 0x12, 0x34, 0x00 },
    suback = { 0x90, 0x03, 0x00, 0x01, 0x00 },
    suback_codes = { 0x90, 0x06, 0xBE, 0xEF, 0x00, 0x01, 0x02, 0x80 },
    suback_bad_code = { 0x90, 0x04, 0x00, 0x01, 0x00, 0x81 },
    suback_short = { 0x90, 0x02, 0x00, 0x01 },
    pingresp = { 0xD0, 0x00 },
    pingresp_body = { 0xD0, 0x01, 0x00 },
    publish_qos0 = { 0x30, 0x07, 0x00, 0x03, "a/b", "hi" },
    publish_qos1_retain = { 0x33, 0x09, 0x00, 0x03, "a/b", 0x00, 0x0A, "hi" },
    publish_qos2_dup = { 0x3D, 0x07, 0x00, 0x01, "t", 0x12, 0x34, "hi" },
    publish_empty_payload = { 0x32, 0x05, 0x00, 0x01, "t", 0x00, 0x07 },
    publish_utf8_nul = { 0x30, 0x05, 0x00, 0x02, 0xC3, 0xA9, 0x00 },
    publish_qos3 = { 0x36, 0x05, 0x00, 0x01, "t", 0x00, 0x01 },
    publish_dup_qos0 = { 0x38, 0x03, 0x00, 0x01, "t" },
    publish_id0 = { 0x32, 0x05, 0x00, 0x01, "t", 0x00, 0x00 },
    publish_empty_topic = { 0x30, 0x02, 0x00, 0x00 },
    publish_wildcard = { 0x30, 0x05, 0x00, 0x03, "a/+" },
    publish_overlong = { 0x30, 0x04, 0x00, 0x02, 0xC0, 0x80 },
    publish_surrogate = { 0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80 },
    publish_topic_past_end = { 0x30, 0x03, 0x00, 0x05, "abcde" },
    publish_no_id_room = { 0x32, 0x04, 0x00, 0x01, "t", 0x00 },
    connect_from_server = { 0x10, 0x00 },
    subscribe_from_server = { 0x82, 0x00 },
    reserved_type = { 0xF0, 0x00 },
    length_5_bytes = { 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F },
    pingresp_nonminimal = { 0xD0, 0x80, 0x80, 0x80, 0x00 },
    puback_3byte_length = { 0x40, 0x82, 0x80, 0x00, 0x00, 0x01 },
    huge_incomplete = { 0x30, 0xE8, 0x07, 0x00 },
}
local stream = {}
for name, p in pairs(packets) do
    write("fuzz_decode_packet", name:gsub("_", "-"), bytes(p))
end
for _, name in ipairs({ "connack", "publish_qos1_retain", "puback", "pubrec", "pubrel", "pubcomp",
                        "suback_codes", "unsuback", "pingresp", "publish_qos2_dup" }) do
    stream[#stream + 1] = bytes(packets[name])
end
write("fuzz_decode_packet", "stream", table.concat(stream))
-- 300-byte topic: a 2-byte remaining length (504), as in test_streaming.
local topic = ("abcdefghij/klmnopqrstuvwxyz0123456789"):rep(9):sub(1, 300)
write("fuzz_decode_packet", "publish-2byte-length",
      bytes({ 0x32, 0xF8, 0x03, 0x01, 0x2C }) .. topic .. bytes({ 0x00, 0x05 }) .. ("\0"):rep(200))

-- ---- topics: byte 0 is the filter length, then filter, then topic --------

local matches = {
    { "sport/tennis/#", "sport/tennis" }, { "sport/tennis/#", "sport/tennis/x/y" },
    { "sport/tennis/#", "sport/tennisx" }, { "sport/#", "sport" }, { "#", "a/b/c" },
    { "#", "/" }, { "+", "a" }, { "+", "a/b" }, { "+/+", "/finance" }, { "/+", "/finance" },
    { "sport/+", "sport" }, { "sport/+", "sport/" }, { "sport/+/player1", "sport/tennis/player1" },
    { "a/b", "a/b/" }, { "a/b/", "a/b" }, { "#", "$SYS/x" },
    { "+/monitor/Clients", "$SYS/monitor/Clients" }, { "$SYS/#", "$SYS/x" },
    { "$SYS/monitor/+", "$SYS/monitor/Clients" }, { "a/#/b", "a/x/b" }, { "a//b", "a//b" },
    { "+a", "xa" }, { "a#", "a" }, { "++", "x" }, { "caf\xC3\xA9/+", "caf\xC3\xA9/x" },
    { "a/\xED\xA0\x80", "a/\xED\xA0\x80" }, { "\xF0\x9F\x98\x80/#", "\xF0\x9F\x98\x80" },
    { "t\xC0\x80", "t\xC0\x80" }, { "a\0b", "a\0b" }, { "\xF4\x90\x80\x80", "x" },
}
for i, m in ipairs(matches) do
    write("fuzz_topic", "match-" .. i, string.char(#m[1]) .. m[1] .. m[2])
end

-- ---- session scripts (see fuzz_session.c for the op codes) ---------------
-- setup: max_inflight, max_queued (u16, 0: 100000), max_queued_bytes / 97 (0: none)

local ADD_PUB, ADD_SUB, NEXT_SENT, ACK, REWIND, TAKE_ID = 0, 1, 0x80, 4, 6, 7
local IN_PUT, IN_TAKE, IN_DRAIN, BULK, PUMP = 8, 9, 10, 11, 12
local PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK = 0, 1, 2, 3, 4
local LIVE0 = { 0x00, 0x00 } -- the first live id
local function s(t)
    local out = {}
    for _, v in ipairs(t) do
        if type(v) == "table" then
            out[#out + 1] = bytes(v)
        else
            out[#out + 1] = bytes({ v })
        end
    end
    return table.concat(out)
end
write("fuzz_session", "qos1", s({ 2, 0, 0, 0, ADD_PUB, 0x01, 2, "hi", NEXT_SENT, ACK, PUBACK,
                                   LIVE0, ACK, PUBACK, 0x81 }))
write("fuzz_session", "qos2-rewind", s({ 4, 0, 0, 0, ADD_PUB, 0x02, 1, "x", NEXT_SENT, ACK,
                                        PUBREC, LIVE0, ACK, PUBREC, LIVE0, REWIND, NEXT_SENT,
                                        ACK, PUBCOMP, LIVE0, ACK, PUBCOMP, 0x81 }))
write("fuzz_session", "subscribe", s({ 1, 0, 0, 0, ADD_SUB, 0x03, ADD_SUB, 0x08, PUMP, ACK,
                                      UNSUBACK, LIVE0, ACK, SUBACK, 0x01, 0x00, REWIND, PUMP,
                                      ACK, SUBACK, LIVE0 }))
write("fuzz_session", "window", s({ 1, 0, 0, 0, ADD_PUB, 0x01, 0, ADD_PUB, 0x02, 0,
                                   ADD_PUB, 0x00, 0, ADD_PUB, 0x01, 0, PUMP, ACK, PUBACK, 0x01,
                                   0x00, PUMP, REWIND, PUMP, BULK, 2, PUMP, BULK, 3 }))
write("fuzz_session", "queue-limits", s({ 0, 0, 2, 1, ADD_PUB, 0x05, 30, ("p"):rep(30),
                                         ADD_PUB, 0x01, 0, ADD_PUB, 0x01, 0, TAKE_ID, ADD_PUB,
                                         0x83, 0x00, 0, 13, 7 }))
write("fuzz_session", "incoming", s({ 1, 0, 0, 0, IN_PUT, 0x01, IN_PUT, 0x01, IN_PUT, 0x02,
                                     IN_PUT, 0x00, IN_PUT, 0x61, IN_TAKE, 0x01, IN_TAKE, 0x01,
                                     IN_PUT, 0x80, 0xFF, 0xFF, IN_DRAIN, BULK, 4, 3, BULK, 5 }))
-- Records with MQTT 5.0 properties (publish bit 0x20, subscribe bit 0x40),
-- three topic aliases allowed (the last setup byte, modulo 4).
write("fuzz_session", "v5-props", s({ 4, 0, 0, 3, ADD_PUB, 0x21, 2, "hi", NEXT_SENT,
                                     ADD_PUB, 0x21, 0, NEXT_SENT, ADD_PUB, 0x25, 0, NEXT_SENT,
                                     ADD_SUB, 0x41, ADD_SUB, 0x40, PUMP, REWIND, PUMP }))
write("fuzz_session", "fill-ids", s({ 8, 0, 0, 0, BULK, 0, 255, 255, ADD_SUB, 0x01, TAKE_ID, PUMP,
                                     BULK, 3, ADD_PUB, 0x01, 0, TAKE_ID }))

-- ---- client stream scripts (see fuzz_client.h) --------------------
-- config, keepalive, CONNACK answer, then ops.

local RAW, PKT, SPLIT, PUB, SUB, EVENTS, CLOCK, CONTROL = 0, 3, 5, 6, 7, 8, 9, 10
local function raw(p)
    local b = bytes(p)
    return bytes({ RAW, #b - 1 }) .. b
end
-- build_packet kinds: 0 ack (index: PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK), 2 SUBACK, 3 PUBLISH
local RECENT = 0x00 -- pick_id: the id the client used last
local function ack(i, id)
    return bytes({ PKT, 0, i, id or RECENT })
end
write("fuzz_client_stream", "qos1", bytes({ 0x10, 0, 0x00, PUB, 0x01, 2 }) .. "hi" .. ack(0) ..
      bytes({ EVENTS }) .. ack(0) .. bytes({ EVENTS }))
write("fuzz_client_stream", "qos2", bytes({ 0x11, 0, 0x00, PUB, 0x02, 0 }) .. ack(1) .. ack(1) ..
      ack(3) .. ack(3) .. bytes({ EVENTS }))
write("fuzz_client_stream", "incoming-qos2", bytes({ 0x00, 0, 0x00, PKT, 3, 0x02, 2 }) .. "hi" ..
      bytes({ PKT, 3, 0x02, 0 }) .. ack(2, 0x81) .. ack(2, 0x81) .. bytes({ EVENTS }))
write("fuzz_client_stream", "subscribe", bytes({ 0x00, 0, 0x00, SUB, 0x01, SUB, 0x21 }) ..
      bytes({ PKT, 2, RECENT, 1 }) .. ack(4) .. bytes({ EVENTS }))
write("fuzz_client_stream", "broker-stream", bytes({ 0x00, 0, 0x00 }) ..
      raw(packets.publish_qos0) .. raw(packets.publish_qos1_retain) .. raw(packets.pingresp) ..
      raw(packets.suback_codes) .. raw(packets.publish_qos2_dup) .. raw(packets.pubrel) ..
      bytes({ EVENTS }) .. raw(packets.connack))
write("fuzz_client_stream", "split-publish", bytes({ 0x00, 0, 0x00, SPLIT, 3, 0x01, 7 }) ..
      "payload" .. bytes({ 5, SPLIT, 3, 0x00, 3 }) .. "abc" .. bytes({ 1, EVENTS }))
write("fuzz_client_stream", "reconnect-resend", bytes({ 0x13, 0, 0x00, PUB, 0x01, 0, PUB, 0x02, 0,
      SUB, 0x01, CONTROL, 0, 0x01 }) .. ack(0) .. ack(1) .. bytes({ CONTROL, 0, 0x00, EVENTS }))
write("fuzz_client_stream", "refused-then-retry", bytes({ 0x10, 0, 0x3A, 0x00, PUB, 0x01, 0,
      CONTROL, 1 + 6 * 2, CONTROL, 0, 0x00, EVENTS }))
write("fuzz_client_stream", "keepalive", bytes({ 0x10, 2, 0x00, CLOCK, 8, EVENTS }) ..
      raw({ 0xD0, 0x00 }) .. bytes({ CLOCK, 12, 0x00, EVENTS }))
write("fuzz_client_stream", "hook", bytes({ 0x30, 0, 0x00, CONTROL, 0, EVENTS, CONTROL, 4, 0x00,
      EVENTS }))
write("fuzz_client_stream", "disconnect-connect", bytes({ 0x00, 0, 0x00, PUB, 0x01, 0, CONTROL, 2,
      PUB, 0x02, 0, CONTROL, 3, 0x01, EVENTS }) .. ack(0))
write("fuzz_client_stream", "malformed", bytes({ 0x00, 0, 0x00 }) .. raw({ 0x36, 0x05, 0x00 }) ..
      bytes({ EVENTS }))
write("fuzz_client_stream", "max-packet", bytes({ 0x80, 0, 0x00 }) ..
      raw({ 0x30, 0x40, 0x00, 0x01, 0x74 }) .. bytes({ EVENTS }))

-- ---- MQTT 5.0 client stream scripts (fuzz_client_stream_v5) ---------------
-- config, keepalive, two option bytes (protocol, CONNECT properties, alias
-- mode), the CONNACK answer and its property mask (and values), then ops;
-- build_packet_v5 kinds: 0 ack, 2 SUBACK, 3 PUBLISH, 5 UNSUBACK, 6 DISCONNECT, 7 AUTH.
local V5 = "fuzz_client_stream_v5"
local function ack5(i, reason, props)
    return bytes({ PKT, 0, i, RECENT, reason or 0, props or 0 })
end
local function pub5(f, alias, payload)
    return bytes({ PKT, 3, f, alias, 0, #payload }) .. payload
end
write(V5, "qos1-alias", bytes({ 0x10, 0, 0x64, 0x00, 0x00, 0x03, 1, 3, PUB, 0x01, 2 }) .. "hi" ..
      bytes({ 0, PUB, 0x01, 2 }) .. "hi" .. bytes({ 0x80 }) .. ack5(0) .. bytes({ EVENTS }) ..
      ack5(0, 2, 0x03) .. bytes({ EVENTS }))
write(V5, "qos2-refused", bytes({ 0x11, 0, 0x00, 0x00, 0x00, 0x00, PUB, 0x02, 0, 0 }) ..
      ack5(1, 2) .. bytes({ PUB, 0x02, 0, 0 }) .. ack5(1) .. ack5(3) .. bytes({ EVENTS }))
write(V5, "broker-alias", bytes({ 0x00, 0, 0x24, 0x00, 0x00, 0x00 }) .. pub5(0x00, 0xC1, "hi") ..
      pub5(0x04, 0x81, "") .. bytes({ EVENTS }) .. pub5(0x00, 0x87, "x") .. bytes({ EVENTS }))
write(V5, "alias-unset", bytes({ 0x00, 0, 0x24, 0x00, 0x00, 0x00 }) .. pub5(0x00, 0x82, "") ..
      bytes({ EVENTS }))
write(V5, "auto-fallback", bytes({ 0x10, 0, 0x02, 0x00, 0x32, 0x00, 0x00, PUB, 0x01, 0 }) ..
      bytes({ PKT, 0, 0, RECENT, EVENTS }))
write(V5, "disconnect-auth", bytes({ 0x00, 0, 0x00, 0x00, 0x00, 0x00, PKT, 7, 1, 0x04, EVENTS,
      PKT, 6, 1, 0x05, EVENTS }))
write(V5, "suback-reasons", bytes({ 0x00, 0, 0x00, 0x00, 0x00, 0x00, SUB, 0x81,
      PKT, 2, RECENT, 0, 3, 0x01, SUB, 0x21, PKT, 5, RECENT, 0, 0, 0, EVENTS }))
write(V5, "max-packet", bytes({ 0x00, 0, 0x00, 0x00, 0x00, 0x04, 4, PUB, 0x00, 24 }) ..
      string.rep("p", 24) .. bytes({ 0, PUB, 0x00, 2 }) .. "ok" .. bytes({ 0, EVENTS }))
write(V5, "limits", bytes({ 0x00, 0, 0x00, 0x00, 0x00, 0x78, 1, 0, PUB, 0x01, 0, 0, PUB, 0x20, 0, 0,
      SUB, 0x14, SUB, 0x80, EVENTS }))
write(V5, "receive-max", bytes({ 0x00, 0, 0x08, 0x00, 0x00, 0x00 }) .. pub5(0x02, 0, "") ..
      pub5(0x23, 0, "") .. bytes({ EVENTS }))
write(V5, "manual-alias", bytes({ 0x00, 0, 0x00, 0x02, 0x00, 0x02, 2, PUB, 0x01, 0, 0x01,
      PUB, 0x01, 0, 0x01, PUB, 0x01, 0, 0x05, EVENTS }) .. ack5(0) .. ack5(0) .. bytes({ EVENTS }))
write(V5, "session-expiry", bytes({ 0x40, 0, 0x10, 0x14, 0x00, 0x18, 1, CONTROL, 0,
      EVENTS }))
write(V5, "bad-reason", bytes({ 0x00, 0, 0x00, 0x00, 0x00, 0x00, PUB, 0x01, 0, 0 }) ..
      bytes({ PKT, 0, 0, RECENT, 0xF8, 0x05, 0, EVENTS }))
write(V5, "client-auth-disconnect", bytes({ 0x00, 0, 0x00, 0x00, 0x00, 0x00, CONTROL, 0x45,
      CONTROL, 0x1B, EVENTS }))
-- A broker's DISCONNECT of 70 KB of properties in 64-byte reads: the client
-- holds it in its own input buffer, which must outlive the event's copy.
do
    local function str(x)
        return string.char(#x >> 8, #x & 0xFF) .. x
    end
    local function varint(n)
        local out = {}
        repeat
            local d = n % 128
            n = n // 128
            out[#out + 1] = string.char(n > 0 and d | 0x80 or d)
        until n == 0
        return table.concat(out)
    end
    local props = "\x26" .. str("k") .. str(("v"):rep(35000)) .. "\x26" .. str("k2") ..
        str(("w"):rep(35000))
    local body = "\x80" .. varint(#props) .. props
    local pkt = "\xE0" .. varint(#body) .. body
    local script = { bytes({ 0x00, 0, 0x00, 0x00, 0x00, 0x00 }) }
    for i = 1, #pkt, 64 do
        local chunk = pkt:sub(i, i + 63)
        script[#script + 1] = bytes({ RAW, #chunk - 1 }) .. chunk
    end
    script[#script + 1] = bytes({ EVENTS })
    write(V5, "big-disconnect", table.concat(script))
end

-- ---- MQTT 5: the golden packets of spec/c/test_codec_v5.c ------------------
-- Family targets: byte 0 is the role (bit 0: broker) and level (bit 1: 3.1.1),
-- then the packet. fuzz_props: byte 0 picks the packet, then a property block.
local CLIENT5, BROKER5, CLIENT4, BROKER4 = 0x00, 0x01, 0x02, 0x03
local v5 = {
    fuzz_v5_connect = {
        connect = { BROKER5, 0x10, 0x2F, 0x00, 0x04, "MQTT", 0x05, 0xEE, 0x00, 0x3C, 0x0F, 0x11,
                    0x00, 0x00, 0x0E, 0x10, 0x21, 0x00, 0x14, 0x26, 0x00, 0x01, "a", 0x00, 0x01,
                    "b", 0x00, 0x01, "c", 0x05, 0x18, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01, "w",
                    0x00, 0x01, "x", 0x00, 0x01, "u", 0x00, 0x01, "p" },
        connect_311 = { BROKER4, 0x10, 0x0E, 0x00, 0x04, "MQTT", 0x04, 0x02, 0x00, 0x3C, 0x00,
                        0x02, "id" },
        connack = { CLIENT5, 0x20, 0x0D, 0x01, 0x00, 0x0A, 0x12, 0x00, 0x02, "id", 0x22, 0x00,
                    0x0A, 0x24, 0x01 },
        connack_refused = { CLIENT5, 0x20, 0x03, 0x00, 0x87, 0x00 },
        connack_311 = { CLIENT4, 0x20, 0x02, 0x01, 0x00 },
        disconnect = { BROKER5, 0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00 },
        disconnect_server = { CLIENT5, 0xE0, 0x01, 0x8B },
        auth = { BROKER5, 0xF0, 0x10, 0x18, 0x0E, 0x15, 0x00, 0x05, "SCRAM", 0x16, 0x00, 0x03,
                 "abc" },
        auth_short = { CLIENT5, 0xF0, 0x00 },
        pingreq = { BROKER5, 0xC0, 0x00 },
    },
    fuzz_v5_publish = {
        publish = { CLIENT5, 0x32, 0x1F, 0x00, 0x03, "a/b", 0x00, 0x0A, 0x15, 0x01, 0x01, 0x02,
                    0x00, 0x00, 0x00, 0x3C, 0x03, 0x00, 0x01, "t", 0x23, 0x00, 0x03, 0x26, 0x00,
                    0x01, "x", 0x00, 0x01, "y", "hi" },
        publish_alias = { CLIENT5, 0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, "z" },
        publish_ids = { CLIENT5, 0x31, 0x09, 0x00, 0x01, "a", 0x04, 0x0B, 0x01, 0x0B, 0x02, "p" },
        publish_311 = { BROKER4, 0x3D, 0x08, 0x00, 0x03, "a/b", 0x00, 0x07, "x" },
        puback = { CLIENT5, 0x40, 0x09, 0x00, 0x01, 0x10, 0x05, 0x1F, 0x00, 0x02, "no" },
        pubrec = { BROKER5, 0x50, 0x03, 0x00, 0x02, 0x80 },
        pubrel = { CLIENT5, 0x62, 0x03, 0x00, 0x03, 0x92 },
        pubcomp = { BROKER5, 0x70, 0x02, 0x00, 0x04 },
    },
    fuzz_v5_subscribe = {
        subscribe = { BROKER5, 0x82, 0x12, 0x00, 0x07, 0x05, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F, 0x00,
                      0x03, "a/#", 0x2D, 0x00, 0x01, "b", 0x00 },
        subscribe_311 = { BROKER4, 0x82, 0x08, 0x00, 0x01, 0x00, 0x03, "a/b", 0x01 },
        suback = { CLIENT5, 0x90, 0x06, 0x00, 0x07, 0x00, 0x01, 0x00, 0x87 },
        unsubscribe = { BROKER5, 0xA2, 0x0F, 0x00, 0x08, 0x07, 0x26, 0x00, 0x01, "k", 0x00, 0x01,
                        "v", 0x00, 0x03, "a/b" },
        unsuback = { CLIENT5, 0xB0, 0x09, 0x00, 0x08, 0x04, 0x1F, 0x00, 0x01, "r", 0x00, 0x11 },
        unsuback_311 = { CLIENT4, 0xB0, 0x02, 0x00, 0x02 },
    },
    -- byte 0: 0 will, 1 CONNECT, 2 CONNACK, 3 PUBLISH, 4..7 acks, 8..11 (UN)SUB(ACK),
    -- 12 DISCONNECT, 13 AUTH
    fuzz_props = {
        will = { 0, 0x18, 0x00, 0x00, 0x00, 0x05, 0x01, 0x01, 0x08, 0x00, 0x03, "r/t" },
        connect = { 1, 0x26, 0x00, 0x01, "a", 0x00, 0x01, "b", 0x21, 0x00, 0x14, 0x11, 0x00,
                    0x00, 0x0E, 0x10, 0x27, 0x00, 0x00, 0x10, 0x00, 0x17, 0x01 },
        connack = { 2, 0x12, 0x00, 0x02, "id", 0x22, 0x00, 0x0A, 0x24, 0x01, 0x25, 0x00, 0x28,
                    0x01, 0x29, 0x01, 0x2A, 0x00, 0x13, 0x00, 0x3C, 0x1A, 0x00, 0x01, "r" },
        publish = { 3, 0x23, 0x00, 0x03, 0x0B, 0x01, 0x0B, 0x80, 0x01, 0x09, 0x00, 0x02, 0x00,
                    0xFF, 0x03, 0x00, 0x04, "text" },
        puback = { 4, 0x1F, 0x00, 0x02, "no", 0x26, 0x00, 0x00, 0x00, 0x00 },
        subscribe = { 8, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F },
        disconnect = { 12, 0x11, 0x00, 0x00, 0x00, 0x00, 0x1C, 0x00, 0x01, "s" },
        auth = { 13, 0x15, 0x00, 0x05, "SCRAM", 0x16, 0x00, 0x03, "abc" },
    },
}
for target, seeds in pairs(v5) do
    for name, t in pairs(seeds) do
        write(target, name:gsub("_", "-"), bytes(t))
    end
end

-- ---- WebSocket: byte 0 the inner read size, byte 1 the caller's mode, then
-- the server: a response ("@ACCEPT@" becomes the right accept) and frames ----

local ok101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" ..
    "Connection: Upgrade\r\nSec-WebSocket-Accept: @ACCEPT@\r\n" ..
    "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
local ws = {
    frames = { 0, 0x10, ok101, 0x82, 0x04, 0x20, 0x02, 0x00, 0x00, 0x02, 0x01, 0x30,
               0x89, 0x02, "hi", 0x80, 0x02, 0x01, "x", 0x8A, 0x00, 0x88, 0x02, 0x03, 0xE8 },
    bytewise = { 1, 0x01, ok101, 0x82, 0x7E, 0x00, 0x80, string.rep("p", 128) },
    huge_length = { 64, 0x02, ok101, 0x82, 0x7F, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
                    0x00, "abc" },
    text = { 7, 0x03, ok101, 0x81, 0x02, "hi" },
    refused = { 0, 0x00, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n" },
    bad_accept = { 0, 0x00, (ok101:gsub("@ACCEPT@", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")) },
}
for name, t in pairs(ws) do
    write("fuzz_ws", name:gsub("_", "-"), bytes(t))
end
