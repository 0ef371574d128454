/*
 * Connection lifecycle: the application asks (connect, connect_async,
 * reconnect, disconnect) and the I/O thread does the work (open, CONNECT,
 * CONNACK, loss, back-off). Outcomes reach a blocking caller through the
 * condition variable and everyone else through events.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "client_internal.h"

/* ---- application side ---------------------------------------------- */

static int start_thread(mqtt_client *c)
{
    if (c->thread_running)
        return MQTT_OK;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&c->thread, &attr, mqtt__thread_main, c);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return mqtt__system_failure("pthread_create", rc);
    c->thread_running = true;
    return MQTT_OK;
}

/* The thread exits after a disconnect; join it before asking for more. */
static void join_finished_thread(mqtt_client *c)
{
    pthread_mutex_lock(&c->mu);
    bool join = c->thread_running && c->exit_when_idle;
    pthread_mutex_unlock(&c->mu);
    if (!join)
        return;
    mqtt__wake(c);
    pthread_join(c->thread, NULL);
    pthread_mutex_lock(&c->mu);
    c->thread_running = false;
    c->exit_when_idle = false;
    pthread_mutex_unlock(&c->mu);
}

static int store_options(mqtt_client *c, const mqtt_connect_options *user)
{
    mqtt_connect_options full; /* read within the caller's struct_size, checked (args.c) */
    int rc = mqtt__connect_options_read(&full, user);
    if (rc != MQTT_OK)
        return rc;
    const mqtt_connect_options *o = &full;
    char *host = mqtt__strdup(o->host);
    if (!host)
        return MQTT_ERR_NOMEM;
    mqtt__free(c->host);
    c->host = host;
    mqtt_tls_config *old = c->conn.tls;
    c->conn = *o;
    c->conn.host = c->host;
    c->conn.tls = mqtt_tls_config_ref(o->tls);
    mqtt_tls_config_unref(old);
    return MQTT_OK;
}

/* Posts a connect request with mu held; returns the request's sequence number. */
static int request_connect(mqtt_client *c, bool async, uint64_t *seq)
{
    int rc = start_thread(c);
    if (rc != MQTT_OK)
        return rc;
    c->request = REQ_CONNECT;
    c->state = ST_CONNECTING; /* visible at once: mqtt.run() must wait for it */
    c->async_attempt = async;
    c->user_disconnected = false;
    c->retry_attempt = 0; /* the application starts over: so does the back-off */
    *seq = ++c->connect_seq;
    return MQTT_OK;
}

static int wait_result(mqtt_client *c, uint64_t seq, mqtt_connect_result *res)
{
    pthread_mutex_lock(&c->mu);
    while (c->result_seq < seq)
        pthread_cond_wait(&c->cv, &c->mu);
    *res = c->result;
    pthread_mutex_unlock(&c->mu);
    return res->status;
}

static void fail(mqtt_connect_result *res, int status, const char *text)
{
    res->status = status;
    res->return_code = -1;
    res->session_present = false;
    snprintf(res->message, sizeof res->message, "%s", text);
}

static int connect_common(mqtt_client *c, const mqtt_connect_options *o, bool async,
                          mqtt_connect_result *res)
{
    mqtt_connect_result scratch;
    if (!res)
        res = &scratch;
    if (mqtt__foreign(c)) {
        fail(res, MQTT_ERR_STATE, "the client belongs to another process");
        return MQTT_ERR_STATE;
    }
    join_finished_thread(c);
    pthread_mutex_lock(&c->mu);
    int rc = MQTT_OK;
    /* Two cases give MQTT_ERR_STATE, one before and one after options are stored. */
    if (c->state == ST_CONNECTED || c->state == ST_DISCONNECTING)
        rc = MQTT_ERR_STATE; /* NOLINT(bugprone-branch-clone) */
    else if (o)
        rc = store_options(c, o);
    else if (!c->host)
        rc = MQTT_ERR_STATE;
    uint64_t seq = 0;
    if (rc == MQTT_OK)
        rc = request_connect(c, async, &seq);
    pthread_mutex_unlock(&c->mu);
    if (rc != MQTT_OK) {
        const char *why = mqtt_strerror(rc);
        if (rc == MQTT_ERR_STATE)
            why = "the client is already connected or was never connected";
        else if (rc == MQTT_ERR_SYSTEM)
            why = mqtt_system_error();
        fail(res, rc, why);
        return rc;
    }
    mqtt__wake(c);
    if (async)
        return MQTT_OK;
    return wait_result(c, seq, res);
}

