/* Temporary: replaced by the mbedtls implementation. */
#include <lauxlib.h>

#include "lua_tls.h"

void mqtt__lua_tls_open(lua_State *L)
{
    (void)L;
}

mqtt_tls_config *mqtt__lua_tls_check(lua_State *L, int idx)
{
    if (!lua_isnoneornil(L, idx))
        luaL_argerror(L, idx, "TLS is not built");
    return NULL;
}
