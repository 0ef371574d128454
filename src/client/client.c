/*
 * The client's application-side API: create and destroy, will and
 * credentials, publish/subscribe/unsubscribe into the session, state and
 * counters. Each call validates first, then takes the one lock briefly and
 * wakes the I/O thread only when the outgoing buffer was empty.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "client_internal.h"
#include "send.h"

/* The process clients created now belong to; a child of fork() sets its own. */
pid_t mqtt__process_id;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void after_fork_in_child(void)
{
    mqtt__process_id = getpid();
}

static void watch_forks(void)
{
    mqtt__process_id = getpid();
    (void)pthread_atfork(NULL, NULL, after_fork_in_child);
}

long mqtt_client_owner(const mqtt_client *c)
{
    return (long)c->set.pid;
}

bool mqtt_client_foreign(const mqtt_client *c)
{
    return mqtt__foreign(c);
}

int mqtt_client_create(const mqtt_options *o, mqtt_client **out)
{
    pthread_once(&fork_once, watch_forks);
    mqtt__refusal_clear();
    mqtt_options opt;
    if (!out)
        return mqtt__refuse(MQTT_ERR_INVAL, "out: NULL");
    int rc = mqtt__options_read(&opt, o);
    if (rc != MQTT_OK)
        return rc;
    o = &opt;
    mqtt_client *c = mqtt__calloc(1, sizeof *c);
    if (!c)
        return MQTT_ERR_NOMEM;
    c->set.pid = mqtt__process_id;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->set.opt = *o;
    c->set.opt.client_id = NULL;
    c->set.opt.connect_props = NULL; /* borrowed for the call; none under 3.1.1 */
    c->set.opt.connect_prop_count = 0;
    c->set.notify_fd = -1;
    c->io.lost_reason = -1;
    mqtt_session_limits lim = {o->max_inflight, o->max_queued, o->max_queued_bytes};
    c->sh.session = mqtt__session_new(&lim);
    rc = c->sh.session ? MQTT_OK : MQTT_ERR_NOMEM;
    if (rc == MQTT_OK)
        rc = mqtt__buf_append(&c->set.client_id, o->client_id, o->client_id_len);
    if (rc == MQTT_OK)
        rc = mqtt__v5_props_block(&c->sh.connect_props, o->connect_props, o->connect_prop_count);
    if (rc == MQTT_OK)
        rc = mqtt__event_refill_spare(c);
    if (rc == MQTT_OK) {
        c->set.notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (c->set.notify_fd < 0)
            rc = mqtt__system_failure("eventfd", errno);
    }
    if (rc == MQTT_OK)
        rc = mqtt__persist_open(c, o);
    if (rc == MQTT_OK)
        rc = mqtt__loop_attach(&c->member, mqtt__client_service);
    if (rc != MQTT_OK) {
        mqtt_client_destroy(c);
        return rc;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->io.rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)c;
    c->sh.state = ST_IDLE;
    *out = c;
    return MQTT_OK;
}

static void free_event_item(void *item)
{
    mqtt_event_free(item); /* the session never hands over its mark */
}

/* A child of fork() owns copies of the descriptors and nothing else: the
 * lock may be held by a thread that does not exist here, and the socket
 * (and its TLS stream) is the parent's. Close the copies, leave the rest
 * (an open under way may hold more, the resolver's: close-on-exec). */
