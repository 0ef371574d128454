/*
 * Session unit tests, scripted like a conversation with a fake broker: each
 * step asserts the exact bytes the session hands out, then feeds it acks.
 * Packets are built by hand so these tests do not depend on the codec.
 * Run under -fsanitize=address to prove freeing a full session leaks nothing.
 */
#include <stdlib.h>

#include "session.h"
#include "test.h"

static const mqtt_session_limits roomy = { 64, 100000, 1u << 30 };

static const mqtt_bytes no_props = { NULL, 0 };

static mqtt_bytes text(const char *s)
{
    return (mqtt_bytes){ (const uint8_t *)s, strlen(s) };
}

/* A PUBLISH record; the session gives it its id. */
static mqtt_record *publish(const char *topic, const char *payload, uint8_t qos)
{
    mqtt_record *r = NULL;
    if (mqtt__record_publish(text(topic), text(payload), qos, false, no_props, &r) != MQTT_OK)
        return NULL;
    return r;
}

/* SUBSCRIBE (qos given) or UNSUBSCRIBE with a single filter. */
static mqtt_record *subscribe(mqtt_rec_kind kind, const char *filter, uint8_t qos)
{
    mqtt_sub_entry e = { text(filter), qos };
    mqtt_record *r = NULL;
    if (mqtt__record_subscribe(kind, &e, 1, no_props, &r) != MQTT_OK)
        return NULL;
    return r;
}

static uint16_t add(mqtt_session *s, mqtt_record *r)
{
    int rc = mqtt__session_add(s, r);
    if (rc != MQTT_OK) {
        mqtt__record_free(r);
        return 0;
    }
    return r->packet_id;
}

static uint8_t *put_text(uint8_t *p, mqtt_bytes t)
{
    *p++ = (uint8_t)(t.len >> 8);
    *p++ = (uint8_t)(t.len & 0xFF);
    if (t.len)
        memcpy(p, t.data, t.len);
    return p + t.len;
}

/* The bytes for what next() handed out, built by hand (remaining length
 * < 128) so these tests do not depend on the codec or the client. */
static size_t encode(const mqtt_record *r, mqtt_qos_action a, uint8_t *buf)
{
    uint8_t *p = buf + 2;
    if (a == MQTT_QA_PUBREL) {
        buf[0] = 0x62;
    } else if (r->kind == MQTT_REC_PUBLISH) {
        buf[0] = (uint8_t)(MQTT_PUBLISH | r->qos << 1 | (r->dup && r->qos ? 0x08 : 0) | r->retain);
        p = put_text(p, mqtt__record_topic(r));
    } else {
        buf[0] = r->kind == MQTT_REC_SUBSCRIBE ? 0x82 : 0xA2;
    }
    if (a == MQTT_QA_PUBREL || r->kind != MQTT_REC_PUBLISH || r->qos) {
        *p++ = (uint8_t)(r->packet_id >> 8);
        *p++ = (uint8_t)(r->packet_id & 0xFF);
    }
    mqtt_bytes payload = mqtt__record_payload(r);
    if (a != MQTT_QA_PUBREL && r->kind == MQTT_REC_PUBLISH && payload.len) {
        memcpy(p, payload.data, payload.len);
        p += payload.len;
    }
    for (size_t i = 0; a != MQTT_QA_PUBREL && i < r->entry_count; i++) {
        p = put_text(p, mqtt__record_entries(r)[i].filter);
        if (r->kind == MQTT_REC_SUBSCRIBE)
            *p++ = mqtt__record_entries(r)[i].qos;
    }
    buf[1] = (uint8_t)(p - buf - 2);
    return (size_t)(p - buf);
}

/* next() must hand out exactly want; then the caller "writes" it. */
static bool sends(mqtt_session *s, const uint8_t *want, size_t len)
{
    mqtt_qos_action a;
    uint8_t got[256];
    const mqtt_record *r = mqtt__session_next(s, &a);
    if (r == NULL)
        return false;
    size_t n = encode(r, a, got);
    bool same = n == len && memcmp(got, want, len) == 0;
    if (!same) {
        printf("#   got:");
        for (size_t i = 0; i < n; i++)
            printf(" %02x", got[i]);
        printf("\n");
    }
    mqtt__session_sent(s);
    return same;
}

/* Sends whatever next() offers; false when nothing may be sent. */
static bool send_any(mqtt_session *s)
{
    mqtt_qos_action a;
    if (mqtt__session_next(s, &a) == NULL)
        return false;
    mqtt__session_sent(s);
    return true;
}

static bool idle(mqtt_session *s)
{
    mqtt_qos_action a;
    return mqtt__session_next(s, &a) == NULL;
}

static mqtt_session_counts counts(const mqtt_session *s)
{
    mqtt_session_counts c;
    mqtt__session_counts(s, &c);
    return c;
}

static void test_qos1(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    CHECK(add(s, publish("a/b", "hi", 1)) == 1, "qos1: first packet id is 1");
    mqtt_session_counts c = counts(s);
    CHECK(c.queued == 1 && c.inflight == 0 && c.records == 1 && c.bytes == 11,
          "qos1: queued before it is written");
    const uint8_t pub[] = { 0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, 'h', 'i' };
    CHECK(sends(s, pub, sizeof pub), "qos1: PUBLISH bytes with id 1");
    c = counts(s);
    CHECK(c.queued == 0 && c.inflight == 1 && c.records == 1, "qos1: in flight after sent");
    CHECK(idle(s), "qos1: nothing more to send");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 1) == MQTT_ACK_NEW, "qos1: PUBACK completes it");
    c = counts(s);
    CHECK(c.records == 0 && c.inflight == 0 && c.bytes == 0, "qos1: PUBACK frees the record");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 1) == MQTT_ACK_UNKNOWN, "qos1: second PUBACK unknown");
    mqtt__session_free(s, NULL);
}

