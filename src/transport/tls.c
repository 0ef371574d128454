/*
 * TLS transport: mbedtls stacked on an inner transport (TCP or a Unix
 * socket today). Opening is a state machine: the inner transport opens, then
 * the handshake steps on WANT_READ/WANT_WRITE; nothing here waits. It checks
 * the broker's name (DNS names by mbedtls, IP addresses here), says why a
 * handshake failed in words, and keeps the session so the next connection
 * resumes it.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <mbedtls/asn1.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "alloc.h"
#include "stack.h"
#include "tls_internal.h"

/* TLS record and handshake message types (RFC 5246 section 6.2.1, 7.4). */
enum { REC_CCS = 20, REC_ALERT = 21, REC_HANDSHAKE = 22, REC_APPDATA = 23,
       HS_CERT_REQUEST = 13, ALERT_FATAL = 2 };

/* What the broker said in clear during the handshake. mbedtls 2.28 keeps
 * neither the alert it received nor whether a client certificate was
 * requested where an application may read them, so the receive path
 * watches the plaintext records; nothing here is trusted for security. */
typedef struct sniffer {
    uint8_t hdr[5], alert[2], hs_hdr[4];
    size_t hdr_got, body_left, body_pos, hs_got, hs_left;
    bool seen, not_tls, encrypted, cert_request;
    int alert_desc; /* last fatal alert received, -1 when none */
} sniffer;

enum { T_INNER, T_HANDSHAKE, T_OPEN, T_FAILED };

typedef struct tls_conn {
    mqtt_transport base; /* first: the client sees only this */
    mqtt_transport *inner; /* the transport under TLS: owns the socket */
    mqtt_tls_config *cfg; /* a reference: mbedtls points into it */
    mbedtls_ssl_context ssl;
    int state;
    bool handshaking;
    bool verify, has_cert, has_psk;
    const char *name;    /* verification name: cfg's server_name or host */
    void **session;      /* the caller's slot for the saved session, or NULL */
    uint64_t cfg_id;
    unsigned port;
    int status;          /* the error once T_FAILED */
    char why[448];       /* its words */
    bool check_ip, self_signed;
    uint8_t ip[16];
    size_t ip_len;
    size_t write_pending; /* bytes mbedtls holds encrypted from a blocked write */
    int sticky;           /* end status to report after bytes already returned */
    bool in_read;
    uint8_t side[128];    /* alert bytes a read produced while the socket was full */
    size_t side_len;
    sniffer sn;
    char host[];         /* the name connected to */
} tls_conn;

/* A session kept between connections, resumed only with the same context,
 * host and port. */
typedef struct tls_saved {
    uint64_t cfg_id;
    unsigned port;
    mbedtls_ssl_session session;
    char host[];
} tls_saved;

/* The most plaintext one record can carry. */
#define MAX_PLAINTEXT MBEDTLS_SSL_IN_CONTENT_LEN
_Static_assert(MAX_PLAINTEXT <= MQTT_TRANSPORT_WHOLE_READ, "a whole record fits a whole read");

/* ---- watching the handshake ------------------------------------------ */

static void sniff_handshake(sniffer *sn, uint8_t b)
{
    if (sn->hs_left) {
        sn->hs_left--;
        return;
    }
    sn->hs_hdr[sn->hs_got++] = b;
    if (sn->hs_got < 4)
        return;
    sn->hs_got = 0;
    sn->hs_left = (size_t)sn->hs_hdr[1] << 16 | (size_t)sn->hs_hdr[2] << 8 | sn->hs_hdr[3];
    if (sn->hs_hdr[0] == HS_CERT_REQUEST)
        sn->cert_request = true;
}

static void end_record(sniffer *sn)
{
    if (sn->hdr[0] == REC_CCS)
        sn->encrypted = true; /* what follows is opaque */
    else if (sn->hdr[0] == REC_ALERT && !sn->encrypted && sn->body_pos == 2 &&
             sn->alert[0] == ALERT_FATAL)
        sn->alert_desc = sn->alert[1];
    sn->hdr_got = 0;
}

