/*
 * Unit tests of the MQTT 3.1.1 codec: golden byte vectors written from the
 * specification, encode/decode round trips, streaming (one byte at a time),
 * every malformed input codec.h promises to reject, and the topic rules.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "test.h"

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__})
#define NBYTES(...) sizeof((const uint8_t[]){__VA_ARGS__})
#define S(lit) ((const uint8_t *)(lit)), (sizeof(lit) - 1)
#define MB(lit) ((mqtt_bytes){(const uint8_t *)(lit), sizeof(lit) - 1})

/* Decodes a vector expecting status rc; returns the packet for more checks. */
static mqtt_packet pkt;
static size_t used;
static const char *why;

static int decode(const uint8_t *b, size_t n)
{
    why = NULL;
    used = 0;
    return mqtt__decode_packet(b, n, 0, &pkt, &used, &why);
}

#define DECODE(...) decode(BYTES(__VA_ARGS__), NBYTES(__VA_ARGS__))

/* A malformed vector must fail with rc and give a reason. */
#define REJECT(rc, name, ...)                                                          \
    CHECK(DECODE(__VA_ARGS__) == (rc) && why != NULL && why[0] != '\0', name)

/* ---- varint and fixed header ----------------------------------------- */

static void test_varint(void)
{
    static const struct {
        uint32_t v;
        uint8_t enc[4];
        size_t n;
    } golden[] = {
        {0, {0x00}, 1},
        {127, {0x7F}, 1},
        {128, {0x80, 0x01}, 2},
        {16383, {0xFF, 0x7F}, 2},
        {16384, {0x80, 0x80, 0x01}, 3},
        {2097151, {0xFF, 0xFF, 0x7F}, 3},
        {2097152, {0x80, 0x80, 0x80, 0x01}, 4},
        {268435455, {0xFF, 0xFF, 0xFF, 0x7F}, 4},
    };
    char name[96];
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        uint8_t out[8] = {0}, hdr[8] = {0x30};
        mqtt_fixed_header h;
        size_t n = mqtt__varint_encode(out, golden[i].v);
        snprintf(name, sizeof name, "varint %u encodes to the spec bytes", (unsigned)golden[i].v);
        CHECK_BYTES(out, n, golden[i].enc, golden[i].n, name);
        snprintf(name, sizeof name, "varint %u size", (unsigned)golden[i].v);
        CHECK(mqtt__varint_size(golden[i].v) == golden[i].n, name);
        memcpy(hdr + 1, golden[i].enc, golden[i].n);
        memset(&h, 0, sizeof h);
        snprintf(name, sizeof name, "fixed header with remaining %u decodes",
                 (unsigned)golden[i].v);
        CHECK(mqtt__decode_fixed_header(hdr, 1 + golden[i].n, &h, NULL, NULL) == MQTT_OK &&
                  h.remaining == golden[i].v && h.header_len == 1 + golden[i].n &&
                  h.type == MQTT_PUBLISH && h.flags == 0,
              name);
    }
    uint8_t out[8] = {0xAA, 0xAA, 0xAA, 0xAA, 0xAA};
    CHECK(mqtt__varint_size(268435456u) == 0, "varint 268435456 has no size");
    CHECK(mqtt__varint_encode(out, 268435456u) == 0 && out[0] == 0xAA,
          "varint 268435456 is not encoded");
    CHECK(mqtt__varint_size(UINT32_MAX) == 0, "varint UINT32_MAX has no size");
}

static void test_fixed_header(void)
{
    const uint8_t b[] = {0x3B, 0x80, 0x80, 0x80, 0x80, 0x01};
    mqtt_fixed_header h;
    size_t need = 0;
    const char *w = NULL;
    CHECK(mqtt__decode_fixed_header(b, 0, &h, &need, NULL) == MQTT_ERR_INCOMPLETE && need == 2,
          "header: 0 bytes needs 2");
    CHECK(mqtt__decode_fixed_header(b, 1, &h, &need, NULL) == MQTT_ERR_INCOMPLETE && need == 2,
          "header: 1 byte needs 2");
    CHECK(mqtt__decode_fixed_header(b, 2, &h, &need, NULL) == MQTT_ERR_INCOMPLETE && need == 3,
          "header: 1 continuation byte needs 3");
    CHECK(mqtt__decode_fixed_header(b, 3, &h, &need, NULL) == MQTT_ERR_INCOMPLETE && need == 4,
          "header: 2 continuation bytes needs 4");
    CHECK(mqtt__decode_fixed_header(b, 4, &h, &need, NULL) == MQTT_ERR_INCOMPLETE && need == 5,
          "header: 3 continuation bytes needs 5");
    CHECK(mqtt__decode_fixed_header(b, 5, &h, &need, &w) == MQTT_ERR_MALFORMED && w != NULL,
          "header: continuation on the 4th length byte is malformed");
    CHECK(mqtt__decode_fixed_header(b, 6, &h, &need, NULL) == MQTT_ERR_MALFORMED,
          "header: a 5-byte remaining length is malformed");
    CHECK(mqtt__decode_fixed_header(BYTES(0x3B, 0x80, 0x80, 0x80, 0x00), 5, &h, &need, NULL) ==
                  MQTT_OK &&
              h.remaining == 0 && h.header_len == 5 && h.type == 0x30 && h.flags == 0x0B,
          "header: non-minimal 4-byte zero is accepted, type and flags split");
    CHECK(mqtt__decode_fixed_header(BYTES(0x62, 0x02, 0xFF), 3, &h, NULL, NULL) == MQTT_OK &&
              h.type == MQTT_PUBREL && h.flags == 2 && h.remaining == 2 && h.header_len == 2,
          "header: does not read past the length bytes");
}

/* ---- CONNECT --------------------------------------------------------- */