static void test_qos2(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    CHECK(add(s, publish("t", "x", 2)) == 1, "qos2: id 1");
    const uint8_t pub[] = { 0x34, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'x' };
    CHECK(sends(s, pub, sizeof pub), "qos2: PUBLISH bytes");
    CHECK(mqtt__session_ack(s, MQTT_PUBCOMP, 1) == MQTT_ACK_UNKNOWN,
          "qos2: PUBCOMP before PUBREC is unknown");
    CHECK(counts(s).inflight == 1, "qos2: still in flight after bad acks");
    CHECK(mqtt__session_ack(s, MQTT_PUBREC, 1) == MQTT_ACK_NEW, "qos2: PUBREC is new");
    CHECK(mqtt__session_ack(s, MQTT_PUBREC, 1) == MQTT_ACK_DUPLICATE,
          "qos2: second PUBREC is a duplicate");
    CHECK(counts(s).inflight == 1 && counts(s).records == 1, "qos2: awaiting PUBCOMP");
    CHECK(idle(s), "qos2: PUBREL is the caller's on PUBREC, not next()'s");
    CHECK(mqtt__session_ack(s, MQTT_PUBCOMP, 1) == MQTT_ACK_NEW, "qos2: PUBCOMP completes");
    CHECK(counts(s).records == 0 && counts(s).inflight == 0, "qos2: record freed");
    CHECK(mqtt__session_ack(s, MQTT_PUBCOMP, 1) == MQTT_ACK_UNKNOWN,
          "qos2: second PUBCOMP unknown");
    mqtt__session_free(s, NULL);
}

static void test_rewind(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    add(s, publish("t", "a", 1));                       /* id 1 */
    add(s, publish("t", "b", 2));                       /* id 2 */
    add(s, publish("t", "c", 2));                       /* id 3 */
    add(s, subscribe(MQTT_REC_SUBSCRIBE, "f/#", 1));    /* id 4 */
    add(s, subscribe(MQTT_REC_UNSUBSCRIBE, "g", 0));    /* id 5 */
    for (int i = 0; i < 5; i++)
        send_any(s);
    CHECK(mqtt__session_ack(s, MQTT_PUBREC, 3) == MQTT_ACK_NEW, "rewind: id 3 awaits PUBCOMP");
    add(s, publish("t", "d", 1)); /* id 6, never written */
    add(s, publish("t", "e", 0));
    /* The connection drops in the middle of writing id 6. */
    mqtt_qos_action act;
    CHECK(mqtt__session_next(s, &act) != NULL && act == MQTT_QA_SEND,
          "rewind: id 6 offered before the drop");
    mqtt__session_rewind(s);
    mqtt__session_sent(s); /* stale: must not advance anything */

    const uint8_t a[] = { 0x3A, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'a' };
    const uint8_t b[] = { 0x3C, 0x06, 0x00, 0x01, 't', 0x00, 0x02, 'b' };
    const uint8_t rel[] = { 0x62, 0x02, 0x00, 0x03 };
    const uint8_t sub[] = { 0x82, 0x08, 0x00, 0x04, 0x00, 0x03, 'f', '/', '#', 0x01 };
    const uint8_t uns[] = { 0xA2, 0x05, 0x00, 0x05, 0x00, 0x01, 'g' };
    const uint8_t d[] = { 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x06, 'd' };
    const uint8_t e[] = { 0x30, 0x04, 0x00, 0x01, 't', 'e' };
    CHECK(sends(s, a, sizeof a), "rewind: QoS 1 resent first with DUP");
    mqtt__session_rewind(s); /* a second drop during the resend starts over */
    CHECK(sends(s, a, sizeof a), "rewind: second rewind resends id 1 again");
    CHECK(sends(s, b, sizeof b), "rewind: QoS 2 awaiting PUBREC resent with DUP");
    CHECK(sends(s, rel, sizeof rel), "rewind: PUBREL for the record awaiting PUBCOMP");
    CHECK(sends(s, sub, sizeof sub), "rewind: SUBSCRIBE resent unchanged");
    CHECK(sends(s, uns, sizeof uns), "rewind: UNSUBSCRIBE resent unchanged");
    CHECK(sends(s, d, sizeof d), "rewind: queued QoS 1 after them, no DUP");
    CHECK(sends(s, e, sizeof e), "rewind: queued QoS 0 last");
    CHECK(idle(s), "rewind: nothing more");
    mqtt_session_counts c = counts(s);
    CHECK(c.queued == 0 && c.inflight == 4 && c.records == 6, "rewind: states kept, QoS 0 gone");
    CHECK(mqtt__session_ack(s, MQTT_PUBCOMP, 3) == MQTT_ACK_NEW &&
              mqtt__session_ack(s, MQTT_SUBACK, 4) == MQTT_ACK_NEW &&
              mqtt__session_ack(s, MQTT_UNSUBACK, 5) == MQTT_ACK_NEW,
          "rewind: resent records still complete on their acks");
    mqtt__session_free(s, NULL);
}

static void test_rewind_ignores_window(void)
{
    mqtt_session_limits l = roomy;
    l.max_inflight = 2;
    mqtt_session *s = mqtt__session_new(&l);
    add(s, publish("t", "a", 1));
    add(s, publish("t", "b", 1));
    add(s, publish("t", "c", 1));
    send_any(s);
    send_any(s);
    CHECK(idle(s), "window: third held by a full window");
    mqtt__session_rewind(s);
    const uint8_t a[] = { 0x3A, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'a' };
    const uint8_t b[] = { 0x3A, 0x06, 0x00, 0x01, 't', 0x00, 0x02, 'b' };
    CHECK(sends(s, a, sizeof a), "window: in-flight id 1 resent despite a full window");
    CHECK(sends(s, b, sizeof b), "window: in-flight id 2 resent despite a full window");
    CHECK(idle(s), "window: queued id 3 still held after the resend");
    /* Acking the record at the cursor moves the cursor on. */
    mqtt__session_rewind(s);
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 1) == MQTT_ACK_NEW, "window: ack at the cursor");
    CHECK(sends(s, b, sizeof b), "window: cursor moved to the next record");
    const uint8_t c3[] = { 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x03, 'c' };
    CHECK(sends(s, c3, sizeof c3), "window: ack made room for id 3");
    mqtt__session_free(s, NULL);
}

