/*
 * Shared by the MQTT 5 fuzz targets (one per packet family): the input's
 * first byte picks the role (bit 0: broker) and the protocol level (bit 1:
 * 3.1.1, else 5.0); the rest is one packet, whose type is moved into the
 * target's family when it is not one of them. Each
 * decoded packet must lie inside its bytes, every prefix of it must be
 * incomplete, and it must survive encode -> decode: the same fields and the
 * same properties (in canonical order), and a second encoding gives the same
 * bytes. Header-only; each target includes it once.
 */
#ifndef ZMQTT_FUZZ_V5_H
#define ZMQTT_FUZZ_V5_H

#include <string.h>

#include "codec.h"
#include "fuzz_util.h"

static inline int fz_decode(const uint8_t *b, size_t n, uint8_t version, mqtt_role role,
                     mqtt_packet *p, size_t *used)
{
    const mqtt_decode_opts o = {version, role, 0};
    const char *why = NULL;
    *used = 0;
    int rc = mqtt__decode(b, n, &o, p, used, &why);
    FZ_CHECK(rc == MQTT_OK || rc == MQTT_ERR_INCOMPLETE || (why != NULL && why[0] != '\0'));
    return rc;
}

/* A property block as an array, in wire order (or canonical order when canon). */
typedef struct fz_props {
    mqtt_property *p;
    size_t n;
} fz_props;

static inline size_t fz_count(mqtt_bytes block)
{
    mqtt_prop_iter it;
    mqtt_property p;
    size_t n = 0;
    mqtt__prop_iter_init(&it, block);
    while (mqtt__prop_next(&it, &p))
        n++;
    return n;
}

/* Ascending identifiers, user_property last, each identifier in wire order. */
static inline fz_props fz_collect(mqtt_bytes block, bool canon)
{
    size_t total = fz_count(block);
    fz_props r = {calloc(total + 1, sizeof(mqtt_property)), 0};
    int last = canon ? MQTT_PROP_MAX_ID + 1 : 0;
    for (int pass = canon ? 1 : 0; pass <= last; pass++) {
        int want = pass == MQTT_PROP_MAX_ID + 1 ? MQTT_PROP_USER_PROPERTY : pass;
        mqtt_prop_iter it;
        mqtt_property p;
        if (canon && pass == MQTT_PROP_USER_PROPERTY)
            continue;
        mqtt__prop_iter_init(&it, block);
        while (mqtt__prop_next(&it, &p)) {
            FZ_CHECK(p.data == NULL || (p.data >= block.data && p.len <= block.len &&
                                        p.data + p.len <= block.data + block.len));
            if (!canon || p.id == want)
                r.p[r.n++] = p;
        }
    }
    FZ_CHECK(r.n == total);
    return r;
}

static inline bool fz_same_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static inline bool fz_same_view(mqtt_bytes a, mqtt_bytes b)
{
    return fz_same_bytes(a.data, a.len, b.data, b.len);
}

static inline bool fz_same_props(mqtt_bytes a, mqtt_bytes b)
{
    fz_props x = fz_collect(a, true), y = fz_collect(b, false);
    bool same = x.n == y.n;
    for (size_t i = 0; same && i < x.n; i++) {
        same = x.p[i].id == y.p[i].id && x.p[i].value == y.p[i].value &&
               fz_same_bytes(x.p[i].data, x.p[i].len, y.p[i].data, y.p[i].len) &&
               fz_same_bytes(x.p[i].data2, x.p[i].len2, y.p[i].data2, y.p[i].len2);
    }
    free(x.p);
    free(y.p);
    return same;
}

