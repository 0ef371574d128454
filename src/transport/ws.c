/*
 * WebSocket transport (RFC 6455 client, subprotocol "mqtt") stacked on an
 * inner transport (TCP for ws, TLS for wss). Opening: the inner transport
 * opens, the HTTP/1.1 Upgrade request goes out and the response is checked.
 * Open: MQTT bytes travel in masked binary frames, framed and parsed by
 * wslay's frame layer over our own buffers; control frames are answered
 * here. Nothing waits, and no frame is ever held whole in memory.
 */
#include <ctype.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <wslay/wslay.h>

#include "alloc.h"
#include "stack.h"

enum { W_INNER, W_REQUEST, W_RESPONSE, W_OPEN, W_FAILED };

#define IN_CAP 16384          /* bytes read from the inner transport at once */
#define OUT_DATA 16384        /* the largest data frame payload we send */
#define CTL_FRAME (6 + 125)   /* a masked control frame at its largest */
#define CLOSE_FRAME (6 + 2)   /* our close frames: a status code, no reason */
#define OUT_CAP (OUT_DATA + 14 + 2 * CTL_FRAME + CLOSE_FRAME)
#define SPILL_CAP 4096        /* wslay hands payload out of a 4096-byte buffer */
_Static_assert(IN_CAP + SPILL_CAP <= MQTT_TRANSPORT_WHOLE_READ, "see pull()");
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct ws_conn {
    mqtt_transport base;   /* first: callers see only this */
    mqtt_transport *inner; /* TCP or TLS: owns the socket */
    wslay_frame_context_ptr fr;
    int state;
    int status;            /* the error once W_FAILED */
    char why[320];         /* its words */
    unsigned port;
    char key[32];          /* Sec-WebSocket-Key: base64 of 16 random bytes */
    char *req;             /* the upgrade request while it goes out */
    size_t req_len, req_pos;
    uint8_t *in;           /* read from inner, not yet parsed */
    size_t in_pos, in_len;
    uint8_t *out;          /* framed, not yet written to inner */
    size_t out_pos, out_len;
    uint8_t spill[SPILL_CAP]; /* payload that did not fit the caller's buffer */
    size_t spill_pos, spill_len;
    uint8_t ctl[125];      /* the control frame being received */
    size_t ctl_len;
    uint64_t frame_left;   /* payload bytes still to come in this frame */
    bool in_frame, in_message;
    uint8_t op;            /* the opcode of the frame being received */
    bool refill;           /* in may be refilled: the caller has room for all of it */
    bool starved;          /* in is empty and may not be refilled, or inner had nothing */
    int inner_status;      /* the inner transport's end (a read or write failed) */
    int sticky;            /* the end to report once the bytes before it are read */
    bool close_sent;
    uint8_t rnd[256];      /* random bytes for the masks */
    size_t rnd_pos;
    char host[];
} ws_conn;

/* ---- randomness ------------------------------------------------------ */