static void test_connect_full(void)
{
    static const uint8_t want[] = {
        0x10, 0x22,                                    /* CONNECT, remaining 34 */
        0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,          /* protocol name, level 4 */
        0xEE,                                          /* user, pass, retain, qos1, will, clean */
        0x00, 0x3C,                                    /* keepalive 60 */
        0x00, 0x05, 'z', 'm', 'q', 't', 't',           /* client id */
        0x00, 0x03, 'w', '/', 't', 0x00, 0x03, 'b', 'y', 'e', /* will topic, payload */
        0x00, 0x01, 'u', 0x00, 0x02, 'p', 'w'};        /* user name, password */
    mqtt_connect_params p = {0};
    uint8_t out[64];
    p.client_id = MB("zmqtt");
    p.keepalive = 60;
    p.clean_session = true;
    p.will = true;
    p.will_topic = MB("w/t");
    p.will_payload = MB("bye");
    p.will_qos = 1;
    p.will_retain = true;
    p.username = MB("u");
    p.password = MB("pw");
    CHECK(mqtt__connect_size(&p) == sizeof want, "CONNECT full: size");
    CHECK_BYTES(out, mqtt__encode_connect(out, &p), want, sizeof want, "CONNECT full: bytes");
}

static void test_connect_minimal(void)
{
    static const uint8_t want[] = {0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02,
                                   0x00, 0x00, 0x00, 0x00};
    static const uint8_t want_dirty[] = {0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
                                         0x00, 0xFF, 0xFF, 0x00, 0x01, 'c'};
    mqtt_connect_params p = {0};
    uint8_t out[64];
    p.clean_session = true;
    CHECK(mqtt__connect_size(&p) == sizeof want, "CONNECT minimal: size");
    CHECK_BYTES(out, mqtt__encode_connect(out, &p), want, sizeof want,
                "CONNECT minimal: NULL client id is written as an empty string");
    p.clean_session = false;
    p.keepalive = 65535;
    p.client_id = MB("c");
    p.will_qos = 2; /* ignored without will */
    p.will_retain = true;
    p.password = MB("secret"); /* ignored without a user name */
    CHECK_BYTES(out, mqtt__encode_connect(out, &p), want_dirty, sizeof want_dirty,
                "CONNECT: no clean session, keepalive 65535, will and password ignored");
}

static void test_connect_will_empty(void)
{
    static const uint8_t want[] = {0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x16,
                                   0x00, 0x00, 0x00, 0x01, 'c', 0x00, 0x01, 't', 0x00, 0x00};
    static const uint8_t want_user[] = {0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
                                        0xC2, 0x00, 0x00, 0x00, 0x01, 'c', 0x00, 0x01, 'u',
                                        0x00, 0x00};
    mqtt_connect_params p = {0};
    uint8_t out[64];
    p.client_id = MB("c");
    p.clean_session = true;
    p.will = true;
    p.will_topic = MB("t");
    p.will_qos = 2;
    p.will_payload = (mqtt_bytes){NULL, 0};
    CHECK(mqtt__connect_size(&p) == sizeof want, "CONNECT empty will: size counts the 2 bytes");
    CHECK_BYTES(out, mqtt__encode_connect(out, &p), want, sizeof want,
                "CONNECT empty will (NULL): zero length written");
    p.will_payload = (mqtt_bytes){(const uint8_t *)"", 0};
    CHECK_BYTES(out, mqtt__encode_connect(out, &p), want, sizeof want,
                "CONNECT empty will (\"\"): zero length written");
    p.will = false;
    p.username = MB("u");
    p.password = (mqtt_bytes){(const uint8_t *)"", 0};
    CHECK_BYTES(out, mqtt__encode_connect(out, &p), want_user, sizeof want_user,
                "CONNECT: user name with an empty password sets both flags");
}

static void test_connect_limits(void)
{
    static uint8_t big[65536];
    mqtt_connect_params p = {0};
    uint8_t out[16] = {0xAA};
    p.client_id = (mqtt_bytes){big, 65535};
    CHECK(mqtt__connect_size(&p) == 1 + 3 + 10 + 2 + 65535, "CONNECT: 65535-byte client id");
    p.client_id = (mqtt_bytes){big, 65536};
    CHECK(mqtt__connect_size(&p) == 0, "CONNECT: 65536-byte client id is impossible");
    CHECK(mqtt__encode_connect(out, &p) == 0 && out[0] == 0xAA,
          "CONNECT: impossible packet writes nothing");
    p.client_id = MB("c");
    p.will = true;
    p.will_topic = (mqtt_bytes){big, 65536};
    CHECK(mqtt__connect_size(&p) == 0, "CONNECT: 65536-byte will topic is impossible");
    p.will_topic = MB("t");
    p.will_payload = (mqtt_bytes){big, 65536};
    CHECK(mqtt__connect_size(&p) == 0, "CONNECT: 65536-byte will payload is impossible");
    p.will_payload = MB("x");
    p.will_qos = 3;
    CHECK(mqtt__connect_size(&p) == 0, "CONNECT: will QoS 3 is impossible");
    p.will = false;
    p.username = (mqtt_bytes){big, 65536};
    CHECK(mqtt__connect_size(&p) == 0, "CONNECT: 65536-byte user name is impossible");
    p.username = MB("u");
    p.password = (mqtt_bytes){big, 65536};
    CHECK(mqtt__connect_size(&p) == 0, "CONNECT: 65536-byte password is impossible");
    CHECK(mqtt__connect_size(NULL) == 0, "CONNECT: NULL params");
}

/* ---- PUBLISH, acks, empty packets ------------------------------------ */