static void test_window(void)
{
    mqtt_session_limits l = roomy;
    l.max_inflight = 2;
    mqtt_session *s = mqtt__session_new(&l);
    for (int i = 0; i < 3; i++)
        add(s, publish("t", "m", 1));
    const uint8_t p1[] = { 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'm' };
    const uint8_t p2[] = { 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x02, 'm' };
    const uint8_t p3[] = { 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x03, 'm' };
    CHECK(sends(s, p1, sizeof p1), "window of 2: first sent");
    CHECK(sends(s, p2, sizeof p2), "window of 2: second sent");
    CHECK(idle(s), "window of 2: third blocked");
    CHECK(idle(s), "window of 2: still blocked on a second try");
    CHECK(counts(s).queued == 1 && counts(s).inflight == 2, "window of 2: one queued, two in flight");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 2) == MQTT_ACK_NEW, "window of 2: ack the newer one");
    CHECK(sends(s, p3, sizeof p3), "window of 2: third sent after an ack");
    CHECK(idle(s), "window of 2: nothing left");
    mqtt__session_free(s, NULL);

    l.max_inflight = 0; /* means 1 */
    s = mqtt__session_new(&l);
    add(s, publish("t", "m", 1));
    add(s, publish("t", "m", 2));
    CHECK(send_any(s) && idle(s), "window 0 behaves as 1");
    mqtt__session_free(s, NULL);
}

static void test_order(void)
{
    mqtt_session_limits l = roomy;
    l.max_inflight = 1;
    mqtt_session *s = mqtt__session_new(&l);
    add(s, publish("t", "a", 1));
    add(s, publish("t", "b", 1));
    add(s, publish("t", "c", 0));
    add(s, subscribe(MQTT_REC_SUBSCRIBE, "x", 0));
    const uint8_t a[] = { 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'a' };
    const uint8_t b[] = { 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x02, 'b' };
    const uint8_t c[] = { 0x30, 0x04, 0x00, 0x01, 't', 'c' };
    const uint8_t x[] = { 0x82, 0x06, 0x00, 0x03, 0x00, 0x01, 'x', 0x00 };
    CHECK(sends(s, a, sizeof a), "order: first QoS 1 sent");
    CHECK(idle(s), "order: QoS 0 and SUBSCRIBE wait behind the blocked QoS 1");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 1) == MQTT_ACK_NEW, "order: ack frees the window");
    CHECK(sends(s, b, sizeof b), "order: blocked QoS 1 goes first");
    CHECK(sends(s, c, sizeof c), "order: then the QoS 0, needing no window");
    CHECK(sends(s, x, sizeof x), "order: then the SUBSCRIBE, needing no window");
    CHECK(counts(s).records == 2, "order: QoS 0 freed once written");
    mqtt__session_free(s, NULL);
}

/* Adds and completes QoS 1 publishes until the next id allocated will be `upto`. */
static void burn_ids(mqtt_session *s, uint16_t upto)
{
    for (;;) {
        uint16_t id = add(s, publish("t", "", 1));
        send_any(s);
        mqtt__session_ack(s, MQTT_PUBACK, id);
        if (id == (uint16_t)(upto - 1))
            return;
    }
}

static void test_wrap(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    add(s, publish("t", "", 1));                    /* 1, kept */
    add(s, subscribe(MQTT_REC_SUBSCRIBE, "x", 0)); /* 2, completed below */
    add(s, subscribe(MQTT_REC_UNSUBSCRIBE, "y", 0)); /* 3, kept */
    send_any(s);
    send_any(s);
    send_any(s);
    CHECK(mqtt__session_ack(s, MQTT_SUBACK, 2) == MQTT_ACK_NEW, "wrap: SUBACK frees id 2");
    burn_ids(s, 65535);
    mqtt_record *r = publish("t", "", 1);
    add(s, r);
    const uint8_t top[] = { 0x32, 0x05, 0x00, 0x01, 't', 0xFF, 0xFF };
    CHECK(r->packet_id == 65535 && sends(s, top, sizeof top), "wrap: id 65535 handed out");
    CHECK(add(s, publish("t", "", 2)) == 2, "wrap: 65535 -> skips 1 (in use), takes 2");
    CHECK(add(s, publish("t", "", 1)) == 4, "wrap: skips 3 (unsubscribe in use), takes 4");
    CHECK(add(s, publish("t", "", 0)) == 0, "wrap: QoS 0 takes no id");
    CHECK(add(s, publish("t", "", 1)) == 5, "wrap: then 5");
    mqtt__session_free(s, NULL);
}

/* Past 65535 held ids, records share ids in turn and wait for them. */
static void test_shared_ids(void)
{
    mqtt_session_limits l = { 65535, 70000, (size_t)1 << 30 };
    mqtt_session *s = mqtt__session_new(&l);
    bool all = true;
    for (uint32_t i = 1; i <= 65535; i++)
        all = all && add(s, publish("t", "", 1)) == (uint16_t)i;
    CHECK(all, "shared ids: 65535 records take ids 1..65535 in order");
    mqtt_record *late = publish("t", "late", 1);
    CHECK(mqtt__session_add(s, late) == MQTT_OK && late->packet_id == 1,
          "shared ids: the 65536th is accepted and shares id 1");
    CHECK(late->state == MQTT_QS_QUEUED1 && late->id_next == NULL && !late->dup,
          "shared ids: it waits, queued, last in the chain of id 1");
    CHECK(add(s, subscribe(MQTT_REC_SUBSCRIBE, "x", 0)) == 2, "shared ids: SUBSCRIBE shares id 2");
    CHECK(add(s, publish("t", "", 0)) == 0 && counts(s).records == 65538,
          "shared ids: QoS 0 still accepted");
    all = true;
    for (int i = 0; i < 65535; i++)
        all = all && send_any(s);
    CHECK(all && idle(s), "shared ids: the holders go out, the sharers wait");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 2) == MQTT_ACK_NEW && idle(s),
          "shared ids: id 2 free, but the record sharing id 1 is first in order");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 1) == MQTT_ACK_NEW, "shared ids: id 1 acked");
    const uint8_t want_late[] = { 0x32, 0x09, 0, 1, 't', 0, 1, 'l', 'a', 't', 'e' };
    const uint8_t want_sub[] = { 0x82, 0x06, 0, 2, 0, 1, 'x', 0 };
    CHECK(sends(s, want_late, sizeof want_late), "shared ids: the sharer of id 1 goes out");
    CHECK(sends(s, want_sub, sizeof want_sub), "shared ids: then the SUBSCRIBE with id 2");
    CHECK(send_any(s) && idle(s), "shared ids: then QoS 0, then nothing");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 1) == MQTT_ACK_NEW,
          "shared ids: the second holder of id 1 is acked");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 1) == MQTT_ACK_UNKNOWN, "shared ids: id 1 is free");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 3) == MQTT_ACK_NEW, "shared ids: ack id 3");
    CHECK(add(s, publish("t", "", 2)) == 3, "shared ids: a free id is found again");
    CHECK(add(s, publish("t", "", 2)) == 1, "shared ids: and the next free one, wrapping");
    /* A chain freed with the session (ASan: no leak). */
    CHECK(add(s, publish("t", "", 1)) == 2, "shared ids: all held again: id 2 is shared");
    mqtt__session_free(s, NULL);
}

