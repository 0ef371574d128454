/*
 * The connection's life on the I/O loop: an attempt (the transport's open,
 * DNS, TCP and TLS, driven step by step as its fd becomes ready, then CONNECT
 * and CONNACK, all within connect_timeout and cancelled by a request), the
 * connection's loss, the back-off before the next attempt. Outcomes reach a
 * blocking connect() through the condition variable and everyone else through
 * events. Loop thread only, client lock held (except where a function says).
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "client_internal.h"

/* What one attempt needs, taken under the lock when it starts. */
struct attempt {
    mqtt_client *c;
    char *server;    /* as given, for the log */
    uint64_t seq;
    bool async;      /* no caller blocks on the outcome */
    bool background; /* an automatic attempt: no connect() or connect_async() call waits */
    double deadline; /* connect_timeout, for the whole chain: DNS, TCP, TLS, CONNACK */
    mqtt_transport *tr; /* the transport opening (PH_OPENING); NULL once handed over */
    int rc;             /* its last answer: MQTT_ERR_INCOMPLETE while the open goes on */
    char err[256];      /* its failure in words */
    uint8_t *connect_pkt;
    size_t connect_len;
    mqtt_event *connack; /* made up front: success is never left unreported */
    mqtt_event *refusal; /* a 5.0 CONNACK's refusal, with its properties */
};

static double backoff(mqtt_client *c)
{
    double d = c->set.opt.reconnect_min;
    for (unsigned i = 0; i < c->sh.retry_attempt && d < c->set.opt.reconnect_max; i++)
        d *= 2;
    if (d > c->set.opt.reconnect_max)
        d = c->set.opt.reconnect_max;
    c->io.rng ^= c->io.rng << 13;
    c->io.rng ^= c->io.rng >> 7;
    c->io.rng ^= c->io.rng << 17;
    double unit = (double)(c->io.rng >> 11) / 9007199254740992.0;
    c->sh.retry_attempt++;
    d = d / 2 + unit * d / 2;
    mqtt__log(c, 0, "next round of %zu server(s) in %.3f s (back-off step %u)", c->sh.srv.count,
              d, c->sh.retry_attempt);
    return d;
}

void mqtt__schedule_retry(mqtt_client *c, double delay)
{
    c->sh.state = ST_RETRY_WAIT;
    c->sh.retry_at = mqtt__now() + delay;
}

static bool may_retry(const mqtt_client *c)
{
    return c->sh.auto_reconnect && c->set.opt.reconnect && !c->sh.user_disconnected && !c->sh.stop;
}

/* What one connection leaves behind goes; so do the buffers: a client
 * without a connection holds none. */
static void clear_io(mqtt_client *c)
{
    if (c->io.tr) {
        mqtt__loop_watch(&c->member, -1, false, false); /* before the fd closes */
        c->io.tr->ops->close(c->io.tr);
        c->io.tr = NULL;
    }
    mqtt__buf_free(&c->io.in);
    mqtt__buf_free(&c->sh.out);
    mqtt__buf_free(&c->sh.wbuf);
    c->sh.wpos = 0;
    c->io.in_backlog = false;
    c->io.partial_since = 0;
    c->io.ping_outstanding = false;
    mqtt__v5_alias_reset(c);
}

/* Back-off starts over only after a connection that lasted: a broker that
 * accepts and drops at once sees the delays grow like any other failure. */
static void note_connection_end(mqtt_client *c)
{
    if (c->io.connected_at > 0 && mqtt__now() - c->io.connected_at >= 10 * c->set.opt.reconnect_min) {
        c->sh.retry_attempt = 0;
        c->sh.srv.round_tries = 0;
    }
    c->io.connected_at = 0;
}

/* follow_redirects: a 5.0 refusal or DISCONNECT naming another server. */
static void follow_redirect(mqtt_client *c, int reason, mqtt_bytes props)
{
    char why[300] = "";
    if (!c->sh.conn.follow_redirects)
        return;
    const char *to = mqtt__servers_redirect(&c->sh.srv, reason, props, c->sh.conn.tls != NULL,
                                            why, sizeof why);
    if (to)
        mqtt__log(c, 1, "redirected to %s", to);
    else if (why[0])
        mqtt__log(c, 2, "redirect not followed: %s", why);
}

