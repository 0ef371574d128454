/*
 * The client's side of the store (src/store): what is recovered at create
 * goes back into the session, each change of an outgoing message or of an
 * incoming QoS 2 message is appended as it happens (memory only, under the
 * client's lock), and the I/O thread writes the changes to disk with the
 * lock let go during the write and fsync, before any byte they cover goes
 * to the broker. Publishers under sync "always" wait for their change's
 * group commit; the others never wait.
 */
#include <string.h>

#include "alloc.h"
#include "client_internal.h"

/* The store's key of each stored outgoing record, by the record's address
 * (the record itself stays small): open addressing, linear probing,
 * deletion by shifting back. */
typedef struct key_slot {
    const mqtt_record *r; /* NULL: empty */
    uint64_t key;
    uint64_t seq; /* the change that added it: durable before its first write */
} key_slot;

struct mqtt_key_map {
    key_slot *slot;
    size_t cap, count; /* cap a power of two, or 0 */
};

static size_t home(const mqtt_key_map *m, const mqtt_record *r)
{
    uint64_t h = (uint64_t)(uintptr_t)r * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (m->cap - 1);
}

static size_t find(const mqtt_key_map *m, const mqtt_record *r)
{
    if (m->cap == 0)
        return SIZE_MAX;
    for (size_t i = home(m, r);; i = (i + 1) & (m->cap - 1)) {
        if (m->slot[i].r == r)
            return i;
        if (m->slot[i].r == NULL)
            return SIZE_MAX;
    }
}

static void place(mqtt_key_map *m, key_slot e)
{
    size_t i = home(m, e.r);
    while (m->slot[i].r != NULL)
        i = (i + 1) & (m->cap - 1);
    m->slot[i] = e;
    m->count++;
}

static int map_put(mqtt_key_map *m, const mqtt_record *r, uint64_t key, uint64_t seq)
{
    if ((m->count + 1) * 4 > m->cap * 3) { /* at most three quarters full */
        size_t cap = m->cap ? m->cap * 2 : 64;
        key_slot *old = m->slot;
        size_t old_cap = m->cap;
        m->slot = mqtt__calloc(cap, sizeof *m->slot);
        if (!m->slot) {
            m->slot = old;
            return MQTT_ERR_NOMEM;
        }
        m->cap = cap;
        m->count = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].r)
                place(m, old[i]);
        mqtt__free(old);
    }
    place(m, (key_slot){r, key, seq});
    return MQTT_OK;
}

static void map_remove(mqtt_key_map *m, const mqtt_record *r)
{
    size_t hole = find(m, r);
    if (hole == SIZE_MAX)
        return;
    m->slot[hole].r = NULL;
    m->count--;
    for (size_t i = (hole + 1) & (m->cap - 1); m->slot[i].r; i = (i + 1) & (m->cap - 1)) {
        size_t h = home(m, m->slot[i].r);
        /* Moves back unless its home lies cyclically in (hole, i]. */
        if ((i > hole && (h <= hole || h > i)) || (i < hole && h <= hole && h > i)) {
            m->slot[hole] = m->slot[i];
            m->slot[i].r = NULL;
            hole = i;
        }
    }
}

uint64_t mqtt__persist_key(const mqtt_client *c, const mqtt_record *r)
{
    if (!c->sh.store || !c->sh.store_keys || !r)
        return 0;
    size_t i = find(c->sh.store_keys, r);
    return i == SIZE_MAX ? 0 : c->sh.store_keys->slot[i].key;
}

/* Output about to carry what the changes up to seq say: they reach the disk first. */
static void need(mqtt_client *c, uint64_t seq)
{
    if (seq > c->sh.store_need)
        c->sh.store_need = seq;
}

uint64_t mqtt__persist_sending(mqtt_client *c, const mqtt_record *r)
{
    if (!c->sh.store || !c->sh.store_keys)
        return 0;
    size_t i = find(c->sh.store_keys, r);
    if (i == SIZE_MAX)
        return 0;
    need(c, c->sh.store_keys->slot[i].seq);
    return c->sh.store_keys->slot[i].key;
}

void mqtt__persist_forget(mqtt_client *c, const mqtt_record *r)
{
    if (c->sh.store_keys)
        map_remove(c->sh.store_keys, r);
}

static uint64_t now_ms(void)
{
    return (uint64_t)(mqtt__now() * 1000.0);
}

/* A changes' failure leaves the message in memory only: say so once per kind. */
static void store_failed(mqtt_client *c, int rc, const char *what)
{
    if (rc != MQTT_OK)
        mqtt__log(c, 3, "store: %s not kept on disk: %s", what, mqtt_strerror(rc));
}

