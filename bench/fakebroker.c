/*
 * bench/fakebroker.c: a minimal MQTT 3.1.1 and 5.0 "broker" for benchmarks only.
 *
 * It exists to measure a client without measuring a real broker: one thread,
 * one epoll loop, loopback only, no sessions, no routing, no validation
 * beyond framing. Every CONNECT gets CONNACK 0, SUBSCRIBE gets a SUBACK
 * granting what was asked, PINGREQ gets PINGRESP. Each connection speaks the
 * protocol level its CONNECT names; under 5.0 the CONNACK announces
 * receive_maximum -r (default 20, the in-flight window libmosquitto and
 * zmqtt use under 3.1.1, so both protocols are measured with one window) and
 * topic_alias_maximum -a (default 10, as mosquitto), PUBLISH carries a
 * property length and incoming topic aliases are resolved. The mode says what
 * happens to PUBLISH:
 *
 *   sink   parse and acknowledge as fast as possible (PUBACK; PUBREC, then
 *          PUBCOMP on PUBREL); the acks of one read go out in one write.
 *   blast  after a SUBSCRIBE, send that connection -n pre-encoded PUBLISH
 *          packets of -s payload bytes on -t topic at -q QoS; QoS 1/2 keep
 *          at most -w unacknowledged (PUBREC is answered with PUBREL).
 *   echo   send every PUBLISH back to its sender, same topic, payload and
 *          QoS, after acknowledging it as sink does.
 *
 * With -W 1 every connection is MQTT over WebSocket (RFC 6455): the upgrade
 * is answered 101 with subprotocol mqtt, the client's frames are unmasked
 * into the MQTT stream (pings answered, a close frame closes), and what the
 * broker sends goes out as binary frames, one per write burst. It is there
 * to measure the client's WebSocket cost without a gateway in between.
 *
 * Usage: fakebroker sink|blast|echo [-p port] [-n count] [-q qos] [-w window]
 *                   [-s payload_bytes] [-t topic] [-r receive_maximum]
 *                   [-a topic_alias_maximum] [-b 1] [-W 1]
 * Prints "port <port> pid <pid>" on stdout once listening on 127.0.0.1, runs
 * until SIGTERM or SIGINT, then prints its counters on stderr. With -b 1 it
 * also prints, as each connection ends, "conn protocol=<4|5> bytes_in=<n>
 * publish_in=<n>" on stdout: the bytes that client sent, for wire-size rows.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>

#define READ_CHUNK (256 * 1024)
#define OUT_HIGH (256 * 1024)      /* blast refills below this much pending output */
#define OUT_PAUSE (4 * 1024 * 1024) /* stop reading a client that does not read */
#define MAX_PACKET (16 * 1024 * 1024)
#define BLOCK_BYTES (64 * 1024)
#define MAX_ALIASES 65535

enum mode { MODE_SINK, MODE_BLAST, MODE_ECHO };

typedef struct buf {
    uint8_t *data;
    size_t len, pos, cap; /* pos: first byte not yet consumed/written */
} buf;

typedef struct conn {
    int fd;
    uint32_t events;   /* what epoll watches now */
    buf in, out;
    buf raw, wire;     /* -W: the WebSocket frames in and out */
    bool upgraded;     /* -W: the 101 was sent */
    bool blasting;
    bool v5;           /* the CONNECT asked for protocol level 5 */
    uint64_t bytes_in, publish_in;
    char **aliases;    /* v5: topic of each incoming alias, [1..alias_max] */
    uint64_t to_send;  /* blast: messages not yet queued */
    uint32_t inflight; /* blast: QoS 1/2 not yet completed */
    uint16_t next_id;  /* ids of the PUBLISH packets this side sends */
} conn;

