/*
 * Session state: outgoing records (messages, not bytes) in publish order
 * with a resend cursor, packet-id allocation through a small open-addressing
 * id table, the in-flight window and queue limits, and incoming QoS 2 items
 * held until PUBREL. Every state change is a cell of the QoS table (qos.c).
 * No I/O, no encoding, no clock, no locking: the caller owns all of that.
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
 * for incoming items, their mqtt_qos_state in the 4 bits above it and an
 * arrival number above those so drain can keep order. */
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
    uint32_t window;        /* in flight at most: max_inflight, or less (receive maximum) */
    size_t queued, inflight, records, bytes;
    /* Of inflight, the records not written again on this connection (the
     * rewound): the window counts only the others, the new connection's. */
    size_t rewound;
    uint16_t next_id; /* where the id search starts: 1..65535 */
};

/* ---- id table -------------------------------------------------------- */

#define TAG_STATE_SHIFT 16u
#define TAG_SEQ_SHIFT 20u

static uint16_t slot_id(const id_slot *e)
{
    return (uint16_t)(e->tag & 0xFFFFu);
}

static mqtt_qos_state slot_state(const id_slot *e)
{
    return (mqtt_qos_state)(e->tag >> TAG_STATE_SHIFT & 0xFu);
}

static void slot_set_state(id_slot *e, uint8_t state)
{
    e->tag = (e->tag & ~((uint64_t)0xFu << TAG_STATE_SHIFT)) | (uint64_t)state << TAG_STATE_SHIFT;
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

/* ---- records --------------------------------------------------------- */

_Static_assert(sizeof(mqtt_record) % _Alignof(mqtt_sub_entry) == 0,
               "a record's entries follow it aligned");

/* One block: the struct, then room for n entries and text bytes of data.
 * NULL on out of memory or when the sizes overflow. */
static mqtt_record *record_alloc(mqtt_rec_kind kind, uint8_t qos, size_t n, size_t text)
{
    if (n > (SIZE_MAX - sizeof(mqtt_record)) / sizeof(mqtt_sub_entry) ||
        text > SIZE_MAX - sizeof(mqtt_record) - n * sizeof(mqtt_sub_entry))
        return NULL;
    mqtt_record *r = mqtt__malloc(sizeof *r + n * sizeof(mqtt_sub_entry) + text);
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->entry_count = (uint16_t)n;
    r->kind = (uint8_t)kind;
    r->qos = qos;
    r->state = (uint8_t)mqtt__qos_initial(kind, qos);
    return r;
}

/* Copies b to *at and advances it; returns its length. */
static size_t put_bytes(uint8_t **at, mqtt_bytes b)
{
    if (b.data == NULL || b.len == 0)
        return 0;
    memcpy(*at, b.data, b.len);
    *at += b.len;
    return b.len;
}

/* Bytes b holds; an absent view holds none. */
static size_t bytes_len(mqtt_bytes b)
{
    return b.data == NULL ? 0 : b.len;
}

int mqtt__record_publish(mqtt_bytes topic, mqtt_bytes payload, uint8_t qos, bool retain,
                         mqtt_bytes props, mqtt_record **out)
{
    size_t tl = bytes_len(topic), pl = bytes_len(payload), xl = bytes_len(props);
    size_t size = mqtt__publish_size(tl, pl, qos); /* 0 past the limits of tl and pl */
    if (out == NULL || size == 0 || xl > UINT32_MAX - size)
        return MQTT_ERR_INVAL;
    mqtt_record *r = record_alloc(MQTT_REC_PUBLISH, qos, 0, tl + pl + xl);
    if (r == NULL)
        return MQTT_ERR_NOMEM;
    uint8_t *at = (uint8_t *)(r + 1);
    r->topic_len = (uint16_t)put_bytes(&at, topic);
    r->props_len = (uint32_t)put_bytes(&at, props);
    r->payload_len = (uint32_t)put_bytes(&at, payload);
    r->retain = retain;
    r->bytes = (uint32_t)(size + xl);
    *out = r;
    return MQTT_OK;
}

/* Size of the packet the entries make; 0 when it cannot exist. */
static size_t entries_size(mqtt_rec_kind kind, const mqtt_sub_entry *e, size_t n)
{
    if (n == 0 || n > UINT16_MAX || e == NULL)
        return 0;
    bool v5 = false; /* MQTT 5.0 subscription options beyond the QoS */
    for (size_t i = 0; kind == MQTT_REC_SUBSCRIBE && i < n; i++)
        v5 = v5 || e[i].qos > 2;
    const mqtt_sub_params p = {1, e, n, NULL, 0};
    if (v5)
        return mqtt__sub_size_v(MQTT_V5, MQTT_SUBSCRIBE, &p);
    if (kind == MQTT_REC_SUBSCRIBE)
        return mqtt__subscribe_size(e, n);
    return kind == MQTT_REC_UNSUBSCRIBE ? mqtt__unsubscribe_size(e, n) : 0;
}

int mqtt__record_subscribe(mqtt_rec_kind kind, const mqtt_sub_entry *e, size_t n,
                           mqtt_bytes props, mqtt_record **out)
{
    size_t size = entries_size(kind, e, n), xl = bytes_len(props);
    if (out == NULL || size == 0 || xl > UINT32_MAX - size)
        return MQTT_ERR_INVAL;
    size_t text = xl;
    for (size_t i = 0; i < n; i++)
        text += bytes_len(e[i].filter); /* each under 65536: size bounded their sum */
    mqtt_record *r = record_alloc(kind, 0, n, text);
    if (r == NULL)
        return MQTT_ERR_NOMEM;
    mqtt_sub_entry *entries = (mqtt_sub_entry *)(void *)(r + 1);
    uint8_t *at = (uint8_t *)(entries + n);
    r->props_len = (uint32_t)put_bytes(&at, props);
    for (size_t i = 0; i < n; i++) {
        entries[i] = e[i];
        entries[i].filter.data = at;
        entries[i].filter.len = put_bytes(&at, e[i].filter);
        entries[i].qos = kind == MQTT_REC_SUBSCRIBE ? e[i].qos : 0;
    }
    r->bytes = (uint32_t)(size + xl);
    *out = r;
    return MQTT_OK;
}

void mqtt__record_free(mqtt_record *r)
{
    mqtt__free(r);
}

static bool needs_id(const mqtt_record *r)
{
    return r->kind != MQTT_REC_PUBLISH || r->qos > 0;
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

/* r is written on this connection again, or no longer in flight. */
static void unrewind(mqtt_session *s, mqtt_record *r)
{
    if (r->rewound) {
        r->rewound = false;
        s->rewound--;
    }
}

/* Unlinks r, drops it from the id table and the counters, frees it. */
static void session_remove(mqtt_session *s, mqtt_record *r)
{
    unrewind(s, r);
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
    s->queued -= mqtt__qos_queued(r->state);
    s->inflight -= mqtt__qos_inflight(r->state);
    s->records--;
    s->bytes -= r->bytes;
    mqtt__record_free(r);
}

/* Puts r in the state the table chose, keeping the counters; NONE frees it. */
static void move_to(mqtt_session *s, mqtt_record *r, uint8_t next)
{
    if (next == MQTT_QS_NONE) {
        session_remove(s, r);
        return;
    }
    if (!mqtt__qos_inflight(next))
        unrewind(s, r);
    s->queued = s->queued - mqtt__qos_queued(r->state) + mqtt__qos_queued(next);
    s->inflight = s->inflight - mqtt__qos_inflight(r->state) + mqtt__qos_inflight(next);
    r->state = next;
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
    s->window = s->lim.max_inflight;
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

/* As made by mqtt__record_*: in the queued state its kind and QoS start in. */
static bool record_valid(const mqtt_record *r)
{
    if (r->kind > MQTT_REC_UNSUBSCRIBE || r->qos > 2 ||
        r->state != mqtt__qos_initial((mqtt_rec_kind)r->kind, r->qos))
        return false;
    if (r->kind == MQTT_REC_PUBLISH)
        return r->entry_count == 0;
    return r->entry_count > 0 && r->topic_len == 0 && r->payload_len == 0;
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

/* Gives r a packet id: a free one, or when every id is held the next one in
 * turn, r waiting behind the last record given it. False on NOMEM. */
static bool assign_id(mqtt_session *s, mqtt_record *r)
{
    uint16_t id;
    if (s->out.count >= MAX_IDS) {
        id = s->next_id;
        mqtt_record *h = idt_get(&s->out, id);
        while (h->id_next != NULL)
            h = h->id_next;
        h->id_next = r;
    } else {
        if (!idt_reserve(&s->out))
            return false;
        id = free_id(s);
        idt_place(&s->out, (id_slot){ r, id });
    }
    r->packet_id = id;
    s->next_id = id == MAX_IDS ? 1 : (uint16_t)(id + 1u);
    return true;
}

/* Appends r in session order, counted as a record with its bytes. */
static void append(mqtt_session *s, mqtt_record *r)
{
    r->next = NULL;
    r->prev = s->tail;
    if (s->tail != NULL)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    if (s->cursor == NULL)
        s->cursor = r; /* everything before was written: r is the first unwritten */
    s->records++;
    s->bytes += r->bytes;
}

int mqtt__session_add(mqtt_session *s, mqtt_record *r)
{
    if (s == NULL || r == NULL || !record_valid(r))
        return MQTT_ERR_INVAL;
    if (s->queued >= s->lim.max_queued || r->bytes > s->lim.max_queued_bytes - s->bytes)
        return MQTT_ERR_QUEUE_FULL;
    r->packet_id = 0;
    r->id_next = NULL;
    r->dup = false;
    r->rewound = false;
    if (needs_id(r) && !assign_id(s, r))
        return MQTT_ERR_NOMEM;
    append(s, r);
    s->queued++;
    return MQTT_OK;
}

/* A recovered record's state: its QoS's queued state or one awaiting an ack. */
static bool restorable(const mqtt_record *r)
{
    if (r->kind != MQTT_REC_PUBLISH || r->qos > 2 || r->entry_count != 0)
        return false;
    if (r->state == mqtt__qos_initial(MQTT_REC_PUBLISH, r->qos))
        return r->qos == 0 || r->packet_id != 0;
    if (r->packet_id == 0)
        return false;
    return r->qos == 1 ? r->state == MQTT_QS_WAIT_PUBACK
                       : r->qos == 2 && (r->state == MQTT_QS_WAIT_PUBREC ||
                                         r->state == MQTT_QS_WAIT_PUBCOMP);
}

int mqtt__session_restore(mqtt_session *s, mqtt_record *r)
{
    if (s == NULL || r == NULL || !restorable(r))
        return MQTT_ERR_INVAL;
    r->id_next = NULL;
    if (r->packet_id != 0) {
        mqtt_record *h = idt_get(&s->out, r->packet_id);
        if (h != NULL) { /* ids had run out: it waits behind the one holding it */
            while (h->id_next != NULL)
                h = h->id_next;
            h->id_next = r;
        } else if (idt_reserve(&s->out)) {
            idt_place(&s->out, (id_slot){ r, r->packet_id });
        } else {
            return MQTT_ERR_NOMEM;
        }
        s->next_id = r->packet_id == MAX_IDS ? 1 : (uint16_t)(r->packet_id + 1u);
    }
    mqtt_qos_step st = mqtt__qos_step((mqtt_qos_state)r->state, MQTT_QE_RECONNECT);
    r->dup = r->dup || st.action == MQTT_QA_MARK_DUP;
    append(s, r);
    s->queued += mqtt__qos_queued(r->state);
    s->inflight += mqtt__qos_inflight(r->state);
    r->rewound = mqtt__qos_inflight(r->state); /* written before this process, not since */
    s->rewound += r->rewound;
    return MQTT_OK;
}

/* ---- writing --------------------------------------------------------- */

const mqtt_record *mqtt__session_next(mqtt_session *s, mqtt_qos_action *action)
{
    if (s == NULL || action == NULL)
        return NULL;
    s->pending = NULL;
    mqtt_record *r = s->cursor;
    if (r == NULL)
        return NULL;
    mqtt_qos_step st = mqtt__qos_step((mqtt_qos_state)r->state, MQTT_QE_SEND);
    if (st.action == MQTT_QA_INVALID)
        return NULL;
    /* A publish written again after a reconnect (PUBLISH or PUBREL) takes
     * its place in the new connection's window like a new one: MQTT 5.0's
     * receive maximum may be smaller than the last connection's. */
    if (r->rewound && s->inflight - s->rewound >= s->window)
        return NULL;
    if (st.action == MQTT_QA_SEND) {
        /* Strict order: a publish held by the window holds everything behind it. */
        if (mqtt__qos_inflight(st.next) && s->inflight >= s->window)
            return NULL;
        /* A record sharing its id goes out once the records before it with that id are done. */
        if (r->packet_id != 0 && idt_get(&s->out, r->packet_id) != r)
            return NULL;
    }
    *action = (mqtt_qos_action)st.action;
    s->pending = r;
    return r;
}

void mqtt__session_sent(mqtt_session *s)
{
    if (s == NULL || s->pending == NULL || s->pending != s->cursor)
        return;
    mqtt_record *r = s->pending;
    s->pending = NULL;
    s->cursor = r->next;
    unrewind(s, r);
    move_to(s, r, mqtt__qos_step((mqtt_qos_state)r->state, MQTT_QE_SEND).next);
}

void mqtt__session_expire(mqtt_session *s)
{
    if (s == NULL || s->pending == NULL || s->pending != s->cursor)
        return;
    mqtt_record *r = s->pending;
    s->pending = NULL;
    s->cursor = r->next;
    move_to(s, r, MQTT_QS_NONE);
}

void mqtt__session_rewind(mqtt_session *s)
{
    if (s == NULL)
        return;
    /* Records from the cursor on were not written on this connection and
     * were told of any earlier loss already: only those before it change. */
    for (mqtt_record *r = s->head; r != NULL && r != s->cursor; r = r->next) {
        mqtt_qos_step st = mqtt__qos_step((mqtt_qos_state)r->state, MQTT_QE_RECONNECT);
        if (st.action == MQTT_QA_MARK_DUP)
            r->dup = true;
        move_to(s, r, st.next);
        if (mqtt__qos_inflight(r->state) && !r->rewound) {
            r->rewound = true;
            s->rewound++;
        }
    }
    s->cursor = s->head;
    s->pending = NULL;
}

/* ---- acks ------------------------------------------------------------ */

/* The table's event for an ack packet type; MQTT_QE_COUNT for any other. */
static mqtt_qos_event ack_event(uint8_t type)
{
    switch (type & 0xF0u) {
    case MQTT_PUBACK:
        return MQTT_QE_PUBACK;
    case MQTT_PUBREC:
        return MQTT_QE_PUBREC;
    case MQTT_PUBCOMP:
        return MQTT_QE_PUBCOMP;
    case MQTT_SUBACK:
        return MQTT_QE_SUBACK;
    case MQTT_UNSUBACK:
        return MQTT_QE_UNSUBACK;
    default:
        return MQTT_QE_COUNT;
    }
}

static mqtt_ack_result apply_ack(mqtt_session *s, mqtt_qos_event event, uint16_t id)
{
    if (s == NULL || id == 0)
        return MQTT_ACK_UNKNOWN;
    mqtt_record *r = idt_get(&s->out, id);
    if (r == NULL)
        return MQTT_ACK_UNKNOWN;
    mqtt_qos_step st = mqtt__qos_step((mqtt_qos_state)r->state, event);
    mqtt_ack_result res;
    switch (st.action) {
    case MQTT_QA_ACKED:
        res = MQTT_ACK_NEW;
        break;
    case MQTT_QA_DOWNGRADED:
        res = MQTT_ACK_DOWNGRADED;
        break;
    case MQTT_QA_DUPLICATE:
        res = MQTT_ACK_DUPLICATE;
        break;
    default:
        return MQTT_ACK_UNKNOWN;
    }
    move_to(s, r, st.next);
    return res;
}

mqtt_ack_result mqtt__session_ack(mqtt_session *s, uint8_t type, uint16_t id)
{
    return apply_ack(s, ack_event(type), id);
}

mqtt_ack_result mqtt__session_refused(mqtt_session *s, uint16_t id)
{
    return apply_ack(s, MQTT_QE_PUBREC_REFUSED, id);
}

void mqtt__session_set_window(mqtt_session *s, uint32_t n)
{
    s->window = n == 0 || n > s->lim.max_inflight ? s->lim.max_inflight : n;
}

/* ---- lookups ---------------------------------------------------------- */

const mqtt_record *mqtt__session_awaiting(const mqtt_session *s, uint16_t id)
{
    const mqtt_record *r = s == NULL ? NULL : idt_get(&s->out, id);
    return r != NULL && !mqtt__qos_queued(r->state) ? r : NULL;
}

bool mqtt__session_out_has(const mqtt_session *s, uint16_t id)
{
    return s != NULL && idt_get(&s->out, id) != NULL;
}

/* ---- incoming QoS 2 -------------------------------------------------- */

bool mqtt__session_in_has(const mqtt_session *s, uint16_t id)
{
    return s != NULL && idt_get(&s->in, id) != NULL;
}

int mqtt__session_in_put(mqtt_session *s, uint16_t id, void *item)
{
    if (s == NULL || item == NULL || id == 0)
        return MQTT_ERR_INVAL;
    uint32_t i = idt_find(&s->in, id);
    mqtt_qos_state state = i == UINT32_MAX ? MQTT_QS_NONE : slot_state(&s->in.slot[i]);
    mqtt_qos_step st = mqtt__qos_step(state, MQTT_QE_PUBLISH);
    if (st.action != MQTT_QA_STORE)
        return MQTT_ERR_INVAL; /* a resent PUBLISH: the id is held already */
    if (!idt_reserve(&s->in))
        return MQTT_ERR_NOMEM;
    uint64_t tag = s->in_seq++ << TAG_SEQ_SHIFT | (uint64_t)st.next << TAG_STATE_SHIFT | id;
    idt_place(&s->in, (id_slot){ item, tag });
    return MQTT_OK;
}

void *mqtt__session_in_take(mqtt_session *s, uint16_t id)
{
    uint32_t i = s == NULL ? UINT32_MAX : idt_find(&s->in, id);
    if (i == UINT32_MAX)
        return NULL; /* MQTT_QS_NONE: PUBCOMP, nothing to deliver */
    void *item = s->in.slot[i].p;
    mqtt_qos_step st = mqtt__qos_step(slot_state(&s->in.slot[i]), MQTT_QE_PUBREL);
    idt_remove_at(&s->in, i); /* every held state ends at PUBREL */
    return st.action == MQTT_QA_DELIVER ? item : NULL;
}

static int by_arrival(const void *a, const void *b)
{
    uint64_t x = ((const id_slot *)a)->tag >> TAG_SEQ_SHIFT;
    uint64_t y = ((const id_slot *)b)->tag >> TAG_SEQ_SHIFT;
    return (x > y) - (x < y);
}

/* Copies the slots of t whose item event hands over into out (which may be
 * t's own slots), in arrival order; returns how many. */
static uint32_t to_deliver(const id_table *t, id_slot *out, mqtt_qos_event event)
{
    uint32_t cap = t->bits ? 1u << t->bits : 0u, n = 0;
    for (uint32_t i = 0; i < cap; i++)
        if (t->slot[i].p != NULL &&
            mqtt__qos_step(slot_state(&t->slot[i]), event).action == MQTT_QA_DELIVER)
            out[n++] = t->slot[i];
    qsort(out, n, sizeof *out, by_arrival);
    return n;
}

int mqtt__session_in_replace(mqtt_session *s, void *mark, void (*fn)(void *item, void *ud),
                             void *ud)
{
    if (s == NULL || s->in.count == 0)
        return MQTT_OK;
    if (mark == NULL)
        return MQTT_ERR_INVAL;
    id_slot *order = mqtt__malloc((size_t)s->in.count * sizeof *order);
    if (order == NULL)
        return MQTT_ERR_NOMEM;
    uint32_t n = to_deliver(&s->in, order, MQTT_QE_RELEASE);
    for (uint32_t i = 0; i < n; i++) {
        id_slot *e = &s->in.slot[idt_find(&s->in, slot_id(&order[i]))];
        e->p = mark;
        slot_set_state(e, mqtt__qos_step(slot_state(e), MQTT_QE_RELEASE).next);
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
    /* Detach first so fn may call back into the session: every id is
     * forgotten (MQTT_QE_DROP), the items not handed over yet go to fn. */
    id_table t = s->in;
    s->in = (id_table){ NULL, 0, 0 };
    uint32_t n = to_deliver(&t, t.slot, MQTT_QE_DROP);
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
    c->rewound = s->rewound;
    c->records = s->records;
    c->bytes = s->bytes;
    c->incoming = s->in.count;
}