int mqtt_client_connect(mqtt_client *c, const mqtt_connect_options *o, mqtt_connect_result *res)
{
    if (!o) {
        fail(res, MQTT_ERR_INVAL, "no connect options");
        return MQTT_ERR_INVAL;
    }
    return connect_common(c, o, false, res);
}

int mqtt_client_connect_async(mqtt_client *c, const mqtt_connect_options *o)
{
    if (!o)
        return MQTT_ERR_INVAL;
    return connect_common(c, o, true, NULL);
}

int mqtt_client_reconnect(mqtt_client *c, mqtt_connect_result *res)
{
    if (!mqtt__foreign(c) && mqtt_client_is_connected(c)) {
        fail(res, MQTT_OK, "already connected");
        res->return_code = 0;
        return MQTT_OK;
    }
    return connect_common(c, NULL, false, res);
}

static void schedule_retry_locked(mqtt_client *c, double delay);

void mqtt_client_set_auto_reconnect(mqtt_client *c, bool on)
{
    if (mqtt__foreign(c))
        return;
    pthread_mutex_lock(&c->mu);
    c->auto_reconnect = on;
    bool kick = on && c->opt.reconnect && c->state == ST_IDLE && c->host && c->thread_running &&
                !c->user_disconnected && !c->exit_when_idle;
    if (kick)
        schedule_retry_locked(c, 0);
    pthread_mutex_unlock(&c->mu);
    if (kick)
        mqtt__wake(c);
}

void mqtt_client_set_reconnect_hook(mqtt_client *c, bool on)
{
    if (mqtt__foreign(c))
        return;
    pthread_mutex_lock(&c->mu);
    c->hook = on;
    if (!on)
        c->proceed = true;
    pthread_mutex_unlock(&c->mu);
    mqtt__wake(c);
}

void mqtt_client_proceed(mqtt_client *c)
{
    if (mqtt__foreign(c))
        return;
    pthread_mutex_lock(&c->mu);
    c->proceed = true;
    pthread_mutex_unlock(&c->mu);
    mqtt__wake(c);
}

int mqtt_client_disconnect(mqtt_client *c)
{
    if (mqtt__foreign(c))
        return MQTT_ERR_STATE;
    pthread_mutex_lock(&c->mu);
    c->user_disconnected = true;
    bool running = c->thread_running;
    if (running) {
        c->request = REQ_DISCONNECT;
        c->exit_when_idle = true;
    }
    pthread_mutex_unlock(&c->mu);
    if (running)
        join_finished_thread(c);
    return MQTT_OK;
}

/* ---- I/O thread side ----------------------------------------------- */

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

static void schedule_retry_locked(mqtt_client *c, double delay)
{
    c->state = ST_RETRY_WAIT;
    c->retry_at = mqtt__now() + delay;
}

static bool may_retry(const mqtt_client *c)
{
    return c->auto_reconnect && c->opt.reconnect && !c->user_disconnected && !c->stop &&
           !c->exit_when_idle;
}

/* What one connection leaves behind goes; buffers grown by it are given back. */
static void clear_io(mqtt_client *c)
{
    if (c->tr) {
        c->tr->ops->close(c->tr);
        c->tr = NULL;
    }
    mqtt_buf *bufs[] = {&c->in, &c->out, &c->wbuf};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        bufs[i]->len = 0;
        mqtt__buf_trim(bufs[i], MQTT_BUF_KEEP);
    }
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
        schedule_retry_locked(c, backoff(c));
    else
        c->state = ST_IDLE;
}

