/*
 * MQTT 5.0 properties on the Lua boundary. Reading: a caller's table for one
 * packet becomes an mqtt_property array, each name, Lua type and range
 * judged by the protocol table of mqtt.h, each error naming the property and
 * the call. Pushing: a received property block becomes a table. The array
 * lives in a userdata on the stack, so an error raised half-way leaks nothing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "props.h"

/* The longest string or binary value a property carries. */
#define MAX_BYTES 65535u

/* One read: the table, the packet it is for, and the call, for errors. */
typedef struct reader {
    lua_State *L;
    int t;      /* absolute index of the properties table */
    int packet; /* MQTT_PUBLISH, ..., or MQTT_WILL_PROPERTIES */
    const char *fname;
    int arg;
} reader;

/* Raises "bad argument #arg to 'fname' (...)" as MQTTError "invalid argument". */
__attribute__((noreturn, format(printf, 2, 3))) static void fail(const reader *r,
                                                                  const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    lua_pushfstring(r->L, "bad argument #%d to '%s' (%s)", r->arg, r->fname, what);
    mqtt__lua_raise(r->L, "invalid argument", lua_tostring(r->L, -1));
}

/* The packet an array is for, in messages. */
static const char *packet_word(int packet)
{
    return packet == MQTT_WILL_PROPERTIES ? "the will" : mqtt_packet_name(packet);
}

/* A byte property that means yes or no: a boolean in Lua. The other two byte
 * properties are numbers that happen to stop at 1: a format code
 * (payload_format_indicator) and a QoS level (maximum_qos). */
static bool is_flag(const mqtt_property_info *pi)
{
    return pi->type == MQTT_PTYPE_BYTE && pi->id != MQTT_PROP_PAYLOAD_FORMAT_INDICATOR &&
           pi->id != MQTT_PROP_MAXIMUM_QOS;
}

/* The table row of the property named by the key at -2, which must be one a
 * client may put in r's packet. */
static const mqtt_property_info *key_info(const reader *r)
{
    lua_State *L = r->L;
    size_t len = 0;
    if (lua_type(L, -2) != LUA_TSTRING)
        fail(r, "property names must be strings, not %s", luaL_typename(L, -2));
    const char *name = lua_tolstring(L, -2, &len);
    const mqtt_property_info *pi =
        strlen(name) == len ? mqtt_property_lookup(mqtt_property_id(name)) : NULL;
    if (pi == NULL)
        fail(r, "unknown property \"%.64s\"", name);
    if (!mqtt_property_allowed(pi->id, r->packet))
        fail(r, "property \"%s\" is not allowed in %s", pi->name, packet_word(r->packet));
    /* MQTT-3.3.4-6: only a broker puts subscription identifiers in a PUBLISH. */
    if (pi->id == MQTT_PROP_SUBSCRIPTION_IDENTIFIER && r->packet == MQTT_PUBLISH)
        fail(r, "property \"%s\" is not allowed in PUBLISH from a client", pi->name);
    return pi;
}

/* The string at idx as a property's bytes: at most 65535 of them and, unless
 * binary, valid UTF-8 without U+0000. `what` names it in errors. */
static const uint8_t *bytes_at(const reader *r, int idx, bool binary, const char *what,
                               size_t *len)
{
    lua_State *L = r->L;
    if (lua_type(L, idx) != LUA_TSTRING)
        fail(r, "%s must be a string, not %s", what, luaL_typename(L, idx));
    const char *s = lua_tolstring(L, idx, len);
    if (*len > MAX_BYTES)
        fail(r, "%s is longer than %u bytes", what, MAX_BYTES);
    if (!binary && !mqtt_utf8_valid(s, *len))
        fail(r, "%s must be valid UTF-8 without NUL", what);
    return (const uint8_t *)s;
}

/* The integer at -1, in the property's range. */
static uint32_t int_value(const reader *r, const mqtt_property_info *pi)
{
    lua_State *L = r->L;
    if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_Number v = lua_tonumber(L, -1);
        /* The range first, so that the conversion below is defined. */
        if (v >= (lua_Number)pi->min && v <= (lua_Number)pi->max &&
            v == (lua_Number)(uint32_t)v)
            return (uint32_t)v;
    }
    fail(r, "property \"%s\" must be an integer from %lu to %lu", pi->name,
         (unsigned long)pi->min, (unsigned long)pi->max);
}