void mqtt__connection_lost(mqtt_client *c, int status, const char *text)
{
    bool was_disconnecting = c->sh.state == ST_DISCONNECTING;
    if (!was_disconnecting && c->io.lost_from_broker && c->io.lost_reason >= 0)
        follow_redirect(c, c->io.lost_reason, c->io.lost_props);
    note_connection_end(c);
    if (!was_disconnecting) {
        mqtt__log(c, 2, "connection lost: %s", text);
        if (c->io.lost_reason >= 0)
            mqtt__event_disconnect(c, status, text, (uint8_t)c->io.lost_reason, c->io.lost_props,
                                   c->io.lost_from_broker);
        else
            mqtt__event_status(c, MQTT_EV_DISCONNECT, status, -1, false, text);
    } else {
        mqtt__event_status(c, MQTT_EV_DISCONNECT, MQTT_OK, -1, false, "disconnected");
    }
    /* Only now: the broker's DISCONNECT properties (lost_props) may lie in io.in. */
    clear_io(c);
    c->io.lost_reason = -1;
    c->io.lost_props = (mqtt_bytes){NULL, 0};
    c->io.lost_from_broker = false;
    /* A loss moves on to the next server (also for a reconnect() to come):
     * at once within a round, after the back-off once the round is complete. */
    bool more = !was_disconnecting && mqtt__servers_next(&c->sh.srv);
    if (!was_disconnecting && may_retry(c))
        mqtt__schedule_retry(c, more ? 0 : backoff(c));
    else
        c->sh.state = ST_IDLE;
}

/* ---- one attempt ----------------------------------------------------- */

/* Stops watching the opening transport's fd, which its next step or its
 * close may close (and a new socket may reuse the number). */
static void unwatch_open(mqtt_client *c)
{
    mqtt__loop_watch(&c->member, -1, false, false);
}

static void attempt_free(attempt *a)
{
    if (!a)
        return;
    if (a->tr) {
        unwatch_open(a->c);
        a->tr->ops->close(a->tr);
    }
    mqtt__free(a->server);
    mqtt__free(a->connect_pkt);
    mqtt_event_free(a->connack);
    mqtt_event_free(a->refusal);
    mqtt__free(a);
}

static mqtt_bytes view(const mqtt_buf *b)
{
    mqtt_bytes v = {b->data ? b->data : (const uint8_t *)"", b->len};
    return v;
}

static void connect_params(const mqtt_client *c, mqtt_connect_params *p)
{
    memset(p, 0, sizeof *p);
    p->client_id = view(&c->set.client_id);
    p->keepalive = c->sh.conn.keepalive;
    p->clean_session = c->set.opt.clean_session;
    if (c->sh.has_will) {
        p->will = true;
        p->will_topic = view(&c->sh.will_topic);
        p->will_payload = view(&c->sh.will_payload);
        p->will_qos = c->sh.will_qos;
        p->will_retain = c->sh.will_retain;
    }
    if (c->sh.has_username)
        p->username = view(&c->sh.username);
    if (c->sh.has_username && c->sh.has_password)
        p->password = view(&c->sh.password);
}

/* The CONNECT's properties under 5.0: the user's, the implied session
 * expiry, the will's; both arrays are the caller's to free. */
