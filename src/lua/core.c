/*
 * mqtt.core: the C half of the Lua module. A thin layer over mqtt.h: a
 * userdata box per client, events turned into Lua tables in batches, and
 * plain return values for failures (nil, name, message[, code]) that the
 * Lua half turns into MQTTError values. It never raises on a broker's doing.
 */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compat.h"
#include "props.h"
#include "proto.h"
#include "route.h"
#include "ssl_context.h"
#include "mqtt.h"

#define CLIENT_MT MQTT_LUA_CLIENT_MT

typedef struct zbox {
    mqtt_client *c;
    mqtt_event *pending; /* taken from the core, not yet handed to Lua */
} zbox;

/* Upvalue 1 of next_event: the MQTTMessage metatable. */

void mqtt__lua_raise(lua_State *L, const char *name, const char *message)
{
    luaL_getmetatable(L, CLIENT_MT);
    lua_getfield(L, -1, "new_error");
    if (lua_isfunction(L, -1)) {
        lua_pushstring(L, name);
        lua_pushstring(L, message);
        lua_call(L, 2, 1);
    } else {
        lua_pushstring(L, message);
    }
    lua_error(L);
    __builtin_unreachable(); /* lua_error never returns */
}

/* Raises MQTTError "bad state" through the constructor core.init stored. */
__attribute__((noreturn)) static void raise_bad_state(lua_State *L, const char *fmt, long arg)
{
    mqtt__lua_raise(L, "bad state", lua_pushfstring(L, fmt, (int)arg));
}

/* A client used in a child of fork() belongs to the parent: every method raises. */
static zbox *check_box(lua_State *L)
{
    zbox *b = luaL_checkudata(L, 1, CLIENT_MT);
    if (b->c && mqtt_client_foreign(b->c))
        raise_bad_state(L, "client belongs to process %d", mqtt_client_owner(b->c));
    return b;
}

static mqtt_client *check_open(lua_State *L)
{
    zbox *b = check_box(L);
    if (!b->c)
        raise_bad_state(L, "the client is closed", 0);
    return b->c;
}

/* Pushes nil, name, message[, code]; returns the count. */
static int push_fail(lua_State *L, int status, const char *message, int code)
{
    if (status == MQTT_ERR_NOT_ALLOWED && code < 0)
        code = mqtt_last_reason(); /* the reason code the broker would have given */
    if (!message && (status == MQTT_ERR_INVAL || status == MQTT_ERR_NOT_ALLOWED) &&
        mqtt_last_error()[0])
        message = mqtt_last_error();
    lua_pushnil(L);
    lua_pushstring(L, mqtt_errname(status));
    lua_pushstring(L, message ? message : mqtt_strerror(status));
    if (code < 0)
        return 3;
    lua_pushinteger(L, code);
    return 4;
}

/* A call the core refused: MQTT_ERR_INVAL comes with the core's words, as
 * an argument error of argument arg; anything else as its status. */
static int push_refusal(lua_State *L, int rc, int arg)
{
    const char *why = rc == MQTT_ERR_INVAL ? mqtt_last_error() : "";
    return push_fail(L, rc, why[0] ? why : NULL, rc == MQTT_ERR_INVAL ? arg : -1);
}