static bool fill_random(uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(buf, len, 0);
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* Masks come from a pool refilled from the kernel, one call per 64 frames. */
static int genmask_cb(uint8_t *buf, size_t len, void *ud)
{
    ws_conn *s = ud;
    if (s->rnd_pos + len > sizeof s->rnd) {
        if (!fill_random(s->rnd, sizeof s->rnd))
            return -1;
        s->rnd_pos = 0;
    }
    memcpy(buf, s->rnd + s->rnd_pos, len);
    s->rnd_pos += len;
    return 0;
}

/* ---- wslay's I/O: our buffers ------------------------------------------ */

/* Feeds the parser from in, refilled from the inner transport when empty. */
static ssize_t recv_cb(uint8_t *buf, size_t len, int flags, void *ud)
{
    ws_conn *s = ud;
    (void)flags;
    if (s->in_pos == s->in_len) {
        s->in_pos = s->in_len = 0;
        ssize_t n = s->inner_status || !s->refill ? 0
                                                  : s->inner->ops->read(s->inner, s->in, IN_CAP);
        if (n <= 0) {
            s->starved = true;
            if (n < 0)
                s->inner_status = (int)-n;
            return -1;
        }
        s->in_len = (size_t)n;
    }
    size_t k = s->in_len - s->in_pos < len ? s->in_len - s->in_pos : len;
    memcpy(buf, s->in + s->in_pos, k);
    s->in_pos += k;
    return (ssize_t)k;
}

/* Frames go into out; callers check the room first, so a frame is whole. */
static ssize_t send_cb(const uint8_t *data, size_t len, int flags, void *ud)
{
    ws_conn *s = ud;
    (void)flags;
    size_t room = OUT_CAP - s->out_len;
    size_t k = len < room ? len : room;
    if (k == 0)
        return -1;
    memcpy(s->out + s->out_len, data, k);
    s->out_len += k;
    return (ssize_t)k;
}

/* Writes out to the inner transport until it is empty or the socket full. */
static void flush_out(ws_conn *s)
{
    while (s->out_pos < s->out_len && !s->inner_status) {
        ssize_t n = s->inner->ops->write(s->inner, s->out + s->out_pos, s->out_len - s->out_pos);
        if (n < 0)
            s->inner_status = (int)-n;
        if (n <= 0)
            break;
        s->out_pos += (size_t)n;
    }
    if (s->out_pos == s->out_len || s->inner_status)
        s->out_pos = s->out_len = 0;
    s->base.want_write = s->out_len > 0 || s->inner->want_write;
}

/* Appends one masked frame to out when it fits (with room for a close frame
 * after it unless it is one); false when it does not. */
static bool put_frame(ws_conn *s, uint8_t opcode, const uint8_t *data, size_t len)
{
    size_t need = 14 + len + (opcode == WSLAY_CONNECTION_CLOSE ? 0 : CLOSE_FRAME);
    if (s->out_pos > 0) {
        memmove(s->out, s->out + s->out_pos, s->out_len - s->out_pos);
        s->out_len -= s->out_pos;
        s->out_pos = 0;
    }
    if (s->close_sent || s->out_len + need > OUT_CAP)
        return false;
    struct wslay_frame_iocb io = {.fin = 1, .opcode = opcode, .mask = 1, .payload_length = len,
                                  .data = data, .data_length = len};
    ssize_t r = wslay_frame_send(s->fr, &io);
    /* The sink took everything: a zero-length frame reports 0. */
    if (r != (ssize_t)len)
        return false;
    s->close_sent = opcode == WSLAY_CONNECTION_CLOSE;
    return true;
}

static void put_close(ws_conn *s, unsigned code)
{
    uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    put_frame(s, WSLAY_CONNECTION_CLOSE, b, code ? 2 : 0);
}

/* ---- receiving --------------------------------------------------------- */

/* The server broke the framing rules: tell it (1002 or 1003), then the end. */
static int violation(ws_conn *s, unsigned code)
{
    put_close(s, code);
    return MQTT_ERR_PROTOCOL;
}

static int frame_start(ws_conn *s, const struct wslay_frame_iocb *io)
{
    if (io->mask || io->rsv)
        return violation(s, WSLAY_CODE_PROTOCOL_ERROR);
    switch (io->opcode) {
    case WSLAY_CONTINUATION_FRAME:
    case WSLAY_BINARY_FRAME:
        if ((io->opcode == WSLAY_CONTINUATION_FRAME) != s->in_message)
            return violation(s, WSLAY_CODE_PROTOCOL_ERROR);
        s->in_message = !io->fin;
        break;
    case WSLAY_TEXT_FRAME: /* MQTT travels in binary frames only */
        return violation(s, WSLAY_CODE_UNSUPPORTED_DATA);
    case WSLAY_CONNECTION_CLOSE:
    case WSLAY_PING:
    case WSLAY_PONG:
        s->ctl_len = 0;
        break;
    default:
        return violation(s, WSLAY_CODE_PROTOCOL_ERROR);
    }
    s->in_frame = true;
    s->op = io->opcode;
    s->frame_left = io->payload_length;
    return MQTT_OK;
}

/* A whole control frame: ping is answered, close answered and reported. */
static int on_control(ws_conn *s)
{
    if (s->op == WSLAY_PING) {
        put_frame(s, WSLAY_PONG, s->ctl, s->ctl_len); /* skipped when out is full */
        return MQTT_OK;
    }
    if (s->op != WSLAY_CONNECTION_CLOSE)
        return MQTT_OK;
    if (s->ctl_len == 1)
        return violation(s, WSLAY_CODE_PROTOCOL_ERROR);
    /* Echo the server's code, as RFC 6455 section 5.5.1 suggests. */
    put_close(s, s->ctl_len >= 2 ? (unsigned)s->ctl[0] << 8 | s->ctl[1] : 0);
    return MQTT_ERR_CLOSED;
}

/* One piece of payload: data to the caller (the rest to spill), control to ctl. */
static int on_chunk(ws_conn *s, const struct wslay_frame_iocb *io, uint8_t *buf, size_t len,
                    size_t *got)
{
    if (!s->in_frame) {
        int rc = frame_start(s, io);
        if (rc != MQTT_OK)
            return rc;
    }
    size_t n = io->data_length;
    s->frame_left -= n;
    if (wslay_is_ctrl_frame(s->op)) {
        memcpy(s->ctl + s->ctl_len, io->data, n); /* wslay refuses control frames over 125 */
        s->ctl_len += n;
    } else {
        size_t k = len - *got < n ? len - *got : n;
        memcpy(buf + *got, io->data, k);
        *got += k;
        memcpy(s->spill, io->data + k, n - k);
        s->spill_pos = 0;
        s->spill_len = n - k;
    }
    if (s->frame_left > 0)
        return MQTT_OK;
    s->in_frame = false;
    return wslay_is_ctrl_frame(s->op) ? on_control(s) : MQTT_OK;
}

/* Parses frames into buf until it is full or the inner transport has no more;
 * the end status (closed, protocol error, the inner's) or MQTT_OK. Bytes are
 * taken from inner only while all they can carry fits buf (or nothing was read
 * yet): a read of IN_CAP + SPILL_CAP bytes or more leaves nothing here, so the
 * caller's poll sees whatever is left, in the socket, even after a full read. */
static int pull(ws_conn *s, uint8_t *buf, size_t len, size_t *got)
{
    while (*got < len) {
        struct wslay_frame_iocb io;
        s->refill = *got == 0 || len - *got >= IN_CAP + SPILL_CAP;
        s->starved = false;
        ssize_t r = wslay_frame_recv(s->fr, &io);
        if (r == WSLAY_ERR_WANT_READ) {
            if (s->starved)
                return s->inner_status;
            continue; /* it took bytes but wants more: in is empty, ask again */
        }
        if (r < 0) /* a header wslay refuses: a long control frame, a non-minimal length */
            return violation(s, WSLAY_CODE_PROTOCOL_ERROR);
        int rc = on_chunk(s, &io, buf, len, got);
        if (rc != MQTT_OK)
            return rc;
    }
    return MQTT_OK;
}

static ssize_t ws_read(mqtt_transport *t, void *buf, size_t len)
{
    ws_conn *s = (ws_conn *)t;
    size_t got = s->spill_len < len ? s->spill_len : len;
    memcpy(buf, s->spill + s->spill_pos, got);
    s->spill_pos += got;
    s->spill_len -= got;
    if (!s->sticky && got < len)
        s->sticky = pull(s, buf, len, &got);
    flush_out(s); /* a pong or close the input asked for, or bytes an earlier write left */
    if (got == 0 && s->sticky)
        return -s->sticky;
    if (s->sticky && s->spill_len == 0)
        shutdown(t->fd, SHUT_RD); /* stays readable, so the caller comes back for the end */
    return (ssize_t)got;
}

/* ---- sending ------------------------------------------------------------ */

/* Takes up to OUT_DATA bytes as one binary frame once the last one is out. */
static ssize_t ws_write(mqtt_transport *t, const void *buf, size_t len)
{
    ws_conn *s = (ws_conn *)t;
    flush_out(s);
    if (s->inner_status)
        return -s->inner_status;
    if (s->close_sent)
        return -MQTT_ERR_CLOSED;
    if (s->out_len > 0 || len == 0)
        return 0;
    size_t n = len < OUT_DATA ? len : OUT_DATA;
    if (!put_frame(s, WSLAY_BINARY_FRAME, buf, n))
        return -MQTT_ERR_SYSTEM; /* the mask could not be drawn */
    flush_out(s);
    return (ssize_t)n;
}

static void conn_free(ws_conn *s)
{
    if (s->inner)
        s->inner->ops->close(s->inner);
    if (s->fr)
        wslay_frame_context_free(s->fr);
    mqtt__free(s->req);
    mqtt__free(s->in);
    mqtt__free(s->out);
    mqtt__free(s);
}

/* Best effort, never waiting: a close frame if the socket takes it now. */
static void ws_close(mqtt_transport *t)
{
    ws_conn *s = (ws_conn *)t;
    if (s->state == W_OPEN && !s->inner_status && !s->close_sent) {
        put_close(s, WSLAY_CODE_NORMAL_CLOSURE);
        flush_out(s);
    }
    conn_free(s);
}

/* ---- the upgrade --------------------------------------------------------- */

static int ws_fail(ws_conn *s, int status, char *err, size_t errlen)
{
    s->state = W_FAILED;
    s->status = status;
    s->base.events = 0;
    snprintf(err, errlen, "%s", s->why);
    return status;
}

static int upgrade_failed(ws_conn *s, const char *what, char *err, size_t errlen)
{
    snprintf(s->why, sizeof s->why, "websocket upgrade failed: %s", what);
    return ws_fail(s, MQTT_ERR_CONNECT, err, errlen);
}

/* Sends the request; MQTT_ERR_INCOMPLETE while the socket is full. */
static int send_request(ws_conn *s, char *err, size_t errlen)
{
    while (s->req_pos < s->req_len) {
        ssize_t n = s->inner->ops->write(s->inner, s->req + s->req_pos, s->req_len - s->req_pos);
        if (n < 0) {
            snprintf(s->why, sizeof s->why, "websocket upgrade failed: sending the request: %s",
                     mqtt_strerror((int)-n));
            return ws_fail(s, (int)-n, err, errlen);
        }
        if (n == 0) {
            s->base.events = POLLOUT;
            return MQTT_ERR_INCOMPLETE;
        }
        s->req_pos += (size_t)n;
    }
    mqtt__free(s->req);
    s->req = NULL;
    s->state = W_RESPONSE;
    return MQTT_OK;
}

/* The value of header name in the response head, or NULL; *n its length. */
static const char *header(const char *head, const char *name, size_t *n)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\0'; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) != 0 || line[nl] != ':')
            continue;
        const char *v = line + nl + 1;
        v += strspn(v, " \t");
        const char *end = strstr(v, "\r\n");
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *n = (size_t)(end - v);
        return v;
    }
    return NULL;
}