/* An incoming QoS 2 message awaiting its PUBREL, as before the crash. */
static int restore_incoming(mqtt_client *c, mqtt_record *r)
{
    if (r->state == MQTT_QS_IN_RELEASED)
        return mqtt__session_in_put(c->sh.session, r->packet_id, &mqtt__delivered_mark);
    mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = MQTT_PUBLISH;
    p.qos = 2;
    p.packet_id = r->packet_id;
    p.retain = r->retain;
    p.topic = mqtt__record_topic(r);
    p.payload = mqtt__record_payload(r);
    p.props = mqtt__record_props(r);
    p.version = c->set.opt.protocol == MQTT_V311 ? MQTT_V311 : MQTT_V5;
    mqtt_event *ev = mqtt__event_message(MQTT_EV_PUBREL, &p);
    if (!ev || mqtt__session_in_put(c->sh.session, r->packet_id, ev) != MQTT_OK) {
        mqtt_event_free(ev);
        return MQTT_ERR_NOMEM;
    }
    c->sh.held_bytes += ev->bytes;
    return MQTT_OK;
}

static int restore_all(mqtt_client *c)
{
    for (;;) {
        mqtt_store_item it;
        int rc = mqtt__store_next(c->sh.store, &it);
        if (rc != MQTT_OK || it.rec == NULL)
            return rc;
        if (it.incoming) {
            rc = restore_incoming(c, it.rec);
            mqtt__record_free(it.rec);
        } else {
            rc = map_put(c->sh.store_keys, it.rec, it.key, 0);
            if (rc == MQTT_OK)
                rc = mqtt__session_restore(c->sh.session, it.rec);
            if (rc != MQTT_OK) {
                map_remove(c->sh.store_keys, it.rec);
                mqtt__record_free(it.rec);
            }
            if (rc == MQTT_ERR_INVAL) { /* a record no session can hold: skipped, not fatal */
                mqtt__log(c, 3, "store: a message in an impossible state was skipped");
                c->sh.store_corruptions++;
                rc = MQTT_OK;
            }
        }
        if (rc != MQTT_OK)
            return rc;
    }
}

int mqtt__persist_open(mqtt_client *c, const mqtt_options *o)
{
    if (!o->store)
        return MQTT_OK;
    if (o->client_id_len == 0)
        return mqtt__refuse(MQTT_ERR_INVAL, "store: needs a client id");
    c->sh.store_keys = mqtt__calloc(1, sizeof *c->sh.store_keys);
    if (!c->sh.store_keys)
        return MQTT_ERR_NOMEM;
    char err[256] = "";
    mqtt_store_report rep;
    mqtt_bytes id = {(const uint8_t *)o->client_id, o->client_id_len};
    int rc = mqtt__store_open(o->store, id, (mqtt_store_sync)o->store_sync, &c->sh.store, &rep,
                              err, sizeof err);
    if (rc != MQTT_OK)
        return err[0] ? mqtt__refuse(rc, "%s", err) : rc;
    c->sh.store_sync = o->store_sync;
    c->sh.store_corruptions = rep.corruptions;
    if (rep.corruptions)
        mqtt__log(c, 3,
                  "store: a damaged tail was cut off (%llu bytes at offset %llu); "
                  "%zu outgoing and %zu incoming messages recovered",
                  (unsigned long long)rep.cut_bytes, (unsigned long long)rep.cut_offset,
                  rep.outgoing, rep.incoming);
    else if (rep.outgoing || rep.incoming)
        mqtt__log(c, 1, "store: %zu outgoing and %zu incoming messages recovered", rep.outgoing,
                  rep.incoming);
    return restore_all(c);
}

void mqtt__persist_close(mqtt_client *c)
{
    /* What close cannot write stays lost as in a crash: the log before it is whole. */
    if (c->sh.store)
        (void)mqtt__store_close(c->sh.store);
    c->sh.store = NULL;
    if (c->sh.store_keys)
        mqtt__free(c->sh.store_keys->slot);
    mqtt__free(c->sh.store_keys);
    c->sh.store_keys = NULL;
}

uint64_t mqtt__persist_added(mqtt_client *c, mqtt_record *r)
{
    if (!c->sh.store || r->kind != MQTT_REC_PUBLISH)
        return 0;
    uint64_t key = 0;
    int rc = mqtt__store_out_add(c->sh.store, r, &key);
    if (rc == MQTT_OK && map_put(c->sh.store_keys, r, key, mqtt__store_last(c->sh.store)) != MQTT_OK) {
        (void)mqtt__store_out_remove(c->sh.store, key);
        rc = MQTT_ERR_NOMEM;
    }
    store_failed(c, rc, "a publish");
    return rc == MQTT_OK ? mqtt__store_last(c->sh.store) : 0;
}

void mqtt__persist_sent(mqtt_client *c, uint64_t key, const mqtt_record *r, bool first)
{
    if (!c->sh.store || key == 0)
        return;
    int rc = r ? mqtt__store_out_update(c->sh.store, key, r) : mqtt__store_out_remove(c->sh.store, key);
    store_failed(c, rc, "a publish's state");
    if (first)
        need(c, mqtt__store_last(c->sh.store));
}

