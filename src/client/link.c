/*
 * The connection's life on the I/O loop: an attempt (open on a worker, then
 * CONNECT and CONNACK on the loop, within connect_timeout, cancelled by a
 * request), the connection's loss, the back-off before the next attempt.
 * Outcomes reach a blocking connect() through the condition variable and
 * everyone else through events. Loop thread, client lock held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "client_internal.h"
#include "opener.h"

/* What one attempt needs, taken under the lock when it starts. */
struct attempt {
    mqtt_open_job job; /* first: the job's done callback finds the attempt */
    mqtt_client *c;
    char *host;
    int ka[3];
    uint64_t seq;
    bool async;      /* no caller blocks on the outcome */
    bool background; /* an automatic attempt: no connect() or connect_async() call waits */
    bool opened;     /* the worker is done with job (under mu) */
    uint8_t *connect_pkt;
    size_t connect_len;
    mqtt_event *connack; /* made up front: success is never left unreported */
};

static double backoff(mqtt_client *c)
{
    double d = c->opt.reconnect_min;
    for (unsigned i = 0; i < c->retry_attempt && d < c->opt.reconnect_max; i++)
        d *= 2;
    if (d > c->opt.reconnect_max)
        d = c->opt.reconnect_max;
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    double unit = (double)(c->rng >> 11) / 9007199254740992.0;
    c->retry_attempt++;
    return d / 2 + unit * d / 2;
}

void mqtt__schedule_retry(mqtt_client *c, double delay)
{
    c->state = ST_RETRY_WAIT;
    c->retry_at = mqtt__now() + delay;
}

static bool may_retry(const mqtt_client *c)
{
    return c->auto_reconnect && c->opt.reconnect && !c->user_disconnected && !c->stop;
}

/* What one connection leaves behind goes; so do the buffers: a client
 * without a connection holds none. */
static void clear_io(mqtt_client *c)
{
    if (c->tr) {
        mqtt__loop_watch(&c->member, -1, false, false); /* before the fd closes */
        c->tr->ops->close(c->tr);
        c->tr = NULL;
    }
    mqtt__buf_free(&c->in);
    mqtt__buf_free(&c->out);
    mqtt__buf_free(&c->wbuf);
    c->wpos = 0;
    c->in_backlog = false;
    c->partial_since = 0;
    c->ping_outstanding = false;
}

/* Back-off starts over only after a connection that lasted: a broker that
 * accepts and drops at once sees the delays grow like any other failure. */
static void note_connection_end(mqtt_client *c)
{
    if (c->connected_at > 0 && mqtt__now() - c->connected_at >= 10 * c->opt.reconnect_min)
        c->retry_attempt = 0;
    c->connected_at = 0;
}

void mqtt__connection_lost(mqtt_client *c, int status, const char *text)
{
    bool was_disconnecting = c->state == ST_DISCONNECTING;
    note_connection_end(c);
    clear_io(c);
    if (!was_disconnecting) {
        mqtt__log(c, 2, "connection lost: %s", text);
        mqtt__event_status(c, MQTT_EV_DISCONNECT, status, -1, false, text);
    } else {
        mqtt__event_status(c, MQTT_EV_DISCONNECT, MQTT_OK, -1, false, "disconnected");
    }
    if (!was_disconnecting && may_retry(c))
        mqtt__schedule_retry(c, backoff(c));
    else
        c->state = ST_IDLE;
}

/* ---- one attempt ----------------------------------------------------- */

static void attempt_free(attempt *a)
{
    if (!a)
        return;
    if (a->job.tr)
        a->job.tr->ops->close(a->job.tr);
    mqtt__free(a->host);
    mqtt__free(a->connect_pkt);
    mqtt_event_free(a->connack);
    mqtt_tls_config_unref(a->job.tls);
    mqtt__free(a);
}

/* The worker's question, between the steps of its open. */
static bool attempt_cancelled(void *owner)
{
    mqtt_client *c = owner;
    pthread_mutex_lock(&c->mu);
    bool stop = c->stop || c->request != REQ_NONE;
    pthread_mutex_unlock(&c->mu);
    return stop;
}

/* The worker is done: the loop takes it from here. Worker thread. */
static void attempt_opened(mqtt_open_job *j)
{
    attempt *a = (attempt *)(void *)j;
    mqtt_client *c = a->c;
    pthread_mutex_lock(&c->mu);
    a->opened = true;
    pthread_mutex_unlock(&c->mu);
    mqtt__wake(c);
}

static mqtt_bytes view(const mqtt_buf *b)
{
    mqtt_bytes v = {b->data ? b->data : (const uint8_t *)"", b->len};
    return v;
}