/* Whether the comma-separated value v[0..n) lists token (any case). */
static bool has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token);
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i - start == tl && strncasecmp(v + start, token, tl) == 0)
            return true;
    }
    return false;
}

/* What the accept header must say for our key (RFC 6455 section 4.1). */
static void expected_accept(const ws_conn *s, char *out, size_t outlen)
{
    char cat[80];
    uint8_t sha[20];
    size_t olen = 0;
    int n = snprintf(cat, sizeof cat, "%s%s", s->key, WS_GUID);
    out[0] = '\0';
    if (mbedtls_sha1_ret((const uint8_t *)cat, (size_t)n, sha) != 0 ||
        mbedtls_base64_encode((uint8_t *)out, outlen, &olen, sha, sizeof sha) != 0)
        out[0] = '\0';
}

/* Checks a 101 response's headers; NULL when good, else what is wrong. */
static const char *check_headers(const ws_conn *s, const char *head, char *text, size_t tl)
{
    size_t n = 0;
    const char *v = header(head, "Upgrade", &n);
    if (!v || !has_token(v, n, "websocket"))
        return "no 'Upgrade: websocket' in the response";
    v = header(head, "Connection", &n);
    if (!v || !has_token(v, n, "upgrade"))
        return "no 'Connection: Upgrade' in the response";
    char want[40];
    expected_accept(s, want, sizeof want);
    v = header(head, "Sec-WebSocket-Accept", &n);
    if (!v)
        return "no Sec-WebSocket-Accept";
    if (!want[0] || n != strlen(want) || memcmp(v, want, n) != 0)
        return "bad Sec-WebSocket-Accept";
    if (header(head, "Sec-WebSocket-Extensions", &n))
        return "the server chose an extension, none was offered";
    v = header(head, "Sec-WebSocket-Protocol", &n);
    if (!v)
        return "the server chose no subprotocol (mqtt was asked for)";
    if (n != 4 || strncasecmp(v, "mqtt", 4) != 0) {
        snprintf(text, tl, "the server chose the subprotocol '%.*s', not mqtt",
                 (int)(n > 40 ? 40 : n), v);
        return text;
    }
    return NULL;
}

