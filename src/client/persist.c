/*
 * The client's side of the store (src/store): what is recovered at create
 * goes back into the session, each change of an outgoing message or of an
 * incoming QoS 2 message is appended as it happens (memory only, under the
 * client's lock), and the I/O thread writes the changes to disk with the
 * lock let go during the write and fsync, before any byte they cover goes
 * to the broker. Publishers under sync "always" wait for their change's
 * group commit; the others never wait.
 */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "client_internal.h"

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
            it.rec->store_key = it.key;
            rc = mqtt__session_restore(c->sh.session, it.rec);
            if (rc != MQTT_OK)
                mqtt__record_free(it.rec);
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
    if (c->sh.store && mqtt__store_close(c->sh.store) != MQTT_OK)
        fprintf(stderr, "zmqtt: store: the last changes could not be written\n");
    c->sh.store = NULL;
}

uint64_t mqtt__persist_added(mqtt_client *c, mqtt_record *r)
{
    if (!c->sh.store || r->kind != MQTT_REC_PUBLISH)
        return 0;
    store_failed(c, mqtt__store_out_add(c->sh.store, r, &r->store_key), "a publish");
    return mqtt__store_last(c->sh.store);
}

void mqtt__persist_sent(mqtt_client *c, uint64_t key, const mqtt_record *r)
{
    if (!c->sh.store || key == 0)
        return;
    int rc = r ? mqtt__store_out_update(c->sh.store, key, r) : mqtt__store_out_remove(c->sh.store, key);
    store_failed(c, rc, "a publish's state");
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
        mqtt__log(c, 4, "store: writing failed (%s); trying again", strerror(f.err));
    pthread_cond_broadcast(&c->cv); /* publishers waiting for their group */
    compact(c);
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

int mqtt__persist_wait(mqtt_client *c, uint64_t seq)
{
    if (!c->sh.store || c->sh.store_sync != MQTT_SYNC_ALWAYS || seq == 0)
        return MQTT_OK;
    while (mqtt__store_durable(c->sh.store) < seq && !c->sh.store_error && !c->sh.stop)
        pthread_cond_wait(&c->cv, &c->mu);
    return mqtt__store_durable(c->sh.store) >= seq ? MQTT_OK : MQTT_ERR_SYSTEM;
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
