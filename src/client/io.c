/*
 * One client's turn on the I/O loop: reads and decodes in batches, answers
 * the protocol on its own (acks, pings, resends), writes everything queued
 * with as few syscalls as it can, keeps time for keepalive, back-off and the
 * disconnect flush, then tells the loop what to watch and when to come back.
 * Runs on the loop thread only; never calls the application.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "alloc.h"
#include "client_internal.h"

#define READ_CHUNK (64 * 1024)
#define READS_PER_WAKE 4
_Static_assert(READ_CHUNK >= MQTT_TRANSPORT_WHOLE_READ, "every full read is a whole one");

static bool write_output(mqtt_client *c);

/* One packet from the broker, in the connection's protocol level. */
static int decode_in(const mqtt_client *c, const uint8_t *buf, size_t len, mqtt_packet *p,
                     size_t *used, const char **why)
{
    mqtt_decode_opts o = {c->io.version == MQTT_V5 ? MQTT_V5 : MQTT_V311, MQTT_ROLE_CLIENT,
                          c->io.max_packet};
    return mqtt__decode(buf, len, &o, p, used, why);
}

/* Queues a reply; handle_packet reserved the room for it. */
static void send_ack(mqtt_client *c, uint8_t type, uint16_t id)
{
    uint8_t b[4];
    mqtt__encode_ack(b, type, id);
    mqtt__buf_append(&c->sh.out, b, sizeof b);
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
    if (!mqtt__session_in_has(c->sh.session, p->packet_id)) {
        if (p->version == MQTT_V5 && !mqtt__v5_receive_room(c))
            return MQTT_ERR_PROTOCOL;
        mqtt_event *held = mqtt__event_message(MQTT_EV_PUBREL, p);
        mqtt_event *arrival = mqtt__event_ack(MQTT_EV_PUBLISH, p->packet_id, NULL);
        if (!held || !arrival ||
            mqtt__session_in_put(c->sh.session, p->packet_id, held) != MQTT_OK) {
            mqtt_event_free(held);
            mqtt_event_free(arrival);
            return MQTT_ERR_NOMEM;
        }
        c->sh.held_bytes += held->bytes;
        mqtt__persist_in(c, MQTT_PUBLISH, p);
        mqtt__event_push(c, arrival);
    }
    send_ack(c, MQTT_PUBREC, p->packet_id);
    return MQTT_OK;
}

static void handle_pubrel(mqtt_client *c, const mqtt_packet *p)
{
    bool known = mqtt__session_in_has(c->sh.session, p->packet_id);
    mqtt_event *ev = mqtt__session_in_take(c->sh.session, p->packet_id);
    if (known)
        mqtt__persist_in(c, MQTT_PUBREL, p);
    if (ev) { /* NULL: unknown, or handed over early by release_held */
        c->sh.held_bytes -= ev->bytes;
        mqtt__event_push(c, ev);
    }
    if (known || p->version != MQTT_V5) {
        send_ack(c, MQTT_PUBCOMP, p->packet_id);
        return;
    }
    /* 5.0 says which: an id no PUBLISH left waiting. */
    mqtt_ack_params a = {MQTT_PUBCOMP, p->packet_id, MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND, NULL, 0};
    uint8_t b[5];
    mqtt__buf_append(&c->sh.out, b, mqtt__encode_ack_v(b, MQTT_V5, &a));
}

static void deliver_early(void *item, void *ud)
{
    mqtt_client *c = ud;
    mqtt_event *ev = item;
    c->sh.held_bytes -= ev->bytes;
    mqtt__persist_in(c, 0, &(mqtt_packet){.packet_id = ev->mid});
    mqtt__event_push(c, ev);
}

/* The bound is reached and part of it is QoS 2 messages whose PUBRELs wait
 * unread behind the input: hand them over now, oldest first, so the
 * application can make room (their ids stay known: still exactly once). */
static void release_held(mqtt_client *c)
{
    if (c->sh.held_bytes > 0 && mqtt__app_bytes(c) >= c->set.opt.max_event_bytes)
        (void)mqtt__session_in_replace(c->sh.session, &mqtt__delivered_mark, deliver_early, c);
}

