/*
 * The TLS part of mqtt.core: ssl_context userdata, each a box holding one
 * reference to an immutable mqtt_tls_config (clients take their own at
 * connect, so collecting the box never frees what a client uses). Options
 * arrive checked by the Lua half (lua/mqtt/tls.lua); a context that cannot
 * be built comes back as nil, name, message, and nothing here raises for it.
 */
#include <string.h>

#include "compat.h"
#include "ssl_context.h"

#define CONTEXT_MT "zmqtt.core.ssl_context"
#define MAX_ALPN 32

typedef struct context_box {
    mqtt_tls_config *cfg;
} context_box;

/* Pushes opts[k] (opts at index 1) and returns it as a string, or NULL when
 * absent. The value stays on the stack so the pointer stays valid. */
static const char *opt_string(lua_State *L, const char *k, size_t *len)
{
    lua_getfield(L, 1, k);
    if (lua_isnil(L, -1))
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "ssl_context: %s must be a string", k);
    return lua_tolstring(L, -1, len);
}

/* opts.alpn as a list of C strings in a userdata the GC reclaims; the Lua
 * strings stay referenced by opts.alpn, itself left on the stack. Stack: +2. */
static const char *const *opt_alpn(lua_State *L, size_t *count)
{
    *count = 0;
    lua_getfield(L, 1, "alpn");
    if (lua_isnil(L, -1)) {
        lua_pushnil(L);
        return NULL;
    }
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, -1);
    if (n < 0 || n > MAX_ALPN)
        luaL_error(L, "ssl_context: at most %d alpn protocols", MAX_ALPN);
    const char **list = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *list, 0);
    for (lua_Integer i = 0; i < n; i++) {
        if (lua_geti(L, -2, i + 1) != LUA_TSTRING)
            luaL_error(L, "ssl_context: alpn entries must be strings");
        list[i] = lua_tostring(L, -1); /* kept alive by opts.alpn */
        lua_pop(L, 1);
    }
    list[n] = NULL;
    *count = (size_t)n;
    return list;
}

static void read_options(lua_State *L, mqtt_tls_options *o)
{
    o->cafile = opt_string(L, "cafile", NULL);
    o->capath = opt_string(L, "capath", NULL);
    o->cadata = opt_string(L, "cadata", &o->cadata_len);
    o->certfile = opt_string(L, "certfile", NULL);
    o->keyfile = opt_string(L, "keyfile", NULL);
    o->certdata = opt_string(L, "certdata", &o->certdata_len);
    o->keydata = opt_string(L, "keydata", &o->keydata_len);
    o->key_password = opt_string(L, "key_password", NULL);
    o->server_name = opt_string(L, "server_name", NULL);
    o->psk_identity = opt_string(L, "psk_identity", NULL);
    o->psk = (const uint8_t *)opt_string(L, "psk", &o->psk_len);
    lua_getfield(L, 1, "verify");
    if (!lua_isnil(L, -1))
        o->verify = lua_toboolean(L, -1);
    lua_getfield(L, 1, "min_version");
    if (!lua_isnil(L, -1))
        o->min_version = (int)luaL_checkinteger(L, -1);
    o->alpn = opt_alpn(L, &o->alpn_count);
}

/* core.ssl_context(opts) -> context | nil, name, message.
 * opts: the checked options, psk as raw bytes, min_version as 2 or 3. */
static int l_ssl_context(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_checkstack(L, 24, "ssl_context options");
    mqtt_tls_options o;
    mqtt_tls_options_init(&o);
    read_options(L, &o);
    /* The box exists before the config, so no error can leak the config. */
    context_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->cfg = NULL;
    luaL_setmetatable(L, CONTEXT_MT);
    char err[512];
    int rc = mqtt_tls_config_new(&o, &b->cfg, err, sizeof err);
    if (rc == MQTT_OK)
        return 1;
    lua_pushnil(L);
    lua_pushstring(L, mqtt_errname(rc));
    lua_pushstring(L, err[0] ? err : mqtt_strerror(rc));
    return 3;
}

static int l_is_ssl_context(lua_State *L)
{
    context_box *b = luaL_testudata(L, 1, CONTEXT_MT);
    lua_pushboolean(L, b && b->cfg);
    return 1;
}

/* __gc: drops the box's reference; clients keep theirs. */
static int l_context_gc(lua_State *L)
{
    context_box *b = luaL_checkudata(L, 1, CONTEXT_MT);
    mqtt_tls_config *cfg = b->cfg;
    b->cfg = NULL;
    mqtt_tls_config_unref(cfg);
    return 0;
}

static int l_context_tostring(lua_State *L)
{
    context_box *b = luaL_checkudata(L, 1, CONTEXT_MT);
    lua_pushfstring(L, "mqtt.ssl_context (%p)", (void *)b->cfg);
    return 1;
}

void mqtt__lua_tls_open(lua_State *L)
{
    if (luaL_newmetatable(L, CONTEXT_MT)) {
        lua_pushcfunction(L, l_context_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_context_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "mqtt.ssl_context");
        lua_setfield(L, -2, "__name");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable"); /* immutable from Lua too */
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_ssl_context);
    lua_setfield(L, -2, "ssl_context");
    lua_pushcfunction(L, l_is_ssl_context);
    lua_setfield(L, -2, "is_ssl_context");
}

mqtt_tls_config *mqtt__lua_tls_check(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return NULL;
    context_box *b = luaL_testudata(L, idx, CONTEXT_MT);
    if (!b || !b->cfg) {
        luaL_argerror(L, idx, "ssl_ctx must be a context from mqtt.ssl_context");
        return NULL; /* not reached: luaL_argerror raises */
    }
    return b->cfg;
}