static int connect_props_v5(mqtt_client *c, mqtt_connect_params *p, mqtt_property **will)
{
    mqtt_property *props = NULL;
    int rc = mqtt__v5_connect_props(c, &props, &p->nprops);
    p->props = props;
    uint32_t expiry = 0;
    mqtt__props_value(props, p->nprops, MQTT_PROP_SESSION_EXPIRY_INTERVAL, &expiry);
    c->sh.connect_expiry_zero = expiry == 0;
    mqtt_bytes wb = {c->sh.will_props.data, c->sh.will_props.len};
    size_t wn = p->will && wb.len ? mqtt__props_unpack(wb, NULL, 0) : 0;
    *will = wn ? mqtt__calloc(wn, sizeof **will) : NULL;
    if (rc == MQTT_OK && wn && !*will)
        rc = MQTT_ERR_NOMEM;
    if (*will)
        mqtt__props_unpack(wb, *will, wn);
    p->will_props = *will;
    p->will_nprops = *will ? wn : 0;
    mqtt_bytes mine = {c->sh.connect_props.data, c->sh.connect_props.len};
    mqtt_property v;
    c->io.alias_in_max =
        mqtt__prop_find(mine, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, &v) ? (uint16_t)v.value : 0;
    c->io.receive_max =
        mqtt__prop_find(mine, MQTT_PROP_RECEIVE_MAXIMUM, &v) ? (uint16_t)v.value : 65535;
    if (mqtt__prop_find(mine, MQTT_PROP_MAXIMUM_PACKET_SIZE, &v) && v.value < c->io.max_packet)
        c->io.max_packet = v.value; /* what the broker was told it may send */
    return rc;
}

/* The CONNECT for this attempt, in the version it tries. */
static int encode_connect(mqtt_client *c, attempt *a)
{
    mqtt_connect_params p;
    mqtt_property *will = NULL;
    connect_params(c, &p);
    if (c->sh.try_version == 0)
        c->sh.try_version = c->set.opt.protocol == MQTT_V311 ? MQTT_V311 : MQTT_V5;
    c->io.version = p.version = c->sh.try_version;
    c->io.max_packet = c->set.opt.max_packet;
    if (c->sh.assigned_id.len && p.version == MQTT_V5)
        p.client_id = view(&c->sh.assigned_id);
    int rc = p.version == MQTT_V5 ? connect_props_v5(c, &p, &will) : MQTT_OK;
    a->connect_len = rc == MQTT_OK ? mqtt__connect_size(&p) : 0;
    a->connect_pkt = a->connect_len ? mqtt__malloc(a->connect_len) : NULL;
    if (rc == MQTT_OK && !a->connect_pkt)
        rc = MQTT_ERR_NOMEM;
    if (rc == MQTT_OK)
        mqtt__encode_connect(a->connect_pkt, &p);
    mqtt__free((void *)p.props);
    mqtt__free(will);
    return rc;
}

static int snapshot(mqtt_client *c, attempt *a)
{
    /* Who to report to comes first: a failed allocation is reported too. */
    a->c = c;
    a->seq = c->sh.connect_seq;
    a->background = c->sh.result_seq >= c->sh.connect_seq;
    a->async = c->sh.async_attempt || a->background;
    a->server = mqtt__strdup(mqtt__servers_current(&c->sh.srv));
    a->connack = mqtt__event_new(MQTT_EV_CONNACK, 0);
    if (!a->server || !a->connack || encode_connect(c, a) != MQTT_OK)
        return MQTT_ERR_NOMEM;
    a->deadline = mqtt__now() + c->set.opt.connect_timeout;
    c->io.keepalive = c->sh.conn.keepalive;
    return MQTT_OK;
}

static void deliver_held(void *item, void *ud)
{
    mqtt_client *c = ud;
    mqtt_event *ev = item;
    c->sh.held_bytes -= ev->bytes;
    mqtt__event_push(c, ev);
}

static void record_result(mqtt_client *c, const attempt *a, int status, int rcode, bool sp,
                          const char *text)
{
    if (a->seq > c->sh.result_seq) {
        c->sh.result.status = status;
        c->sh.result.return_code = rcode;
        c->sh.result.session_present = sp;
        snprintf(c->sh.result.message, sizeof c->sh.result.message, "%s", text);
        c->sh.result_seq = a->seq;
        pthread_cond_broadcast(&c->cv);
    }
}

static void end_attempt(mqtt_client *c)
{
    attempt_free(c->io.att);
    c->io.att = NULL;
    c->io.phase = PH_NONE;
}