/* The status line: 101 goes on to the headers; anything else is a refusal. */
static int check_response(ws_conn *s, const char *head, char *err, size_t errlen)
{
    const char *h = head;
    if (strncmp(h, "HTTP/1.", 7) != 0 || (h[7] != '0' && h[7] != '1') || h[8] != ' ' ||
        !isdigit((unsigned char)h[9]) || !isdigit((unsigned char)h[10]) ||
        !isdigit((unsigned char)h[11]) || (h[12] != ' ' && h[12] != '\r'))
        return upgrade_failed(s, "the server did not answer in HTTP", err, errlen);
    unsigned code = (unsigned)(h[9] - '0') * 100 + (unsigned)(h[10] - '0') * 10 +
                    (unsigned)(h[11] - '0');
    if (code != 101) {
        const char *reason = head + 12 + (head[12] == ' '); /* after "HTTP/1.1 403" */
        int rl = (int)strcspn(reason, "\r\n");
        for (int i = 0; i < rl; i++)
            if ((unsigned char)reason[i] < ' ' || reason[i] == 0x7f)
                rl = i;
        snprintf(s->why, sizeof s->why, "websocket upgrade refused: %u%s%.*s", code,
                 rl ? " " : "", rl > 80 ? 80 : rl, reason);
        return ws_fail(s, MQTT_ERR_CONNECT, err, errlen);
    }
    char text[120];
    const char *bad = check_headers(s, head, text, sizeof text);
    if (bad)
        return upgrade_failed(s, bad, err, errlen);
    s->state = W_OPEN;
    s->base.events = 0;
    return MQTT_OK;
}

