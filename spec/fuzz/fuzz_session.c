/*
 * Fuzz target: the session as a state machine. The input is a script of
 * operations (add publish/subscribe/unsubscribe records, next, sent, acks
 * with ids that are live, unused, repeated or out of order, rewind, take_id,
 * the incoming QoS 2 table and its replacement by a mark, bulk runs that fill
 * the id space and go past it, so records share ids) played against
 * the real session and a shadow model written here; after each step the
 * answers, the record and action next() hands out, the bytes the client's
 * send path encodes for them, and mqtt__session_counts must agree with the
 * model. ASan catches leaks when the session is freed at the end.
 * Each record is also encoded under MQTT 5.0 by a client (never connected)
 * at level 5 with automatic topic aliases: it must decode, in the broker
 * role, to the same packet as the 3.1.1 bytes, its topic through the alias.
 */
#include <string.h>

#include "codec.h"
#include "fuzz_util.h"
#include "send.h"
#include "session.h"

#define MAX_IDS 65535u

/* ---- the shadow model ------------------------------------------------ */

/* The model's own states, apart from the session's table. */
enum {
    S_QUEUED,
    S_WAIT_PUBACK,
    S_WAIT_PUBREC,
    S_WAIT_PUBCOMP,
    S_WAIT_SUBACK,
    S_WAIT_UNSUBACK
};

typedef struct shadow_rec {
    struct shadow_rec *prev, *next;
    struct shadow_rec *id_next; /* the next record given the same id */
    const mqtt_record *real; /* the session's record, alive as long as this one */
    uint16_t id; /* 0 for QoS 0 publishes */
    uint8_t kind, qos, state;
    size_t len;
    size_t xl; /* its MQTT 5.0 property block, counted in its bytes */
    uint8_t packet[]; /* the bytes the record encodes to */
} shadow_rec;

typedef struct held {
    uint16_t id;
    uint16_t *item; /* &mark once handed over by in_replace: the id stays held */
} held;

typedef struct model {
    mqtt_session *s;
    mqtt_session_limits lim;
    uint32_t window;
    shadow_rec *head, *tail, *cursor, *pending;
    size_t queued, inflight, records, bytes;
    uint16_t next_id;
    uint16_t live[MAX_IDS]; /* ids of live records, any order */
    uint32_t nlive;
    held *in; /* incoming items, arrival order */
    size_t nin, capin;
} model;

/* Indexed by packet id (by_id: the record holding it, the first of those
 * sharing it); static because they are large, cleared after each run. */
static shadow_rec *by_id[65536];
static uint32_t live_pos[65536];
static model M;
/* What in_replace holds in place of a handed-over item. */
static uint16_t mark;

static uint16_t after(uint16_t id)
{
    return id == MAX_IDS ? 1 : (uint16_t)(id + 1u);
}

static uint16_t model_free_id(void)
{
    uint16_t id = M.next_id;
    while (by_id[id] != NULL)
        id = after(id);
    return id;
}

static void live_add(shadow_rec *r)
{
    by_id[r->id] = r;
    live_pos[r->id] = M.nlive;
    M.live[M.nlive++] = r->id;
}

static void live_remove(uint16_t id)
{
    uint32_t pos = live_pos[id];
    uint16_t last = M.live[--M.nlive];
    M.live[pos] = last;
    live_pos[last] = pos;
    by_id[id] = NULL;
}

static bool inflight_state(uint8_t st)
{
    return st == S_WAIT_PUBACK || st == S_WAIT_PUBREC || st == S_WAIT_PUBCOMP;
}

static void model_remove(shadow_rec *r)
{
    if (M.cursor == r)
        M.cursor = r->next;
    if (M.pending == r)
        M.pending = NULL;
    if (r->prev)
        r->prev->next = r->next;
    else
        M.head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        M.tail = r->prev;
    if (r->id && by_id[r->id] == r) {
        if (r->id_next)
            by_id[r->id] = r->id_next; /* the next sharer holds the id now */
        else
            live_remove(r->id);
    }
    if (r->state == S_QUEUED)
        M.queued--;
    else if (inflight_state(r->state))
        M.inflight--;
    M.records--;
    M.bytes -= r->len + r->xl;
    free(r);
}