static void sniff(sniffer *sn, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n && !sn->not_tls; i++) {
        uint8_t b = p[i];
        if (sn->hdr_got < 5) {
            if (sn->hdr_got == 0 && (b < REC_CCS || b > REC_APPDATA))
                sn->not_tls = true;
            sn->hdr[sn->hdr_got++] = b;
            if (sn->hdr_got < 5)
                continue;
            sn->body_left = (size_t)sn->hdr[3] << 8 | sn->hdr[4];
            sn->body_pos = 0;
            if (sn->body_left == 0)
                end_record(sn);
            continue;
        }
        if (sn->hdr[0] == REC_HANDSHAKE && !sn->encrypted)
            sniff_handshake(sn, b);
        if (sn->hdr[0] == REC_ALERT && sn->body_pos < 2)
            sn->alert[sn->body_pos] = b;
        sn->body_pos++;
        if (--sn->body_left == 0)
            end_record(sn);
    }
    sn->seen = true;
}

/* ---- the socket under mbedtls ---------------------------------------- */

static bool flush_side(tls_conn *s)
{
    while (s->side_len) {
        ssize_t n = s->inner->ops->write(s->inner, s->side, s->side_len);
        if (n <= 0)
            return false;
        memmove(s->side, s->side + n, s->side_len - (size_t)n);
        s->side_len -= (size_t)n;
    }
    return true;
}

/* A read may make mbedtls send a short alert (refusing a renegotiation).
 * With the socket full it would report WANT_WRITE and later flush that
 * alert inside an unrelated write, dropping the write's data; keeping the
 * few bytes here and sending them first keeps the stream in order. */
static bool stash(tls_conn *s, const unsigned char *buf, size_t len)
{
    if (!s->in_read || len > sizeof s->side - s->side_len)
        return false;
    memcpy(s->side + s->side_len, buf, len);
    s->side_len += len;
    return true;
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    tls_conn *s = ctx;
    if (s->side_len && !flush_side(s))
        return stash(s, buf, len) ? (int)len : MBEDTLS_ERR_SSL_WANT_WRITE;
    ssize_t n = s->inner->ops->write(s->inner, buf, len);
    if (n > 0)
        return (int)n;
    if (n == 0)
        return stash(s, buf, len) ? (int)len : MBEDTLS_ERR_SSL_WANT_WRITE;
    return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    tls_conn *s = ctx;
    ssize_t n = s->inner->ops->read(s->inner, buf, len);
    if (n > 0) {
        if (s->handshaking)
            sniff(&s->sn, buf, (size_t)n);
        return (int)n;
    }
    if (n == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    return n == -MQTT_ERR_CLOSED ? 0 : MBEDTLS_ERR_NET_RECV_FAILED;
}

/* ---- the stream ------------------------------------------------------ */

static int read_status(int ret)
{
    if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF)
        return MQTT_ERR_CLOSED;
    return ret == MBEDTLS_ERR_NET_RECV_FAILED ? MQTT_ERR_IO : MQTT_ERR_TLS;
}

/* Drains what mbedtls has decrypted. A new record is started only while a
 * whole one fits: plaintext mbedtls kept after we return would not make the
 * socket readable, so the I/O thread would never come back for it. Records
 * not yet read stay in the kernel, where poll sees them. */
static ssize_t tls_read(mqtt_transport *t, void *buf, size_t len)
{
    tls_conn *s = (tls_conn *)t;
    if (s->sticky)
        return -s->sticky;
    flush_side(s);
    t->want_write = false;
    size_t got = 0;
    int status = MQTT_OK;
    s->in_read = true;
    while (got < len) {
        if (got > 0 && len - got < MAX_PLAINTEXT && mbedtls_ssl_get_bytes_avail(&s->ssl) == 0)
            break;
        int n = mbedtls_ssl_read(&s->ssl, (unsigned char *)buf + got, len - got);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == MBEDTLS_ERR_SSL_WANT_WRITE)
            t->want_write = true;
        if (n != MBEDTLS_ERR_SSL_WANT_READ && n != MBEDTLS_ERR_SSL_WANT_WRITE)
            status = read_status(n);
        break;
    }
    s->in_read = false;
    if (status == MQTT_OK)
        return (ssize_t)got;
    if (got == 0)
        return -status;
    /* Hand over what arrived first; the shut socket stays readable, so the
     * I/O thread calls again and gets the end. */
    s->sticky = status;
    shutdown(t->fd, SHUT_RDWR);
    return (ssize_t)got;
}