static double opt_number(lua_State *L, int t, const char *k, double def)
{
    lua_getfield(L, t, k);
    double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static bool opt_bool(lua_State *L, int t, const char *k, bool def)
{
    lua_getfield(L, t, k);
    bool v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* core.new(client_id, clean_session, opts) -> client | nil, name, message */
static int l_new(lua_State *L)
{
    mqtt_options o;
    mqtt_options_init(&o);
    o.client_id = luaL_checklstring(L, 1, &o.client_id_len);
    o.clean_session = lua_toboolean(L, 2);
    if (lua_istable(L, 3)) {
        o.max_inflight = (uint32_t)opt_number(L, 3, "max_inflight", o.max_inflight);
        o.max_queued = (uint32_t)opt_number(L, 3, "max_queued", o.max_queued);
        o.max_queued_bytes = (size_t)opt_number(L, 3, "max_queued_bytes", (double)o.max_queued_bytes);
        o.max_event_bytes = (size_t)opt_number(L, 3, "max_event_bytes", (double)o.max_event_bytes);
        o.reconnect = opt_bool(L, 3, "reconnect", o.reconnect);
        o.reconnect_min = opt_number(L, 3, "reconnect_min", o.reconnect_min);
        o.reconnect_max = opt_number(L, 3, "reconnect_max", o.reconnect_max);
        o.connect_timeout = opt_number(L, 3, "connect_timeout", o.connect_timeout);
        o.disconnect_timeout = opt_number(L, 3, "disconnect_timeout", o.disconnect_timeout);
        o.log_events = opt_bool(L, 3, "log", false);
        o.max_packet = (size_t)opt_number(L, 3, "maximum_packet_size", (double)o.max_packet);
        o.protocol = (int)opt_number(L, 3, "protocol", o.protocol);
        o.topic_alias = (int)opt_number(L, 3, "topic_alias", o.topic_alias);
        o.store_sync = (int)opt_number(L, 3, "store_sync", o.store_sync);
        /* The string stays referenced by the options table during the call. */
        lua_getfield(L, 3, "store");
        o.store = lua_tostring(L, -1);
        lua_pop(L, 1);
        /* The table stays referenced by the options while the array is used. */
        lua_getfield(L, 3, "properties");
        o.connect_props = mqtt__lua_props_check(L, lua_gettop(L), MQTT_CONNECT, "Client", 3,
                                                &o.connect_prop_count);
    }
    zbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->c = NULL;
    b->pending = NULL;
    luaL_setmetatable(L, CLIENT_MT);
    int rc = mqtt_client_create(&o, &b->c);
    const char *why = mqtt_last_error();
    if (rc != MQTT_OK)
        return push_fail(L, rc, why[0] ? why : rc == MQTT_ERR_SYSTEM ? mqtt_system_error() : NULL,
                         -1);
    return 1;
}

/* core.store_clear(dir, client_id) -> true | nil, name, message */
static int l_store_clear(lua_State *L)
{
    size_t n = 0;
    const char *dir = luaL_checkstring(L, 1);
    const char *id = luaL_checklstring(L, 2, &n);
    int rc = mqtt_store_clear(dir, id, n);
    if (rc != MQTT_OK)
        return push_fail(L, rc, mqtt_last_error()[0] ? mqtt_last_error() : NULL, -1);
    lua_pushboolean(L, 1);
    return 1;
}

/* c:owned(): raises MQTTError "bad state" in a child of fork(), for the
 * methods written in Lua alone. */
static int l_owned(lua_State *L)
{
    check_box(L);
    return 0;
}

/* c:foreign() -> owner pid | nil: whether the client belongs to another process. */
static int l_foreign(lua_State *L)
{
    zbox *b = luaL_checkudata(L, 1, CLIENT_MT);
    if (b->c && mqtt_client_foreign(b->c)) {
        lua_pushinteger(L, mqtt_client_owner(b->c));
        return 1;
    }
    return 0;
}

static void free_events(mqtt_event *ev)
{
    while (ev) {
        mqtt_event *next = ev->next;
        mqtt_event_free(ev);
        ev = next;
    }
}

/* Idempotent; also __gc and __close. Joins the I/O thread (in a child of
 * fork(), releases only the child's copies). */
static int l_close(lua_State *L)
{
    zbox *b = luaL_checkudata(L, 1, CLIENT_MT);
    mqtt_client *c = b->c;
    b->c = NULL;
    mqtt_client_destroy(c);
    free_events(b->pending);
    b->pending = NULL;
    return 0;
}

/* c:set_will(topic, payload, qos, retain, properties) -> true | nil, name,
 * message[, argument] */
static int l_set_will(lua_State *L)
{
    mqtt_client *c = check_open(L);
    size_t tl = 0, pl = 0, np = 0;
    const char *topic = luaL_optlstring(L, 2, NULL, &tl);
    const char *payload = luaL_optlstring(L, 3, "", &pl);
    const mqtt_property *props =
        mqtt__lua_props_check(L, 6, MQTT_WILL_PROPERTIES, "set_will", 5, &np);
    mqtt_message will = {topic, tl, payload, pl, (int)luaL_optinteger(L, 4, 0),
                         lua_toboolean(L, 5), props, np};
    int rc = mqtt_client_set_will(c, topic ? &will : NULL);
    if (rc != MQTT_OK)
        return push_refusal(L, rc, np ? 5 : 1);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_set_credentials(lua_State *L)
{
    mqtt_client *c = check_open(L);
    size_t ul = 0, pl = 0;
    const char *user = luaL_optlstring(L, 2, NULL, &ul);
    const char *pass = luaL_optlstring(L, 3, NULL, &pl);
    int rc = mqtt_client_set_credentials(c, user, ul, pass, pl);
    if (rc != MQTT_OK)
        return push_fail(L, rc, NULL, -1);
    lua_pushboolean(L, 1);
    return 1;
}

static int push_result(lua_State *L, int rc, const mqtt_connect_result *res)
{
    if (rc != MQTT_OK)
        return push_fail(L, rc, res->message, res->return_code);
    lua_pushboolean(L, 1);
    lua_pushboolean(L, res->session_present);
    return 2;
}

/* The servers list at idx (checked by mqtt.checks) into o: an array of the
 * table's strings in a userdata pushed on the stack, which keeps it and the
 * table (still at idx) alive for the call. */
static void connect_servers(lua_State *L, int idx, mqtt_connect_options *o)
{
    size_t n = (size_t)luaL_len(L, idx);
    const char **list = lua_newuserdata(L, (n ? n : 1) * sizeof *list);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (int)i + 1);
        list[i] = luaL_checkstring(L, -1);
        lua_pop(L, 1); /* the table keeps the string */
    }
    o->servers = list;
    o->server_count = n;
    o->host = NULL;
}

/* The ws_headers table at idx (name -> value, checked by mqtt.checks) into
 * o, as connect_servers does: the array in a userdata pushed on the stack. */
static void connect_headers(lua_State *L, int idx, mqtt_connect_options *o)
{
    size_t n = 0;
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1))
        n++;
    mqtt_header *h = lua_newuserdata(L, (n ? n : 1) * sizeof *h);
    size_t i = 0;
    for (lua_pushnil(L); lua_next(L, idx) && i < n; lua_pop(L, 1), i++) {
        h[i].name = luaL_checkstring(L, -2);
        h[i].value = luaL_checkstring(L, -1);
    }
    o->ws_headers = h;
    o->ws_header_count = i;
}

