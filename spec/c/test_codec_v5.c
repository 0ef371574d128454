/*
 * Unit tests of the MQTT 5.0 codec and the protocol tables: golden bytes for
 * every packet type written from the MQTT 5.0 specification, encoded and
 * decoded byte-exact in the role that receives them; every prefix of a golden
 * packet is incomplete; every validation error path; encoders refusing what
 * cannot go out; the 3.1.1 wrappers agreeing with the versioned encoders.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "test.h"

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__})
#define NBYTES(...) sizeof((const uint8_t[]){__VA_ARGS__})
#define MB(lit) ((mqtt_bytes){(const uint8_t *)(lit), sizeof(lit) - 1})
#define NPROPS(a) (sizeof(a) / sizeof((a)[0]))
#define PINT(i, v) ((mqtt_property){.id = (i), .value = (v)})
#define PSTR(i, s) ((mqtt_property){.id = (i), .data = (const uint8_t *)(s), .len = sizeof(s) - 1})
#define PPAIR(i, k, v)                                                                   \
    ((mqtt_property){.id = (i), .data = (const uint8_t *)(k), .len = sizeof(k) - 1,       \
                     .data2 = (const uint8_t *)(v), .len2 = sizeof(v) - 1})

static mqtt_packet pkt;
static size_t used;
static const char *why;
static uint8_t out[512];

static int decode_as(uint8_t version, mqtt_role role, const uint8_t *b, size_t n)
{
    const mqtt_decode_opts o = {version, role, 0};
    why = NULL;
    used = 0;
    return mqtt__decode(b, n, &o, &pkt, &used, &why);
}

/*
 * The encoder's bytes are the golden ones and its size twin agrees; the
 * golden bytes decode in the receiving role, whole; every prefix of them
 * (an exact-size copy) asks for more.
 */
static void golden(const char *name, size_t size, size_t n, const uint8_t *want, size_t want_len,
                   uint8_t version, mqtt_role role)
{
    char label[160];
    bool prefixes = true;
    snprintf(label, sizeof label, "%s: encodes to the golden bytes", name);
    CHECK_BYTES(out, n, want, want_len, label);
    snprintf(label, sizeof label, "%s: size twin", name);
    CHECK(size == want_len, label);
    for (size_t k = 0; k < want_len; k++) {
        uint8_t *c = malloc(k ? k : 1);
        memcpy(c, want, k);
        prefixes = prefixes && decode_as(version, role, c, k) == MQTT_ERR_INCOMPLETE && used > k;
        free(c);
    }
    snprintf(label, sizeof label, "%s: every prefix is incomplete", name);
    CHECK(prefixes, label);
    snprintf(label, sizeof label, "%s: decodes whole", name);
    CHECK(decode_as(version, role, want, want_len) == MQTT_OK && used == want_len, label);
}

/* The decoded property block holds exactly want, in wire order. */
static bool props_are(mqtt_bytes block, const mqtt_property *want, size_t n)
{
    mqtt_prop_iter it;
    mqtt_property p;
    size_t i = 0;
    mqtt__prop_iter_init(&it, block);
    while (mqtt__prop_next(&it, &p)) {
        if (i >= n || p.id != want[i].id || p.value != want[i].value || p.len != want[i].len ||
            p.len2 != want[i].len2 || (p.len && memcmp(p.data, want[i].data, p.len) != 0) ||
            (p.len2 && memcmp(p.data2, want[i].data2, p.len2) != 0))
            return false;
        i++;
    }
    return i == n;
}

static bool same(mqtt_bytes v, mqtt_bytes want)
{
    return v.len == want.len && (v.len == 0 || memcmp(v.data, want.data, v.len) == 0);
}

/* ---- the tables -------------------------------------------------------- */

static void test_tables(void)
{
    static const char *const names[] = {"CONNECT",  "CONNACK", "PUBLISH",     "PUBACK",
                                        "PUBREC",   "PUBREL",  "PUBCOMP",     "SUBSCRIBE",
                                        "SUBACK",   "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
                                        "PINGRESP", "DISCONNECT", "AUTH"};
    bool ok = true;
    for (int i = 0; i < 15; i++)
        ok = ok && strcmp(mqtt_packet_name((i + 1) << 4), names[i]) == 0;
    CHECK(ok && mqtt_packet_name(0x62) != NULL && strcmp(mqtt_packet_name(0x62), "PUBREL") == 0,
          "tables: the fifteen packet names, flags ignored");
    CHECK(mqtt_packet_name(0) == NULL && mqtt_packet_name(-1) == NULL &&
              mqtt_packet_name(0x100) == NULL,
          "tables: no name for type 0 or out of range");
    ok = true;
    int count = 0;
    for (int id = 0; id < 256; id++) {
        const char *name = mqtt_property_name(id);
        if (name == NULL)
            continue;
        count++;
        ok = ok && mqtt_property_id(name) == id && mqtt_property_type(id) != 0 &&
             mqtt_property_type_name(mqtt_property_type(id)) != NULL;
    }
    CHECK(ok && count == 27, "tables: 27 properties, names and identifiers both ways");
    CHECK(mqtt_property_id("topic_alias") == 0x23 && mqtt_property_type(0x23) == MQTT_PTYPE_U16 &&
              mqtt_property_id("user_property") == 0x26 &&
              mqtt_property_type(0x26) == MQTT_PTYPE_PAIR && mqtt_property_id("nope") == 0 &&
              mqtt_property_id(NULL) == 0 && mqtt_property_type(0x04) == 0,
          "tables: property lookups");
    CHECK(mqtt_property_allowed(MQTT_PROP_WILL_DELAY_INTERVAL, MQTT_WILL_PROPERTIES) &&
              !mqtt_property_allowed(MQTT_PROP_WILL_DELAY_INTERVAL, MQTT_PUBLISH) &&
              mqtt_property_allowed(MQTT_PROP_TOPIC_ALIAS, MQTT_PUBLISH) &&
              !mqtt_property_allowed(MQTT_PROP_TOPIC_ALIAS, MQTT_CONNACK) &&
              mqtt_property_allowed(MQTT_PROP_USER_PROPERTY, MQTT_AUTH),
          "tables: the packets a property may be in");
    CHECK(strcmp(mqtt_reason_name(0x00, MQTT_PUBACK), "success") == 0 &&
              strcmp(mqtt_reason_name(0x00, MQTT_DISCONNECT), "normal disconnection") == 0 &&
              strcmp(mqtt_reason_name(0x00, MQTT_SUBACK), "granted qos 0") == 0 &&
              strcmp(mqtt_reason_name(0x00, 0), "success") == 0 &&
              strcmp(mqtt_reason_name(0x87, MQTT_SUBACK), "not authorized") == 0 &&
              strcmp(mqtt_reason_name(0x97, MQTT_PUBREC), "quota exceeded") == 0 &&
              strcmp(mqtt_reason_name(0x95, MQTT_DISCONNECT), "packet too large") == 0 &&
              strcmp(mqtt_reason_name(0x80, MQTT_CONNACK), "unspecified error") == 0,
          "tables: reason names per packet");
    CHECK(mqtt_reason_name(0x04, MQTT_PUBACK) == NULL && mqtt_reason_name(0x03, 0) == NULL &&
              mqtt_reason_name(0x87, MQTT_PUBREL) == NULL && mqtt_reason_name(-1, 0) == NULL &&
              mqtt_reason_name(0x100, 0) == NULL,
          "tables: no name where the code does not exist");
}