/* MQTT-3.9.3-1: a SUBACK has one return code per filter subscribed. */
static bool suback_fits(const mqtt_client *c, const mqtt_packet *p)
{
    const mqtt_record *r = mqtt__session_awaiting(c->sh.session, p->packet_id);
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
    bool v5 = p->version == MQTT_V5;
    mqtt_event *ev = mqtt__event_ack(p->type, p->packet_id, p->type == MQTT_SUBACK || v5 ? p : NULL);
    if (!ev) {
        *why = nomem;
        return MQTT_ERR_NOMEM;
    }
    /* The record matters to the store alone: without one, no lookup. */
    const mqtt_record *r =
        c->sh.store ? mqtt__session_awaiting(c->sh.session, p->packet_id) : NULL;
    uint64_t key = mqtt__persist_key(c, r);
    /* A publish the broker refused is over, with no PUBREL. */
    bool refused = v5 && p->reason_code >= 0x80 && p->type == MQTT_PUBREC;
    mqtt_ack_result res = refused ? mqtt__session_refused(c->sh.session, p->packet_id)
                                  : mqtt__session_ack(c->sh.session, p->type, p->packet_id);
    if (res == MQTT_ACK_NEW || res == MQTT_ACK_DOWNGRADED) {
        /* PUBREC moves the record on (it stays); every other ack ends it. */
        bool stays = p->type == MQTT_PUBREC && !refused && res == MQTT_ACK_NEW;
        if (key && !stays)
            mqtt__persist_forget(c, r);
        mqtt__persist_sent(c, key, stays ? r : NULL, stays);
        ev->downgraded = res == MQTT_ACK_DOWNGRADED;
        c->sh.downgraded += ev->downgraded;
        mqtt__event_push(c, ev);
        return MQTT_OK;
    }
    mqtt_event_free(ev);
    if (p->type != MQTT_PUBREC)
        mqtt__log(c, 2, "ignored ack 0x%02x for unknown packet id %u", p->type, p->packet_id);
    return MQTT_OK;
}

/* Under 5.0 the topic may come through an alias: the message always carries
 * the full topic. */
static int receive_publish(mqtt_client *c, const mqtt_packet *p, const char **why)
{
    mqtt_packet q;
    if (p->version == MQTT_V5) {
        q = *p;
        uint8_t reason = 0;
        int rc = mqtt__v5_alias_in(c, &q, &reason, why);
        if (rc != MQTT_OK) {
            c->io.lost_reason = reason ? reason : -1;
            return rc;
        }
        p = &q;
    }
    int rc = handle_publish(c, p);
    if (rc == MQTT_ERR_PROTOCOL)
        *why = "more QoS 2 messages unreleased than the receive maximum the client announced";
    else if (rc != MQTT_OK)
        *why = "no memory to queue an event or a reply";
    return rc;
}

/* Returns MQTT_OK or a status that ends the connection (*why says why). */
static int handle_packet(mqtt_client *c, const mqtt_packet *p, const char **why)
{
    static const char nomem[] = "no memory to queue an event or a reply";
    /* Room for the one reply a packet may need, so no reply is ever lost. */
    int rc = mqtt__buf_reserve(&c->sh.out, 5);
    if (rc != MQTT_OK) {
        *why = nomem;
        return rc;
    }
    switch (p->type) {
    case MQTT_PUBLISH:
        return receive_publish(c, p, why);
    case MQTT_PUBREL:
        handle_pubrel(c, p);
        return MQTT_OK;
    case MQTT_PUBREC:
        rc = handle_ack(c, p, why);
        if (rc == MQTT_OK && p->reason_code < 0x80) /* 3.1.1: always 0 */
            send_ack(c, MQTT_PUBREL, p->packet_id);
        else
            mqtt__pump(c); /* a refusal freed its place in the window */
        return rc;
    case MQTT_PUBACK:
    case MQTT_PUBCOMP:
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        rc = handle_ack(c, p, why);
        mqtt__pump(c); /* on failure housekeeping tries again */
        return rc;
    case MQTT_PINGRESP:
        c->io.ping_outstanding = false;
        /* Queued only when wanted: an idle client should not wake its
         * application at every keepalive. */
        if (c->sh.pingresp_events) {
            mqtt_event *ev = mqtt__event_ack(MQTT_EV_PINGRESP, 0, NULL);
            if (!ev) {
                *why = nomem;
                return MQTT_ERR_NOMEM;
            }
            mqtt__event_push(c, ev);
        }
        return MQTT_OK;
    default:
        return mqtt__v5_handle(c, p, why);
    }
}