/* c:connect(host, port, keepalive, ka_count, ka_idle, ka_interval, async, ssl_ctx,
 *           servers, proxy, ws_headers, follow_redirects): host or servers */
static int l_connect(lua_State *L)
{
    mqtt_client *c = check_open(L);
    mqtt_connect_options o;
    mqtt_connect_options_init(&o);
    o.host = luaL_optstring(L, 2, NULL);
    if (lua_istable(L, 10))
        connect_servers(L, 10, &o);
    o.proxy = luaL_optstring(L, 11, NULL);
    if (lua_istable(L, 12))
        connect_headers(L, 12, &o);
    o.follow_redirects = lua_toboolean(L, 13);
    o.port = (uint16_t)luaL_checkinteger(L, 3);
    o.keepalive = (uint16_t)luaL_checkinteger(L, 4);
    if (!lua_isnoneornil(L, 5)) {
        o.has_sock_keepalive = true;
        for (int i = 0; i < 3; i++)
            o.sock_keepalive[i] = (int)luaL_checkinteger(L, 5 + i);
    }
    o.tls = mqtt__lua_tls_check(L, 9);
    if (lua_toboolean(L, 8)) {
        int rc = mqtt_client_connect_async(c, &o);
        if (rc != MQTT_OK)
            return push_fail(L, rc, rc == MQTT_ERR_INVAL ? mqtt_last_error() : NULL, -1);
        lua_pushboolean(L, 1);
        return 1;
    }
    mqtt_connect_result res;
    int rc = mqtt_client_connect(c, &o, &res);
    return push_result(L, rc, &res);
}

/* c:server() -> the server in use as given, or nil before any connect */
static int l_server(lua_State *L)
{
    mqtt_client *c = check_open(L);
    char small[256], *buf = small;
    size_t n = mqtt_client_server(c, buf, sizeof small);
    if (n >= sizeof small) { /* a long ws:// path: once more, with room */
        buf = lua_newuserdata(L, n + 1);
        n = mqtt_client_server(c, buf, n + 1);
    }
    if (n == 0)
        lua_pushnil(L);
    else
        lua_pushstring(L, buf);
    return 1;
}

static int l_reconnect(lua_State *L)
{
    mqtt_client *c = check_open(L);
    mqtt_connect_result res;
    int rc = mqtt_client_reconnect(c, &res);
    return push_result(L, rc, &res);
}

/* c:publish(topic, payload, qos, retain, properties) -> mid | nil, name,
 * message[, argument] */
static int l_publish(lua_State *L)
{
    mqtt_client *c = check_open(L);
    size_t tl, pl = 0, np = 0;
    const char *topic = luaL_checklstring(L, 2, &tl);
    const char *payload = luaL_optlstring(L, 3, "", &pl);
    /* Without properties nothing is pushed: the hot path stays as it was. */
    const mqtt_property *props =
        lua_isnoneornil(L, 6) ? NULL : mqtt__lua_props_check(L, 6, MQTT_PUBLISH, "publish", 5, &np);
    uint16_t mid = 0;
    mqtt_message m = {topic, tl, payload, pl, (int)luaL_optinteger(L, 4, 0), lua_toboolean(L, 5),
                      props, np};
    int rc = mqtt_client_publish(c, &m, &mid);
    if (rc != MQTT_OK) {
        const char *why = NULL;
        if (rc == MQTT_ERR_INVAL && mqtt_validate_topic_name(topic, tl, &why) != MQTT_OK)
            return push_fail(L, rc, why, 1);
        return push_refusal(L, rc, np ? 5 : 1);
    }
    lua_pushinteger(L, mid);
    return 1;
}

/* An entry's options at the top: a QoS, or {qos =, no_local =,
 * retain_as_published =, retain_handling =} (mqtt.checks made it). Stack: 0. */
static void read_sub_options(lua_State *L, mqtt_subscription *s)
{
    if (!lua_istable(L, -1)) {
        s->qos = (int)luaL_checkinteger(L, -1);
        return;
    }
    int t = lua_gettop(L);
    s->qos = (int)opt_number(L, t, "qos", 0);
    s->no_local = opt_bool(L, t, "no_local", false);
    s->retain_as_published = opt_bool(L, t, "retain_as_published", false);
    s->retain_handling = (int)opt_number(L, t, "retain_handling", 0);
}