/* Reads until the response head is whole; the bytes after it stay in in. */
static int read_response(ws_conn *s, char *err, size_t errlen)
{
    for (;;) {
        if (s->in_len == IN_CAP)
            return upgrade_failed(s, "response headers too long", err, errlen);
        ssize_t n = s->inner->ops->read(s->inner, s->in + s->in_len, IN_CAP - s->in_len - 1);
        if (n == 0) {
            s->base.events = (short)(s->inner->want_write ? POLLOUT : POLLIN);
            return MQTT_ERR_INCOMPLETE;
        }
        if (n < 0) {
            snprintf(s->why, sizeof s->why, "websocket upgrade failed: %s before the response",
                     n == -MQTT_ERR_CLOSED ? "the server closed the connection"
                                           : mqtt_strerror((int)-n));
            return ws_fail(s, n == -MQTT_ERR_CLOSED ? MQTT_ERR_CONNECT : (int)-n, err, errlen);
        }
        size_t from = s->in_len > 3 ? s->in_len - 3 : 0;
        s->in_len += (size_t)n;
        s->in[s->in_len] = '\0';
        char *end = memmem(s->in + from, s->in_len - from, "\r\n\r\n", 4);
        if (!end)
            continue;
        if (memchr(s->in, '\0', (size_t)((uint8_t *)end - s->in)))
            return upgrade_failed(s, "a NUL byte in the response", err, errlen);
        end[2] = '\0'; /* the head ends with its last header's CRLF */
        s->in_pos = (size_t)((uint8_t *)end + 4 - s->in);
        return check_response(s, (const char *)s->in, err, errlen);
    }
}

