/*
 * The proxy handshakes, SOCKS5 (RFC 1928, user/password of RFC 1929, the
 * broker's name sent for the proxy to resolve) and HTTP CONNECT (Basic
 * credentials), as a transport stacked on the TCP connection to the proxy.
 * Each step returns at once. It reads only the proxy's answer: SOCKS5
 * replies have known lengths; an HTTP header is read in chunks, and what
 * came after its end is handed to the first reads of the stream.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/base64.h>

#include "alloc.h"
#include "proxy.h"

#define HEADER_MAX 8192 /* the longest HTTP answer header taken */

enum { P_INNER, P_SEND, P_RECV, P_OPEN, P_FAILED };

/* What P_RECV waits for. */
enum { R_METHOD, R_AUTH, R_HEAD, R_NAME_LEN, R_ADDR, R_HTTP };

/* SOCKS5 constants (RFC 1928, 1929). */
enum {
    S5_VERSION = 5,
    S5_NO_AUTH = 0,
    S5_USER_PASS = 2,
    S5_NONE_ACCEPTED = 0xff,
    S5_AUTH_VERSION = 1,
    S5_CONNECT = 1,
    S5_IPV4 = 1,
    S5_NAME = 3,
    S5_IPV6 = 4
};

typedef struct proxy_conn {
    mqtt_transport base;   /* first: callers see only this */
    mqtt_transport *inner; /* the connection to the proxy: owns the socket */
    int state, wait;
    bool socks, has_auth;
    int status;                          /* the error once P_FAILED */
    uint8_t *msg;                        /* every request, built at the start */
    size_t auth_at, connect_at, msg_len; /* SOCKS5: greeting, auth, connect */
    size_t pos, end;                     /* the part of msg being sent */
    size_t in_len, need;                 /* bytes of the answer so far; SOCKS5: its length */
    size_t sur_pos, sur_len;             /* bytes past an HTTP header, for the first reads */
    unsigned proxy_port, target_port;
    char why[400];
    char proxy_host[256], target_host[256];
    uint8_t in[HEADER_MAX];
} proxy_conn;

/* ---- the stream ------------------------------------------------------ */

static ssize_t proxy_read(mqtt_transport *t, void *buf, size_t len)
{
    proxy_conn *p = (proxy_conn *)t;
    if (p->sur_pos < p->sur_len) {
        size_t n = p->sur_len - p->sur_pos;
        n = n < len ? n : len;
        memcpy(buf, p->in + p->sur_pos, n);
        p->sur_pos += n;
        return (ssize_t)n;
    }
    ssize_t n = p->inner->ops->read(p->inner, buf, len);
    t->want_write = p->inner->want_write;
    return n;
}

static ssize_t proxy_write(mqtt_transport *t, const void *buf, size_t len)
{
    proxy_conn *p = (proxy_conn *)t;
    ssize_t n = p->inner->ops->write(p->inner, buf, len);
    t->want_write = p->inner->want_write;
    return n;
}

static void conn_free(proxy_conn *p)
{
    if (p->inner)
        p->inner->ops->close(p->inner);
    mqtt__free(p->msg);
    mqtt__free(p);
}

static void proxy_close(mqtt_transport *t)
{
    conn_free((proxy_conn *)t);
}

/* ---- the requests ---------------------------------------------------- */

/* A length byte and n bytes of s (no terminator: the length says where it ends). */
static uint8_t *put_counted(uint8_t *m, const void *s, size_t n)
{
    *m++ = (uint8_t)n;
    memcpy(m, s, n);
    return m + n;
}

/* The SOCKS5 connect request for the target at m; returns its end. */
static uint8_t *socks_connect(const proxy_conn *p, uint8_t *m, int atyp, const uint8_t *ip)
{
    size_t hlen = strlen(p->target_host);
    *m++ = S5_VERSION;
    *m++ = S5_CONNECT;
    *m++ = 0;
    *m++ = (uint8_t)atyp;
    if (atyp == S5_NAME) {
        m = put_counted(m, p->target_host, hlen);
    } else {
        memcpy(m, ip, atyp == S5_IPV4 ? 4 : 16);
        m += atyp == S5_IPV4 ? 4 : 16;
    }
    *m++ = (uint8_t)(p->target_port >> 8);
    *m++ = (uint8_t)p->target_port;
    return m;
}