static struct {
    enum mode mode;
    uint64_t count;
    int qos;
    uint32_t window;
    size_t payload;
    const char *topic;
    uint32_t receive_max, alias_max;
    bool report;        /* -b: a line on stdout per connection that ends */
    bool ws;            /* -W: MQTT over WebSocket */
    struct block {      /* blast: pre-encoded packets, back to back, per protocol */
        uint8_t *data;
        size_t pkt_len, per_block, id_offset;
    } block[2];         /* [0] 3.1.1, [1] 5.0 */
} cfg = {.mode = MODE_SINK, .count = 1000000, .window = 100, .payload = 32,
         .topic = "bench/blast", .receive_max = 20, .alias_max = 10};

static struct {
    uint64_t accepted, closed, publish_in[3], publish_out, acks_in, pings;
} counters;

static int epfd;
static conn **conns;
static size_t conns_cap;
static volatile sig_atomic_t stopping;

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void buf_reserve(buf *b, size_t extra)
{
    if (b->pos && b->pos == b->len)
        b->pos = b->len = 0;
    if (b->len + extra <= b->cap)
        return;
    if (b->pos) { /* reclaim consumed space first */
        memmove(b->data, b->data + b->pos, b->len - b->pos);
        b->len -= b->pos;
        b->pos = 0;
        if (b->len + extra <= b->cap)
            return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data)
        die("realloc");
    b->cap = cap;
}

