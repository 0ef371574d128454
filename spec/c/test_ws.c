/*
 * WebSocket transport tests against a scripted server in the same thread: a
 * loopback listener whose accepted socket the test reads and writes step by
 * step. Checks the exact upgrade request, refused and broken upgrades and
 * their words, frames both ways (fragments, pings, close, text, bad headers,
 * the 126 and 127 length forms, one byte at a time), masking, a full socket,
 * and every allocation failing in turn. Every call into the transport is
 * timed: none may wait.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>

#include "alloc.h"
#include "test.h"
#include "transport.h"

static int lfd = -1;
static unsigned port;
static double slowest; /* the longest time a single call spent off the CPU, seconds */

typedef struct stamp {
    double wall, cpu;
} stamp;

static stamp stamp_now(void)
{
    return (stamp){test_now(), test_cpu_now()};
}

static void timed(stamp t0)
{
    double off = (test_now() - t0.wall) - (test_cpu_now() - t0.cpu);
    if (off > slowest)
        slowest = off;
}

static int progress(mqtt_transport *t, char *err, size_t errlen)
{
    stamp t0 = stamp_now();
    int rc = mqtt__transport_progress(t, err, errlen);
    timed(t0);
    return rc;
}

static ssize_t tr_read(mqtt_transport *t, void *buf, size_t len)
{
    stamp t0 = stamp_now();
    ssize_t n = t->ops->read(t, buf, len);
    timed(t0);
    return n;
}

static ssize_t tr_write(mqtt_transport *t, const void *buf, size_t len)
{
    stamp t0 = stamp_now();
    ssize_t n = t->ops->write(t, buf, len);
    timed(t0);
    return n;
}

static void wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    poll(&p, 1, 1000);
}

/* ---- the scripted server's side -------------------------------------- */

static int listen_loopback(unsigned *p)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) != 0 || listen(fd, 16) != 0)
        return -1;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *p = ntohs(sa.sin_port);
    return fd;
}

