/*
 * The protocol tables reach Lua from C: packet names, MQTT 5.0 properties
 * (identifier, wire type, the packets that carry them, range) and reason
 * code names per packet, built once at module load from the lookups of
 * mqtt.h, so Lua never types a protocol name again. Read-only data; no state.
 */
#include "mqtt.h"
#include "proto.h"

/* First and last packet type, as the high nibble of the first byte. */
#define FIRST_TYPE 0x10
#define LAST_TYPE 0xF0

/* Pushes a set {[type] = true, will = true} of the packets in mask. Stack: +1. */
static void push_packet_set(lua_State *L, uint32_t mask)
{
    lua_newtable(L);
    for (int t = FIRST_TYPE; t <= LAST_TYPE; t += 0x10) {
        if ((mask & MQTT_PACKET_BIT(t)) != 0) {
            lua_pushboolean(L, 1);
            lua_rawseti(L, -2, t);
        }
    }
    if ((mask & MQTT_PACKET_BIT(MQTT_WILL_PROPERTIES)) != 0) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "will");
    }
}

/* Pushes {id=, name=, type=, packets=, repeats=, min=, max=}. Stack: +1. */
static void push_property(lua_State *L, const mqtt_property_info *pi)
{
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, pi->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, pi->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, mqtt_property_type_name(pi->type));
    lua_setfield(L, -2, "type");
    push_packet_set(L, pi->packets);
    lua_setfield(L, -2, "packets");
    push_packet_set(L, pi->repeats);
    lua_setfield(L, -2, "repeats");
    lua_pushinteger(L, (lua_Integer)pi->min);
    lua_setfield(L, -2, "min");
    lua_pushinteger(L, (lua_Integer)pi->max);
    lua_setfield(L, -2, "max");
}

/* module.properties = {name = info}, module.property_names = {[id] = name}. Stack: 0. */
static void set_properties(lua_State *L)
{
    lua_newtable(L); /* module, properties */
    lua_newtable(L); /* module, properties, property_names */
    for (int id = 1; id <= MQTT_PROP_MAX_ID; id++) {
        const mqtt_property_info *pi = mqtt_property_lookup(id);
        if (pi == NULL)
            continue;
        push_property(L, pi);
        lua_setfield(L, -3, pi->name);
        lua_pushstring(L, pi->name);
        lua_rawseti(L, -2, id);
    }
    lua_setfield(L, -3, "property_names");
    lua_setfield(L, -2, "properties");
}

/* module.packet_names = {[0x10] = "CONNECT"}, module.packet_types the reverse. Stack: 0. */
static void set_packets(lua_State *L)
{
    lua_newtable(L); /* module, names */
    lua_newtable(L); /* module, names, types */
    for (int t = FIRST_TYPE; t <= LAST_TYPE; t += 0x10) {
        lua_pushstring(L, mqtt_packet_name(t));
        lua_rawseti(L, -3, t);
        lua_pushinteger(L, t);
        lua_setfield(L, -2, mqtt_packet_name(t));
    }
    lua_setfield(L, -3, "packet_types");
    lua_setfield(L, -2, "packet_names");
}

/* module.reasons = {[code] = {[type] = name}}, every code of every packet. Stack: 0. */
static void set_reasons(lua_State *L)
{
    lua_newtable(L); /* module, reasons */
    for (int code = 0; code <= 0xFF; code++) {
        if (mqtt_reason_name(code, 0) == NULL)
            continue;
        lua_newtable(L); /* module, reasons, by_type */
        for (int t = FIRST_TYPE; t <= LAST_TYPE; t += 0x10) {
            const char *name = mqtt_reason_name(code, t);
            if (name != NULL) {
                lua_pushstring(L, name);
                lua_rawseti(L, -2, t);
            }
        }
        lua_rawseti(L, -2, code);
    }
    lua_setfield(L, -2, "reasons");
}

/* reason_name(code [, packet_type]) -> the name, or nil when unknown there. */
static int l_reason_name(lua_State *L)
{
    lua_Integer code = luaL_checkinteger(L, 1);
    lua_Integer type = luaL_optinteger(L, 2, 0);
    const char *name = NULL;
    if (code >= 0 && code <= 0xFF && type >= 0 && type <= 0xFF)
        name = mqtt_reason_name((int)code, (int)type);
    if (name == NULL)
        lua_pushnil(L);
    else
        lua_pushstring(L, name);
    return 1;
}

/* module.protocols = {MQTTv311 = 4, MQTTv5 = 5}, the levels CONNECT carries. Stack: 0. */
static void set_protocols(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, MQTT_V311);
    lua_setfield(L, -2, "MQTTv311");
    lua_pushinteger(L, MQTT_V5);
    lua_setfield(L, -2, "MQTTv5");
    lua_setfield(L, -2, "protocols");
}

void mqtt__lua_proto_open(lua_State *L)
{
    set_protocols(L);
    set_packets(L);
    set_properties(L);
    set_reasons(L);
    lua_pushcfunction(L, l_reason_name);
    lua_setfield(L, -2, "reason_name");
}