/* A broker that answers a QoS 2 PUBLISH with PUBACK took it as QoS 1. */
static void test_downgraded(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    uint16_t a = add(s, publish("t", "x", 2));
    uint16_t b = add(s, publish("t", "y", 2));
    send_any(s);
    send_any(s);
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, a) == MQTT_ACK_DOWNGRADED,
          "downgraded: PUBACK completes a QoS 2 record awaiting PUBREC");
    CHECK(counts(s).inflight == 1 && counts(s).records == 1 && !mqtt__session_out_has(s, a),
          "downgraded: slot and id are free");
    CHECK(mqtt__session_ack(s, MQTT_PUBREC, b) == MQTT_ACK_NEW, "downgraded: b gets PUBREC");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, b) == MQTT_ACK_UNKNOWN,
          "downgraded: PUBACK after PUBREC is ignored");
    CHECK(mqtt__session_ack(s, MQTT_PUBCOMP, b) == MQTT_ACK_NEW, "downgraded: PUBCOMP completes b");
    mqtt__session_free(s, NULL);
}

/* MQTT 5.0: a PUBREC that refuses ends a QoS 2 publish; nothing else. */
static void test_refused(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    uint16_t a = add(s, publish("t", "x", 2));
    uint16_t b = add(s, publish("t", "y", 1));
    uint16_t c = add(s, publish("t", "z", 2));
    CHECK(mqtt__session_refused(s, a) == MQTT_ACK_UNKNOWN && mqtt__session_out_has(s, a),
          "refused: nothing happens to a publish not yet sent");
    send_any(s);
    send_any(s);
    send_any(s);
    CHECK(mqtt__session_refused(s, a) == MQTT_ACK_NEW && !mqtt__session_out_has(s, a) &&
              counts(s).inflight == 2,
          "refused: a QoS 2 publish awaiting PUBREC is over, its slot and id free");
    CHECK(mqtt__session_refused(s, b) == MQTT_ACK_UNKNOWN && mqtt__session_out_has(s, b),
          "refused: a PUBREC refusing a QoS 1 publish is ignored");
    CHECK(mqtt__session_ack(s, MQTT_PUBREC, c) == MQTT_ACK_NEW &&
              mqtt__session_refused(s, c) == MQTT_ACK_UNKNOWN &&
              mqtt__session_ack(s, MQTT_PUBCOMP, c) == MQTT_ACK_NEW,
          "refused: after a PUBREC that accepted, the PUBREL/PUBCOMP exchange goes on");
    mqtt__session_free(s, NULL);
}

/* What a sent SUBSCRIBE expects, for checking its SUBACK. */
static void test_awaiting(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    mqtt_record *r = subscribe(MQTT_REC_SUBSCRIBE, "x", 1);
    uint16_t id = add(s, r);
    CHECK(mqtt__session_awaiting(s, id) == NULL, "awaiting: nothing before it is sent");
    send_any(s);
    const mqtt_record *w = mqtt__session_awaiting(s, id);
    CHECK(w != NULL && w->kind == MQTT_REC_SUBSCRIBE && w->entry_count == 1,
          "awaiting: the sent SUBSCRIBE with its filter count");
    CHECK(mqtt__session_awaiting(s, (uint16_t)(id + 1)) == NULL, "awaiting: unknown id");
    mqtt__session_free(s, NULL);
}

static void test_queue_full(void)
{
    mqtt_session_limits l = { 1, 2, 1u << 20 };
    mqtt_session *s = mqtt__session_new(&l);
    add(s, publish("t", "a", 1));
    add(s, publish("t", "b", 0));
    mqtt_record *r = publish("t", "c", 0);
    CHECK(mqtt__session_add(s, r) == MQTT_ERR_QUEUE_FULL, "queue full: third by count");
    CHECK(counts(s).records == 2, "queue full: nothing added");
    send_any(s); /* one fewer QUEUED: in-flight records do not count */
    CHECK(mqtt__session_add(s, r) == MQTT_OK, "queue full: room once one is written");
    mqtt__session_free(s, NULL);

    /* Three 8-byte records against 16 bytes: in-flight ones count too. */
    l = (mqtt_session_limits){ 1, 100, 16 };
    s = mqtt__session_new(&l);
    CHECK(add(s, publish("t", "a", 1)) == 1, "queue bytes: first fits");
    CHECK(add(s, publish("t", "b", 1)) == 2, "queue bytes: second fits exactly");
    CHECK(counts(s).bytes == 16, "queue bytes: 16 bytes held");
    r = publish("t", "c", 1);
    CHECK(mqtt__session_add(s, r) == MQTT_ERR_QUEUE_FULL, "queue bytes: third would exceed");
    send_any(s);
    CHECK(mqtt__session_add(s, r) == MQTT_ERR_QUEUE_FULL, "queue bytes: in flight still counts");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 1) == MQTT_ACK_NEW, "queue bytes: ack id 1");
    CHECK(mqtt__session_add(s, r) == MQTT_OK && r->packet_id == 3, "queue bytes: fits after ack");
    mqtt__session_free(s, NULL);
}

