/*
 * The Lua binding's property conversion (src/lua/props.c) on its own, before
 * any broker speaks MQTT 5.0 to the client: Lua 5.4 embedded with mqtt.core
 * linked in runs spec/c/lua_props.lua, which turns tables into property
 * arrays, has the codec encode and validate them, and pushes the blocks
 * back as tables. Run from the repository root (as make does).
 */
#include "codec.h"
#include "lua_host.h"
#include "props.h"
#include "test.h"
#include "wire.h"

/* encode(t, packet_type) -> block, status: the table read as the binding
 * reads a call's properties (raising its argument errors, as call 'encode'),
 * encoded by the codec without its length, and what the codec's validation
 * of that block says (0: MQTT_OK). */
static int l_encode(lua_State *L)
{
    int packet = (int)luaL_checkinteger(L, 2);
    size_t n = 0;
    const mqtt_property *p = mqtt__lua_props_check(L, 1, packet, "encode", 1, &n);
    mqtt_writer count = {NULL, 0, true};
    mqtt__w_props(&count, p, n, (uint8_t)packet);
    if (!count.ok)
        return luaL_error(L, "the codec refused the array");
    uint8_t *buf = lua_newuserdatauv(L, count.n, 0);
    mqtt_writer w = {buf, 0, true};
    mqtt__w_props(&w, p, n, (uint8_t)packet);
    mqtt_reader r = {buf, w.n, 0};
    uint32_t len = 0;
    if (!w.ok || r_varint(&r, &len) != MQTT_OK || r.pos + len != w.n)
        return luaL_error(L, "the codec wrote a bad block length");
    const char *why = NULL;
    lua_pushlstring(L, (const char *)buf + r.pos, len);
    lua_pushinteger(L, mqtt__props_check(buf + r.pos, len, (uint8_t)packet, &why));
    return 2;
}

/* push(block, packet_type) -> the table the binding makes of it (or nil) */
static int l_push(lua_State *L)
{
    size_t len = 0;
    const char *block = luaL_checklstring(L, 1, &len);
    mqtt__lua_props_push(L, (const uint8_t *)block, len, (int)luaL_checkinteger(L, 2));
    return 1;
}

/* check(cond, name): one TAP line. */
static int l_check(lua_State *L)
{
    CHECK(lua_toboolean(L, 1), luaL_checkstring(L, 2));
    return 0;
}

int main(void)
{
    static const luaL_Reg host[] = {
        {"encode", l_encode}, {"push", l_push}, {"check", l_check}, {NULL, NULL}};
    lua_State *L = lua_host_state(NULL, NULL);
    int rc = luaL_loadfile(L, "spec/c/lua_props.lua");
    if (rc == LUA_OK) {
        luaL_newlib(L, host);
        rc = lua_pcall(L, 1, 0, 0);
    }
    if (rc != LUA_OK)
        printf("# %s\n", luaL_tolstring(L, -1, NULL));
    CHECK(rc == LUA_OK, "spec/c/lua_props.lua ran to its end");
    lua_close(L);
    return test_done();
}