/* No room for what more input would make: events for the application past
 * max_event_bytes, or replies past max_queued_bytes owed to a broker that
 * does not read. The input waits, unread, until there is room. mu held. */
static bool input_blocked(const mqtt_client *c)
{
    return mqtt__app_bytes(c) >= c->set.opt.max_event_bytes ||
           mqtt__owed_bytes(c) >= c->set.opt.max_queued_bytes;
}

/* The first packet of a handshake must be a whole CONNACK; returns the bytes
 * it took, 0 while it is incomplete or when the attempt ended. */
static size_t handshake_input(mqtt_client *c, const uint8_t *data, size_t len)
{
    mqtt_packet p;
    size_t used = 0;
    const char *why = NULL;
    int rc = decode_in(c, data, len, &p, &used, &why);
    if (rc == MQTT_ERR_INCOMPLETE)
        return 0;
    char text[200];
    /* A 3.1.1 broker refuses a 5.0 CONNECT with its own CONNACK, code 1. */
    static const uint8_t v311_refusal[] = {MQTT_CONNACK, 2, 0, 1};
    if (rc != MQTT_OK && len >= 4 && memcmp(data, v311_refusal, 4) == 0 &&
        mqtt__attempt_downgrade(c, "unacceptable protocol version"))
        return 0;
    if (rc == MQTT_OK && p.type == MQTT_AUTH) {
        rc = mqtt__v5_handle(c, &p, &why); /* enhanced authentication before CONNACK */
        if (rc == MQTT_OK)
            return used;
    }
    if (rc == MQTT_OK && p.type != MQTT_CONNACK) {
        snprintf(text, sizeof text, "the broker sent packet type 0x%02x before CONNACK", p.type);
        mqtt__link_lost(c, MQTT_ERR_PROTOCOL, text);
        return 0;
    }
    if (rc != MQTT_OK) {
        snprintf(text, sizeof text, "invalid CONNACK: %s", why ? why : mqtt_strerror(rc));
        mqtt__link_lost(c, rc, text);
        return 0;
    }
    return mqtt__attempt_connack(c, &p) == MQTT_OK ? used : 0;
}

/* Decodes and handles the complete packets of data[0, len) while there is
 * room; returns the bytes handled. mu held, events staged by the caller. */
