/*
 * The store's changes: encoding entries into the pending buffer, applying
 * them to the index (the same code recovery runs, so a log replays into
 * exactly the state that wrote it), group commit and compaction. No lock
 * here: the caller holds its own around everything but flush_write.
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "store_internal.h"


/* ---- the index -------------------------------------------------------- */

static bool state_ok(bool incoming, uint8_t qos, uint8_t state)
{
    if (incoming)
        return qos == 2 && (state == MQTT_QS_IN_HELD || state == MQTT_QS_IN_RELEASED);
    switch (qos) {
    case 0:
        return state == MQTT_QS_QUEUED0;
    case 1:
        return state == MQTT_QS_QUEUED1 || state == MQTT_QS_WAIT_PUBACK;
    case 2:
        return state == MQTT_QS_QUEUED2 || state == MQTT_QS_WAIT_PUBREC ||
               state == MQTT_QS_WAIT_PUBCOMP;
    default:
        return false;
    }
}

/* A PUBLISH carries an id exactly when its QoS is above 0. */
static bool id_ok(uint8_t qos, uint16_t id)
{
    return (qos == 0) == (id == 0);
}

static int vec_push(st_vec *v, const st_ent *e)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2u : 16u;
        st_ent *nv = mqtt__realloc(v->v, cap * sizeof *nv);
        if (nv == NULL)
            return MQTT_ERR_NOMEM;
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = *e;
    return MQTT_OK;
}

/* Outgoing keys only grow: binary search. SIZE_MAX when absent or removed. */
static size_t out_find(const st_vec *v, uint64_t key)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2u;
        if (v->v[mid].key < key)
            lo = mid + 1u;
        else
            hi = mid;
    }
    if (lo < v->n && v->v[lo].key == key && !(v->v[lo].flags & ST_F_DEAD))
        return lo;
    return SIZE_MAX;
}

/* Incoming ids are few (the broker's receive maximum): a linear search. */
static size_t in_find(const st_vec *v, uint16_t id)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->v[i].id == id)
            return i;
    return SIZE_MAX;
}

void mqtt__store_squeeze(st_vec *v)
{
    if (v->dead < 64u || v->dead * 2u < v->n)
        return;
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++)
        if (!(v->v[i].flags & ST_F_DEAD))
            v->v[k++] = v->v[i];
    v->n = k;
    v->dead = 0;
}

/* An add entry's body: the message and where it stands. */
static int apply_add(mqtt_store *st, bool incoming, const uint8_t *b, size_t bl, st_ent *e)
{
    if (bl < ST_MSG_FIXED)
        return MQTT_ERR_INVAL;
    e->key = st_get64(b);
    e->id = st_get16(b + 8);
    e->qos = b[10];
    e->state = b[11];
    e->flags = b[12];
    uint64_t tl = st_get16(b + 13), xl = st_get32(b + 15), pl = st_get32(b + 19);
    size_t size = mqtt__publish_size((size_t)tl, (size_t)pl, e->qos);
    if (ST_MSG_FIXED + tl + xl + pl != bl || size == 0 || xl > UINT32_MAX - size ||
        (e->flags & ~(ST_F_DUP | ST_F_RETAIN)) != 0 || !state_ok(incoming, e->qos, e->state) ||
        !id_ok(e->qos, e->id))
        return MQTT_ERR_INVAL;
    if (incoming) {
        if (e->key != 0 || in_find(&st->in, e->id) != SIZE_MAX)
            return MQTT_ERR_INVAL;
        return vec_push(&st->in, e);
    }
    if (e->key != e->seq)
        return MQTT_ERR_INVAL; /* keys are the adds' seqs, so they only grow */
    return vec_push(&st->out, e);
}

static int apply_out_change(mqtt_store *st, uint8_t type, const uint8_t *b, size_t bl,
                            bool strict)
{
    if (bl != (type == ST_OUT_DEL ? 8u : 12u))
        return MQTT_ERR_INVAL;
    size_t i = out_find(&st->out, st_get64(b));
    if (i == SIZE_MAX)
        return strict ? MQTT_ERR_INVAL : MQTT_OK;
    st_ent *e = &st->out.v[i];
    if (type == ST_OUT_DEL) {
        e->flags |= ST_F_DEAD;
        st->out.dead++;
        st->live_bytes -= e->len;
        mqtt__store_squeeze(&st->out);
        return MQTT_OK;
    }
    uint16_t id = st_get16(b + 8);
    if (!state_ok(false, e->qos, b[10]) || !id_ok(e->qos, id) || (b[11] & ~ST_F_DUP) != 0)
        return MQTT_ERR_INVAL;
    e->id = id;
    e->state = b[10];
    e->flags = (uint8_t)((e->flags & ~ST_F_DUP) | b[11]);
    return MQTT_OK;
}