/* ---- golden packets ---------------------------------------------------- */

static void test_connect(void)
{
    static const uint8_t want[] = {
        0x10, 0x2F, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, /* CONNECT, level 5 */
        0xEE, 0x00, 0x3C,                                 /* flags, keepalive 60 */
        0x0F, 0x11, 0x00, 0x00, 0x0E, 0x10,               /* session_expiry_interval 3600 */
        0x21, 0x00, 0x14,                                 /* receive_maximum 20 */
        0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b',           /* user_property, given first */
        0x00, 0x01, 'c',                                  /* client id */
        0x05, 0x18, 0x00, 0x00, 0x00, 0x05,               /* will_delay_interval 5 */
        0x00, 0x01, 'w', 0x00, 0x01, 'x',                 /* will topic and payload */
        0x00, 0x01, 'u', 0x00, 0x01, 'p'};                /* user name, password */
    const mqtt_property props[] = {PPAIR(0x26, "a", "b"), PINT(0x21, 20), PINT(0x11, 3600)};
    const mqtt_property wire[] = {PINT(0x11, 3600), PINT(0x21, 20), PPAIR(0x26, "a", "b")};
    const mqtt_property will[] = {PINT(0x18, 5)};
    const mqtt_connect_params p = {.version = MQTT_V5, .client_id = MB("c"), .keepalive = 60,
                                   .clean_session = true, .will = true, .will_topic = MB("w"),
                                   .will_payload = MB("x"), .will_qos = 1, .will_retain = true,
                                   .username = MB("u"), .password = MB("p"), .props = props,
                                   .nprops = NPROPS(props), .will_props = will, .will_nprops = 1};
    golden("v5 CONNECT", mqtt__connect_size(&p), mqtt__encode_connect(out, &p), want, sizeof want,
           MQTT_V5, MQTT_ROLE_BROKER);
    const mqtt_connect_params *c = &pkt.connect;
    CHECK(pkt.type == MQTT_CONNECT && pkt.version == MQTT_V5 && c->version == MQTT_V5 &&
              c->keepalive == 60 && c->clean_session && c->will && c->will_qos == 1 &&
              c->will_retain && same(c->client_id, MB("c")) && same(c->will_topic, MB("w")) &&
              same(c->will_payload, MB("x")) && same(c->username, MB("u")) &&
              same(c->password, MB("p")),
          "v5 CONNECT: fields");
    CHECK(props_are(pkt.props, wire, 3) && props_are(pkt.will_props, will, 1),
          "v5 CONNECT: properties in ascending order, user_property last; will properties");
    CHECK(decode_as(MQTT_V311, MQTT_ROLE_BROKER, want, sizeof want) == MQTT_OK &&
              pkt.version == MQTT_V5,
          "v5 CONNECT: a broker decodes it by its own level");
}

static void test_connect_v5_password_only(void)
{
    mqtt_connect_params p = {0};
    p.version = MQTT_V5;
    p.password = MB("pw");
    size_t n = mqtt__encode_connect(out, &p);
    CHECK(n == 19 && out[9] == 0x40 && decode_as(MQTT_V5, MQTT_ROLE_BROKER, out, n) == MQTT_OK &&
              same(pkt.connect.password, MB("pw")) && pkt.connect.username.data == NULL,
          "v5 CONNECT: a password without a user name goes out and decodes");
    p.version = MQTT_V311;
    n = mqtt__encode_connect(out, &p);
    CHECK(n == 14 && out[9] == 0x00, "3.1.1 CONNECT: a password without a user name is dropped");
    p.version = 3;
    CHECK(mqtt__connect_size(&p) == 0, "CONNECT: level 3 cannot be encoded");
}

static void test_connack(void)
{
    static const uint8_t want[] = {0x20, 0x0D, 0x01, 0x00, 0x0A, 0x12, 0x00, 0x02, 'i', 'd',
                                   0x22, 0x00, 0x0A, 0x24, 0x01};
    const mqtt_property props[] = {PINT(0x24, 1), PINT(0x22, 10), PSTR(0x12, "id")};
    const mqtt_property wire[] = {PSTR(0x12, "id"), PINT(0x22, 10), PINT(0x24, 1)};
    mqtt_reply_params p = {MQTT_CONNACK, 0, true, 0, props, 3, {NULL, 0}};
    mqtt_property found;
    golden("v5 CONNACK", mqtt__reply_size_v(MQTT_V5, &p), mqtt__encode_reply_v(out, MQTT_V5, &p),
           want, sizeof want, MQTT_V5, MQTT_ROLE_CLIENT);
    CHECK(pkt.type == MQTT_CONNACK && pkt.session_present && pkt.reason_code == 0 &&
              pkt.return_code == 0 && props_are(pkt.props, wire, 3),
          "v5 CONNACK: fields and properties");
    CHECK(mqtt__prop_find(pkt.props, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, &found) && found.value == 10 &&
              !mqtt__prop_find(pkt.props, MQTT_PROP_RECEIVE_MAXIMUM, &found),
          "v5 CONNACK: a property found by identifier");
    mqtt_reply_params refused = {MQTT_CONNACK, 0, false, 0x87, NULL, 0, {NULL, 0}};
    golden("v5 CONNACK not authorized", mqtt__reply_size_v(MQTT_V5, &refused),
           mqtt__encode_reply_v(out, MQTT_V5, &refused), BYTES(0x20, 0x03, 0x00, 0x87, 0x00), 5,
           MQTT_V5, MQTT_ROLE_CLIENT);
    CHECK(pkt.reason_code == 0x87 && pkt.props.len == 0, "v5 CONNACK not authorized: code");
    mqtt_reply_params v3 = {MQTT_CONNACK, 0, true, 0, NULL, 0, {NULL, 0}};
    golden("3.1.1 CONNACK", mqtt__reply_size_v(MQTT_V311, &v3),
           mqtt__encode_reply_v(out, MQTT_V311, &v3), BYTES(0x20, 0x02, 0x01, 0x00), 4,
           MQTT_V311, MQTT_ROLE_CLIENT);
}