/* SOCKS5: the greeting, the user/password message and the connect request. */
static int build_socks(proxy_conn *p, const char *user, const char *pass)
{
    size_t ulen = user ? strlen(user) : 0, plen = user ? strlen(pass) : 0;
    size_t hlen = strlen(p->target_host);
    uint8_t ip[16];
    int atyp = inet_pton(AF_INET, p->target_host, ip) == 1    ? S5_IPV4
               : inet_pton(AF_INET6, p->target_host, ip) == 1 ? S5_IPV6
                                                              : S5_NAME;
    if (ulen > 255 || plen > 255 || hlen > 255)
        return MQTT_ERR_INVAL;
    p->msg = mqtt__malloc(4 + 3 + ulen + plen + 6 + 1 + (hlen > 16 ? hlen : 16));
    if (!p->msg)
        return MQTT_ERR_NOMEM;
    uint8_t *m = p->msg;
    *m++ = S5_VERSION;
    *m++ = user ? 2 : 1;
    *m++ = S5_NO_AUTH;
    if (user)
        *m++ = S5_USER_PASS;
    p->auth_at = (size_t)(m - p->msg);
    if (user) {
        *m++ = S5_AUTH_VERSION;
        m = put_counted(m, user, ulen);
        m = put_counted(m, pass, plen);
    }
    p->connect_at = (size_t)(m - p->msg);
    p->msg_len = (size_t)(socks_connect(p, m, atyp, ip) - p->msg);
    return MQTT_OK;
}

/* "user:password" in Base64 (RFC 7617), a new string in *out. */
static int basic_credentials(const char *user, const char *pass, char **out)
{
    size_t ulen = strlen(user), plen = strlen(pass);
    size_t n = ulen + 1 + plen, b64_len = 4 * ((n + 2) / 3) + 1, olen = 0;
    uint8_t *plain = mqtt__malloc(n);
    *out = mqtt__malloc(b64_len);
    int rc = plain && *out ? MQTT_OK : MQTT_ERR_NOMEM;
    if (rc == MQTT_OK) {
        memcpy(plain, user, ulen);
        plain[ulen] = ':';
        memcpy(plain + ulen + 1, pass, plen);
        if (mbedtls_base64_encode((unsigned char *)*out, b64_len, &olen, plain, n) != 0)
            rc = MQTT_ERR_NOMEM;
    }
    mqtt__free(plain);
    if (rc != MQTT_OK) {
        mqtt__free(*out);
        *out = NULL;
    }
    return rc;
}

/* HTTP: CONNECT host:port with Host and, with credentials, Proxy-Authorization. */
static int build_http(proxy_conn *p, const char *user, const char *pass)
{
    char *cred = NULL;
    int rc = user ? basic_credentials(user, pass, &cred) : MQTT_OK;
    if (rc != MQTT_OK)
        return rc;
    char where[300];
    bool v6 = strchr(p->target_host, ':') != NULL;
    snprintf(where, sizeof where, v6 ? "[%s]:%u" : "%s:%u", p->target_host, p->target_port);
    static const char fmt[] = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s%s\r\n";
    const char *auth_pre = cred ? "Proxy-Authorization: Basic " : "",
               *auth_end = cred ? "\r\n" : "";
    int n = snprintf(NULL, 0, fmt, where, where, auth_pre, cred ? cred : "", auth_end);
    p->msg = n > 0 ? mqtt__malloc((size_t)n + 1) : NULL;
    if (p->msg) {
        snprintf((char *)p->msg, (size_t)n + 1, fmt, where, where, auth_pre, cred ? cred : "",
                 auth_end);
        p->msg_len = (size_t)n;
        p->connect_at = 0;
    }
    mqtt__free(cred);
    return p->msg ? MQTT_OK : MQTT_ERR_NOMEM;
}

/* ---- the steps ------------------------------------------------------- */

static int fail(proxy_conn *p, int status, char *err, size_t errlen)
{
    p->state = P_FAILED;
    p->status = status;
    p->base.events = 0;
    snprintf(err, errlen, "%s", p->why);
    return status;
}

static const char *what(const proxy_conn *p)
{
    return p->socks ? "SOCKS5 handshake" : "HTTP CONNECT";
}

/* A reply that is not the protocol's. */
static int bad_reply(proxy_conn *p, const char *why, char *err, size_t errlen)
{
    snprintf(p->why, sizeof p->why, "proxy %.80s port %u broke the %s: %s", p->proxy_host,
             p->proxy_port, what(p), why);
    return fail(p, MQTT_ERR_PROXY, err, errlen);
}

