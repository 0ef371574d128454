/*
 * The client's MQTT 5.0 pieces (src/client/v5.c) on a client that never
 * connects: what a CONNACK announces, the CONNECT's implied properties,
 * outgoing topic aliases (least recently used out), incoming aliases, the
 * size checks a publish meets with and without its alias, and the
 * DISCONNECT the client writes. The loop's fields are set by hand, as a
 * connection would set them.
 */
#include <stdlib.h>

#include "alloc.h"
#include "client_internal.h"
#include "test.h"

static mqtt_client *client(int protocol, int alias_mode, bool clean, size_t max_packet)
{
    mqtt_options o;
    mqtt_options_init(&o);
    o.client_id = "v5";
    o.client_id_len = 2;
    o.protocol = protocol;
    o.topic_alias = alias_mode;
    o.clean_session = clean;
    if (max_packet)
        o.max_packet = max_packet;
    mqtt_client *c = NULL;
    if (mqtt_client_create(&o, &c) != MQTT_OK) {
        printf("Bail out! mqtt_client_create\n");
        exit(1);
    }
    return c;
}

static mqtt_bytes text(const char *s)
{
    return (mqtt_bytes){(const uint8_t *)s, strlen(s)};
}

/* A property block in b (freed by the caller). */
static mqtt_bytes block(mqtt_buf *b, const mqtt_property *p, size_t n)
{
    CHECK(mqtt__v5_props_block(b, p, n) == MQTT_OK, "property block encoded");
    return (mqtt_bytes){b->data, b->len};
}

#define NUM(pid, v) ((mqtt_property){.id = (pid), .value = (v)})
#define STR(pid, s) ((mqtt_property){.id = (pid), .data = (const uint8_t *)(s), .len = strlen(s)})

static void test_connack(void)
{
    mqtt_client *c = client(MQTT_V5, MQTT_ALIAS_AUTO, true, 0);
    const mqtt_property p[] = {
        NUM(MQTT_PROP_RECEIVE_MAXIMUM, 3),
        NUM(MQTT_PROP_TOPIC_ALIAS_MAXIMUM, 2),
        NUM(MQTT_PROP_MAXIMUM_PACKET_SIZE, 100),
        NUM(MQTT_PROP_MAXIMUM_QOS, 1),
        NUM(MQTT_PROP_RETAIN_AVAILABLE, 0),
        NUM(MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE, 0),
        NUM(MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE, 0),
        NUM(MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE, 0),
        NUM(MQTT_PROP_SERVER_KEEP_ALIVE, 7),
        STR(MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, "xyz"),
    };
    mqtt_buf b = {NULL, 0, 0};
    mqtt_packet pk = {.type = MQTT_CONNACK, .version = MQTT_V5};
    pk.props = block(&b, p, sizeof p / sizeof p[0]);
    c->io.keepalive = 60;
    pthread_mutex_lock(&c->mu);
    int rc = mqtt__v5_connack(c, &pk);
    pthread_mutex_unlock(&c->mu);
    const server_limits *l = &c->sh.server;
    CHECK(rc == MQTT_OK && c->sh.version == MQTT_V5, "connack: 5.0 applied");
    CHECK(l->receive_max == 3 && l->alias_max == 2 && l->max_packet == 100 && l->max_qos == 1,
          "connack: receive maximum, topic alias maximum, maximum packet size, maximum QoS");
    CHECK(!l->retain && !l->wildcard && !l->sub_ids && !l->shared,
          "connack: retain, wildcard, identifiers and shared subscriptions unavailable");
    CHECK(c->io.keepalive == 7, "connack: the server keep alive replaces the client's");
    char id[16];
    size_t n = mqtt_client_id(c, id, sizeof id);
    CHECK(n == 3 && memcmp(id, "xyz", 3) == 0, "connack: the assigned client id is the client's");
    uint8_t got[128];
    size_t got_len = 0;
    CHECK(mqtt_client_server_properties(c, got, sizeof got, &got_len) == MQTT_OK &&
              got_len == b.len && memcmp(got, b.data, b.len) == 0,
          "connack: its property block kept as received");
    CHECK(mqtt_client_protocol(c) == MQTT_V5, "connack: protocol() says 5");

    /* A 5.0 CONNACK without properties: the defaults; keep alive unchanged. */
    mqtt_packet bare = {.type = MQTT_CONNACK, .version = MQTT_V5};
    pthread_mutex_lock(&c->mu);
    rc = mqtt__v5_connack(c, &bare);
    pthread_mutex_unlock(&c->mu);
    CHECK(rc == MQTT_OK && l->receive_max == 65535 && l->alias_max == 0 && l->max_packet == 0 &&
              l->max_qos == 2 && l->retain && l->wildcard && l->sub_ids && l->shared,
          "connack: none announced, the protocol's defaults");
    CHECK(c->io.keepalive == 7 && c->sh.server_props.len == 0,
          "connack: keep alive stays, no properties kept");
    n = mqtt_client_id(c, id, sizeof id);
    CHECK(n == 3 && memcmp(id, "xyz", 3) == 0, "connack: the assigned id outlives a CONNACK without one");

    /* Under 3.1.1 ("auto" fell back): what 3.1.1 implies. */
    mqtt_packet old = {.type = MQTT_CONNACK, .version = MQTT_V311};
    pthread_mutex_lock(&c->mu);
    rc = mqtt__v5_connack(c, &old);
    pthread_mutex_unlock(&c->mu);
    CHECK(rc == MQTT_OK && c->sh.version == MQTT_V311 && l->receive_max == 65535 &&
              l->alias_max == 0 && l->max_qos == 2,
          "connack: 3.1.1, no limits");
    mqtt__buf_free(&b);
    mqtt_client_destroy(c);
}