static void test_unknown(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    add(s, publish("t", "a", 1));                 /* 1: will wait for PUBACK */
    add(s, publish("t", "b", 2));                 /* 2: will wait for PUBREC */
    add(s, subscribe(MQTT_REC_SUBSCRIBE, "x", 1)); /* 3: will wait for SUBACK */
    add(s, publish("t", "c", 1));                 /* 4: stays QUEUED */
    send_any(s);
    send_any(s);
    send_any(s);
    mqtt__session_rewind(s);
    mqtt_session_counts before = counts(s);
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 77) == MQTT_ACK_UNKNOWN, "unknown: id never used");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 0) == MQTT_ACK_UNKNOWN, "unknown: id 0");
    CHECK(mqtt__session_ack(s, MQTT_PUBREC, 1) == MQTT_ACK_UNKNOWN, "unknown: PUBREC for QoS 1");
    CHECK(mqtt__session_ack(s, MQTT_PUBCOMP, 1) == MQTT_ACK_UNKNOWN, "unknown: PUBCOMP for QoS 1");
    CHECK(mqtt__session_ack(s, MQTT_SUBACK, 1) == MQTT_ACK_UNKNOWN, "unknown: SUBACK for publish");
    CHECK(mqtt__session_ack(s, MQTT_UNSUBACK, 3) == MQTT_ACK_UNKNOWN,
          "unknown: UNSUBACK for SUBSCRIBE");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 3) == MQTT_ACK_UNKNOWN, "unknown: PUBACK for SUBSCRIBE");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 4) == MQTT_ACK_UNKNOWN, "unknown: PUBACK before sending");
    CHECK(mqtt__session_ack(s, MQTT_PUBREL, 2) == MQTT_ACK_UNKNOWN, "unknown: PUBREL is no ack");
    CHECK(mqtt__session_ack(s, MQTT_PINGRESP, 1) == MQTT_ACK_UNKNOWN, "unknown: PINGRESP");
    mqtt_session_counts after = counts(s);
    CHECK(memcmp(&before, &after, sizeof before) == 0, "unknown: counts unchanged");
    const uint8_t a[] = { 0x3A, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'a' };
    const uint8_t b[] = { 0x3C, 0x06, 0x00, 0x01, 't', 0x00, 0x02, 'b' };
    CHECK(sends(s, a, sizeof a) && sends(s, b, sizeof b), "unknown: states unchanged on resend");
    mqtt__session_free(s, NULL);
}

/* The original library never removed the oldest in-flight record on its ack. */
static void test_oldest_removed(void)
{
    mqtt_session_limits l = roomy;
    l.max_inflight = 3;
    mqtt_session *s = mqtt__session_new(&l);
    add(s, publish("t", "a", 1));
    add(s, publish("t", "b", 1));
    add(s, publish("t", "c", 1));
    add(s, publish("t", "d", 1));
    for (int i = 0; i < 3; i++)
        send_any(s);
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 1) == MQTT_ACK_NEW, "oldest: PUBACK for the oldest");
    CHECK(counts(s).inflight == 2 && counts(s).records == 3, "oldest: removed from the window");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 1) == MQTT_ACK_UNKNOWN, "oldest: gone for good");
    const uint8_t d[] = { 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x04, 'd' };
    CHECK(sends(s, d, sizeof d), "oldest: its slot in the window is free");
    mqtt__session_rewind(s);
    const uint8_t b[] = { 0x3A, 0x06, 0x00, 0x01, 't', 0x00, 0x02, 'b' };
    CHECK(sends(s, b, sizeof b), "oldest: not resent after a rewind");
    mqtt__session_free(s, NULL);

    s = mqtt__session_new(&l);
    add(s, publish("t", "a", 2));
    add(s, publish("t", "b", 2));
    send_any(s);
    send_any(s);
    mqtt__session_ack(s, MQTT_PUBREC, 1);
    mqtt__session_ack(s, MQTT_PUBREC, 2);
    CHECK(mqtt__session_ack(s, MQTT_PUBCOMP, 1) == MQTT_ACK_NEW, "oldest: PUBCOMP for the oldest");
    CHECK(counts(s).inflight == 1 && counts(s).records == 1, "oldest: QoS 2 oldest removed");
    mqtt__session_rewind(s);
    const uint8_t rel2[] = { 0x62, 0x02, 0x00, 0x02 };
    CHECK(sends(s, rel2, sizeof rel2) && idle(s), "oldest: only the newer PUBREL is resent");
    mqtt__session_free(s, NULL);
}

/* Random out-of-order acks against a simple model, to exercise the id table. */
static void test_random_acks(void)
{
    enum { N = 3000 };
    static uint16_t live[N];
    size_t nlive = 0;
    uint32_t seed = 12345;
    mqtt_session_limits l = { N, N, (size_t)1 << 30 };
    mqtt_session *s = mqtt__session_new(&l);
    bool ok = true;
    for (int step = 0; step < 200000 && ok; step++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t rnd = seed >> 8;
        if (nlive < N && (nlive == 0 || rnd % 3 != 0)) {
            uint16_t id = add(s, publish("t", "", 1));
            ok = id != 0 && send_any(s);
            live[nlive++] = id;
        } else {
            size_t k = (rnd / 3) % nlive;
            ok = mqtt__session_ack(s, MQTT_PUBACK, live[k]) == MQTT_ACK_NEW &&
                 mqtt__session_ack(s, MQTT_PUBACK, live[k]) == MQTT_ACK_UNKNOWN;
            live[k] = live[--nlive];
        }
        ok = ok && counts(s).inflight == nlive;
    }
    CHECK(ok, "random acks: every ack finds its record exactly once");
    for (size_t k = 0; k < nlive && ok; k++)
        ok = mqtt__session_ack(s, MQTT_PUBACK, live[k]) == MQTT_ACK_NEW;
    CHECK(ok && counts(s).records == 0, "random acks: the rest complete");
    mqtt__session_free(s, NULL);
}

static void collect(void *item, void *ud)
{
    int **cur = ud;
    *(*cur)++ = *(int *)item;
}