static void connect_params(const mqtt_client *c, mqtt_connect_params *p)
{
    memset(p, 0, sizeof *p);
    p->client_id = view(&c->client_id);
    p->keepalive = c->conn.keepalive;
    p->clean_session = c->opt.clean_session;
    if (c->has_will) {
        p->will = true;
        p->will_topic = view(&c->will_topic);
        p->will_payload = view(&c->will_payload);
        p->will_qos = c->will_qos;
        p->will_retain = c->will_retain;
    }
    if (c->has_username)
        p->username = view(&c->username);
    if (c->has_username && c->has_password)
        p->password = view(&c->password);
}

static int snapshot(mqtt_client *c, attempt *a)
{
    mqtt_connect_params p;
    connect_params(c, &p);
    /* Who to report to comes first: a failed allocation is reported too. */
    a->c = c;
    a->seq = c->connect_seq;
    a->background = c->result_seq >= c->connect_seq;
    a->async = c->async_attempt || a->background;
    a->connect_len = mqtt__connect_size(&p);
    a->connect_pkt = a->connect_len ? mqtt__malloc(a->connect_len) : NULL;
    a->host = mqtt__strdup(c->host);
    a->connack = mqtt__event_new(MQTT_EV_CONNACK, 0);
    if (!a->connect_pkt || !a->host || !a->connack)
        return MQTT_ERR_NOMEM;
    mqtt__encode_connect(a->connect_pkt, &p);
    mqtt_open_job *j = &a->job;
    j->host = a->host;
    j->port = c->conn.port;
    j->tls = mqtt_tls_config_ref(c->conn.tls);
    memcpy(a->ka, c->conn.sock_keepalive, sizeof a->ka);
    j->ka = c->conn.has_sock_keepalive ? a->ka : NULL;
    j->deadline = mqtt__now() + c->opt.connect_timeout;
    j->tls_session = &c->tls_session;
    j->cancelled = attempt_cancelled;
    j->done = attempt_opened;
    j->owner = c;
    c->keepalive = c->conn.keepalive;
    return MQTT_OK;
}

static void deliver_held(void *item, void *ud)
{
    mqtt_client *c = ud;
    mqtt_event *ev = item;
    if (item == &mqtt__delivered_mark)
        return;
    c->held_bytes -= ev->bytes;
    mqtt__event_push(c, ev);
}

static void record_result(mqtt_client *c, const attempt *a, int status, int rcode, bool sp,
                          const char *text)
{
    if (a->seq > c->result_seq) {
        c->result.status = status;
        c->result.return_code = rcode;
        c->result.session_present = sp;
        snprintf(c->result.message, sizeof c->result.message, "%s", text);
        c->result_seq = a->seq;
        pthread_cond_broadcast(&c->cv);
    }
}

static void end_attempt(mqtt_client *c)
{
    attempt_free(c->att);
    c->att = NULL;
    c->phase = PH_NONE;
}

static void connected(mqtt_client *c, const mqtt_packet *pkt)
{
    attempt *a = c->att;
    double now = mqtt__now();
    if (c->ever_connected)
        c->reconnects++;
    c->ever_connected = true;
    c->state = ST_CONNECTED;
    c->connected_at = now;
    c->last_send = c->last_recv = c->write_ok_at = now;
    c->ping_outstanding = false;
    /* A broker without our session will never release held QoS 2 messages:
     * hand them over now rather than lose them. */
    if (!pkt->session_present)
        mqtt__session_in_drain(c->session, deliver_held, c);
    mqtt__session_rewind(c->session);
    mqtt__pump(c);
    mqtt__log(c, 1, "connected to %s port %u", a->host, a->job.port);
    mqtt_event *ev = a->connack;
    a->connack = NULL;
    ev->return_code = 0;
    ev->session_present = pkt->session_present;
    ev->sync = !a->async;
    mqtt__event_push(c, ev);
    record_result(c, a, MQTT_OK, 0, pkt->session_present, "connected");
    end_attempt(c);
}

static void report_failure(mqtt_client *c, const attempt *a, int status, int rcode,
                           const char *text)
{
    clear_io(c);
    c->connect_failures++;
    mqtt__log(c, 2, "connect failed: %s", text);
    /* One CONNACK event per handshake: every CONNACK received, and every
     * connect()/connect_async() call; an automatic attempt that got no
     * CONNACK is only counted and logged, and retried. */
    if (!a->background || rcode >= 0)
        mqtt__event_status(c, MQTT_EV_CONNACK, status, rcode, false, text);
    if (a->async && may_retry(c))
        mqtt__schedule_retry(c, backoff(c));
    else if (c->state == ST_CONNECTING)
        c->state = ST_IDLE;
    record_result(c, a, status, rcode, false, text);
}