/* Writes record by record until the socket is full. When mbedtls reports
 * WANT_WRITE it has already encrypted the chunk and must be called again
 * with the same bytes: the caller retries from the same position, and
 * write_pending makes the retry the same length. */
static ssize_t tls_write(mqtt_transport *t, const void *buf, size_t len)
{
    tls_conn *s = (tls_conn *)t;
    if (s->sticky)
        return -s->sticky;
    t->want_write = false;
    int max = mbedtls_ssl_get_max_out_record_payload(&s->ssl);
    size_t limit = max > 0 ? (size_t)max : 1024;
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done < limit ? len - done : limit;
        if (s->write_pending)
            chunk = s->write_pending;
        int n = mbedtls_ssl_write(&s->ssl, (const unsigned char *)buf + done, chunk);
        if (n > 0) {
            s->write_pending = 0;
            done += (size_t)n;
            continue;
        }
        if (n == MBEDTLS_ERR_SSL_WANT_WRITE || n == MBEDTLS_ERR_SSL_WANT_READ) {
            s->write_pending = chunk;
            t->want_write = n == MBEDTLS_ERR_SSL_WANT_WRITE;
            break;
        }
        if (done)
            break;
        return n == MBEDTLS_ERR_NET_SEND_FAILED ? -MQTT_ERR_IO : -MQTT_ERR_TLS;
    }
    return (ssize_t)done;
}

static void conn_free(tls_conn *s)
{
    mbedtls_ssl_free(&s->ssl);
    if (s->inner)
        s->inner->ops->close(s->inner);
    mqtt_tls_config_unref(s->cfg);
    mqtt__free(s);
}

static void tls_close(mqtt_transport *t)
{
    tls_conn *s = (tls_conn *)t;
    /* Best effort and non-blocking: tell the broker the stream ends here. */
    if (!s->handshaking && !s->sticky && s->side_len == 0 && s->write_pending == 0)
        mbedtls_ssl_close_notify(&s->ssl);
    conn_free(s);
}

/* ---- verification ---------------------------------------------------- */

static bool has_ip_san(const mbedtls_x509_crt *crt, const uint8_t *ip, size_t len)
{
    for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san && san->buf.p;
         san = san->next) {
        if (san->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && san->buf.len == len &&
            memcmp(san->buf.p, ip, len) == 0)
            return true;
    }
    return false;
}

/* mbedtls 2.28 matches the expected name against DNS names and the CN
 * only; a broker reached by address must list that address as an
 * IP-address SAN, which is checked here on the leaf certificate. */
static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    tls_conn *s = ctx;
    if (depth != 0)
        return 0;
    s->self_signed = crt->issuer_raw.len == crt->subject_raw.len &&
                     memcmp(crt->issuer_raw.p, crt->subject_raw.p, crt->issuer_raw.len) == 0;
    if (s->check_ip && !has_ip_san(crt, s->ip, s->ip_len))
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

/* ---- why a handshake failed, in words -------------------------------- */

static void append(char *out, size_t n, const char *text)
{
    size_t used = strlen(out);
    if (used < n)
        snprintf(out + used, n - used, "%s%s", used ? "; " : "", text);
}