static void test_incoming(void)
{
    static int v[1000];
    mqtt_session *s = mqtt__session_new(&roomy);
    v[0] = 5, v[1] = 3, v[2] = 9;
    CHECK(mqtt__session_in_put(s, 5, &v[0]) == MQTT_OK, "incoming: put 5");
    CHECK(mqtt__session_in_put(s, 3, &v[1]) == MQTT_OK, "incoming: put 3");
    CHECK(mqtt__session_in_put(s, 9, &v[2]) == MQTT_OK, "incoming: put 9");
    CHECK(mqtt__session_in_put(s, 3, &v[2]) != MQTT_OK, "incoming: put of a held id refused");
    CHECK(mqtt__session_in_has(s, 3) && !mqtt__session_in_has(s, 4), "incoming: has");
    CHECK(counts(s).incoming == 3, "incoming: three held");
    CHECK(mqtt__session_in_take(s, 3) == &v[1], "incoming: take 3");
    CHECK(mqtt__session_in_take(s, 3) == NULL && !mqtt__session_in_has(s, 3),
          "incoming: taken once only");
    CHECK(mqtt__session_in_put(s, 3, &v[1]) == MQTT_OK, "incoming: 3 again, now newest");
    int got[1000], *cur = got;
    mqtt__session_in_drain(s, collect, &cur);
    CHECK(cur - got == 3 && got[0] == 5 && got[1] == 9 && got[2] == 3,
          "incoming: drain oldest first");
    CHECK(counts(s).incoming == 0 && !mqtt__session_in_has(s, 5), "incoming: empty after drain");

    /* Many ids, broker-chosen and scattered, through growth and shrinking. */
    bool ok = true;
    for (int i = 0; i < 1000; i++) {
        v[i] = i;
        ok = ok && mqtt__session_in_put(s, (uint16_t)(65535 - i * 61), &v[i]) == MQTT_OK;
    }
    for (int i = 0; i < 1000; i += 2)
        ok = ok && mqtt__session_in_take(s, (uint16_t)(65535 - i * 61)) == &v[i];
    for (int i = 1; i < 1000; i += 2)
        ok = ok && mqtt__session_in_has(s, (uint16_t)(65535 - i * 61));
    CHECK(ok && counts(s).incoming == 500, "incoming: 1000 put, 500 taken");
    cur = got;
    mqtt__session_in_drain(s, collect, &cur);
    ok = cur - got == 500;
    for (int i = 0; i < 500 && ok; i++)
        ok = got[i] == 2 * i + 1;
    CHECK(ok, "incoming: drain keeps arrival order across growth");
    mqtt__session_free(s, NULL);
}

static int freed_items;

static void free_item(void *item)
{
    freed_items++;
    free(item);
}

static void test_free_full(void)
{
    mqtt_session_limits l = roomy;
    l.max_inflight = 2;
    mqtt_session *s = mqtt__session_new(&l);
    for (int i = 0; i < 5; i++)
        add(s, publish("t", "payload", (uint8_t)(i % 3)));
    add(s, subscribe(MQTT_REC_SUBSCRIBE, "a/+", 2));
    while (send_any(s))
        ;
    for (uint16_t id = 1; id <= 40; id++)
        mqtt__session_in_put(s, id, malloc(16));
    mqtt__session_free(s, free_item);
    CHECK(freed_items == 40, "free: every incoming item handed to free_item");
    mqtt__session_free(NULL, NULL);
    CHECK(true, "free: NULL session is fine");
}

/* Records changed after they were made are refused, and left to the caller. */
static void test_misuse(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    mqtt_record *r = publish("t", "a", 1);
    r->qos = 0;
    CHECK(mqtt__session_add(s, r) == MQTT_ERR_INVAL, "misuse: QoS changed after it was made");
    r->qos = 3;
    CHECK(mqtt__session_add(s, r) == MQTT_ERR_INVAL, "misuse: QoS 3");
    r->qos = 1;
    r->kind = 7;
    CHECK(mqtt__session_add(s, r) == MQTT_ERR_INVAL, "misuse: no such kind");
    r->kind = MQTT_REC_PUBLISH;
    r->state = MQTT_QS_WAIT_PUBACK;
    CHECK(mqtt__session_add(s, r) == MQTT_ERR_INVAL, "misuse: a record not in its queued state");
    mqtt__record_free(r);
    r = subscribe(MQTT_REC_SUBSCRIBE, "x", 1);
    r->entry_count = 0;
    CHECK(mqtt__session_add(s, r) == MQTT_ERR_INVAL, "misuse: SUBSCRIBE without entries");
    r->entry_count = 1;
    r->kind = MQTT_REC_PUBLISH;
    CHECK(mqtt__session_add(s, r) == MQTT_ERR_INVAL, "misuse: a PUBLISH with entries");
    mqtt__record_free(r);
    CHECK(counts(s).records == 0 && counts(s).bytes == 0, "misuse: nothing was added");
    mqtt__session_sent(s);
    CHECK(counts(s).records == 0 && idle(s), "misuse: sent() without next() does nothing");
    add(s, publish("t", "a", 1));
    mqtt_qos_action a1, a2;
    const mqtt_record *o1 = mqtt__session_next(s, &a1), *o2 = mqtt__session_next(s, &a2);
    CHECK(o1 != NULL && o1 == o2 && a1 == a2, "misuse: next() twice offers the same record");
    CHECK(mqtt__session_next(s, NULL) == NULL && mqtt__session_next(NULL, &a1) == NULL,
          "misuse: next() without somewhere to say what to send");
    o1 = mqtt__session_next(s, &a1);
    mqtt__session_sent(s);
    mqtt__session_sent(s);
    CHECK(counts(s).inflight == 1 && counts(s).queued == 0, "misuse: a second sent() is ignored");
    CHECK(mqtt__session_in_put(s, 1, NULL) == MQTT_ERR_INVAL, "misuse: NULL incoming item");
    CHECK(mqtt__session_in_put(s, 0, &a1) == MQTT_ERR_INVAL, "misuse: incoming id 0");
    mqtt__session_free(s, NULL);
}