static void buf_put(buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static size_t put_remaining(uint8_t *p, size_t n)
{
    size_t i = 0;
    do {
        uint8_t byte = (uint8_t)(n % 128);
        n /= 128;
        p[i++] = (uint8_t)(byte | (n ? 0x80 : 0));
    } while (n);
    return i;
}

static void put_ack(conn *c, uint8_t first, uint16_t id)
{
    uint8_t b[4] = {first, 2, (uint8_t)(id >> 8), (uint8_t)id};
    buf_put(&c->out, b, sizeof b);
}

static uint16_t take_id(conn *c)
{
    if (++c->next_id == 0)
        c->next_id = 1;
    return c->next_id;
}

/* Encodes PUBLISH(topic, payload, qos, id) at p, under 5.0 with an empty
 * property block; returns its size. */
static size_t encode_publish(uint8_t *p, const uint8_t *topic, size_t tl, const uint8_t *payload,
                             size_t pl, int qos, uint16_t id, bool v5)
{
    size_t i = 0;
    p[i++] = (uint8_t)(0x30 | (qos << 1));
    i += put_remaining(p + i, 2 + tl + (qos ? 2 : 0) + v5 + pl);
    p[i++] = (uint8_t)(tl >> 8);
    p[i++] = (uint8_t)tl;
    memcpy(p + i, topic, tl);
    i += tl;
    if (qos) {
        p[i++] = (uint8_t)(id >> 8);
        p[i++] = (uint8_t)id;
    }
    if (v5)
        p[i++] = 0; /* no properties */
    memcpy(p + i, payload, pl);
    return i + pl;
}

static void build_block(struct block *b, bool v5)
{
    size_t tl = strlen(cfg.topic);
    uint8_t *payload = malloc(cfg.payload + 1);
    uint8_t *one = malloc(cfg.payload + tl + 16);
    if (!payload || !one)
        die("malloc");
    for (size_t i = 0; i < cfg.payload; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    b->pkt_len = encode_publish(one, (const uint8_t *)cfg.topic, tl, payload, cfg.payload,
                                cfg.qos, 0, v5);
    b->id_offset = b->pkt_len - cfg.payload - 2 - v5;
    b->per_block = b->pkt_len >= BLOCK_BYTES ? 1 : BLOCK_BYTES / b->pkt_len;
    b->data = malloc(b->per_block * b->pkt_len);
    if (!b->data)
        die("malloc");
    for (size_t i = 0; i < b->per_block; i++)
        memcpy(b->data + i * b->pkt_len, one, b->pkt_len);
    free(one);
    free(payload);
}

static void watch(conn *c, uint32_t events)
{
    if (events == c->events)
        return;
    struct epoll_event ev = {.events = events, .data.fd = c->fd};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl");
    c->events = events;
}

static void free_aliases(conn *c)
{
    for (uint32_t i = 0; c->aliases && i <= cfg.alias_max; i++)
        free(c->aliases[i]);
    free(c->aliases);
    c->aliases = NULL;
}

static void close_conn(conn *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->fd] = NULL;
    if (cfg.report) {
        printf("conn protocol=%d bytes_in=%llu publish_in=%llu\n", c->v5 ? 5 : 4,
               (unsigned long long)c->bytes_in, (unsigned long long)c->publish_in);
        fflush(stdout);
    }
    free_aliases(c);
    free(c->in.data);
    free(c->out.data);
    free(c->raw.data);
    free(c->wire.data);
    free(c);
    counters.closed++;
}

/* Blast: queues messages while the window and the output high-water mark allow. */
static void blast_fill(conn *c)
{
    const struct block *b = &cfg.block[c->v5];
    while (c->blasting && c->to_send &&
           c->out.len - c->out.pos + c->wire.len - c->wire.pos < OUT_HIGH) {
        if (cfg.qos == 0) {
            uint64_t n = c->to_send < b->per_block ? c->to_send : b->per_block;
            buf_put(&c->out, b->data, (size_t)n * b->pkt_len);
            c->to_send -= n;
            counters.publish_out += n;
            continue;
        }
        if (c->inflight >= cfg.window)
            break;
        buf_reserve(&c->out, b->pkt_len);
        uint8_t *p = c->out.data + c->out.len;
        memcpy(p, b->data, b->pkt_len);
        uint16_t id = take_id(c);
        p[b->id_offset] = (uint8_t)(id >> 8);
        p[b->id_offset + 1] = (uint8_t)id;
        c->out.len += b->pkt_len;
        c->inflight++;
        c->to_send--;
        counters.publish_out++;
    }
}

/* -W: one frame of the given opcode around n bytes, into the output frames. */
static void ws_put_frame(conn *c, uint8_t opcode, const uint8_t *p, size_t n)
{
    uint8_t h[10] = {(uint8_t)(0x80 | opcode)};
    size_t hl = 2;
    if (n < 126) {
        h[1] = (uint8_t)n;
    } else if (n <= 0xFFFF) {
        h[1] = 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    buf_put(&c->wire, h, hl);
    buf_put(&c->wire, p, n);
}

/* -W: the MQTT bytes pending, framed (one binary frame). */
static void ws_frame_out(conn *c)
{
    if (!cfg.ws || !c->upgraded || c->out.pos == c->out.len)
        return;
    ws_put_frame(c, 0x2, c->out.data + c->out.pos, c->out.len - c->out.pos);
    c->out.pos = c->out.len = 0;
}

/* Writes what is pending until the socket is full; returns false if c was closed. */
static bool flush(conn *c)
{
    buf *w = cfg.ws ? &c->wire : &c->out;
    for (;;) {
        blast_fill(c);
        ws_frame_out(c);
        if (w->pos == w->len)
            break;
        ssize_t n = write(c->fd, w->data + w->pos, w->len - w->pos);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            close_conn(c);
            return false;
        }
        w->pos += (size_t)n;
        if (w->pos == w->len)
            w->pos = w->len = 0;
    }
    size_t pending = w->len - w->pos;
    uint32_t ev = (pending < OUT_PAUSE ? EPOLLIN : 0) | (pending ? EPOLLOUT : 0);
    watch(c, ev);
    return true;
}

/* Reads a variable byte integer at p[*i] (n bytes in all); false if malformed. */
static bool read_varint(const uint8_t *p, size_t n, size_t *i, size_t *out)
{
    size_t v = 0;
    for (unsigned shift = 0; shift < 28; shift += 7) {
        if (*i >= n)
            return false;
        uint8_t b = p[(*i)++];
        v |= (size_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Skips a 5.0 property block at p[*i]; false if it overruns n. */
static bool skip_props(const uint8_t *p, size_t n, size_t *i)
{
    size_t len;
    if (!read_varint(p, n, i, &len) || len > n - *i)
        return false;
    *i += len;
    return true;
}

/* Sends a SUBACK or UNSUBACK for packet id, with an empty property block under 5.0. */
static void put_suback(conn *c, uint8_t first, const uint8_t *id, const uint8_t *codes,
                       size_t count)
{
    uint8_t h[8];
    size_t hl = 0;
    h[hl++] = first;
    hl += put_remaining(h + hl, 2 + c->v5 + count);
    h[hl++] = id[0];
    h[hl++] = id[1];
    if (c->v5)
        h[hl++] = 0;
    buf_put(&c->out, h, hl);
    buf_put(&c->out, codes, count);
}

/* SUBSCRIBE, or UNSUBSCRIBE when unsub: the ack grants what was asked. */
static void on_subscribe(conn *c, const uint8_t *p, size_t n, bool unsub)
{
    uint8_t codes[256];
    size_t count = 0;
    size_t i = 2;
    if (n < 2 || (c->v5 && !skip_props(p, n, &i)))
        return;
    while (i + 2 <= n && count < sizeof codes) {
        i += 2 + ((size_t)p[i] << 8 | p[i + 1]); /* skip the filter */
        if (unsub) {
            codes[count++] = 0;
            continue;
        }
        if (i >= n)
            break;
        codes[count++] = (uint8_t)((p[i] & 3) > 2 ? 0x80 : p[i] & 3);
        i++;
    }
    if (unsub && !c->v5)
        count = 0; /* 3.1.1 UNSUBACK has no codes */
    put_suback(c, unsub ? 0xB0 : 0x90, p, codes, count);
    if (!unsub && cfg.mode == MODE_BLAST && !c->blasting) {
        c->blasting = true;
        c->to_send = cfg.count;
    }
}

/* The topic_alias property in the block p[0..n), 0 if none; -1 if malformed. */
static long find_alias(const uint8_t *p, size_t n)
{
    size_t i = 0, len;
    while (i < n) {
        uint8_t id = p[i++];
        switch (id) {
        case 0x23:
            return i + 2 <= n ? (long)((unsigned)p[i] << 8 | p[i + 1]) : -1;
        case 0x01: /* byte properties a PUBLISH may carry */
            i += 1;
            break;
        case 0x02:
            i += 4;
            break;
        case 0x0B:
            if (!read_varint(p, n, &i, &len))
                return -1;
            break;
        case 0x03: /* content type, response topic, correlation data: 2-byte length */
        case 0x08:
        case 0x09:
            i += i + 2 <= n ? 2 + ((size_t)p[i] << 8 | p[i + 1]) : n;
            break;
        case 0x26: /* user property: two strings */
            for (int k = 0; k < 2; k++)
                i += i + 2 <= n ? 2 + ((size_t)p[i] << 8 | p[i + 1]) : n;
            break;
        default:
            return -1;
        }
    }
    return i == n ? 0 : -1;
}

/* The topic of a 5.0 PUBLISH: topic and tl as sent, or the one its alias
 * stands for, which a non-empty topic (re)defines. False: a protocol error. */
static bool resolve_alias(conn *c, long alias, const uint8_t **topic, size_t *tl)
{
    if (alias < 0 || (size_t)alias > cfg.alias_max)
        return false;
    if (alias == 0)
        return *tl > 0;
    if (!c->aliases && !(c->aliases = calloc(cfg.alias_max + 1, sizeof *c->aliases)))
        die("calloc");
    char **slot = &c->aliases[alias];
    if (*tl == 0) {
        if (!*slot)
            return false;
        *topic = (const uint8_t *)*slot;
        *tl = strlen(*slot);
        return true;
    }
    free(*slot);
    if (!(*slot = strndup((const char *)*topic, *tl)))
        die("strndup");
    return true;
}

/* Handles a PUBLISH; false on a protocol error (the connection ends). */
static bool on_publish(conn *c, uint8_t first, const uint8_t *p, size_t n)
{
    int qos = (first >> 1) & 3;
    if (qos > 2 || n < 2)
        return false;
    size_t tl = (size_t)p[0] << 8 | p[1];
    const uint8_t *topic = p + 2;
    size_t head = 2 + tl + (qos ? 2 : 0);
    if (head > n)
        return false;
    uint16_t id = qos ? (uint16_t)(p[head - 2] << 8 | p[head - 1]) : 0;
    if (c->v5) {
        size_t plen;
        if (!read_varint(p, n, &head, &plen) || plen > n - head)
            return false;
        if (!resolve_alias(c, find_alias(p + head, plen), &topic, &tl))
            return false;
        head += plen;
    }
    counters.publish_in[qos]++;
    c->publish_in++;
    if (qos == 1)
        put_ack(c, 0x40, id);
    else if (qos == 2)
        put_ack(c, 0x50, id);
    if (cfg.mode != MODE_ECHO)
        return true;
    size_t pl = n - head;
    buf_reserve(&c->out, tl + pl + 16);
    c->out.len += encode_publish(c->out.data + c->out.len, topic, tl, p + head, pl, qos,
                                 qos ? take_id(c) : 0, c->v5);
    counters.publish_out++;
    return true;
}

/* Answers CONNECT with CONNACK 0 at the protocol level it names. */
static void on_connect(conn *c, const uint8_t *p, size_t n)
{
    size_t nl = n >= 2 ? ((size_t)p[0] << 8 | p[1]) : n;
    c->v5 = 2 + nl < n && p[2 + nl] == 5;
    if (!c->v5) {
        static const uint8_t connack[4] = {0x20, 2, 0, 0};
        buf_put(&c->out, connack, sizeof connack);
        return;
    }
    uint8_t ack[11] = {0x20, 9, 0, 0, 6, 0x21, 0, 0, 0x22, 0, 0};
    ack[6] = (uint8_t)(cfg.receive_max >> 8);
    ack[7] = (uint8_t)cfg.receive_max;
    ack[9] = (uint8_t)(cfg.alias_max >> 8);
    ack[10] = (uint8_t)cfg.alias_max;
    buf_put(&c->out, ack, sizeof ack);
}

/* Handles one packet; returns false when the connection must end. */
static bool on_packet(conn *c, uint8_t first, const uint8_t *p, size_t n)
{
    uint16_t id = n >= 2 ? (uint16_t)(p[0] << 8 | p[1]) : 0;
    switch (first >> 4) {
    case 1:
        on_connect(c, p, n);
        break;
    case 3:
        return on_publish(c, first, p, n);
    case 4: /* PUBACK: a blast or echo message completed */
    case 7: /* PUBCOMP */
        counters.acks_in++;
        if (c->inflight)
            c->inflight--;
        break;
    case 5: /* PUBREC */
        counters.acks_in++;
        put_ack(c, 0x62, id);
        break;
    case 6: /* PUBREL */
        put_ack(c, 0x70, id);
        break;
    case 8: /* SUBSCRIBE */
    case 10: /* UNSUBSCRIBE */
        on_subscribe(c, p, n, first >> 4 == 10);
        break;
    case 12: { /* PINGREQ */
        static const uint8_t pingresp[2] = {0xD0, 0};
        buf_put(&c->out, pingresp, sizeof pingresp);
        counters.pings++;
        break;
    }
    case 14: /* DISCONNECT */
        return false;
    default:
        break;
    }
    return true;
}

/* Parses every complete packet in c->in; returns false when c must close. */
static bool parse(conn *c)
{
    buf *in = &c->in;
    while (in->len - in->pos >= 2) {
        const uint8_t *p = in->data + in->pos;
        size_t avail = in->len - in->pos, rl = 0, i = 1;
        unsigned shift = 0;
        for (;;) {
            if (i >= avail)
                return true; /* length incomplete */
            if (i > 4)
                return false; /* malformed: more than 4 length bytes */
            rl |= (size_t)(p[i] & 0x7F) << shift;
            shift += 7;
            if (!(p[i++] & 0x80))
                break;
        }
        if (rl > MAX_PACKET)
            return false;
        if (avail < i + rl)
            return true;
        if (!on_packet(c, p[0], p + i, rl))
            return false;
        in->pos += i + rl;
    }
    return true;
}

/* -W: the upgrade request, once whole: answers 101 with the accept key. */
static bool ws_upgrade(conn *c)
{
    buf *r = &c->raw;
    buf_put(r, "", 1); /* a NUL after the bytes, for the string functions */
    r->len--;
    const char *req = (const char *)r->data + r->pos, *end = strstr(req, "\r\n\r\n");
    if (!end)
        return r->len - r->pos < 16384;
    const char *k = strcasestr(req, "\nSec-WebSocket-Key:");
    if (!k || k > end)
        return false;
    k += 19;
    k += strspn(k, " \t");
    size_t kl = strcspn(k, " \t\r\n");
    char key[128];
    if (kl > 60)
        return false;
    memcpy(key, k, kl);
    memcpy(key + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 37);
    unsigned char sha[20], acc[64];
    size_t al = 0;
    if (mbedtls_sha1_ret((const unsigned char *)key, kl + 36, sha) != 0 ||
        mbedtls_base64_encode(acc, sizeof acc, &al, sha, sizeof sha) != 0)
        return false;
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %.*s\r\n"
                     "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
                     (int)al, (const char *)acc);
    buf_put(&c->wire, resp, (size_t)n);
    r->pos += (size_t)(end + 4 - req);
    c->upgraded = true;
    return true;
}

/* -W: the client's whole frames, unmasked, into the MQTT input. */
static bool ws_unframe(conn *c)
{
    buf *r = &c->raw;
    while (r->len - r->pos >= 2) {
        const uint8_t *p = r->data + r->pos;
        size_t avail = r->len - r->pos, hl = 2, n = p[1] & 0x7F;
        if (n == 126) {
            hl = 4;
            n = avail >= 4 ? (size_t)p[2] << 8 | p[3] : 0;
        } else if (n == 127) {
            hl = 10;
            n = 0;
            for (int i = 0; avail >= 10 && i < 8; i++)
                n = n << 8 | p[2 + i];
        }
        if (!(p[1] & 0x80) || n > MAX_PACKET)
            return false; /* client frames are masked (RFC 6455 5.1) */
        if (avail < hl + 4 + n)
            return true;
        const uint8_t *mask = p + hl, *data = p + hl + 4;
        uint8_t op = p[0] & 0x0F;
        buf *to = op <= 0x2 ? &c->in : &c->out;
        buf_reserve(to, n); /* may move what is pending to the front */
        size_t at = to->len;
        for (size_t i = 0; i < n; i++)
            to->data[at + i] = data[i] ^ mask[i & 3];
        if (op == 0x8)
            return false;
        if (op == 0x9) { /* the pong carries the ping's data, in a frame of its own */
            ws_frame_out(c);
            ws_put_frame(c, 0xA, to->data + at, n);
        } else if (op <= 0x2) {
            to->len += n;
        }
        r->pos += hl + 4 + n;
    }
    return true;
}

/* -W: read bytes are WebSocket; the MQTT stream is what the frames carry. */
static bool ws_input(conn *c)
{
    if (!c->upgraded && !ws_upgrade(c))
        return false;
    return !c->upgraded || ws_unframe(c);
}

static void on_readable(conn *c)
{
    buf *b = cfg.ws ? &c->raw : &c->in;
    buf_reserve(b, READ_CHUNK);
    ssize_t n = read(c->fd, b->data + b->len, b->cap - b->len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        close_conn(c);
        return;
    }
    b->len += (size_t)n;
    c->bytes_in += (size_t)n;
    if ((cfg.ws && !ws_input(c)) || !parse(c)) {
        close_conn(c);
        return;
    }
    flush(c); /* the acks of this read, in one write */
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                fprintf(stderr, "fakebroker: accept: %s (raise ulimit -n)\n", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if ((size_t)fd >= conns_cap) {
            size_t cap = conns_cap;
            while ((size_t)fd >= cap)
                cap *= 2;
            conns = realloc(conns, cap * sizeof *conns);
            if (!conns)
                die("realloc");
            memset(conns + conns_cap, 0, (cap - conns_cap) * sizeof *conns);
            conns_cap = cap;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c)
            die("calloc");
        c->fd = fd;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl");
        conns[fd] = c;
        counters.accepted++;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: fakebroker sink|blast|echo [-p port] [-n count] [-q qos] "
                    "[-w window] [-s payload_bytes] [-t topic] [-r receive_maximum]\n"
                    "                  [-a topic_alias_maximum] [-b 1] [-W 1]\n");
    exit(2);
}

static void parse_args(int argc, char **argv, int *port)
{
    if (argc < 2)
        usage();
    if (strcmp(argv[1], "sink") == 0)
        cfg.mode = MODE_SINK;
    else if (strcmp(argv[1], "blast") == 0)
        cfg.mode = MODE_BLAST;
    else if (strcmp(argv[1], "echo") == 0)
        cfg.mode = MODE_ECHO;
    else
        usage();
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *v = argv[i + 1];
        if (strcmp(argv[i], "-p") == 0)
            *port = atoi(v);
        else if (strcmp(argv[i], "-n") == 0)
            cfg.count = strtoull(v, NULL, 10);
        else if (strcmp(argv[i], "-q") == 0)
            cfg.qos = atoi(v);
        else if (strcmp(argv[i], "-w") == 0)
            cfg.window = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(argv[i], "-s") == 0)
            cfg.payload = strtoul(v, NULL, 10);
        else if (strcmp(argv[i], "-t") == 0)
            cfg.topic = v;
        else if (strcmp(argv[i], "-r") == 0)
            cfg.receive_max = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(argv[i], "-a") == 0)
            cfg.alias_max = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(argv[i], "-b") == 0)
            cfg.report = atoi(v) != 0;
        else if (strcmp(argv[i], "-W") == 0)
            cfg.ws = atoi(v) != 0;
        else
            usage();
    }
    if ((argc - 2) % 2 || cfg.qos < 0 || cfg.qos > 2 || cfg.window < 1 || cfg.window > 65000 ||
        *port < 0 || *port > 65535 || strlen(cfg.topic) == 0 || strlen(cfg.topic) > 65535 ||
        cfg.payload > MAX_PACKET || cfg.receive_max < 1 || cfg.receive_max > 65535 ||
        cfg.alias_max > MAX_ALIASES)
        usage();
}