/* A publish's alias as the send path decides it (peek, then take): the
 * alias and whether the topic went with it. */
static bool out_is(mqtt_client *c, const char *topic, uint32_t requested, uint16_t alias,
                   bool with_topic)
{
    mqtt_alias_pick pick = mqtt__v5_alias_peek(c, text(topic), requested);
    uint16_t a = mqtt__v5_alias_take(c, text(topic), pick);
    return a == alias && (a == 0 || pick.with_topic == with_topic);
}

static bool peek_is(mqtt_client *c, const char *topic, uint32_t requested, uint16_t alias,
                    bool with_topic)
{
    mqtt_alias_pick pick = mqtt__v5_alias_peek(c, text(topic), requested);
    return pick.alias == alias && pick.with_topic == with_topic;
}

static void test_alias_out_lru(void)
{
    mqtt_client *c = client(MQTT_V5, MQTT_ALIAS_AUTO, true, 0);
    c->sh.version = MQTT_V5;
    c->sh.server.alias_max = 2;
    CHECK(out_is(c, "a", 0, 1, true) && out_is(c, "a", 0, 1, false),
          "alias out: the first use sends the topic, the second the alias alone");
    CHECK(out_is(c, "b", 0, 2, true), "alias out: a second topic takes the free slot");
    CHECK(out_is(c, "a", 0, 1, false), "alias out: a used again (b is now the oldest)");
    CHECK(peek_is(c, "c", 0, 2, true) && peek_is(c, "b", 0, 2, false),
          "alias peek: c would take b's slot; the table is unchanged");
    CHECK(out_is(c, "c", 0, 2, true), "alias out: c replaces the least recently used, b");
    CHECK(out_is(c, "b", 0, 1, true), "alias out: b back, replacing a (older than c)");
    CHECK(out_is(c, "c", 0, 2, false) && out_is(c, "b", 0, 1, false),
          "alias out: both known now");
    CHECK(c->sh.alias_count == 2, "alias out: slots as the broker allowed");
    mqtt__v5_alias_reset(c);
    CHECK(c->sh.alias_out == NULL && c->sh.alias_count == 0, "alias reset: the table is gone");
    CHECK(out_is(c, "c", 0, 1, true), "alias out: a new connection starts over");
    mqtt__v5_alias_reset(c);

    c->sh.server.alias_max = 1000;
    CHECK(out_is(c, "x", 0, 1, true) && c->sh.alias_count == 128,
          "alias out: at most 128 slots, whatever the broker allows");
    mqtt__v5_alias_reset(c);
    c->sh.server.alias_max = 0;
    CHECK(out_is(c, "x", 0, 0, true), "alias out: none when the broker allows none");
    c->sh.server.alias_max = 2;
    c->sh.version = MQTT_V311;
    CHECK(out_is(c, "x", 0, 0, true) && c->sh.alias_out == NULL, "alias out: none under 3.1.1");
    mqtt_client_destroy(c);

    c = client(MQTT_V5, MQTT_ALIAS_OFF, true, 0);
    c->sh.version = MQTT_V5;
    c->sh.server.alias_max = 2;
    CHECK(out_is(c, "x", 0, 0, true) && c->sh.alias_out == NULL, "alias out: none when off");
    mqtt_client_destroy(c);
}