static int apply_in_change(mqtt_store *st, uint8_t type, const uint8_t *b, size_t bl,
                           bool strict)
{
    if (bl != (type == ST_IN_DEL ? 2u : 3u))
        return MQTT_ERR_INVAL;
    size_t i = in_find(&st->in, st_get16(b));
    if (type == ST_IN_STATE && b[2] != MQTT_QS_IN_RELEASED)
        return MQTT_ERR_INVAL;
    if (i == SIZE_MAX)
        return strict ? MQTT_ERR_INVAL : MQTT_OK;
    if (type == ST_IN_STATE) {
        st->in.v[i].state = MQTT_QS_IN_RELEASED;
        return MQTT_OK;
    }
    st->live_bytes -= st->in.v[i].len;
    memmove(&st->in.v[i], &st->in.v[i + 1u], (st->in.n - i - 1u) * sizeof *st->in.v);
    st->in.n--;
    return MQTT_OK;
}

int mqtt__store_apply(mqtt_store *st, const uint8_t *e, size_t total, uint64_t pos, bool strict)
{
    const uint8_t *b = e + ST_ENT_HDR;
    size_t bl = total - ST_ENT_HDR;
    uint8_t type = e[16];
    if (type == ST_OUT_ADD || type == ST_IN_ADD) {
        st_ent ent = { .seq = st_get64(e + 8), .pos = pos, .len = (uint32_t)total };
        int rc = apply_add(st, type == ST_IN_ADD, b, bl, &ent);
        if (rc == MQTT_OK)
            st->live_bytes += total;
        return rc;
    }
    if (type == ST_OUT_STATE || type == ST_OUT_DEL)
        return apply_out_change(st, type, b, bl, strict);
    if (type == ST_IN_STATE || type == ST_IN_DEL)
        return apply_in_change(st, type, b, bl, strict);
    return MQTT_ERR_INVAL;
}

/* ---- appending -------------------------------------------------------- */

/* Room for an entry with body bytes at the end of the pending buffer; the
 * body goes at the pointer returned plus ST_ENT_HDR. NULL on NOMEM. */
static uint8_t *ent_reserve(mqtt_store *st, size_t body)
{
    size_t need = ST_ENT_HDR + body;
    if (body > ST_MAX_BODY || need > SIZE_MAX / 2u - st->pend_len)
        return NULL;
    if (st->pend_len + need > st->pend_cap) {
        size_t cap = st->pend_cap ? st->pend_cap : 4096u;
        while (cap < st->pend_len + need)
            cap *= 2u;
        uint8_t *p = mqtt__realloc(st->pend, cap);
        if (p == NULL)
            return NULL;
        st->pend = p;
        st->pend_cap = cap;
    }
    return st->pend + st->pend_len;
}

/* Frames the entry whose body was written after ent_reserve and applies
 * it; it stays pending only when the index took it. */
static int ent_commit(mqtt_store *st, uint8_t type, size_t body)
{
    uint8_t *e = st->pend + st->pend_len;
    size_t total = ST_ENT_HDR + body;
    st_put32(e + 4, (uint32_t)body);
    st_put64(e + 8, st->seq + 1u);
    e[16] = type;
    st_put32(e, mqtt__crc32c(0, e + 4, total - 4u));
    int rc = mqtt__store_apply(st, e, total, st->file_end + st->job_len + st->pend_len, true);
    if (rc != MQTT_OK)
        return rc;
    st->pend_len += total;
    st->seq++;
    st->touched = true;
    mqtt__store_unmap(st); /* no more iteration */
    return MQTT_OK;
}

static void put_bytes(uint8_t **at, mqtt_bytes b, size_t n)
{
    if (n > 0)
        memcpy(*at, b.data, n);
    *at += n;
}

static size_t view_len(mqtt_bytes b)
{
    return b.data == NULL ? 0 : b.len;
}