static int ws_progress(mqtt_transport *t, char *err, size_t errlen)
{
    ws_conn *s = (ws_conn *)t;
    if (s->state == W_INNER) {
        int rc = mqtt__inner_progress(&s->base, s->inner, s->why, sizeof s->why, err, errlen);
        if (rc != MQTT_OK && rc != MQTT_ERR_INCOMPLETE)
            return ws_fail(s, rc, err, errlen);
        if (rc == MQTT_ERR_INCOMPLETE)
            return rc;
        s->state = W_REQUEST;
    }
    if (s->state == W_REQUEST) {
        int rc = send_request(s, err, errlen);
        if (rc != MQTT_OK)
            return rc;
    }
    if (s->state == W_RESPONSE)
        return read_response(s, err, errlen);
    if (s->state == W_OPEN)
        return MQTT_OK;
    snprintf(err, errlen, "%s", s->why);
    return s->status;
}

static void ws_waiting(const mqtt_transport *t, char *buf, size_t len)
{
    const ws_conn *s = (const ws_conn *)t;
    if (s->state == W_INNER && s->inner->ops->waiting)
        s->inner->ops->waiting(s->inner, buf, len);
    else
        snprintf(buf, len, "WebSocket upgrade with %.80s port %u", s->host, s->port);
}

static const mqtt_transport_ops ws_ops = {ws_read, ws_write, ws_close, ws_progress, ws_waiting};

/* ---- the request --------------------------------------------------------- */

/* Headers the upgrade itself sets; a caller's header may not replace them. */
static bool reserved_header(const char *name)
{
    static const char *const names[] = {"Host", "Upgrade", "Connection", "Sec-WebSocket-Key",
                                        "Sec-WebSocket-Version", "Sec-WebSocket-Protocol",
                                        "Sec-WebSocket-Extensions", "Content-Length",
                                        "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

/* A header name is an HTTP token; a value has no control characters (RFC 9110). */
static const char *bad_header(const char *name, const char *value)
{
    if (!name[0] || !value)
        return "empty WebSocket header name or a name without a value";
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *p))
            return "bad character in a WebSocket header name";
    for (const char *p = value; *p; p++)
        if (((unsigned char)*p < ' ' && *p != '\t') || *p == 0x7f)
            return "control character (CR, LF...) in a WebSocket header value";
    if (reserved_header(name))
        return "a WebSocket header the upgrade sets itself";
    return NULL;
}

/* Host as the request names it: brackets around IPv6, the port unless default. */
static int host_field(const ws_conn *s, const mqtt_endpoint *ep, char *out, size_t n)
{
    bool v6 = strchr(s->host, ':') != NULL;
    unsigned def = ep->scheme == MQTT_SCHEME_WSS ? 443 : 80;
    if (s->port == def)
        return snprintf(out, n, v6 ? "[%s]" : "%s", s->host);
    return snprintf(out, n, v6 ? "[%s]:%u" : "%s:%u", s->host, s->port);
}

/* The request's size at most: the fixed part, the path, the host, the headers. */
static size_t request_bound(const ws_conn *s, const mqtt_endpoint *ep)
{
    size_t n = 256 + strlen(s->host) + (ep->path ? strlen(ep->path) : 1);
    for (size_t i = 0; ep->ws_headers && i < ep->ws_header_count; i++)
        n += strlen(ep->ws_headers[i].name) + strlen(ep->ws_headers[i].value) + 4;
    return n;
}