static void test_alias_out_manual(void)
{
    mqtt_client *c = client(MQTT_V5, MQTT_ALIAS_MANUAL, true, 0);
    c->sh.version = MQTT_V5;
    c->sh.server.alias_max = 2;
    CHECK(out_is(c, "a", 0, 0, true), "manual: no alias asked, none sent");
    CHECK(out_is(c, "a", 2, 2, true) && out_is(c, "a", 2, 2, false),
          "manual: the caller's alias, with the topic the first time only");
    CHECK(out_is(c, "b", 2, 2, true) && out_is(c, "a", 2, 2, true),
          "manual: an alias given to another topic sends that topic again");
    CHECK(out_is(c, "a", 3, 0, true), "manual: an alias above the broker's maximum is not sent");
    CHECK(out_is(c, "b", 1, 1, true) && out_is(c, "a", 2, 2, false),
          "manual: each alias keeps its own topic");
    mqtt_client_destroy(c);
}

/* An incoming PUBLISH with topic and alias (0: no property); its status. */
static int in(mqtt_client *c, mqtt_packet *p, const char *topic, uint32_t alias, mqtt_buf *b,
              uint8_t *reason)
{
    mqtt_property a = NUM(MQTT_PROP_TOPIC_ALIAS, alias);
    memset(p, 0, sizeof *p);
    p->type = MQTT_PUBLISH;
    p->version = MQTT_V5;
    p->topic = text(topic);
    if (alias)
        p->props = block(b, &a, 1);
    const char *why = NULL;
    *reason = 0;
    return mqtt__v5_alias_in(c, p, reason, &why);
}

static bool topic_is(const mqtt_packet *p, const char *t)
{
    return p->topic.len == strlen(t) && memcmp(p->topic.data, t, p->topic.len) == 0;
}

static void test_alias_in(void)
{
    mqtt_client *c = client(MQTT_V5, MQTT_ALIAS_AUTO, true, 0);
    mqtt_buf b = {NULL, 0, 0};
    mqtt_packet p;
    uint8_t reason;
    c->io.alias_in_max = 3;
    CHECK(in(c, &p, "t/1", 0, &b, &reason) == MQTT_OK && topic_is(&p, "t/1") &&
              c->io.alias_in == NULL,
          "alias in: a topic without alias as it is");
    CHECK(in(c, &p, "", 0, &b, &reason) == MQTT_ERR_PROTOCOL && reason == MQTT_RC_PROTOCOL_ERROR,
          "alias in: neither topic nor alias: 0x82");
    CHECK(in(c, &p, "t/1", 2, &b, &reason) == MQTT_OK && topic_is(&p, "t/1"),
          "alias in: a topic sets its alias");
    CHECK(in(c, &p, "", 2, &b, &reason) == MQTT_OK && topic_is(&p, "t/1") &&
              p.topic.data == c->io.alias_in[1].data,
          "alias in: the alias alone gives the full topic");
    CHECK(in(c, &p, "t/22", 2, &b, &reason) == MQTT_OK && in(c, &p, "", 2, &b, &reason) ==
              MQTT_OK && topic_is(&p, "t/22"),
          "alias in: the broker may give an alias another topic");
    CHECK(in(c, &p, "", 3, &b, &reason) == MQTT_ERR_PROTOCOL && reason == MQTT_RC_PROTOCOL_ERROR,
          "alias in: an alias never set: 0x82");
    CHECK(in(c, &p, "t", 4, &b, &reason) == MQTT_ERR_PROTOCOL &&
              reason == MQTT_RC_TOPIC_ALIAS_INVALID,
          "alias in: above the maximum announced: 0x94");
    mqtt__v5_alias_reset(c);
    CHECK(c->io.alias_in == NULL && in(c, &p, "", 2, &b, &reason) == MQTT_ERR_PROTOCOL,
          "alias in: forgotten with the connection");
    c->io.alias_in_max = 0;
    CHECK(in(c, &p, "t", 1, &b, &reason) == MQTT_ERR_PROTOCOL &&
              reason == MQTT_RC_TOPIC_ALIAS_INVALID,
          "alias in: none announced, any alias is 0x94");
    mqtt__v5_alias_reset(c);
    mqtt__buf_free(&b);
    mqtt_client_destroy(c);
}