/* c:subscribe({filter, ...}, {options, ...}, unsubscribe, properties,
 * properties_arg) -> mid | nil, name, message[, argument]. Each options is a
 * QoS or an options table (read_sub_options). */
static int l_subscribe(lua_State *L)
{
    mqtt_client *c = check_open(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    bool unsub = lua_toboolean(L, 4);
    int props_arg = (int)luaL_optinteger(L, 6, 2);
    size_t np = 0;
    const mqtt_property *props =
        mqtt__lua_props_check(L, 5, unsub ? MQTT_UNSUBSCRIBE : MQTT_SUBSCRIBE,
                              unsub ? "unsubscribe" : "subscribe", props_arg, &np);
    lua_Integer n = luaL_len(L, 2);
    if (n <= 0 || n > 65535)
        return push_fail(L, MQTT_ERR_INVAL, "empty topic list", -1);
    mqtt_subscription *subs = lua_newuserdatauv(L, (size_t)n * sizeof *subs, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_geti(L, 2, i + 1);
        memset(&subs[i], 0, sizeof subs[i]);
        subs[i].filter = luaL_checklstring(L, -1, &subs[i].filter_len);
        lua_pop(L, 1); /* the string stays referenced by the table */
        if (!unsub) {
            lua_geti(L, 3, i + 1);
            read_sub_options(L, &subs[i]);
            lua_pop(L, 1);
        }
    }
    uint16_t mid = 0;
    int rc = unsub ? mqtt_client_unsubscribe(c, subs, (size_t)n, props, np, &mid)
                   : mqtt_client_subscribe(c, subs, (size_t)n, props, np, &mid);
    /* The core judges the properties before the entries, whose own errors
     * mqtt.checks caught: with properties, a refusal is most likely theirs
     * (under 3.1.1, certainly); the core's words say which. */
    if (rc != MQTT_OK)
        return push_refusal(L, rc, np ? props_arg : 1);
    lua_pushinteger(L, mid);
    return 1;
}

/* c:disconnect([reason_code [, properties]]) -> true | nil, name, message */
static int l_disconnect(lua_State *L)
{
    mqtt_client *c = check_open(L);
    int reason = (int)luaL_optinteger(L, 2, 0);
    size_t np = 0;
    const mqtt_property *props = mqtt__lua_props_check(L, 3, MQTT_DISCONNECT, "disconnect", 2, &np);
    int rc = mqtt_client_disconnect_v(c, reason, props, np);
    if (rc != MQTT_OK)
        return push_refusal(L, rc, np ? 2 : 1);
    lua_pushboolean(L, 1);
    return 1;
}

/* c:set_connect_properties(t) -> true | nil, name, message */
static int l_set_connect_properties(lua_State *L)
{
    mqtt_client *c = check_open(L);
    size_t np = 0;
    const mqtt_property *props =
        mqtt__lua_props_check(L, 2, MQTT_CONNECT, "set_connect_properties", 1, &np);
    int rc = mqtt_client_set_connect_properties(c, props, np);
    if (rc != MQTT_OK)
        return push_refusal(L, rc, 1);
    lua_pushboolean(L, 1);
    return 1;
}

/* c:auth(properties, reason_code) -> true | nil, name, message */
static int l_auth(lua_State *L)
{
    mqtt_client *c = check_open(L);
    size_t np = 0;
    const mqtt_property *props = mqtt__lua_props_check(L, 2, MQTT_AUTH, "auth", 1, &np);
    int rc = mqtt_client_auth(c, (int)luaL_optinteger(L, 3, MQTT_RC_CONTINUE_AUTHENTICATION),
                              props, np);
    if (rc != MQTT_OK)
        return push_refusal(L, rc, rc == MQTT_ERR_INVAL && np ? 1 : 2);
    lua_pushboolean(L, 1);
    return 1;
}

/* c:server_properties() -> the last CONNACK's properties, {} when none. */
static int l_server_properties(lua_State *L)
{
    mqtt_client *c = check_open(L);
    size_t len = 0;
    mqtt_client_server_properties(c, NULL, 0, &len);
    uint8_t *buf = lua_newuserdatauv(L, len ? len : 1, 0);
    if (mqtt_client_server_properties(c, buf, len, &len) != MQTT_OK)
        len = 0; /* a new CONNACK between the calls: its size changed */
    mqtt__lua_props_push(L, buf, len, MQTT_CONNACK);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    return 1;
}

static int l_is_connected(lua_State *L)
{
    zbox *b = check_box(L);
    lua_pushboolean(L, b->c && mqtt_client_is_connected(b->c));
    return 1;
}

static int l_state(lua_State *L)
{
    zbox *b = check_box(L);
    lua_pushstring(L, b->c ? mqtt_client_state(b->c) : "closed");
    return 1;
}

static int l_fd(lua_State *L)
{
    lua_pushinteger(L, mqtt_client_event_fd(check_open(L)));
    return 1;
}

static int l_auto_reconnect(lua_State *L)
{
    mqtt_client_set_auto_reconnect(check_open(L), lua_toboolean(L, 2));
    return 0;
}

static int l_pending(lua_State *L)
{
    mqtt_client *c = check_open(L);
    lua_pushboolean(L, mqtt_client_pending(c, (uint16_t)luaL_checkinteger(L, 2)));
    return 1;
}

static int l_want_pingresp(lua_State *L)
{
    mqtt_client_want_pingresp(check_open(L), lua_toboolean(L, 2));
    return 0;
}

static int l_set_hook(lua_State *L)
{
    mqtt_client_set_reconnect_hook(check_open(L), lua_toboolean(L, 2));
    return 0;
}

static int l_proceed(lua_State *L)
{
    mqtt_client_proceed(check_open(L));
    return 0;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static int l_stats(lua_State *L)
{
    mqtt_stats st;
    mqtt_client_stats(check_open(L), &st);
    lua_createtable(L, 0, 10);
    set_int(L, "queued", (lua_Integer)st.queued);
    set_int(L, "inflight", (lua_Integer)st.inflight);
    set_int(L, "queued_bytes", (lua_Integer)st.queued_bytes);
    set_int(L, "event_bytes", (lua_Integer)st.event_bytes);
    set_int(L, "held_bytes", (lua_Integer)st.held_bytes);
    set_int(L, "reconnects", (lua_Integer)st.reconnects);
    set_int(L, "read_pauses", (lua_Integer)st.read_pauses);
    set_int(L, "downgraded", (lua_Integer)st.downgraded);
    set_int(L, "connect_failures", (lua_Integer)st.connect_failures);
    set_int(L, "logs_dropped", (lua_Integer)st.logs_dropped);
    set_int(L, "expired", (lua_Integer)st.expired);
    set_int(L, "store_corruptions", (lua_Integer)st.store_corruptions);
    return 1;
}

/* Builds the MQTTMessage of ev on the stack. Stack: +1. */
static void push_message(lua_State *L, const mqtt_event *ev)
{
    lua_createtable(L, 0, 6);
    lua_pushlstring(L, ev->topic, ev->topic_len);
    lua_setfield(L, -2, "topic");
    lua_pushlstring(L, (const char *)ev->payload, ev->payload_len);
    lua_setfield(L, -2, "payload");
    set_int(L, "qos", ev->qos);
    lua_pushboolean(L, ev->retain);
    lua_setfield(L, -2, "retain");
    set_int(L, "mid", ev->mid);
    lua_pushboolean(L, ev->dup);
    lua_setfield(L, -2, "dup");
    if (ev->props) { /* none under 3.1.1: no table, no field */
        mqtt__lua_props_push(L, ev->props, ev->props_len, MQTT_PUBLISH);
        lua_setfield(L, -2, "properties");
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
}

/* reason_code and reason (its name in that packet, when it has one) on the
 * table at the top. Stack: 0. */
static void set_reason(lua_State *L, int code, int packet_type)
{
    set_int(L, "reason_code", code);
    const char *name = mqtt_reason_name(code, packet_type);
    if (name) {
        lua_pushstring(L, name);
        lua_setfield(L, -2, "reason");
    }
}

/* A CONNACK's code: 3.1.1's 1 to 5 have names of their own; 5.0's codes are
 * 0 and those from 0x80, which 3.1.1 never uses. None when no CONNACK came. */
static void set_connack_reason(lua_State *L, int code)
{
    if (code < 0)
        return;
    if (code < 1 || code > 5) {
        set_reason(L, code, MQTT_CONNACK);
        return;
    }
    set_int(L, "reason_code", code);
    lua_pushstring(L, mqtt_connack_name(code));
    lua_setfield(L, -2, "reason");
}

/* What a CONNACK event adds to its data. Stack: 0. */
static void set_connack(lua_State *L, const mqtt_event *ev)
{
    lua_pushboolean(L, ev->session_present);
    lua_setfield(L, -2, "session_present");
    if (ev->return_code < 0) /* no CONNACK arrived at all */
        set_int(L, "return_code", -1);
    if (ev->status != MQTT_OK) {
        lua_pushstring(L, mqtt_errname(ev->status));
        lua_setfield(L, -2, "error_name");
    }
    lua_pushboolean(L, ev->sync);
    lua_setfield(L, -2, "sync");
    set_connack_reason(L, ev->return_code);
}

/* SUBACK's granted_qos and reason_codes (one list under both names);
 * UNSUBACK's reason_codes (none under 3.1.1). Stack: 0. */
static void set_reason_codes(lua_State *L, const mqtt_event *ev)
{
    uint32_t n = ev->reasons ? ev->reason_count : 0;
    if (n == 0 && ev->type == MQTT_EV_UNSUBACK)
        return;
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, ev->reasons[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (ev->type == MQTT_EV_SUBACK) {
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "granted_qos");
    }
    lua_setfield(L, -2, "reason_codes");
}


/* Builds the data table of ev. Stack: +1. */
static void push_data(lua_State *L, const mqtt_event *ev)
{
    lua_createtable(L, 0, 3);
    set_int(L, "return_code", ev->return_code < 0 ? 0 : ev->return_code);
    if (ev->has_message) {
        push_message(L, ev);
        lua_setfield(L, -2, "message");
    }
    switch (ev->type) {
    case MQTT_EV_CONNACK:
        set_connack(L, ev);
        break;
    case MQTT_EV_DISCONNECT:
        lua_pushstring(L, mqtt_errname(ev->status));
        lua_setfield(L, -2, "error_name");
        if (ev->from_broker)
            set_reason(L, ev->reason_code, MQTT_DISCONNECT);
        if (ev->reason_code) /* the error's code: the broker's, or the fault the client found */
            set_int(L, "error_code", ev->reason_code);
        break;
    case MQTT_EV_PUBACK:
        if (ev->downgraded) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "downgraded");
        }
        set_reason(L, ev->reason_code, ev->type);
        break;
    case MQTT_EV_PUBREC:
    case MQTT_EV_PUBREL:
    case MQTT_EV_PUBCOMP:
    case MQTT_AUTH:
        set_reason(L, ev->reason_code, ev->type);
        break;
    case MQTT_EV_SUBACK:
    case MQTT_EV_UNSUBACK:
        set_reason_codes(L, ev);
        break;
    case MQTT_EV_LOG:
        set_int(L, "level", ev->level);
        break;
    default:
        break;
    }
    if (ev->text) {
        lua_pushlstring(L, ev->text, ev->text_len);
        lua_setfield(L, -2, "text");
    }
    /* A message's properties went with the message. */
    if (ev->props && !ev->has_message) {
        mqtt__lua_props_push(L, ev->props, ev->props_len, ev->type);
        lua_setfield(L, -2, "properties");
    }
    if (ev->mid && !(ev->type == MQTT_EV_PUBLISH && ev->has_message)) {
        set_int(L, "mid", ev->mid);
    }
}

/* c:next_event(batch_only) -> command, data | nil. Without batch_only an
 * empty batch is refilled from the core. The event is freed only once its
 * table exists, so an out-of-memory error loses nothing. */
static int l_next_event(lua_State *L)
{
    /* Per event: the dispatching call checked the owner (core_of), and the
     * core hands a child nothing. */
    zbox *b = luaL_checkudata(L, 1, CLIENT_MT);
    if (!b->c)
        return 0;
    if (!b->pending && !lua_toboolean(L, 2)) {
        b->pending = mqtt_client_take_events_keep(b->c);
        if (!b->pending)
            return 0; /* an empty take has cleared the fd itself */
    }
    mqtt_event *ev = b->pending;
    if (!ev) {
        /* The whole batch was handed out: the fd may stop being readable. */
        mqtt_client_events_handled(b->c);
        return 0;
    }
    lua_pushinteger(L, ev->type);
    push_data(L, ev);
    b->pending = ev->next;
    mqtt_event_free(ev);
    return 2;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* core.wait({client, ...}, timeout) -> number of clients with events.
 * Sleeps without a client too, so mqtt.sleep works alone. */
static int l_wait(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    double timeout = luaL_optnumber(L, 2, 0);
    lua_Integer n = luaL_len(L, 1);
    struct pollfd stack[32];
    struct pollfd *p = n <= 32 ? stack : lua_newuserdatauv(L, (size_t)n * sizeof *p, 0);
    int ready = 0;
    nfds_t count = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        zbox *b = luaL_testudata(L, -1, CLIENT_MT);
        lua_pop(L, 1);
        if (!b || !b->c)
            continue;
        if (b->pending)
            ready++;
        p[count].fd = mqtt_client_event_fd(b->c);
        p[count].events = POLLIN;
        p[count].revents = 0;
        count++;
    }
    if (ready) {
        lua_pushinteger(L, ready);
        return 1;
    }
    double deadline = now_seconds() + (timeout > 0 ? timeout : 0);
    for (;;) {
        double left = deadline - now_seconds();
        int ms = left <= 0 ? 0 : (left > 3600 ? 3600000 : (int)(left * 1000.0 + 0.999));
        int r = poll(p, count, ms);
        if (r >= 0 || errno != EINTR) {
            lua_pushinteger(L, r > 0 ? r : 0);
            return 1;
        }
    }
}

static int l_topic_matches(lua_State *L)
{
    size_t fl, tl;
    const char *f = luaL_checklstring(L, 1, &fl);
    const char *t = luaL_checklstring(L, 2, &tl);
    lua_pushboolean(L, mqtt_topic_matches(f, fl, t, tl));
    return 1;
}

/* core.shared_filter(filter) -> whether it is "$share/{group}/{filter}" */
static int l_shared_filter(lua_State *L)
{
    size_t len;
    const char *f = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, mqtt_shared_filter_start(f, len) != 0);
    return 1;
}