void mqtt__persist_in(mqtt_client *c, uint8_t what, const mqtt_packet *p)
{
    if (!c->sh.store)
        return;
    int rc;
    if (what == MQTT_PUBLISH)
        rc = mqtt__store_in_add(c->sh.store, p->packet_id, p->topic, p->payload, p->retain,
                                p->props);
    else if (what == MQTT_PUBREL)
        rc = mqtt__store_in_remove(c->sh.store, p->packet_id);
    else
        rc = mqtt__store_in_release(c->sh.store, p->packet_id);
    store_failed(c, rc, "an incoming QoS 2 message's state");
    need(c, mqtt__store_last(c->sh.store));
}

void mqtt__persist_in_forget_all(mqtt_client *c)
{
    if (!c->sh.store)
        return;
    for (uint32_t id = 1; id <= 65535; id++)
        if (mqtt__session_in_has(c->sh.session, (uint16_t)id))
            (void)mqtt__store_in_remove(c->sh.store, (uint16_t)id);
}

/* Compaction, its copy and fsync without the lock. */
static void compact(mqtt_client *c)
{
    mqtt_store_compaction k;
    if (!mqtt__store_compact_due(c->sh.store) ||
        mqtt__store_compact_begin(c->sh.store, &k) != MQTT_OK)
        return;
    pthread_mutex_unlock(&c->mu);
    mqtt__store_compact_run(&k);
    pthread_mutex_lock(&c->mu);
    if (mqtt__store_compact_end(c->sh.store, &k) != MQTT_OK)
        mqtt__log(c, 3, "store: compaction failed; the log stays as it was");
}

void mqtt__persist_flush(mqtt_client *c)
{
    mqtt_store_flush f;
    if (!c->sh.store || !mqtt__store_flush_begin(c->sh.store, &f))
        return;
    pthread_mutex_unlock(&c->mu);
    mqtt__store_flush_write(&f);
    pthread_mutex_lock(&c->mu);
    int rc = mqtt__store_flush_end(c->sh.store, &f, now_ms());
    c->sh.store_error = rc != MQTT_OK;
    if (rc != MQTT_OK)
        mqtt__log(c, 4, "store: writing failed (errno %d); trying again", f.err);
    pthread_cond_broadcast(&c->cv); /* publishers waiting for their group */
    compact(c);
}

bool mqtt__persist_settle(mqtt_client *c)
{
    if (!c->sh.store || mqtt__store_durable(c->sh.store) >= c->sh.store_need)
        return true;
    mqtt__persist_flush(c);
    return mqtt__store_durable(c->sh.store) >= c->sh.store_need;
}

double mqtt__persist_tend(mqtt_client *c)
{
    if (!c->sh.store)
        return -1;
    int64_t due = mqtt__store_flush_due(c->sh.store, now_ms());
    if (due == 0) {
        mqtt__persist_flush(c);
        due = mqtt__store_flush_due(c->sh.store, now_ms());
    }
    return due < 0 ? -1 : mqtt__now() + (double)due / 1000.0;
}

bool mqtt__persist_must_wait(mqtt_client *c, uint64_t seq)
{
    if (!c->sh.store || c->sh.store_sync != MQTT_SYNC_ALWAYS || seq == 0)
        return false;
    c->sh.store_waiters++;
    return true;
}

int mqtt__persist_wait(mqtt_client *c, uint64_t seq)
{
    while (mqtt__store_durable(c->sh.store) < seq && !c->sh.store_error && !c->sh.store_closing)
        pthread_cond_wait(&c->cv, &c->mu);
    int rc = mqtt__store_durable(c->sh.store) >= seq ? MQTT_OK : MQTT_ERR_SYSTEM;
    if (--c->sh.store_waiters == 0 && c->sh.store_closing)
        pthread_cond_broadcast(&c->cv); /* destroy waits for the last one */
    return rc;
}

void mqtt__persist_finish(mqtt_client *c)
{
    if (!c->sh.store)
        return;
    /* A group the disk refused first, then what is pending: two at most. */
    for (int i = 0; i < 2 && mqtt__store_durable(c->sh.store) < mqtt__store_last(c->sh.store);
         i++)
        mqtt__persist_flush(c);
    c->sh.store_closing = true;
    pthread_cond_broadcast(&c->cv);
    while (c->sh.store_waiters > 0)
        pthread_cond_wait(&c->cv, &c->mu);
}

int mqtt_store_clear(const char *dir, const char *client_id, size_t client_id_len)
{
    mqtt__refusal_clear();
    if (!dir || !dir[0] || (!client_id && client_id_len))
        return mqtt__refuse(MQTT_ERR_INVAL, "store_clear: needs a directory and a client id");
    char err[256] = "";
    int rc = mqtt__store_clear(dir, (mqtt_bytes){(const uint8_t *)client_id, client_id_len}, err,
                               sizeof err);
    return rc != MQTT_OK && err[0] ? mqtt__refuse(rc, "%s", err) : rc;
}