static void test_publish_golden(void)
{
    uint8_t out[32];
    CHECK(mqtt__publish_size(3, 2, 0) == 9, "PUBLISH qos0 size");
    CHECK_BYTES(out, mqtt__encode_publish(out, S("a/b"), S("hi"), 0, false, false, 0),
                BYTES(0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i'), 9, "PUBLISH qos0");
    CHECK(mqtt__publish_size(3, 2, 1) == 11, "PUBLISH qos1 size");
    CHECK_BYTES(out, mqtt__encode_publish(out, S("a/b"), S("hi"), 1, true, false, 10),
                BYTES(0x33, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 'h', 'i'), 11,
                "PUBLISH qos1 retain");
    CHECK_BYTES(out, mqtt__encode_publish(out, S("a/b"), S("hi"), 2, false, true, 0x1234),
                BYTES(0x3C, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, 'h', 'i'), 11,
                "PUBLISH qos2 dup");
    CHECK_BYTES(out, mqtt__encode_publish(out, S("a/b"), S("hi"), 2, true, true, 0xFFFF),
                BYTES(0x3D, 0x09, 0x00, 0x03, 'a', '/', 'b', 0xFF, 0xFF, 'h', 'i'), 11,
                "PUBLISH qos2 dup retain");
    CHECK_BYTES(out, mqtt__encode_publish(out, S("a/b"), S("hi"), 0, true, true, 7),
                BYTES(0x31, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i'), 9,
                "PUBLISH qos0: DUP and packet id dropped");
    CHECK_BYTES(out, mqtt__encode_publish(out, S("t"), NULL, 0, 1, false, false, 1),
                BYTES(0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x01), 7, "PUBLISH empty NULL payload");
    CHECK_BYTES(out, mqtt__encode_publish(out, S("t"), S("a\0b"), 0, false, false, 0),
                BYTES(0x30, 0x06, 0x00, 0x01, 't', 'a', 0x00, 'b'), 8,
                "PUBLISH payload with a NUL byte");
}

static void test_publish_limits(void)
{
    uint8_t out[8] = {0xAA};
    CHECK(mqtt__publish_size(65535, 0, 0) == 1 + 3 + 2 + 65535, "PUBLISH: 65535-byte topic");
    CHECK(mqtt__publish_size(65536, 0, 0) == 0, "PUBLISH: 65536-byte topic is impossible");
    CHECK(mqtt__publish_size(1, 0, 3) == 0, "PUBLISH: QoS 3 is impossible");
    CHECK(mqtt__publish_size(1, MQTT_MAX_REMAINING - 3, 0) == 1 + 4 + MQTT_MAX_REMAINING,
          "PUBLISH: remaining exactly MQTT_MAX_REMAINING");
    CHECK(mqtt__publish_size(1, MQTT_MAX_REMAINING - 2, 0) == 0,
          "PUBLISH: remaining one past MQTT_MAX_REMAINING");
    CHECK(mqtt__publish_size(1, MQTT_MAX_REMAINING - 5, 1) == 1 + 4 + MQTT_MAX_REMAINING,
          "PUBLISH qos1: remaining exactly MQTT_MAX_REMAINING");
    CHECK(mqtt__publish_size(1, MQTT_MAX_REMAINING - 4, 1) == 0,
          "PUBLISH qos1: packet id pushes past MQTT_MAX_REMAINING");
    CHECK(mqtt__publish_size(1, SIZE_MAX, 0) == 0, "PUBLISH: SIZE_MAX payload does not wrap");
    CHECK(mqtt__encode_publish(out, S("t"), S("x"), 3, false, false, 1) == 0 && out[0] == 0xAA,
          "PUBLISH: QoS 3 writes nothing");
    CHECK(mqtt__encode_publish(out, S("t"), NULL, 1, 0, false, false, 0) == 0,
          "PUBLISH: NULL payload with a length is refused");
}

static void test_acks_and_empty(void)
{
    uint8_t out[4];
    CHECK_BYTES(out, mqtt__encode_ack(out, MQTT_PUBACK, 1), BYTES(0x40, 0x02, 0x00, 0x01), 4,
                "PUBACK");
    CHECK_BYTES(out, mqtt__encode_ack(out, MQTT_PUBREC, 0x0102), BYTES(0x50, 0x02, 0x01, 0x02),
                4, "PUBREC");
    CHECK_BYTES(out, mqtt__encode_ack(out, MQTT_PUBREL, 0xFFFF), BYTES(0x62, 0x02, 0xFF, 0xFF),
                4, "PUBREL gets flags 0010");
    CHECK_BYTES(out, mqtt__encode_ack(out, MQTT_PUBCOMP, 0x8000),
                BYTES(0x70, 0x02, 0x80, 0x00), 4, "PUBCOMP");
    CHECK_BYTES(out, mqtt__encode_empty(out, MQTT_PINGREQ), BYTES(0xC0, 0x00), 2, "PINGREQ");
    CHECK_BYTES(out, mqtt__encode_empty(out, MQTT_DISCONNECT), BYTES(0xE0, 0x00), 2,
                "DISCONNECT");
}

/* ---- SUBSCRIBE, UNSUBSCRIBE ------------------------------------------ */

static void test_subscribe(void)
{
    static const uint8_t want_sub[] = {0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x01,
                                       0x00, 0x03, 'c', '/', 'd', 0x02};
    static const uint8_t want_unsub[] = {0xA2, 0x0C, 0x00, 0x0A, 0x00, 0x03, 'a',
                                         '/',  'b',  0x00, 0x03, 'c',  '/',  'd'};
    static uint8_t big[65536];
    mqtt_sub_entry e[2] = {{MB("a/b"), 1}, {MB("c/d"), 2}};
    uint8_t out[32] = {0};
    CHECK(mqtt__subscribe_size(e, 2) == sizeof want_sub, "SUBSCRIBE size");
    CHECK_BYTES(out, mqtt__encode_subscribe(out, 10, e, 2), want_sub, sizeof want_sub,
                "SUBSCRIBE two filters");
    CHECK(mqtt__unsubscribe_size(e, 2) == sizeof want_unsub, "UNSUBSCRIBE size");
    CHECK_BYTES(out, mqtt__encode_unsubscribe(out, 10, e, 2), want_unsub, sizeof want_unsub,
                "UNSUBSCRIBE two filters");
    CHECK_BYTES(out, mqtt__encode_subscribe(out, 0xABCD, e, 1),
                BYTES(0x82, 0x08, 0xAB, 0xCD, 0x00, 0x03, 'a', '/', 'b', 0x01), 10,
                "SUBSCRIBE one filter");
    CHECK(mqtt__subscribe_size(e, 0) == 0, "SUBSCRIBE with no filter is impossible");
    CHECK(mqtt__unsubscribe_size(e, 0) == 0, "UNSUBSCRIBE with no filter is impossible");
    CHECK(mqtt__encode_subscribe(out, 1, NULL, 0) == 0, "SUBSCRIBE NULL entries writes nothing");
    e[1].qos = 3;
    CHECK(mqtt__subscribe_size(e, 2) == 0, "SUBSCRIBE QoS 3 is impossible");
    CHECK(mqtt__unsubscribe_size(e, 2) == sizeof want_unsub, "UNSUBSCRIBE ignores QoS");
    e[1].qos = 0;
    e[1].filter = (mqtt_bytes){big, 65535};
    CHECK(mqtt__subscribe_size(e, 2) == 1 + 3 + 2 + 6 + 2 + 65535 + 1,
          "SUBSCRIBE with a 65535-byte filter");
    e[1].filter = (mqtt_bytes){big, 65536};
    CHECK(mqtt__subscribe_size(e, 2) == 0, "SUBSCRIBE with a 65536-byte filter is impossible");
    CHECK(mqtt__unsubscribe_size(e, 2) == 0, "UNSUBSCRIBE with a 65536-byte filter is impossible");
}

static void test_subscribe_too_big(void)
{
    /* 4200 filters of 65535 bytes: remaining length past 256 MiB without the bytes. */
    static uint8_t big[65535];
    size_t n = 4200;
    mqtt_sub_entry *e = calloc(n, sizeof *e);
    if (e == NULL) {
        CHECK(0, "calloc");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        e[i].filter = (mqtt_bytes){big, sizeof big};
    }
    CHECK(mqtt__subscribe_size(e, 4000) == 1 + 4 + 2 + 4000u * 65538u,
          "SUBSCRIBE of 4000 long filters fits");
    CHECK(mqtt__subscribe_size(e, n) == 0, "SUBSCRIBE past MQTT_MAX_REMAINING is impossible");
    CHECK(mqtt__unsubscribe_size(e, n) == 0, "UNSUBSCRIBE past MQTT_MAX_REMAINING is impossible");
    free(e);
}

/* ---- decoding: valid packets ----------------------------------------- */

static void test_decode_connack(void)
{
    CHECK(DECODE(0x20, 0x02, 0x00, 0x00) == MQTT_OK && used == 4 && pkt.type == MQTT_CONNACK &&
              !pkt.session_present && pkt.return_code == 0,
          "CONNACK accepted");
    CHECK(DECODE(0x20, 0x02, 0x01, 0x00) == MQTT_OK && pkt.session_present &&
              pkt.return_code == 0,
          "CONNACK session present");
    CHECK(DECODE(0x20, 0x02, 0x00, 0x05) == MQTT_OK && pkt.return_code == 5,
          "CONNACK return code 5");
    REJECT(MQTT_ERR_MALFORMED, "CONNACK return code 6", 0x20, 0x02, 0x00, 0x06);
    REJECT(MQTT_ERR_MALFORMED, "CONNACK reserved ack flags", 0x20, 0x02, 0x02, 0x00);
    REJECT(MQTT_ERR_MALFORMED, "CONNACK session present with refusal", 0x20, 0x02, 0x01, 0x04);
    REJECT(MQTT_ERR_MALFORMED, "CONNACK remaining 3", 0x20, 0x03, 0x00, 0x00, 0x00);
    REJECT(MQTT_ERR_MALFORMED, "CONNACK remaining 1", 0x20, 0x01, 0x00);
    REJECT(MQTT_ERR_MALFORMED, "CONNACK header flags", 0x21, 0x02, 0x00, 0x00);
}

static void test_decode_acks(void)
{
    static const uint8_t types[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP,
                                    MQTT_UNSUBACK};
    char name[80];
    for (size_t i = 0; i < sizeof types; i++) {
        uint8_t first = (uint8_t)(types[i] | (types[i] == MQTT_PUBREL ? 2 : 0));
        uint8_t ok[] = {first, 0x02, 0x12, 0x34};
        uint8_t longer[] = {first, 0x03, 0x12, 0x34, 0x00};
        uint8_t id0[] = {first, 0x02, 0x00, 0x00};
        uint8_t flags[] = {(uint8_t)(first ^ 0x02), 0x02, 0x12, 0x34};
        snprintf(name, sizeof name, "ack 0x%02X accepted", first);
        CHECK(decode(ok, 4) == MQTT_OK && used == 4 && pkt.type == types[i] &&
                  pkt.flags == (first & 0x0F) && pkt.packet_id == 0x1234,
              name);
        snprintf(name, sizeof name, "ack 0x%02X remaining 3 malformed", first);
        CHECK(decode(longer, 5) == MQTT_ERR_MALFORMED && why != NULL, name);
        snprintf(name, sizeof name, "ack 0x%02X packet id 0 malformed", first);
        CHECK(decode(id0, 4) == MQTT_ERR_MALFORMED && why != NULL, name);
        snprintf(name, sizeof name, "ack 0x%02X wrong flags malformed", first);
        CHECK(decode(flags, 4) == MQTT_ERR_MALFORMED && why != NULL, name);
    }
    REJECT(MQTT_ERR_MALFORMED, "PUBREL flags 0000", 0x60, 0x02, 0x00, 0x01);
    REJECT(MQTT_ERR_MALFORMED, "PUBREL flags 0011", 0x63, 0x02, 0x00, 0x01);
    REJECT(MQTT_ERR_MALFORMED, "PUBACK flags 1000", 0x48, 0x02, 0x00, 0x01);
    REJECT(MQTT_ERR_MALFORMED, "PUBACK remaining 1", 0x40, 0x01, 0x00);
    REJECT(MQTT_ERR_MALFORMED, "UNSUBACK remaining 0", 0xB0, 0x00);
}

static void test_decode_suback_ping(void)
{
    CHECK(DECODE(0x90, 0x03, 0x00, 0x01, 0x00) == MQTT_OK && used == 5 &&
              pkt.type == MQTT_SUBACK && pkt.packet_id == 1 && pkt.granted.len == 1 &&
              pkt.granted.data[0] == 0,
          "SUBACK one code");
    CHECK(DECODE(0x90, 0x06, 0xBE, 0xEF, 0x00, 0x01, 0x02, 0x80) == MQTT_OK &&
              pkt.packet_id == 0xBEEF && pkt.granted.len == 4 &&
              memcmp(pkt.granted.data, BYTES(0, 1, 2, 0x80), 4) == 0,
          "SUBACK codes 0, 1, 2, 0x80");
    REJECT(MQTT_ERR_MALFORMED, "SUBACK remaining 2", 0x90, 0x02, 0x00, 0x01);
    REJECT(MQTT_ERR_MALFORMED, "SUBACK code 3", 0x90, 0x03, 0x00, 0x01, 0x03);
    REJECT(MQTT_ERR_MALFORMED, "SUBACK code 0x81", 0x90, 0x04, 0x00, 0x01, 0x00, 0x81);
    REJECT(MQTT_ERR_MALFORMED, "SUBACK packet id 0", 0x90, 0x03, 0x00, 0x00, 0x00);
    REJECT(MQTT_ERR_MALFORMED, "SUBACK flags", 0x92, 0x03, 0x00, 0x01, 0x00);
    CHECK(DECODE(0xD0, 0x00) == MQTT_OK && used == 2 && pkt.type == MQTT_PINGRESP,
          "PINGRESP");
    REJECT(MQTT_ERR_MALFORMED, "PINGRESP remaining 1", 0xD0, 0x01, 0x00);
    REJECT(MQTT_ERR_MALFORMED, "PINGRESP flags", 0xD1, 0x00);
}

static void test_decode_publish(void)
{
    CHECK(DECODE(0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i') == MQTT_OK && used == 9 &&
              pkt.type == MQTT_PUBLISH && pkt.qos == 0 && !pkt.retain && !pkt.dup &&
              pkt.packet_id == 0 && pkt.topic.len == 3 &&
              memcmp(pkt.topic.data, "a/b", 3) == 0 && pkt.payload.len == 2 &&
              memcmp(pkt.payload.data, "hi", 2) == 0,
          "PUBLISH qos0 decoded");
    CHECK(DECODE(0x3D, 0x07, 0x00, 0x01, 't', 0x12, 0x34, 'h', 'i') == MQTT_OK &&
              pkt.qos == 2 && pkt.retain && pkt.dup && pkt.packet_id == 0x1234 &&
              pkt.payload.len == 2 && pkt.flags == 0x0D,
          "PUBLISH qos2 dup retain decoded");
    CHECK(DECODE(0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x07) == MQTT_OK && pkt.qos == 1 &&
              pkt.packet_id == 7 && pkt.payload.len == 0 && pkt.payload.data != NULL,
          "PUBLISH qos1 empty payload");
    CHECK(DECODE(0x30, 0x05, 0x00, 0x02, 0xC3, 0xA9, 0x00) == MQTT_OK && pkt.topic.len == 2 &&
              pkt.payload.len == 1 && pkt.payload.data[0] == 0,
          "PUBLISH UTF-8 topic, NUL payload");
    CHECK(DECODE(0x30, 0x03, 0x00, 0x01, '$', 0xEE) == MQTT_OK && used == 5 &&
              pkt.topic.len == 1 && pkt.payload.len == 0,
          "PUBLISH decode stops at its remaining length");
}

static void test_decode_publish_malformed(void)
{
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH QoS 3", 0x36, 0x05, 0x00, 0x01, 't', 0x00, 0x01);
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH QoS 3 on the first byte alone", 0x36);
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH DUP on QoS 0", 0x38, 0x03, 0x00, 0x01, 't');
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH packet id 0", 0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x00);
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH empty topic", 0x30, 0x02, 0x00, 0x00);
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH '+' in topic", 0x30, 0x05, 0x00, 0x03, 'a', '/', '+');
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH '#' in topic", 0x30, 0x03, 0x00, 0x01, '#');
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH overlong UTF-8 topic", 0x30, 0x04, 0x00, 0x02, 0xC0,
           0x80);
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH surrogate in topic", 0x30, 0x05, 0x00, 0x03, 0xED,
           0xA0, 0x80);
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH NUL in topic", 0x30, 0x04, 0x00, 0x02, 'a', 0x00);
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH topic length past the packet", 0x30, 0x03, 0x00, 0x05,
           'a', 'b', 'c', 'd', 'e');
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH topic length 0xFFFF past the packet", 0x30, 0x02, 0xFF,
           0xFF);
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH remaining 1", 0x30, 0x01, 0x00);
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH remaining 0", 0x30, 0x00);
    REJECT(MQTT_ERR_MALFORMED, "PUBLISH qos1 without room for a packet id", 0x32, 0x04, 0x00,
           0x01, 't', 0x00);
}