/* Sends all of b (the server side blocks: only the client must not). */
static void srv_send(int fd, const void *b, size_t n)
{
    const uint8_t *p = b;
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static bool srv_recv(int fd, void *b, size_t n)
{
    uint8_t *p = b;
    while (n > 0) {
        ssize_t k = recv(fd, p, n, 0);
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* An unmasked server frame. */
static size_t frame(uint8_t *out, bool fin, unsigned op, const void *payload, size_t n)
{
    size_t h = 2;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (n < 126) {
        out[1] = (uint8_t)n;
    } else if (n < 65536) {
        out[1] = 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
        h = 4;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        h = 10;
    }
    if (n)
        memcpy(out + h, payload, n);
    return h + n;
}

typedef struct cframe {
    unsigned op;
    bool fin, masked;
    size_t len;
    uint8_t data[70000];
} cframe;

/* Reads one client frame and unmasks it; false on EOF or a timeout. */
static bool srv_frame(int fd, cframe *f)
{
    uint8_t h[14], key[4] = {0};
    if (!srv_recv(fd, h, 2))
        return false;
    f->fin = h[0] & 0x80;
    f->op = h[0] & 0x0f;
    f->masked = h[1] & 0x80;
    uint64_t n = h[1] & 0x7f;
    size_t ext = n == 126 ? 2 : n == 127 ? 8 : 0;
    if (ext && !srv_recv(fd, h + 2, ext))
        return false;
    if (ext)
        n = 0;
    for (size_t i = 0; i < ext; i++)
        n = n << 8 | h[2 + i];
    if (n > sizeof f->data || (f->masked && !srv_recv(fd, key, 4)) ||
        !srv_recv(fd, f->data, (size_t)n))
        return false;
    for (size_t i = 0; i < n; i++)
        f->data[i] ^= key[i % 4];
    f->len = (size_t)n;
    return true;
}

static void accept_for(const char *key, char *out, size_t n)
{
    char cat[128];
    uint8_t sha[20];
    size_t olen = 0;
    int k = snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    mbedtls_sha1_ret((const uint8_t *)cat, (size_t)k, sha);
    mbedtls_base64_encode((uint8_t *)out, n, &olen, sha, sizeof sha);
}

/* ---- opening ---------------------------------------------------------- */

typedef struct conn {
    mqtt_transport *t;
    int srv;
    char req[4096];
    size_t req_len;
    char key[64];
    int rc;
    char err[400];
} conn;

/* A copy of h as the endpoint owns it; false when out of memory. */
static bool headers_of(const char *const *h, mqtt_header **out, size_t *count)
{
    size_t n = 0;
    *out = NULL;
    *count = 0;
    while (h && h[n])
        n++;
    if (n == 0)
        return true;
    mqtt_header *v = mqtt__calloc(n / 2 + 1, sizeof *v);
    if (!v)
        return false;
    for (size_t i = 0; i + 1 < n; i += 2)
        v[i / 2] = (mqtt_header){h[i], h[i + 1]};
    *out = v;
    *count = n / 2;
    return true;
}

/* Accepts the connection from the client socket fd; closes leftovers of
 * earlier opens (an open that failed after its connect). */
static int accept_ours(int fd)
{
    struct sockaddr_in mine, peer;
    socklen_t ml = sizeof mine, pl = sizeof peer;
    if (getsockname(fd, (struct sockaddr *)&mine, &ml) != 0)
        return -1;
    for (;;) {
        int s = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
        if (s < 0 || peer.sin_port == mine.sin_port)
            return s;
        close(s);
        pl = sizeof peer;
    }
}

/* Starts opening ws://127.0.0.1:port<path> and takes the request, as far as
 * the client gets; c->rc is the open's state. */
static void start(conn *c, const char *path, const char *const *headers)
{
    memset(c, 0, sizeof *c);
    c->srv = -1;
    char uri[200];
    snprintf(uri, sizeof uri, "ws://127.0.0.1:%u%s", port, path);
    mqtt_endpoint ep;
    c->rc = mqtt__endpoint_parse(uri, 0, &ep, c->err, sizeof c->err);
    if (c->rc != MQTT_OK)
        return;
    mqtt_header *hv = NULL;
    if (!headers_of(headers, &hv, &ep.ws_header_count)) {
        mqtt__endpoint_clear(&ep);
        c->rc = MQTT_ERR_NOMEM;
        return;
    }
    ep.ws_headers = hv;
    stamp t0 = stamp_now();
    c->rc = mqtt__transport_open(&ep, NULL, &c->t, c->err, sizeof c->err);
    timed(t0);
    mqtt__endpoint_clear(&ep);
    mqtt__free(hv);
    for (int i = 0; i < 200 && c->rc == MQTT_ERR_INCOMPLETE; i++) {
        if (c->srv < 0) {
            struct pollfd p = {.fd = lfd, .events = POLLIN};
            if (poll(&p, 1, 0) == 1)
                c->srv = accept_ours(c->t->fd);
            struct timeval tv = {.tv_sec = 2};
            if (c->srv >= 0) /* the server may wait, not forever */
                setsockopt(c->srv, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        }
        if (c->srv >= 0) {
            struct pollfd p = {.fd = c->srv, .events = POLLIN};
            while (poll(&p, 1, 0) == 1 && c->req_len < sizeof c->req - 1) {
                ssize_t k = recv(c->srv, c->req + c->req_len, sizeof c->req - 1 - c->req_len, 0);
                if (k <= 0)
                    break;
                c->req_len += (size_t)k;
            }
            c->req[c->req_len] = '\0';
            if (strstr(c->req, "\r\n\r\n"))
                break;
        }
        c->rc = progress(c->t, c->err, sizeof c->err);
        if (c->rc == MQTT_ERR_INCOMPLETE)
            wait_fd(c->t->fd, c->t->events);
    }
    const char *k = strstr(c->req, "Sec-WebSocket-Key: ");
    if (k)
        snprintf(c->key, sizeof c->key, "%.*s", (int)strcspn(k + 19, "\r\n"), k + 19);
}

/* Sends the server's response bytes and runs the open to its end. */
static int answer(conn *c, const char *resp, size_t n)
{
    if (c->srv < 0 || c->rc != MQTT_ERR_INCOMPLETE)
        return c->rc;
    srv_send(c->srv, resp, n);
    for (int i = 0; i < 100 && c->rc == MQTT_ERR_INCOMPLETE; i++) {
        c->rc = progress(c->t, c->err, sizeof c->err);
        if (c->rc == MQTT_ERR_INCOMPLETE)
            wait_fd(c->t->fd, c->t->events);
    }
    return c->rc;
}

static size_t good_response(const conn *c, char *out, size_t n, const char *extra)
{
    char acc[64];
    accept_for(c->key, acc, sizeof acc);
    return (size_t)snprintf(out, n,
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                            "Sec-WebSocket-Protocol: mqtt\r\n%s\r\n",
                            acc, extra ? extra : "");
}

/* An open transport and its server socket, or false. */
static bool open_conn(conn *c)
{
    char resp[512];
    start(c, "/mqtt", NULL);
    size_t n = good_response(c, resp, sizeof resp, NULL);
    return answer(c, resp, n) == MQTT_OK;
}

static void finish(conn *c)
{
    if (c->t)
        c->t->ops->close(c->t);
    if (c->srv >= 0)
        close(c->srv);
    c->t = NULL;
    c->srv = -1;
}

/* Reads from the client until want bytes arrived or it ends; the count, or -status. */
static ssize_t read_n(mqtt_transport *t, uint8_t *buf, size_t want, size_t chunk)
{
    size_t got = 0;
    for (int idle = 0; got < want && idle < 50;) {
        size_t ask = want - got < chunk ? want - got : chunk;
        ssize_t n = tr_read(t, buf + got, ask);
        if (n < 0)
            return got ? (ssize_t)got : n;
        if (n == 0) {
            idle++;
            wait_fd(t->fd, POLLIN);
        }
        got += (size_t)(n > 0 ? n : 0);
    }
    return (ssize_t)got;
}

/* Reads until the client reports an end (or 50 idle rounds): the -status. */
static ssize_t read_end(mqtt_transport *t, uint8_t *buf, size_t cap, size_t *got)
{
    for (int idle = 0; idle < 50;) {
        ssize_t n = tr_read(t, buf + *got, cap - *got);
        if (n < 0)
            return n;
        if (n == 0) {
            idle++;
            wait_fd(t->fd, POLLIN);
        }
        *got += (size_t)(n > 0 ? n : 0);
    }
    return 0;
}

/* ---- the upgrade -------------------------------------------------------- */

static void test_request(void)
{
    char acc[64], name[600];
    accept_for("dGhlIHNhbXBsZSBub25jZQ==", acc, sizeof acc);
    CHECK(strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0,
          "the test's accept helper gives RFC 6455's own example");

    conn c;
    const char *hdrs[] = {"Authorization", "Bearer abc.def", "X-Client", "zmqtt test", NULL};
    start(&c, "/mqtt/path?x=1", hdrs);
    char want[1024];
    snprintf(want, sizeof want,
             "GET /mqtt/path?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Protocol: mqtt\r\nAuthorization: Bearer abc.def\r\n"
             "X-Client: zmqtt test\r\n\r\n",
             port, c.key);
    bool exact = c.rc == MQTT_ERR_INCOMPLETE && strcmp(c.req, want) == 0;
    if (!exact) /* the request as a TAP comment, one line */
        for (char *p = c.req; *p; p++)
            *p = *p == '\r' || *p == '\n' ? '|' : *p;
    snprintf(name, sizeof name, "the upgrade request is exact (path, Host, key, version, "
                                "subprotocol, extra headers in order)%s%.300s",
             exact ? "" : ": got ", exact ? "" : c.req);
    CHECK(exact, name);
    uint8_t raw[32];
    size_t olen = 0;
    CHECK(strlen(c.key) == 24 &&
              mbedtls_base64_decode(raw, sizeof raw, &olen, (const uint8_t *)c.key, 24) == 0 &&
              olen == 16,
          "Sec-WebSocket-Key is the base64 of 16 bytes");
    char step[200] = "";
    c.t->ops->waiting(c.t, step, sizeof step);
    char wstep[100];
    snprintf(wstep, sizeof wstep, "WebSocket upgrade with 127.0.0.1 port %u", port);
    CHECK(strcmp(step, wstep) == 0, "while the response is awaited, waiting() names the upgrade");
    char other[64];
    conn d;
    start(&d, "", NULL);
    snprintf(other, sizeof other, "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n", port);
    CHECK(strncmp(d.req, other, strlen(other)) == 0, "ws://host:port without a path asks for /");
    CHECK(strcmp(c.key, d.key) != 0, "each open draws a new key");
    finish(&d);

    /* The response one byte at a time: open exactly at its last byte. */
    char resp[600];
    size_t n = good_response(&c, resp, sizeof resp, NULL), sent = 0;
    while (sent < n && c.rc == MQTT_ERR_INCOMPLETE) {
        srv_send(c.srv, resp + sent++, 1);
        wait_fd(c.t->fd, POLLIN);
        c.rc = progress(c.t, c.err, sizeof c.err);
    }
    CHECK(c.rc == MQTT_OK && sent == n, "a response arriving one byte at a time opens at its "
                                        "last byte");
    finish(&c);

    /* A frame in the same segment as the 101 is kept for the first read. */
    start(&c, "/mqtt", NULL);
    n = good_response(&c, resp, sizeof resp, NULL);
    n += frame((uint8_t *)resp + n, true, 2, "\x20\x02\x00\x00", 4);
    uint8_t buf[64];
    int rc = answer(&c, resp, n);
    ssize_t r = read_n(c.t, buf, 4, sizeof buf);
    CHECK(rc == MQTT_OK && r == 4 && memcmp(buf, "\x20\x02\x00\x00", 4) == 0,
          "bytes sent right behind the 101 are read as the first frame");
    finish(&c);
}

typedef struct refusal {
    const char *what, *resp, *err;
    int rc;
} refusal;

static void test_refusals(void)
{
    static const refusal cases[] = {
        {"a 403", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
         "websocket upgrade refused: 403 Forbidden", MQTT_ERR_CONNECT},
        {"a 404 without a reason", "HTTP/1.0 404\r\n\r\n", "websocket upgrade refused: 404",
         MQTT_ERR_CONNECT},
        {"a 200 (no upgrade)", "HTTP/1.1 200 OK\r\n\r\n", "websocket upgrade refused: 200 OK",
         MQTT_ERR_CONNECT},
        {"no Sec-WebSocket-Accept",
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
         "websocket upgrade failed: no Sec-WebSocket-Accept", MQTT_ERR_CONNECT},
        {"a bad Sec-WebSocket-Accept",
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n"
         "\r\n",
         "websocket upgrade failed: bad Sec-WebSocket-Accept", MQTT_ERR_CONNECT},
        {"no Upgrade header", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
         "websocket upgrade failed: no 'Upgrade: websocket' in the response", MQTT_ERR_CONNECT},
        {"not HTTP", "SSH-2.0-OpenSSH_9.2\r\n\r\n",
         "websocket upgrade failed: the server did not answer in HTTP", MQTT_ERR_CONNECT},
    };
    char name[600];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        conn c;
        start(&c, "/mqtt", NULL);
        int rc = answer(&c, cases[i].resp, strlen(cases[i].resp));
        snprintf(name, sizeof name, "%s: %s, \"%s\"", cases[i].what, mqtt_errname(rc), c.err);
        CHECK(rc == cases[i].rc && strcmp(c.err, cases[i].err) == 0, name);
        finish(&c);
    }
    /* The subprotocol and extensions, with a right accept. */
    const char *extras[][2] = {
        {"Sec-WebSocket-Protocol: mqttv3.1\r\n",
         "websocket upgrade failed: the server chose the subprotocol 'mqttv3.1', not mqtt"},
        {"", "websocket upgrade failed: the server chose no subprotocol (mqtt was asked for)"},
        {"Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
         "websocket upgrade failed: the server chose an extension, none was offered"},
    };
    for (size_t i = 0; i < 3; i++) {
        conn c;
        char acc[64], resp[600];
        start(&c, "/mqtt", NULL);
        accept_for(c.key, acc, sizeof acc);
        int n = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nupgrade: "
                                            "WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
                                            "Sec-WebSocket-Accept: %s\r\n%s\r\n",
                         acc, extras[i][0]);
        int rc = answer(&c, resp, (size_t)n);
        snprintf(name, sizeof name, "a 101 with %s: \"%s\"",
                 i == 0 ? "another subprotocol" : i == 1 ? "no subprotocol" : "an extension",
                 c.err);
        CHECK(rc == MQTT_ERR_CONNECT && strcmp(c.err, extras[i][1]) == 0, name);
        finish(&c);
    }
    conn c;
    start(&c, "/mqtt", NULL);
    shutdown(c.srv, SHUT_RDWR);
    int rc = answer(&c, "", 0);
    snprintf(name, sizeof name, "a server closing before answering: \"%s\"", c.err);
    CHECK(rc == MQTT_ERR_CONNECT &&
              strcmp(c.err, "websocket upgrade failed: the server closed the connection before "
                            "the response") == 0,
          name);
    finish(&c);
    const char *bad[] = {"X-Bad", "a\r\nInjected: 1", NULL};
    start(&c, "/mqtt", bad);
    snprintf(name, sizeof name, "a header value with CR LF is refused before connecting: \"%s\"",
             c.err);
    CHECK(c.rc == MQTT_ERR_INVAL && !c.t && strstr(c.err, "control character"), name);
    const char *reserved[] = {"Sec-WebSocket-Protocol", "mqttv5", NULL};
    start(&c, "/mqtt", reserved);
    snprintf(name, sizeof name, "a header the upgrade sets itself is refused: \"%s\"", c.err);
    CHECK(c.rc == MQTT_ERR_INVAL && !c.t && strstr(c.err, "sets itself"), name);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    CHECK(poll(&p, 1, 0) == 0, "refused headers made no connection");
}

/* ---- frames --------------------------------------------------------------- */

static cframe cf; /* large: not on the stack */

static void test_frames_in(void)
{
    conn c;
    uint8_t f[256], buf[256];
    size_t n = 0;
    bool up = open_conn(&c);
    CHECK(up, "a scripted upgrade opens");
    if (!up) {
        finish(&c);
        return;
    }
    /* A fragmented message with a ping between its fragments. */
    n += frame(f + n, false, 2, "ab", 2);
    n += frame(f + n, true, 9, "ping!", 5);
    n += frame(f + n, false, 0, "cd", 2);
    n += frame(f + n, true, 0, "ef", 2);
    n += frame(f + n, true, 2, "", 0);
    n += frame(f + n, true, 10, "unasked", 7);
    n += frame(f + n, true, 2, "gh", 2);
    srv_send(c.srv, f, n);
    ssize_t r = read_n(c.t, buf, 8, sizeof buf);
    CHECK(r == 8 && memcmp(buf, "abcdefgh", 8) == 0,
          "fragments (continuation frames) are reassembled; empty frames and pongs skipped");
    bool got = srv_frame(c.srv, &cf);
    CHECK(got && cf.op == 10 && cf.fin && cf.masked && cf.len == 5 &&
              memcmp(cf.data, "ping!", 5) == 0,
          "a ping between fragments is answered by a masked pong with its payload");

    /* Every byte on its own: header, extended lengths, payload. */
    uint8_t big[300];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    static uint8_t fb[400];
    size_t fl = frame(fb, true, 2, big, sizeof big);
    fl += frame(fb + fl, true, 9, "p", 1);
    size_t total = 0;
    static uint8_t in[400];
    for (size_t i = 0; i < fl; i++) {
        srv_send(c.srv, fb + i, 1);
        wait_fd(c.t->fd, POLLIN);
        r = tr_read(c.t, in + total, sizeof in - total);
        total += r > 0 ? (size_t)r : 0;
    }
    CHECK(total == sizeof big && memcmp(in, big, sizeof big) == 0 && fb[1] == 126,
          "a 126-form frame arriving one byte per read is read whole");
    got = srv_frame(c.srv, &cf);
    CHECK(got && cf.op == 10 && cf.len == 1 && cf.data[0] == 'p',
          "a ping arriving one byte per read is answered");

    /* The 127 form, read through a small buffer (the rest waits in the transport). */
    static uint8_t huge[70000], frm[70016], back[70000];
    for (size_t i = 0; i < sizeof huge; i++)
        huge[i] = (uint8_t)(i % 251);
    fl = frame(frm, true, 2, huge, sizeof huge);
    srv_send(c.srv, frm, fl);
    r = read_n(c.t, back, sizeof back, 1000);
    CHECK(r == (ssize_t)sizeof huge && memcmp(back, huge, sizeof huge) == 0 && frm[1] == 127,
          "a 127-form frame of 70000 bytes is read through 1000-byte reads");

    /* A header announcing 2^62 bytes: what comes is passed on, nothing allocated. */
    static const uint8_t vast[10] = {0x82, 127, 0x40, 0, 0, 0, 0, 0, 0, 0};
    srv_send(c.srv, vast, sizeof vast);
    srv_send(c.srv, huge, 5000);
    mqtt__alloc_fail_at(0);
    r = read_n(c.t, back, 5000, sizeof back);
    unsigned long allocs = mqtt__alloc_fail_at(0);
    CHECK(r == 5000 && memcmp(back, huge, 5000) == 0 && allocs == 0,
          "a frame announcing 2^62 bytes: its first 5000 are read, nothing is allocated");
    finish(&c);
}

static void test_frames_out(void)
{
    conn c;
    if (!open_conn(&c)) {
        CHECK(false, "a scripted upgrade opens");
        finish(&c);
        return;
    }
    ssize_t w = tr_write(c.t, "\xc0\x00", 2);
    bool got = srv_frame(c.srv, &cf);
    CHECK(w == 2 && got && cf.op == 2 && cf.fin && cf.masked && cf.len == 2 &&
              memcmp(cf.data, "\xc0\x00", 2) == 0,
          "a write goes out as one masked binary frame");
    static uint8_t big[20000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 13);
    size_t done = 0, frames = 0;
    bool ok = true;
    while (done < sizeof big) {
        w = tr_write(c.t, big + done, sizeof big - done);
        if (w <= 0 || !srv_frame(c.srv, &cf)) {
            ok = false;
            break;
        }
        ok = ok && cf.op == 2 && cf.masked && cf.len == (size_t)w &&
             memcmp(cf.data, big + done, cf.len) == 0;
        done += (size_t)w;
        frames++;
    }
    CHECK(ok && frames == 2, "20000 bytes go out as two masked frames (the 126 length form)");

    /* A server that does not read: the writes stop at a full socket. */
    int small = 4096;
    setsockopt(c.t->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(c.srv, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    size_t accepted = 0;
    int calls = 0;
    for (; calls < 10000; calls++) {
        w = tr_write(c.t, big, sizeof big);
        if (w <= 0)
            break;
        accepted += (size_t)w;
    }
    CHECK(w == 0 && c.t->want_write, "writes to a full socket return 0 with want_write set");
    size_t seen = 0;
    uint8_t dummy = 0;
    while (seen < accepted) {
        if (!srv_frame(c.srv, &cf))
            break;
        seen += cf.len;
        if (c.t->want_write)
            tr_read(c.t, &dummy, 0); /* what POLLOUT makes the I/O thread do */
    }
    char name[200];
    snprintf(name, sizeof name, "once the server reads, all %zu accepted bytes arrive in frames",
             accepted);
    CHECK(seen == accepted && !c.t->want_write, name);
    wait_fd(c.t->fd, POLLOUT); /* the window the server opened may be announced late */
    c.t->ops->close(c.t);
    c.t = NULL;
    got = srv_frame(c.srv, &cf);
    CHECK(got && cf.op == 8 && cf.masked && cf.len == 2 && cf.data[0] == 0x03 &&
              cf.data[1] == 0xe8,
          "close sends a close frame (1000) on its way out");
    finish(&c);
}

typedef struct bad_frame {
    const char *what;
    uint8_t bytes[8];
    size_t len;
    unsigned code; /* the close code the client answers with */
    int status;
} bad_frame;

static void test_ends(void)
{
    static const bad_frame cases[] = {
        {"a close frame (1001)", {0x88, 2, 0x03, 0xe9}, 4, 1001, MQTT_ERR_CLOSED},
        {"an empty close frame", {0x88, 0}, 2, 0, MQTT_ERR_CLOSED},
        {"a text frame", {0x81, 2, 'h', 'i'}, 4, 1003, MQTT_ERR_PROTOCOL},
        {"a masked frame", {0x82, 0x81, 1, 2, 3, 4, 'x'}, 7, 1002, MQTT_ERR_PROTOCOL},
        {"a reserved bit", {0xc2, 1, 'x'}, 3, 1002, MQTT_ERR_PROTOCOL},
        {"a continuation out of the blue", {0x80, 1, 'x'}, 3, 1002, MQTT_ERR_PROTOCOL},
        {"an unknown opcode", {0x83, 1, 'x'}, 3, 1002, MQTT_ERR_PROTOCOL},
        {"a fragmented ping", {0x09, 1, 'x'}, 3, 1002, MQTT_ERR_PROTOCOL},
        {"a 126 length under 126", {0x82, 126, 0, 5, 1, 2, 3, 4}, 8, 1002, MQTT_ERR_PROTOCOL},
        {"a new message inside a fragmented one", {0x02, 1, 'x', 0x82, 1, 'y'}, 6, 1002,
         MQTT_ERR_PROTOCOL},
    };
    char name[300];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        conn c;
        if (!open_conn(&c)) {
            CHECK(false, "a scripted upgrade opens");
            finish(&c);
            continue;
        }
        uint8_t pre[8], buf[64];
        size_t n = frame(pre, true, 2, "ok", 2);
        srv_send(c.srv, pre, n);
        srv_send(c.srv, cases[i].bytes, cases[i].len);
        size_t got = 0;
        ssize_t end = read_end(c.t, buf, sizeof buf, &got);
        bool answered = srv_frame(c.srv, &cf);
        unsigned code = cf.len >= 2 ? (unsigned)cf.data[0] << 8 | cf.data[1] : 0;
        bool clean = tr_write(c.t, "x", 1) < 0;
        snprintf(name, sizeof name, "%s: the bytes before it, then %s; the client sends close "
                                    "%u; later writes fail", cases[i].what,
                 mqtt_errname(cases[i].status), cases[i].code);
        CHECK(got >= 1 && memcmp(buf, "ok", got < 2 ? got : 2) == 0 &&
                  end == -cases[i].status && answered && cf.op == 8 && cf.masked &&
                  code == cases[i].code && clean,
              name);
        finish(&c);
    }
    conn c;
    if (open_conn(&c)) {
        shutdown(c.srv, SHUT_WR);
        uint8_t buf[8];
        size_t got = 0;
        CHECK(read_end(c.t, buf, sizeof buf, &got) == -MQTT_ERR_CLOSED && got == 0,
              "a server that closes the TCP stream: MQTT_ERR_CLOSED");
    }
    finish(&c);
}

/* A read of 64 kB (the I/O thread's) leaves nothing in the transport: with
 * the socket empty, the next read has nothing either. This is what lets the
 * I/O thread stop reading and poll, after a short read or a full one. Each
 * burst is in the socket whole before the first read. */
static void test_nothing_hidden(void)
{
    conn c;
    if (!open_conn(&c)) {
        CHECK(false, "a scripted upgrade opens");
        finish(&c);
        return;
    }
    static uint8_t stream[80000], buf[64 * 1024], want[80000];
    const size_t sizes[] = {70000, 65536, 65600, 100, 40000, 20000};
    int hidden = 0, empties = 0;
    bool same = true;
    for (size_t r = 0; r < sizeof sizes / sizeof sizes[0]; r++) {
        for (size_t i = 0; i < sizes[r]; i++)
            want[i] = (uint8_t)(i * 3 + r);
        size_t sl = frame(stream, true, 2, want, sizes[r]), got = 0;
        srv_send(c.srv, stream, sl);
        int queued = 0;
        for (int i = 0; i < 100 && (size_t)queued < sl; i++) {
            ioctl(c.t->fd, FIONREAD, &queued);
            if ((size_t)queued < sl)
                wait_fd(c.t->fd, POLLIN);
        }
        for (int i = 0; i < 100 && got < sizes[r]; i++) {
            ssize_t n = tr_read(c.t, buf, sizeof buf);
            if (n <= 0)
                break;
            same = same && memcmp(buf, want + got, (size_t)n) == 0;
            got += (size_t)n;
            struct pollfd p = {.fd = c.t->fd, .events = POLLIN};
            if (poll(&p, 1, 0) == 0) {
                empties++;
                hidden += tr_read(c.t, buf, sizeof buf) != 0;
            }
        }
        same = same && got == sizes[r];
    }
    char name[200];
    snprintf(name, sizeof name, "bursts of 100 B to 70 kB arrive whole; after each of %d reads "
                                "that left the socket empty, nothing waits in the transport",
             empties);
    CHECK(same && hidden == 0 && empties >= 6, name);
    finish(&c);
}

/* ---- allocation failures -------------------------------------------------- */

/* One whole life: open, a frame each way, a ping, close. */
static int one_life(void)
{
    conn c;
    char resp[512];
    start(&c, "/mqtt", (const char *const[]){"X-A", "1", NULL});
    size_t n = good_response(&c, resp, sizeof resp, NULL);
    int rc = answer(&c, resp, n);
    if (rc == MQTT_OK) {
        uint8_t f[32], buf[8];
        size_t fl = frame(f, true, 9, "", 0);
        fl += frame(f + fl, true, 2, "in", 2);
        srv_send(c.srv, f, fl);
        rc = read_n(c.t, buf, 2, sizeof buf) == 2 && tr_write(c.t, "out", 3) == 3 &&
                     srv_frame(c.srv, &cf) && srv_frame(c.srv, &cf)
                 ? MQTT_OK
                 : MQTT_ERR_IO;
    }
    finish(&c);
    return rc;
}

static void test_oom(void)
{
    bool clean = true;
    unsigned long k = 1, points = 0;
    for (; k < 64; k++) {
        long live = mqtt__alloc_live();
        mqtt__alloc_fail_at(k);
        int rc = one_life();
        points = mqtt__alloc_fail_at(0);
        clean = clean && (rc == MQTT_OK || rc == MQTT_ERR_NOMEM) && mqtt__alloc_live() == live;
        if (points < k)
            break; /* the k-th allocation was never made: every one has failed once */
    }
    char name[200];
    snprintf(name, sizeof name, "each of the %lu allocations of an open and a frame each way "
                                "failing in turn ends cleanly, leaking nothing", k - 1);
    CHECK(clean && k > 3 && k < 64, name);
}

int main(void)
{
    mqtt__alloc_track();
    lfd = listen_loopback(&port);
    CHECK(lfd >= 0, "a loopback listener for the scripted server");
    if (lfd < 0)
        return test_done();
    test_request();
    test_refusals();
    test_frames_in();
    test_frames_out();
    test_ends();
    test_nothing_hidden();
    test_oom();
    char name[200];
    snprintf(name, sizeof name, "no call into the transport waits (longest off-CPU %.2f ms)",
             slowest * 1e3);
    /* Generous, as the CPU is shared: a call that blocked would hang the test. */
    CHECK(slowest < 1.0, name);
    close(lfd);
    CHECK(mqtt__alloc_live() == 0, "every block the transport allocated is freed");
    return test_done();
}