/* Records are made valid or not at all. */
static void test_record_new(void)
{
    static uint8_t big[65536];
    mqtt_record *r = (mqtt_record *)&r; /* must be left alone on failure */
    mqtt_record *const unset = r;
    mqtt_bytes long_topic = { big, sizeof big };
    CHECK(mqtt__record_publish(text("t"), text("x"), 3, false, no_props, &r) == MQTT_ERR_INVAL &&
              r == unset,
          "record: QoS 3 refused");
    CHECK(mqtt__record_publish(long_topic, text("x"), 1, false, no_props, &r) == MQTT_ERR_INVAL,
          "record: a topic over 65535 bytes refused");
    CHECK(mqtt__record_publish(text("t"), text("x"), 1, false, no_props, NULL) == MQTT_ERR_INVAL,
          "record: nowhere to put it");
    mqtt_sub_entry e[2] = { { text("a/+"), 2 }, { text("b"), 3 } };
    CHECK(mqtt__record_subscribe(MQTT_REC_SUBSCRIBE, e, 0, no_props, &r) == MQTT_ERR_INVAL,
          "record: SUBSCRIBE without entries refused");
    CHECK(mqtt__record_subscribe(MQTT_REC_SUBSCRIBE, e, 2, no_props, &r) == MQTT_ERR_INVAL,
          "record: SUBSCRIBE with QoS 3 refused");
    CHECK(mqtt__record_subscribe(MQTT_REC_PUBLISH, e, 1, no_props, &r) == MQTT_ERR_INVAL &&
              r == unset,
          "record: a PUBLISH is not made as a SUBSCRIBE");

    /* One block: the copies live inside the record, the caller's text is not kept. */
    char topic[] = "a/b", payload[] = "hello", props[] = { 0x01, 0x01 };
    mqtt_bytes pb = { (const uint8_t *)props, sizeof props };
    CHECK(mqtt__record_publish(text(topic), text(payload), 2, true, pb, &r) == MQTT_OK,
          "record: PUBLISH made");
    topic[0] = payload[0] = props[0] = 'X';
    mqtt_bytes t = mqtt__record_topic(r), p = mqtt__record_payload(r), x = mqtt__record_props(r);
    const uint8_t *lo = (const uint8_t *)r, *hi = lo + sizeof *r + 10;
    CHECK(t.len == 3 && memcmp(t.data, "a/b", 3) == 0 && p.len == 5 &&
              memcmp(p.data, "hello", 5) == 0 && x.len == 2 && x.data[0] == 0x01,
          "record: topic, payload and properties copied");
    CHECK(t.data == lo + sizeof *r && p.data + p.len == hi && x.data > lo && x.data < hi,
          "record: the copies are inline, right after the struct");
    CHECK(r->qos == 2 && r->retain && !r->dup && r->kind == MQTT_REC_PUBLISH &&
              r->state == MQTT_QS_QUEUED2 && r->entry_count == 0,
          "record: PUBLISH fields");
    CHECK(r->bytes == 2 + 2 + 3 + 2 + 5 + 2, "record: counts its packet and its properties");
    mqtt__record_free(r);

    e[1].qos = 1;
    CHECK(mqtt__record_subscribe(MQTT_REC_UNSUBSCRIBE, e, 2, pb, &r) == MQTT_OK,
          "record: UNSUBSCRIBE made");
    const mqtt_sub_entry *re = mqtt__record_entries(r);
    CHECK(r->entry_count == 2 && re[0].filter.len == 3 && memcmp(re[0].filter.data, "a/+", 3) == 0 &&
              re[0].filter.data != e[0].filter.data && re[1].qos == 0 && re[1].filter.len == 1 &&
              re[1].filter.data[0] == 'b' && r->state == MQTT_QS_QUEUED_UNSUB &&
              r->bytes == 2 + 2 + 5 + 3 + 2,
          "record: UNSUBSCRIBE keeps copies of its filters, no QoS");
    CHECK(mqtt__record_props(r).len == 2 && mqtt__record_props(r).data[0] == 'X' &&
              mqtt__record_topic(r).len == 0 && mqtt__record_payload(r).len == 0,
          "record: UNSUBSCRIBE keeps its properties, no topic, no payload");
    mqtt__record_free(r);
    CHECK(mqtt__record_publish(text("t"), no_props, 0, false, no_props, &r) == MQTT_OK &&
              r->payload_len == 0 && r->state == MQTT_QS_QUEUED0 && r->bytes == 5,
          "record: an empty payload");
    mqtt__record_free(r);
    CHECK(sizeof(mqtt_record) <= 48, "record: the struct takes at most 48 bytes");
}

/* DUP belongs to the record and is set by the reconnect, not by the caller. */
static void test_dup(void)
{
    mqtt_session_limits l = roomy;
    l.max_inflight = 2;
    mqtt_session *s = mqtt__session_new(&l);
    mqtt_record *a = publish("t", "a", 1), *b = publish("t", "b", 2);
    mqtt_record *q = publish("t", "q", 1);
    add(s, a);
    add(s, b);
    send_any(s);
    send_any(s);
    add(s, q);
    CHECK(!a->dup && !b->dup, "dup: not on the first write");
    mqtt__session_rewind(s);
    CHECK(a->dup && b->dup && !q->dup, "dup: set on what was written, once the connection is lost");
    mqtt_qos_action act;
    CHECK(mqtt__session_next(s, &act) == a && act == MQTT_QA_RESEND, "dup: a is resent");
    mqtt__session_sent(s);
    CHECK(mqtt__session_ack(s, MQTT_PUBREC, 2) == MQTT_ACK_NEW &&
              mqtt__session_next(s, &act) == b && act == MQTT_QA_PUBREL,
          "dup: b acked by PUBREC during the resend: its PUBREL goes out instead");
    mqtt__session_sent(s);
    CHECK(mqtt__session_next(s, &act) == NULL, "dup: q waits behind a full window");
    mqtt__session_free(s, NULL);
}

/* A smaller window after a reconnect (MQTT 5.0's receive maximum) holds
 * the resends too: only what is written on the new connection counts. */