/* core.check_topic(s, is_filter) -> true | nil, why */
static int l_check_topic(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *why = NULL;
    int rc = lua_toboolean(L, 2) ? mqtt_validate_topic_filter(s, len, &why)
                                 : mqtt_validate_topic_name(s, len, &why);
    if (rc == MQTT_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, why ? why : "invalid topic");
    return 2;
}

static int l_utf8_valid(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, mqtt_utf8_valid(s, len));
    return 1;
}

static int l_connack_name(lua_State *L)
{
    lua_pushstring(L, mqtt_connack_name((int)luaL_checkinteger(L, 1)));
    return 1;
}

static int l_monotonic(lua_State *L)
{
    lua_pushnumber(L, now_seconds());
    return 1;
}

/* core.io_threads(n): the I/O thread count for clients made from now on;
 * raises while a client exists. */
static int l_io_threads(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    int rc = n < 1 || n > 16 ? MQTT_ERR_INVAL : mqtt_set_io_threads((unsigned)n);
    if (rc == MQTT_ERR_INVAL)
        return luaL_argerror(L, 1, "an I/O thread count from 1 to 16");
    if (rc != MQTT_OK)
        raise_bad_state(L, "the I/O thread count is set before the first client", 0);
    return 0;
}

/* core.io_stats() -> {threads, clients, wakeups, services} */
static int l_io_stats(lua_State *L)
{
    mqtt_io_stats st;
    mqtt_io_stats_get(&st);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)st.threads);
    lua_setfield(L, -2, "threads");
    lua_pushinteger(L, (lua_Integer)st.clients);
    lua_setfield(L, -2, "clients");
    lua_pushinteger(L, (lua_Integer)st.wakeups);
    lua_setfield(L, -2, "wakeups");
    lua_pushinteger(L, (lua_Integer)st.services);
    lua_setfield(L, -2, "services");
    return 1;
}

