/*
 * The client-stream fuzz harness, shared by fuzz_client_stream.c (MQTT 3.1.1)
 * and fuzz_client_stream_v5.c (MQTT 5.0 and "auto"): the client's receive path
 * end to end. A real mqtt_client with
 * its I/O thread talks to a "broker" played by this thread over a socketpair;
 * the input is a script: raw byte chunks (each read by the client as its own
 * read), well-formed acks with live, stale or made-up ids, broker publishes,
 * client publishes and subscriptions, clock jumps, dropped connections,
 * failed reconnects, disconnect and connect again. Checks: every packet the
 * client writes is well formed, and the events it reports obey the protocol
 * (each outgoing message completes once, through the right acks; each QoS 2
 * arrival is released once; nothing waits behind a window with room).
 * Linked with -Wl,--wrap=mqtt__transport_open,--wrap=mqtt__now,--wrap=epoll_wait
 * so no src/ change is needed: the client's transport open returns one end of a
 * socketpair, its clock is real time plus an offset the script moves, and
 * the I/O loop's epoll_wait tells the broker when it is idle, which makes each
 * step of the script land at the same point of the client's work every run.
 * FUZZ_TRACE=1 in the environment prints the conversation.
 * Under 5.0 (fz_v5) the script also chooses the client's CONNECT properties
 * and alias mode, the CONNACK's properties, and 5.0 packets (acks with reason
 * codes and properties, aliases, DISCONNECT, AUTH); every packet the client
 * writes must decode with the codec in the broker role, and follow what the
 * CONNACK announced (topic aliases, maximum packet size).
 */
#ifndef ZMQTT_FUZZ_CLIENT_H
#define ZMQTT_FUZZ_CLIENT_H

#include <errno.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"
#include "fuzz_util.h"

#define WAIT_MS 300       /* longest wait for the client to act on one step */
#define MAX_PUBLISHES 512 /* per run: packet ids never wrap, so an id names one message */

/* ---- fake clock and fake transport, through the linker's --wrap ------------- */

double __wrap_mqtt__now(void);
int __wrap_mqtt__transport_open(const mqtt_endpoint *ep, const mqtt_transport_env *env,
                                mqtt_transport **out, char *err, size_t errlen);

static atomic_llong clock_offset_ns;

/* The I/O thread's progress, counted by the wrapped transport read and poll. */
static atomic_uint io_reads, io_polls, io_poll_reads;
static pthread_t main_thread;

/* An eventfd the I/O thread signals each time it enters poll; made by start(),
 * before any I/O thread runs, and kept for the life of the process. */
static int idle_efd = -1;

static int idle_fd(void)
{
    if (idle_efd < 0)
        idle_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    FZ_CHECK(idle_efd >= 0);
    return idle_efd;
}

int __real_epoll_wait(int ep, struct epoll_event *evs, int n, int timeout);
int __wrap_epoll_wait(int ep, struct epoll_event *evs, int n, int timeout);

int __wrap_epoll_wait(int ep, struct epoll_event *evs, int n, int timeout)
{
    if (!pthread_equal(pthread_self(), main_thread)) {
        atomic_store(&io_poll_reads, atomic_load(&io_reads));
        atomic_fetch_add(&io_polls, 1);
        uint64_t one = 1;
        ssize_t w = write(idle_fd(), &one, sizeof one);
        (void)w;
    }
    return __real_epoll_wait(ep, evs, n, timeout);
}

static double real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double __wrap_mqtt__now(void)
{
    return real_now() + (double)atomic_load(&clock_offset_ns) / 1e9;
}

static ssize_t fake_read(mqtt_transport *t, void *buf, size_t len)
{
    atomic_fetch_add(&io_reads, 1); /* before the read: see quiesce() */
    ssize_t n = recv(t->fd, buf, len, MSG_DONTWAIT);
    if (n > 0)
        return n;
    if (n == 0)
        return -MQTT_ERR_CLOSED;
    return errno == EAGAIN || errno == EINTR ? 0 : -MQTT_ERR_IO;
}

