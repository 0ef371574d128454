/*
 * Session state: outgoing records in publish order with a resend cursor,
 * packet-id allocation through a small open-addressing id table, the
 * in-flight window and queue limits, and incoming QoS 2 items held until
 * PUBREL. No I/O, no clock, no locking: the caller owns all of that.
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "codec.h"
#include "mqtt.h"
#include "session.h"

#define ID_MIN_BITS 3u /* 8 slots: the first allocation of a table */
#define MAX_IDS 65535u

/* One slot of an id table. tag holds the packet id in its low 16 bits and,
 * for incoming items, an arrival number above it so drain can keep order. */
typedef struct id_slot {
    void *p; /* NULL: empty slot */
    uint64_t tag;
} id_slot;

/* Linear probing, no tombstones; no array at all while empty so that an
 * idle session costs only its struct. */
typedef struct id_table {
    id_slot *slot;
    uint32_t count;
    uint8_t bits; /* capacity is 1 << bits; 0 when slot is NULL */
} id_table;

struct mqtt_session {
    mqtt_record *head, *tail;
    mqtt_record *cursor;  /* first record not written on this connection; NULL: none */
    mqtt_record *pending; /* returned by the last next(), awaiting sent() */
    id_table out;         /* outgoing records by packet id */
    id_table in;          /* incoming QoS 2 items by packet id */
    uint64_t in_seq;      /* arrival number of the next incoming item */
    mqtt_session_limits lim;
    size_t queued, inflight, records, bytes;
    uint16_t next_id; /* where the id search starts: 1..65535 */
};

/* ---- id table -------------------------------------------------------- */

static uint16_t slot_id(const id_slot *e)
{
    return (uint16_t)(e->tag & 0xFFFFu);
}

/* Fibonacci hashing: consecutive ids, the usual case, land far apart. */
static uint32_t idt_home(const id_table *t, uint16_t id)
{
    return (uint32_t)(id * 2654435769u) >> (32u - t->bits);
}

static uint32_t idt_mask(const id_table *t)
{
    return (1u << t->bits) - 1u;
}

/* Index of id's slot, or UINT32_MAX when absent. */
static uint32_t idt_find(const id_table *t, uint16_t id)
{
    if (t->count == 0)
        return UINT32_MAX;
    uint32_t mask = idt_mask(t);
    for (uint32_t i = idt_home(t, id);; i = (i + 1u) & mask) {
        if (t->slot[i].p == NULL)
            return UINT32_MAX;
        if (slot_id(&t->slot[i]) == id)
            return i;
    }
}

static void *idt_get(const id_table *t, uint16_t id)
{
    uint32_t i = idt_find(t, id);
    return i == UINT32_MAX ? NULL : t->slot[i].p;
}

/* Places e, known absent, in a table with room. */
static void idt_place(id_table *t, id_slot e)
{
    uint32_t mask = idt_mask(t);
    uint32_t i = idt_home(t, slot_id(&e));
    while (t->slot[i].p != NULL)
        i = (i + 1u) & mask;
    t->slot[i] = e;
    t->count++;
}

/* Rehashes into 1 << bits slots (bits 0 frees the array). False on NOMEM. */
static bool idt_resize(id_table *t, uint8_t bits)
{
    id_table nt = { NULL, 0, bits };
    if (bits > 0) {
        nt.slot = mqtt__calloc((size_t)1 << bits, sizeof *nt.slot);
        if (nt.slot == NULL)
            return false;
        uint32_t old_cap = t->bits ? 1u << t->bits : 0u;
        for (uint32_t i = 0; i < old_cap; i++)
            if (t->slot[i].p != NULL)
                idt_place(&nt, t->slot[i]);
    }
    mqtt__free(t->slot);
    *t = nt;
    return true;
}

/* Makes room for one more entry, keeping the load at most 3/4. */
static bool idt_reserve(id_table *t)
{
    if (t->bits == 0)
        return idt_resize(t, ID_MIN_BITS);
    if ((uint64_t)(t->count + 1u) * 4u <= (uint64_t)3u << t->bits)
        return true;
    return idt_resize(t, (uint8_t)(t->bits + 1u));
}

/* Backward-shift deletion keeps probe chains unbroken without tombstones. */
static void idt_remove_at(id_table *t, uint32_t hole)
{
    uint32_t mask = idt_mask(t);
    for (uint32_t j = (hole + 1u) & mask; t->slot[j].p != NULL; j = (j + 1u) & mask) {
        uint32_t home = idt_home(t, slot_id(&t->slot[j]));
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            t->slot[hole] = t->slot[j];
            hole = j;
        }
    }
    t->slot[hole].p = NULL;
    t->slot[hole].tag = 0;
    t->count--;
    /* Give memory back after a burst; a failed shrink just keeps the big table. */
    if (t->count == 0)
        (void)idt_resize(t, 0);
    else if (t->bits > ID_MIN_BITS && (uint64_t)t->count * 8u < (uint64_t)1u << t->bits)
        (void)idt_resize(t, (uint8_t)(t->bits - 1u));
}