static void test_decode_protocol(void)
{
    REJECT(MQTT_ERR_PROTOCOL, "CONNECT from a server", 0x10, 0x00);
    REJECT(MQTT_ERR_PROTOCOL, "SUBSCRIBE from a server", 0x82, 0x00);
    REJECT(MQTT_ERR_PROTOCOL, "UNSUBSCRIBE from a server", 0xA2, 0x00);
    REJECT(MQTT_ERR_PROTOCOL, "PINGREQ from a server", 0xC0, 0x00);
    REJECT(MQTT_ERR_PROTOCOL, "DISCONNECT from a server", 0xE0, 0x00);
    REJECT(MQTT_ERR_PROTOCOL, "reserved type 0", 0x00, 0x00);
    REJECT(MQTT_ERR_PROTOCOL, "reserved type 15", 0xF0, 0x00);
    REJECT(MQTT_ERR_PROTOCOL, "a bad type is seen on its first byte", 0xE0);
}

static void test_decode_lengths(void)
{
    REJECT(MQTT_ERR_MALFORMED, "remaining length with 5 bytes", 0x30, 0xFF, 0xFF, 0xFF, 0xFF,
           0x7F);
    REJECT(MQTT_ERR_MALFORMED, "4th length byte continues (no 5th byte yet)", 0xD0, 0x80, 0x80,
           0x80, 0x80);
    CHECK(DECODE(0xD0, 0x80, 0x00) == MQTT_OK && used == 3 && pkt.type == MQTT_PINGRESP,
          "non-minimal remaining length accepted");
    CHECK(DECODE(0xD0, 0x80, 0x80, 0x80, 0x00) == MQTT_OK && used == 5,
          "5-byte fixed header accepted");
    CHECK(DECODE(0x40, 0x82, 0x80, 0x00, 0x00, 0x01) == MQTT_OK && used == 6 &&
              pkt.packet_id == 1,
          "PUBACK with a 3-byte remaining length of 2");
    CHECK(DECODE(0x40, 0x02, 0x00, 0x01, 0xD0, 0x00) == MQTT_OK && used == 4 &&
              pkt.type == MQTT_PUBACK,
          "two packets: the first is consumed alone");
}