static const mqtt_property *find(const mqtt_property *p, size_t n, uint8_t id)
{
    for (size_t i = 0; i < n; i++)
        if (p[i].id == id)
            return &p[i];
    return NULL;
}

static void test_connect_props(void)
{
    mqtt_property *p = NULL;
    size_t n = 99;
    mqtt_client *c = client(MQTT_V5, MQTT_ALIAS_AUTO, true, 0);
    CHECK(mqtt__v5_connect_props(c, &p, &n) == MQTT_OK && n == 0 && p == NULL,
          "connect props: a clean session, no limit, nothing");
    mqtt_client_destroy(c);

    c = client(MQTT_V5, MQTT_ALIAS_AUTO, false, 0);
    CHECK(mqtt__v5_connect_props(c, &p, &n) == MQTT_OK && n == 1 &&
              p[0].id == MQTT_PROP_SESSION_EXPIRY_INTERVAL && p[0].value == UINT32_MAX,
          "connect props: a persistent session never expires unless told");
    mqtt__free(p);
    const mqtt_property user[] = {NUM(MQTT_PROP_SESSION_EXPIRY_INTERVAL, 60),
                                  NUM(MQTT_PROP_TOPIC_ALIAS_MAXIMUM, 5)};
    CHECK(mqtt_client_set_connect_properties(c, user, 2) == MQTT_OK, "connect props: set");
    CHECK(mqtt__v5_connect_props(c, &p, &n) == MQTT_OK && n == 2 &&
              find(p, n, MQTT_PROP_SESSION_EXPIRY_INTERVAL)->value == 60 &&
              find(p, n, MQTT_PROP_TOPIC_ALIAS_MAXIMUM)->value == 5,
          "connect props: the user's session expiry wins");
    mqtt__free(p);
    mqtt_client_destroy(c);

    c = client(MQTT_V5, MQTT_ALIAS_AUTO, true, 1000);
    CHECK(mqtt__v5_connect_props(c, &p, &n) == MQTT_OK && n == 1 &&
              p[0].id == MQTT_PROP_MAXIMUM_PACKET_SIZE && p[0].value == 1000,
          "connect props: options.max_packet announced");
    mqtt__free(p);
    const mqtt_property mp = NUM(MQTT_PROP_MAXIMUM_PACKET_SIZE, 500);
    CHECK(mqtt_client_set_connect_properties(c, &mp, 1) == MQTT_OK &&
              mqtt__v5_connect_props(c, &p, &n) == MQTT_OK && n == 1 && p[0].value == 500,
          "connect props: the property given wins over the option");
    mqtt__free(p);
    mqtt_client_destroy(c);

    c = client(MQTT_V5, MQTT_ALIAS_AUTO, false, 1000);
    CHECK(mqtt__v5_connect_props(c, &p, &n) == MQTT_OK && n == 2 &&
              find(p, n, MQTT_PROP_SESSION_EXPIRY_INTERVAL)->value == UINT32_MAX &&
              find(p, n, MQTT_PROP_MAXIMUM_PACKET_SIZE)->value == 1000,
          "connect props: both implied");
    mqtt__free(p);
    mqtt_client_destroy(c);
}

