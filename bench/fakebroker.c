/*
 * bench/fakebroker.c: a minimal MQTT 3.1.1 "broker" for benchmarks only.
 *
 * It exists to measure a client without measuring a real broker: one thread,
 * one epoll loop, loopback only, no sessions, no routing, no validation
 * beyond framing. Every CONNECT gets CONNACK 0, SUBSCRIBE gets a SUBACK
 * granting what was asked, PINGREQ gets PINGRESP. The mode says what happens
 * to PUBLISH:
 *
 *   sink   parse and acknowledge as fast as possible (PUBACK; PUBREC, then
 *          PUBCOMP on PUBREL); the acks of one read go out in one write.
 *   blast  after a SUBSCRIBE, send that connection -n pre-encoded PUBLISH
 *          packets of -s payload bytes on -t topic at -q QoS; QoS 1/2 keep
 *          at most -w unacknowledged (PUBREC is answered with PUBREL).
 *   echo   send every PUBLISH back to its sender, same topic, payload and
 *          QoS, after acknowledging it as sink does.
 *
 * Usage: fakebroker sink|blast|echo [-p port] [-n count] [-q qos] [-w window]
 *                   [-s payload_bytes] [-t topic]
 * Prints "port <port> pid <pid>" on stdout once listening on 127.0.0.1, runs
 * until SIGTERM or SIGINT, then prints its counters on stderr.
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

#define READ_CHUNK (256 * 1024)
#define OUT_HIGH (256 * 1024)      /* blast refills below this much pending output */
#define OUT_PAUSE (4 * 1024 * 1024) /* stop reading a client that does not read */
#define MAX_PACKET (16 * 1024 * 1024)
#define BLOCK_BYTES (64 * 1024)

enum mode { MODE_SINK, MODE_BLAST, MODE_ECHO };

typedef struct buf {
    uint8_t *data;
    size_t len, pos, cap; /* pos: first byte not yet consumed/written */
} buf;

typedef struct conn {
    int fd;
    uint32_t events;   /* what epoll watches now */
    buf in, out;
    bool blasting;
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
    uint8_t *block;     /* blast: pre-encoded packets, back to back */
    size_t block_len, pkt_len, per_block, id_offset;
} cfg = {MODE_SINK, 1000000, 0, 100, 32, "bench/blast", NULL, 0, 0, 0, 0};

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

/* Encodes PUBLISH(topic, payload, qos, id) at p; returns its size. */
static size_t encode_publish(uint8_t *p, const uint8_t *topic, size_t tl, const uint8_t *payload,
                             size_t pl, int qos, uint16_t id)
{
    size_t i = 0;
    p[i++] = (uint8_t)(0x30 | (qos << 1));
    i += put_remaining(p + i, 2 + tl + (qos ? 2 : 0) + pl);
    p[i++] = (uint8_t)(tl >> 8);
    p[i++] = (uint8_t)tl;
    memcpy(p + i, topic, tl);
    i += tl;
    if (qos) {
        p[i++] = (uint8_t)(id >> 8);
        p[i++] = (uint8_t)id;
    }
    memcpy(p + i, payload, pl);
    return i + pl;
}

static void build_block(void)
{
    size_t tl = strlen(cfg.topic);
    uint8_t *payload = malloc(cfg.payload + 1);
    uint8_t *one = malloc(cfg.payload + tl + 16);
    if (!payload || !one)
        die("malloc");
    for (size_t i = 0; i < cfg.payload; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    cfg.pkt_len = encode_publish(one, (const uint8_t *)cfg.topic, tl, payload, cfg.payload,
                                 cfg.qos, 0);
    cfg.id_offset = cfg.pkt_len - cfg.payload - 2;
    cfg.per_block = cfg.pkt_len >= BLOCK_BYTES ? 1 : BLOCK_BYTES / cfg.pkt_len;
    cfg.block_len = cfg.per_block * cfg.pkt_len;
    cfg.block = malloc(cfg.block_len);
    if (!cfg.block)
        die("malloc");
    for (size_t i = 0; i < cfg.per_block; i++)
        memcpy(cfg.block + i * cfg.pkt_len, one, cfg.pkt_len);
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

static void close_conn(conn *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->fd] = NULL;
    free(c->in.data);
    free(c->out.data);
    free(c);
    counters.closed++;
}

/* Blast: queues messages while the window and the output high-water mark allow. */
static void blast_fill(conn *c)
{
    while (c->blasting && c->to_send && c->out.len - c->out.pos < OUT_HIGH) {
        if (cfg.qos == 0) {
            uint64_t n = c->to_send < cfg.per_block ? c->to_send : cfg.per_block;
            buf_put(&c->out, cfg.block, (size_t)n * cfg.pkt_len);
            c->to_send -= n;
            counters.publish_out += n;
            continue;
        }
        if (c->inflight >= cfg.window)
            break;
        buf_reserve(&c->out, cfg.pkt_len);
        uint8_t *p = c->out.data + c->out.len;
        memcpy(p, cfg.block, cfg.pkt_len);
        uint16_t id = take_id(c);
        p[cfg.id_offset] = (uint8_t)(id >> 8);
        p[cfg.id_offset + 1] = (uint8_t)id;
        c->out.len += cfg.pkt_len;
        c->inflight++;
        c->to_send--;
        counters.publish_out++;
    }
}

/* Writes what is pending until the socket is full; returns false if c was closed. */
static bool flush(conn *c)
{
    for (;;) {
        blast_fill(c);
        if (c->out.pos == c->out.len)
            break;
        ssize_t n = write(c->fd, c->out.data + c->out.pos, c->out.len - c->out.pos);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            close_conn(c);
            return false;
        }
        c->out.pos += (size_t)n;
        if (c->out.pos == c->out.len)
            c->out.pos = c->out.len = 0;
    }
    size_t pending = c->out.len - c->out.pos;
    uint32_t ev = (pending < OUT_PAUSE ? EPOLLIN : 0) | (pending ? EPOLLOUT : 0);
    watch(c, ev);
    return true;
}