/* c:protocol() -> 4 | 5 | 0 before the first CONNACK. */
static int l_protocol(lua_State *L)
{
    lua_pushinteger(L, mqtt_client_protocol(check_open(L)));
    return 1;
}

/* c:client_id() -> the identifier in use (the broker's assigned one once given). */
static int l_client_id(lua_State *L)
{
    mqtt_client *c = check_open(L);
    char stack[256];
    size_t n = mqtt_client_id(c, stack, sizeof stack);
    if (n <= sizeof stack) {
        lua_pushlstring(L, stack, n);
        return 1;
    }
    size_t cap = n;
    char *big = lua_newuserdatauv(L, cap, 0);
    n = mqtt_client_id(c, big, cap); /* an id assigned meanwhile may differ in length */
    lua_pushlstring(L, big, n < cap ? n : cap);
    return 1;
}

static const luaL_Reg client_methods[] = {
    {"close", l_close},
    {"set_will", l_set_will},
    {"set_credentials", l_set_credentials},
    {"connect", l_connect},
    {"reconnect", l_reconnect},
    {"server", l_server},
    {"publish", l_publish},
    {"subscribe", l_subscribe},
    {"disconnect", l_disconnect},
    {"is_connected", l_is_connected},
    {"protocol", l_protocol},
    {"set_connect_properties", l_set_connect_properties},
    {"auth", l_auth},
    {"server_properties", l_server_properties},
    {"client_id", l_client_id},
    {"state", l_state},
    {"fd", l_fd},
    {"set_auto_reconnect", l_auto_reconnect},
    {"set_hook", l_set_hook},
    {"want_pingresp", l_want_pingresp},
    {"pending", l_pending},
    {"proceed", l_proceed},
    {"stats", l_stats},
    {"foreign", l_foreign},
    {"owned", l_owned},
    {"next_event", NULL},
    {NULL, NULL},
};