/* Snapshot of what one attempt needs, taken under the lock. */
typedef struct attempt {
    char *host;
    unsigned port;
    bool has_ka;
    int ka[3];
    uint64_t seq;
    bool async;      /* no caller blocks on the outcome */
    bool background; /* an automatic attempt: no connect() or connect_async() call waits */
    mqtt_tls_config *tls;
    uint8_t *connect_pkt;
    size_t connect_len;
    mqtt_event *connack; /* made up front: success is never left unreported */
} attempt;

static bool attempt_cancelled(void *ud)
{
    mqtt_client *c = ud;
    pthread_mutex_lock(&c->mu);
    bool stop = c->stop || c->request != REQ_NONE;
    pthread_mutex_unlock(&c->mu);
    return stop;
}

static mqtt_bytes view(const mqtt_buf *b)
{
    mqtt_bytes v = {b->data ? b->data : (const uint8_t *)"", b->len};
    return v;
}

static int snapshot(mqtt_client *c, attempt *a)
{
    mqtt_connect_params p = {0};
    p.client_id = view(&c->client_id);
    p.keepalive = c->conn.keepalive;
    p.clean_session = c->opt.clean_session;
    if (c->has_will) {
        p.will = true;
        p.will_topic = view(&c->will_topic);
        p.will_payload = view(&c->will_payload);
        p.will_qos = c->will_qos;
        p.will_retain = c->will_retain;
    }
    if (c->has_username)
        p.username = view(&c->username);
    if (c->has_username && c->has_password)
        p.password = view(&c->password);
    /* Who to report to comes first: a failed allocation is reported too. */
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
    a->port = c->conn.port;
    a->tls = mqtt_tls_config_ref(c->conn.tls);
    a->has_ka = c->conn.has_sock_keepalive;
    memcpy(a->ka, c->conn.sock_keepalive, sizeof a->ka);
    c->keepalive = c->conn.keepalive;
    return MQTT_OK;
}

static int write_all(mqtt_transport *t, const uint8_t *p, size_t n, double deadline,
                     const mqtt_cancel *cancel)
{
    while (n) {
        ssize_t w = t->ops->write(t, p, n);
        if (w < 0)
            return (int)-w;
        if (w == 0) {
            int rc = mqtt__wait_fd(t->fd, POLLOUT, deadline, cancel);
            if (rc != MQTT_OK)
                return rc;
            continue;
        }
        p += w;
        n -= (size_t)w;
    }
    return MQTT_OK;
}

