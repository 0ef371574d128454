/*
 * The Lua 5.4 C API the binding is written against, provided on Lua 5.1,
 * 5.2, 5.3 and LuaJIT 2.1, so the binding itself has no version #ifdefs.
 * Only what the binding uses; each shim keeps the 5.4 meaning.
 */
#ifndef ZMQTT_LUA_COMPAT_H
#define ZMQTT_LUA_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 504
/* Before 5.4 a userdata has one user value at most; the binding asks for none. */
static inline void *zc_newuserdatauv(lua_State *L, size_t size, int nuvalue)
{
    (void)nuvalue;
    return lua_newuserdata(L, size);
}
#define lua_newuserdatauv zc_newuserdatauv
#endif

#if LUA_VERSION_NUM < 503
/* lua_geti with metamethods, returning the type pushed (5.3's signature). */
static inline int zc_geti(lua_State *L, int idx, lua_Integer i)
{
    if (idx < 0 && idx > LUA_REGISTRYINDEX)
        idx = lua_gettop(L) + idx + 1;
    lua_pushinteger(L, i);
    lua_gettable(L, idx);
    return lua_type(L, -1);
}
#define lua_geti zc_geti
#endif

#if LUA_VERSION_NUM == 501
/* 5.1 has no __len for tables: the raw length is what # gives there too. */
#define luaL_len(L, idx) ((lua_Integer)lua_objlen((L), (idx)))

#ifndef luaL_newlib /* LuaJIT 2.1 has these from 5.2 */
static inline void zc_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    luaL_checkstack(L, nup, "too many upvalues");
    for (; l->name; l++) {
        for (int i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#define luaL_setfuncs zc_setfuncs
#define luaL_newlib(L, l) \
    (lua_createtable((L), 0, (int)(sizeof(l) / sizeof((l)[0]) - 1)), luaL_setfuncs((L), (l), 0))

static inline void zc_setmetatable(lua_State *L, const char *tname)
{
    luaL_getmetatable(L, tname);
    lua_setmetatable(L, -2);
}
#define luaL_setmetatable zc_setmetatable

static inline void *zc_testudata(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    if (!p || !lua_getmetatable(L, idx))
        return NULL;
    luaL_getmetatable(L, tname);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? p : NULL;
}
#define luaL_testudata zc_testudata
#endif /* !luaL_newlib */
#endif /* 501 */

#endif
