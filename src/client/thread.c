/*
 * The I/O thread: waits on the socket and the wake eventfd, reads and decodes
 * in batches, answers the protocol on its own (acks, pings, resends), writes
 * everything queued with as few syscalls as it can, and keeps time for
 * keepalive, back-off and the disconnect flush. It never calls the application.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "client_internal.h"
#include "send.h"

#define READ_CHUNK (64 * 1024)
#define READS_PER_WAKE 4

void mqtt__fd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t w = write(fd, &one, sizeof one);
    (void)w; /* only fails when the counter is already huge: still readable */
}

void mqtt__fd_clear(int fd)
{
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n);
    (void)r;
}

void mqtt__wake(mqtt_client *c)
{
    mqtt__fd_signal(c->wake_fd);
}

int mqtt__pump(mqtt_client *c)
{
    bool was_empty = c->out.len == 0;
    mqtt_qos_action action;
    const mqtt_record *r;
    while ((r = mqtt__session_next(c->session, &action)) != NULL) {
        if (mqtt__send_record(&c->out, r, action) != MQTT_OK)
            return -1;
        mqtt__session_sent(c->session);
    }
    return was_empty && c->out.len > 0;
}

static void write_output(mqtt_client *c);

/* Queues a reply; handle_packet reserved the room for it. */
static void send_ack(mqtt_client *c, uint8_t type, uint16_t id)
{
    uint8_t b[4];
    mqtt__encode_ack(b, type, id);
    mqtt__buf_append(&c->out, b, sizeof b);
}

static mqtt_event *ack_event(int type, uint16_t id, const mqtt_packet *p)
{
    return mqtt__event_ack(type, id, p); /* events.c fills the public fields */
}

/* An event that cannot be made ends the connection (MQTT_ERR_NOMEM) before
 * anything is acked, so nothing vanishes unseen and the broker resends. */
static int handle_publish(mqtt_client *c, const mqtt_packet *p)
{
    if (p->qos < 2) {
        mqtt_event *ev = mqtt__event_message(MQTT_EV_PUBLISH, p);
        if (!ev)
            return MQTT_ERR_NOMEM;
        mqtt__event_push(c, ev); /* staged: released once the PUBACK is written */
        if (p->qos == 1)
            send_ack(c, MQTT_PUBACK, p->packet_id);
        return MQTT_OK;
    }
    /* QoS 2: hold the message until PUBREL; a resent PUBLISH is not new. */
    if (!mqtt__session_in_has(c->session, p->packet_id)) {
        mqtt_event *held = mqtt__event_message(MQTT_EV_PUBREL, p);
        mqtt_event *arrival = ack_event(MQTT_EV_PUBLISH, p->packet_id, NULL);
        if (!held || !arrival || mqtt__session_in_put(c->session, p->packet_id, held) != MQTT_OK) {
            mqtt_event_free(held);
            mqtt_event_free(arrival);
            return MQTT_ERR_NOMEM;
        }
        c->held_bytes += held->bytes;
        mqtt__event_push(c, arrival);
    }
    send_ack(c, MQTT_PUBREC, p->packet_id);
    return MQTT_OK;
}

static void handle_pubrel(mqtt_client *c, const mqtt_packet *p)
{
    void *held = mqtt__session_in_take(c->session, p->packet_id);
    if (held && held != &mqtt__delivered_mark) {
        mqtt_event *ev = held;
        c->held_bytes -= ev->bytes;
        mqtt__event_push(c, ev);
    }
    send_ack(c, MQTT_PUBCOMP, p->packet_id);
}

static void deliver_early(void *item, void *ud)
{
    mqtt_client *c = ud;
    mqtt_event *ev = item;
    c->held_bytes -= ev->bytes;
    mqtt__event_push(c, ev);
}

/* The bound is reached and part of it is QoS 2 messages whose PUBRELs wait
 * unread behind the input: hand them over now, oldest first, so the
 * application can make room (their ids stay known: still exactly once). */
