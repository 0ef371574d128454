/*
 * Fuzz target: the proxy handshakes (src/transport/proxy.c) over a fake
 * lower transport that plays the proxy from the input. The first byte picks
 * SOCKS5 or HTTP CONNECT, credentials or none, and the broker's address
 * form; then each read of the fake takes a control byte (0: would block,
 * 0xff: the proxy closes, else a chunk of up to 64 bytes of the input) and
 * each write a control byte (0: would block, else how many bytes it takes).
 * Checks: the open ends in a known status with words; an HTTP open starts
 * the stream at the byte after the first CRLFCRLF the proxy sent (nothing
 * lost, nothing repeated); a SOCKS5 open reads nothing past the reply.
 */
#include <string.h>

#include "fuzz_util.h"
#include "proxy.h"

#define MAX_SEEN 16384

typedef struct fake {
    mqtt_transport base;
    fz_in *in;
    uint8_t seen[MAX_SEEN]; /* every byte the proxy side delivered */
    size_t n_seen;
    size_t n_written;
    bool closed;
} fake;

static ssize_t fake_read(mqtt_transport *t, void *buf, size_t len)
{
    fake *f = (fake *)t;
    if (f->closed || !fz_more(f->in))
        return -MQTT_ERR_CLOSED;
    uint8_t c = fz_u8(f->in);
    if (c == 0)
        return 0;
    if (c == 0xff) {
        f->closed = true;
        return -MQTT_ERR_CLOSED;
    }
    size_t want = (size_t)(c & 63) + 1, n;
    want = want < len ? want : len;
    const uint8_t *p = fz_bytes(f->in, want, &n);
    if (n == 0)
        return -MQTT_ERR_CLOSED;
    n = n < MAX_SEEN - f->n_seen ? n : MAX_SEEN - f->n_seen;
    memcpy(buf, p, n);
    memcpy(f->seen + f->n_seen, p, n);
    f->n_seen += n;
    return (ssize_t)n;
}

static ssize_t fake_write(mqtt_transport *t, const void *buf, size_t len)
{
    fake *f = (fake *)t;
    (void)buf;
    uint8_t c = fz_more(f->in) ? fz_u8(f->in) : 0xff;
    if (c == 0)
        return 0;
    size_t n = c < len ? c : len;
    f->n_written += n;
    return (ssize_t)n;
}

static void fake_close(mqtt_transport *t)
{
    free(t);
}

static const mqtt_transport_ops fake_ops = {fake_read, fake_write, fake_close, NULL, NULL};

/* The end of the first CRLFCRLF in s[0..n), 0: none. */
static size_t header_end(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(s + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    return 0;
}

static void check_open(mqtt_transport *t, fake *f, bool socks)
{
    uint8_t buf[MAX_SEEN];
    if (socks) {
        FZ_CHECK(f->n_seen >= 2 + 7 && f->seen[0] == 5);
        size_t before = f->n_seen;
        ssize_t n = t->ops->read(t, buf, sizeof buf);
        /* The first read is the fake's own: nothing was kept back. */
        FZ_CHECK(n <= 0 || f->n_seen == before + (size_t)n);
        return;
    }
    size_t end = header_end(f->seen, f->n_seen);
    FZ_CHECK(end > 0 && memcmp(f->seen, "HTTP/1.", 7) == 0 && f->seen[9] == '2');
    size_t surplus = f->n_seen - end;
    ssize_t n = surplus ? t->ops->read(t, buf, sizeof buf) : 0;
    FZ_CHECK((size_t)n == surplus && memcmp(buf, f->seen + end, surplus) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    fz_in in = {data, len};
    uint8_t how = fz_u8(&in);
    static const char *const hosts[] = {"broker.example", "10.1.2.3", "2001:db8::1"};
    mqtt_endpoint proxy = {0}, target = {0};
    bool socks = how & 1;
    proxy.scheme = socks ? MQTT_SCHEME_SOCKS5 : MQTT_SCHEME_HTTP;
    proxy.host = "proxy.test";
    proxy.port = 1080;
    if (how & 2) {
        proxy.user = "user";
        proxy.password = "pass";
    }
    target.scheme = MQTT_SCHEME_MQTT;
    target.host = (char *)hosts[(how >> 2) % 3];
    target.port = 1883;
    fake *f = calloc(1, sizeof *f);
    FZ_CHECK(f != NULL);
    f->base.ops = &fake_ops;
    f->base.fd = -1;
    f->in = &in;
    mqtt_transport *t = NULL;
    char err[512] = "";
    int rc = mqtt__proxy_stack(&f->base, &proxy, &target, &t, err, sizeof err);
    for (int i = 0; i < 100000 && rc == MQTT_ERR_INCOMPLETE; i++) {
        rc = mqtt__transport_progress(t, err, sizeof err);
        FZ_CHECK(rc != MQTT_ERR_INCOMPLETE || t->events != 0);
    }
    FZ_CHECK(rc == MQTT_OK || rc == MQTT_ERR_PROXY || rc == MQTT_ERR_INCOMPLETE);
    if (rc == MQTT_ERR_PROXY)
        FZ_CHECK(strncmp(err, "proxy ", 6) == 0);
    if (rc == MQTT_OK)
        check_open(t, f, socks);
    if (t)
        t->ops->close(t);
    return 0;
}