static const luaL_Reg module_functions[] = {
    {"new", l_new},
    {"wait", l_wait},
    {"topic_matches", l_topic_matches},
    {"shared_filter", l_shared_filter},
    {"check_topic", l_check_topic},
    {"utf8_valid", l_utf8_valid},
    {"connack_name", l_connack_name},
    {"monotonic", l_monotonic},
    {"io_threads", l_io_threads},
    {"io_stats", l_io_stats},
    {"store_clear", l_store_clear},
    {NULL, NULL},
};

/* core.init(message_metatable, new_error): installs next_event with the
 * metatable as upvalue, and keeps new_error(name, message) for the errors
 * this file raises. */
static int l_init(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_getmetatable(L, CLIENT_MT);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "new_error");
    lua_getfield(L, -1, "__index");
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, l_next_event, 1);
    lua_setfield(L, -2, "next_event");
    lua_pop(L, 2);
    return 0;
}

/*
 * The facts of mqtt.h the Lua half needs, as tables, so it never types them
 * again: the packet types, the event types, the limits of publish, and each
 * status name with the kind of error Lua raises for it.
 */

/* The error kind of a status: "protocol" (MQTTProtocolError), "connection"
 * (MQTTConnectionError) or "error" (MQTTError); NULL for MQTT_OK. No default:
 * a status added to MQTT_STATUS_LIST does not compile (-Wswitch) until it is
 * given its kind here. */