/* b holds the canonical re-encoding of a: every field as decoded. */
static inline void fz_same_packet(const mqtt_packet *a, const mqtt_packet *b)
{
    FZ_CHECK(a->type == b->type && a->flags == b->flags && a->packet_id == b->packet_id);
    FZ_CHECK(a->session_present == b->session_present && a->return_code == b->return_code);
    FZ_CHECK(a->reason_code == b->reason_code && a->version == b->version);
    FZ_CHECK(a->qos == b->qos && a->retain == b->retain && a->dup == b->dup);
    FZ_CHECK(fz_same_view(a->topic, b->topic) && fz_same_view(a->payload, b->payload));
    FZ_CHECK(fz_same_view(a->granted, b->granted));
    FZ_CHECK(fz_same_props(a->props, b->props));
    if (a->type == MQTT_CONNECT) {
        const mqtt_connect_params *x = &a->connect, *y = &b->connect;
        FZ_CHECK(fz_same_props(a->will_props, b->will_props));
        FZ_CHECK(x->keepalive == y->keepalive && x->clean_session == y->clean_session);
        FZ_CHECK(x->will == y->will && x->will_qos == y->will_qos &&
                 x->will_retain == y->will_retain);
        FZ_CHECK(fz_same_view(x->client_id, y->client_id) &&
                 fz_same_view(x->will_topic, y->will_topic) &&
                 fz_same_view(x->will_payload, y->will_payload));
        FZ_CHECK((x->username.data == NULL) == (y->username.data == NULL) &&
                 fz_same_view(x->username, y->username));
        FZ_CHECK((x->password.data == NULL) == (y->password.data == NULL) &&
                 fz_same_view(x->password, y->password));
    }
    if (a->type == MQTT_SUBSCRIBE || a->type == MQTT_UNSUBSCRIBE)
        FZ_CHECK(fz_same_view(a->entries, b->entries));
}

static inline mqtt_sub_entry *fz_entries(const mqtt_packet *p, size_t *n)
{
    mqtt_sub_iter it;
    mqtt_sub_entry e, *all;
    *n = 0;
    mqtt__sub_iter_init(&it, p);
    while (mqtt__sub_next(&it, &e))
        (*n)++;
    all = calloc(*n + 1, sizeof *all);
    mqtt__sub_iter_init(&it, p);
    for (size_t i = 0; i < *n; i++)
        FZ_CHECK(mqtt__sub_next(&it, &all[i]));
    return all;
}

static inline uint8_t *fz_encode_connect(const mqtt_packet *p, const fz_props *props,
                                         const fz_props *will, size_t *size)
{
    mqtt_connect_params c = p->connect;
    c.props = props->p;
    c.nprops = props->n;
    c.will_props = will->p;
    c.will_nprops = will->n;
    *size = mqtt__connect_size(&c);
    uint8_t *out = malloc(*size + 1);
    FZ_CHECK(*size > 0 && mqtt__encode_connect(out, &c) == *size);
    return out;
}

/* Encodes p with the versioned encoders into a fresh buffer; *n its size. */
static inline uint8_t *fz_encode(const mqtt_packet *p, size_t *n)
{
    /* will_props is set only for a CONNECT (codec.h). */
    const mqtt_bytes none = {NULL, 0};
    fz_props props = fz_collect(p->props, false);
    fz_props will = fz_collect(p->type == MQTT_CONNECT ? p->will_props : none, false);
    uint8_t v = p->version, *out = NULL;
    size_t count = 0, size = 0;
    mqtt_sub_entry *e = NULL;
    switch (p->type) {
    case MQTT_CONNECT:
        out = fz_encode_connect(p, &props, &will, &size);
        break;
    case MQTT_PUBLISH: {
        const mqtt_publish_params q = {p->topic, p->payload, p->qos, p->retain, p->dup,
                                       p->packet_id, props.p, props.n};
        size = mqtt__publish_size_v(v, &q);
        out = malloc(size + 1);
        FZ_CHECK(size > 0 && mqtt__encode_publish_v(out, v, &q) == size);
        break;
    }
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE: {
        e = fz_entries(p, &count);
        const mqtt_sub_params q = {p->packet_id, e, count, props.p, props.n};
        size = mqtt__sub_size_v(v, p->type, &q);
        out = malloc(size + 1);
        FZ_CHECK(size > 0 && mqtt__encode_sub_v(out, v, p->type, &q) == size);
        break;
    }
    case MQTT_CONNACK:
    case MQTT_SUBACK:
    case MQTT_UNSUBACK: {
        const mqtt_reply_params q = {p->type,   p->packet_id, p->session_present, p->return_code,
                                     props.p, props.n,     p->granted};
        size = mqtt__reply_size_v(v, &q);
        out = malloc(size + 1);
        FZ_CHECK(size > 0 && mqtt__encode_reply_v(out, v, &q) == size);
        break;
    }
    default: {
        const mqtt_ack_params q = {p->type, p->packet_id, p->reason_code, props.p, props.n};
        size = mqtt__ack_size_v(v, &q);
        out = malloc(size + 1);
        FZ_CHECK(size > 0 && mqtt__encode_ack_v(out, v, &q) == size);
        break;
    }
    }
    free(props.p);
    free(will.p);
    free(e);
    *n = size;
    return out;
}