static void connected(mqtt_client *c, const mqtt_packet *pkt)
{
    attempt *a = c->io.att;
    double now = mqtt__now();
    if (c->sh.ever_connected)
        c->sh.reconnects++;
    c->sh.ever_connected = true;
    c->sh.state = ST_CONNECTED;
    c->io.connected_at = now;
    c->io.last_send = c->io.last_recv = c->io.write_ok_at = now;
    c->io.ping_outstanding = false;
    /* A broker without our session will never release held QoS 2 messages:
     * hand them over now rather than lose them. */
    if (!pkt->session_present) {
        mqtt__persist_in_forget_all(c);
        mqtt__session_in_drain(c->sh.session, deliver_held, c);
    }
    mqtt__session_rewind(c->sh.session);
    if (mqtt__v5_connack(c, pkt) != MQTT_OK)
        mqtt__log(c, 2, "no memory to keep the CONNACK's properties");
    mqtt__pump(c);
    mqtt__log(c, 1, "MQTT %s", c->sh.version == MQTT_V5 ? "5.0" : "3.1.1");
    mqtt__log(c, 1, "connected to %s", a->server);
    /* Properties need an event of their size; without memory for it the one
     * made up front reports the success without them. */
    mqtt_event *ev = pkt->props.len ? mqtt__event_ack(MQTT_EV_CONNACK, 0, pkt) : NULL;
    if (!ev) {
        ev = a->connack;
        a->connack = NULL;
    }
    ev->return_code = 0;
    ev->session_present = pkt->session_present;
    ev->sync = !a->async;
    mqtt__event_push(c, ev);
    record_result(c, a, MQTT_OK, 0, pkt->session_present, "connected");
    end_attempt(c);
}

/* Returns true when a connect()/connect_async() call goes on with the
 * next server of its round at once (its outcome not reported yet), which
 * only an attempt that can go on does. */
static bool report_failure(mqtt_client *c, attempt *a, int status, int rcode,
                           const char *text, bool can_go_on)
{
    clear_io(c);
    c->sh.connect_failures++;
    mqtt__log(c, 2, "connect to %s failed: %s", a->server ? a->server : "the server", text);
    /* A cancelled attempt keeps its server: what cancelled it decides. */
    bool more = status != MQTT_ERR_CANCELLED && mqtt__servers_next(&c->sh.srv);
    bool again = more && can_go_on && !a->background && !c->sh.stop &&
                 c->sh.request == REQ_NONE;
    /* One CONNACK event per handshake: every CONNACK received, and every
     * connect()/connect_async() call once its round ends; an automatic
     * attempt that got no CONNACK is only counted and logged, and retried. */
    if (a->refusal) {
        a->refusal->return_code = rcode;
        mqtt__event_push(c, a->refusal);
        a->refusal = NULL;
    } else if ((!a->background && !again) || rcode >= 0) {
        mqtt__event_status(c, MQTT_EV_CONNACK, status, rcode, false, text);
    }
    if (again)
        return true;
    if (a->async && may_retry(c))
        mqtt__schedule_retry(c, more ? 0 : backoff(c));
    else if (c->sh.state == ST_CONNECTING)
        c->sh.state = ST_IDLE;
    record_result(c, a, status, rcode, false, text);
    return false;
}

static void open_start(mqtt_client *c, attempt *a);

/* A connect call's round goes on: the same attempt (its caller, its CONNECT,
 * its CONNACK event) opens the next server, with a deadline of its own. */
static void attempt_next_server(mqtt_client *c, attempt *a)
{
    if (a->tr) {
        unwatch_open(c);
        a->tr->ops->close(a->tr);
        a->tr = NULL;
    }
    char *server = mqtt__strdup(mqtt__servers_current(&c->sh.srv));
    if (server) { /* else the log names the previous one */
        mqtt__free(a->server);
        a->server = server;
    }
    c->io.phase = PH_OPENING;
    a->deadline = mqtt__now() + c->set.opt.connect_timeout;
    open_start(c, a);
}

static void attempt_failed(mqtt_client *c, int status, int rcode, const char *text)
{
    if (report_failure(c, c->io.att, status, rcode, text, true))
        attempt_next_server(c, c->io.att);
    else
        end_attempt(c);
}

/* Starts the transport's open of the current server (its URI parsed, the
 * connect options' TLS context and socket keepalive applied). Never blocks;
 * a->rc is where it stands. */