static int check_pub(mqtt_client *c, const char *topic, size_t payload, int qos, bool retain,
                     const mqtt_property *props, size_t np)
{
    static const uint8_t zeros[64];
    mqtt_message m = {topic, strlen(topic), zeros, payload, qos, retain, props, np};
    mqtt_alias_pick pick;
    return mqtt__v5_check_publish(c, &m, mqtt__v5_props_len(&m), &pick);
}

static void test_publish_checks(void)
{
    mqtt_client *c = client(MQTT_V5, MQTT_ALIAS_OFF, true, 0);
    c->sh.version = MQTT_V5;
    mqtt__v5_connack(c, &(mqtt_packet){.type = MQTT_CONNACK, .version = MQTT_V5});
    /* "abc", 10 bytes, QoS 1: 1 + 1 + (2 + 3 + 2 + 1 + 10) = 20 bytes. */
    c->sh.server.max_packet = 20;
    CHECK(check_pub(c, "abc", 10, 1, false, NULL, 0) == MQTT_OK, "size: exactly the maximum");
    c->sh.server.max_packet = 19;
    CHECK(check_pub(c, "abc", 10, 1, false, NULL, 0) == MQTT_ERR_NOT_ALLOWED &&
              mqtt_last_reason() == MQTT_RC_PACKET_TOO_LARGE,
          "size: one byte over, refused with 0x95");
    CHECK(check_pub(c, "abc", 10, 0, false, NULL, 0) == MQTT_OK, "size: QoS 0 has no packet id");
    const mqtt_property up = {.id = MQTT_PROP_USER_PROPERTY, .data = (const uint8_t *)"k",
                              .len = 1, .data2 = (const uint8_t *)"v", .len2 = 1};
    c->sh.server.max_packet = 27; /* properties: 1 + 2 + 1 + 2 + 1 more */
    CHECK(check_pub(c, "abc", 10, 1, false, &up, 1) == MQTT_OK, "size: with a user property");
    c->sh.server.max_packet = 26;
    CHECK(check_pub(c, "abc", 10, 1, false, &up, 1) == MQTT_ERR_NOT_ALLOWED,
          "size: the property counted");
    c->sh.server.max_packet = 0;
    c->sh.server.max_qos = 1;
    CHECK(check_pub(c, "abc", 1, 2, false, NULL, 0) == MQTT_ERR_NOT_ALLOWED &&
              mqtt_last_reason() == MQTT_RC_QOS_NOT_SUPPORTED,
          "QoS above the maximum: 0x9B");
    c->sh.server.retain = false;
    CHECK(check_pub(c, "abc", 1, 1, true, NULL, 0) == MQTT_ERR_NOT_ALLOWED &&
              mqtt_last_reason() == MQTT_RC_RETAIN_NOT_SUPPORTED,
          "retain unavailable: 0x9A");
    const mqtt_property alias = NUM(MQTT_PROP_TOPIC_ALIAS, 1);
    CHECK(check_pub(c, "abc", 1, 1, false, &alias, 1) == MQTT_ERR_INVAL,
          "a topic_alias needs the manual mode");
    c->sh.version = MQTT_V311;
    CHECK(check_pub(c, "abc", 1, 2, true, NULL, 0) == MQTT_OK, "3.1.1: no broker limits");
    mqtt_client_destroy(c);

    /* Automatic aliases: the size is that of the packet that would go out. */
    c = client(MQTT_V5, MQTT_ALIAS_AUTO, true, 0);
    c->sh.version = MQTT_V5;
    mqtt__v5_connack(c, &(mqtt_packet){.type = MQTT_CONNACK, .version = MQTT_V5});
    c->sh.server.alias_max = 4;
    c->sh.server.max_packet = 23; /* 20 + the alias (3 bytes), topic still sent */
    CHECK(check_pub(c, "abc", 10, 1, false, NULL, 0) == MQTT_OK, "alias: first use with topic");
    c->sh.server.max_packet = 22;
    CHECK(check_pub(c, "abc", 10, 1, false, NULL, 0) == MQTT_ERR_NOT_ALLOWED,
          "alias: first use, the alias counted");
    mqtt__v5_alias_take(c, text("abc"), mqtt__v5_alias_peek(c, text("abc"), 0));
    c->sh.server.max_packet = 20; /* 1 + 1 + (2 + 0 + 2 + 1 + 3 + 10) */
    CHECK(check_pub(c, "abc", 10, 1, false, NULL, 0) == MQTT_OK,
          "alias: once known, the topic no longer counts");
    c->sh.server.max_packet = 19;
    CHECK(check_pub(c, "abc", 10, 1, false, NULL, 0) == MQTT_ERR_NOT_ALLOWED,
          "alias: one byte over without the topic");
    mqtt__v5_alias_reset(c);
    mqtt_client_destroy(c);

    c = client(MQTT_V5, MQTT_ALIAS_MANUAL, true, 0);
    c->sh.version = MQTT_V5;
    mqtt__v5_connack(c, &(mqtt_packet){.type = MQTT_CONNACK, .version = MQTT_V5});
    c->sh.server.alias_max = 1;
    const mqtt_property two = NUM(MQTT_PROP_TOPIC_ALIAS, 2);
    CHECK(check_pub(c, "abc", 1, 1, false, &alias, 1) == MQTT_OK &&
              check_pub(c, "abc", 1, 1, false, &two, 1) == MQTT_ERR_INVAL,
          "manual: within the broker's maximum only");
    CHECK(mqtt__v5_props_len(&(mqtt_message){"abc", 3, NULL, 0, 0, false, &two, 1}) == 0,
          "props len: the caller's alias is left out");
    mqtt_client_destroy(c);
}

