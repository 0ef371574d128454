/*
 * Fuzz target: the WebSocket transport's opening and reading, over a fake
 * inner transport that plays the server. Input: byte 0 sets how many bytes
 * each inner read hands over (1..64, or all), byte 1 the caller's read sizes
 * and when it writes; the rest is what the server sends: an upgrade response
 * then frames. "@ACCEPT@" in it becomes the right Sec-WebSocket-Accept for the
 * key the request carried, so inputs get past the upgrade. Checked: no crash
 * or leak, reads never overrun, an end stays an end, and every frame the
 * client sends after the request is masked and well formed. FUZZ_TRACE=1
 * prints how far an input got.
 */
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>

#include "fuzz_util.h"
#include "stack.h"

#define PLACEHOLDER "@ACCEPT@"

typedef struct fake {
    mqtt_transport base;
    const uint8_t *script; /* the server's bytes, placeholder not yet replaced */
    size_t script_len;
    uint8_t *served;       /* the bytes served: the script with the accept put in */
    size_t served_len, pos;
    size_t chunk;
    unsigned calls;
    char req[4096];        /* what the client wrote, up to the request's end */
    size_t req_len;
    uint8_t out[1 << 16];  /* the client's frames after the request */
    size_t out_len;
} fake;

/* The script with the placeholder replaced, once the request showed its key. */
static void prepare(fake *f)
{
    const char *k = strstr(f->req, "Sec-WebSocket-Key: ");
    char cat[128], acc[64] = "";
    uint8_t sha[20];
    size_t olen = 0;
    if (k) {
        int n = snprintf(cat, sizeof cat, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
                         (int)strcspn(k + 19, "\r\n"), k + 19);
        mbedtls_sha1_ret((const uint8_t *)cat, (size_t)n, sha);
        mbedtls_base64_encode((uint8_t *)acc, sizeof acc, &olen, sha, sizeof sha);
    }
    f->served = malloc(f->script_len + 64);
    const uint8_t *p = f->script;
    size_t left = f->script_len;
    const uint8_t *at = memmem(p, left, PLACEHOLDER, 8);
    if (at) {
        size_t before = (size_t)(at - p);
        memcpy(f->served, p, before);
        memcpy(f->served + before, acc, olen);
        memcpy(f->served + before + olen, at + 8, left - before - 8);
        f->served_len = left - 8 + olen;
    } else {
        memcpy(f->served, p, left);
        f->served_len = left;
    }
}

static ssize_t fake_read(mqtt_transport *t, void *buf, size_t len)
{
    fake *f = (fake *)t;
    if (!f->served)
        prepare(f);
    if (++f->calls % 3 == 0 && f->pos < f->served_len)
        return 0; /* would block now and then */
    if (f->pos == f->served_len)
        return -MQTT_ERR_CLOSED;
    size_t n = f->served_len - f->pos;
    if (n > f->chunk)
        n = f->chunk;
    if (n > len)
        n = len;
    memcpy(buf, f->served + f->pos, n);
    f->pos += n;
    return (ssize_t)n;
}

static ssize_t fake_write(mqtt_transport *t, const void *buf, size_t len)
{
    fake *f = (fake *)t;
    if (++f->calls % 4 == 0)
        return 0; /* a full socket now and then */
    const uint8_t *b = buf;
    size_t n = len > 700 ? 700 : len;
    for (size_t i = 0; i < n; i++) {
        bool in_req = f->req_len < 4 || memcmp(f->req + f->req_len - 4, "\r\n\r\n", 4) != 0;
        if (in_req && f->req_len < sizeof f->req - 1)
            f->req[f->req_len++] = (char)b[i];
        else if (!in_req && f->out_len < sizeof f->out)
            f->out[f->out_len++] = b[i];
    }
    return (ssize_t)n;
}

static void fake_close(mqtt_transport *t)
{
    (void)t; /* the harness owns it */
}

static const mqtt_transport_ops fake_ops = {fake_read, fake_write, fake_close, NULL, NULL};

/* Every frame the client sent: masked, a known opcode, lengths in range. */
static void check_out(const fake *f)
{
    size_t i = 0;
    while (i + 2 <= f->out_len) {
        uint8_t op = f->out[i] & 0x0f;
        FZ_CHECK((f->out[i] & 0x70) == 0 && (f->out[i + 1] & 0x80));
        FZ_CHECK(op == 2 || op == 8 || op == 10);
        uint64_t n = f->out[i + 1] & 0x7f;
        size_t h = n == 126 ? 4 : n == 127 ? 10 : 2;
        if (i + h > f->out_len)
            return;
        if (n == 126)
            n = (uint64_t)f->out[i + 2] << 8 | f->out[i + 3];
        FZ_CHECK(n != 127 && (op == 2 || n <= 125));
        i += h + 4 + (size_t)n;
    }
}

static void run(fake *f, uint8_t mode)
{
    mqtt_endpoint ep = {.scheme = MQTT_SCHEME_WS, .host = "broker.test", .port = 80,
                        .path = "/mqtt"};
    mqtt_transport *t = NULL;
    char err[400];
    int rc = mqtt__ws_stack(&f->base, &ep, &t, err, sizeof err);
    for (int i = 0; i < 10000 && rc == MQTT_ERR_INCOMPLETE; i++)
        rc = mqtt__transport_progress(t, err, sizeof err);
    FZ_CHECK(rc != MQTT_ERR_INCOMPLETE);
    FZ_CHECK(rc == MQTT_OK || err[0]);
    static uint8_t buf[70000];
    size_t total = 0, lens[4] = {1, 100, 4096, sizeof buf};
    ssize_t n = 0;
    for (int i = 0; rc == MQTT_OK && i < 100000; i++) {
        size_t len = lens[(mode + i) & 3];
        n = t->ops->read(t, buf, len);
        FZ_CHECK(n <= (ssize_t)len);
        if (n < 0)
            break;
        total += (size_t)n;
        if ((mode & 0x10) && i % 7 == 0)
            t->ops->write(t, "\x30\x03\x00\x01t", 5);
        if (n == 0 && f->pos == f->served_len)
            break;
    }
    FZ_CHECK(total <= f->served_len);
    if (getenv("FUZZ_TRACE"))
        fprintf(stderr, "open: %s (%s); %zu bytes read, end %zd; %zu bytes of frames sent\n",
                mqtt_errname(rc), rc == MQTT_OK ? "" : err, total, n, f->out_len);
    if (n < 0) /* an end stays an end */
        FZ_CHECK(t->ops->read(t, buf, sizeof buf) < 0);
    if (t)
        t->ops->close(t);
    check_out(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    if (len < 2)
        return 0;
    static fake f;
    memset(&f, 0, sizeof f);
    f.base.ops = &fake_ops;
    f.base.fd = -1;
    f.script = data + 2;
    f.script_len = len - 2;
    f.chunk = data[0] % 65 ? data[0] % 65 : (size_t)-1;
    run(&f, data[1]);
    free(f.served);
    return 0;
}