/* Sends msg[from, to), then waits for an answer of need bytes (0: HTTP's). */
static void send_part(proxy_conn *p, size_t from, size_t to, int wait, size_t need)
{
    p->pos = from;
    p->end = to;
    p->wait = wait;
    p->need = need;
    p->in_len = 0;
    p->state = P_SEND;
}

static int send_step(proxy_conn *p, char *err, size_t errlen)
{
    while (p->pos < p->end) {
        ssize_t n = p->inner->ops->write(p->inner, p->msg + p->pos, p->end - p->pos);
        if (n == 0) {
            p->base.events = POLLOUT;
            return MQTT_ERR_INCOMPLETE;
        }
        if (n < 0) {
            snprintf(p->why, sizeof p->why, "proxy %.80s port %u: sending the %s failed: %s",
                     p->proxy_host, p->proxy_port, what(p), mqtt_strerror((int)-n));
            return fail(p, MQTT_ERR_PROXY, err, errlen);
        }
        p->pos += (size_t)n;
    }
    p->state = P_RECV;
    p->base.events = POLLIN;
    return MQTT_ERR_INCOMPLETE;
}

static const char *socks_reply_text(int rep)
{
    static const char *const texts[] = {"succeeded",
                                        "general SOCKS server failure",
                                        "connection not allowed by ruleset",
                                        "network unreachable",
                                        "host unreachable",
                                        "connection refused",
                                        "TTL expired",
                                        "command not supported",
                                        "address type not supported"};
    return rep >= 0 && rep < (int)(sizeof texts / sizeof texts[0]) ? texts[rep] : "unassigned";
}

static int opened(proxy_conn *p)
{
    p->state = P_OPEN;
    p->base.events = 0;
    mqtt__free(p->msg);
    p->msg = NULL;
    return MQTT_OK;
}

static int socks_method(proxy_conn *p, char *err, size_t errlen)
{
    if (p->in[0] != S5_VERSION)
        return bad_reply(p, "it does not answer as a SOCKS5 proxy", err, errlen);
    if (p->in[1] == S5_NO_AUTH) {
        send_part(p, p->connect_at, p->msg_len, R_HEAD, 4);
        return MQTT_ERR_INCOMPLETE;
    }
    if (p->in[1] == S5_USER_PASS && p->has_auth) {
        send_part(p, p->auth_at, p->connect_at, R_AUTH, 2);
        return MQTT_ERR_INCOMPLETE;
    }
    if (p->in[1] == S5_NONE_ACCEPTED) {
        snprintf(p->why, sizeof p->why,
                 "proxy authentication failed: the SOCKS5 proxy %.80s "
                 "port %u accepts none of our methods (%s)",
                 p->proxy_host, p->proxy_port,
                 p->has_auth ? "none or user name and password" : "no credentials given");
        return fail(p, MQTT_ERR_PROXY, err, errlen);
    }
    return bad_reply(p, "it chose an authentication method we did not offer", err, errlen);
}

static int socks_auth(proxy_conn *p, char *err, size_t errlen)
{
    if (p->in[0] != S5_AUTH_VERSION)
        return bad_reply(p, "a bad user/password reply version", err, errlen);
    if (p->in[1] != 0) {
        snprintf(p->why, sizeof p->why,
                 "proxy authentication failed: the SOCKS5 proxy %.80s "
                 "port %u refused the user name and password",
                 p->proxy_host, p->proxy_port);
        return fail(p, MQTT_ERR_PROXY, err, errlen);
    }
    send_part(p, p->connect_at, p->msg_len, R_HEAD, 4);
    return MQTT_ERR_INCOMPLETE;
}

/* The first 4 bytes of the connect reply: VER REP RSV ATYP. */
static int socks_head(proxy_conn *p, char *err, size_t errlen)
{
    if (p->in[0] != S5_VERSION)
        return bad_reply(p, "a bad reply version", err, errlen);
    if (p->in[1] != 0) {
        snprintf(p->why, sizeof p->why, "proxy refused: SOCKS5 reply %d (%s) for %.80s port %u",
                 p->in[1], socks_reply_text(p->in[1]), p->target_host, p->target_port);
        return fail(p, MQTT_ERR_PROXY, err, errlen);
    }
    p->wait = R_ADDR;
    if (p->in[3] == S5_IPV4)
        p->need = 4 + 4 + 2;
    else if (p->in[3] == S5_IPV6)
        p->need = 4 + 16 + 2;
    else if (p->in[3] == S5_NAME) {
        p->wait = R_NAME_LEN;
        p->need = 5;
    } else
        return bad_reply(p, "an unknown address type in its reply", err, errlen);
    return MQTT_ERR_INCOMPLETE;
}