static void release_held(mqtt_client *c)
{
    if (c->held_bytes > 0 && mqtt__app_bytes(c) >= c->opt.max_event_bytes)
        (void)mqtt__session_in_replace(c->session, &mqtt__delivered_mark, deliver_early, c);
}

/* MQTT-3.9.3-1: a SUBACK has one return code per filter subscribed. */
static bool suback_fits(const mqtt_client *c, const mqtt_packet *p)
{
    const mqtt_record *r = mqtt__session_awaiting(c->session, p->packet_id);
    return !r || r->kind != MQTT_REC_SUBSCRIBE || r->entry_count == p->granted.len;
}

/* Applies an ack to the session and queues its event, made first: without
 * memory for it the ack is not applied, and after the reconnect the record
 * is resent and acked again. */
static int handle_ack(mqtt_client *c, const mqtt_packet *p, const char **why)
{
    static const char nomem[] = "no memory to queue an event or a reply";
    if (p->type == MQTT_SUBACK && !suback_fits(c, p)) {
        *why = "the SUBACK's return codes do not match the filters subscribed";
        return MQTT_ERR_PROTOCOL;
    }
    mqtt_event *ev = ack_event(p->type, p->packet_id, p->type == MQTT_SUBACK ? p : NULL);
    if (!ev) {
        *why = nomem;
        return MQTT_ERR_NOMEM;
    }
    mqtt_ack_result res = mqtt__session_ack(c->session, p->type, p->packet_id);
    if (res == MQTT_ACK_NEW || res == MQTT_ACK_DOWNGRADED) {
        ev->downgraded = res == MQTT_ACK_DOWNGRADED;
        c->downgraded += ev->downgraded;
        mqtt__event_push(c, ev);
        return MQTT_OK;
    }
    mqtt_event_free(ev);
    if (p->type != MQTT_PUBREC)
        mqtt__log(c, 2, "ignored ack 0x%02x for unknown packet id %u", p->type, p->packet_id);
    return MQTT_OK;
}

/* Returns MQTT_OK or a status that ends the connection (*why says why). */
static int handle_packet(mqtt_client *c, const mqtt_packet *p, const char **why)
{
    static const char nomem[] = "no memory to queue an event or a reply";
    /* Room for the one reply a packet may need, so no reply is ever lost. */
    int rc = mqtt__buf_reserve(&c->out, 4);
    if (rc != MQTT_OK) {
        *why = nomem;
        return rc;
    }
    switch (p->type) {
    case MQTT_PUBLISH:
        rc = handle_publish(c, p);
        if (rc != MQTT_OK)
            *why = nomem;
        return rc;
    case MQTT_PUBREL:
        handle_pubrel(c, p);
        return MQTT_OK;
    case MQTT_PUBREC:
        rc = handle_ack(c, p, why);
        if (rc == MQTT_OK)
            send_ack(c, MQTT_PUBREL, p->packet_id);
        return rc;
    case MQTT_PUBACK:
    case MQTT_PUBCOMP:
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        rc = handle_ack(c, p, why);
        mqtt__pump(c); /* on failure housekeeping tries again */
        return rc;
    case MQTT_PINGRESP:
        c->ping_outstanding = false;
        /* Queued only when wanted: an idle client should not wake its
         * application at every keepalive. */
        if (c->pingresp_events) {
            mqtt_event *ev = ack_event(MQTT_EV_PINGRESP, 0, NULL);
            if (!ev) {
                *why = nomem;
                return MQTT_ERR_NOMEM;
            }
            mqtt__event_push(c, ev);
        }
        return MQTT_OK;
    default:
        *why = "unexpected second CONNACK";
        return MQTT_ERR_PROTOCOL;
    }
}

/* No room for what more input would make: events for the application past
 * max_event_bytes, or replies past max_queued_bytes owed to a broker that
 * does not read. The input waits, unread, until there is room. mu held. */
static bool input_blocked(const mqtt_client *c)
{
    return mqtt__app_bytes(c) >= c->opt.max_event_bytes ||
           mqtt__owed_bytes(c) >= c->opt.max_queued_bytes;
}

/* Decodes and handles the complete packets in c->in while there is room;
 * mu held, events staged by the caller. */