static void *idt_remove(id_table *t, uint16_t id)
{
    uint32_t i = idt_find(t, id);
    if (i == UINT32_MAX)
        return NULL;
    void *p = t->slot[i].p;
    idt_remove_at(t, i);
    return p;
}

/* ---- records --------------------------------------------------------- */

mqtt_record *mqtt__record_new(mqtt_rec_kind kind, uint8_t qos, size_t len, size_t id_offset)
{
    if (len > SIZE_MAX - sizeof(mqtt_record))
        return NULL;
    mqtt_record *r = mqtt__malloc(sizeof *r + len);
    if (r == NULL)
        return NULL;
    r->prev = r->next = r->id_next = NULL;
    r->packet_id = 0;
    r->filters = 0;
    r->qos = qos;
    r->kind = (uint8_t)kind;
    r->state = MQTT_REC_QUEUED;
    r->id_offset = id_offset;
    r->len = len;
    return r;
}

void mqtt__record_free(mqtt_record *r)
{
    mqtt__free(r);
}

static bool needs_id(const mqtt_record *r)
{
    return r->kind != MQTT_REC_PUBLISH || r->qos > 0;
}

static bool is_inflight_state(uint8_t state)
{
    return state == MQTT_REC_WAIT_PUBACK || state == MQTT_REC_WAIT_PUBREC ||
           state == MQTT_REC_WAIT_PUBCOMP;
}

/* r gives up its id: the next record sharing it (if any) becomes its holder. */
static void release_id(mqtt_session *s, const mqtt_record *r)
{
    uint32_t i = idt_find(&s->out, r->packet_id);
    if (i == UINT32_MAX || s->out.slot[i].p != r)
        return;
    if (r->id_next != NULL)
        s->out.slot[i].p = r->id_next;
    else
        idt_remove_at(&s->out, i);
}

/* Unlinks r, drops it from the id table and the counters, frees it. */
static void session_remove(mqtt_session *s, mqtt_record *r)
{
    if (s->cursor == r)
        s->cursor = r->next;
    if (s->pending == r)
        s->pending = NULL;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        s->head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        s->tail = r->prev;
    if (r->packet_id != 0)
        release_id(s, r);
    if (r->state == MQTT_REC_QUEUED)
        s->queued--;
    else if (is_inflight_state(r->state))
        s->inflight--;
    s->records--;
    s->bytes -= r->len;
    mqtt__record_free(r);
}

/* ---- session lifetime ------------------------------------------------ */

mqtt_session *mqtt__session_new(const mqtt_session_limits *l)
{
    if (l == NULL)
        return NULL;
    mqtt_session *s = mqtt__calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->lim = *l;
    if (s->lim.max_inflight == 0)
        s->lim.max_inflight = 1;
    s->next_id = 1;
    return s;
}

/* ud points at the caller's free_item: a function pointer cannot travel as void *. */
static void drop_item(void *item, void *ud)
{
    void (**free_item)(void *) = ud;
    if (*free_item != NULL)
        (*free_item)(item);
}

void mqtt__session_free(mqtt_session *s, void (*free_item)(void *))
{
    if (s == NULL)
        return;
    mqtt_record *r = s->head;
    while (r != NULL) {
        mqtt_record *next = r->next;
        mqtt__record_free(r);
        r = next;
    }
    mqtt__free(s->out.slot);
    mqtt__session_in_drain(s, drop_item, &free_item);
    mqtt__free(s);
}

/* ---- adding ---------------------------------------------------------- */

static bool record_valid(const mqtt_record *r)
{
    if (r->state != MQTT_REC_QUEUED || r->kind > MQTT_REC_UNSUBSCRIBE || r->qos > 2)
        return false;
    if (!needs_id(r))
        return true;
    return r->id_offset > 0 && r->len >= 2 && r->id_offset <= r->len - 2;
}

/* First id from next_id on that no record holds; the caller knows one exists. */
static uint16_t free_id(const mqtt_session *s)
{
    uint16_t id = s->next_id;
    while (idt_get(&s->out, id) != NULL)
        id = id == MAX_IDS ? 1 : (uint16_t)(id + 1u);
    return id;
}

uint16_t mqtt__session_take_id(mqtt_session *s)
{
    uint16_t id = s->out.count >= MAX_IDS ? s->next_id : free_id(s);
    s->next_id = id == MAX_IDS ? 1 : (uint16_t)(id + 1u);
    return id;
}

