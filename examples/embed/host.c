/*
 * examples/embed/host.c: a C program that embeds Lua 5.4 with two Lua states,
 * each loading zmqtt (the real mqtt/core.so, dlopen'ed through package.cpath)
 * and owning its own clients. Every client of the process is served by one
 * I/O thread. It checks that closing a state detaches exactly its clients
 * from that thread, that the other state's clients keep working, and that
 * closing the last state with clients still connected (a global, one in an
 * unreachable cycle, one held by a suspended coroutine, one mid-connect)
 * ends the I/O thread: none is left, and the host lives on.
 *
 * Usage: host PORT                run the checks against a broker on 127.0.0.1
 *        host PORT --late-client  a client created by a finalizer while
 *                                 lua_close runs must not crash the host
 * Prints "ok N - ..." / "not ok N - ..." lines and exits 0 when all hold.
 * LUA_PATH and LUA_CPATH must find lua/mqtt/init.lua and mqtt/core.so.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static int checks;
static int failures;

static void check(bool ok, const char *what, long got, long want)
{
    checks++;
    if (ok) {
        printf("ok %d - %s\n", checks, what);
    } else {
        failures++;
        printf("not ok %d - %s (got %ld, want %ld)\n", checks, what, got, want);
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The OS threads of this process: the host's and every client's I/O thread. */
static long thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Waits up to 2 s for the thread count to reach `want` (a thread that was
 * just joined is gone at once; one just started shows up at once too). */
static long threads_settle(long want)
{
    long n = thread_count();
    for (int i = 0; i < 200 && n != want; i++) {
        sleep_ms(10);
        n = thread_count();
    }
    return n;
}

/* Whether the zmqtt core library is mapped into this process. */
static bool core_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "/mqtt/core.so") != NULL;
    (void)fclose(f);
    return found;
}

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

/* Runs chunk with the string arguments given; returns its first result as an
 * integer (-1 and a printed message when it raised). Stack: balanced. */
static long run(lua_State *L, const char *chunk, const char *a1, const char *a2)
{
    lua_pushcfunction(L, traceback);
    int base = lua_gettop(L);
    if (luaL_loadstring(L, chunk) != LUA_OK) {
        printf("# load error: %s\n", lua_tostring(L, -1));
        lua_settop(L, base - 1);
        return -1;
    }
    lua_pushstring(L, a1);
    lua_pushstring(L, a2);
    long result = -1;
    if (lua_pcall(L, 2, 1, base) != LUA_OK)
        printf("# error: %s\n", lua_tostring(L, -1));
    else
        result = (long)lua_tointeger(L, -1);
    lua_settop(L, base - 1);
    return result;
}

/* Checks that chunk, run in L, returns 1. */
static void check_chunk(lua_State *L, const char *chunk, const char *what)
{
    long r = run(L, chunk, "", "");
    check(r == 1, what, r, 1);
}

/* The clients the process's I/O loop serves, as state L sees them. */
static long loop_clients(lua_State *L)
{
    return run(L, "return require('mqtt').io_stats().clients", "", "");
}

/* Each state: a global `client`, connected and subscribed to its own topic,
 * and `roundtrip(payload)` that publishes there and dispatches until the
 * message is back. Returns 1. */
static const char SETUP[] =
    "local port, name = ...\n"
    "mqtt = require('mqtt')\n"
    "topic = 'zmqtt/embed/' .. name\n"
    "client = mqtt.Client('', true)\n"
    "client:connect('127.0.0.1', 30, tonumber(port))\n"
    "local got = {}\n"
    "client:on(mqtt.PUBLISH, function(_, d) got[d.message.payload] = true end)\n"
    "local acked = false\n"
    "client:on(mqtt.SUBACK, function() acked = true end)\n"
    "client:subscribe(topic, 1)\n"
    "local function wait(pred)\n"
    "    local deadline = mqtt.monotonic() + 5\n"
    "    while not pred() and mqtt.monotonic() < deadline do client:dispatch(0.05) end\n"
    "    return pred()\n"
    "end\n"
    "assert(wait(function() return acked end), 'no SUBACK')\n"
    "function roundtrip(payload)\n"
    "    client:publish(topic, payload, 1)\n"
    "    return wait(function() return got[payload] end) and 1 or 0\n"
    "end\n"
    "return 1\n";

/* Clients that only lua_close can stop: none is closed by Lua code. Returns
 * how many were started. */