static void open_start(mqtt_client *c, attempt *a)
{
    mqtt_endpoint ep;
    /* The session slot outlives every open: it is the client's. Resuming
     * one server's session with another fails over to a full handshake. */
    mqtt_transport_env env = {.clock = NULL, .tls_session = &c->io.tls_session};
    a->err[0] = '\0';
    mqtt__log(c, 0, "connecting to %s", a->server);
    a->rc = mqtt__servers_endpoint(&c->sh.srv, &c->sh.conn, &ep, a->err, sizeof a->err);
    if (a->rc == MQTT_OK)
        a->rc = mqtt__transport_open(&ep, &env, &a->tr, a->err, sizeof a->err);
    mqtt__endpoint_clear(&ep);
}

void mqtt__attempt_begin(mqtt_client *c)
{
    clear_io(c);
    c->sh.state = ST_CONNECTING;
    c->io.att = mqtt__calloc(1, sizeof *c->io.att);
    if (!c->io.att) {
        /* Reported like any failed attempt, from what the attempt would hold. */
        attempt none = {.seq = c->sh.connect_seq,
                        .background = c->sh.result_seq >= c->sh.connect_seq};
        none.async = c->sh.async_attempt || none.background;
        /* No attempt to go on with: the round ends here. */
        report_failure(c, &none, MQTT_ERR_NOMEM, -1, "no memory for a connection attempt", false);
        return;
    }
    c->io.phase = PH_OPENING;
    int rc = snapshot(c, c->io.att);
    if (rc == MQTT_OK)
        open_start(c, c->io.att);
    else
        attempt_failed(c, rc, -1, mqtt_strerror(rc));
}

/* The transport is open: from here on the CONNECT is queued and the CONNACK
 * read on the loop, within what is left of the attempt's deadline. */
static void handshake_start(mqtt_client *c)
{
    attempt *a = c->io.att;
    c->io.tr = a->tr;
    a->tr = NULL;
    c->io.phase = PH_HANDSHAKE;
    c->sh.wpos = 0;
    if (mqtt__buf_append(&c->sh.out, a->connect_pkt, a->connect_len) != MQTT_OK)
        attempt_failed(c, MQTT_ERR_NOMEM, -1, "no memory to send CONNECT");
}

void mqtt__attempt_progress(mqtt_client *c)
{
    attempt *a = c->io.att;
    if (c->io.phase != PH_OPENING || !a->tr || a->rc != MQTT_ERR_INCOMPLETE)
        return;
    unwatch_open(c);
    a->rc = mqtt__transport_progress(a->tr, a->err, sizeof a->err);
}

int mqtt__attempt_fd(const mqtt_client *c, bool *in, bool *out)
{
    const attempt *a = c->io.att;
    if (c->io.phase != PH_OPENING || !a->tr || a->rc != MQTT_ERR_INCOMPLETE)
        return -1;
    *in = (a->tr->events & POLLIN) != 0;
    *out = (a->tr->events & POLLOUT) != 0;
    return a->tr->fd;
}

/* The deadline passed while opening: the step still going says what timed out. */
static void open_timed_out(mqtt_client *c)
{
    const attempt *a = c->io.att;
    char step[200] = "opening", text[256];
    if (a->tr && a->tr->ops->waiting)
        a->tr->ops->waiting(a->tr, step, sizeof step);
    snprintf(text, sizeof text, "%s timed out", step);
    attempt_failed(c, MQTT_ERR_TIMEOUT, -1, text);
}

/* PH_OPENING: the open's outcome, a cancel, or the deadline. */
static double tend_opening(mqtt_client *c, double now, bool cancel)
{
    attempt *a = c->io.att;
    if (a->rc != MQTT_OK && a->rc != MQTT_ERR_INCOMPLETE) {
        attempt_failed(c, a->rc, -1, a->err[0] ? a->err : mqtt_strerror(a->rc));
    } else if (cancel) {
        attempt_failed(c, MQTT_ERR_CANCELLED, -1, "connect cancelled");
    } else if (a->rc == MQTT_OK) {
        handshake_start(c);
        return c->io.phase == PH_HANDSHAKE ? a->deadline : -2;
    } else if (now >= a->deadline) {
        open_timed_out(c);
    } else {
        return a->deadline;
    }
    return -2;
}