int main(int argc, char **argv)
{
    int port = 0;
    parse_args(argc, argv, &port);
    build_block(&cfg.block[0], false);
    build_block(&cfg.block[1], true);

    struct rlimit rl; /* thousands of clients: take every descriptor we may */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0)
        die("bind");
    if (listen(lfd, SOMAXCONN) != 0)
        die("listen");
    socklen_t alen = sizeof addr;
    if (getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0)
        die("getsockname");

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) != 0)
        die("epoll_ctl");
    conns_cap = 1024;
    conns = calloc(conns_cap, sizeof *conns);
    if (!conns)
        die("calloc");

    printf("port %d pid %d\n", ntohs(addr.sin_port), (int)getpid());
    fflush(stdout);

    struct epoll_event evs[256];
    while (!stopping) {
        int n = epoll_wait(epfd, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                accept_all(lfd);
                continue;
            }
            conn *c = (size_t)fd < conns_cap ? conns[fd] : NULL;
            if (!c)
                continue;
            if (evs[i].events & EPOLLOUT && !flush(c))
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(c);
        }
    }
    fprintf(stderr,
            "fakebroker: accepted=%llu closed=%llu publish_in=%llu/%llu/%llu publish_out=%llu "
            "acks_in=%llu pings=%llu\n",
            (unsigned long long)counters.accepted, (unsigned long long)counters.closed,
            (unsigned long long)counters.publish_in[0], (unsigned long long)counters.publish_in[1],
            (unsigned long long)counters.publish_in[2], (unsigned long long)counters.publish_out,
            (unsigned long long)counters.acks_in, (unsigned long long)counters.pings);
    return 0;
}