static void describe_verify(const tls_conn *s, uint32_t flags, char *out, size_t n)
{
    char text[160];
    out[0] = '\0';
    if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
        append(out, n, s->self_signed ? "certificate not trusted (unknown CA): the broker's "
                                        "certificate is self-signed"
                                      : "certificate not trusted (unknown CA)");
    if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
        snprintf(text, sizeof text, "host name mismatch: certificate is not for %s", s->name);
        append(out, n, text);
    }
    if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
        append(out, n, "certificate expired");
    if (flags & MBEDTLS_X509_BADCERT_FUTURE)
        append(out, n, "certificate not yet valid");
    if (flags & MBEDTLS_X509_BADCERT_REVOKED)
        append(out, n, "certificate revoked");
    if (flags & (MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
                 MBEDTLS_X509_BADCERT_NS_CERT_TYPE))
        append(out, n, "certificate not meant for a TLS server (key usage)");
    if (flags & (MBEDTLS_X509_BADCERT_BAD_MD | MBEDTLS_X509_BADCERT_BAD_PK |
                 MBEDTLS_X509_BADCERT_BAD_KEY))
        append(out, n, "certificate uses a hash or key that is too weak or not supported");
    if (flags & MBEDTLS_X509_BADCERT_MISSING)
        append(out, n, "the broker sent no certificate");
    if (!out[0]) {
        mbedtls_x509_crt_verify_info(text, sizeof text, "", flags);
        text[strcspn(text, "\n")] = '\0';
        snprintf(out, n, "certificate rejected: %s", text);
    }
}

static const char *alert_name(int desc)
{
    static const struct { int desc; const char *name; } names[] = {
        {10, "unexpected_message"}, {20, "bad_record_mac"}, {22, "record_overflow"},
        {40, "handshake_failure"}, {42, "bad_certificate"}, {43, "unsupported_certificate"},
        {44, "certificate_revoked"}, {45, "certificate_expired"}, {46, "certificate_unknown"},
        {47, "illegal_parameter"}, {48, "unknown_ca"}, {49, "access_denied"},
        {50, "decode_error"}, {51, "decrypt_error"}, {70, "protocol_version"},
        {71, "insufficient_security"}, {80, "internal_error"}, {86, "inappropriate_fallback"},
        {90, "user_canceled"}, {109, "missing_extension"}, {110, "unsupported_extension"},
        {112, "unrecognized_name"}, {115, "unknown_psk_identity"}, {116, "certificate_required"},
        {120, "no_application_protocol"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].desc == desc)
            return names[i].name;
    return "unknown";
}

static void describe_alert(const tls_conn *s, char *out, size_t n)
{
    int a = s->sn.alert_desc;
    bool cert_refused = (a >= 41 && a <= 46) || a == 48 || a == 49;
    if ((a == 40 && s->sn.cert_request && !s->has_cert) || (a == 116 && !s->has_cert))
        snprintf(out, n, "the broker requires a client certificate");
    else if (cert_refused && s->sn.cert_request && s->has_cert)
        snprintf(out, n, "the broker rejected the client certificate (%s)", alert_name(a));
    else if (a == 70)
        snprintf(out, n, "TLS protocol version mismatch: the broker does not accept TLS 1.2");
    else if (a == 115)
        snprintf(out, n, "the broker does not know this psk_identity");
    else if ((a == 20 || a == 51) && s->has_psk)
        snprintf(out, n, "the broker rejected the pre-shared key (a different psk for this "
                         "identity?)");
    else if (a == 112)
        snprintf(out, n, "the broker does not serve the name %s (SNI)", s->name);
    else if (a == 120)
        snprintf(out, n, "the broker accepts none of the offered ALPN protocols");
    else if (a == 40)
        snprintf(out, n, "the broker refused the handshake (no cipher suite or parameters in "
                         "common)");
    else if (a >= 0)
        snprintf(out, n, "the broker sent the TLS alert %s (%d)", alert_name(a), a);
    else
        snprintf(out, n, "the broker ended the handshake with a fatal alert");
}

/* A broker that refuses us sends an alert and closes at once; if we were
 * still sending our part, the write fails first and the alert sits unread
 * in the socket. Reading it tells the user why. */
static void read_late_alert(tls_conn *s)
{
    uint8_t buf[512];
    for (int i = 0; i < 16 && s->sn.alert_desc < 0; i++) {
        ssize_t n = s->inner->ops->read(s->inner, buf, sizeof buf);
        if (n <= 0)
            break;
        sniff(&s->sn, buf, (size_t)n);
    }
}