static void test_subscribe_checks(void)
{
    mqtt_client *c = client(MQTT_V5, MQTT_ALIAS_AUTO, true, 0);
    c->sh.version = MQTT_V5;
    mqtt__v5_connack(c, &(mqtt_packet){.type = MQTT_CONNACK, .version = MQTT_V5});
    mqtt_subscription plain = {"a/b", 3, 1, false, false, 0};
    mqtt_subscription wild = {"a/+", 3, 1, false, false, 0};
    mqtt_subscription shared = {"$share/g/a", 10, 1, false, false, 0};
    c->sh.server.wildcard = false;
    c->sh.server.shared = false;
    CHECK(mqtt__v5_check_subscribe(c, &plain, 1, false, false, 10) == MQTT_OK,
          "subscribe: a plain filter");
    CHECK(mqtt__v5_check_subscribe(c, &wild, 1, false, false, 10) == MQTT_ERR_NOT_ALLOWED &&
              mqtt_last_reason() == MQTT_RC_WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
          "subscribe: wildcards unavailable, 0xA2");
    CHECK(mqtt__v5_check_subscribe(c, &shared, 1, false, false, 10) == MQTT_ERR_NOT_ALLOWED &&
              mqtt_last_reason() == MQTT_RC_SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
          "subscribe: shared unavailable, 0x9E");
    CHECK(mqtt__v5_check_subscribe(c, &wild, 1, true, false, 10) == MQTT_OK,
          "unsubscribe: no such limits");
    c->sh.server.sub_ids = false;
    CHECK(mqtt__v5_check_subscribe(c, &plain, 1, false, true, 10) == MQTT_ERR_NOT_ALLOWED &&
              mqtt_last_reason() == MQTT_RC_SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
          "subscribe: identifiers unavailable, 0xA1");
    c->sh.server.max_packet = 9;
    CHECK(mqtt__v5_check_subscribe(c, &plain, 1, true, false, 10) == MQTT_ERR_NOT_ALLOWED &&
              mqtt__v5_check_subscribe(c, &plain, 1, true, false, 9) == MQTT_OK,
          "subscribe: the broker's maximum packet size");
    c->sh.version = MQTT_V311;
    CHECK(mqtt__v5_check_subscribe(c, &wild, 1, false, true, 100) == MQTT_OK,
          "subscribe: 3.1.1, no limits");
    mqtt_client_destroy(c);
}

