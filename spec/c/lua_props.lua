-- spec/c/lua_props.lua: run by spec/c/lua_props.c, which passes
-- {encode = , push = , check = }: encode(t, packet) reads t as a call's
-- properties (the binding's reader, as call 'encode') and returns the block
-- the codec encodes from it and the codec's verdict on that block (0: valid);
-- push(block, packet) returns the table the binding makes of a received
-- block; check(cond, name) prints one TAP line. Every property of the C
-- table goes through both directions in every packet that may carry it.

local host = ...
local encode, push, check = host.encode, host.push, host.check
local mqtt = require("mqtt")
local core = require("mqtt.core")

local PT = core.packet_types
local WILL = 0 -- MQTT_WILL_PROPERTIES: the will's properties inside CONNECT

-- Deep equality of plain values and tables.
local function same(a, b)
    if type(a) ~= "table" or type(b) ~= "table" then return a == b end
    for k, v in pairs(a) do
        if not same(v, b[k]) then return false end
    end
    for k in pairs(b) do
        if a[k] == nil then return false end
    end
    return true
end

-- Whether fn raises the MQTTError "invalid argument" of call 'encode' whose
-- message holds every string of `wants`.
local function refuses(fn, wants)
    local ok, err = pcall(fn)
    if ok or not mqtt.is_error(err) or err.name ~= "invalid argument" then return false end
    if not err.message:find("bad argument #1 to 'encode' (", 1, true) then return false end
    for _, w in ipairs(wants) do
        if not err.message:find(w, 1, true) then return false end
    end
    return true
end

-- The packets (types, WILL for the will) of a packet set of core.properties.
local function packets_of(set)
    local list = {}
    for k in pairs(set) do list[#list + 1] = k == "will" and WILL or k end
    table.sort(list)
    return list
end

-- API.md: booleans for the byte flags that mean yes or no; the format
-- indicator (0 or 1) and the maximum QoS (a level) stay integers.
local NUMBER_BYTES = { payload_format_indicator = true, maximum_qos = true }

local function is_flag(name, info)
    return info.type == "byte" and not NUMBER_BYTES[name]
end

-- {value given, value pushed back} pairs for a property.
local function samples(name, info)
    local t = info.type
    if is_flag(name, info) then return { { true, true }, { false, false } } end
    if t == "utf8_string" then return { { "h\195\169llo/w\195\182rld", "h\195\169llo/w\195\182rld" }, { "", "" } } end
    if t == "binary_data" then return { { "\0\1\255bin", "\0\1\255bin" }, { "", "" } } end
    if t == "utf8_string_pair" then
        return {
            { { { "a", "1" }, { "a", "2" }, { "", "" } }, { { "a", "1" }, { "a", "2" }, { "", "" } } },
            { { b = "2", a = "1", ab = "0" }, { { "a", "1" }, { "ab", "0" }, { "b", "2" } } },
            { { { "z", "1" }, a = "2" }, { { "z", "1" }, { "a", "2" } } },
        }
    end
    local mid = math.floor((info.min + info.max) / 2)
    return { { info.min, info.min }, { info.max, info.max }, { mid, mid } }
end

-- Values of the wrong type or out of range for a property.
local function bad_values(name, info)
    local t = info.type
    if is_flag(name, info) then return { 1, 0, "yes" } end
    if t == "utf8_string" then return { 5, true, "\255", "a\0b", string.rep("x", 65536) } end
    if t == "binary_data" then return { 5, {}, string.rep("x", 65536) } end
    if t == "utf8_string_pair" then
        return { "x", 5, { { "a" } }, { { "a", 1 } }, { [2] = { "a", "b" } }, { k = 5 }, { { "a\255", "b" } },
            { { "a", "b\0" } }, { "notapair" } }
    end
    return { info.min - 1, info.max + 1, info.min + 0.5, tostring(info.min), true, 0 / 0 }
end

local names = {}
for name in pairs(core.properties) do names[#names + 1] = name end
table.sort(names)
check(#names == 27, "the C table has MQTT 5.0's 27 properties")

for _, name in ipairs(names) do
    local info = core.properties[name]
    for _, pk in ipairs(packets_of(info.packets)) do
        local where = string.format("%s in %s", name, pk == WILL and "the will" or core.packet_names[pk])
        if name == "subscription_identifier" and pk == PT.PUBLISH then
            -- MQTT-3.3.4-6: a client never sends one.
            check(refuses(function() return encode({ [name] = 1 }, pk) end,
                { '"subscription_identifier" is not allowed in PUBLISH' }), where .. ": refused")
        else
            local ok = true
            for _, s in ipairs(samples(name, info)) do
                local done, block, status = pcall(encode, { [name] = s[1] }, pk)
                local want = s[2]
                if info.repeats[pk == WILL and "will" or pk] and info.type ~= "utf8_string_pair" then
                    want = { want } -- a property that may repeat comes back as a list
                end
                ok = ok and done and status == 0 and same(push(block, pk), { [name] = want })
            end
            check(ok, where .. ": every sample comes back as given")
        end
    end

    local refused_everywhere = true
    for pk = 0x10, 0xF0, 0x10 do
        if not info.packets[pk] then
            refused_everywhere = refused_everywhere and refuses(function()
                return encode({ [name] = samples(name, info)[1][1] }, pk)
            end, { '"' .. name .. '" is not allowed in ' .. core.packet_names[pk] })
        end
    end
    if not info.packets.will then
        refused_everywhere = refused_everywhere and refuses(function()
            return encode({ [name] = samples(name, info)[1][1] }, WILL)
        end, { '"' .. name .. '" is not allowed in the will' })
    end
    check(refused_everywhere, name .. ": refused, by name, in every packet that may not carry it")

    local pk = packets_of(info.packets)[1]
    if name == "subscription_identifier" then pk = PT.SUBSCRIBE end
    local all_bad = true
    for _, v in ipairs(bad_values(name, info)) do
        all_bad = all_bad and refuses(function() return encode({ [name] = v }, pk) end, { '"' .. name .. '"' })
    end
    check(all_bad, name .. ": a wrong type or an out-of-range value is refused, naming it")
end

-- The shape of the table itself.
check(refuses(function() return encode({ colour = 1 }, PT.PUBLISH) end, { 'unknown property "colour"' }),
    "an unknown name is refused by name")
check(refuses(function() return encode({ ["content_type\0x"] = "t" }, PT.PUBLISH) end, { "unknown property" }),
    "a name with NUL is unknown")
check(refuses(function() return encode({ 5 }, PT.PUBLISH) end, { "property names must be strings" }),
    "a list is refused")
check(refuses(function() return encode(5, PT.PUBLISH) end, { "properties must be a table" }),
    "a number is refused")
check(select("#", encode({}, PT.PUBLISH)) == 2 and encode({}, PT.PUBLISH) == "", "an empty table is no properties")
check(encode(nil, PT.PUBLISH) == "", "nil is no properties")

-- Exact bytes: ascending identifiers, user properties last in the order given.
local function bytes(...) return string.char(...) end
local block = encode({ content_type = "t", message_expiry_interval = 10,
    user_property = { { "b", "2" }, { "a", "1" } } }, PT.PUBLISH)
check(block == bytes(0x02, 0, 0, 0, 10, 0x03, 0, 1, 0x74, 0x26, 0, 1, 0x62, 0, 1, 0x32, 0x26, 0, 1, 0x61, 0, 1,
    0x31), "PUBLISH properties encode as MQTT 5.0 section 2.2.2 gives")
local named = encode({ user_property = { b = "2", a = "1" } }, PT.PUBLISH)
check(named == encode({ user_property = { { "a", "1" }, { "b", "2" } } }, PT.PUBLISH),
    "a {name = value} table encodes as its pairs sorted by name")
local same_bytes = true
for i = 1, 50 do
    local t = {}
    for j = 1, 20 do t["k" .. ((i * 7 + j * 13) % 20)] = "v" .. j end
    local list = {}
    for k, v in pairs(t) do list[#list + 1] = { k, v } end
    table.sort(list, function(x, y) return x[1] < y[1] end)
    same_bytes = same_bytes and encode({ user_property = t }, PT.CONNECT) ==
        encode({ user_property = list }, PT.CONNECT)
end
check(same_bytes, "{name = value} tables of 20 keys always give the sorted bytes")

-- Received blocks.
check(push("", PT.PUBLISH) == nil, "an empty block is nil")
check(same(push(bytes(0x0B, 5, 0x0B, 0x87, 0x01), PT.PUBLISH), { subscription_identifier = { 5, 135 } }),
    "subscription identifiers of a received PUBLISH are a list, in order")
check(same(push(bytes(0x0B, 5), PT.SUBSCRIBE), { subscription_identifier = 5 }),
    "a subscription identifier that may not repeat is an integer")
check(same(push(bytes(0x26, 0, 1, 0x6B, 0, 1, 0x31, 0x1F, 0, 2, 0x6E, 0x6F, 0x26, 0, 1, 0x6B, 0, 1, 0x32), PT.PUBACK),
    { user_property = { { "k", "1" }, { "k", "2" } }, reason_string = "no" }),
    "received user properties keep their order and repeated names")
check(same(push(bytes(0x24, 1, 0x25, 0, 0x28, 1, 0x01, 1), PT.CONNACK),
    { maximum_qos = 1, retain_available = false, wildcard_subscription_available = true,
        payload_format_indicator = 1 }), "flags are booleans, maximum_qos and payload_format_indicator integers")

-- A refusal raised half-way holds no memory: the array lives in a userdata.
collectgarbage()
local before = collectgarbage("count")
for _ = 1, 2000 do
    pcall(encode, { content_type = "t", user_property = { { "a", "b" }, { "c", 5 } } }, PT.PUBLISH)
end
collectgarbage()
collectgarbage()
check(collectgarbage("count") < before + 16, "2000 refused reads leave nothing behind")