static void test_publish(void)
{
    static const uint8_t want[] = {
        0x32, 0x1F, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, /* QoS 1, topic, id 10 */
        0x15, 0x01, 0x01,                                  /* payload_format_indicator 1 */
        0x02, 0x00, 0x00, 0x00, 0x3C,                      /* message_expiry_interval 60 */
        0x03, 0x00, 0x01, 't',                             /* content_type */
        0x23, 0x00, 0x03,                                  /* topic_alias 3 */
        0x26, 0x00, 0x01, 'x', 0x00, 0x01, 'y',            /* user_property */
        'h', 'i'};
    const mqtt_property props[] = {PPAIR(0x26, "x", "y"), PINT(0x23, 3), PSTR(0x03, "t"),
                                   PINT(0x02, 60), PINT(0x01, 1)};
    const mqtt_property wire[] = {PINT(0x01, 1), PINT(0x02, 60), PSTR(0x03, "t"), PINT(0x23, 3),
                                  PPAIR(0x26, "x", "y")};
    mqtt_publish_params p = {MB("a/b"), MB("hi"), 1, false, false, 10, props, NPROPS(props)};
    golden("v5 PUBLISH", mqtt__publish_size_v(MQTT_V5, &p), mqtt__encode_publish_v(out, MQTT_V5, &p),
           want, sizeof want, MQTT_V5, MQTT_ROLE_CLIENT);
    CHECK(pkt.qos == 1 && pkt.packet_id == 10 && same(pkt.topic, MB("a/b")) &&
              same(pkt.payload, MB("hi")) && props_are(pkt.props, wire, NPROPS(wire)),
          "v5 PUBLISH: fields and properties in order");
    CHECK(decode_as(MQTT_V5, MQTT_ROLE_BROKER, want, sizeof want) == MQTT_OK,
          "v5 PUBLISH: a broker decodes it too");

    const mqtt_property alias[] = {PINT(0x23, 5)};
    mqtt_publish_params a = {{(const uint8_t *)"", 0}, MB("z"), 0, false, false, 0, alias, 1};
    golden("v5 PUBLISH by alias alone", mqtt__publish_size_v(MQTT_V5, &a),
           mqtt__encode_publish_v(out, MQTT_V5, &a),
           BYTES(0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, 'z'), 9, MQTT_V5,
           MQTT_ROLE_CLIENT);
    CHECK(pkt.topic.len == 0 && same(pkt.payload, MB("z")), "v5 PUBLISH by alias: empty topic");

    const mqtt_property ids[] = {PINT(0x0B, 1), PINT(0x0B, 2)};
    mqtt_publish_params s = {MB("a"), MB("p"), 0, true, true, 0, ids, 2};
    golden("v5 PUBLISH with two subscription identifiers", mqtt__publish_size_v(MQTT_V5, &s),
           mqtt__encode_publish_v(out, MQTT_V5, &s),
           BYTES(0x31, 0x09, 0x00, 0x01, 'a', 0x04, 0x0B, 0x01, 0x0B, 0x02, 'p'), 11, MQTT_V5,
           MQTT_ROLE_CLIENT);
    CHECK(pkt.retain && !pkt.dup && props_are(pkt.props, ids, 2),
          "v5 PUBLISH: subscription identifiers repeat in order; no DUP on QoS 0");

    const mqtt_property zero[] = {PINT(0x23, 0)};
    mqtt_publish_params z = {MB("a"), MB("p"), 0, false, false, 0, zero, 1};
    CHECK(mqtt__publish_size_v(MQTT_V5, &z) == 0 && mqtt__encode_publish_v(out, MQTT_V5, &z) == 0,
          "v5 PUBLISH: topic alias 0 cannot go out");
}

/* Property blocks whose length takes one, two and three bytes: the writer
 * puts the block after a one-byte length and moves it up when it needs more. */
static void test_publish_long_props(void)
{
    static uint8_t value[20000], buf[20100];
    static const size_t lens[] = {100, 200, 20000};
    memset(value, 'v', sizeof value);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        const mqtt_property props[] = {PINT(0x23, 7), {.id = 0x26, .data = (const uint8_t *)"k",
                                                       .len = 1, .data2 = value, .len2 = lens[i]}};
        mqtt_publish_params p = {MB("t"), MB("xy"), 1, false, false, 9, props, 2};
        size_t size = mqtt__publish_size_v(MQTT_V5, &p);
        size_t n = mqtt__encode_publish_v(buf, MQTT_V5, &p);
        char label[96];
        snprintf(label, sizeof label, "v5 PUBLISH, a %zu-byte property value: round trip", lens[i]);
        CHECK(n == size && n > lens[i] && decode_as(MQTT_V5, MQTT_ROLE_CLIENT, buf, n) == MQTT_OK &&
                  used == n && props_are(pkt.props, props, 2) && same(pkt.payload, MB("xy")) &&
                  pkt.packet_id == 9,
              label);
    }
}