/* A view lies inside [b, b + n). */
static inline bool fz_inside(mqtt_bytes v, const uint8_t *b, size_t n)
{
    return v.data == NULL || (v.data >= b && v.len <= n && (size_t)(v.data - b) <= n - v.len);
}

static inline void fz_check_ok(const mqtt_packet *p, const uint8_t *b, size_t n, mqtt_role role)
{
    mqtt_packet q, r;
    size_t used, m, m2;
    FZ_CHECK(fz_inside(p->topic, b, n) && fz_inside(p->payload, b, n) &&
             fz_inside(p->granted, b, n) && fz_inside(p->props, b, n));
    for (size_t k = 0; k < n && n <= 256; k++) {
        uint8_t *c = malloc(k ? k : 1);
        memcpy(c, b, k);
        FZ_CHECK(fz_decode(c, k, p->version, role, &q, &used) == MQTT_ERR_INCOMPLETE);
        FZ_CHECK(used > k && used <= n);
        free(c);
    }
    uint8_t *enc = fz_encode(p, &m);
    FZ_CHECK(fz_decode(enc, m, p->version, role, &q, &used) == MQTT_OK && used == m);
    fz_same_packet(p, &q);
    uint8_t *again = fz_encode(&q, &m2);
    FZ_CHECK(fz_same_bytes(enc, m, again, m2));
    FZ_CHECK(fz_decode(again, m2, p->version, role, &r, &used) == MQTT_OK);
    free(enc);
    free(again);
}

/* The target's entry: data[0] picks role and level, data[1]'s type is forced
 * into family, and the packet is decoded from an exact-size copy. */
static inline void fz_v5_run(const uint8_t *data, size_t len, const uint8_t *family, size_t nfamily)
{
    mqtt_packet p;
    size_t used;
    if (len < 2)
        return;
    mqtt_role role = (data[0] & 1u) ? MQTT_ROLE_BROKER : MQTT_ROLE_CLIENT;
    uint8_t version = (data[0] & 2u) ? MQTT_V311 : MQTT_V5;
    uint8_t *b = malloc(len - 1);
    memcpy(b, data + 1, len - 1);
    if (memchr(family, b[0] & 0xF0u, nfamily) == NULL) /* real packets stay as they are */
        b[0] = (uint8_t)(family[(b[0] >> 4) % nfamily] | (b[0] & 0x0Fu));
    if (fz_decode(b, len - 1, version, role, &p, &used) == MQTT_OK) {
        FZ_CHECK(used >= 2 && used <= len - 1);
        uint8_t *exact = malloc(used);
        memcpy(exact, b, used);
        FZ_CHECK(fz_decode(exact, used, version, role, &p, &used) == MQTT_OK);
        fz_check_ok(&p, exact, used, role);
        free(exact);
    }
    free(b);
}

#endif
