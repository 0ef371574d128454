/*
 * The client's send path: session records encoded into the outgoing buffer,
 * checked against packets written out by hand from the MQTT 3.1.1 text, so
 * the record and the codec together are seen to give the bytes the session
 * used to hold.
 */
#include <stdlib.h>

#include "send.h"
#include "test.h"

static const mqtt_bytes none = { NULL, 0 };
static const mqtt_session_limits roomy = { 8, 100, 1u << 24 };

static mqtt_bytes text(const char *s)
{
    return (mqtt_bytes){ (const uint8_t *)s, strlen(s) };
}

/* Appends what next() hands out to out, then confirms it. */
static bool pump(mqtt_session *s, mqtt_buf *out)
{
    mqtt_qos_action a;
    const mqtt_record *r = mqtt__session_next(s, &a);
    if (r == NULL || mqtt__send_record(out, r, a, NULL) != MQTT_OK)
        return false;
    mqtt__session_sent(s);
    return true;
}

static void test_publish(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    mqtt_buf out = { NULL, 0, 0 };
    mqtt_record *r0, *r1, *r2;
    mqtt__record_publish(text("a/b"), text("hi"), 0, true, none, &r0);
    mqtt__record_publish(text("a/b"), text("hi"), 1, false, none, &r1);
    mqtt__record_publish(text("c"), none, 2, true, none, &r2);
    mqtt__session_add(s, r0);
    mqtt__session_add(s, r1);
    mqtt__session_add(s, r2);
    CHECK(pump(s, &out) && pump(s, &out) && pump(s, &out) && !pump(s, &out),
          "publish: three records written, then nothing");
    const uint8_t want[] = { 0x31, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i',
                             0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, 'h', 'i',
                             0x35, 0x05, 0x00, 0x01, 'c', 0x00, 0x02 };
    CHECK_BYTES(out.data, out.len, want, sizeof want, "publish: QoS 0 retained, QoS 1, QoS 2");
    out.len = 0;
    mqtt__session_ack(s, MQTT_PUBREC, 2);
    mqtt__session_rewind(s);
    CHECK(pump(s, &out) && pump(s, &out) && !pump(s, &out), "publish: two resent");
    const uint8_t again[] = { 0x3A, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, 'h', 'i',
                              0x62, 0x02, 0x00, 0x02 };
    CHECK_BYTES(out.data, out.len, again, sizeof again, "publish: DUP on the resend, PUBREL");
    mqtt__buf_free(&out);
    mqtt__session_free(s, NULL);
}

static void test_subscribe(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    mqtt_buf out = { NULL, 0, 0 };
    mqtt_sub_entry e[2] = { { text("a/+"), 1 }, { text("#"), 2 } };
    mqtt_record *sub, *uns;
    mqtt__record_subscribe(MQTT_REC_SUBSCRIBE, e, 2, none, &sub);
    mqtt__record_subscribe(MQTT_REC_UNSUBSCRIBE, e, 2, none, &uns);
    mqtt__session_add(s, sub);
    mqtt__session_add(s, uns);
    CHECK(pump(s, &out) && pump(s, &out), "subscribe: both written");
    const uint8_t want[] = { 0x82, 0x0C, 0x00, 0x01, 0x00, 0x03, 'a', '/', '+', 0x01,
                             0x00, 0x01, '#', 0x02,
                             0xA2, 0x0A, 0x00, 0x02, 0x00, 0x03, 'a', '/', '+', 0x00, 0x01, '#' };
    CHECK_BYTES(out.data, out.len, want, sizeof want, "subscribe: SUBSCRIBE and UNSUBSCRIBE");
    out.len = 0;
    mqtt__session_rewind(s);
    CHECK(pump(s, &out) && pump(s, &out), "subscribe: both resent");
    CHECK_BYTES(out.data, out.len, want, sizeof want, "subscribe: resent unchanged");
    mqtt__buf_free(&out);
    mqtt__session_free(s, NULL);
}

/* A payload past 16383 bytes: a 3-byte remaining length, appended after what is there. */
static void test_large(void)
{
    enum { N = 20000 };
    uint8_t *payload = malloc(N);
    for (size_t i = 0; i < N; i++)
        payload[i] = (uint8_t)(i * 7u);
    mqtt_record *r;
    mqtt_bytes p = { payload, N };
    mqtt__record_publish(text("t"), p, 1, false, none, &r);
    r->packet_id = 0x1234;
    mqtt_buf out = { NULL, 0, 0 };
    mqtt__buf_append(&out, "x", 1);
    CHECK(mqtt__send_record(&out, r, MQTT_QA_SEND, NULL) == MQTT_OK && out.len == 1 + r->bytes,
          "large: the record's size is what it writes");
    size_t rl = 2 + 1 + 2 + N;
    const uint8_t head[] = { 'x', 0x32, (uint8_t)(rl & 0x7F) | 0x80, (uint8_t)(rl >> 7 & 0x7F) | 0x80,
                             (uint8_t)(rl >> 14), 0x00, 0x01, 't', 0x12, 0x34 };
    CHECK(out.len > sizeof head && memcmp(out.data, head, sizeof head) == 0 &&
              memcmp(out.data + sizeof head, payload, N) == 0,
          "large: header, then the payload");
    mqtt__buf_free(&out);
    mqtt__record_free(r);
    free(payload);
}

static void test_misuse(void)
{
    mqtt_record *r;
    mqtt_buf out = { NULL, 0, 0 };
    mqtt__record_publish(text("t"), text("x"), 1, false, none, &r);
    CHECK(mqtt__send_record(&out, r, MQTT_QA_ACKED, NULL) == MQTT_ERR_INVAL && out.len == 0,
          "misuse: an action that writes nothing");
    CHECK(mqtt__send_record(NULL, r, MQTT_QA_SEND, NULL) == MQTT_ERR_INVAL &&
              mqtt__send_record(&out, NULL, MQTT_QA_SEND, NULL) == MQTT_ERR_INVAL,
          "misuse: no buffer or no record");
    r->kind = 9;
    CHECK(mqtt__send_record(&out, r, MQTT_QA_SEND, NULL) == MQTT_ERR_INVAL && out.len == 0,
          "misuse: a record of no known kind");
    mqtt__record_free(r);
    mqtt__buf_free(&out);
}

int main(void)
{
    test_publish();
    test_subscribe();
    test_large();
    test_misuse();
    return test_done();
}