/* An ack or DISCONNECT/AUTH golden; the decoded reason code must be code. */
static void ack_golden(const char *name, mqtt_ack_params p, const uint8_t *want, size_t n,
                       mqtt_role role)
{
    char label[160];
    golden(name, mqtt__ack_size_v(MQTT_V5, &p), mqtt__encode_ack_v(out, MQTT_V5, &p), want, n,
           MQTT_V5, role);
    snprintf(label, sizeof label, "%s: fields", name);
    CHECK(pkt.type == p.type && pkt.packet_id == p.packet_id && pkt.reason_code == p.reason_code &&
              props_are(pkt.props, p.props, p.nprops),
          label);
}

static void test_acks(void)
{
    const mqtt_property reason[] = {PSTR(0x1F, "no")};
    const mqtt_property expiry[] = {PINT(0x11, 0)};
    const mqtt_property auth[] = {PSTR(0x16, "abc"), PSTR(0x15, "SCRAM")};
    const mqtt_property auth_wire[] = {PSTR(0x15, "SCRAM"), PSTR(0x16, "abc")};
    ack_golden("v5 PUBACK short", (mqtt_ack_params){MQTT_PUBACK, 1, 0, NULL, 0},
               BYTES(0x40, 0x02, 0x00, 0x01), 4, MQTT_ROLE_CLIENT);
    ack_golden("v5 PUBACK with a reason code", (mqtt_ack_params){MQTT_PUBACK, 1, 0x10, NULL, 0},
               BYTES(0x40, 0x03, 0x00, 0x01, 0x10), 5, MQTT_ROLE_CLIENT);
    ack_golden("v5 PUBACK with a reason string",
               (mqtt_ack_params){MQTT_PUBACK, 1, 0x10, reason, 1},
               BYTES(0x40, 0x09, 0x00, 0x01, 0x10, 0x05, 0x1F, 0x00, 0x02, 'n', 'o'), 11,
               MQTT_ROLE_CLIENT);
    ack_golden("v5 PUBREC refused", (mqtt_ack_params){MQTT_PUBREC, 2, 0x80, NULL, 0},
               BYTES(0x50, 0x03, 0x00, 0x02, 0x80), 5, MQTT_ROLE_BROKER);
    ack_golden("v5 PUBREL not found", (mqtt_ack_params){MQTT_PUBREL, 3, 0x92, NULL, 0},
               BYTES(0x62, 0x03, 0x00, 0x03, 0x92), 5, MQTT_ROLE_CLIENT);
    ack_golden("v5 PUBCOMP short", (mqtt_ack_params){MQTT_PUBCOMP, 4, 0, NULL, 0},
               BYTES(0x70, 0x02, 0x00, 0x04), 4, MQTT_ROLE_BROKER);
    ack_golden("v5 PINGREQ", (mqtt_ack_params){MQTT_PINGREQ, 0, 0, NULL, 0}, BYTES(0xC0, 0x00),
               2, MQTT_ROLE_BROKER);
    ack_golden("v5 PINGRESP", (mqtt_ack_params){MQTT_PINGRESP, 0, 0, NULL, 0}, BYTES(0xD0, 0x00),
               2, MQTT_ROLE_CLIENT);
    ack_golden("v5 DISCONNECT short", (mqtt_ack_params){MQTT_DISCONNECT, 0, 0, NULL, 0},
               BYTES(0xE0, 0x00), 2, MQTT_ROLE_BROKER);
    ack_golden("v5 DISCONNECT with will", (mqtt_ack_params){MQTT_DISCONNECT, 0, 0x04, NULL, 0},
               BYTES(0xE0, 0x01, 0x04), 3, MQTT_ROLE_BROKER);
    ack_golden("v5 DISCONNECT from the broker",
               (mqtt_ack_params){MQTT_DISCONNECT, 0, 0x8B, NULL, 0}, BYTES(0xE0, 0x01, 0x8B), 3,
               MQTT_ROLE_CLIENT);
    ack_golden("v5 DISCONNECT with properties",
               (mqtt_ack_params){MQTT_DISCONNECT, 0, 0, expiry, 1},
               BYTES(0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00), 9, MQTT_ROLE_BROKER);
    ack_golden("v5 AUTH short", (mqtt_ack_params){MQTT_AUTH, 0, 0, NULL, 0}, BYTES(0xF0, 0x00),
               2, MQTT_ROLE_CLIENT);
    ack_golden("v5 AUTH continue without properties",
               (mqtt_ack_params){MQTT_AUTH, 0, 0x18, NULL, 0}, BYTES(0xF0, 0x02, 0x18, 0x00), 4,
               MQTT_ROLE_CLIENT);
    golden("v5 AUTH continue", mqtt__ack_size_v(MQTT_V5, &(mqtt_ack_params){MQTT_AUTH, 0, 0x18, auth, 2}),
           mqtt__encode_ack_v(out, MQTT_V5, &(mqtt_ack_params){MQTT_AUTH, 0, 0x18, auth, 2}),
           BYTES(0xF0, 0x10, 0x18, 0x0E, 0x15, 0x00, 0x05, 'S', 'C', 'R', 'A', 'M', 0x16, 0x00,
                 0x03, 'a', 'b', 'c'),
           18, MQTT_V5, MQTT_ROLE_BROKER);
    CHECK(pkt.reason_code == 0x18 && props_are(pkt.props, auth_wire, 2),
          "v5 AUTH continue: method before data");
    CHECK(decode_as(MQTT_V5, MQTT_ROLE_CLIENT, BYTES(0x40, 0x04, 0x00, 0x01, 0x00, 0x00), 6) ==
                  MQTT_OK && pkt.reason_code == 0 && pkt.props.len == 0 && pkt.props.data != NULL,
          "v5 PUBACK: the long form of a success decodes");
}