static void test_decode_max_packet(void)
{
    const uint8_t b[] = {0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i'};
    const uint8_t huge[] = {0x30, 0xE8, 0x07, 0x00}; /* remaining 1000, 3 bytes of it */
    const char *w = NULL;
    size_t n = 0;
    CHECK(mqtt__decode_packet(b, 9, 9, &pkt, &n, &w) == MQTT_OK && n == 9,
          "max_packet equal to the packet size");
    CHECK(mqtt__decode_packet(b, 9, 8, &pkt, &n, &w) == MQTT_ERR_TOO_LARGE && w != NULL,
          "packet one byte over max_packet");
    w = NULL;
    CHECK(mqtt__decode_packet(huge, sizeof huge, 100, &pkt, &n, &w) == MQTT_ERR_TOO_LARGE &&
              w != NULL,
          "oversized packet refused from its header, before its body");
    CHECK(mqtt__decode_packet(huge, sizeof huge, 0, &pkt, &n, NULL) == MQTT_ERR_INCOMPLETE &&
              n == 1003,
          "max_packet 0 means no limit");
    CHECK(mqtt__decode_packet(NULL, 0, 0, &pkt, &n, NULL) == MQTT_ERR_INCOMPLETE && n == 2,
          "empty input needs 2 bytes");
    CHECK(mqtt__decode_packet(b, 9, 0, NULL, &n, NULL) == MQTT_ERR_INVAL, "NULL packet");
}

/* ---- round trips and streaming --------------------------------------- */

static uint8_t topic_buf[65536];
static uint8_t wire[65536 + 64];

static void fill_topic(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        topic_buf[i] = (uint8_t)("abcdefghij/klmnopqrstuvwxyz0123456789"[i % 37]);
    }
}

