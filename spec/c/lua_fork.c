/*
 * fork() with live clients: Lua 5.4 embedded with mqtt.core linked in, a
 * client busy with the in-process fake broker, and children forked again and
 * again while its I/O thread works (and so now and then holds the lock). In
 * each child every method must raise MQTTError "bad state" naming the parent,
 * without blocking (an alarm kills a child that hangs), and close() must
 * release nothing the parent uses: the parent's client goes on working. Some
 * children also make a client of their own, which their own I/O loop serves.
 * The client keeps a store: in a child it stays the parent's (the child
 * cannot open it, and closing the client there leaves it to the parent).
 * Run from the repository root (as make does): the script loads lua/mqtt/.
 */
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_broker.h"
#include "lua_host.h"
#include "test.h"

static const char script[] =
    "local port, parent, store = ...\n"
    "local mqtt = require('mqtt')\n"
    "local client = mqtt.Client('lua-fork', true, {connect_timeout = 3,\n"
    "                           store = {path = store, sync = 'batch'}})\n"
    "client:connect{host = '127.0.0.1', port = port, keepalive = 30}\n"
    "local got = 0\n"
    "client:on(mqtt.PUBACK, function() got = got + 1 end)\n"
    "local calls = {\n"
    "    function() return client:publish('t', 'x', 1) end,\n"
    "    function() return client:subscribe('t', 0) end,\n"
    "    function() return client:unsubscribe('t') end,\n"
    "    function() return client:is_connected() end,\n"
    "    function() return client:state() end,\n"
    "    function() return client:dispatch(0) end,\n"
    "    function() return client:wait(1, 0.1) end,\n"
    "    function() return client:stats() end,\n"
    "    function() return client:fd() end,\n"
    "    function() return client:loop() end,\n"
    "    function() return client:on(mqtt.PUBLISH, print, 'a/#') end,\n"
    "    function() return client:off(mqtt.PUBLISH, print) end,\n"
    "    function() return client:set_will('w', 'x', 0, false) end,\n"
    "    function() return client:set_username_pw('u', 'p') end,\n"
    "    function() return client:reconnect() end,\n"
    "    function() return client:disconnect() end,\n"
    "}\n"
    "local function in_child()\n"
    "    for i, call in ipairs(calls) do\n"
    "        local ok, err = pcall(call)\n"
    "        assert(not ok, 'call ' .. i .. ' worked in the child')\n"
    "        assert(mqtt.is_error(err) and err.name == 'bad state', tostring(err))\n"
    "        assert(err.message == 'client belongs to process ' .. parent, err.message)\n"
    "    end\n"
    "    assert(tostring(client):find('belongs to process ' .. parent, 1, true))\n"
    "    assert(mqtt.dispatch(0) == 0, 'the parent client was dispatched in the child')\n"
    "    local ok, err = pcall(mqtt.Client, 'lua-fork', true, {store = store})\n"
    "    assert(not ok and tostring(err):find('in use by process ' .. parent, 1, true),\n"
    "           'the child opened the parent\\'s store: ' .. tostring(err))\n"
    "    client:close()\n"
    "    client:close()\n"
    "end\n"
    "-- A client made in the child is the child's: its own I/O loop serves it.\n"
    "local function own_client()\n"
    "    local mine = mqtt.Client('lua-fork-child', true, {connect_timeout = 3})\n"
    "    mine:connect{host = '127.0.0.1', port = start_broker(), keepalive = 30}\n"
    "    assert(mine:wait(mine:publish('t', 'from the child', 1), 3), 'no PUBACK in the child')\n"
    "    mine:close()\n"
    "    assert(mqtt.io_stats().threads == 0, 'the child\\'s loop outlived its client')\n"
    "end\n"
    "local children = 0\n"
    "for round = 1, 40 do\n"
    "    for _ = 1, 20 do client:publish('t', 'busy', round % 2) end\n"
    "    local ok, why = fork_and_run(round % 10 == 1 and threads_after_fork and function()\n"
    "        in_child()\n"
    "        own_client()\n"
    "    end or in_child)\n"
    "    assert(ok, 'child ' .. round .. ': ' .. tostring(why))\n"
    "    children = children + 1\n"
    "    client:dispatch(0)\n"
    "end\n"
    "assert(client:is_connected(), 'the parent lost its connection')\n"
    "assert(client:wait(client:publish('t', 'after', 1), 5), 'no PUBACK after the forks')\n"
    "client:disconnect()\n"
    "client:close()\n"
    "assert(mqtt.store_clear(store, 'lua-fork'), 'the store stayed in use')\n"
    "return children\n";