static void test_subscribe(void)
{
    static const uint8_t want[] = {0x82, 0x12, 0x00, 0x07, 0x05, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F,
                                   0x00, 0x03, 'a', '/', '#', 0x2D, 0x00, 0x01, 'b', 0x00};
    const mqtt_property id[] = {PINT(0x0B, 268435455)};
    const mqtt_sub_entry e[] = {
        {MB("a/#"), 1 | MQTT_SUB_NO_LOCAL | MQTT_SUB_RETAIN_AS_PUBLISHED | 0x20}, {MB("b"), 0}};
    mqtt_sub_params p = {7, e, 2, id, 1};
    mqtt_sub_iter it;
    mqtt_sub_entry got[3];
    size_t n = 0;
    golden("v5 SUBSCRIBE", mqtt__sub_size_v(MQTT_V5, MQTT_SUBSCRIBE, &p),
           mqtt__encode_sub_v(out, MQTT_V5, MQTT_SUBSCRIBE, &p), want, sizeof want, MQTT_V5,
           MQTT_ROLE_BROKER);
    mqtt__sub_iter_init(&it, &pkt);
    while (n < 3 && mqtt__sub_next(&it, &got[n]))
        n++;
    CHECK(pkt.packet_id == 7 && props_are(pkt.props, id, 1) && n == 2 &&
              same(got[0].filter, MB("a/#")) && got[0].qos == 0x2D &&
              MQTT_SUB_QOS(got[0].qos) == 1 && MQTT_SUB_RETAIN_HANDLING(got[0].qos) == 2 &&
              same(got[1].filter, MB("b")) && got[1].qos == 0,
          "v5 SUBSCRIBE: id, property, entries and options");

    const mqtt_property up[] = {PPAIR(0x26, "k", "v")};
    const mqtt_sub_entry u[] = {{MB("a/b"), 0}};
    mqtt_sub_params q = {8, u, 1, up, 1};
    golden("v5 UNSUBSCRIBE", mqtt__sub_size_v(MQTT_V5, MQTT_UNSUBSCRIBE, &q),
           mqtt__encode_sub_v(out, MQTT_V5, MQTT_UNSUBSCRIBE, &q),
           BYTES(0xA2, 0x0F, 0x00, 0x08, 0x07, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', 0x00, 0x03,
                 'a', '/', 'b'),
           17, MQTT_V5, MQTT_ROLE_BROKER);
    mqtt__sub_iter_init(&it, &pkt);
    CHECK(mqtt__sub_next(&it, &got[0]) && same(got[0].filter, MB("a/b")) &&
              !mqtt__sub_next(&it, &got[1]) && props_are(pkt.props, up, 1),
          "v5 UNSUBSCRIBE: the filter and its property");
}

static void test_subacks(void)
{
    mqtt_reply_params s = {MQTT_SUBACK, 7, false, 0, NULL, 0, {BYTES(0x01, 0x00, 0x87), 3}};
    golden("v5 SUBACK", mqtt__reply_size_v(MQTT_V5, &s), mqtt__encode_reply_v(out, MQTT_V5, &s),
           BYTES(0x90, 0x06, 0x00, 0x07, 0x00, 0x01, 0x00, 0x87), 8, MQTT_V5, MQTT_ROLE_CLIENT);
    CHECK(pkt.packet_id == 7 && same(pkt.granted, (mqtt_bytes){BYTES(0x01, 0x00, 0x87), 3}),
          "v5 SUBACK: reason codes");
    const mqtt_property rs[] = {PSTR(0x1F, "r")};
    mqtt_reply_params u = {MQTT_UNSUBACK, 8, false, 0, rs, 1, {BYTES(0x00, 0x11), 2}};
    golden("v5 UNSUBACK", mqtt__reply_size_v(MQTT_V5, &u), mqtt__encode_reply_v(out, MQTT_V5, &u),
           BYTES(0xB0, 0x09, 0x00, 0x08, 0x04, 0x1F, 0x00, 0x01, 'r', 0x00, 0x11), 11, MQTT_V5,
           MQTT_ROLE_CLIENT);
    CHECK(pkt.packet_id == 8 && same(pkt.granted, (mqtt_bytes){BYTES(0x00, 0x11), 2}) &&
              props_are(pkt.props, rs, 1),
          "v5 UNSUBACK: reason codes and reason string");
    mqtt_reply_params s3 = {MQTT_SUBACK, 1, false, 0, NULL, 0, {BYTES(0x01, 0x80), 2}};
    golden("3.1.1 SUBACK", mqtt__reply_size_v(MQTT_V311, &s3),
           mqtt__encode_reply_v(out, MQTT_V311, &s3), BYTES(0x90, 0x04, 0x00, 0x01, 0x01, 0x80),
           6, MQTT_V311, MQTT_ROLE_CLIENT);
    mqtt_reply_params u3 = {MQTT_UNSUBACK, 2, false, 0, NULL, 0, {NULL, 0}};
    golden("3.1.1 UNSUBACK", mqtt__reply_size_v(MQTT_V311, &u3),
           mqtt__encode_reply_v(out, MQTT_V311, &u3), BYTES(0xB0, 0x02, 0x00, 0x02), 4,
           MQTT_V311, MQTT_ROLE_CLIENT);
}

/* What a 3.1.1 client sends, decoded by the broker role. */
static void test_v311_broker_side(void)
{
    mqtt_connect_params p = {0};
    p.client_id = MB("id");
    p.keepalive = 30;
    p.will = true;
    p.will_topic = MB("w");
    p.will_payload = MB("");
    p.will_qos = 2;
    p.username = MB("u");
    p.password = MB("p");
    size_t n = mqtt__encode_connect(out, &p);
    CHECK(decode_as(MQTT_V311, MQTT_ROLE_BROKER, out, n) == MQTT_OK && used == n &&
              pkt.version == MQTT_V311 && pkt.connect.keepalive == 30 && pkt.connect.will &&
              pkt.connect.will_qos == 2 && same(pkt.connect.client_id, MB("id")) &&
              same(pkt.connect.password, MB("p")) && pkt.props.data == NULL,
          "3.1.1 CONNECT: the broker role decodes it");
    const mqtt_sub_entry e[] = {{MB("a/b"), 1}};
    const mqtt_sub_params s = {1, e, 1, NULL, 0};
    golden("3.1.1 SUBSCRIBE", mqtt__sub_size_v(MQTT_V311, MQTT_SUBSCRIBE, &s),
           mqtt__encode_subscribe(out, 1, e, 1),
           BYTES(0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '/', 'b', 0x01), 10, MQTT_V311,
           MQTT_ROLE_BROKER);
    golden("3.1.1 UNSUBSCRIBE", mqtt__unsubscribe_size(e, 1), mqtt__encode_unsubscribe(out, 1, e, 1),
           BYTES(0xA2, 0x07, 0x00, 0x01, 0x00, 0x03, 'a', '/', 'b'), 9, MQTT_V311,
           MQTT_ROLE_BROKER);
    golden("3.1.1 DISCONNECT", 2, mqtt__encode_empty(out, MQTT_DISCONNECT), BYTES(0xE0, 0x00), 2,
           MQTT_V311, MQTT_ROLE_BROKER);
    golden("3.1.1 PINGREQ", 2, mqtt__encode_empty(out, MQTT_PINGREQ), BYTES(0xC0, 0x00), 2,
           MQTT_V311, MQTT_ROLE_BROKER);
    golden("3.1.1 PUBREL", 4, mqtt__encode_ack(out, MQTT_PUBREL, 9), BYTES(0x62, 0x02, 0x00, 0x09),
           4, MQTT_V311, MQTT_ROLE_BROKER);
}