static void process_input(mqtt_client *c)
{
    size_t off = 0;
    int rc = MQTT_OK;
    const char *why = NULL;
    c->in_backlog = false;
    while (off < c->in.len && c->tr) {
        if (input_blocked(c)) {
            c->in_backlog = true; /* housekeeping hands over held QoS 2 messages */
            break;
        }
        mqtt_packet p;
        size_t used = 0;
        rc = mqtt__decode_packet(c->in.data + off, c->in.len - off, c->opt.max_packet, &p, &used,
                                 &why);
        if (rc == MQTT_ERR_INCOMPLETE) {
            rc = MQTT_OK;
            break;
        }
        if (rc == MQTT_OK)
            rc = handle_packet(c, &p, &why);
        if (rc != MQTT_OK)
            break;
        off += used;
    }
    mqtt__buf_consume(&c->in, off);
    /* A packet must arrive within 1.5 x keepalive of its first byte. */
    if (c->in.len == 0 || c->in_backlog)
        c->partial_since = 0;
    else if (off > 0 || c->partial_since == 0)
        c->partial_since = mqtt__now();
    mqtt__buf_trim(&c->in, MQTT_BUF_KEEP);
    if (rc != MQTT_OK) {
        char text[200];
        snprintf(text, sizeof text, "%s: %s", mqtt_strerror(rc), why ? why : "?");
        mqtt__connection_lost(c, rc, text);
    }
}

/* Handles what was read, then makes its events visible only after the acks
 * owed for them were written (or the socket would not take more), so an
 * application that exits right after a message has acknowledged it. mu held. */
static void process_and_flush(mqtt_client *c)
{
    c->staging = true;
    process_input(c);
    c->staging = false;
    if (!c->st_head)
        return;
    if (c->tr && c->out.len) {
        pthread_mutex_unlock(&c->mu);
        write_output(c);
        pthread_mutex_lock(&c->mu);
    }
    mqtt__event_release_staged(c);
}

/* Reads what the socket has (mu not held), then handles it under the lock.
 * Each read takes at most READ_CHUNK: what waits in the socket stays there
 * until the input before it has been handled. */
static void read_input(mqtt_client *c)
{
    int status = MQTT_OK;
    size_t got = 0;
    for (int i = 0; i < READS_PER_WAKE; i++) {
        if (mqtt__buf_reserve(&c->in, READ_CHUNK) != MQTT_OK) {
            status = MQTT_ERR_NOMEM;
            break;
        }
        ssize_t n = c->tr->ops->read(c->tr, c->in.data + c->in.len, READ_CHUNK);
        if (n < 0)
            status = (int)-n;
        if (n <= 0)
            break;
        c->in.len += (size_t)n;
        got += (size_t)n;
        if ((size_t)n < READ_CHUNK)
            break;
    }
    pthread_mutex_lock(&c->mu);
    if (got)
        c->last_recv = mqtt__now();
    process_and_flush(c);
    if (status != MQTT_OK && c->tr)
        mqtt__connection_lost(c, status, status == MQTT_ERR_CLOSED
                                             ? "the broker closed the connection"
                                             : mqtt_strerror(status));
    pthread_mutex_unlock(&c->mu);
}

/* Swaps the shared out buffer into the writer's buffer; mu held. */
static bool take_output(mqtt_client *c)
{
    if (c->wpos < c->wbuf.len || c->out.len == 0)
        return c->wpos < c->wbuf.len;
    mqtt_buf t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->out.len = 0;
    c->wpos = 0;
    mqtt__buf_trim(&c->out, MQTT_BUF_KEEP);
    return true;
}

/* Writes until the socket would block or nothing is left; mu not held. */
static void write_output(mqtt_client *c)
{
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool more = c->tr && take_output(c);
        pthread_mutex_unlock(&c->mu);
        if (!more)
            return;
        ssize_t n = c->tr->ops->write(c->tr, c->wbuf.data + c->wpos, c->wbuf.len - c->wpos);
        if (n == 0)
            return;
        pthread_mutex_lock(&c->mu);
        if (n < 0) {
            mqtt__connection_lost(c, (int)-n, "writing to the broker failed");
        } else {
            c->wpos += (size_t)n;
            c->last_send = c->write_ok_at = mqtt__now();
        }
        pthread_mutex_unlock(&c->mu);
        if (n < 0)
            return;
    }
}