static void describe_failure(tls_conn *s, int ret, char *out, size_t n)
{
    bool cut = ret == MBEDTLS_ERR_SSL_CONN_EOF || ret == MBEDTLS_ERR_NET_RECV_FAILED ||
               ret == MBEDTLS_ERR_NET_SEND_FAILED;
    if (cut)
        read_late_alert(s);
    if (cut && s->sn.alert_desc >= 0)
        ret = MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE;
    if (s->sn.not_tls) {
        snprintf(out, n, "the broker did not answer in TLS (is the port a TLS listener?)");
    } else if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        describe_verify(s, mbedtls_ssl_get_verify_result(&s->ssl), out, n);
    } else if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
        describe_alert(s, out, n);
    } else if (ret == MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION) {
        snprintf(out, n, "TLS protocol version mismatch: the broker does not speak TLS 1.2");
    } else if (cut && s->sn.cert_request && !s->has_cert) {
        snprintf(out, n, "the broker requires a client certificate (it asked for one and "
                         "closed the connection)");
    } else if (cut) {
        snprintf(out, n, "%s", !s->sn.seen ? "the broker closed the connection without "
                                             "answering (is the port a TLS listener?)"
                                           : "the broker closed the connection");
    } else if (ret == MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED) {
        snprintf(out, n, "no CA certificate to verify the broker with");
    } else {
        char why[120];
        mbedtls_strerror(ret, why, sizeof why);
        snprintf(out, n, "%s (mbedtls -0x%04x)", why, (unsigned)-ret);
    }
}

/* ---- sessions -------------------------------------------------------- */

void mqtt__tls_session_free(void *session)
{
    tls_saved *sv = session;
    if (!sv)
        return;
    mbedtls_ssl_session_free(&sv->session);
    mqtt__free(sv);
}

static void offer_session(tls_conn *s, const tls_saved *sv, uint64_t id, const char *host,
                          unsigned port)
{
    if (sv && sv->cfg_id == id && sv->port == port && strcmp(sv->host, host) == 0)
        mbedtls_ssl_set_session(&s->ssl, &sv->session);
}

static void save_session(tls_conn *s, void **slot, uint64_t id, const char *host,
                         unsigned port)
{
    size_t hlen = strlen(host);
    tls_saved *sv = mqtt__calloc(1, sizeof *sv + hlen + 1);
    if (!sv)
        return;
    mbedtls_ssl_session_init(&sv->session);
    if (mbedtls_ssl_get_session(&s->ssl, &sv->session) != 0) {
        mqtt__tls_session_free(sv);
        return;
    }
    sv->cfg_id = id;
    sv->port = port;
    memcpy(sv->host, host, hlen + 1);
    mqtt__tls_session_free(*slot);
    *slot = sv;
}

/* ---- opening, step by step ------------------------------------------- */

static int conn_setup(tls_conn *s)
{
    const char *server_name;
    bool flags[3];
    const mbedtls_ssl_config *conf = mqtt__tls_config_info(s->cfg, &server_name, &s->cfg_id,
                                                           flags);
    s->verify = flags[0];
    s->has_cert = flags[1];
    s->has_psk = flags[2];
    s->name = server_name ? server_name : s->host;
    s->sn.alert_desc = -1;
    if (mbedtls_ssl_setup(&s->ssl, conf) != 0)
        return MQTT_ERR_NOMEM;
    if (inet_pton(AF_INET, s->name, s->ip) == 1)
        s->ip_len = 4;
    else if (inet_pton(AF_INET6, s->name, s->ip) == 1)
        s->ip_len = 16;
    /* An address is no name for SNI (RFC 6066 section 3); mbedtls then
     * leaves the name to verify_cb. */
    s->check_ip = s->ip_len > 0 && s->verify;
    if (s->ip_len == 0 && mbedtls_ssl_set_hostname(&s->ssl, s->name) != 0)
        return MQTT_ERR_INVAL; /* longer than the 255 bytes a DNS name may have */
    mbedtls_ssl_set_verify(&s->ssl, verify_cb, s);
    mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
    if (s->session)
        offer_session(s, *s->session, s->cfg_id, s->host, s->port);
    return MQTT_OK;
}