static void test_window_after_rewind(void)
{
    mqtt_session_limits l = roomy;
    l.max_inflight = 3;
    mqtt_session *s = mqtt__session_new(&l);
    mqtt_record *r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = publish("t", "x", 1);
        add(s, r[i]);
        send_any(s);
    }
    mqtt__session_rewind(s);
    mqtt__session_set_window(s, 1);
    mqtt_qos_action act;
    CHECK(mqtt__session_next(s, &act) == r[0] && act == MQTT_QA_RESEND,
          "window after rewind: the first is resent");
    mqtt__session_sent(s);
    CHECK(mqtt__session_next(s, &act) == NULL,
          "window after rewind: the second waits, the new window is full");
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, r[0]->packet_id) == MQTT_ACK_NEW &&
              mqtt__session_next(s, &act) == r[1] && act == MQTT_QA_RESEND,
          "window after rewind: an ack makes room for the next resend");
    mqtt__session_sent(s);
    mqtt__session_rewind(s);
    mqtt__session_set_window(s, 0);
    CHECK(mqtt__session_next(s, &act) == r[1] && act == MQTT_QA_RESEND,
          "window after rewind: rewound again, resends start over from the oldest");
    mqtt__session_sent(s);
    CHECK(mqtt__session_next(s, &act) == r[2] && act == MQTT_QA_RESEND,
          "window after rewind: the full window again lets the rest out");
    mqtt__session_free(s, NULL);
}

/* Incoming QoS 2 items handed over before their PUBREL. */
static void test_incoming_released(void)
{
    static int v[4] = { 1, 2, 3, 4 };
    static char mark;
    mqtt_session *s = mqtt__session_new(&roomy);
    mqtt__session_in_put(s, 7, &v[0]);
    mqtt__session_in_put(s, 8, &v[1]);
    int got[4], *cur = got;
    CHECK(mqtt__session_in_replace(s, NULL, collect, &cur) == MQTT_ERR_INVAL && cur == got,
          "released: a NULL mark is refused");
    CHECK(mqtt__session_in_replace(s, &mark, collect, &cur) == MQTT_OK && cur - got == 2,
          "released: both handed over");
    CHECK(mqtt__session_in_replace(s, &mark, collect, &cur) == MQTT_OK && cur - got == 2,
          "released: not twice");
    CHECK(mqtt__session_in_put(s, 7, &v[2]) == MQTT_ERR_INVAL && mqtt__session_in_has(s, 7),
          "released: a resent PUBLISH is not stored again");
    mqtt__session_in_put(s, 9, &v[3]);
    CHECK(mqtt__session_in_take(s, 7) == NULL && !mqtt__session_in_has(s, 7),
          "released: PUBREL delivers nothing more and forgets the id");
    CHECK(mqtt__session_in_take(s, 7) == NULL, "released: an unknown PUBREL delivers nothing");
    cur = got;
    mqtt__session_in_drain(s, collect, &cur);
    CHECK(cur - got == 1 && got[0] == v[3] && counts(s).incoming == 0,
          "released: drain hands over only what was not handed over");
    mqtt__session_free(s, NULL);
}

/* QoS 0 publishes get ids from the same sequence, never one in use, never reserved. */
static void test_take_id(void)
{
    mqtt_session *s = mqtt__session_new(&roomy);
    uint16_t a = add(s, publish("t", "x", 1));
    uint16_t q0 = mqtt__session_take_id(s);
    uint16_t b = add(s, publish("t", "x", 1));
    CHECK(a == 1 && q0 == 2 && b == 3, "take_id follows the packet id sequence");
    CHECK(counts(s).records == 2, "take_id reserves nothing");
    burn_ids(s, 65535);
    uint16_t w = mqtt__session_take_id(s);
    CHECK(w != 0 && w != a && w != b, "take_id wraps past 65535 and skips ids in use");
    mqtt__session_free(s, NULL);
}

/* Records recovered from a store: ids and states kept, in flight ones resent
 * with DUP (a PUBREL for one awaiting PUBCOMP), queued ones sent, past the
 * limits, and new records take ids after theirs. */
static void test_restore(void)
{
    const mqtt_session_limits tight = { 64, 1, 1u << 30 };
    mqtt_session *s = mqtt__session_new(&tight);
    static const uint8_t states[] = { MQTT_QS_WAIT_PUBACK, MQTT_QS_WAIT_PUBCOMP, MQTT_QS_QUEUED2 };
    static const uint8_t qos[] = { 1, 2, 2 };
    for (int i = 0; i < 3; i++) {
        mqtt_record *r = publish("t", "p", qos[i]);
        r->packet_id = (uint16_t)(40 + i);
        r->state = states[i];
        CHECK(mqtt__session_restore(s, r) == MQTT_OK, "restore: past max_queued");
    }
    mqtt_record *bad = publish("t", "p", 1);
    bad->state = MQTT_QS_WAIT_PUBREC; /* a QoS 1 record cannot await PUBREC */
    bad->packet_id = 9;
    CHECK(mqtt__session_restore(s, bad) == MQTT_ERR_INVAL, "restore refuses a state its QoS lacks");
    mqtt__record_free(bad);
    static const uint8_t actions[] = { MQTT_QA_RESEND, MQTT_QA_PUBREL, MQTT_QA_SEND };
    for (int i = 0; i < 3; i++) {
        mqtt_qos_action a;
        const mqtt_record *r = mqtt__session_next(s, &a);
        CHECK(r && r->packet_id == 40 + i && a == actions[i],
              "restore: records go out in order with their ids and actions");
        CHECK(r && r->dup == (i == 0), "restore: DUP only for a resent PUBLISH");
        mqtt__session_sent(s);
    }
    CHECK(mqtt__session_ack(s, MQTT_PUBACK, 40) == MQTT_ACK_NEW, "a restored record is acked");
    mqtt__session_free(s, NULL);
    s = mqtt__session_new(&roomy);
    mqtt_record *r = publish("t", "p", 1);
    r->packet_id = 7;
    r->state = MQTT_QS_QUEUED1;
    CHECK(mqtt__session_restore(s, r) == MQTT_OK, "restore a queued QoS 1 record");
    CHECK(add(s, publish("t", "q", 1)) == 8, "a new record takes the id after the restored ones");
    mqtt__session_free(s, NULL);
}

int main(void)
{
    test_take_id();
    test_qos1();
    test_qos2();
    test_rewind();
    test_rewind_ignores_window();
    test_window();
    test_order();
    test_wrap();
    test_shared_ids();
    test_downgraded();
    test_refused();
    test_awaiting();
    test_queue_full();
    test_unknown();
    test_oldest_removed();
    test_random_acks();
    test_incoming();
    test_free_full();
    test_misuse();
    test_record_new();
    test_dup();
    test_window_after_rewind();
    test_incoming_released();
    test_restore();
    return test_done();
}