/* The value at -1 of a property other than user_property into p. */
static void read_value(const reader *r, const mqtt_property_info *pi, mqtt_property *p)
{
    lua_State *L = r->L;
    memset(p, 0, sizeof *p);
    p->id = pi->id;
    if (pi->type == MQTT_PTYPE_STRING || pi->type == MQTT_PTYPE_BINARY) {
        char what[64];
        snprintf(what, sizeof what, "property \"%s\"", pi->name);
        p->data = bytes_at(r, -1, pi->type == MQTT_PTYPE_BINARY, what, &p->len);
    } else if (is_flag(pi)) {
        if (!lua_isboolean(L, -1))
            fail(r, "property \"%s\" must be a boolean, not %s", pi->name, luaL_typename(L, -1));
        p->value = (uint32_t)lua_toboolean(L, -1);
    } else {
        p->value = int_value(r, pi);
    }
}

/* One user property from the strings at name_idx and value_idx; `entry`
 * names the pair in errors. */
static void read_pair(const reader *r, int name_idx, int value_idx, const char *entry,
                      mqtt_property *p)
{
    char what[96];
    memset(p, 0, sizeof *p);
    p->id = MQTT_PROP_USER_PROPERTY;
    snprintf(what, sizeof what, "property \"user_property\" %s: the name", entry);
    p->data = bytes_at(r, name_idx, false, what, &p->len);
    snprintf(what, sizeof what, "property \"user_property\" %s: the value", entry);
    p->data2 = bytes_at(r, value_idx, false, what, &p->len2);
}

static const char pairs_shape[] =
    "property \"user_property\" must be a list of {name, value} pairs or a {name = value} table";

/* How many pairs the user_property table at -1 holds: one per key. */
static size_t pair_count(const reader *r)
{
    lua_State *L = r->L;
    size_t n = 0;
    if (!lua_istable(L, -1))
        fail(r, "%s", pairs_shape);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        n++;
        lua_pop(L, 1);
    }
    return n;
}

/* The list part of the user_property table at u: pairs 1, 2, ... in order. */
static size_t read_listed(const reader *r, int u, mqtt_property *out, size_t cap)
{
    lua_State *L = r->L;
    size_t n = 0;
    for (;;) {
        lua_rawgeti(L, u, (lua_Integer)n + 1);
        if (lua_isnil(L, -1))
            break;
        char entry[32];
        snprintf(entry, sizeof entry, "pair %zu", n + 1);
        if (!lua_istable(L, -1) || n >= cap)
            fail(r, "%s (%s is not a {name, value} table)", pairs_shape, entry);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        read_pair(r, -2, -1, entry, &out[n++]);
        lua_pop(L, 3); /* the strings stay referenced by their pair */
    }
    lua_pop(L, 1);
    return n;
}

/* Whether the key at -2 is one of the list's indexes 1..listed. */
static bool listed_key(lua_State *L, size_t listed)
{
    if (lua_type(L, -2) != LUA_TNUMBER)
        return false;
    lua_Number k = lua_tonumber(L, -2);
    return k >= 1 && k <= (lua_Number)listed && k == (lua_Number)(size_t)k;
}

/* Orders the {name = value} pairs by name, so the same table always makes
 * the same bytes (lua_next's order is the hash table's). */
static int pair_order(const void *a, const void *b)
{
    const mqtt_property *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n == 0 ? 0 : memcmp(x->data, y->data, n);
    if (c != 0)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* The user_property table at -1 into out (room for cap): the listed pairs in
 * their order, then the named ones by name. Returns how many. */
static size_t read_pairs(const reader *r, mqtt_property *out, size_t cap)
{
    lua_State *L = r->L;
    int u = lua_gettop(L);
    size_t listed = read_listed(r, u, out, cap), n = listed;
    lua_pushnil(L);
    while (lua_next(L, u)) {
        if (!listed_key(L, listed)) {
            if (lua_type(L, -2) != LUA_TSTRING || n >= cap)
                fail(r, "%s", pairs_shape);
            char entry[96];
            snprintf(entry, sizeof entry, "\"%.64s\"", lua_tostring(L, -2));
            read_pair(r, -2, -1, entry, &out[n++]);
        }
        lua_pop(L, 1);
    }
    qsort(out + listed, n - listed, sizeof *out, pair_order);
    return n;
}

/* How many array entries the table needs; judges every name on the way. */
static size_t count_entries(const reader *r)
{
    lua_State *L = r->L;
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, r->t)) {
        const mqtt_property_info *pi = key_info(r);
        n += pi->id == MQTT_PROP_USER_PROPERTY ? pair_count(r) : 1;
        lua_pop(L, 1);
    }
    return n;
}