static ssize_t fake_write(mqtt_transport *t, const void *buf, size_t len)
{
    ssize_t n = send(t->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EINTR ? 0 : -MQTT_ERR_IO;
}

static void fake_close(mqtt_transport *t)
{
    close(t->fd);
    free(t);
}

static const mqtt_transport_ops fake_ops = {.read = fake_read, .write = fake_write,
                                            .close = fake_close}; /* made open: no progress */

/* Hand-over of new connections from the I/O thread to the broker. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_new_fd = -1; /* broker end of the newest connection, not yet adopted */
static int g_fail_opens;  /* this many opens fail as if the broker were down */

/* Open at once (MQTT_OK): the loop hands it over without polling it. */
int __wrap_mqtt__transport_open(const mqtt_endpoint *ep, const mqtt_transport_env *env,
                                mqtt_transport **out, char *err, size_t errlen)
{
    (void)ep, (void)env;
    int sv[2];
    pthread_mutex_lock(&g_mu);
    if (g_fail_opens > 0) {
        g_fail_opens--;
        pthread_mutex_unlock(&g_mu);
        snprintf(err, errlen, "fake broker is down");
        return MQTT_ERR_CONNECT;
    }
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    mqtt_transport *t = calloc(1, sizeof *t);
    FZ_CHECK(t != NULL);
    t->ops = &fake_ops;
    t->fd = sv[0];
    if (g_new_fd >= 0)
        close(g_new_fd); /* abandoned before the broker saw it */
    g_new_fd = sv[1];
    pthread_mutex_unlock(&g_mu);
    *out = t;
    return MQTT_OK;
}

/* The target's choice, made before the first run: MQTT 5.0 in the script. */
static bool fz_v5;

/* ---- what the application has seen: the oracle ----------------------- */

enum { OUT_NONE, OUT_PUB1, OUT_PUB2_REC, OUT_PUB2_COMP, OUT_SUB, OUT_UNSUB };

typedef struct run {
    mqtt_client *c;
    fz_in in;
    uint8_t out[65536];     /* per id: what the application waits for (OUT_*) */
    uint8_t ever[65536];    /* per id: 1 << OUT_* of every kind it was allocated for */
    uint8_t fresh[65536];   /* per id: PUBLISH frames written without DUP */
    bool held[65536];       /* per id: QoS 2 arrival reported, release pending */
    unsigned publishes;
    uint16_t keepalive;
    /* the broker's side of the current connection */
    int fd;
    bool connect_seen, connack_sent, disconnect_seen;
    mqtt_buf rx;            /* what the client wrote, not yet parsed */
    uint16_t ids[32];       /* recent ids the client used, for acks */
    unsigned nids;
    /* MQTT 5.0, per connection: the CONNECT's level and what each side announced */
    uint8_t version;
    uint32_t srv_max_packet; /* our CONNACK's maximum_packet_size; 0: none */
    uint16_t srv_alias_max;  /* our CONNACK's topic_alias_maximum */
    uint16_t cli_alias_max;  /* the client's CONNECT's topic_alias_maximum */
    char alias_topic[8][16]; /* the client's aliases as we learnt them; "" unset */
    bool limits_known;       /* our CONNACK accepted it (not raw script bytes) */
    bool manual_alias;       /* the client publishes with its own topic_alias */
} run;

static run R;

/* FUZZ_TRACE=1 in the environment prints what the broker and the application see. */
static bool tracing;
#define TRACE(...)                                                                       \
    do {                                                                                 \
        if (tracing)                                                                     \
            fprintf(stderr, __VA_ARGS__);                                                \
    } while (0)

static const char *const topics[] = {"a", "a/b", "$SYS/x", "t/\xC3\xA9", "x/y/z", "+", "",
                                     "a/#"};

/* The property block walks to its end; nothing under 3.1.1, none in a reason list. */
static void check_event_props(const mqtt_event *ev)
{
    size_t pos = 0, n = 0;
    mqtt_property pr;
    FZ_CHECK((ev->props == NULL) == (ev->props_len == 0));
    FZ_CHECK((ev->reasons == NULL) == (ev->reason_count == 0));
    while (mqtt_event_property_next(ev, &pos, &pr))
        n++;
    FZ_CHECK(pos == ev->props_len && (n > 0) == (ev->props_len > 0));
    if (!fz_v5)
        FZ_CHECK(ev->props_len == 0 && ev->type != MQTT_EV_AUTH);
}

static void take_events(void)
{
    mqtt_event *ev = mqtt_client_take_events(R.c);
    while (ev) {
        mqtt_event *next = ev->next;
        uint16_t id = ev->mid;
        TRACE("event 0x%02x mid %u status %d reason 0x%02x%s%s\n", (unsigned)ev->type, id,
              ev->status, (unsigned)ev->reason_code, ev->text ? " " : "", ev->text ? ev->text : "");
        check_event_props(ev);
        switch (ev->type) {
        case MQTT_EV_PUBACK:
            /* A QoS 2 publish acked with PUBACK completes as downgraded. */
            FZ_CHECK(R.out[id] == OUT_PUB1 || (R.out[id] == OUT_PUB2_REC && ev->downgraded));
            FZ_CHECK(ev->downgraded == (R.out[id] == OUT_PUB2_REC));
            R.out[id] = OUT_NONE;
            break;
        case MQTT_EV_PUBREC: /* 5.0: a refusal (>= 0x80) ends the publish */
            /* A refused PUBREC for a QoS 1 id ends that publish too (io.c
             * handle_ack takes it as a PUBACK; a PUBREC below 0x80 is ignored). */
            FZ_CHECK(R.out[id] == OUT_PUB2_REC ||
                     (R.out[id] == OUT_PUB1 && ev->reason_code >= 0x80));
            R.out[id] = ev->reason_code >= 0x80 ? OUT_NONE : OUT_PUB2_COMP;
            break;
        case MQTT_EV_PUBCOMP:
            FZ_CHECK(R.out[id] == OUT_PUB2_COMP);
            R.out[id] = OUT_NONE;
            break;
        case MQTT_EV_SUBACK:
            FZ_CHECK(R.out[id] == OUT_SUB && ev->reason_count >= 1);
            R.out[id] = OUT_NONE;
            break;
        case MQTT_EV_UNSUBACK:
            FZ_CHECK(R.out[id] == OUT_UNSUB);
            R.out[id] = OUT_NONE;
            break;
        case MQTT_EV_PUBLISH:
            if (ev->has_message) {
                FZ_CHECK(ev->qos <= 1 && (ev->qos == 0) == (id == 0));
                FZ_CHECK(mqtt__check_topic_name((const uint8_t *)ev->topic, ev->topic_len,
                                                NULL) == MQTT_OK);
                FZ_CHECK(strlen(ev->topic) == ev->topic_len);
            } else { /* QoS 2 arrival: the message comes with PUBREL, once */
                FZ_CHECK(id != 0 && !R.held[id]);
                R.held[id] = true;
            }
            break;
        case MQTT_EV_PUBREL:
            FZ_CHECK(ev->has_message && ev->qos == 2 && R.held[id]);
            R.held[id] = false;
            break;
        case MQTT_EV_CONNACK:
        case MQTT_EV_DISCONNECT:
        case MQTT_EV_PINGRESP:
        case MQTT_EV_AUTH:
        case MQTT_EV_BEFORE_RECONNECT:
        case MQTT_EV_LOG:
            break;
        default:
            FZ_CHECK(!"unknown event type");
        }
        mqtt_event_free(ev);
        ev = next;
    }
}

/* ---- the broker: reading and checking what the client writes ---------- */

static void remember_id(uint16_t id)
{
    R.ids[R.nids++ % 32] = id;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* A QoS 1 or 2 PUBLISH the application made, its first send without DUP. */
static void check_publish_id(uint16_t id, uint8_t qos, bool dup)
{
    FZ_CHECK(id != 0 && (R.ever[id] & (1 << (qos == 1 ? OUT_PUB1 : OUT_PUB2_REC))));
    if (!dup)
        FZ_CHECK(R.fresh[id]++ == 0);
    remember_id(id);
}

static void check_sub_id(uint16_t id, uint8_t type)
{
    int kind = type == MQTT_SUBSCRIBE ? OUT_SUB : OUT_UNSUB;
    FZ_CHECK(id != 0 && (R.ever[id] & (1 << kind)));
    remember_id(id);
}

/* What the client's 5.0 CONNECT must say for the options start() gave. */
static struct {
    bool clean, user_expiry, max_packet;
    uint32_t expiry;
} want_connect;

static void check_connect_v5(const mqtt_packet *p)
{
    mqtt_property e, m, a;
    bool has_e = mqtt__prop_find(p->props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, &e);
    FZ_CHECK(p->connect.clean_session == want_connect.clean);
    if (want_connect.user_expiry)
        FZ_CHECK(has_e && e.value == want_connect.expiry);
    else /* a persistent session lasts as under 3.1.1 */
        FZ_CHECK(has_e == !want_connect.clean && (!has_e || e.value == UINT32_MAX));
    bool has_m = mqtt__prop_find(p->props, MQTT_PROP_MAXIMUM_PACKET_SIZE, &m);
    FZ_CHECK(has_m == want_connect.max_packet && (!has_m || m.value == 48));
    R.cli_alias_max =
        mqtt__prop_find(p->props, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, &a) ? (uint16_t)a.value : 0;
    R.srv_alias_max = 0;
    R.srv_max_packet = 0;
    R.limits_known = false;
    memset(R.alias_topic, 0, sizeof R.alias_topic);
}

/* The client's topic aliases stay within what our CONNACK allowed, and one
 * without a topic names one the client set on this connection. */
static void check_alias_use(const mqtt_packet *p)
{
    mqtt_property a;
    if (!mqtt__prop_find(p->props, MQTT_PROP_TOPIC_ALIAS, &a)) {
        FZ_CHECK(p->topic.len > 0);
        return;
    }
    if (!R.limits_known)
        return;
    FZ_CHECK(a.value >= 1 && a.value <= R.srv_alias_max);
    char *slot = R.alias_topic[a.value - 1];
    if (p->topic.len == 0) {
        FZ_CHECK(slot[0] != '\0');
        return;
    }
    FZ_CHECK(p->topic.len < sizeof R.alias_topic[0]);
    memcpy(slot, p->topic.data, p->topic.len);
    slot[p->topic.len] = '\0';
}

/* A packet of a 5.0 connection, decoded by the codec in the broker role. */
static void client_packet_v5(const mqtt_packet *p, size_t size)
{
    if (R.limits_known && R.srv_max_packet)
        FZ_CHECK(size <= R.srv_max_packet);
    TRACE("client packet 5.0: reason 0x%02x\n", (unsigned)p->reason_code);
    switch (p->type) {
    case MQTT_CONNECT:
        FZ_CHECK(!R.connect_seen);
        R.connect_seen = true;
        check_connect_v5(p);
        break;
    case MQTT_PUBLISH:
        check_alias_use(p);
        if (p->qos > 0)
            check_publish_id(p->packet_id, p->qos, p->dup);
        break;
    case MQTT_PUBREL:
        remember_id(p->packet_id);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        check_sub_id(p->packet_id, p->type);
        break;
    case MQTT_DISCONNECT:
        R.disconnect_seen = true;
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
    case MQTT_PINGREQ:
    case MQTT_AUTH:
        break;
    default:
        FZ_CHECK(!"the client wrote a packet type a client never sends");
    }
}

/* Every packet the client writes decodes in the broker role at the
 * connection's level (its CONNECT says which). */
static void decode_client(const uint8_t *b, size_t size, mqtt_packet *p)
{
    const mqtt_decode_opts o = {R.version == MQTT_V5 ? MQTT_V5 : MQTT_V311, MQTT_ROLE_BROKER, 0};
    const char *why = NULL;
    size_t used = 0;
    int rc = mqtt__decode(b, size, &o, p, &used, &why);
    if (rc != MQTT_OK)
        TRACE("client packet does not decode: %d %s\n", rc, why ? why : "");
    FZ_CHECK(rc == MQTT_OK && used == size);
}

/* One complete packet from the client, checked against the protocol and the oracle. */
static void client_packet(const uint8_t *b, const mqtt_fixed_header *h)
{
    const uint8_t *body = b + h->header_len;
    uint32_t rl = h->remaining;
    mqtt_packet pk;
    TRACE("client wrote 0x%02x remaining %u\n", (unsigned)(h->type | h->flags),
          (unsigned)rl);
    FZ_CHECK(R.connect_seen || h->type == MQTT_CONNECT);
    FZ_CHECK(!R.disconnect_seen);
    if (h->type == MQTT_CONNECT) {
        FZ_CHECK(rl >= 12 && memcmp(body, "\0\4MQTT", 6) == 0);
        FZ_CHECK(body[6] == MQTT_V311 || (fz_v5 && body[6] == MQTT_V5));
        R.version = body[6];
    }
    decode_client(b, h->header_len + rl, &pk);
    if (R.version == MQTT_V5) {
        client_packet_v5(&pk, h->header_len + rl);
        return;
    }
    switch (h->type) {
    case MQTT_CONNECT:
        FZ_CHECK(!R.connect_seen && h->flags == 0 && rl >= 12);
        FZ_CHECK(memcmp(body, "\0\4MQTT\4", 7) == 0);
        R.connect_seen = true;
        break;
    case MQTT_PUBLISH: {
        uint8_t qos = h->flags >> 1 & 3;
        bool dup = h->flags & 8;
        FZ_CHECK(qos < 3 && (!dup || qos > 0) && rl >= 2);
        uint16_t tl = get16(body);
        FZ_CHECK(tl <= rl - 2 && mqtt__check_topic_name(body + 2, tl, NULL) == MQTT_OK);
        if (qos == 0)
            break;
        FZ_CHECK(rl - 2 - tl >= 2);
        check_publish_id(get16(body + 2 + tl), qos, dup);
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        FZ_CHECK(h->flags == 0 && rl == 2 && get16(body) != 0);
        break;
    case MQTT_PUBREL:
        FZ_CHECK(h->flags == 2 && rl == 2 && get16(body) != 0);
        remember_id(get16(body));
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        FZ_CHECK(h->flags == 2 && rl >= 5);
        check_sub_id(get16(body), h->type);
        break;
    case MQTT_PINGREQ:
        FZ_CHECK(h->flags == 0 && rl == 0);
        break;
    case MQTT_DISCONNECT:
        FZ_CHECK(h->flags == 0 && rl == 0);
        R.disconnect_seen = true;
        break;
    default:
        FZ_CHECK(!"the client wrote a packet type a client never sends");
    }
}

static void close_broker(void)
{
    if (R.fd >= 0)
        close(R.fd);
    R.fd = -1;
    R.rx.len = 0;
    R.version = 0;
    R.limits_known = false;
    R.connect_seen = R.connack_sent = R.disconnect_seen = false;
}

/* Reads and checks what the client wrote; closes our end at EOF. */
static void drain_client(void)
{
    while (R.fd >= 0) {
        FZ_CHECK(mqtt__buf_reserve(&R.rx, 4096) == MQTT_OK);
        ssize_t n = recv(R.fd, R.rx.data + R.rx.len, R.rx.cap - R.rx.len, MSG_DONTWAIT);
        if (n <= 0) {
            if (n == 0 || (errno != EAGAIN && errno != EINTR))
                close_broker();
            return;
        }
        R.rx.len += (size_t)n;
        size_t off = 0;
        for (;;) {
            mqtt_fixed_header h;
            int rc = mqtt__decode_fixed_header(R.rx.data + off, R.rx.len - off, &h, NULL, NULL);
            FZ_CHECK(rc != MQTT_ERR_MALFORMED);
            if (rc != MQTT_OK || R.rx.len - off < h.header_len + h.remaining)
                break;
            client_packet(R.rx.data + off, &h);
            off += h.header_len + h.remaining;
        }
        mqtt__buf_consume(&R.rx, off);
    }
}

/* Takes over a connection the client opened since the last look. */
static void adopt(void)
{
    pthread_mutex_lock(&g_mu);
    int fd = g_new_fd;
    g_new_fd = -1;
    pthread_mutex_unlock(&g_mu);
    if (fd < 0)
        return;
    close_broker();
    R.fd = fd;
}

/* ---- the broker: writing ---------------------------------------------- */

static void send_bytes(const uint8_t *p, size_t n);

#define PROP_NUM(pid, v) ((mqtt_property){.id = (pid), .value = (v)})
#define PROP_STR(pid, s) ((mqtt_property){.id = (pid), .data = (const uint8_t *)(s), .len = sizeof(s) - 1})

/* The CONNACK's properties, chosen by the script, noted as this connection's limits. */
static size_t connack_props(mqtt_property *p)
{
    uint8_t m = fz_u8(&R.in);
    size_t n = 0;
    if (m & 1)
        p[n++] = PROP_NUM(MQTT_PROP_RECEIVE_MAXIMUM, 1u + fz_u8(&R.in) % 8);
    if (m & 2) {
        R.srv_alias_max = fz_u8(&R.in) % 6;
        p[n++] = PROP_NUM(MQTT_PROP_TOPIC_ALIAS_MAXIMUM, R.srv_alias_max);
    }
    if (m & 4) {
        R.srv_max_packet = 16u + fz_u8(&R.in);
        p[n++] = PROP_NUM(MQTT_PROP_MAXIMUM_PACKET_SIZE, R.srv_max_packet);
    }
    if (m & 8)
        p[n++] = PROP_NUM(MQTT_PROP_SERVER_KEEP_ALIVE, fz_u8(&R.in) % 3);
    if (m & 0x10)
        p[n++] = PROP_STR(MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, "fz-assigned");
    if (m & 0x20)
        p[n++] = PROP_NUM(MQTT_PROP_MAXIMUM_QOS, fz_u8(&R.in) % 2);
    if (m & 0x40) {
        p[n++] = PROP_NUM(MQTT_PROP_RETAIN_AVAILABLE, 0);
        p[n++] = PROP_NUM(MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE, 0);
        p[n++] = PROP_NUM(MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE, 0);
    }
    if (m & 0x80) {
        p[n++] = PROP_STR(MQTT_PROP_REASON_STRING, "fz");
        p[n++] = (mqtt_property){.id = MQTT_PROP_USER_PROPERTY, .data = (const uint8_t *)"k",
                                 .len = 1, .data2 = (const uint8_t *)"v", .len2 = 1};
    }
    return n;
}

/* Mostly accepted; refusals include 0x84, which sends "auto" to 3.1.1. */
static void connack_v5(uint8_t b)
{
    static const uint8_t refusals[] = {0x80, 0x84, 0x85, 0x86, 0x87, 0x88, 0x8A, 0x9C};
    uint8_t code = (b & 0x30) == 0x30 ? refusals[b >> 1 & 7] : 0;
    mqtt_property p[12];
    size_t n = connack_props(p);
    mqtt_reply_params q = {MQTT_CONNACK, 0, code == 0 && (b & 1), code, p, n, {NULL, 0}};
    uint8_t out[256];
    size_t len = mqtt__reply_size_v(MQTT_V5, &q);
    FZ_CHECK(len > 0 && len <= sizeof out && mqtt__encode_reply_v(out, MQTT_V5, &q) == len);
    R.limits_known = code == 0;
    send_bytes(out, len);
}

/* Answers a CONNECT as the script says: accept (with or without a session),
 * refuse, or say nothing and let raw bytes answer. */
static void answer_connect(void)
{
    R.connack_sent = true;
    uint8_t b = fz_u8(&R.in);
    TRACE("broker answers CONNECT with script byte 0x%02x\n", b);
    if (b >= 0xF0)
        return;
    if (R.version == MQTT_V5) {
        connack_v5(b);
        return;
    }
    uint8_t code = b >> 1 & 7;
    if (code > 5 || (b & 0x30) == 0)
        code = 0; /* mostly accept */
    uint8_t connack[4] = {MQTT_CONNACK, 2, (uint8_t)(code == 0 ? b & 1 : 0), code};
    send_bytes(connack, sizeof connack);
}

/* Adopts new connections and reads the client. */
static void service(void)
{
    adopt();
    drain_client();
}

/* With the I/O thread idle: the window holds, and a connected client has sent
 * everything it may (whatever is still queued waits behind a full window). */
static void check_window(void)
{
    mqtt_session_counts n;
    pthread_mutex_lock(&R.c->mu);
    mqtt__session_counts(R.c->sh.session, &n);
    client_state s = R.c->sh.state;
    uint32_t window = R.c->set.opt.max_inflight;
    /* 5.0: the broker's receive maximum narrows it (MQTT-3.3.4-7) */
    if (R.c->sh.version == MQTT_V5 && R.c->sh.server.receive_max < window)
        window = R.c->sh.server.receive_max;
    pthread_mutex_unlock(&R.c->mu);
    /* Only what was written on this connection counts against its window. */
    FZ_CHECK(n.inflight - n.rewound <= window);
    if (s == ST_CONNECTED)
        FZ_CHECK(n.queued == 0 || n.inflight - n.rewound == window);
}

/* Waits until the I/O thread is idle: it has read everything written to it
 * (unless reading is paused), handled it, written all it had to write, and is
 * back in poll after being woken. The broker's reads happen meanwhile. */
static void quiesce(void)
{
    double until = real_now() + WAIT_MS / 1000.0;
    unsigned start = atomic_load(&io_polls);
    mqtt__wake(R.c);
    for (;;) {
        service();
        pthread_mutex_lock(&R.c->mu);
        bool running = true, paused = R.c->sh.reading_paused; /* the loop always runs */
        bool flushed = R.c->sh.out.len == 0 && R.c->sh.wpos == R.c->sh.wbuf.len;
        pthread_mutex_unlock(&R.c->mu);
        int q = 0;
        bool unread = R.fd >= 0 && ioctl(R.fd, SIOCOUTQ, &q) == 0 && q > 0;
        bool idle = atomic_load(&io_polls) != start &&
                    atomic_load(&io_poll_reads) == atomic_load(&io_reads);
        if (!running || (idle && flushed && (!unread || paused))) {
            service();
            check_window();
            return;
        }
        if (real_now() >= until) {
            TRACE("quiesce: timed out (idle %d flushed %d unread %d)\n", idle, flushed, unread);
            return;
        }
        struct pollfd p[2] = {{.fd = idle_fd(), .events = POLLIN}, {.fd = R.fd, .events = POLLIN}};
        if (poll(p, R.fd >= 0 ? 2 : 1, 1) > 0 && p[0].revents) {
            uint64_t n;
            ssize_t r = read(p[0].fd, &n, sizeof n);
            (void)r;
        }
    }
}

/* Writes p as one chunk, which the client reads on its own, and waits for it to act. */
static void send_bytes(const uint8_t *p, size_t n)
{
    TRACE("broker writes %zu bytes%s\n", n, R.fd < 0 ? " (no connection)" : "");
    for (int tries = 0; n > 0 && R.fd >= 0 && tries < 2;) {
        ssize_t w = send(R.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            close_broker();
        } else {
            quiesce(); /* full: the client paused reading; give it one chance */
            tries++;
        }
    }
    quiesce();
}

/* Before each step: a client on its way to a connection gets there, and its
 * CONNECT is answered here only, so the script is read at the same points
 * whatever the threads' timing. */
static void settle(void)
{
    double until = real_now() + WAIT_MS / 1000.0;
    for (;;) {
        quiesce();
        if (R.fd >= 0 && R.connect_seen && !R.connack_sent) {
            answer_connect();
            continue;
        }
        pthread_mutex_lock(&R.c->mu);
        client_state s = R.c->sh.state;
        /* A reconnect the untaken events hold back waits for the script, not the clock. */
        bool room = mqtt__app_bytes(R.c) < R.c->set.opt.max_event_bytes;
        pthread_mutex_unlock(&R.c->mu);
        bool waiting = (s == ST_RETRY_WAIT && room) || (s == ST_CONNECTING && !R.connack_sent);
        if (!waiting || real_now() >= until)
            return;
    }
}

/* ---- script operations ------------------------------------------------ */

/* An id for an ack: one the client used lately, a small one, or any. */
static uint16_t pick_id(void)
{
    uint8_t s = fz_u8(&R.in);
    if (s < 0x80 && R.nids > 0)
        return R.ids[(R.nids - 1 - s % (R.nids < 32 ? R.nids : 32)) % 32];
    if (s < 0xF0)
        return (uint16_t)(s & 0x0F);
    return fz_u16(&R.in);
}

/* Properties for a packet of type from the script; a few do not belong
 * there (session_expiry_interval from a broker), which the client refuses. */
static size_t pick_props(mqtt_property *p, uint8_t type)
{
    uint8_t m = fz_u8(&R.in);
    size_t n = 0;
    if ((m & 1) && type != MQTT_PUBLISH)
        p[n++] = PROP_STR(MQTT_PROP_REASON_STRING, "why");
    if (m & 2)
        p[n++] = (mqtt_property){.id = MQTT_PROP_USER_PROPERTY, .data = (const uint8_t *)"k",
                                 .len = 1, .data2 = (const uint8_t *)"v", .len2 = 1};
    if (type == MQTT_PUBLISH) {
        if (m & 4)
            p[n++] = PROP_NUM(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, fz_u8(&R.in));
        if (m & 8)
            p[n++] = PROP_STR(MQTT_PROP_CONTENT_TYPE, "text/plain");
        if (m & 0x10)
            p[n++] = PROP_NUM(MQTT_PROP_SUBSCRIPTION_IDENTIFIER, 1u + fz_u8(&R.in));
        if (m & 0x20) {
            p[n++] = PROP_STR(MQTT_PROP_RESPONSE_TOPIC, "r/t");
            p[n++] = PROP_STR(MQTT_PROP_CORRELATION_DATA, "\0\1");
        }
        if (m & 0x40)
            p[n++] = PROP_NUM(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 1);
    }
    if (type == MQTT_DISCONNECT && (m & 4))
        p[n++] = PROP_STR(MQTT_PROP_SERVER_REFERENCE, "other:1883");
    if (type == MQTT_AUTH && (m & 4))
        p[n++] = PROP_STR(MQTT_PROP_AUTHENTICATION_METHOD, "m");
    if (type == MQTT_AUTH && (m & 8))
        p[n++] = PROP_STR(MQTT_PROP_AUTHENTICATION_DATA, "\1\2");
    if (m & 0x80)
        p[n++] = PROP_NUM(MQTT_PROP_SESSION_EXPIRY_INTERVAL, 1);
    return n;
}

/* A reason code from the list, or now and then any byte. */
static uint8_t pick_reason(const uint8_t *codes, size_t n)
{
    uint8_t b = fz_u8(&R.in);
    return b >= 0xF8 ? fz_u8(&R.in) : codes[b % n];
}

/* An ack, DISCONNECT or AUTH under 5.0; 0 when the codec refuses it. */
static size_t build_ack_v5(uint8_t *out, size_t cap, uint8_t type, uint16_t id)
{
    static const uint8_t pub[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
    static const uint8_t rel[] = {0x00, 0x92};
    static const uint8_t disc[] = {0x00, 0x80, 0x81, 0x82, 0x87, 0x89, 0x8B, 0x8D,
                                   0x8E, 0x93, 0x94, 0x95, 0x97, 0x9C, 0x9D};
    static const uint8_t auth[] = {0x00, 0x18, 0x19};
    uint8_t code = type == MQTT_PUBACK || type == MQTT_PUBREC ? pick_reason(pub, sizeof pub)
                   : type == MQTT_DISCONNECT                  ? pick_reason(disc, sizeof disc)
                   : type == MQTT_AUTH                        ? pick_reason(auth, sizeof auth)
                                                              : pick_reason(rel, sizeof rel);
    mqtt_property p[12];
    mqtt_ack_params q = {type, id, code, p, pick_props(p, type)};
    size_t len = mqtt__ack_size_v(MQTT_V5, &q);
    return len > 0 && len <= cap ? mqtt__encode_ack_v(out, MQTT_V5, &q) : 0;
}

/* SUBACK or UNSUBACK with a reason list: mostly one code, as the client subscribes one filter. */
static size_t build_reply_v5(uint8_t *out, size_t cap, uint8_t type)
{
    static const uint8_t sub[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
    static const uint8_t unsub[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
    uint16_t id = pick_id();
    uint8_t codes[2], count = (fz_u8(&R.in) & 0xC0) == 0xC0 ? 2 : 1;
    for (uint8_t i = 0; i < count; i++)
        codes[i] = type == MQTT_SUBACK ? pick_reason(sub, sizeof sub)
                                       : pick_reason(unsub, sizeof unsub);
    mqtt_property p[12];
    mqtt_reply_params q = {type, id, false, 0, p, pick_props(p, type), {codes, count}};
    size_t len = mqtt__reply_size_v(MQTT_V5, &q);
    return len > 0 && len <= cap ? mqtt__encode_reply_v(out, MQTT_V5, &q) : 0;
}

/* A topic for a broker's PUBLISH (never a filter, never empty). */
static mqtt_bytes publish_topic(uint8_t f)
{
    const char *topic = topics[f >> 2 & 7];
    if (topic[0] == '\0' || strpbrk(topic, "+#"))
        topic = "ok";
    return (mqtt_bytes){(const uint8_t *)topic, strlen(topic)};
}

/* A 5.0 PUBLISH: a topic alias (set, used, 0 or past the client's maximum),
 * with or without its topic, and properties. */
static size_t build_publish_v5(uint8_t *out, size_t cap)
{
    uint8_t f = fz_u8(&R.in), a = fz_u8(&R.in);
    uint8_t qos = f % 3;
    mqtt_property p[12];
    size_t n = pick_props(p, MQTT_PUBLISH);
    mqtt_publish_params q = {publish_topic(f), {NULL, 0}, qos, f & 0x80, qos && (f & 0x40),
                             qos ? (uint16_t)(1 + (f >> 5)) : 0, p, n};
    if (a & 0x80) {
        p[q.nprops++] = PROP_NUM(MQTT_PROP_TOPIC_ALIAS, a & 7);
        if (!(a & 0x40))
            q.topic.len = 0;
    }
    q.payload.data = fz_bytes(&R.in, fz_u8(&R.in) % 24, &q.payload.len);
    size_t len = mqtt__publish_size_v(MQTT_V5, &q);
    return len > 0 && len <= cap ? mqtt__encode_publish_v(out, MQTT_V5, &q) : 0;
}

static size_t build_packet_v5(uint8_t *out, size_t cap, uint8_t kind)
{
    static const uint8_t acks[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP};
    switch (kind % 8) {
    case 0:
    case 1:
        return build_ack_v5(out, cap, acks[fz_u8(&R.in) % 4], pick_id());
    case 2:
        return build_reply_v5(out, cap, MQTT_SUBACK);
    case 3:
    case 4:
        return build_publish_v5(out, cap);
    case 5:
        return build_reply_v5(out, cap, MQTT_UNSUBACK);
    case 6:
        return build_ack_v5(out, cap, MQTT_DISCONNECT, 0);
    default:
        return build_ack_v5(out, cap, MQTT_AUTH, 0);
    }
}

/* A well-formed packet a broker may send, built from the script; its size. */
static size_t build_packet(uint8_t *out, uint8_t kind)
{
    static const uint8_t acks[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP,
                                   MQTT_UNSUBACK};
    switch (kind % 4) {
    case 0:
    case 1:
        return mqtt__encode_ack(out, acks[fz_u8(&R.in) % 5], pick_id());
    case 2: {
        uint16_t id = pick_id();
        uint8_t code = fz_u8(&R.in);
        out[0] = MQTT_SUBACK;
        out[1] = 3;
        out[2] = (uint8_t)(id >> 8);
        out[3] = (uint8_t)id;
        out[4] = code > 2 ? 0x80 : code;
        return 5;
    }
    default: {
        uint8_t f = fz_u8(&R.in);
        uint8_t qos = f % 3;
        mqtt_bytes topic = publish_topic(f);
        uint16_t id = qos ? (uint16_t)(1 + (f >> 5)) : 0; /* few ids: duplicates are likely */
        size_t plen;
        const uint8_t *payload = fz_bytes(&R.in, fz_u8(&R.in) % 24, &plen);
        return mqtt__encode_publish(out, topic.data, topic.len, payload, plen, qos, f & 0x80,
                                    qos && (f & 0x40), id);
    }
    }
}

static void op_raw(void)
{
    size_t n;
    const uint8_t *p = fz_bytes(&R.in, 1 + fz_u8(&R.in) % 64, &n);
    send_bytes(p, n);
}

/* A well-formed packet, whole or split in two reads at a chosen byte. */
static void op_packet(bool split)
{
    uint8_t buf[512];
    uint8_t kind = fz_u8(&R.in);
    size_t n = R.version == MQTT_V5 ? build_packet_v5(buf, sizeof buf, kind)
                                    : build_packet(buf, kind);
    if (n == 0)
        return;
    size_t cut = split ? fz_u8(&R.in) % n : 0;
    if (cut)
        send_bytes(buf, cut);
    send_bytes(buf + cut, n - cut);
}

/* A client publish's 5.0 properties: its own topic alias (refused unless
 * the mode is manual), message expiry, a user property. */
static size_t publish_props(mqtt_property *p, uint8_t b)
{
    size_t n = 0;
    if (b & 7)
        p[n++] = PROP_NUM(MQTT_PROP_TOPIC_ALIAS, b & 7);
    if (b & 8)
        p[n++] = PROP_NUM(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 1u + (b >> 4));
    if (b & 0x80)
        p[n++] = (mqtt_property){.id = MQTT_PROP_USER_PROPERTY, .data = (const uint8_t *)"k",
                                 .len = 1, .data2 = (const uint8_t *)"v", .len2 = 1};
    return n;
}

static void op_client_publish(void)
{
    uint8_t f = fz_u8(&R.in);
    int qos = f % 3;
    const char *topic = topics[f >> 2 & 7];
    size_t plen;
    const uint8_t *payload = fz_bytes(&R.in, fz_u8(&R.in) % 32, &plen);
    mqtt_property props[3];
    size_t np = fz_v5 ? publish_props(props, fz_u8(&R.in)) : 0;
    if (R.publishes >= MAX_PUBLISHES)
        return;
    R.publishes++;
    uint16_t mid = 0;
    mqtt_message m = {topic, strlen(topic), payload, plen, qos, f & 0x20, props, np};
    int rc = mqtt_client_publish(R.c, &m, &mid);
    bool valid = mqtt__check_topic_name((const uint8_t *)topic, strlen(topic), NULL) == MQTT_OK;
    TRACE("publish qos %d %s: %d\n", qos, topic, rc);
    if (!valid || !fz_v5)
        FZ_CHECK(valid ? rc == MQTT_OK : rc == MQTT_ERR_INVAL);
    else /* refused for what the broker announced, or a topic_alias the mode does not take */
        FZ_CHECK(rc == MQTT_OK || rc == MQTT_ERR_NOT_ALLOWED ||
                 (rc == MQTT_ERR_INVAL && np > 0 && props[0].id == MQTT_PROP_TOPIC_ALIAS));
    if (rc == MQTT_OK && qos > 0) {
        int kind = qos == 1 ? OUT_PUB1 : OUT_PUB2_REC;
        FZ_CHECK(mid != 0 && R.out[mid] == OUT_NONE);
        R.out[mid] = (uint8_t)kind;
        R.ever[mid] |= (uint8_t)(1 << kind);
    }
}

static void op_client_subscribe(void)
{
    uint8_t f = fz_u8(&R.in);
    const char *filter = topics[f >> 2 & 7];
    mqtt_subscription sub = {.filter = filter, .filter_len = strlen(filter), .qos = f % 3};
    bool unsub = f & 0x20;
    /* 5.0: subscription options and a subscription identifier */
    mqtt_property id = PROP_NUM(MQTT_PROP_SUBSCRIPTION_IDENTIFIER, 1u + (f >> 2 & 7));
    size_t nid = fz_v5 && !unsub && (f & 0x80);
    sub.no_local = fz_v5 && (f & 0x40);
    sub.retain_handling = fz_v5 ? f >> 7 : 0;
    if (R.publishes >= MAX_PUBLISHES)
        return;
    R.publishes++;
    uint16_t mid = 0;
    int rc = unsub ? mqtt_client_unsubscribe(R.c, &sub, 1, NULL, 0, &mid)
                   : mqtt_client_subscribe(R.c, &sub, 1, nid ? &id : NULL, nid, &mid);
    bool valid = mqtt__check_topic_filter((const uint8_t *)filter, strlen(filter), NULL) ==
                 MQTT_OK;
    TRACE("%s %s: %d\n", unsub ? "unsubscribe" : "subscribe", filter, rc);
    FZ_CHECK(valid ? rc == MQTT_OK || (fz_v5 && rc == MQTT_ERR_NOT_ALLOWED)
                   : rc == MQTT_ERR_INVAL);
    if (rc == MQTT_OK) {
        int kind = unsub ? OUT_UNSUB : OUT_SUB;
        FZ_CHECK(mid != 0 && R.out[mid] == OUT_NONE);
        R.out[mid] = (uint8_t)kind;
        R.ever[mid] |= (uint8_t)(1 << kind);
    }
}

static void op_clock(void)
{
    atomic_fetch_add(&clock_offset_ns, (long long)(fz_u8(&R.in) % 16) * 250000000LL);
    quiesce();
}

static void connect_async(void)
{
    mqtt_connect_options co;
    mqtt_connect_options_init(&co);
    co.host = "fuzz.invalid";
    co.keepalive = R.keepalive;
    int rc = mqtt_client_connect_async(R.c, &co);
    FZ_CHECK(rc == MQTT_OK || rc == MQTT_ERR_STATE);
}

/* 5.0: the client's AUTH, and its DISCONNECT with a reason code and properties. */
static void control_v5(uint8_t b)
{
    static const uint8_t reasons[] = {0x00, 0x04, 0x80, 0x83};
    mqtt_property p[2] = {PROP_STR(MQTT_PROP_AUTHENTICATION_METHOD, "m"),
                          PROP_STR(MQTT_PROP_REASON_STRING, "bye")};
    if (b & 0x40) {
        int rc = mqtt_client_auth(R.c, b & 0x80 ? 0x19 : 0x18, p, 1);
        FZ_CHECK(rc == MQTT_OK || rc == MQTT_ERR_NO_CONN);
        return;
    }
    mqtt_client_disconnect_v(R.c, reasons[b >> 4 & 3], p + 1, b >> 3 & 1);
    service();
}

static void op_control(void)
{
    uint8_t b = fz_u8(&R.in);
    switch (b % (fz_v5 ? 7 : 6)) {
    case 0:
        close_broker(); /* the broker drops the connection */
        break;
    case 1:
        pthread_mutex_lock(&g_mu);
        g_fail_opens = 1 + b / 6 % 4;
        pthread_mutex_unlock(&g_mu);
        break;
    case 2:
        mqtt_client_disconnect(R.c); /* bounded by disconnect_timeout */
        service();
        break;
    case 3:
        connect_async();
        break;
    case 4:
        mqtt_client_proceed(R.c);
        break;
    case 5:
        mqtt_client_set_auto_reconnect(R.c, b & 0x40);
        break;
    default:
        control_v5(b);
        break;
    }
}

/* ---- one run ----------------------------------------------------------- */

/* 5.0 options from two script bytes: the protocol (5.0 or "auto"), CONNECT
 * properties (topic_alias_maximum, receive_maximum, session_expiry_interval)
 * and the outgoing alias mode. */
static void options_v5(mqtt_options *o, mqtt_property *p)
{
    uint8_t a = fz_u8(&R.in), b = fz_u8(&R.in);
    size_t n = 0;
    o->protocol = (a & 3) == 2 ? MQTT_PROTOCOL_AUTO : MQTT_V5;
    if (a & 4)
        p[n++] = PROP_NUM(MQTT_PROP_TOPIC_ALIAS_MAXIMUM, 1u + (a >> 5));
    if (a & 8)
        p[n++] = PROP_NUM(MQTT_PROP_RECEIVE_MAXIMUM, 1u + (a >> 5) % 4);
    want_connect.user_expiry = a & 0x10;
    want_connect.expiry = b >> 2;
    if (want_connect.user_expiry)
        p[n++] = PROP_NUM(MQTT_PROP_SESSION_EXPIRY_INTERVAL, want_connect.expiry);
    o->topic_alias = b % 3;
    R.manual_alias = o->topic_alias == MQTT_ALIAS_MANUAL;
    o->connect_props = p;
    o->connect_prop_count = n;
}

static void start(const uint8_t *data, size_t len)
{
    mqtt__buf_free(&R.rx);
    memset(&R, 0, sizeof R);
    R.fd = -1;
    R.in = (fz_in){data, len};
    tracing = getenv("FUZZ_TRACE") != NULL;
    main_thread = pthread_self();
    (void)idle_fd();
    uint8_t cfg = fz_u8(&R.in);
    R.keepalive = fz_u8(&R.in) % 3; /* seconds; 0: none */
    mqtt_options o;
    mqtt_options_init(&o);
    o.client_id = "fuzz";
    o.client_id_len = 4;
    o.clean_session = !(cfg & 0x40);
    o.max_inflight = 1 + (cfg & 3);
    o.log_events = cfg & 4;
    o.reconnect_min = 0.0001;
    o.reconnect_max = 0.001;
    o.disconnect_timeout = 0.01;
    o.connect_timeout = 5;
    if (cfg & 8)
        o.max_event_bytes = 1024;
    if (cfg & 0x80)
        o.max_packet = 48;
    mqtt_property props[3];
    want_connect.clean = o.clean_session;
    want_connect.max_packet = cfg & 0x80;
    if (fz_v5)
        options_v5(&o, props);
    FZ_CHECK(mqtt_client_create(&o, &R.c) == MQTT_OK);
    mqtt_client_set_reconnect_hook(R.c, cfg & 0x20);
    if (cfg & 0x10)
        mqtt_client_set_auto_reconnect(R.c, true);
    connect_async();
}

static void finish(void)
{
    /* The broker goes away for good: the client reports the loss. */
    pthread_mutex_lock(&g_mu);
    g_fail_opens = 1 << 30;
    pthread_mutex_unlock(&g_mu);
    close_broker();
    take_events(); /* reading may be paused until we do */
    quiesce();
    take_events();
    mqtt_client_destroy(R.c);
    R.c = NULL;
    adopt();
    close_broker();
    mqtt__buf_free(&R.rx);
    pthread_mutex_lock(&g_mu);
    g_fail_opens = 0;
    pthread_mutex_unlock(&g_mu);
    atomic_store(&clock_offset_ns, 0);
}

/* One input: the target's LLVMFuzzerTestOneInput, after setting fz_v5. */
static int fz_client_run(const uint8_t *data, size_t len)
{
    start(data, len);
    for (;;) {
        settle();
        if (!fz_more(&R.in))
            break;
        uint8_t op = fz_u8(&R.in);
        TRACE("op %u\n", op % 12u);
        switch (op % 12) {
        case 0:
        case 1:
        case 2:
            op_raw();
            break;
        case 3:
        case 4:
            op_packet(false);
            break;
        case 5:
            op_packet(true);
            break;
        case 6:
            op_client_publish();
            break;
        case 7:
            op_client_subscribe();
            break;
        case 8:
            take_events();
            break;
        case 9:
            op_clock();
            break;
        case 10:
            op_control();
            break;
        default:
            quiesce();
            break;
        }
    }
    finish();
    return 0;
}

#endif