static int socks_answer(proxy_conn *p, char *err, size_t errlen)
{
    switch (p->wait) {
    case R_METHOD:
        return socks_method(p, err, errlen);
    case R_AUTH:
        return socks_auth(p, err, errlen);
    case R_HEAD:
        return socks_head(p, err, errlen);
    case R_NAME_LEN:
        p->wait = R_ADDR;
        p->need = 5 + p->in[4] + 2;
        return MQTT_ERR_INCOMPLETE;
    default:
        return opened(p); /* the bound address is of no use to us */
    }
}

/* The header in[0..end): its status line decides. */
static int http_answer(proxy_conn *p, size_t end, char *err, size_t errlen)
{
    const char *s = (const char *)p->in;
    size_t line = 0;
    while (line < end && s[line] != '\r')
        line++;
    bool ok = line >= 12 && memcmp(s, "HTTP/1.", 7) == 0 && isdigit((unsigned char)s[7]) &&
              s[8] == ' ' && isdigit((unsigned char)s[9]) && isdigit((unsigned char)s[10]) &&
              isdigit((unsigned char)s[11]) && (line == 12 || s[12] == ' ');
    if (!ok)
        return bad_reply(p, "its answer is not an HTTP/1 status line", err, errlen);
    p->sur_pos = end;
    p->sur_len = p->in_len;
    if (s[9] == '2')
        return opened(p);
    char reason[81];
    size_t k = 0;
    for (size_t i = 13; i < line && k + 1 < sizeof reason; i++)
        reason[k++] = isprint((unsigned char)s[i]) ? s[i] : '?';
    reason[k] = '\0';
    snprintf(p->why, sizeof p->why, "proxy refused: %.3s%s%s (HTTP CONNECT to %.80s port %u%s)",
             s + 9, k ? " " : "", reason, p->target_host, p->target_port,
             memcmp(s + 9, "407", 3) == 0 && !p->has_auth ? "; no credentials in the proxy URI"
                                                          : "");
    return fail(p, MQTT_ERR_PROXY, err, errlen);
}