/* Keepalive duties; returns the next deadline. mu held. */
static double keepalive(mqtt_client *c, double now)
{
    double ka = c->keepalive;
    if (ka <= 0)
        return -1;
    double limit = 1.5 * ka;
    if (c->reading_paused) {
        /* PINGRESPs cannot be read while paused: keep pinging every
         * keepalive so the broker sees a live client. */
        c->last_recv = now;
        c->ping_outstanding = false;
        c->partial_since = 0;
    }
    const char *lost = NULL;
    if (now - c->last_recv >= limit)
        lost = "no answer from the broker within 1.5 x keepalive";
    else if (c->partial_since > 0 && now - c->partial_since >= limit)
        lost = "a packet took longer than 1.5 x keepalive to arrive";
    else if (mqtt__owed_bytes(c) > 0 && now - c->write_ok_at >= limit)
        lost = "the broker read nothing for 1.5 x keepalive";
    if (lost) {
        mqtt__connection_lost(c, MQTT_ERR_KEEPALIVE, lost);
        return -1;
    }
    if (!c->ping_outstanding && (now - c->last_send >= ka || now - c->last_recv >= ka)) {
        uint8_t b[2];
        mqtt__encode_empty(b, MQTT_PINGREQ);
        if (mqtt__buf_append(&c->out, b, sizeof b) != MQTT_OK) {
            mqtt__connection_lost(c, MQTT_ERR_NOMEM, "out of memory: cannot send PINGREQ");
            return -1;
        }
        c->ping_outstanding = true;
        c->last_send = now;
    }
    double next = c->last_recv + limit;
    if (!c->ping_outstanding) {
        double t = c->last_send + ka < c->last_recv + ka ? c->last_send + ka : c->last_recv + ka;
        if (t < next)
            next = t;
    }
    if (c->partial_since > 0 && c->partial_since + limit < next)
        next = c->partial_since + limit;
    if (mqtt__owed_bytes(c) > 0 && c->write_ok_at + limit < next)
        next = c->write_ok_at + limit;
    return next;
}

static void finish_disconnect(mqtt_client *c)
{
    uint8_t b[2];
    mqtt__encode_empty(b, MQTT_DISCONNECT);
    mqtt_transport *t = c->tr;
    if (t && c->wpos == c->wbuf.len && c->out.len == 0)
        t->ops->write(t, b, sizeof b);
    mqtt__connection_lost(c, MQTT_OK, "disconnected");
}

static void begin_disconnect(mqtt_client *c)
{
    if (c->state == ST_CONNECTED) {
        c->state = ST_DISCONNECTING;
        c->disconnect_deadline = mqtt__now() + c->opt.disconnect_timeout;
    } else {
        c->state = ST_IDLE;
    }
}

/* Disconnect flush; returns the deadline or -1 once done. mu held. */
static double flushing(mqtt_client *c, double now)
{
    mqtt_session_counts n;
    mqtt__session_counts(c->session, &n);
    bool drained = n.records == 0 && c->out.len == 0 && c->wpos == c->wbuf.len;
    if (drained || now >= c->disconnect_deadline) {
        finish_disconnect(c);
        return -1;
    }
    return c->disconnect_deadline;
}