static const char *status_kind(mqtt_status s)
{
    switch (s) {
    case MQTT_OK:
    case MQTT_STATUS_COUNT:
        return NULL;
    case MQTT_ERR_MALFORMED:
    case MQTT_ERR_PROTOCOL:
    case MQTT_ERR_TOO_LARGE:
        return "protocol";
    case MQTT_ERR_REFUSED:
    case MQTT_ERR_DNS:
    case MQTT_ERR_CONNECT:
    case MQTT_ERR_TIMEOUT:
    case MQTT_ERR_IO:
    case MQTT_ERR_CLOSED:
    case MQTT_ERR_KEEPALIVE:
    case MQTT_ERR_NO_CONN:
    case MQTT_ERR_CANCELLED:
    case MQTT_ERR_TLS:
    case MQTT_ERR_PROXY:
        return "connection";
    case MQTT_ERR_NOMEM:
    case MQTT_ERR_INVAL:
    case MQTT_ERR_INCOMPLETE:
    case MQTT_ERR_QUEUE_FULL:
    case MQTT_ERR_NO_ID:
    case MQTT_ERR_STATE:
    case MQTT_ERR_SYSTEM:
    case MQTT_ERR_NOT_ALLOWED:
        return "error";
    }
    return NULL;
}

typedef struct named_int {
    const char *name;
    lua_Integer value;
} named_int;

static const named_int event_types[] = {
    {"CONNACK", MQTT_EV_CONNACK},
    {"PUBLISH", MQTT_EV_PUBLISH},
    {"PUBACK", MQTT_EV_PUBACK},
    {"PUBREC", MQTT_EV_PUBREC},
    {"PUBREL", MQTT_EV_PUBREL},
    {"PUBCOMP", MQTT_EV_PUBCOMP},
    {"SUBACK", MQTT_EV_SUBACK},
    {"UNSUBACK", MQTT_EV_UNSUBACK},
    {"PINGRESP", MQTT_EV_PINGRESP},
    {"DISCONNECT", MQTT_EV_DISCONNECT},
    {"AUTH", MQTT_EV_AUTH},
    {"BEFORE_RECONNECT", MQTT_EV_BEFORE_RECONNECT},
    {"LOG", MQTT_EV_LOG},
    {NULL, 0},
};

static const named_int limits[] = {
    {"max_payload", MQTT_MAX_PAYLOAD},
    {"max_remaining", MQTT_MAX_REMAINING},
    {NULL, 0},
};

/* Sets t[name] = value for each row, t being the table at the top. Stack: 0. */
static void set_named(lua_State *L, const named_int *rows)
{
    for (; rows->name; rows++)
        set_int(L, rows->name, rows->value);
}

/* Sets core.events, core.limits and core.status_kinds ({[mqtt_errname(s)] =
 * kind}, every status but MQTT_OK) on the module table at the top; the
 * packet types come with the protocol tables (proto.c). Stack: 0. */
static void set_facts(lua_State *L)
{
    lua_newtable(L);
    set_named(L, event_types);
    lua_setfield(L, -2, "events");
    lua_newtable(L);
    set_named(L, limits);
    lua_setfield(L, -2, "limits");
    lua_createtable(L, 0, MQTT_STATUS_COUNT);
    for (int s = 0; s < MQTT_STATUS_COUNT; s++) {
        const char *kind = status_kind((mqtt_status)s);
        if (kind) {
            lua_pushstring(L, kind);
            lua_setfield(L, -2, mqtt_errname(s));
        }
    }
    lua_setfield(L, -2, "status_kinds");
}

__attribute__((visibility("default"))) int luaopen_mqtt_core(lua_State *L);
/*
 * Keeps this library mapped until the process ends. Closing a Lua state
 * dlcloses the C modules it loaded; a client's I/O thread that outlived its
 * state (a host that never runs finalizers) must not find its code unmapped.
 */
static const char pin_anchor; /* any address inside this library */

static void pin_library(void)
{
    Dl_info info;
    if (dladdr(&pin_anchor, &info) && info.dli_fname)
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

__attribute__((visibility("default"))) int luaopen_mqtt_core(lua_State *L)
{
    pin_library();
    if (luaL_newmetatable(L, CLIENT_MT)) {
        luaL_newlib(L, client_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    luaL_newlib(L, module_functions);
    lua_pushcfunction(L, l_init);
    lua_setfield(L, -2, "init");
    set_facts(L);
    mqtt__lua_tls_open(L);
    mqtt__lua_route_open(L);
    mqtt__lua_proto_open(L);
    return 1;
}