/* The 3.1.1 entry points are the versioned encoders at level 4. */
static void test_wrappers(void)
{
    uint8_t a[64], b[64];
    mqtt_publish_params p = {MB("t/x"), MB("data"), 2, true, true, 77, NULL, 0};
    size_t na = mqtt__encode_publish(a, p.topic.data, p.topic.len, p.payload.data, p.payload.len,
                                     2, true, true, 77);
    size_t nb = mqtt__encode_publish_v(b, MQTT_V311, &p);
    CHECK(na == nb && na == mqtt__publish_size(3, 4, 2) && memcmp(a, b, na) == 0,
          "wrappers: 3.1.1 PUBLISH equals the versioned encoder at level 4");
    CHECK(mqtt__publish_size(65536, 0, 0) == 0 && mqtt__publish_size(1, 0, 3) == 0 &&
              mqtt__publish_size(1, MQTT_MAX_REMAINING, 0) == 0,
          "wrappers: 3.1.1 PUBLISH size refuses what cannot exist");
    CHECK(mqtt__encode_publish(a, NULL, 3, NULL, 0, 0, false, false, 0) == 0,
          "wrappers: a NULL topic with a length is refused");
}

/* ---- validation errors --------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    uint8_t version;
    mqtt_role role;
    int rc;
    const uint8_t *b;
    size_t n;
} bad_case;

#define BAD(name, vr, rc, ...) {name, vr, rc, BYTES(__VA_ARGS__), NBYTES(__VA_ARGS__)}
#define C5 MQTT_V5, MQTT_ROLE_CLIENT
#define B5 MQTT_V5, MQTT_ROLE_BROKER
#define C4 MQTT_V311, MQTT_ROLE_CLIENT
#define B4 MQTT_V311, MQTT_ROLE_BROKER
#define MAL MQTT_ERR_MALFORMED
#define PROTO MQTT_ERR_PROTOCOL

static void run_bad(const bad_case *cases, size_t n)
{
    char label[160];
    for (size_t i = 0; i < n; i++) {
        int rc = decode_as(cases[i].version, cases[i].role, cases[i].b, cases[i].n);
        snprintf(label, sizeof label, "rejects %s", cases[i].name);
        CHECK(rc == cases[i].rc && why != NULL && why[0] != '\0', label);
    }
}

static void test_bad_properties(void)
{
    const bad_case cases[] = {
        BAD("receive_maximum 0", C5, PROTO, 0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 0x00),
        BAD("maximum_packet_size 0", C5, PROTO, 0x20, 0x08, 0x00, 0x00, 0x05, 0x27, 0, 0, 0, 0),
        BAD("payload_format_indicator 2", C5, PROTO, 0x30, 0x06, 0x00, 0x01, 'a', 0x02, 0x01, 2),
        BAD("maximum_qos 2", C5, PROTO, 0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02),
        BAD("retain_available 2", C5, PROTO, 0x20, 0x05, 0x00, 0x00, 0x02, 0x25, 0x02),
        BAD("topic_alias 0", C5, PROTO, 0x30, 0x07, 0x00, 0x01, 'a', 0x03, 0x23, 0x00, 0x00),
        BAD("subscription_identifier 0", C5, PROTO, 0x30, 0x06, 0x00, 0x01, 'a', 0x02, 0x0B, 0),
        BAD("a subscription_identifier over 4 bytes", C5, MAL, 0x30, 0x0A, 0x00, 0x01, 'a', 0x06,
            0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F),
        BAD("topic_alias twice", C5, PROTO, 0x30, 0x0A, 0x00, 0x01, 'a', 0x06, 0x23, 0x00, 0x01,
            0x23, 0x00, 0x02),
        BAD("subscription_identifier twice in SUBSCRIBE", B5, PROTO, 0x82, 0x0B, 0x00, 0x01, 0x04,
            0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, 'a', 0x00),
        BAD("receive_maximum in PUBLISH", C5, MAL, 0x30, 0x07, 0x00, 0x01, 'a', 0x03, 0x21, 0, 5),
        BAD("an unknown property 0x05", C5, MAL, 0x30, 0x06, 0x00, 0x01, 'a', 0x02, 0x05, 0x00),
        BAD("a property length past the packet", C5, MAL, 0x30, 0x05, 0x00, 0x01, 'a', 0x09, 1),
        BAD("a property past its block", C5, MAL, 0x30, 0x06, 0x00, 0x01, 'a', 0x01, 0x02, 0),
        BAD("a property length over 4 bytes", C5, MAL, 0x30, 0x08, 0x00, 0x01, 'a', 0xFF, 0xFF,
            0xFF, 0xFF, 0x7F),
        BAD("a user_property name not UTF-8", C5, MAL, 0x40, 0x0B, 0x00, 0x01, 0x00, 0x07, 0x26,
            0x00, 0x01, 0xFF, 0x00, 0x01, 'a'),
        BAD("a reason_string with U+0000", C5, MAL, 0x40, 0x08, 0x00, 0x01, 0x80, 0x04, 0x1F,
            0x00, 0x01, 0x00),
        BAD("topic_alias in will properties", B5, MAL, 0x10, 0x16, 0x00, 0x04, 'M', 'Q', 'T', 'T',
            0x05, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, 0x00, 0x01, 'w',
            0x00, 0x00),
        BAD("will_delay_interval in CONNECT properties", B5, MAL, 0x10, 0x12, 0x00, 0x04, 'M', 'Q',
            'T', 'T', 0x05, 0x02, 0x00, 0x00, 0x05, 0x18, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00),
    };
    run_bad(cases, sizeof cases / sizeof cases[0]);
}

static void test_bad_packets(void)
{
    const bad_case cases[] = {
        BAD("session present on a refused v5 CONNACK", C5, MAL, 0x20, 0x03, 0x01, 0x80, 0x00),
        BAD("CONNACK reason 0x04", C5, MAL, 0x20, 0x03, 0x00, 0x04, 0x00),
        BAD("a v5 CONNACK without a property length", C5, MAL, 0x20, 0x02, 0x00, 0x00),
        BAD("PUBACK reason 0x04", C5, MAL, 0x40, 0x03, 0x00, 0x01, 0x04),
        BAD("PUBREL reason 0x87", C5, MAL, 0x62, 0x03, 0x00, 0x01, 0x87),
        BAD("SUBACK reason 0x04", C5, MAL, 0x90, 0x04, 0x00, 0x01, 0x00, 0x04),
        BAD("UNSUBACK without reason codes", C5, PROTO, 0xB0, 0x03, 0x00, 0x01, 0x00),
        BAD("bytes after PUBACK properties", C5, MAL, 0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xFF),
        BAD("a v5 PUBACK with packet id 0", C5, MAL, 0x40, 0x03, 0x00, 0x00, 0x10),
        BAD("an empty topic without an alias", C5, PROTO, 0x30, 0x03, 0x00, 0x00, 0x00),
        BAD("DISCONNECT reason 0x10", C5, MAL, 0xE0, 0x01, 0x10),
        BAD("bytes after DISCONNECT properties", C5, MAL, 0xE0, 0x03, 0x00, 0x00, 0x00),
        BAD("AUTH with a reason code alone", C5, MAL, 0xF0, 0x01, 0x18),
        BAD("AUTH reason 0x87", C5, MAL, 0xF0, 0x02, 0x87, 0x00),
        BAD("AUTH under 3.1.1", C4, PROTO, 0xF0, 0x00),
        BAD("AUTH with flags", C5, MAL, 0xF1, 0x00),
        BAD("DISCONNECT from a 3.1.1 broker", C4, PROTO, 0xE0, 0x00),
        BAD("a CONNECT sent to a client", C5, PROTO, 0x10, 0x00),
        BAD("a SUBSCRIBE sent to a client", C5, PROTO, 0x82, 0x00),
        BAD("a CONNACK sent to a broker", B5, PROTO, 0x20, 0x03, 0x00, 0x00, 0x00),
        BAD("a SUBACK sent to a broker", B5, PROTO, 0x90, 0x00),
        BAD("a PINGRESP sent to a broker", B5, PROTO, 0xD0, 0x00),
        BAD("a PINGREQ with a body", B5, MAL, 0xC0, 0x01, 0x00),
        BAD("a 3.1.1 DISCONNECT with a body", B4, MAL, 0xE0, 0x01, 0x00),
        BAD("reserved packet type 0", B5, PROTO, 0x00, 0x00),
        BAD("a subscription_identifier in a client's PUBLISH", B5, PROTO, 0x30, 0x06, 0x00, 0x01,
            'a', 0x02, 0x0B, 0x01),
    };
    run_bad(cases, sizeof cases / sizeof cases[0]);
}

static void test_bad_client_packets(void)
{
    const bad_case cases[] = {
        BAD("retain handling 3", B5, PROTO, 0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x30),
        BAD("reserved subscription option bits", B5, MAL, 0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01,
            'a', 0x40),
        BAD("subscription QoS 3", B5, MAL, 0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x03),
        BAD("no local on a shared subscription", B5, PROTO, 0x82, 0x10, 0x00, 0x01, 0x00, 0x00,
            0x0A, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x04),
        BAD("no local under 3.1.1", B4, MAL, 0x82, 0x06, 0x00, 0x01,
            0x00, 0x01, 'a', 0x04),
        BAD("a SUBSCRIBE without filters", B5, PROTO, 0x82, 0x03, 0x00, 0x01, 0x00),
        BAD("a SUBSCRIBE with flags 0000", B5, MAL, 0x80, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a',
            0x00),
        BAD("a SUBSCRIBE with packet id 0", B5, MAL, 0x82, 0x07, 0x00, 0x00, 0x00, 0x00, 0x01,
            'a', 0x00),
        BAD("a SUBSCRIBE filter 'a#'", B5, MAL, 0x82, 0x08, 0x00, 0x01, 0x00, 0x00, 0x02, 'a',
            '#', 0x00),
        BAD("an UNSUBSCRIBE filter past the packet", B5, MAL, 0xA2, 0x06, 0x00, 0x01, 0x00, 0x00,
            0x05, 'a'),
        BAD("CONNECT protocol name MQTX", B5, PROTO, 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'X',
            0x05, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00),
        BAD("CONNECT level 3", B5, PROTO, 0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x03, 0x02,
            0x00, 0x00, 0x00, 0x00),
        BAD("CONNECT reserved flag", B5, MAL, 0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
            0x03, 0x00, 0x00, 0x00, 0x00),
        BAD("CONNECT will QoS without a will", B5, MAL, 0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T',
            0x04, 0x0A, 0x00, 0x00, 0x00, 0x00),
        BAD("CONNECT will QoS 3", B5, MAL, 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x1E,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 'w', 0x00),
        BAD("a 3.1.1 password without a user name", B5, MAL, 0x10, 0x0E, 0x00, 0x04, 'M', 'Q',
            'T', 'T', 0x04, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
        BAD("bytes after a v5 CONNECT", B5, MAL, 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF),
        BAD("a CONNECT client id not UTF-8", B5, MAL, 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T',
            0x04, 0x02, 0x00, 0x00, 0x00, 0x01, 0xC0),
        BAD("a CONNECT will topic with '#'", B5, MAL, 0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T',
            0x04, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, '#', 0x00, 0x00),
    };
    run_bad(cases, sizeof cases / sizeof cases[0]);
}

/* ---- encoders refuse ------------------------------------------------------ */