/* The session's counters agree with the model after every step. */
static void check_counts(void)
{
    mqtt_session_counts c;
    mqtt__session_counts(M.s, &c);
    FZ_CHECK(c.queued == M.queued && c.inflight == M.inflight && c.records == M.records);
    FZ_CHECK(c.bytes == M.bytes && c.incoming == M.nin);
    FZ_CHECK(c.inflight <= M.window);
    FZ_CHECK(c.queued + c.inflight <= c.records);
}

/* ---- records --------------------------------------------------------- */

/* A record made from the input and what it must encode to, id 0 for now. */
typedef struct built {
    mqtt_record *r; /* NULL: its maker refused it, as the model said */
    bool tampered;  /* changed after it was made: the session must refuse it */
    size_t len, id_offset, xl;
    uint8_t packet[64];
} built;

/* The bytes of a record of kind, by hand, into b (remaining length < 128). */
static void expect_bytes(built *b, mqtt_rec_kind kind, uint8_t qos, const uint8_t *name,
                         size_t name_len, const uint8_t *payload, size_t payload_len)
{
    bool with_id = kind != MQTT_REC_PUBLISH || qos > 0;
    uint8_t *p = b->packet;
    *p++ = kind == MQTT_REC_PUBLISH ? (uint8_t)(0x30 | qos << 1)
           : kind == MQTT_REC_SUBSCRIBE ? 0x82 : 0xA2;
    *p++ = (uint8_t)(2 + (with_id ? 2u : 0u) + name_len + payload_len +
                     (kind == MQTT_REC_SUBSCRIBE ? 1u : 0u));
    b->id_offset = kind == MQTT_REC_PUBLISH ? (with_id ? 4 + name_len : 0) : 2;
    if (kind != MQTT_REC_PUBLISH) {
        *p++ = 0;
        *p++ = 0;
    }
    *p++ = 0;
    *p++ = (uint8_t)name_len;
    memcpy(p, name, name_len);
    p += name_len;
    if (kind == MQTT_REC_PUBLISH && with_id) {
        *p++ = 0;
        *p++ = 0;
    }
    if (payload_len)
        memcpy(p, payload, payload_len);
    p += payload_len;
    if (kind == MQTT_REC_SUBSCRIBE)
        *p++ = qos;
    b->len = (size_t)(p - b->packet);
}

/* Spoils a made record the way the input says; the session must refuse it. */
static void tamper(fz_in *in, mqtt_record *r)
{
    switch (fz_u8(in) % 4) {
    case 0:
        /* Another QoS for a PUBLISH (3 included); QoS 3 for the others. */
        r->qos = r->kind == MQTT_REC_PUBLISH ? (uint8_t)((r->qos + 1 + fz_u8(in) % 3) % 4) : 3;
        break;
    case 1:
        r->kind = (uint8_t)(3 + fz_u8(in) % 250);
        break;
    case 2:
        r->state = MQTT_QS_WAIT_PUBACK;
        break;
    default:
        r->entry_count = r->kind == MQTT_REC_PUBLISH ? 1 : 0;
        break;
    }
}

/* MQTT 5.0 property blocks a record may carry (3.1.1 leaves them out):
 * content_type "c", user_property k=v and a topic_alias the automatic mode
 * must not send; subscription_identifier 5 and user_property k=v. */
static const uint8_t pub_props[] = {0x03, 0x00, 0x01, 'c',  0x26, 0x00, 0x01,
                                    'k',  0x00, 0x01, 'v',  0x23, 0x00, 0x02};