static void on_subscribe(conn *c, const uint8_t *p, size_t n)
{
    if (n < 2)
        return;
    uint8_t granted[256];
    size_t count = 0;
    size_t i = 2;
    while (i + 2 <= n && count < sizeof granted) {
        i += 2 + ((size_t)p[i] << 8 | p[i + 1]); /* skip the filter */
        if (i >= n)
            break;
        granted[count++] = (uint8_t)(p[i] > 2 ? 0x80 : p[i]);
        i++;
    }
    uint8_t h[8];
    size_t hl = 0;
    h[hl++] = 0x90;
    hl += put_remaining(h + hl, 2 + count);
    h[hl++] = p[0];
    h[hl++] = p[1];
    buf_put(&c->out, h, hl);
    buf_put(&c->out, granted, count);
    if (cfg.mode == MODE_BLAST && !c->blasting) {
        c->blasting = true;
        c->to_send = cfg.count;
    }
}

static void on_publish(conn *c, uint8_t first, const uint8_t *p, size_t n)
{
    int qos = (first >> 1) & 3;
    if (qos > 2 || n < 2)
        return;
    size_t tl = (size_t)p[0] << 8 | p[1];
    size_t head = 2 + tl + (qos ? 2 : 0);
    if (head > n)
        return;
    counters.publish_in[qos]++;
    uint16_t id = qos ? (uint16_t)(p[2 + tl] << 8 | p[3 + tl]) : 0;
    if (qos == 1)
        put_ack(c, 0x40, id);
    else if (qos == 2)
        put_ack(c, 0x50, id);
    if (cfg.mode != MODE_ECHO)
        return;
    size_t pl = n - head;
    buf_reserve(&c->out, n + 8);
    c->out.len += encode_publish(c->out.data + c->out.len, p + 2, tl, p + head, pl, qos,
                                 qos ? take_id(c) : 0);
    counters.publish_out++;
}

/* Handles one packet; returns false when the connection must end. */
static bool on_packet(conn *c, uint8_t first, const uint8_t *p, size_t n)
{
    uint16_t id = n >= 2 ? (uint16_t)(p[0] << 8 | p[1]) : 0;
    switch (first >> 4) {
    case 1: { /* CONNECT */
        static const uint8_t connack[4] = {0x20, 2, 0, 0};
        buf_put(&c->out, connack, sizeof connack);
        break;
    }
    case 3:
        on_publish(c, first, p, n);
        break;
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
    case 8:
        on_subscribe(c, p, n);
        break;
    case 10: /* UNSUBSCRIBE */
        put_ack(c, 0xB0, id);
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

static void on_readable(conn *c)
{
    buf_reserve(&c->in, READ_CHUNK);
    ssize_t n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        close_conn(c);
        return;
    }
    c->in.len += (size_t)n;
    if (!parse(c)) {
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
                    "[-w window] [-s payload_bytes] [-t topic]\n");
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
        else
            usage();
    }
    if ((argc - 2) % 2 || cfg.qos < 0 || cfg.qos > 2 || cfg.window < 1 || cfg.window > 65000 ||
        *port < 0 || *port > 65535 || strlen(cfg.topic) == 0 || strlen(cfg.topic) > 65535 ||
        cfg.payload > MAX_PACKET)
        usage();
}

int main(int argc, char **argv)
{
    int port = 0;
    parse_args(argc, argv, &port);
    build_block();

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