/* The end of the header (past CRLFCRLF) in in[0..in_len), searching from from; 0: none yet. */
static size_t header_end(const proxy_conn *p, size_t from)
{
    for (size_t i = from >= 3 ? from - 3 : 0; i + 4 <= p->in_len; i++)
        if (memcmp(p->in + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    return 0;
}

static int read_failed(proxy_conn *p, ssize_t n, char *err, size_t errlen)
{
    snprintf(p->why, sizeof p->why, "proxy %.80s port %u %s during the %s", p->proxy_host,
             p->proxy_port, n == -MQTT_ERR_CLOSED ? "closed the connection" : "failed", what(p));
    return fail(p, MQTT_ERR_PROXY, err, errlen);
}

static int recv_step(proxy_conn *p, char *err, size_t errlen)
{
    for (;;) {
        size_t want = p->socks ? p->need - p->in_len : sizeof p->in - p->in_len;
        if (want == 0)
            return bad_reply(p, "its answer header is longer than 8192 bytes", err, errlen);
        ssize_t n = p->inner->ops->read(p->inner, p->in + p->in_len, want);
        if (n == 0)
            return MQTT_ERR_INCOMPLETE;
        if (n < 0)
            return read_failed(p, n, err, errlen);
        size_t from = p->in_len;
        p->in_len += (size_t)n;
        if (!p->socks) {
            size_t end = header_end(p, from);
            if (end)
                return http_answer(p, end, err, errlen);
            continue;
        }
        if (p->in_len < p->need)
            continue;
        int rc = socks_answer(p, err, errlen);
        if (rc != MQTT_ERR_INCOMPLETE || p->state != P_RECV)
            return rc;
    }
}

static int proxy_progress(mqtt_transport *t, char *err, size_t errlen)
{
    proxy_conn *p = (proxy_conn *)t;
    int rc = MQTT_ERR_INCOMPLETE;
    if (p->state == P_INNER) {
        mqtt_transport *in = p->inner;
        rc = in->ops->progress ? in->ops->progress(in, err, errlen) : MQTT_OK;
        t->fd = in->fd;
        t->events = in->events;
        if (rc != MQTT_OK && rc != MQTT_ERR_INCOMPLETE) {
            snprintf(p->why, sizeof p->why, "proxy %s", err);
            return fail(p, rc, err, errlen);
        }
        if (rc == MQTT_ERR_INCOMPLETE)
            return rc;
        p->state = P_SEND;
        rc = MQTT_ERR_INCOMPLETE;
    }
    while (rc == MQTT_ERR_INCOMPLETE && (p->state == P_SEND || p->state == P_RECV)) {
        int before = p->state;
        rc = p->state == P_SEND ? send_step(p, err, errlen) : recv_step(p, err, errlen);
        if (rc == MQTT_ERR_INCOMPLETE && p->state == before)
            break; /* the socket has no more for now */
    }
    if (p->state == P_OPEN)
        return MQTT_OK;
    if (p->state == P_FAILED) {
        snprintf(err, errlen, "%s", p->why);
        return p->status;
    }
    return MQTT_ERR_INCOMPLETE;
}

static void proxy_waiting(const mqtt_transport *t, char *buf, size_t len)
{
    const proxy_conn *p = (const proxy_conn *)t;
    char inner[300] = "connecting";
    if (p->state == P_INNER && p->inner->ops->waiting)
        p->inner->ops->waiting(p->inner, inner, sizeof inner);
    if (p->state == P_INNER)
        snprintf(buf, len, "%s (the proxy)", inner);
    else
        snprintf(buf, len, "%s with proxy %.80s port %u (to %.80s port %u)", what(p), p->proxy_host,
                 p->proxy_port, p->target_host, p->target_port);
}

static const mqtt_transport_ops proxy_ops = {proxy_read, proxy_write, proxy_close, proxy_progress,
                                             proxy_waiting};

/* ---- open ------------------------------------------------------------ */

static int conn_setup(proxy_conn *p, const mqtt_endpoint *proxy, const mqtt_endpoint *target)
{
    if (!proxy->host || !target->host || strlen(proxy->host) >= sizeof p->proxy_host ||
        strlen(target->host) >= sizeof p->target_host ||
        (proxy->scheme != MQTT_SCHEME_SOCKS5 && proxy->scheme != MQTT_SCHEME_HTTP))
        return MQTT_ERR_INVAL;
    snprintf(p->proxy_host, sizeof p->proxy_host, "%s", proxy->host);
    snprintf(p->target_host, sizeof p->target_host, "%s", target->host);
    p->proxy_port = proxy->port;
    p->target_port = target->port;
    p->socks = proxy->scheme == MQTT_SCHEME_SOCKS5;
    p->has_auth = proxy->user != NULL;
    const char *pass = proxy->password ? proxy->password : "";
    int rc = p->socks ? build_socks(p, proxy->user, pass) : build_http(p, proxy->user, pass);
    if (p->socks)
        send_part(p, 0, p->auth_at, R_METHOD, 2);
    else
        send_part(p, 0, p->msg_len, R_HTTP, 0);
    p->state = P_INNER;
    return rc;
}

int mqtt__proxy_stack(mqtt_transport *inner, const mqtt_endpoint *proxy,
                      const mqtt_endpoint *target, mqtt_transport **out, char *err, size_t errlen)
{
    proxy_conn *p = mqtt__calloc(1, sizeof *p);
    if (!p) {
        inner->ops->close(inner);
        snprintf(err, errlen, "out of memory");
        return MQTT_ERR_NOMEM;
    }
    p->base.ops = &proxy_ops;
    p->base.fd = inner->fd;
    p->base.events = inner->events;
    p->inner = inner;
    int rc = conn_setup(p, proxy, target);
    if (rc == MQTT_OK)
        rc = proxy_progress(&p->base, err, errlen);
    else
        snprintf(err, errlen, "%s",
                 rc == MQTT_ERR_NOMEM ? "out of memory" : "bad proxy or broker for a proxy");
    if (rc != MQTT_OK && rc != MQTT_ERR_INCOMPLETE) {
        conn_free(p);
        return rc;
    }
    *out = &p->base;
    return rc;
}