static void test_disconnect(void)
{
    mqtt_client *c = client(MQTT_V5, MQTT_ALIAS_AUTO, true, 0);
    uint8_t b[3];
    c->io.version = MQTT_V5;
    c->sh.disconnect_reason = 0x04;
    const uint8_t with_will[] = {0xE0, 0x01, 0x04};
    CHECK_BYTES(b, mqtt__v5_disconnect_short(c, b), with_will, 3, "disconnect: reason 0x04");
    c->sh.disconnect_reason = 0;
    const uint8_t plain[] = {0xE0, 0x00};
    CHECK_BYTES(b, mqtt__v5_disconnect_short(c, b), plain, 2, "disconnect: success, 2 bytes");
    c->io.version = MQTT_V311;
    CHECK_BYTES(b, mqtt__v5_disconnect_short(c, b), plain, 2, "disconnect: 3.1.1, 2 bytes");
    c->io.version = MQTT_V5;
    c->sh.disconnect_reason = 0x04;
    const mqtt_property rs = STR(MQTT_PROP_REASON_STRING, "bye");
    mqtt__v5_props_block(&c->sh.disconnect_props, &rs, 1);
    CHECK(mqtt__v5_disconnect_short(c, b) == 0, "disconnect: with properties, not short");
    mqtt_buf out = {NULL, 0, 0};
    const uint8_t full[] = {0xE0, 0x08, 0x04, 0x06, 0x1F, 0x00, 0x03, 'b', 'y', 'e'};
    CHECK(mqtt__v5_disconnect_packet(c, &out) == MQTT_OK, "disconnect: packet with properties");
    CHECK_BYTES(out.data, out.len, full, sizeof full, "disconnect: reason and reason string");
    mqtt__buf_free(&out);
    mqtt_client_destroy(c);
}

static void test_handle(void)
{
    mqtt_client *c = client(MQTT_V5, MQTT_ALIAS_AUTO, true, 0);
    const char *why = NULL;
    mqtt_buf b = {NULL, 0, 0};
    const mqtt_property am = STR(MQTT_PROP_AUTHENTICATION_METHOD, "m");
    mqtt_packet auth = {.type = MQTT_AUTH, .version = MQTT_V5, .reason_code = 0x18};
    auth.props = block(&b, &am, 1);
    pthread_mutex_lock(&c->mu);
    int rc = mqtt__v5_handle(c, &auth, &why);
    pthread_mutex_unlock(&c->mu);
    mqtt_event *ev = mqtt_client_take_events(c);
    mqtt_property got;
    CHECK(rc == MQTT_OK && ev && ev->type == MQTT_EV_AUTH && ev->reason_code == 0x18 &&
              !ev->next && mqtt_event_property_find(ev, MQTT_PROP_AUTHENTICATION_METHOD, &got) &&
              got.len == 1 && got.data[0] == 'm',
          "handle: AUTH queued with its reason code and properties");
    mqtt_event_free(ev);
    mqtt_packet second = {.type = MQTT_CONNACK, .version = MQTT_V5};
    c->io.lost_reason = -1;
    CHECK(mqtt__v5_handle(c, &second, &why) == MQTT_ERR_PROTOCOL &&
              c->io.lost_reason == MQTT_RC_PROTOCOL_ERROR && strstr(why, "second CONNACK"),
          "handle: a second CONNACK, 0x82");
    const mqtt_property rs = STR(MQTT_PROP_REASON_STRING, "maintenance");
    mqtt_packet disc = {.type = MQTT_DISCONNECT, .version = MQTT_V5, .reason_code = 0x8B};
    disc.props = block(&b, &rs, 1);
    c->io.lost_reason = -1;
    CHECK(mqtt__v5_handle(c, &disc, &why) == MQTT_ERR_CLOSED && c->io.lost_reason == 0x8B &&
              c->io.lost_from_broker && c->io.lost_props.data == disc.props.data &&
              strstr(why, "(0x8B): maintenance"),
          "handle: the broker's DISCONNECT, its code and reason string");
    c->io.lost_reason = -1;
    c->io.lost_from_broker = false;
    mqtt__buf_free(&b);
    mqtt_client_destroy(c);
}

int main(void)
{
    test_connack();
    test_alias_out_lru();
    test_alias_out_manual();
    test_alias_in();
    test_connect_props();
    test_publish_checks();
    test_subscribe_checks();
    test_disconnect();
    test_handle();
    return test_done();
}
