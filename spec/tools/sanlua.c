/*
 * A minimal Lua 5.4 interpreter for the sanitizer runs of `make check`: built
 * with the same sanitizer as the module, so nothing has to be preloaded and
 * the shells the specs start stay uninstrumented. Usage: sanlua script [args]
 * or sanlua -e code.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

/* SIGINT raises "interrupted!" in the running Lua code, as lua.c does, so
 * scripts that handle Ctrl-C behave the same under this interpreter. */
static lua_State *running;

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void on_sigint(int sig)
{
    signal(sig, SIG_DFL);
    lua_sethook(running, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg && !luaL_callmeta(L, 1, "__tostring"))
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    else if (!msg)
        msg = lua_tostring(L, -1);
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "-e") == 0 && argc < 3)) {
        fprintf(stderr, "usage: %s script [args] | -e code\n", argv[0]);
        return 2;
    }
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    int first = strcmp(argv[1], "-e") == 0 ? 2 : 1;
    lua_createtable(L, argc, 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - first);
    }
    lua_setglobal(L, "arg");
    lua_pushcfunction(L, traceback);
    int status = first == 2 ? luaL_loadstring(L, argv[2]) : luaL_loadfile(L, argv[1]);
    int nargs = 0;
    for (int i = first + 1; status == LUA_OK && i < argc; i++, nargs++)
        lua_pushstring(L, argv[i]);
    if (status == LUA_OK) {
        running = L;
        signal(SIGINT, on_sigint);
        status = lua_pcall(L, nargs, 0, 1);
        signal(SIGINT, SIG_DFL);
    }
    if (status != LUA_OK)
        fprintf(stderr, "%s: %s\n", argv[0], lua_tostring(L, -1));
    lua_close(L);
    return status == LUA_OK ? 0 : 1;
}