int mqtt__session_add(mqtt_session *s, mqtt_record *r)
{
    if (s == NULL || r == NULL || !record_valid(r))
        return MQTT_ERR_INVAL;
    if (s->queued >= s->lim.max_queued || r->len > s->lim.max_queued_bytes - s->bytes)
        return MQTT_ERR_QUEUE_FULL;
    r->packet_id = 0;
    r->id_next = NULL;
    if (needs_id(r)) {
        uint16_t id;
        if (s->out.count >= MAX_IDS) {
            /* Every id is held: r waits behind the last record given the next one. */
            id = s->next_id;
            mqtt_record *h = idt_get(&s->out, id);
            while (h->id_next != NULL)
                h = h->id_next;
            h->id_next = r;
        } else {
            if (!idt_reserve(&s->out))
                return MQTT_ERR_NOMEM;
            id = free_id(s);
            idt_place(&s->out, (id_slot){ r, id });
        }
        r->packet_id = id;
        r->packet[r->id_offset] = (uint8_t)(id >> 8);
        r->packet[r->id_offset + 1] = (uint8_t)(id & 0xFFu);
        s->next_id = id == MAX_IDS ? 1 : (uint16_t)(id + 1u);
    }
    r->next = NULL;
    r->prev = s->tail;
    if (s->tail != NULL)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    if (s->cursor == NULL)
        s->cursor = r; /* everything before was written: r is the first unwritten */
    s->queued++;
    s->records++;
    s->bytes += r->len;
    return MQTT_OK;
}

/* ---- writing --------------------------------------------------------- */

bool mqtt__session_next(mqtt_session *s, mqtt_bytes *out, uint8_t scratch[4])
{
    if (s == NULL || out == NULL || scratch == NULL)
        return false;
    s->pending = NULL;
    mqtt_record *r = s->cursor;
    if (r == NULL)
        return false;
    switch (r->state) {
    case MQTT_REC_QUEUED:
        /* Strict order: a publish held by the window holds everything behind it. */
        if (r->kind == MQTT_REC_PUBLISH && r->qos > 0 && s->inflight >= s->lim.max_inflight)
            return false;
        /* A record sharing its id goes out once the records before it with that id are done. */
        if (r->packet_id != 0 && idt_get(&s->out, r->packet_id) != r)
            return false;
        break;
    case MQTT_REC_WAIT_PUBACK:
    case MQTT_REC_WAIT_PUBREC:
        r->packet[0] |= 0x08u; /* DUP: the broker may have seen it already */
        break;
    case MQTT_REC_WAIT_PUBCOMP:
        scratch[0] = MQTT_PUBREL | 0x02u;
        scratch[1] = 0x02;
        scratch[2] = (uint8_t)(r->packet_id >> 8);
        scratch[3] = (uint8_t)(r->packet_id & 0xFFu);
        out->data = scratch;
        out->len = 4;
        s->pending = r;
        return true;
    default: /* WAIT_SUBACK, WAIT_UNSUBACK: resent unchanged */
        break;
    }
    out->data = r->packet;
    out->len = r->len;
    s->pending = r;
    return true;
}

void mqtt__session_sent(mqtt_session *s)
{
    if (s == NULL || s->pending == NULL || s->pending != s->cursor)
        return;
    mqtt_record *r = s->pending;
    s->pending = NULL;
    s->cursor = r->next;
    if (r->state != MQTT_REC_QUEUED)
        return; /* a resend: the record keeps waiting for the same ack */
    if (r->kind == MQTT_REC_PUBLISH && r->qos == 0) {
        session_remove(s, r);
        return;
    }
    s->queued--;
    if (r->kind == MQTT_REC_SUBSCRIBE) {
        r->state = MQTT_REC_WAIT_SUBACK;
    } else if (r->kind == MQTT_REC_UNSUBSCRIBE) {
        r->state = MQTT_REC_WAIT_UNSUBACK;
    } else {
        r->state = r->qos == 1 ? MQTT_REC_WAIT_PUBACK : MQTT_REC_WAIT_PUBREC;
        s->inflight++;
    }
}

void mqtt__session_rewind(mqtt_session *s)
{
    if (s == NULL)
        return;
    s->cursor = s->head;
    s->pending = NULL;
}

/* ---- acks ------------------------------------------------------------ */

/* The state a record must be in for an ack of this type to complete it. */
static int completes(uint8_t type)
{
    switch (type) {
    case MQTT_PUBACK:
        return MQTT_REC_WAIT_PUBACK;
    case MQTT_PUBCOMP:
        return MQTT_REC_WAIT_PUBCOMP;
    case MQTT_SUBACK:
        return MQTT_REC_WAIT_SUBACK;
    case MQTT_UNSUBACK:
        return MQTT_REC_WAIT_UNSUBACK;
    default:
        return -1;
    }
}