static const char LEFT_OPEN[] =
    "local port = tonumber((...))\n"
    "collectgarbage('stop')   -- keep the unreachable one alive until lua_close\n"
    "do  -- unreachable, in a cycle: its callback holds it\n"
    "    local c = mqtt.Client('', true)\n"
    "    c:connect('127.0.0.1', 30, port)\n"
    "    c:on(mqtt.PUBLISH, function() return c end)\n"
    "end\n"
    "held = coroutine.create(function()  -- held by a suspended coroutine\n"
    "    local c = mqtt.Client('', true)\n"
    "    c:connect('127.0.0.1', 30, port)\n"
    "    coroutine.yield(c:is_connected())\n"
    "end)\n"
    "assert(select(2, coroutine.resume(held)), 'the coroutine did not connect')\n"
    "pending = mqtt.Client('', true)   -- connecting in its I/O thread\n"
    "pending:connect_async('127.0.0.1', 30, port)\n"
    "return 3\n";

/* The Lua source of the --late-client check: an object whose finalizer
 * creates and connects a client. lua_close runs that finalizer, but a
 * userdata given a __gc metatable while lua_close runs is never finalized, so
 * the client's I/O thread outlives the state. Were core.so not pinned, the
 * package library's finalizer would then dlclose it under that thread. */
static const char LATE[] =
    "local port = tonumber((...))\n"
    "local mqtt = require('mqtt')\n"
    "late = setmetatable({}, {__gc = function()\n"
    "    local c = mqtt.Client('', true)\n"
    "    c:connect('127.0.0.1', 1, port)   -- keepalive 1 s: it wakes up soon\n"
    "    survivor = c\n"
    "end})\n"
    "return 1\n";

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    if (L)
        luaL_openlibs(L);
    return L;
}

/* --late-client: Lua never finalizes a client made while lua_close runs, so
 * its thread is left running (Lua's rule); the host must survive it, which
 * needs core.so to stay mapped. */
static int late_client(const char *port)
{
    long base = thread_count();
    lua_State *L = new_state();
    check(L && run(L, LATE, port, "") == 1, "a state with a finalizer that makes a client", 0, 1);
    lua_close(L);
    long left = thread_count() - base;
    printf("# lua_close left %ld client thread(s) running; core.so %s\n", left,
           core_mapped() ? "still mapped" : "unmapped");
    check(left == 0 || core_mapped(), "a thread left behind still has its code mapped", left, 0);
    sleep_ms(2500); /* the client's keepalive is 1 s: its thread wakes up */
    check(true, "the host survived the late client", 0, 0);
    printf("1..%d\n", checks);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        (void)fprintf(stderr, "usage: %s PORT [--late-client]\n", argv[0]);
        return 2;
    }
    const char *port = argv[1];
    (void)setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach a pipe before a crash */
    if (argc > 2 && strcmp(argv[2], "--late-client") == 0)
        return late_client(port);

    long base = thread_count();
    check(!core_mapped(), "core.so is not loaded before any state requires it", 1, 0);

    lua_State *L1 = new_state();
    lua_State *L2 = new_state();
    if (!L1 || !L2) {
        printf("not ok - cannot create Lua states\n");
        return 1;
    }
    check(run(L1, SETUP, port, "one") == 1, "state 1 connected a client", 0, 1);
    long n = threads_settle(base + 1);
    check(n == base + 1, "state 1's client is served by one I/O thread", n, base + 1);
    check(run(L2, SETUP, port, "two") == 1, "state 2 connected a client", 0, 1);
    n = threads_settle(base + 1);
    check(n == base + 1, "state 2's client shares that thread", n, base + 1);
    long extra = run(L2, LEFT_OPEN, port, "");
    check(extra == 3, "state 2 started three more clients it never closes", extra, 3);
    n = loop_clients(L2);
    check(n == 5, "five clients on the loop", n, 5);
    n = thread_count();
    check(n == base + 1, "still one I/O thread", n, base + 1);

    check_chunk(L1, "return roundtrip('one-1')", "state 1 publishes and receives");
    check_chunk(L2, "return roundtrip('two-1')", "state 2 publishes and receives");

    lua_close(L1);
    n = loop_clients(L2);
    check(n == 4, "closing state 1 detached only its client", n, 4);
    n = thread_count();
    check(n == base + 1, "the I/O thread serves state 2 on", n, base + 1);
    check(core_mapped(), "core.so stays loaded for state 2", 0, 1);
    check_chunk(L2, "return roundtrip('two-2')", "state 2 still publishes and receives");
    check_chunk(L2, "return coroutine.status(held) == 'suspended' and 1 or 0",
                "state 2's coroutine still holds its client");

    lua_close(L2);
    n = thread_count(); /* no settling: lua_close must have joined them */
    check(n == base, "closing state 2 closed its four clients and ended the I/O thread", n, base);
    /* luaopen_mqtt_core pins core.so (RTLD_NODELETE), so it stays mapped
     * even when a thread outlives its state (see --late-client). */
    printf("# core.so %s after the last state closed\n",
           core_mapped() ? "still mapped" : "unmapped");
    sleep_ms(300);
    check(thread_count() == base, "the host lives on with no thread left", thread_count(), base);
    printf("1..%d\n", checks);
    return failures ? 1 : 0;
}