static int tls_fail(tls_conn *s, int status, char *err, size_t errlen)
{
    s->state = T_FAILED;
    s->status = status;
    s->base.events = 0;
    snprintf(err, errlen, "%s", s->why);
    return status;
}

/* One go at the handshake: on until mbedtls needs the socket, or the end. */
static int handshake_step(tls_conn *s, char *err, size_t errlen)
{
    int ret = mbedtls_ssl_handshake(&s->ssl);
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        s->base.events = (short)(ret == MBEDTLS_ERR_SSL_WANT_READ ? POLLIN : POLLOUT);
        return MQTT_ERR_INCOMPLETE;
    }
    if (ret == 0) {
        s->handshaking = false;
        s->state = T_OPEN;
        s->base.events = 0;
        if (s->session)
            save_session(s, s->session, s->cfg_id, s->host, s->port);
        return MQTT_OK;
    }
    char why[320];
    describe_failure(s, ret, why, sizeof why);
    snprintf(s->why, sizeof s->why, "TLS handshake with %.80s port %u failed: %s", s->host,
             s->port, why);
    if (s->session) { /* whatever went wrong, the next attempt starts afresh */
        mqtt__tls_session_free(*s->session);
        *s->session = NULL;
    }
    return tls_fail(s, MQTT_ERR_TLS, err, errlen);
}

static int tls_progress(mqtt_transport *t, char *err, size_t errlen)
{
    tls_conn *s = (tls_conn *)t;
    if (s->state == T_INNER) {
        int rc = mqtt__inner_progress(&s->base, s->inner, s->why, sizeof s->why, err, errlen);
        if (rc != MQTT_OK && rc != MQTT_ERR_INCOMPLETE)
            return tls_fail(s, rc, err, errlen);
        if (rc == MQTT_ERR_INCOMPLETE)
            return rc;
        s->state = T_HANDSHAKE;
    }
    if (s->state == T_HANDSHAKE)
        return handshake_step(s, err, errlen);
    if (s->state == T_OPEN)
        return MQTT_OK;
    snprintf(err, errlen, "%s", s->why);
    return s->status;
}

static void tls_waiting(const mqtt_transport *t, char *buf, size_t len)
{
    const tls_conn *s = (const tls_conn *)t;
    if (s->state == T_INNER && s->inner->ops->waiting)
        s->inner->ops->waiting(s->inner, buf, len);
    else
        snprintf(buf, len, "TLS handshake with %.80s port %u", s->host, s->port);
}

static const mqtt_transport_ops tls_ops = {tls_read, tls_write, tls_close, tls_progress,
                                           tls_waiting};

int mqtt__tls_stack(mqtt_transport *inner, const mqtt_endpoint *ep, mqtt_tls_config *cfg,
                    void **session, mqtt_transport **out, char *err, size_t errlen)
{
    const char *host = ep->host ? ep->host : "localhost";
    size_t hlen = strlen(host);
    tls_conn *s = mqtt__calloc(1, sizeof *s + hlen + 1);
    if (!s) {
        inner->ops->close(inner);
        return MQTT_ERR_NOMEM;
    }
    mbedtls_ssl_init(&s->ssl);
    memcpy(s->host, host, hlen + 1);
    s->base.ops = &tls_ops;
    s->base.fd = inner->fd;
    s->inner = inner;
    s->cfg = mqtt_tls_config_ref(cfg);
    s->session = session;
    s->port = ep->port;
    s->handshaking = true;
    int rc = conn_setup(s);
    if (rc == MQTT_OK)
        rc = tls_progress(&s->base, err, errlen);
    else
        snprintf(err, errlen, "TLS handshake with %.80s port %u failed: %s", host, ep->port,
                 rc == MQTT_ERR_INVAL ? "the server name is too long" : mqtt_strerror(rc));
    if (rc != MQTT_OK && rc != MQTT_ERR_INCOMPLETE) {
        conn_free(s);
        return rc;
    }
    *out = &s->base;
    return rc;
}