mqtt_ack_result mqtt__session_ack(mqtt_session *s, uint8_t type, uint16_t id)
{
    if (s == NULL || id == 0)
        return MQTT_ACK_UNKNOWN;
    mqtt_record *r = idt_get(&s->out, id);
    if (r == NULL)
        return MQTT_ACK_UNKNOWN;
    type &= 0xF0u;
    if (type == MQTT_PUBACK && r->state == MQTT_REC_WAIT_PUBREC) {
        session_remove(s, r); /* the broker took it as QoS 1: delivered at least once */
        return MQTT_ACK_DOWNGRADED;
    }
    if (type == MQTT_PUBREC) {
        if (r->state == MQTT_REC_WAIT_PUBCOMP)
            return MQTT_ACK_DUPLICATE;
        if (r->state != MQTT_REC_WAIT_PUBREC)
            return MQTT_ACK_UNKNOWN;
        r->state = MQTT_REC_WAIT_PUBCOMP;
        return MQTT_ACK_NEW;
    }
    if (completes(type) != (int)r->state)
        return MQTT_ACK_UNKNOWN;
    session_remove(s, r);
    return MQTT_ACK_NEW;
}

/* ---- incoming QoS 2 -------------------------------------------------- */

const mqtt_record *mqtt__session_awaiting(const mqtt_session *s, uint16_t id)
{
    const mqtt_record *r = s == NULL ? NULL : idt_get(&s->out, id);
    return r != NULL && r->state != MQTT_REC_QUEUED ? r : NULL;
}

bool mqtt__session_out_has(const mqtt_session *s, uint16_t id)
{
    return s != NULL && idt_get(&s->out, id) != NULL;
}

bool mqtt__session_in_has(const mqtt_session *s, uint16_t id)
{
    return s != NULL && idt_get(&s->in, id) != NULL;
}

int mqtt__session_in_put(mqtt_session *s, uint16_t id, void *item)
{
    if (s == NULL || item == NULL || id == 0 || idt_get(&s->in, id) != NULL)
        return MQTT_ERR_INVAL;
    if (!idt_reserve(&s->in))
        return MQTT_ERR_NOMEM;
    idt_place(&s->in, (id_slot){ item, s->in_seq++ << 16 | id });
    return MQTT_OK;
}

void *mqtt__session_in_take(mqtt_session *s, uint16_t id)
{
    return s == NULL ? NULL : idt_remove(&s->in, id);
}

static int by_arrival(const void *a, const void *b)
{
    uint64_t x = ((const id_slot *)a)->tag >> 16, y = ((const id_slot *)b)->tag >> 16;
    return (x > y) - (x < y);
}

/* Copies t's items other than skip into out (which may be t's own slots) in
 * arrival order; returns how many. */
static uint32_t by_arrival_order(const id_table *t, id_slot *out, const void *skip)
{
    uint32_t cap = 1u << t->bits, n = 0;
    for (uint32_t i = 0; i < cap; i++)
        if (t->slot[i].p != NULL && t->slot[i].p != skip)
            out[n++] = t->slot[i];
    qsort(out, n, sizeof *out, by_arrival);
    return n;
}

int mqtt__session_in_replace(mqtt_session *s, void *mark, void (*fn)(void *item, void *ud),
                             void *ud)
{
    if (s == NULL || s->in.count == 0)
        return MQTT_OK;
    id_slot *order = mqtt__malloc((size_t)s->in.count * sizeof *order);
    if (order == NULL)
        return MQTT_ERR_NOMEM;
    uint32_t n = by_arrival_order(&s->in, order, mark);
    for (uint32_t i = 0; i < n; i++) {
        s->in.slot[idt_find(&s->in, slot_id(&order[i]))].p = mark;
        if (fn != NULL)
            fn(order[i].p, ud);
    }
    mqtt__free(order);
    return MQTT_OK;
}

void mqtt__session_in_drain(mqtt_session *s, void (*fn)(void *item, void *ud), void *ud)
{
    if (s == NULL || s->in.count == 0)
        return;
    /* Detach first so fn may call back into the session. */
    id_table t = s->in;
    s->in = (id_table){ NULL, 0, 0 };
    uint32_t n = by_arrival_order(&t, t.slot, NULL);
    for (uint32_t i = 0; i < n; i++)
        if (fn != NULL)
            fn(t.slot[i].p, ud);
    mqtt__free(t.slot);
}

/* ---- counters -------------------------------------------------------- */

void mqtt__session_counts(const mqtt_session *s, mqtt_session_counts *c)
{
    if (c == NULL)
        return;
    memset(c, 0, sizeof *c);
    if (s == NULL)
        return;
    c->queued = s->queued;
    c->inflight = s->inflight;
    c->records = s->records;
    c->bytes = s->bytes;
    c->incoming = s->in.count;
}