static const uint8_t sub_props[] = {0x0B, 0x05, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v'};

static mqtt_bytes props_for(mqtt_rec_kind kind, bool with)
{
    if (!with)
        return (mqtt_bytes){ NULL, 0 };
    if (kind == MQTT_REC_PUBLISH)
        return (mqtt_bytes){ pub_props, sizeof pub_props };
    if (kind == MQTT_REC_SUBSCRIBE)
        return (mqtt_bytes){ sub_props, sizeof sub_props };
    return (mqtt_bytes){ sub_props + 2, sizeof sub_props - 2 };
}

/* Builds a record with a payload from the input; the model says whether its
 * maker accepts it (QoS 3 is refused). */
static built build(fz_in *in, mqtt_rec_kind kind, uint8_t qos, size_t name_len,
                   size_t payload_len, bool spoil, bool with_props)
{
    built b = { NULL, false, 0, 0, 0, { 0 } };
    uint8_t name[8], payload[40];
    for (size_t i = 0; i < name_len; i++)
        name[i] = (uint8_t)('a' + i);
    for (size_t i = 0; i < payload_len; i++)
        payload[i] = fz_u8(in);
    mqtt_bytes n = { name, name_len }, pl = { payload, payload_len };
    mqtt_bytes xp = props_for(kind, with_props);
    mqtt_sub_entry e = { n, qos };
    int rc = kind == MQTT_REC_PUBLISH ? mqtt__record_publish(n, pl, qos, false, xp, &b.r)
                                      : mqtt__record_subscribe(kind, &e, 1, xp, &b.r);
    b.xl = xp.len;
    bool valid = kind == MQTT_REC_UNSUBSCRIBE || qos <= 2;
    FZ_CHECK(rc == (valid ? MQTT_OK : MQTT_ERR_INVAL));
    if (rc != MQTT_OK) {
        b.r = NULL;
        return b;
    }
    expect_bytes(&b, kind, kind == MQTT_REC_UNSUBSCRIBE ? 0 : qos, name, name_len, payload,
                 payload_len);
    FZ_CHECK(b.r->bytes == b.len + b.xl && b.r->entry_count == (kind == MQTT_REC_PUBLISH ? 0 : 1));
    if (spoil) {
        tamper(in, b.r);
        b.tampered = true;
    }
    return b;
}

static bool needs_id(uint8_t kind, uint8_t qos)
{
    return kind != MQTT_REC_PUBLISH || qos > 0;
}

/* mqtt__session_add against the model; returns the status. */
static int add(built b)
{
    mqtt_record *r = b.r;
    if (r == NULL)
        return MQTT_ERR_INVAL;
    int want = MQTT_OK;
    if (b.tampered)
        want = MQTT_ERR_INVAL;
    else if (M.queued >= M.lim.max_queued || r->bytes > M.lim.max_queued_bytes - M.bytes)
        want = MQTT_ERR_QUEUE_FULL;
    bool shared = needs_id(r->kind, r->qos) && M.nlive >= MAX_IDS;
    uint16_t want_id = 0;
    if (want == MQTT_OK && needs_id(r->kind, r->qos))
        want_id = shared ? M.next_id : model_free_id();
    int rc = mqtt__session_add(M.s, r);
    FZ_CHECK(rc == want);
    if (rc != MQTT_OK) {
        mqtt__record_free(r);
        return rc;
    }
    /* The session owns r now; it is still alive, queued, with its id. */
    FZ_CHECK(r->packet_id == want_id && mqtt__qos_queued(r->state) && !r->dup);
    shadow_rec *m = calloc(1, sizeof *m + b.len);
    m->real = r;
    m->id = want_id;
    m->kind = r->kind;
    m->qos = r->qos;
    m->state = S_QUEUED;
    m->len = b.len;
    m->xl = b.xl;
    memcpy(m->packet, b.packet, b.len);
    if (want_id) {
        m->packet[b.id_offset] = (uint8_t)(want_id >> 8);
        m->packet[b.id_offset + 1] = (uint8_t)(want_id & 0xFF);
        if (shared) {
            /* Every id is held: r waits behind the last record given this one. */
            shadow_rec *h = by_id[want_id];
            FZ_CHECK(h != NULL);
            while (h->id_next)
                h = h->id_next;
            h->id_next = m;
        } else {
            FZ_CHECK(by_id[want_id] == NULL);
            live_add(m);
        }
        M.next_id = after(want_id);
    }
    m->prev = M.tail;
    if (M.tail)
        M.tail->next = m;
    else
        M.head = m;
    M.tail = m;
    if (M.cursor == NULL)
        M.cursor = m;
    M.queued++;
    M.records++;
    M.bytes += m->len + m->xl;
    return rc;
}

static void op_add_publish(fz_in *in)
{
    uint8_t f = fz_u8(in);
    uint8_t qos = f & 3; /* 3 is invalid */
    size_t name_len = 1 + (f >> 2 & 7), payload_len = fz_u8(in) % 40;
    add(build(in, MQTT_REC_PUBLISH, qos, name_len, payload_len, f & 0x80, f & 0x20));
}

static void op_add_subscribe(fz_in *in)
{
    uint8_t f = fz_u8(in);
    mqtt_rec_kind kind = f & 1 ? MQTT_REC_SUBSCRIBE : MQTT_REC_UNSUBSCRIBE;
    uint8_t qos = f >> 1 & 3;
    add(build(in, kind, qos, 1 + (f >> 3 & 7), 0, f & 0x80, f & 0x40));
}

/* An add with a kind the session must refuse. */
static void op_add_bad_kind(fz_in *in)
{
    built b = build(in, MQTT_REC_PUBLISH, 1, 1, 0, false, false);
    b.r->kind = (uint8_t)(3 + fz_u8(in) % 250);
    b.tampered = true;
    add(b);
}

/* ---- writing --------------------------------------------------------- */

/* The client's send path encodes what next() hands out; reused across runs. */
static mqtt_buf wire;

/* ---- the send path under MQTT 5.0 -------------------------------------- */

static mqtt_client *v5c; /* made once: creating a client per input is slow */
static mqtt_buf wire5;
static char alias_seen[4][16]; /* the topics v5c gave aliases, as a broker learns them */

/* A new "connection" for each input: aliases forgotten, 0 to 3 allowed. */
static void v5_setup(uint8_t b)
{
    if (!v5c) {
        mqtt_options o;
        mqtt_options_init(&o);
        o.protocol = MQTT_V5;
        FZ_CHECK(mqtt_client_create(&o, &v5c) == MQTT_OK);
    }
    pthread_mutex_lock(&v5c->mu);
    mqtt__v5_alias_reset(v5c);
    v5c->sh.version = MQTT_V5;
    v5c->sh.server.alias_max = b % 4;
    pthread_mutex_unlock(&v5c->mu);
    memset(alias_seen, 0, sizeof alias_seen);
}

static mqtt_packet decode_as(const mqtt_buf *w, uint8_t version)
{
    const mqtt_decode_opts o = {version, MQTT_ROLE_BROKER, 0};
    mqtt_packet p;
    size_t used = 0;
    const char *why = NULL;
    FZ_CHECK(mqtt__decode(w->data, w->len, &o, &p, &used, &why) == MQTT_OK && used == w->len);
    return p;
}

static bool same(mqtt_bytes a, mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* The 5.0 PUBLISH's topic, through the alias the broker keeps for it. */
static mqtt_bytes v5_topic(const mqtt_packet *p)
{
    mqtt_property a;
    if (!mqtt__prop_find(p->props, MQTT_PROP_TOPIC_ALIAS, &a))
        return p->topic;
    FZ_CHECK(a.value >= 1 && a.value <= v5c->sh.server.alias_max);
    char *slot = alias_seen[a.value - 1];
    if (p->topic.len > 0) {
        FZ_CHECK(p->topic.len < sizeof alias_seen[0]);
        memcpy(slot, p->topic.data, p->topic.len);
        slot[p->topic.len] = '\0';
    }
    FZ_CHECK(slot[0] != '\0');
    return (mqtt_bytes){(const uint8_t *)slot, strlen(slot)};
}

/* The record's properties go out as they are, in order; a topic_alias only
 * as the client decides (never the record's). */
static void check_props(mqtt_bytes record, mqtt_bytes sent)
{
    mqtt_prop_iter i, j;
    mqtt_property x, y;
    mqtt__prop_iter_init(&i, record);
    mqtt__prop_iter_init(&j, sent);
    for (;;) {
        bool more_x, more_y;
        while ((more_x = mqtt__prop_next(&i, &x)) && x.id == MQTT_PROP_TOPIC_ALIAS)
            ;
        while ((more_y = mqtt__prop_next(&j, &y)) && y.id == MQTT_PROP_TOPIC_ALIAS)
            ;
        FZ_CHECK(more_x == more_y);
        if (!more_x)
            return;
        FZ_CHECK(x.id == y.id && x.value == y.value && x.len == y.len && x.len2 == y.len2);
        FZ_CHECK(same((mqtt_bytes){x.data, x.len}, (mqtt_bytes){y.data, y.len}));
    }
}

static void check_v5(const mqtt_record *got, mqtt_qos_action act)
{
    wire5.len = 0;
    pthread_mutex_lock(&v5c->mu);
    int rc = mqtt__send_record(&wire5, got, act, v5c);
    pthread_mutex_unlock(&v5c->mu);
    FZ_CHECK(rc == MQTT_OK);
    mqtt_packet a = decode_as(&wire, MQTT_V311), b = decode_as(&wire5, MQTT_V5);
    FZ_CHECK(a.type == b.type && a.flags == b.flags && a.packet_id == b.packet_id);
    FZ_CHECK(a.qos == b.qos && a.dup == b.dup && a.retain == b.retain);
    if (a.type == MQTT_PUBREL)
        return;
    check_props(mqtt__record_props(got), b.props);
    if (a.type == MQTT_PUBLISH) {
        FZ_CHECK(same(a.payload, b.payload) && same(a.topic, v5_topic(&b)));
        return;
    }
    mqtt_sub_iter i, j;
    mqtt_sub_entry x, y;
    mqtt__sub_iter_init(&i, &a);
    mqtt__sub_iter_init(&j, &b);
    while (mqtt__sub_next(&i, &x))
        FZ_CHECK(mqtt__sub_next(&j, &y) && same(x.filter, y.filter) && x.qos == y.qos);
    FZ_CHECK(!mqtt__sub_next(&j, &y));
}

/* next() against the model; true when it handed out a record. */
static bool next(void)
{
    mqtt_qos_action act = MQTT_QA_INVALID;
    const mqtt_record *got = mqtt__session_next(M.s, &act);
    M.pending = NULL;
    shadow_rec *r = M.cursor;
    bool want = r != NULL;
    if (r && r->state == S_QUEUED && r->kind == MQTT_REC_PUBLISH && r->qos > 0 &&
        M.inflight >= M.window)
        want = false;
    if (r && r->state == S_QUEUED && r->id && by_id[r->id] != r)
        want = false; /* its id is still another record's */
    FZ_CHECK((got != NULL) == want);
    if (!got)
        return false;
    FZ_CHECK(got == r->real);
    mqtt_qos_action want_act = r->state == S_QUEUED          ? MQTT_QA_SEND
                               : r->state == S_WAIT_PUBCOMP ? MQTT_QA_PUBREL
                                                            : MQTT_QA_RESEND;
    FZ_CHECK(act == want_act);
    if (r->state == S_WAIT_PUBACK || r->state == S_WAIT_PUBREC)
        r->packet[0] |= 0x08; /* resent with DUP */
    wire.len = 0;
    FZ_CHECK(mqtt__send_record(&wire, got, act, NULL) == MQTT_OK);
    if (r->state == S_WAIT_PUBCOMP) {
        uint8_t rel[4] = {0x62, 0x02, (uint8_t)(r->id >> 8), (uint8_t)r->id};
        FZ_CHECK(wire.len == 4 && memcmp(wire.data, rel, 4) == 0);
    } else {
        FZ_CHECK(wire.len == r->len && memcmp(wire.data, r->packet, r->len) == 0);
    }
    check_v5(got, act);
    M.pending = r;
    return true;
}

static void sent(void)
{
    mqtt__session_sent(M.s);
    shadow_rec *r = M.pending;
    if (r == NULL || r != M.cursor)
        return;
    M.pending = NULL;
    M.cursor = r->next;
    if (r->state != S_QUEUED)
        return;
    if (r->kind == MQTT_REC_PUBLISH && r->qos == 0) {
        model_remove(r);
        return;
    }
    M.queued--;
    if (r->kind == MQTT_REC_SUBSCRIBE) {
        r->state = S_WAIT_SUBACK;
    } else if (r->kind == MQTT_REC_UNSUBSCRIBE) {
        r->state = S_WAIT_UNSUBACK;
    } else {
        r->state = r->qos == 1 ? S_WAIT_PUBACK : S_WAIT_PUBREC;
        M.inflight++;
    }
}

/* Sends until the session holds back; bounded, since each record goes out once per rewind. */
static void pump(void)
{
    size_t bound = M.records + 2;
    while (next()) {
        sent();
        FZ_CHECK(bound-- > 0);
    }
}

static void rewind_both(void)
{
    mqtt__session_rewind(M.s);
    M.cursor = M.head;
    M.pending = NULL;
}

/* ---- acks ------------------------------------------------------------ */

static int completes(uint8_t type)
{
    switch (type) {
    case MQTT_PUBACK:
        return S_WAIT_PUBACK;
    case MQTT_PUBCOMP:
        return S_WAIT_PUBCOMP;
    case MQTT_SUBACK:
        return S_WAIT_SUBACK;
    case MQTT_UNSUBACK:
        return S_WAIT_UNSUBACK;
    default:
        return -1;
    }
}

static void ack(uint8_t type, uint16_t id)
{
    mqtt_ack_result got = mqtt__session_ack(M.s, type, id);
    shadow_rec *r = id ? by_id[id] : NULL;
    mqtt_ack_result want = MQTT_ACK_UNKNOWN;
    uint8_t t = type & 0xF0;
    if (r && t == MQTT_PUBACK && r->state == S_WAIT_PUBREC) {
        want = MQTT_ACK_DOWNGRADED; /* a broker that took it as QoS 1 */
        model_remove(r);
    } else if (r && t == MQTT_PUBREC) {
        if (r->state == S_WAIT_PUBCOMP) {
            want = MQTT_ACK_DUPLICATE;
        } else if (r->state == S_WAIT_PUBREC) {
            want = MQTT_ACK_NEW;
            r->state = S_WAIT_PUBCOMP;
        }
    } else if (r && completes(t) == (int)r->state) {
        want = MQTT_ACK_NEW;
        model_remove(r);
    }
    FZ_CHECK(got == want);
}

/* An id from the input: a live one (by index), a small one, or any 16-bit value. */
static uint16_t pick_id(fz_in *in)
{
    uint8_t s = fz_u8(in);
    if (s < 0x80 && M.nlive > 0)
        return M.live[(s | (uint32_t)fz_u8(in) << 7) % M.nlive];
    if (s < 0xC0)
        return (uint16_t)(s & 0x0F);
    return fz_u16(in);
}

static void op_ack(fz_in *in)
{
    static const uint8_t types[] = {MQTT_PUBACK,  MQTT_PUBREC, MQTT_PUBCOMP, MQTT_SUBACK,
                                    MQTT_UNSUBACK, MQTT_PUBREL, MQTT_CONNACK, MQTT_PUBLISH};
    uint8_t b = fz_u8(in);
    uint8_t type = (uint8_t)(types[b & 7] | (b & 0x80 ? b >> 3 & 0x0F : 0));
    ack(type, pick_id(in));
}

/* MQTT 5.0: a PUBREC that refuses ends a QoS 2 publish awaiting PUBREC, nothing else. */
static void op_refused(fz_in *in)
{
    uint16_t id = pick_id(in);
    mqtt_ack_result got = mqtt__session_refused(M.s, id);
    shadow_rec *r = id ? by_id[id] : NULL;
    mqtt_ack_result want = MQTT_ACK_UNKNOWN;
    if (r && r->state == S_WAIT_PUBREC) {
        want = MQTT_ACK_NEW;
        model_remove(r);
    }
    FZ_CHECK(got == want);
}

/* The ack each live record waits for, in session order or reversed. */
static void ack_all(bool reverse, bool repeat)
{
    shadow_rec *r = reverse ? M.tail : M.head;
    while (r) {
        shadow_rec *step = reverse ? r->prev : r->next;
        uint16_t id = r->id;
        uint8_t type = r->state == S_WAIT_PUBACK     ? MQTT_PUBACK
                       : r->state == S_WAIT_PUBREC   ? MQTT_PUBREC
                       : r->state == S_WAIT_PUBCOMP  ? MQTT_PUBCOMP
                       : r->state == S_WAIT_SUBACK   ? MQTT_SUBACK
                       : r->state == S_WAIT_UNSUBACK ? MQTT_UNSUBACK
                                                            : MQTT_PUBACK;
        if (id) {
            ack(type, id); /* may free r */
            if (repeat)
                ack(type, id);
        }
        r = step;
    }
}

/* ---- incoming QoS 2 -------------------------------------------------- */

static void op_in_put(fz_in *in)
{
    uint8_t b = fz_u8(in);
    uint16_t id = b & 0x80 ? fz_u16(in) : (uint16_t)(b & 0x1F);
    bool null_item = (b & 0x60) == 0x60 && (b & 1);
    uint16_t *item = null_item ? NULL : malloc(sizeof *item);
    if (item)
        *item = id;
    bool dup = false;
    for (size_t i = 0; i < M.nin; i++)
        dup = dup || M.in[i].id == id;
    int want = item == NULL || id == 0 || dup ? MQTT_ERR_INVAL : MQTT_OK;
    FZ_CHECK(mqtt__session_in_has(M.s, id) == dup);
    int rc = mqtt__session_in_put(M.s, id, item);
    FZ_CHECK(rc == want);
    if (rc != MQTT_OK) {
        free(item);
        return;
    }
    if (M.nin == M.capin) {
        M.capin = M.capin ? 2 * M.capin : 16;
        M.in = realloc(M.in, M.capin * sizeof *M.in);
    }
    M.in[M.nin++] = (held){id, item};
}

static void op_in_take(fz_in *in)
{
    uint8_t b = fz_u8(in);
    uint16_t id = b & 0x80 ? fz_u16(in) : (uint16_t)(b & 0x1F);
    uint16_t *item = mqtt__session_in_take(M.s, id);
    size_t i = 0;
    while (i < M.nin && M.in[i].id != id)
        i++;
    if (i == M.nin) {
        FZ_CHECK(item == NULL);
        return;
    }
    /* At PUBREL only an item not handed over yet is delivered. */
    if (M.in[i].item == &mark)
        FZ_CHECK(item == NULL);
    else
        FZ_CHECK(item == M.in[i].item && *item == id);
    FZ_CHECK(!mqtt__session_in_has(M.s, id));
    if (item != &mark)
        free(item);
    memmove(M.in + i, M.in + i + 1, (M.nin - i - 1) * sizeof *M.in);
    M.nin--;
}

static void drained(void *item, void *ud)
{
    size_t *n = ud;
    while (*n < M.nin && M.in[*n].item == &mark)
        (*n)++; /* handed over already: forgotten, not handed again */
    FZ_CHECK(*n < M.nin && item == M.in[*n].item && item != &mark);
    /* The session is detached from its table: calling back in is allowed. */
    FZ_CHECK(!mqtt__session_in_has(M.s, M.in[*n].id));
    free(item);
    (*n)++;
}

/* Handed over by in_replace: the oldest item not handed over yet. */
static void replaced(void *item, void *ud)
{
    size_t *n = ud;
    while (*n < M.nin && M.in[*n].item == &mark)
        (*n)++;
    FZ_CHECK(*n < M.nin && item == M.in[*n].item);
    FZ_CHECK(mqtt__session_in_has(M.s, M.in[*n].id)); /* the id stays held */
    M.in[*n].item = &mark;
    free(item);
    (*n)++;
}

static void op_in_replace(void)
{
    size_t n = 0;
    FZ_CHECK(mqtt__session_in_replace(M.s, &mark, replaced, &n) == MQTT_OK);
    for (size_t i = 0; i < M.nin; i++)
        FZ_CHECK(M.in[i].item == &mark);
}

static void op_in_drain(void)
{
    size_t n = 0;
    mqtt__session_in_drain(M.s, drained, &n);
    while (n < M.nin && M.in[n].item == &mark)
        n++;
    FZ_CHECK(n == M.nin);
    M.nin = 0;
}

/* ---- bulk runs ------------------------------------------------------- */

static void op_bulk(fz_in *in)
{
    uint8_t b = fz_u8(in);
    switch (b % 6) {
    case 0: { /* QoS 1 publishes: up to 1000, or past the whole id space (FF FF: slow) */
        uint32_t k = fz_u8(in), n = 1 + k * k / 64;
        if (k == 255 && fz_u8(in) == 255)
            n = MAX_IDS + 100;
        for (uint32_t i = 0; i < n; i++)
            if (add(build(in, MQTT_REC_PUBLISH, 1, 1, 0, false, false)) != MQTT_OK)
                break;
        break;
    }
    case 1:
        pump();
        break;
    case 2:
        ack_all(false, b & 0x40);
        break;
    case 3:
        ack_all(true, b & 0x40);
        break;
    case 4: { /* many incoming items */
        uint32_t n = 1 + fz_u8(in) * 4u;
        for (uint32_t i = 0; i < n; i++) {
            uint16_t id = (uint16_t)(1 + (i * 7919u) % MAX_IDS);
            bool held_already = mqtt__session_in_has(M.s, id);
            uint16_t *item = malloc(sizeof *item);
            *item = id;
            int rc = mqtt__session_in_put(M.s, id, item);
            FZ_CHECK(rc == (held_already ? MQTT_ERR_INVAL : MQTT_OK));
            if (rc != MQTT_OK) {
                free(item);
                continue;
            }
            if (M.nin == M.capin) {
                M.capin = M.capin ? 2 * M.capin : 16;
                M.in = realloc(M.in, M.capin * sizeof *M.in);
            }
            M.in[M.nin++] = (held){id, item};
        }
        break;
    }
    default: /* take every held item, newest first */
        while (M.nin > 0) {
            uint16_t id = M.in[M.nin - 1].id;
            uint16_t *item = mqtt__session_in_take(M.s, id);
            uint16_t *was = M.in[M.nin - 1].item;
            FZ_CHECK(item == (was == &mark ? NULL : was));
            if (item != &mark)
                free(item);
            M.nin--;
        }
        break;
    }
}

static void op_take_id(void)
{
    uint16_t want = M.nlive >= MAX_IDS ? M.next_id : model_free_id();
    uint16_t got = mqtt__session_take_id(M.s);
    FZ_CHECK(got == want && got != 0);
    FZ_CHECK(M.nlive >= MAX_IDS || by_id[got] == NULL);
    M.next_id = after(got);
}

/* ---- the script ------------------------------------------------------ */

static void setup(fz_in *in)
{
    M.lim.max_inflight = fz_u8(in) % 9; /* 0 means 1 */
    uint16_t q = fz_u16(in);
    M.lim.max_queued = q ? q : 100000;
    uint8_t b = fz_u8(in);
    M.lim.max_queued_bytes = b ? (size_t)b * 97u : SIZE_MAX;
    v5_setup(b);
    M.window = M.lim.max_inflight ? M.lim.max_inflight : 1;
    M.next_id = 1;
    M.s = mqtt__session_new(&M.lim);
    FZ_CHECK(M.s != NULL);
}

static void free_item(void *item)
{
    if (item != &mark)
        free(item);
}

static void teardown(void)
{
    mqtt__session_free(M.s, free_item);
    while (M.head) {
        shadow_rec *r = M.head;
        M.head = r->next;
        if (r->id)
            by_id[r->id] = NULL;
        free(r);
    }
    free(M.in);
    memset(&M, 0, sizeof M);
    mqtt__buf_free(&wire);
    mqtt__buf_free(&wire5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    fz_in in = {data, len};
    FZ_CHECK(mqtt__session_new(NULL) == NULL);
    setup(&in);
    while (fz_more(&in)) {
        uint8_t op = fz_u8(&in);
        switch (op % 14) {
        case 0:
            op_add_publish(&in);
            break;
        case 1:
            op_add_subscribe(&in);
            break;
        case 2:
            if (next() && (op & 0x80))
                sent();
            break;
        case 3:
            sent();
            break;
        case 4:
            op_ack(&in);
            break;
        case 5:
            if (op & 0x80)
                op_refused(&in);
            else
                op_ack(&in);
            break;
        case 6:
            rewind_both();
            break;
        case 7:
            op_take_id();
            break;
        case 8:
            op_in_put(&in);
            break;
        case 9:
            op_in_take(&in);
            break;
        case 10:
            if (op & 0x80)
                op_in_replace();
            else
                op_in_drain();
            break;
        case 11:
            op_bulk(&in);
            break;
        case 12:
            pump();
            break;
        default:
            op_add_bad_kind(&in);
            break;
        }
        check_counts();
    }
    teardown();
    return 0;
}