/* An add entry for a message. */
static int add_msg(mqtt_store *st, uint8_t type, const st_ent *h, mqtt_bytes topic,
                   mqtt_bytes props, mqtt_bytes payload)
{
    size_t tl = view_len(topic), xl = view_len(props), pl = view_len(payload);
    if (tl > UINT16_MAX || xl > UINT32_MAX || pl > UINT32_MAX)
        return MQTT_ERR_INVAL;
    size_t body = ST_MSG_FIXED + tl + xl + pl;
    uint8_t *e = ent_reserve(st, body);
    if (e == NULL)
        return body > ST_MAX_BODY ? MQTT_ERR_INVAL : MQTT_ERR_NOMEM;
    uint8_t *b = e + ST_ENT_HDR;
    st_put64(b, type == ST_OUT_ADD ? st->seq + 1u : 0u);
    st_put16(b + 8, h->id);
    b[10] = h->qos;
    b[11] = h->state;
    b[12] = h->flags;
    st_put16(b + 13, (uint16_t)tl);
    st_put32(b + 15, (uint32_t)xl);
    st_put32(b + 19, (uint32_t)pl);
    uint8_t *at = b + ST_MSG_FIXED;
    put_bytes(&at, topic, tl);
    put_bytes(&at, props, xl);
    put_bytes(&at, payload, pl);
    return ent_commit(st, type, body);
}

static uint8_t rec_flags(const mqtt_record *r)
{
    return (uint8_t)((r->dup ? ST_F_DUP : 0u) | (r->retain ? ST_F_RETAIN : 0u));
}

int mqtt__store_out_add(mqtt_store *st, const mqtt_record *r, uint64_t *key)
{
    if (st == NULL || r == NULL || key == NULL || r->kind != MQTT_REC_PUBLISH)
        return MQTT_ERR_INVAL;
    st_ent h = { .id = r->packet_id, .qos = r->qos, .state = r->state, .flags = rec_flags(r) };
    int rc = add_msg(st, ST_OUT_ADD, &h, mqtt__record_topic(r), mqtt__record_props(r),
                     mqtt__record_payload(r));
    if (rc == MQTT_OK)
        *key = st->seq;
    return rc;
}

int mqtt__store_out_update(mqtt_store *st, uint64_t key, const mqtt_record *r)
{
    if (st == NULL || r == NULL)
        return MQTT_ERR_INVAL;
    size_t i = out_find(&st->out, key);
    if (i == SIZE_MAX || st->out.v[i].qos != r->qos)
        return MQTT_ERR_INVAL;
    uint8_t *e = ent_reserve(st, 12u);
    if (e == NULL)
        return MQTT_ERR_NOMEM;
    st_put64(e + ST_ENT_HDR, key);
    st_put16(e + ST_ENT_HDR + 8, r->packet_id);
    e[ST_ENT_HDR + 10] = r->state;
    e[ST_ENT_HDR + 11] = r->dup ? ST_F_DUP : 0u;
    return ent_commit(st, ST_OUT_STATE, 12u);
}

int mqtt__store_out_remove(mqtt_store *st, uint64_t key)
{
    if (st == NULL)
        return MQTT_ERR_INVAL;
    uint8_t *e = ent_reserve(st, 8u);
    if (e == NULL)
        return MQTT_ERR_NOMEM;
    st_put64(e + ST_ENT_HDR, key);
    return ent_commit(st, ST_OUT_DEL, 8u);
}

int mqtt__store_in_add(mqtt_store *st, uint16_t id, mqtt_bytes topic, mqtt_bytes payload,
                       bool retain, mqtt_bytes props)
{
    if (st == NULL)
        return MQTT_ERR_INVAL;
    st_ent h = { .id = id, .qos = 2, .state = MQTT_QS_IN_HELD, .flags = retain ? ST_F_RETAIN : 0 };
    return add_msg(st, ST_IN_ADD, &h, topic, props, payload);
}

/* IN_STATE (released) or IN_DEL for id. */
static int in_change(mqtt_store *st, uint8_t type, uint16_t id)
{
    if (st == NULL)
        return MQTT_ERR_INVAL;
    size_t body = type == ST_IN_DEL ? 2u : 3u;
    uint8_t *e = ent_reserve(st, body);
    if (e == NULL)
        return MQTT_ERR_NOMEM;
    st_put16(e + ST_ENT_HDR, id);
    if (type == ST_IN_STATE)
        e[ST_ENT_HDR + 2] = MQTT_QS_IN_RELEASED;
    return ent_commit(st, type, body);
}

int mqtt__store_in_release(mqtt_store *st, uint16_t id)
{
    return in_change(st, ST_IN_STATE, id);
}

int mqtt__store_in_remove(mqtt_store *st, uint16_t id)
{
    return in_change(st, ST_IN_DEL, id);
}

uint64_t mqtt__store_last(const mqtt_store *st)
{
    return st == NULL ? 0 : st->seq;
}

uint64_t mqtt__store_durable(const mqtt_store *st)
{
    return st == NULL ? 0 : st->durable;
}