static void round_trip(size_t tlen, const uint8_t *payload, size_t plen, uint8_t qos,
                       bool retain, bool dup, uint16_t id)
{
    char name[96];
    size_t n, want = mqtt__publish_size(tlen, plen, qos);
    int rc;
    fill_topic(tlen);
    n = mqtt__encode_publish(wire, topic_buf, tlen, payload, plen, qos, retain, dup, id);
    rc = decode(wire, n);
    snprintf(name, sizeof name, "round trip: topic %zu, payload %zu, qos %u, retain %d, dup %d",
             tlen, plen, qos, retain, dup);
    CHECK(n == want && rc == MQTT_OK && used == n && pkt.qos == qos && pkt.retain == retain &&
              pkt.dup == (dup && qos > 0) && pkt.packet_id == (qos ? id : 0) &&
              pkt.topic.len == tlen &&
              pkt.topic.data == wire + (n - plen - tlen - (qos ? 2u : 0u)) &&
              memcmp(pkt.topic.data, topic_buf, tlen) == 0 && pkt.payload.len == plen &&
              (plen == 0 || memcmp(pkt.payload.data, payload, plen) == 0),
          name);
}

static void test_round_trips(void)
{
    static const uint8_t nul_payload[] = {0x00, 'x', 0x00, 0x00, 0xFF};
    static const size_t lens[] = {1, 127, 255, 256, 300, 16383, 65535};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        round_trip(lens[i], nul_payload, sizeof nul_payload, 1, false, false, 42);
    }
    round_trip(256, (const uint8_t *)"", 0, 0, true, false, 0);
    round_trip(300, NULL, 0, 2, true, true, 65535);
    round_trip(255, nul_payload, sizeof nul_payload, 0, false, true, 9);
    round_trip(65535, nul_payload, sizeof nul_payload, 2, false, true, 1);
    fill_topic(256);
    mqtt__encode_publish(wire, topic_buf, 256, NULL, 0, 0, false, false, 0);
    CHECK(wire[1] == 0x82 && wire[2] == 0x02 && wire[3] == 0x01 && wire[4] == 0x00 &&
              decode(wire, 261) == MQTT_OK &&
              pkt.topic.len == 256,
          "256-byte topic: length bytes 01 00 read as 256");
}