static void abandon_in_child(mqtt_client *c)
{
    bool in, out;
    int fds[] = {c->set.notify_fd, c->io.tr ? c->io.tr->fd : -1, mqtt__attempt_fd(c, &in, &out)};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

void mqtt_client_destroy(mqtt_client *c)
{
    if (!c)
        return;
    if (mqtt__foreign(c)) {
        abandon_in_child(c);
        return;
    }
    if (c->member.loop) {
        /* The loop lets go of the client before anything is freed: it
         * closes the connection, or the transport still opening. */
        pthread_mutex_lock(&c->mu);
        c->sh.stop = true;
        pthread_mutex_unlock(&c->mu);
        mqtt__loop_detach(&c->member);
        pthread_mutex_lock(&c->mu);
        mqtt__persist_finish(c);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    for (mqtt_event *ev = c->sh.ev_head, *next; ev; ev = next) {
        next = ev->next;
        mqtt_event_free(ev);
    }
    mqtt_event_free(c->sh.spare);
    mqtt__persist_close(c);
    if (c->sh.session)
        mqtt__session_free(c->sh.session, free_event_item);
    if (c->set.notify_fd >= 0)
        close(c->set.notify_fd);
    mqtt__v5_alias_reset(c);
    mqtt_buf *bufs[] = {&c->set.client_id,     &c->sh.will_topic,   &c->sh.will_payload,
                        &c->sh.username,       &c->sh.password,     &c->sh.out,
                        &c->io.in,             &c->sh.wbuf,         &c->sh.server_props,
                        &c->sh.connect_props,  &c->sh.will_props,   &c->sh.assigned_id,
                        &c->sh.disconnect_props};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        mqtt__buf_free(bufs[i]);
    mqtt__servers_free(&c->sh.srv);
    mqtt_tls_config_unref(c->sh.conn.tls);
    mqtt__tls_session_free(c->io.tls_session);
    mqtt__free(c);
}

static int set_buf(mqtt_buf *b, const void *p, size_t n)
{
    b->len = 0;
    return mqtt__buf_append(b, p, n);
}

int mqtt_client_set_will(mqtt_client *c, const mqtt_message *will)
{
    if (mqtt__foreign(c))
        return MQTT_ERR_STATE;
    mqtt__refusal_clear();
    int rc = will ? mqtt__check_message(will, c->set.opt.protocol, true) : MQTT_OK;
    if (rc != MQTT_OK)
        return rc;
    pthread_mutex_lock(&c->mu);
    c->sh.has_will = false;
    if (will) {
        rc = set_buf(&c->sh.will_topic, will->topic, will->topic_len);
        if (rc == MQTT_OK)
            rc = set_buf(&c->sh.will_payload, will->payload, will->payload_len);
        if (rc == MQTT_OK)
            rc = mqtt__v5_props_block(&c->sh.will_props, will->props, will->prop_count);
        c->sh.will_qos = (uint8_t)will->qos;
        c->sh.will_retain = will->retain;
        c->sh.has_will = rc == MQTT_OK;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int mqtt_client_set_credentials(mqtt_client *c, const char *username, size_t username_len,
                                const char *password, size_t password_len)
{
    if (mqtt__foreign(c))
        return MQTT_ERR_STATE;
    if (username_len > 65535 || password_len > 65535 ||
        (username && !mqtt__utf8_valid((const uint8_t *)username, username_len)))
        return MQTT_ERR_INVAL;
    pthread_mutex_lock(&c->mu);
    int rc = MQTT_OK;
    c->sh.has_username = c->sh.has_password = false;
    if (username) {
        rc = set_buf(&c->sh.username, username, username_len);
        c->sh.has_username = rc == MQTT_OK;
        if (rc == MQTT_OK && password) {
            rc = set_buf(&c->sh.password, password, password_len);
            c->sh.has_password = rc == MQTT_OK;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static bool first_queued(mqtt_client *c)
{
    mqtt_session_counts n;
    mqtt__session_counts(c->sh.session, &n);
    return n.queued <= 1;
}

/* Adds r to the session and, when connected, moves it towards the socket;
 * a message m (NULL for the others) is checked first against the broker's
 * announced limits, under the same lock. */
static int enqueue(mqtt_client *c, mqtt_record *r, uint16_t *mid, const mqtt_message *m,
                   size_t props_len)
{
    pthread_mutex_lock(&c->mu);
    mqtt_alias_pick pick = {0, true}; /* decided again at sending */
    int rc = m ? mqtt__v5_check_publish(c, m, props_len, &pick) : MQTT_OK;
    /* A broker that stops reading fills what the client owes it: no more then. */
    if (rc == MQTT_OK)
        rc = mqtt__owed_bytes(c) + r->bytes > c->set.opt.max_queued_bytes
                 ? MQTT_ERR_QUEUE_FULL
                 : mqtt__session_add(c->sh.session, r);
    bool wake = false, wait = false;
    uint64_t seq = 0;
    if (rc == MQTT_OK) {
        if (mid && r->packet_id)
            *mid = r->packet_id;
        bool store_idle = c->sh.store && mqtt__store_flush_due(c->sh.store, 0) < 0;
        seq = mqtt__persist_added(c, r);
        wait = mqtt__persist_must_wait(c, seq);
        /* With a store the I/O thread sends: only it writes the changes to
         * disk first. It is woken for the first change it has to write and
         * the first record it has to send; acks and its timer do the rest. */
        if (c->sh.store)
            wake = store_idle || seq == 0 || c->sh.store_sync == MQTT_SYNC_ALWAYS ||
                   first_queued(c);
        else if (c->sh.state == ST_CONNECTED)
            wake = mqtt__pump(c) != 0; /* on failure the I/O thread tries again */
    }
    pthread_mutex_unlock(&c->mu);
    if (rc != MQTT_OK)
        mqtt__record_free(r);
    if (wake)
        mqtt__wake(c);
    if (wait) {
        pthread_mutex_lock(&c->mu);
        rc = mqtt__persist_wait(c, seq);
        pthread_mutex_unlock(&c->mu);
    }
    return rc;
}

/* QoS 0 while connected with nothing queued ahead: encode straight into out.
 * *done says whether it was sent this way, *wake whether out was empty. */
static int publish_direct(mqtt_client *c, const mqtt_message *m, size_t size,
                          mqtt_alias_pick pick, bool *done, bool *wake)
{
    mqtt_session_counts counts;
    mqtt__session_counts(c->sh.session, &counts);
    if (c->sh.state != ST_CONNECTED || counts.queued)
        return MQTT_OK;
    if (mqtt__owed_bytes(c) + size > c->set.opt.max_queued_bytes)
        return MQTT_ERR_QUEUE_FULL;
    *wake = c->sh.out.len == 0;
    if (c->sh.version == MQTT_V5) {
        int rc = mqtt__send_message_v5(&c->sh.out, c, m, pick);
        *done = rc == MQTT_OK;
        return rc;
    }
    int rc = mqtt__buf_reserve(&c->sh.out, size);
    if (rc != MQTT_OK)
        return rc;
    c->sh.out.len += mqtt__encode_publish(c->sh.out.data + c->sh.out.len, (const uint8_t *)m->topic,
                                       m->topic_len, m->payload, m->payload_len, 0, m->retain,
                                       false, 0);
    *done = true;
    return MQTT_OK;
}

/* The record's property block: the caller's, with message_expiry_interval
 * turned into a deadline on the wall clock (send.c turns it back). */
static int publish_props(const mqtt_message *m, mqtt_buf *block)
{
    uint32_t interval = 0;
    size_t at = 0;
    for (size_t i = 0; i < m->prop_count; i++)
        if (m->props[i].id == MQTT_PROP_MESSAGE_EXPIRY_INTERVAL) {
            interval = m->props[i].value;
            at = i + 1;
        }
    if (!at)
        return mqtt__v5_props_block(block, m->props, m->prop_count);
    mqtt_property *p = mqtt__calloc(m->prop_count, sizeof *p);
    if (!p)
        return MQTT_ERR_NOMEM;
    memcpy(p, m->props, m->prop_count * sizeof *p);
    double deadline = mqtt__wall_now() + interval;
    p[at - 1].value = deadline >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)deadline;
    int rc = mqtt__v5_props_block(block, p, m->prop_count);
    mqtt__free(p);
    return rc;
}

int mqtt_client_publish(mqtt_client *c, const mqtt_message *m, uint16_t *mid)
{
    if (mqtt__foreign(c))
        return MQTT_ERR_STATE;
    mqtt__refusal_clear();
    int rc = mqtt__check_message(m, c->set.opt.protocol, false);
    if (rc != MQTT_OK)
        return rc;
    size_t size = mqtt__publish_size(m->topic_len, m->payload_len, (uint8_t)m->qos);
    if (size == 0)
        return mqtt__refuse(MQTT_ERR_INVAL, "message: too large for one packet");
    uint16_t scratch_mid;
    if (!mid)
        mid = &scratch_mid;
    /* Under 5.0 the broker's limits are checked where the message is queued. */
    const mqtt_message *v5 = c->set.opt.protocol != MQTT_V311 ? m : NULL;
    size_t props_len = v5 ? mqtt__v5_props_len(m) : 0;
    if (m->qos == 0) {
        bool done = false, wake = false;
        mqtt_alias_pick pick = {0, true};
        pthread_mutex_lock(&c->mu);
        rc = v5 ? mqtt__v5_check_publish(c, m, props_len, &pick) : MQTT_OK;
        if (rc == MQTT_OK) {
            *mid = mqtt__session_take_id(c->sh.session);
            rc = publish_direct(c, m, size + props_len, pick, &done, &wake);
        }
        pthread_mutex_unlock(&c->mu);
        if (wake)
            mqtt__wake(c);
        if (done || rc != MQTT_OK)
            return rc;
    }
    mqtt_bytes t = {(const uint8_t *)m->topic, m->topic_len}, p = {m->payload, m->payload_len};
    mqtt_buf props = {0};
    mqtt_record *r;
    rc = publish_props(m, &props);
    if (rc == MQTT_OK)
        rc = mqtt__record_publish(t, p, (uint8_t)m->qos, m->retain,
                                  (mqtt_bytes){props.data, props.len}, &r);
    mqtt__buf_free(&props);
    return rc == MQTT_OK ? enqueue(c, r, mid, v5, props_len) : rc;
}

/* The broker's announced limits, against the packet the record makes. */
static int check_subscribe_v5(mqtt_client *c, const mqtt_subscription *subs, const mqtt_record *r,
                              const mqtt_property *props, size_t prop_count)
{
    uint8_t type = r->kind == MQTT_REC_SUBSCRIBE ? MQTT_SUBSCRIBE : MQTT_UNSUBSCRIBE;
    mqtt_sub_params sp = {1, mqtt__record_entries(r), r->entry_count, props, prop_count};
    size_t size = mqtt__sub_size_v(MQTT_V5, type, &sp);
    uint32_t id_value;
    bool ids = mqtt__props_value(props, prop_count, MQTT_PROP_SUBSCRIPTION_IDENTIFIER, &id_value);
    pthread_mutex_lock(&c->mu);
    int rc = mqtt__v5_check_subscribe(c, subs, r->entry_count, type == MQTT_UNSUBSCRIBE, ids, size);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static int subscribe_common(mqtt_client *c, const mqtt_subscription *subs, size_t n,
                            const mqtt_property *props, size_t prop_count, uint16_t *mid,
                            bool unsub)
{
    if (mqtt__foreign(c))
        return MQTT_ERR_STATE;
    mqtt__refusal_clear();
    if (!subs || n == 0 || n > 65535)
        return mqtt__refuse(MQTT_ERR_INVAL, "subscriptions: need 1 to 65535 entries");
    int rc = mqtt__check_props(props, prop_count, unsub ? MQTT_UNSUBSCRIBE : MQTT_SUBSCRIBE,
                               c->set.opt.protocol);
    if (rc != MQTT_OK)
        return rc;
    mqtt_sub_entry stack[16] = {0}; /* all set below; zeroed for the compiler */
    mqtt_sub_entry *e = n <= 16 ? stack : mqtt__calloc(n, sizeof *e);
    if (!e)
        return MQTT_ERR_NOMEM;
    rc = mqtt__check_subscriptions(subs, n, unsub, c->set.opt.protocol, e);
    mqtt_record *r = NULL;
    mqtt_buf block = {0};
    if (rc == MQTT_OK)
        rc = mqtt__v5_props_block(&block, props, prop_count);
    if (rc == MQTT_OK)
        rc = mqtt__record_subscribe(unsub ? MQTT_REC_UNSUBSCRIBE : MQTT_REC_SUBSCRIBE, e, n,
                                    (mqtt_bytes){block.data, block.len}, &r);
    if (rc == MQTT_OK && c->set.opt.protocol != MQTT_V311)
        rc = check_subscribe_v5(c, subs, r, props, prop_count);
    mqtt__buf_free(&block);
    if (e != stack)
        mqtt__free(e);
    if (rc != MQTT_OK)
        mqtt__record_free(r);
    return rc == MQTT_OK ? enqueue(c, r, mid, NULL, 0) : rc;
}

int mqtt_client_subscribe(mqtt_client *c, const mqtt_subscription *subs, size_t n,
                          const mqtt_property *props, size_t prop_count, uint16_t *mid)
{
    return subscribe_common(c, subs, n, props, prop_count, mid, false);
}

int mqtt_client_unsubscribe(mqtt_client *c, const mqtt_subscription *subs, size_t n,
                            const mqtt_property *props, size_t prop_count, uint16_t *mid)
{
    return subscribe_common(c, subs, n, props, prop_count, mid, true);
}

bool mqtt_client_is_connected(mqtt_client *c)
{
    if (mqtt__foreign(c))
        return false;
    pthread_mutex_lock(&c->mu);
    bool on = c->sh.state == ST_CONNECTED;
    pthread_mutex_unlock(&c->mu);
    return on;
}

const char *mqtt_client_state(mqtt_client *c)
{
    static const char *const names[] = {"disconnected", "connecting",   "connected",
                                        "reconnecting", "reconnecting", "disconnecting"};
    if (mqtt__foreign(c))
        return "disconnected";
    pthread_mutex_lock(&c->mu);
    const char *s = names[c->sh.state];
    pthread_mutex_unlock(&c->mu);
    return s;
}

bool mqtt_client_pending(mqtt_client *c, uint16_t mid)
{
    if (mqtt__foreign(c))
        return false;
    pthread_mutex_lock(&c->mu);
    bool pending = mqtt__session_out_has(c->sh.session, mid);
    /* An ack applied to the session whose event waits for its batch's
     * replies to be written: still pending until that event is queued. */
    for (const mqtt_event *ev = c->sh.st_head; ev && !pending; ev = ev->next)
        pending = ev->mid == mid && !ev->has_message && ev->type != MQTT_EV_PUBLISH;
    pthread_mutex_unlock(&c->mu);
    return pending;
}

void mqtt_client_want_pingresp(mqtt_client *c, bool on)
{
    if (mqtt__foreign(c))
        return;
    pthread_mutex_lock(&c->mu);
    c->sh.pingresp_events = on;
    pthread_mutex_unlock(&c->mu);
}

int mqtt_client_event_fd(mqtt_client *c)
{
    return c->set.notify_fd;
}

static void fill_stats(mqtt_client *c, mqtt_stats *st)
{
    mqtt_session_counts n;
    pthread_mutex_lock(&c->mu);
    mqtt__session_counts(c->sh.session, &n);
    st->queued = n.queued;
    st->inflight = n.inflight;
    st->queued_bytes = n.bytes + mqtt__owed_bytes(c);
    st->event_bytes = mqtt__app_bytes(c);
    st->held_bytes = c->sh.held_bytes;
    st->reconnects = c->sh.reconnects;
    st->read_pauses = c->sh.read_pauses;
    st->downgraded = c->sh.downgraded;
    st->connect_failures = c->sh.connect_failures;
    st->logs_dropped = c->sh.logs_dropped;
    st->expired = c->sh.expired;
    st->store_corruptions = c->sh.store_corruptions;
    pthread_mutex_unlock(&c->mu);
}

int mqtt_set_io_threads(unsigned n)
{
    return mqtt__loop_set_threads(n);
}

void mqtt_io_stats_get(mqtt_io_stats *st)
{
    mqtt_loop_stats ls;
    mqtt__loop_stats(&ls);
    st->threads = ls.threads;
    st->clients = ls.members;
    st->wakeups = ls.wakeups;
    st->services = ls.services;
}

void mqtt_client_stats_v(mqtt_client *c, mqtt_stats *out, size_t size)
{
    mqtt_stats st;
    memset(&st, 0, sizeof st);
    if (!out)
        return;
    if (!mqtt__foreign(c))
        fill_stats(c, &st);
    memset(out, 0, size); /* counters a newer header has and this library not */
    memcpy(out, &st, size < sizeof st ? size : sizeof st);
}