static double earliest(double a, double b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

/* Timers and requests; returns the poll deadline (-1: none). mu held. */
static double housekeeping(mqtt_client *c, bool *connect_now)
{
    double now = mqtt__now();
    double deadline = -1;
    *connect_now = false;
    if (c->request == REQ_CONNECT) {
        c->request = REQ_NONE;
        if (c->tr)
            mqtt__connection_lost(c, MQTT_OK, "reconnecting on request");
        *connect_now = true;
    } else if (c->request == REQ_DISCONNECT) {
        c->request = REQ_NONE;
        begin_disconnect(c);
    }
    /* A reconnect makes events too: none starts while the application's bound is reached. */
    bool room = mqtt__app_bytes(c) < c->opt.max_event_bytes;
    if (c->state == ST_RETRY_WAIT && now >= c->retry_at && room) {
        if (c->hook) {
            c->state = ST_HOOK_WAIT;
            c->proceed = false;
            mqtt__event_status(c, MQTT_EV_BEFORE_RECONNECT, MQTT_OK, -1, false, NULL);
        } else {
            *connect_now = true;
        }
    }
    if (c->state == ST_HOOK_WAIT && c->proceed)
        *connect_now = true;
    if (*connect_now) {
        c->state = ST_CONNECTING;
        return -1;
    }
    /* Whatever a failed pump left behind gets one more try; failing again
     * ends the connection, and the reconnect resends it all. */
    if (c->state == ST_CONNECTED && mqtt__pump(c) < 0)
        mqtt__connection_lost(c, MQTT_ERR_NOMEM, "out of memory: cannot queue a packet");
    if (c->state == ST_CONNECTED || c->state == ST_DISCONNECTING)
        deadline = keepalive(c, now);
    if (c->state == ST_DISCONNECTING)
        deadline = earliest(deadline, flushing(c, now));
    /* Last: the keepalive check may itself have lost the connection. */
    if (c->state == ST_RETRY_WAIT)
        deadline = room ? c->retry_at : -1; /* taking events wakes the thread */
    bool paused = c->tr != NULL && input_blocked(c);
    if (paused)
        release_held(c); /* the PUBRELs that would free them cannot be read now */
    if (paused && !c->reading_paused)
        c->read_pauses++;
    c->reading_paused = paused;
    return deadline;
}

static int poll_timeout(double deadline)
{
    if (deadline < 0)
        return -1;
    double ms = (deadline - mqtt__now()) * 1000.0;
    if (ms <= 0)
        return 0;
    return ms > 3600000 ? 3600000 : (int)ms + 1;
}

/* Waits for the socket, a wake-up or the deadline, then reads and writes
 * what it can. mu held on entry and exit, released while waiting. */
static void wait_and_transfer(mqtt_client *c, double deadline)
{
    struct pollfd p[2] = {{.fd = c->wake_fd, .events = POLLIN}, {.fd = -1}};
    bool live = c->tr != NULL;
    bool read_wants_write = live && c->tr->want_write;
    if (live) {
        p[1].fd = c->tr->fd;
        p[1].events = (short)((c->reading_paused || c->in_backlog ? 0 : POLLIN) |
                              (take_output(c) || c->tr->want_write ? POLLOUT : 0));
    }
    pthread_mutex_unlock(&c->mu);
    int n = poll(p, live ? 2 : 1, poll_timeout(deadline));
    if (n > 0 && p[0].revents)
        mqtt__fd_clear(c->wake_fd);
    if (live && n > 0 &&
        (p[1].revents & (POLLIN | POLLHUP | POLLERR) ||
         (read_wants_write && p[1].revents & POLLOUT)))
        read_input(c);
    if (live)
        write_output(c);
    pthread_mutex_lock(&c->mu);
}

void *mqtt__thread_main(void *arg)
{
    mqtt_client *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        bool connect_now;
        double deadline = housekeeping(c, &connect_now);
        if (connect_now) {
            pthread_mutex_unlock(&c->mu);
            mqtt__do_connect(c);
            pthread_mutex_lock(&c->mu);
            if (c->state == ST_CONNECTED)
                process_and_flush(c); /* bytes that came with the CONNACK */
            continue;
        }
        /* Input read earlier and left for want of room, now that there is room. */
        if (c->in_backlog && c->tr && !c->reading_paused) {
            process_and_flush(c);
            continue;
        }
        if (c->state == ST_IDLE && c->exit_when_idle && c->request == REQ_NONE)
            break;
        wait_and_transfer(c, deadline);
    }
    if (c->tr)
        mqtt__connection_lost(c, MQTT_OK, "closed");
    pthread_mutex_unlock(&c->mu);
    return NULL;
}