/* Feeds a packet one byte more each time: INCOMPLETE with the right need, then OK. */
static void test_streaming(void)
{
    static uint8_t payload[200];
    size_t n, bad = 0;
    fill_topic(300);
    n = mqtt__encode_publish(wire, topic_buf, 300, payload, sizeof payload, 1, false, false, 5);
    CHECK(n == 1 + 2 + 2 + 300 + 2 + 200 && wire[1] == 0xF8 && wire[2] == 0x03,
          "streaming: packet with a 2-byte remaining length (504)");
    for (size_t len = 0; len < n; len++) {
        size_t want = len < 2 ? 2 : len == 2 ? 3 : n;
        if (decode(wire, len) != MQTT_ERR_INCOMPLETE || used != want || used < len + 1) {
            bad++;
        }
    }
    CHECK(bad == 0, "streaming: every prefix is INCOMPLETE with the exact need");
    CHECK(decode(wire, 1) == MQTT_ERR_INCOMPLETE && used == 2, "streaming: 1 byte needs 2");
    CHECK(decode(wire, 2) == MQTT_ERR_INCOMPLETE && used == 3, "streaming: 2 bytes need 3");
    CHECK(decode(wire, 3) == MQTT_ERR_INCOMPLETE && used == n, "streaming: 3 bytes need all");
    CHECK(decode(wire, n - 1) == MQTT_ERR_INCOMPLETE && used == n,
          "streaming: one byte short needs all");
    CHECK(decode(wire, n) == MQTT_OK && used == n && pkt.packet_id == 5 &&
              pkt.payload.len == 200,
          "streaming: complete");
}

/* ---- UTF-8 and topics ------------------------------------------------ */

static void test_utf8(void)
{
    CHECK(mqtt__utf8_valid(S("plain ascii/1")), "UTF-8: ASCII");
    CHECK(mqtt__utf8_valid(NULL, 0), "UTF-8: empty");
    CHECK(mqtt__utf8_valid(S("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80")),
          "UTF-8: 2, 3 and 4-byte sequences");
    CHECK(mqtt__utf8_valid(S("\xC2\x80\xDF\xBF")), "UTF-8: U+0080 and U+07FF");
    CHECK(mqtt__utf8_valid(S("\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF")),
          "UTF-8: U+0800, U+D7FF, U+E000, U+FFFF");
    CHECK(mqtt__utf8_valid(S("\xF0\x90\x80\x80\xF4\x8F\xBF\xBF")), "UTF-8: U+10000, U+10FFFF");
    CHECK(!mqtt__utf8_valid(S("\xC0\x80")), "UTF-8: overlong C0 80");
    CHECK(!mqtt__utf8_valid(S("\xC1\xBF")), "UTF-8: overlong C1 BF");
    CHECK(!mqtt__utf8_valid(S("\xE0\x80\x80")), "UTF-8: overlong 3-byte");
    CHECK(!mqtt__utf8_valid(S("\xF0\x80\x80\x80")), "UTF-8: overlong 4-byte");
    CHECK(!mqtt__utf8_valid(S("\xED\xA0\x80")), "UTF-8: surrogate U+D800");
    CHECK(!mqtt__utf8_valid(S("\xED\xBF\xBF")), "UTF-8: surrogate U+DFFF");
    CHECK(!mqtt__utf8_valid(BYTES(0x00), 1), "UTF-8: U+0000");
    CHECK(!mqtt__utf8_valid(BYTES('a', 0x00, 'b'), 3), "UTF-8: U+0000 inside");
    CHECK(!mqtt__utf8_valid(S("\xC3")), "UTF-8: truncated 2-byte");
    CHECK(!mqtt__utf8_valid(S("\xE2\x82")), "UTF-8: truncated 3-byte");
    CHECK(!mqtt__utf8_valid(S("\xF0\x9F\x98")), "UTF-8: truncated 4-byte");
    CHECK(!mqtt__utf8_valid((const uint8_t *)"\xC3\xA9", 1), "UTF-8: length cuts a sequence");
    CHECK(!mqtt__utf8_valid(S("\xF4\x90\x80\x80")), "UTF-8: above U+10FFFF");
    CHECK(!mqtt__utf8_valid(S("\xF5\x80\x80\x80")), "UTF-8: lead byte F5");
    CHECK(!mqtt__utf8_valid(S("\xFF")), "UTF-8: byte FF");
    CHECK(!mqtt__utf8_valid(S("\x80")), "UTF-8: lone continuation byte");
    CHECK(!mqtt__utf8_valid(S("\xC3\x28")), "UTF-8: bad continuation byte");
    CHECK(!mqtt__utf8_valid(S("\xE2\x82\x28")), "UTF-8: bad 3rd byte");
    CHECK(!mqtt__utf8_valid(S("\xF0\x9F\x98\x28")), "UTF-8: bad 4th byte");
}