/* fork_and_run(fn) -> true | false, why. The child runs fn in its copy of the
 * state and says how it went through a pipe (its exit status may be a leak
 * checker's, which sees the parent's threads' memory as lost in the child);
 * a child that hangs is killed by its alarm. */
static int l_fork_and_run(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int fds[2];
    if (pipe(fds) != 0)
        return luaL_error(L, "pipe failed");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return luaL_error(L, "fork failed");
    if (pid == 0) {
        alarm(5);
        close(fds[0]);
        lua_pushvalue(L, 1);
        const char *verdict = "ok";
        if (lua_pcall(L, 0, 0, 0) != LUA_OK)
            verdict = luaL_tolstring(L, -1, NULL);
        ssize_t w = write(fds[1], verdict, strlen(verdict));
        (void)w;
        _exit(0);
    }
    close(fds[1]);
    char said[512];
    size_t n = 0;
    for (ssize_t r; n < sizeof said - 1 && (r = read(fds[0], said + n, sizeof said - 1 - n)) != 0;)
        if (r > 0)
            n += (size_t)r;
    said[n] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (WIFSIGNALED(status)) {
        lua_pushboolean(L, 0);
        lua_pushfstring(L, "killed by signal %d (a call blocked)", WTERMSIG(status));
        return 2;
    }
    if (strcmp(said, "ok") == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, n ? said : "the child said nothing");
    return 2;
}

/* start_broker() -> port: a fake broker of the calling (child) process's
 * own, which lives until the child exits. */
static int l_start_broker(lua_State *L)
{
    fake_broker *b = fake_broker_start();
    if (!b)
        return luaL_error(L, "the child's fake broker did not start");
    lua_pushinteger(L, fake_broker_port(b));
    return 1;
}

int main(void)
{
    fake_broker *broker = fake_broker_start();
    CHECK(broker != NULL, "fake broker listening on 127.0.0.1");
    if (!broker)
        return test_done();
    lua_State *L = lua_host_state(NULL, NULL);
    lua_register(L, "fork_and_run", l_fork_and_run);
    lua_register(L, "start_broker", l_start_broker);
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    /* TSan refuses new threads in a child of a threaded process; under ASan
     * the child's own client waited in vain for its CONNACK now and then. */
    lua_pushboolean(L, 0);
#else
    lua_pushboolean(L, 1);
#endif
    lua_setglobal(L, "threads_after_fork");
    bool loaded = luaL_loadstring(L, script) == LUA_OK;
    CHECK(loaded, "the script compiles");
    char store[] = "/tmp/zmqtt-fork-XXXXXX";
    if (loaded && mkdtemp(store) != NULL) {
        lua_pushinteger(L, fake_broker_port(broker));
        lua_pushinteger(L, (lua_Integer)getpid());
        lua_pushstring(L, store);
        int rc = lua_pcall(L, 3, 1, 0);
        if (rc != LUA_OK)
            printf("# %s\n", luaL_tolstring(L, -1, NULL));
        CHECK(rc == LUA_OK && lua_tointeger(L, -1) == 40,
              "40 children: every method raises 'bad state', none blocks, close releases "
              "nothing of the parent's, whose client goes on; the store stays the parent's");
        rmdir(store);
    }
    lua_close(L);
    fake_broker_stop(broker);
    return test_done();
}