/* Reads until a whole first packet is buffered; it must be a CONNACK. */
static int read_connack(mqtt_client *c, double deadline, const mqtt_cancel *cancel,
                        mqtt_packet *pkt, char *err, size_t errlen)
{
    for (;;) {
        size_t used = 0;
        const char *why = NULL;
        int rc = mqtt__decode_packet(c->in.data, c->in.len, c->opt.max_packet, pkt, &used, &why);
        if (rc == MQTT_OK) {
            if (pkt->type != MQTT_CONNACK) {
                snprintf(err, errlen, "the broker sent packet type 0x%02x before CONNACK",
                         pkt->type);
                return MQTT_ERR_PROTOCOL;
            }
            mqtt__buf_consume(&c->in, used);
            return MQTT_OK;
        }
        if (rc != MQTT_ERR_INCOMPLETE) {
            snprintf(err, errlen, "invalid CONNACK: %s", why ? why : mqtt_strerror(rc));
            return rc;
        }
        if (mqtt__buf_reserve(&c->in, 4096) != MQTT_OK)
            return MQTT_ERR_NOMEM;
        ssize_t n = c->tr->ops->read(c->tr, c->in.data + c->in.len, c->in.cap - c->in.len);
        if (n < 0) {
            snprintf(err, errlen, "the broker closed the connection before CONNACK");
            return (int)-n;
        }
        if (n == 0) {
            rc = mqtt__wait_fd(c->tr->fd, POLLIN, deadline, cancel);
            if (rc == MQTT_ERR_TIMEOUT)
                snprintf(err, errlen, "no CONNACK within the connect timeout");
            if (rc != MQTT_OK)
                return rc;
        }
        c->in.len += (size_t)n;
    }
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

static void connected(mqtt_client *c, attempt *a, const mqtt_packet *pkt)
{
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
    mqtt__log(c, 1, "connected to %s port %u", a->host, a->port);
    mqtt_event *ev = a->connack;
    a->connack = NULL;
    ev->return_code = 0;
    ev->session_present = pkt->session_present;
    ev->sync = !a->async;
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

static void attempt_failed(mqtt_client *c, const attempt *a, int status, int rcode,
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
        schedule_retry_locked(c, backoff(c));
    else if (c->state == ST_CONNECTING)
        c->state = ST_IDLE;
}

void mqtt__do_connect(mqtt_client *c)
{
    attempt a = {0};
    char err[256] = "";
    pthread_mutex_lock(&c->mu);
    clear_io(c);
    int rc = snapshot(c, &a);
    pthread_mutex_unlock(&c->mu);

    mqtt_cancel cancel = {c->wake_fd, attempt_cancelled, c};
    double deadline = mqtt__now() + c->opt.connect_timeout;
    mqtt_transport *tr = NULL;
    mqtt_packet pkt;
    const int *ka = a.has_ka ? a.ka : NULL;
    if (rc == MQTT_OK && a.tls)
        rc = mqtt__tls_open(a.tls, a.host, a.port, deadline, &cancel, ka, &c->tls_session, &tr,
                            err, sizeof err);
    else if (rc == MQTT_OK)
        rc = mqtt__tcp_open(a.host, a.port, deadline, &cancel, ka, &tr, err, sizeof err);
    c->tr = tr;
    if (rc == MQTT_OK) {
        rc = write_all(tr, a.connect_pkt, a.connect_len, deadline, &cancel);
        if (rc != MQTT_OK)
            snprintf(err, sizeof err, "sending CONNECT failed: %s", mqtt_strerror(rc));
    }
    if (rc == MQTT_OK)
        rc = read_connack(c, deadline, &cancel, &pkt, err, sizeof err);
    int rcode = -1;
    if (rc == MQTT_OK && pkt.return_code == 0 && pkt.session_present && c->opt.clean_session) {
        rc = MQTT_ERR_PROTOCOL; /* MQTT-3.2.2-1 */
        snprintf(err, sizeof err, "session present in the CONNACK of a clean session");
    }
    /* cppcheck-suppress uninitvar ; pkt is read only after read_connack returned MQTT_OK */
    if (rc == MQTT_OK && pkt.return_code != 0) {
        rcode = pkt.return_code;
        rc = MQTT_ERR_REFUSED;
        snprintf(err, sizeof err, "connection refused: %s", mqtt_connack_name(rcode));
    }
    if (rc == MQTT_ERR_CANCELLED)
        snprintf(err, sizeof err, "connect cancelled");
    if (rc != MQTT_OK && !err[0])
        snprintf(err, sizeof err, "%s", mqtt_strerror(rc));

    pthread_mutex_lock(&c->mu);
    if (rc == MQTT_OK && (c->stop || c->request != REQ_NONE)) {
        rc = MQTT_ERR_CANCELLED;
        snprintf(err, sizeof err, "connect cancelled");
    }
    if (rc == MQTT_OK) {
        connected(c, &a, &pkt);
        record_result(c, &a, MQTT_OK, 0, pkt.session_present, "connected");
    } else {
        attempt_failed(c, &a, rc, rcode, err);
        record_result(c, &a, rc, rcode, false, err);
    }
    pthread_mutex_unlock(&c->mu);
    mqtt__free(a.host);
    mqtt__free(a.connect_pkt);
    mqtt_event_free(a.connack);
    mqtt_tls_config_unref(a.tls);
}