static void test_topic_names(void)
{
    const char *w = NULL;
    CHECK(mqtt__check_topic_name(S("a/b"), &w) == MQTT_OK, "name: a/b");
    CHECK(mqtt__check_topic_name(S("/"), &w) == MQTT_OK, "name: /");
    CHECK(mqtt__check_topic_name(S("$SYS/x"), &w) == MQTT_OK, "name: $SYS/x");
    CHECK(mqtt__check_topic_name(S("caf\xC3\xA9"), &w) == MQTT_OK, "name: UTF-8");
    CHECK(mqtt__check_topic_name(S(""), &w) == MQTT_ERR_INVAL && w != NULL, "name: empty");
    w = NULL;
    CHECK(mqtt__check_topic_name(S("a/+"), &w) == MQTT_ERR_INVAL && w != NULL, "name: '+'");
    CHECK(mqtt__check_topic_name(S("a#"), &w) == MQTT_ERR_INVAL, "name: '#'");
    CHECK(mqtt__check_topic_name(BYTES('a', 0), 2, &w) == MQTT_ERR_INVAL, "name: NUL");
    CHECK(mqtt__check_topic_name(S("\xC0\x80"), &w) == MQTT_ERR_INVAL, "name: bad UTF-8");
    CHECK(mqtt__check_topic_name(topic_buf, 65536, &w) == MQTT_ERR_INVAL,
          "name: 65536 bytes");
    fill_topic(65535);
    CHECK(mqtt__check_topic_name(topic_buf, 65535, &w) == MQTT_OK, "name: 65535 bytes");
    CHECK(mqtt_validate_topic_name("a/b", 3, NULL) == MQTT_OK, "public name: a/b");
    w = NULL;
    CHECK(mqtt_validate_topic_name("a/#", 3, &w) == MQTT_ERR_INVAL && w != NULL,
          "public name: a/# with a reason");
    CHECK(mqtt_validate_topic_name(NULL, 0, NULL) == MQTT_ERR_INVAL, "public name: NULL");
}

static void test_topic_filters(void)
{
    static const char *good[] = {"#",      "+",       "/+/",          "a/+/#",    "a/b",
                                 "+/+",    "/#",      "+/#",          "$SYS/#",   "a//b",
                                 "/",      "$share/g/a/+", "$share/g/#", "$share/g//", "$shared/+",
                                 "$share"};
    static const char *bad[] = {"a/#/b",      "a#",        "a/b+",      "",           "#/a",
                                "##",         "+a",        "a/+b/c",    "++",         "$share/",
                                "$share/g",   "$share/g/", "$share//a", "$share/+/a", "$share/#/a",
                                "$share/g+/a", "$share/g/a#"};
    char name[64];
    const char *w = NULL;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(name, sizeof name, "filter accepted: \"%s\"", good[i]);
        CHECK(mqtt_validate_topic_filter(good[i], strlen(good[i]), NULL) == MQTT_OK, name);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        w = NULL;
        snprintf(name, sizeof name, "filter rejected: \"%s\"", bad[i]);
        CHECK(mqtt_validate_topic_filter(bad[i], strlen(bad[i]), &w) == MQTT_ERR_INVAL &&
                  w != NULL,
              name);
    }
    CHECK(mqtt__check_topic_filter(S("a/\xED\xA0\x80"), &w) == MQTT_ERR_INVAL,
          "filter rejected: surrogate");
    CHECK(mqtt__check_topic_filter(BYTES('a', 0, 'b'), 3, &w) == MQTT_ERR_INVAL,
          "filter rejected: NUL");
}

static void test_matching(void)
{
    static const struct {
        const char *filter, *topic;
        bool match;
    } cases[] = {
        {"sport/tennis/#", "sport/tennis", true},
        {"sport/tennis/#", "sport/tennis/x/y", true},
        {"sport/tennis/#", "sport/tennisx", false},
        {"sport/#", "sport", true},
        {"#", "a/b/c", true},
        {"#", "/", true},
        {"+", "a", true},
        {"+", "a/b", false},
        {"+", "/", false},
        {"+/+", "/finance", true},
        {"/+", "/finance", true},
        {"+", "/finance", false},
        {"sport/+", "sport", false},
        {"sport/+", "sport/", true},
        {"sport/+/player1", "sport/tennis/player1", true},
        {"sport/+/player1", "sport/tennis/player2", false},
        {"a/b", "a/b", true},
        {"a/b", "a/b/", false},
        {"a/b/", "a/b", false},
        {"a/b", "a/c", false},
        {"a/b", "A/b", false},
        {"#", "$SYS/x", false},
        {"+/monitor/Clients", "$SYS/monitor/Clients", false},
        {"$SYS/#", "$SYS/x", true},
        {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
        {"a/#/b", "a/x/b", false},
        {"#", "", false},
        {"", "", false},
        {"$share/g/a/+", "a/b", true},
        {"$share/g/#", "a/b", true},
        {"$share/g/#", "$SYS/x", false},
        {"$share/g/a/b", "$share/g/a/b", false},
        {"$share/g/$SYS/#", "$SYS/x", true},
        {"$shared/a", "a", false},
    };
    char name[96];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(name, sizeof name, "\"%s\" %s \"%s\"", cases[i].filter,
                 cases[i].match ? "matches" : "does not match", cases[i].topic);
        CHECK(mqtt_topic_matches(cases[i].filter, strlen(cases[i].filter), cases[i].topic,
                                 strlen(cases[i].topic)) == cases[i].match,
              name);
    }
    CHECK(mqtt__topic_match(S("a/+"), (const uint8_t *)"a/bc", 3), "match: topic length honoured");
    CHECK(!mqtt__topic_match((const uint8_t *)"a/b", 2, S("a/b")),
          "match: filter length honoured");
}

int main(void)
{
    test_varint();
    test_fixed_header();
    test_connect_full();
    test_connect_minimal();
    test_connect_will_empty();
    test_connect_limits();
    test_publish_golden();
    test_publish_limits();
    test_acks_and_empty();
    test_subscribe();
    test_subscribe_too_big();
    test_decode_connack();
    test_decode_acks();
    test_decode_suback_ping();
    test_decode_publish();
    test_decode_publish_malformed();
    test_decode_protocol();
    test_decode_lengths();
    test_decode_max_packet();
    test_round_trips();
    test_streaming();
    test_utf8();
    test_topic_names();
    test_topic_filters();
    test_matching();
    return test_done();
}