/* Fills p (room for cap) from the table; returns how many entries. */
static size_t fill_entries(const reader *r, mqtt_property *p, size_t cap)
{
    lua_State *L = r->L;
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, r->t)) {
        const mqtt_property_info *pi = key_info(r);
        if (pi->id == MQTT_PROP_USER_PROPERTY)
            n += read_pairs(r, p + n, cap - n);
        else if (n < cap)
            read_value(r, pi, &p[n++]);
        lua_pop(L, 1);
    }
    return n;
}

const mqtt_property *mqtt__lua_props_check(lua_State *L, int idx, int packet_type,
                                           const char *fname, int arg, size_t *n)
{
    *n = 0;
    if (lua_isnoneornil(L, idx)) {
        lua_pushnil(L);
        return NULL;
    }
    reader r = {L, idx > 0 ? idx : lua_gettop(L) + idx + 1, packet_type, fname, arg};
    if (!lua_istable(L, r.t))
        fail(&r, "properties must be a table, not %s", luaL_typename(L, r.t));
    luaL_checkstack(L, 8, "properties");
    size_t cap = count_entries(&r);
    if (cap == 0) {
        lua_pushnil(L);
        return NULL;
    }
    mqtt_property *p = lua_newuserdatauv(L, cap * sizeof *p, 0);
    *n = fill_entries(&r, p, cap);
    return p;
}

/* ---- received blocks -------------------------------------------------- */

/* Pushes one property's value. Stack: +1. */
static void push_value(lua_State *L, const mqtt_property *p, const mqtt_property_info *pi)
{
    if (pi->type == MQTT_PTYPE_PAIR) {
        lua_createtable(L, 2, 0);
        lua_pushlstring(L, (const char *)p->data, p->len);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, (const char *)p->data2, p->len2);
        lua_rawseti(L, -2, 2);
    } else if (pi->type == MQTT_PTYPE_STRING || pi->type == MQTT_PTYPE_BINARY) {
        lua_pushlstring(L, (const char *)p->data, p->len);
    } else if (is_flag(pi)) {
        lua_pushboolean(L, p->value != 0);
    } else {
        lua_pushinteger(L, (lua_Integer)p->value);
    }
}

/* Appends the value at -1 to the list t[name], made when missing. Stack: -1. */
static void append(lua_State *L, int t, const char *name)
{
    lua_getfield(L, t, name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, t, name);
    }
    lua_insert(L, -2); /* list, value */
    lua_rawseti(L, -2, luaL_len(L, -2) + 1);
    lua_pop(L, 1);
}

void mqtt__lua_props_push(lua_State *L, const uint8_t *block, size_t len, int packet_type)
{
    if (block == NULL || len == 0) {
        lua_pushnil(L);
        return;
    }
    /* An event that holds only the block: the public walker reads no more. */
    mqtt_event view;
    memset(&view, 0, sizeof view);
    view.props = block;
    view.props_len = (uint32_t)len;
    luaL_checkstack(L, 4, "properties");
    lua_newtable(L);
    int t = lua_gettop(L);
    size_t pos = 0;
    mqtt_property p;
    while (mqtt_event_property_next(&view, &pos, &p)) {
        const mqtt_property_info *pi = mqtt_property_lookup(p.id);
        if (pi == NULL)
            break; /* not in a block the codec validated */
        push_value(L, &p, pi);
        if (pi->type == MQTT_PTYPE_PAIR || (pi->repeats & MQTT_PACKET_BIT(packet_type)) != 0)
            append(L, t, pi->name);
        else
            lua_setfield(L, t, pi->name);
    }
}