static size_t publish_with(uint8_t version, const mqtt_property *props, size_t n)
{
    const mqtt_publish_params p = {MB("t"), MB("x"), 1, false, false, 1, props, n};
    return mqtt__publish_size_v(version, &p);
}

static void test_encode_refusals(void)
{
    const mqtt_property rm[] = {PINT(0x21, 5)}, alias0[] = {PINT(0x23, 0)};
    const mqtt_property twice[] = {PINT(0x23, 1), PINT(0x23, 2)}, unknown[] = {PINT(0x05, 1)};
    const mqtt_property bad_utf8[] = {{.id = 0x03, .data = BYTES(0xC0), .len = 1}};
    const mqtt_property null_value[] = {{.id = 0x26, .data = BYTES('a'), .len = 1, .len2 = 2}};
    const mqtt_property pfi2[] = {PINT(0x01, 2)}, subid[] = {PINT(0x0B, 268435456)};
    const mqtt_property ok[] = {PINT(0x23, 1)};
    CHECK(publish_with(MQTT_V5, ok, 1) != 0 && publish_with(MQTT_V5, rm, 1) == 0 &&
              publish_with(MQTT_V5, alias0, 1) == 0 && publish_with(MQTT_V5, twice, 2) == 0 &&
              publish_with(MQTT_V5, unknown, 1) == 0 && publish_with(MQTT_V5, bad_utf8, 1) == 0 &&
              publish_with(MQTT_V5, null_value, 1) == 0 && publish_with(MQTT_V5, pfi2, 1) == 0 &&
              publish_with(MQTT_V5, subid, 1) == 0 && publish_with(MQTT_V5, NULL, 1) == 0,
          "refuses: PUBLISH properties not allowed, out of range, repeated, unknown, bad UTF-8");
    CHECK(publish_with(MQTT_V311, ok, 1) == 0 && publish_with(4, NULL, 0) != 0 &&
              publish_with(6, NULL, 0) == 0,
          "refuses: properties under 3.1.1, and unknown protocol levels");
    CHECK(mqtt__ack_size_v(MQTT_V5, &(mqtt_ack_params){MQTT_PUBACK, 1, 0x04, NULL, 0}) == 0 &&
              mqtt__ack_size_v(MQTT_V5, &(mqtt_ack_params){MQTT_AUTH, 0, 0x80, NULL, 0}) == 0 &&
              mqtt__ack_size_v(MQTT_V311, &(mqtt_ack_params){MQTT_AUTH, 0, 0, NULL, 0}) == 0 &&
              mqtt__ack_size_v(MQTT_V311, &(mqtt_ack_params){MQTT_PUBACK, 1, 0x10, NULL, 0}) == 0 &&
              mqtt__ack_size_v(MQTT_V5, &(mqtt_ack_params){MQTT_PUBLISH, 1, 0, NULL, 0}) == 0 &&
              mqtt__ack_size_v(MQTT_V5, &(mqtt_ack_params){MQTT_PUBACK, 1, 0, rm, 1}) == 0,
          "refuses: reason codes a packet cannot carry, AUTH under 3.1.1, a non-ack type");
    const mqtt_sub_entry rh3[] = {{MB("a"), 0x30}}, res[] = {{MB("a"), 0x40}},
                         nl[] = {{MB("a"), MQTT_SUB_NO_LOCAL}}, q3[] = {{MB("a"), 3}};
    CHECK(mqtt__sub_size_v(MQTT_V5, MQTT_SUBSCRIBE, &(mqtt_sub_params){1, rh3, 1, NULL, 0}) == 0 &&
              mqtt__sub_size_v(MQTT_V5, MQTT_SUBSCRIBE, &(mqtt_sub_params){1, res, 1, NULL, 0}) ==
                  0 &&
              mqtt__sub_size_v(MQTT_V5, MQTT_SUBSCRIBE, &(mqtt_sub_params){1, q3, 1, NULL, 0}) ==
                  0 &&
              mqtt__sub_size_v(MQTT_V5, MQTT_SUBSCRIBE, &(mqtt_sub_params){1, nl, 1, NULL, 0}) !=
                  0 &&
              mqtt__subscribe_size(nl, 1) == 0 &&
              mqtt__sub_size_v(MQTT_V5, MQTT_SUBSCRIBE, &(mqtt_sub_params){1, nl, 0, NULL, 0}) ==
                  0 &&
              mqtt__sub_size_v(MQTT_V5, MQTT_PUBLISH, &(mqtt_sub_params){1, nl, 1, NULL, 0}) == 0,
          "refuses: subscription options out of range, no filters, a wrong type");
    mqtt_reply_params r = {MQTT_CONNACK, 0, false, 0x04, NULL, 0, {NULL, 0}};
    CHECK(mqtt__reply_size_v(MQTT_V5, &r) == 0, "refuses: CONNACK reason 0x04");
    r.reason_code = 6;
    CHECK(mqtt__reply_size_v(MQTT_V311, &r) == 0, "refuses: 3.1.1 CONNACK return code 6");
    r = (mqtt_reply_params){MQTT_SUBACK, 1, false, 0, NULL, 0, {NULL, 0}};
    CHECK(mqtt__reply_size_v(MQTT_V5, &r) == 0, "refuses: SUBACK without codes");
    r.codes = (mqtt_bytes){BYTES(0x11), 1};
    CHECK(mqtt__reply_size_v(MQTT_V5, &r) == 0, "refuses: SUBACK code 0x11");
    mqtt_connect_params c = {0};
    c.version = MQTT_V5;
    c.will_props = ok;
    c.will_nprops = 1;
    CHECK(mqtt__connect_size(&c) == 0, "refuses: will properties without a will");
}

int main(void)
{
    test_tables();
    test_connect();
    test_connect_v5_password_only();
    test_connack();
    test_publish();
    test_publish_long_props();
    test_acks();
    test_subscribe();
    test_subacks();
    test_v311_broker_side();
    test_wrappers();
    test_bad_properties();
    test_bad_packets();
    test_bad_client_packets();
    test_encode_refusals();
    return test_done();
}