static size_t process_input(mqtt_client *c, const uint8_t *data, size_t len)
{
    size_t off = 0;
    int rc = MQTT_OK;
    const char *why = NULL;
    c->io.in_backlog = false;
    if (c->io.phase == PH_HANDSHAKE) {
        off = handshake_input(c, data, len);
        if (off == 0)
            return 0; /* the CONNACK is incomplete, or the attempt is over */
    }
    while (off < len && c->io.tr) {
        if (input_blocked(c)) {
            c->io.in_backlog = true; /* housekeeping hands over held QoS 2 messages */
            break;
        }
        mqtt_packet p;
        size_t used = 0;
        rc = decode_in(c, data + off, len - off, &p, &used, &why);
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
    if (rc != MQTT_OK) {
        char text[300];
        snprintf(text, sizeof text, "%s: %s", mqtt_strerror(rc), why ? why : "?");
        mqtt__v5_answer_fault(c, rc);
        mqtt__connection_lost(c, rc, text);
    }
    return off;
}

/* Keeps what process_input left of data[0, len) (a packet not yet whole, or
 * packets waiting for room) in the client's own buffer; data is that buffer
 * or the loop's. An idle client holds no input buffer. mu held. */
static void keep_input(mqtt_client *c, const uint8_t *data, size_t len, size_t off)
{
    if (!c->io.tr)
        return; /* the connection ended, and its buffers with it */
    if (data == c->io.in.data) {
        mqtt__buf_consume(&c->io.in, off);
    } else {
        c->io.in.len = 0;
        if (mqtt__buf_append(&c->io.in, data + off, len - off) != MQTT_OK) {
            mqtt__connection_lost(c, MQTT_ERR_NOMEM, "out of memory: cannot keep a partial packet");
            return;
        }
    }
    /* A packet must arrive within 1.5 x keepalive of its first byte. */
    if (c->io.in.len == 0 || c->io.in_backlog)
        c->io.partial_since = 0;
    else if (off > 0 || c->io.partial_since == 0)
        c->io.partial_since = mqtt__now();
    mqtt__buf_trim(&c->io.in, c->io.in.len ? MQTT_BUF_KEEP : 0);
}

/* Handles data[0, len), then makes its events visible only after the acks
 * owed for them were written (or the socket would not take more), so an
 * application that exits right after a message has acknowledged it. mu held. */
static void process_and_flush(mqtt_client *c, const uint8_t *data, size_t len)
{
    c->sh.staging = true;
    keep_input(c, data, len, process_input(c, data, len));
    c->sh.staging = false;
    if (!c->sh.st_head)
        return;
    if (c->io.tr && c->sh.out.len)
        write_output(c);
    /* A message is handed over once its removal is on disk: never twice. */
    (void)mqtt__persist_settle(c);
    mqtt__event_release_staged(c);
}

/* Where one wake's reads go. */
typedef struct input_area {
    uint8_t *data;
    size_t len, cap;
} input_area;

/* Reads what the socket has (mu not held) into the loop's buffer, after the
 * partial packet the client kept, moved there; while a packet larger than a
 * read arrives, into the client's own buffer, grown in place. Each read
 * takes at most READ_CHUNK: what waits in the socket stays there until the
 * input before it has been handled. a->data is NULL when nothing can be read. */
static int read_socket(mqtt_client *c, input_area *a, size_t *got)
{
    bool own = c->io.in.len > READ_CHUNK;
    if (!own) {
        uint8_t *lb = mqtt__loop_read_buffer(&c->member);
        if (!lb)
            return MQTT_ERR_NOMEM;
        *a = (input_area){lb, c->io.in.len, MQTT_LOOP_READ_BYTES};
        if (a->len)
            memcpy(lb, c->io.in.data, a->len);
        c->io.in.len = 0; /* its memory stays for what is left over */
    }
    for (int i = 0; i < READS_PER_WAKE; i++) {
        if (own) {
            if (mqtt__buf_reserve(&c->io.in, READ_CHUNK) != MQTT_OK)
                return MQTT_ERR_NOMEM;
            *a = (input_area){c->io.in.data, c->io.in.len, c->io.in.cap};
        }
        size_t room = a->cap - a->len;
        if (room > READ_CHUNK)
            room = READ_CHUNK;
        /* The loop's buffer is (nearly) full. A short read could leave input
         * inside TLS or WebSocket that no poll would report: the rest waits
         * in the socket for the next turn instead. */
        if (room < MQTT_TRANSPORT_WHOLE_READ)
            break;
        ssize_t n = c->io.tr->ops->read(c->io.tr, a->data + a->len, room);
        if (n <= 0)
            return n < 0 ? (int)-n : MQTT_OK;
        a->len += (size_t)n;
        *got += (size_t)n;
        if (own)
            c->io.in.len = a->len;
        if ((size_t)n < room)
            break;
    }
    return MQTT_OK;
}

/* Reads, then handles what came under the lock; returns with mu held. */
static void read_input(mqtt_client *c)
{
    input_area a = {NULL, 0, 0};
    size_t got = 0;
    int status = read_socket(c, &a, &got);
    pthread_mutex_lock(&c->mu);
    if (got)
        c->io.last_recv = mqtt__now();
    if (a.data)
        process_and_flush(c, a.data, a.len);
    if (status != MQTT_OK && c->io.tr && c->io.phase == PH_HANDSHAKE)
        mqtt__link_lost(c, status, "the broker closed the connection before CONNACK");
    else if (status != MQTT_OK && c->io.tr)
        mqtt__link_lost(c, status, status == MQTT_ERR_CLOSED ? "the broker closed the connection"
                                                             : mqtt_strerror(status));
}

/* Swaps the shared out buffer into the writer's buffer; mu held. */
static bool take_output(mqtt_client *c)
{
    if (c->sh.wpos < c->sh.wbuf.len || c->sh.out.len == 0)
        return c->sh.wpos < c->sh.wbuf.len;
    mqtt_buf t = c->sh.wbuf;
    c->sh.wbuf = c->sh.out;
    c->sh.out = t;
    c->sh.out.len = 0;
    c->sh.wpos = 0;
    mqtt__buf_trim(&c->sh.out, MQTT_BUF_KEEP);
    return true;
}

/* Writes until the socket would block or nothing is left; mu held, let go
 * during each write. Returns true when bytes wait for the socket to take
 * them. A drained writer keeps its buffer for the next turn unless a large
 * packet grew it. */
static bool write_output(mqtt_client *c)
{
    /* Nothing reaches the broker before the changes it follows are on disk
     * (the store's timer brings the loop back after a failed write). */
    if (c->sh.out.len && !mqtt__persist_settle(c))
        return false;
    while (c->io.tr && take_output(c)) {
        mqtt_transport *t = c->io.tr;
        const uint8_t *p = c->sh.wbuf.data + c->sh.wpos;
        size_t avail = c->sh.wbuf.len - c->sh.wpos;
        pthread_mutex_unlock(&c->mu);
        ssize_t n = t->ops->write(t, p, avail);
        pthread_mutex_lock(&c->mu);
        if (n == 0)
            return true;
        if (n < 0 && c->io.phase == PH_HANDSHAKE) {
            char text[128];
            snprintf(text, sizeof text, "sending CONNECT failed: %s", mqtt_strerror((int)-n));
            mqtt__link_lost(c, (int)-n, text);
        } else if (n < 0) {
            mqtt__link_lost(c, (int)-n, "writing to the broker failed");
        }
        if (n < 0)
            return false;
        c->sh.wpos += (size_t)n;
        c->io.wrote = true;
        c->io.last_send = c->io.write_ok_at = mqtt__now();
    }
    if (c->sh.wpos == c->sh.wbuf.len) {
        c->sh.wbuf.len = c->sh.wpos = 0;
        mqtt__buf_trim(&c->sh.wbuf, MQTT_BUF_KEEP);
    }
    return false;
}

/* A turn that wrote nothing and owes nothing: the client is idle, and an
 * idle client holds no output buffer. A busy one keeps its two from turn to
 * turn instead of allocating them again for each write. mu held. */
static void release_output(mqtt_client *c)
{
    if (c->io.wrote || mqtt__owed_bytes(c) > 0)
        return;
    mqtt__buf_free(&c->sh.out);
    mqtt__buf_free(&c->sh.wbuf);
    c->sh.wpos = 0;
}

/* Keepalive duties; returns the next deadline. mu held. */
static double keepalive(mqtt_client *c, double now)
{
    double ka = c->io.keepalive;
    if (ka <= 0)
        return -1;
    double limit = 1.5 * ka;
    if (c->sh.reading_paused) {
        /* PINGRESPs cannot be read while paused: keep pinging every
         * keepalive so the broker sees a live client. */
        c->io.last_recv = now;
        c->io.ping_outstanding = false;
        c->io.partial_since = 0;
    }
    const char *lost = NULL;
    if (now - c->io.last_recv >= limit)
        lost = "no answer from the broker within 1.5 x keepalive";
    else if (c->io.partial_since > 0 && now - c->io.partial_since >= limit)
        lost = "a packet took longer than 1.5 x keepalive to arrive";
    else if (mqtt__owed_bytes(c) > 0 && now - c->io.write_ok_at >= limit)
        lost = "the broker read nothing for 1.5 x keepalive";
    if (lost) {
        mqtt__connection_lost(c, MQTT_ERR_KEEPALIVE, lost);
        return -1;
    }
    if (!c->io.ping_outstanding && (now - c->io.last_send >= ka || now - c->io.last_recv >= ka)) {
        uint8_t b[2];
        mqtt__encode_empty(b, MQTT_PINGREQ);
        if (mqtt__buf_append(&c->sh.out, b, sizeof b) != MQTT_OK) {
            mqtt__connection_lost(c, MQTT_ERR_NOMEM, "out of memory: cannot send PINGREQ");
            return -1;
        }
        c->io.ping_outstanding = true;
        c->io.last_send = now;
    }
    double next = c->io.last_recv + limit;
    if (!c->io.ping_outstanding) {
        double t = c->io.last_send + ka < c->io.last_recv + ka ? c->io.last_send + ka
                                                               : c->io.last_recv + ka;
        if (t < next)
            next = t;
    }
    if (c->io.partial_since > 0 && c->io.partial_since + limit < next)
        next = c->io.partial_since + limit;
    if (mqtt__owed_bytes(c) > 0 && c->io.write_ok_at + limit < next)
        next = c->io.write_ok_at + limit;
    return next;
}

static void finish_disconnect(mqtt_client *c)
{
    mqtt_buf b = {0};
    mqtt_transport *t = c->io.tr;
    if (t && c->sh.wpos == c->sh.wbuf.len && c->sh.out.len == 0) {
        uint8_t small[3];
        size_t n = mqtt__v5_disconnect_short(c, small);
        if (n > 0)
            t->ops->write(t, small, n);
        else if (mqtt__v5_disconnect_packet(c, &b) == MQTT_OK)
            t->ops->write(t, b.data, b.len);
    }
    mqtt__buf_free(&b);
    mqtt__connection_lost(c, MQTT_OK, "disconnected");
}

static void begin_disconnect(mqtt_client *c)
{
    if (c->sh.state == ST_CONNECTED) {
        c->sh.state = ST_DISCONNECTING;
        c->io.disconnect_deadline = mqtt__now() + c->set.opt.disconnect_timeout;
    } else {
        c->sh.state = ST_IDLE;
    }
}

/* Disconnect flush; returns the deadline or -1 once done. mu held. */
static double flushing(mqtt_client *c, double now)
{
    mqtt_session_counts n;
    mqtt__session_counts(c->sh.session, &n);
    bool drained = n.records == 0 && c->sh.out.len == 0 && c->sh.wpos == c->sh.wbuf.len;
    if (drained || now >= c->io.disconnect_deadline) {
        finish_disconnect(c);
        return -1;
    }
    return c->io.disconnect_deadline;
}

static double earliest(double a, double b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

/* Requests from the application; mu held. Returns true to start an attempt. */
static bool take_request(mqtt_client *c)
{
    client_request req = c->sh.request;
    c->sh.request = REQ_NONE;
    if (req == REQ_CONNECT) {
        if (c->io.tr)
            mqtt__connection_lost(c, MQTT_OK, "reconnecting on request");
        return true;
    }
    if (req == REQ_DISCONNECT)
        begin_disconnect(c);
    return false;
}

/* The back-off and the reconnect hook: returns true to start an attempt. */
static bool retry_due(mqtt_client *c, double now, bool room)
{
    if (c->sh.state == ST_RETRY_WAIT && now >= c->sh.retry_at && room) {
        if (!c->sh.hook)
            return true;
        c->sh.state = ST_HOOK_WAIT;
        c->sh.proceed = false;
        mqtt__event_status(c, MQTT_EV_BEFORE_RECONNECT, MQTT_OK, -1, false, NULL);
    }
    return c->sh.state == ST_HOOK_WAIT && c->sh.proceed;
}

/* Timers and requests; returns the next deadline (-1: none, -2: look again).
 * mu held. */
static double housekeeping(mqtt_client *c)
{
    /* Being destroyed: nothing starts, the detach ends what runs. */
    if (c->sh.stop)
        return -1;
    double now = mqtt__now();
    if (c->io.phase != PH_NONE) {
        /* Requests wait until the attempt under way has ended. */
        double d = mqtt__attempt_tend(c, now);
        if (c->io.phase != PH_NONE || d >= 0)
            return d;
    }
    /* A reconnect makes events too: none starts while the application's bound is reached. */
    bool room = mqtt__app_bytes(c) < c->set.opt.max_event_bytes;
    if (take_request(c) || retry_due(c, now, room)) {
        mqtt__attempt_begin(c);
        return -2;
    }
    double deadline = -1;
    /* Whatever a failed pump left behind gets one more try; failing again
     * ends the connection, and the reconnect resends it all. */
    if (c->sh.state == ST_CONNECTED && mqtt__pump(c) < 0)
        mqtt__connection_lost(c, MQTT_ERR_NOMEM, "out of memory: cannot queue a packet");
    if (c->sh.state == ST_CONNECTED || c->sh.state == ST_DISCONNECTING)
        deadline = keepalive(c, now);
    if (c->sh.state == ST_DISCONNECTING)
        deadline = earliest(deadline, flushing(c, now));
    /* Last: the keepalive check may itself have lost the connection. */
    if (c->sh.state == ST_RETRY_WAIT)
        deadline = room ? c->sh.retry_at : -1; /* taking events wakes the loop */
    bool paused = c->io.tr != NULL && input_blocked(c);
    if (paused)
        release_held(c); /* the PUBRELs that would free them cannot be read now */
    if (paused && !c->sh.reading_paused)
        c->sh.read_pauses++;
    c->sh.reading_paused = paused;
    return deadline;
}

/* Runs housekeeping until nothing more is due now; returns the deadline. mu held. */
static double tend(mqtt_client *c)
{
    for (;;) {
        double deadline = housekeeping(c);
        if (deadline == -2)
            continue;
        /* Input read earlier and left for want of room, now that there is room. */
        if (c->io.in_backlog && c->io.tr && !c->sh.reading_paused) {
            process_and_flush(c, c->io.in.data, c->io.in.len);
            continue;
        }
        if (c->sh.idle_wanted && c->sh.state == ST_IDLE && c->sh.request == REQ_NONE) {
            c->sh.idle_wanted = false;
            pthread_cond_broadcast(&c->cv);
        }
        /* The store's changes go to disk connected or not (a publisher may wait). */
        return earliest(deadline, mqtt__persist_tend(c));
    }
}

static bool readable(const mqtt_client *c, uint32_t events)
{
    return c->io.tr && (events & (EPOLLIN | EPOLLHUP | EPOLLERR) ||
                     (c->io.tr->want_write && events & EPOLLOUT));
}

/* Housekeeping, then one write of everything queued (the replies to the
 * input, the application's publishes, a ping, the CONNECT); again when the
 * write changed what is due: the connection was lost, or the owed bytes
 * went out so reading may resume (and waiting input be handled). mu held
 * throughout but during writes. Returns the deadline; *blocked: bytes wait
 * for the socket. */
static double turn(mqtt_client *c, bool *blocked)
{
    for (;;) {
        double deadline = tend(c);
        bool live = c->io.tr != NULL;
        *blocked = live && write_output(c);
        bool again = (live && !c->io.tr) || (c->sh.reading_paused && !input_blocked(c));
        if (!again) {
            release_output(c);
            return deadline;
        }
    }
}

void mqtt__client_service(mqtt_member *m, uint32_t events)
{
    mqtt_client *c = (mqtt_client *)(void *)((char *)m - offsetof(mqtt_client, member));
    if (events & MQTT_LOOP_DETACH) {
        pthread_mutex_lock(&c->mu);
        mqtt__link_release(c);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (events)
        mqtt__attempt_progress(c); /* an open's fd is ready */
    c->io.wrote = false;
    if (readable(c, events))
        read_input(c);
    else
        pthread_mutex_lock(&c->mu);
    bool blocked, in, out;
    double deadline = turn(c, &blocked);
    int fd = mqtt__attempt_fd(c, &in, &out);
    if (fd < 0) {
        fd = c->io.tr ? c->io.tr->fd : -1;
        in = c->io.tr && !(c->sh.reading_paused || c->io.in_backlog);
        out = c->io.tr && (blocked || c->io.tr->want_write);
    }
    pthread_mutex_unlock(&c->mu);
    if (!mqtt__loop_watch(m, fd, in, out)) {
        /* A socket the loop cannot watch would hang: lose it by name. */
        pthread_mutex_lock(&c->mu);
        mqtt__link_lost(c, MQTT_ERR_SYSTEM, mqtt_system_error());
        deadline = turn(c, &blocked);
        pthread_mutex_unlock(&c->mu);
    }
    mqtt__loop_timer(m, deadline);
}