double mqtt__attempt_tend(mqtt_client *c, double now)
{
    attempt *a = c->io.att;
    bool cancel = c->sh.stop || c->sh.request != REQ_NONE;
    if (c->io.phase == PH_OPENING)
        return tend_opening(c, now, cancel);
    if (cancel)
        attempt_failed(c, MQTT_ERR_CANCELLED, -1, "connect cancelled");
    else if (now >= a->deadline)
        attempt_failed(c, MQTT_ERR_TIMEOUT, -1, "no CONNACK within the connect timeout");
    else
        return a->deadline;
    return -2;
}

/* "auto": a broker that refuses MQTT 5.0 gets the same attempt again in
 * 3.1.1, within the same deadline; the version that worked stays. */
static bool downgrade(mqtt_client *c, const char *why)
{
    if (c->set.opt.protocol != MQTT_PROTOCOL_AUTO || c->sh.try_version != MQTT_V5 ||
        c->io.phase != PH_HANDSHAKE)
        return false;
    mqtt__log(c, 1, "MQTT 5.0 refused (%s): trying MQTT 3.1.1", why);
    c->sh.try_version = MQTT_V311;
    double deadline = c->io.att->deadline;
    end_attempt(c);
    mqtt__attempt_begin(c);
    if (c->io.att)
        c->io.att->deadline = deadline;
    return true;
}

static int refused(mqtt_client *c, const mqtt_packet *pkt)
{
    char err[128];
    const char *name = pkt->version == MQTT_V5 ? mqtt_reason_name(pkt->return_code, MQTT_CONNACK)
                                               : mqtt_connack_name(pkt->return_code);
    snprintf(err, sizeof err, "connection refused: %s", name ? name : "unknown code");
    if (pkt->return_code == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION && downgrade(c, err))
        return MQTT_ERR_REFUSED;
    if (pkt->version == MQTT_V5) { /* its properties live in the input, freed on failure */
        c->io.att->refusal = mqtt__event_reason(MQTT_EV_CONNACK, MQTT_ERR_REFUSED, err,
                                                pkt->return_code, pkt->props);
        follow_redirect(c, pkt->return_code, pkt->props);
    }
    attempt_failed(c, MQTT_ERR_REFUSED, pkt->return_code, err);
    return MQTT_ERR_REFUSED;
}

int mqtt__attempt_connack(mqtt_client *c, const mqtt_packet *pkt)
{
    if (c->sh.stop || c->sh.request != REQ_NONE) {
        attempt_failed(c, MQTT_ERR_CANCELLED, -1, "connect cancelled");
        return MQTT_ERR_CANCELLED;
    }
    if (pkt->return_code == 0 && pkt->session_present && c->set.opt.clean_session) {
        attempt_failed(c, MQTT_ERR_PROTOCOL, -1,
                       "session present in the CONNACK of a clean session"); /* MQTT-3.2.2-1 */
        return MQTT_ERR_PROTOCOL;
    }
    if (pkt->return_code != 0)
        return refused(c, pkt);
    connected(c, pkt);
    return MQTT_OK;
}

bool mqtt__attempt_downgrade(mqtt_client *c, const char *why)
{
    return downgrade(c, why);
}

void mqtt__link_lost(mqtt_client *c, int status, const char *text)
{
    /* A broker that only speaks 3.1.1 may close at a 5.0 CONNECT. */
    if (c->io.phase == PH_HANDSHAKE && (status == MQTT_ERR_CLOSED || status == MQTT_ERR_IO) &&
        downgrade(c, text))
        return;
    if (c->io.phase != PH_NONE)
        attempt_failed(c, status, -1, text);
    else
        mqtt__connection_lost(c, status, text);
}

void mqtt__link_release(mqtt_client *c)
{
    if (c->io.att)
        attempt_failed(c, MQTT_ERR_CANCELLED, -1, "connect cancelled");
    else if (c->io.tr)
        mqtt__connection_lost(c, MQTT_OK, "closed");
}