static void attempt_failed(mqtt_client *c, int status, int rcode, const char *text)
{
    report_failure(c, c->att, status, rcode, text);
    end_attempt(c);
}

void mqtt__attempt_begin(mqtt_client *c)
{
    clear_io(c);
    c->state = ST_CONNECTING;
    c->att = mqtt__calloc(1, sizeof *c->att);
    if (!c->att) {
        /* Reported like any failed attempt, from what the attempt would hold. */
        attempt none = {.seq = c->connect_seq, .background = c->result_seq >= c->connect_seq};
        none.async = c->async_attempt || none.background;
        report_failure(c, &none, MQTT_ERR_NOMEM, -1, "no memory for a connection attempt");
        return;
    }
    c->phase = PH_OPENING;
    int rc = snapshot(c, c->att);
    if (rc == MQTT_OK)
        rc = mqtt__open_submit(&c->att->job);
    if (rc != MQTT_OK)
        attempt_failed(c, rc, -1, rc == MQTT_ERR_SYSTEM ? mqtt_system_error() : mqtt_strerror(rc));
}

/* NON-BLOCKING OPEN: with non-blocking transports, PH_OPENING becomes the
 * transport's own states, driven here by the loop (its fd watched, its
 * deadline the attempt's), and the open worker goes. From the hand-over on
 * nothing changes: the CONNECT is queued and the CONNACK read on the loop. */
static void handshake_start(mqtt_client *c)
{
    attempt *a = c->att;
    c->tr = a->job.tr;
    a->job.tr = NULL;
    c->phase = PH_HANDSHAKE;
    c->wpos = 0;
    if (mqtt__buf_append(&c->out, a->connect_pkt, a->connect_len) != MQTT_OK)
        attempt_failed(c, MQTT_ERR_NOMEM, -1, "no memory to send CONNECT");
}

double mqtt__attempt_tend(mqtt_client *c, double now)
{
    attempt *a = c->att;
    bool cancel = c->stop || c->request != REQ_NONE;
    if (c->phase == PH_OPENING) {
        if (!a->opened)
            return -1; /* the worker wakes the loop when it is done */
        int rc = a->job.rc == MQTT_OK && cancel ? MQTT_ERR_CANCELLED : a->job.rc;
        if (rc == MQTT_OK) {
            handshake_start(c);
            return c->phase == PH_HANDSHAKE ? a->job.deadline : -2;
        }
        const char *err = a->job.err[0] ? a->job.err : mqtt_strerror(rc);
        attempt_failed(c, rc, -1, rc == MQTT_ERR_CANCELLED ? "connect cancelled" : err);
        return -2;
    }
    if (cancel)
        attempt_failed(c, MQTT_ERR_CANCELLED, -1, "connect cancelled");
    else if (now >= a->job.deadline)
        attempt_failed(c, MQTT_ERR_TIMEOUT, -1, "no CONNACK within the connect timeout");
    else
        return a->job.deadline;
    return -2;
}

int mqtt__attempt_connack(mqtt_client *c, const mqtt_packet *pkt)
{
    if (c->stop || c->request != REQ_NONE) {
        attempt_failed(c, MQTT_ERR_CANCELLED, -1, "connect cancelled");
        return MQTT_ERR_CANCELLED;
    }
    if (pkt->return_code == 0 && pkt->session_present && c->opt.clean_session) {
        attempt_failed(c, MQTT_ERR_PROTOCOL, -1,
                       "session present in the CONNACK of a clean session"); /* MQTT-3.2.2-1 */
        return MQTT_ERR_PROTOCOL;
    }
    if (pkt->return_code != 0) {
        char err[128];
        snprintf(err, sizeof err, "connection refused: %s", mqtt_connack_name(pkt->return_code));
        attempt_failed(c, MQTT_ERR_REFUSED, pkt->return_code, err);
        return MQTT_ERR_REFUSED;
    }
    connected(c, pkt);
    return MQTT_OK;
}

void mqtt__link_lost(mqtt_client *c, int status, const char *text)
{
    if (c->phase == PH_HANDSHAKE)
        attempt_failed(c, status, -1, text);
    else
        mqtt__connection_lost(c, status, text);
}

void mqtt__link_release(mqtt_client *c)
{
    if (c->att)
        attempt_failed(c, MQTT_ERR_CANCELLED, -1, "connect cancelled");
    else if (c->tr)
        mqtt__connection_lost(c, MQTT_OK, "closed");
}