/* Formats the request into buf of n bytes (request_bound); returns its length. */
static size_t format_request(const ws_conn *s, const mqtt_endpoint *ep, char *buf, size_t n)
{
    char host[300];
    host_field(s, ep, host, sizeof host);
    size_t len = (size_t)snprintf(buf, n,
                                  "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n",
                                  ep->path && ep->path[0] ? ep->path : "/", host, s->key);
    for (size_t i = 0; ep->ws_headers && i < ep->ws_header_count; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s: %s\r\n", ep->ws_headers[i].name,
                                ep->ws_headers[i].value);
    len += (size_t)snprintf(buf + len, n - len, "\r\n");
    return len;
}

int mqtt__ws_check(const mqtt_endpoint *ep, char *err, size_t errlen)
{
    for (size_t i = 0; ep->ws_headers && i < ep->ws_header_count; i++) {
        const char *bad = bad_header(ep->ws_headers[i].name, ep->ws_headers[i].value);
        if (bad) {
            snprintf(err, errlen, "%s: '%.60s'", bad, ep->ws_headers[i].name);
            return MQTT_ERR_INVAL;
        }
    }
    for (const char *p = ep->path ? ep->path : "/"; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen, "blank or control character in the WebSocket path");
            return MQTT_ERR_INVAL;
        }
    }
    return MQTT_OK;
}

static int build_request(ws_conn *s, const mqtt_endpoint *ep, char *err, size_t errlen)
{
    int rc = mqtt__ws_check(ep, err, errlen);
    if (rc != MQTT_OK)
        return rc;
    uint8_t raw[16];
    size_t olen = 0;
    if (!fill_random(raw, sizeof raw) || !fill_random(s->rnd, sizeof s->rnd) ||
        mbedtls_base64_encode((uint8_t *)s->key, sizeof s->key, &olen, raw, sizeof raw) != 0) {
        snprintf(err, errlen, "websocket upgrade failed: no random bytes for the key");
        return MQTT_ERR_SYSTEM;
    }
    size_t bound = request_bound(s, ep);
    s->req = mqtt__malloc(bound);
    if (!s->req)
        return MQTT_ERR_NOMEM;
    s->req_len = format_request(s, ep, s->req, bound);
    return MQTT_OK;
}

static int conn_setup(ws_conn *s, const mqtt_endpoint *ep, char *err, size_t errlen)
{
    static const struct wslay_frame_callbacks cbs = {send_cb, recv_cb, genmask_cb};
    s->in = mqtt__malloc(IN_CAP);
    s->out = mqtt__malloc(OUT_CAP);
    if (!s->in || !s->out)
        return MQTT_ERR_NOMEM;
    int rc = build_request(s, ep, err, errlen);
    if (rc != MQTT_OK)
        return rc;
    /* wslay allocates its context with malloc: the one block outside our allocator. */
    if (wslay_frame_context_init(&s->fr, &cbs, s) != 0) {
        s->fr = NULL;
        return MQTT_ERR_NOMEM;
    }
    return MQTT_OK;
}

int mqtt__ws_stack(mqtt_transport *inner, const mqtt_endpoint *ep, mqtt_transport **out,
                   char *err, size_t errlen)
{
    const char *host = ep->host ? ep->host : "localhost";
    size_t hlen = strlen(host);
    ws_conn *s = hlen < 256 ? mqtt__calloc(1, sizeof *s + hlen + 1) : NULL;
    if (!s) {
        inner->ops->close(inner);
        snprintf(err, errlen, "%s", hlen < 256 ? "out of memory" : "host name too long");
        return hlen < 256 ? MQTT_ERR_NOMEM : MQTT_ERR_INVAL;
    }
    memcpy(s->host, host, hlen + 1);
    s->base.ops = &ws_ops;
    s->base.fd = inner->fd;
    s->base.events = inner->events;
    s->inner = inner;
    s->port = ep->port;
    s->rnd_pos = sizeof s->rnd;
    int rc = conn_setup(s, ep, err, errlen);
    if (rc == MQTT_OK)
        rc = ws_progress(&s->base, err, errlen);
    else if (rc == MQTT_ERR_NOMEM)
        snprintf(err, errlen, "out of memory");
    if (rc != MQTT_OK && rc != MQTT_ERR_INCOMPLETE) {
        conn_free(s);
        return rc;
    }
    *out = &s->base;
    return rc;
}
