/*
 * The Lua binding out of memory: Lua 5.4 embedded with mqtt.core linked in,
 * running a script that uses a whole client against the in-process fake
 * broker. Sweep one: Lua's allocator refuses everything from its n-th
 * allocation on. Sweep two: the core's n-th allocation fails. Each run must
 * end in success or a clear Lua error, never a crash, and once the state is
 * closed no core block and no thread may be left. Run from the repository
 * root (as make does): the script loads lua/mqtt/init.lua.
 */
#include <dirent.h>
#include <stdlib.h>
#include <time.h>

#include "alloc.h"
#include "fake_broker.h"
#include "lua_host.h"
#include "test.h"

/* Everything a program does with a client; the port comes as the argument. */
static const char script[] =
    "local port = ...\n"
    "local mqtt = require('mqtt')\n"
    "local client <close> = mqtt.Client('lua-oom', true, {connect_timeout = 3})\n"
    "client:set_will('will/t', 'bye', 1, false)\n"
    "client:set_username_pw('user', 'pw')\n"
    "client:connect{host = '127.0.0.1', port = port, keepalive = 0}\n"
    "local got = {}\n"
    "client:on(mqtt.PUBLISH, function(_, data) got[data.message.payload] = true end,\n"
    "          mqtt.topic_filter('oom/t'))\n"
    "client:on(mqtt.DISCONNECT, function(_, data) error(data.error) end)\n"
    "local mid = client:publish('oom/out', 'p1', 1)\n"
    "client:on(mqtt.PUBACK, function() got.puback = true end,\n"
    "          function(data) return data.mid == mid end)\n"
    "client:subscribe('oom/t', 1)\n"
    "local deadline = mqtt.monotonic() + 3\n"
    "while not (got.m0 and got.m1 and got.puback) and mqtt.monotonic() < deadline do\n"
    "    client:dispatch(0.1)\n"
    "end\n"
    "assert(got.m0 and got.m1 and got.puback, 'messages missing, no error raised')\n"
    "client:disconnect()\n"
    "client:close()\n";

static fake_broker *broker;

/* Lua's allocator with a budget: once armed, the fail_from-th growing
 * allocation and every one after it fail. Shrinking never fails: Lua 5.4
 * relies on that. */
typedef struct budget {
    bool armed;
    unsigned long made, fail_from;
} budget;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    budget *b = ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (b->armed && (ptr == NULL || nsize > osize) && ++b->made >= b->fail_from)
        return NULL;
    return realloc(ptr, nsize);
}

static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* Whether the thread count comes back to n within a second: a joined thread
 * can stay listed in /proc/self/task for a moment while the kernel reaps it. */
static bool threads_back_to(int n)
{
    for (int i = 0; i < 100; i++) {
        if (thread_count() == n)
            return true;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* A Lua state whose require('mqtt.core') finds the statically linked binding. */
static lua_State *new_state(budget *b)
{
    return lua_host_state(limited_alloc, b);
}

/* True when the error on top of L is an MQTTError named "out of memory". */
static bool core_nomem_error(lua_State *L)
{
    bool yes = lua_istable(L, -1) && lua_getfield(L, -1, "name") == LUA_TSTRING &&
               strcmp(lua_tostring(L, -1), "out of memory") == 0;
    lua_pop(L, 1);
    return yes;
}

/* One run of the script; fail_from 0 leaves Lua's allocator alone. Returns
 * false on an outcome other than success or the expected error. */
static bool run(unsigned long fail_from, budget *b)
{
    *b = (budget){false, 0, fail_from};
    lua_State *L = new_state(b);
    bool good = luaL_loadstring(L, script) == LUA_OK;
    lua_pushinteger(L, fake_broker_port(broker));
    b->armed = fail_from > 0;
    int rc = lua_pcall(L, 1, 0, 0);
    b->armed = false; /* closing gets memory back, as a program would */
    if (rc != LUA_OK) {
        bool expected = fail_from ? rc == LUA_ERRMEM : rc == LUA_ERRRUN && core_nomem_error(L);
        if (!expected)
            printf("# failure point %lu: status %d, %s\n", fail_from, rc,
                   luaL_tolstring(L, -1, NULL));
        good = good && expected;
    }
    lua_close(L);
    return good;
}

/* Sweeps n = 1, 2, ... until a run makes fewer allocations than n. The Lua
 * side has some 1,500 points: LUA_OOM_STRIDE=k tries every k-th (valgrind). */
static void sweep(const char *name, bool lua_side)
{
    const char *env = getenv("LUA_OOM_STRIDE");
    unsigned long stride = lua_side && env ? strtoul(env, NULL, 10) : 1;
    stride = stride ? stride : 1;
    long base = mqtt__alloc_live();
    int threads = thread_count();
    bool all_good = true, no_leak = true, no_thread = true;
    unsigned long n, made = 0, points = 0;
    unsigned connections = fake_broker_ended(broker);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (n = 1; n < 1000000; n += stride) {
        budget b;
        mqtt__alloc_fail_at(lua_side ? 0 : n);
        bool good = run(lua_side ? n : 0, &b);
        made = lua_side ? b.made : mqtt__alloc_fail_at(0);
        if (made < n)
            break; /* nothing failed: every point is covered */
        points++;
        all_good = good && all_good;
        no_leak = no_leak && mqtt__alloc_live() == base;
        no_thread = no_thread && threads_back_to(threads);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("# %s: %lu allocation points (stride %lu), %u runs reached the broker, in %.2f s\n",
           name, points, stride, fake_broker_ended(broker) - connections,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    char label[160];
    snprintf(label, sizeof label, "%s: %lu points, each failing: success or a Lua error", name,
             points);
    CHECK(points > 0 && made < n && all_good, label);
    snprintf(label, sizeof label, "%s: no core block left after lua_close", name);
    CHECK(no_leak, label);
    snprintf(label, sizeof label, "%s: no thread left after lua_close", name);
    CHECK(no_thread, label);
}

int main(void)
{
    mqtt__alloc_track();
    broker = fake_broker_start();
    CHECK(broker != NULL, "fake broker listening on 127.0.0.1");
    if (broker) {
        budget b;
        CHECK(run(0, &b), "the script runs to its end with memory to spare");
        sweep("Lua allocator", true);
        sweep("core allocator", false);
    }
    fake_broker_stop(broker);
    return test_done();
}
