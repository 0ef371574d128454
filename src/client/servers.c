/*
 * The servers a client connects to: the connect options' host or servers
 * list, proxy and WebSocket headers, checked and copied when a connect call
 * stores them, turned into an endpoint for each attempt, and the round robin
 * over them (which server is next, when a round is complete). No lock of its
 * own: the client's is held by every caller.
 */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "codec.h"
#include "proxy.h"
#include "client_internal.h"

/* ---- checks (at the connect call, before anything is sent) ------------ */

/* A proxy URI, or "env" (read at each connection, as curl reads it). */
static int check_proxy(const char *proxy)
{
    if (!proxy || strcmp(proxy, "env") == 0)
        return MQTT_OK;
    mqtt_endpoint ep;
    char err[256];
    memset(&ep, 0, sizeof ep);
    int rc = mqtt__proxy_parse(proxy, &ep, err, sizeof err);
    mqtt__endpoint_clear(&ep);
    if (rc == MQTT_ERR_INVAL)
        return mqtt__refuse(MQTT_ERR_INVAL, "proxy: %s", err);
    return rc;
}

/* An HTTP token (RFC 9110): what a header name is made of. */
static bool token(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *s))
            return false;
    }
    return true;
}

static int check_headers(const mqtt_header *h, size_t n)
{
    if (n && !h)
        return mqtt__refuse(MQTT_ERR_INVAL, "ws_headers: NULL with ws_header_count %zu", n);
    for (size_t i = 0; i < n; i++) {
        if (!token(h[i].name))
            return mqtt__refuse(MQTT_ERR_INVAL, "ws_headers %zu: '%s' is not a header name",
                                i + 1, h[i].name ? h[i].name : "(null)");
        if (!h[i].value || strpbrk(h[i].value, "\r\n"))
            return mqtt__refuse(MQTT_ERR_INVAL, "ws_headers %s: the value must be a string "
                                                "without line breaks", h[i].name);
    }
    return MQTT_OK;
}

/* One URI: what the parser finds wrong, named after the option it came from. */
static int check_uri(const char *uri, unsigned port, const char *what, size_t i)
{
    char err[256] = "";
    mqtt_endpoint ep;
    int rc = mqtt__endpoint_parse(uri, port, &ep, err, sizeof err);
    mqtt__endpoint_clear(&ep);
    if (rc == MQTT_OK)
        return MQTT_OK;
    if (rc != MQTT_ERR_INVAL)
        return rc;
    if (i)
        return mqtt__refuse(rc, "%s %zu: %s", what, i, err);
    return mqtt__refuse(rc, "%s: %s", what, err);
}

int mqtt__servers_check(const mqtt_connect_options *o)
{
    if (o->server_count && !o->servers)
        return mqtt__refuse(MQTT_ERR_INVAL, "servers: NULL with server_count %zu",
                            o->server_count);
    if (o->server_count && o->host)
        return mqtt__refuse(MQTT_ERR_INVAL, "host and servers: give one, not both");
    if (!o->server_count && (!o->host || !o->host[0]))
        return mqtt__refuse(MQTT_ERR_INVAL, "host: missing");
    if (o->port == 0)
        return mqtt__refuse(MQTT_ERR_INVAL, "port: 0");
    int rc = MQTT_OK;
    if (!o->server_count)
        rc = check_uri(o->host, o->port, "host", 0);
    for (size_t i = 0; rc == MQTT_OK && i < o->server_count; i++)
        rc = check_uri(o->servers[i], o->port, "servers", i + 1);
    if (rc == MQTT_OK)
        rc = check_headers(o->ws_headers, o->ws_header_count);
    return rc == MQTT_OK ? check_proxy(o->proxy) : rc;
}

/* ---- the stored copy ---------------------------------------------------- */

void mqtt__servers_free(mqtt_servers *s)
{
    for (size_t i = 0; s->uri && i < s->count; i++)
        mqtt__free(s->uri[i]);
    for (size_t i = 0; s->headers && i < s->header_count; i++) {
        mqtt__free((char *)s->headers[i].name);
        mqtt__free((char *)s->headers[i].value);
    }
    mqtt__free(s->uri);
    mqtt__free(s->headers);
    mqtt__free(s->proxy);
    mqtt__free(s->pending);
    memset(s, 0, sizeof *s);
}

static int copy_strings(mqtt_servers *s, const mqtt_connect_options *o)
{
    const char *const *list = o->server_count ? o->servers : &o->host;
    for (s->count = 0; s->count < (o->server_count ? o->server_count : 1); s->count++) {
        s->uri[s->count] = mqtt__strdup(list[s->count]);
        if (!s->uri[s->count])
            return MQTT_ERR_NOMEM;
    }
    for (s->header_count = 0; s->header_count < o->ws_header_count; s->header_count++) {
        mqtt_header *h = &s->headers[s->header_count];
        h->name = mqtt__strdup(o->ws_headers[s->header_count].name);
        h->value = h->name ? mqtt__strdup(o->ws_headers[s->header_count].value) : NULL;
        if (!h->value) {
            s->header_count++; /* freed with the others */
            return MQTT_ERR_NOMEM;
        }
    }
    if (o->proxy && !(s->proxy = mqtt__strdup(o->proxy)))
        return MQTT_ERR_NOMEM;
    return MQTT_OK;
}

int mqtt__servers_set(mqtt_servers *dst, const mqtt_connect_options *o)
{
    mqtt_servers s;
    memset(&s, 0, sizeof s);
    size_t n = o->server_count ? o->server_count : 1;
    s.uri = mqtt__calloc(n, sizeof *s.uri);
    s.headers = o->ws_header_count ? mqtt__calloc(o->ws_header_count, sizeof *s.headers) : NULL;
    int rc = MQTT_ERR_NOMEM;
    if (s.uri && (s.headers || !o->ws_header_count))
        rc = copy_strings(&s, o);
    if (rc != MQTT_OK) {
        mqtt__servers_free(&s);
        return rc;
    }
    s.port = o->port;
    mqtt__servers_free(dst);
    *dst = s;
    return MQTT_OK;
}

/* ---- per attempt ------------------------------------------------------- */

const char *mqtt__servers_current(const mqtt_servers *s)
{
    return s->count ? s->uri[s->index] : NULL;
}

int mqtt__servers_endpoint(const mqtt_servers *s, const mqtt_connect_options *conn,
                           mqtt_endpoint *ep, char *err, size_t errlen)
{
    const char *uri = mqtt__servers_current(s);
    int rc = mqtt__endpoint_parse(uri, s->port, ep, err, errlen);
    if (rc != MQTT_OK)
        return rc;
    /* A plain host with a TLS context is TLS, as before URIs; a URI's scheme is its own. */
    if (conn->tls && ep->scheme == MQTT_SCHEME_MQTT && !strstr(uri, "://"))
        ep->scheme = MQTT_SCHEME_MQTTS;
    if (mqtt__scheme_tls(ep->scheme))
        ep->tls = mqtt_tls_config_ref(conn->tls); /* NULL: the system CA store */
    ep->has_keepalive = conn->has_sock_keepalive && ep->scheme != MQTT_SCHEME_UNIX;
    memcpy(ep->keepalive, conn->sock_keepalive, sizeof ep->keepalive);
    ep->proxy_uri = s->proxy;
    ep->ws_headers = s->headers;
    ep->ws_header_count = s->header_count;
    return MQTT_OK;
}

/* The pending redirect at the front of the list: it replaces an earlier
 * redirect there, so a chain of them never grows the list. */
static bool take_redirect(mqtt_servers *s)
{
    if (!s->redirected) {
        char **uri = mqtt__calloc(s->count + 1, sizeof *uri);
        if (!uri)
            return false;
        memcpy(uri + 1, s->uri, s->count * sizeof *uri);
        mqtt__free(s->uri);
        s->uri = uri;
        s->count++;
        s->redirected = true;
    }
    mqtt__free(s->uri[0]);
    s->uri[0] = s->pending;
    s->pending = NULL;
    s->index = 0;
    s->round_tries = 0;
    return true;
}

bool mqtt__servers_next(mqtt_servers *s)
{
    if (!s->count)
        return false;
    if (s->pending && take_redirect(s))
        return true; /* the redirect goes first, at once */
    s->index = (s->index + 1) % s->count;
    if (++s->round_tries < s->count)
        return true;
    s->round_tries = 0;
    return false;
}

/* "scheme://" of the current server: a plain host is mqtt, or mqtts with tls. */
static void current_scheme(const mqtt_servers *s, bool tls, char *out, size_t outlen)
{
    const char *cur = mqtt__servers_current(s);
    const char *end = cur ? strstr(cur, "://") : NULL;
    if (end && (size_t)(end - cur) + 4 <= outlen)
        snprintf(out, outlen, "%.*s", (int)(end - cur + 3), cur);
    else
        snprintf(out, outlen, "%s", tls ? "mqtts://" : "mqtt://");
}

const char *mqtt__servers_redirect(mqtt_servers *s, int reason, mqtt_bytes props, bool tls,
                                   char *why, size_t whylen)
{
    mqtt_property ref;
    if ((reason != MQTT_RC_USE_ANOTHER_SERVER && reason != MQTT_RC_SERVER_MOVED) ||
        !mqtt__prop_find(props, MQTT_PROP_SERVER_REFERENCE, &ref))
        return NULL;
    char scheme[16] = "";
    if (!memmem(ref.data, ref.len, "://", 3))
        current_scheme(s, tls, scheme, sizeof scheme);
    size_t n = strlen(scheme) + ref.len + 1;
    char *uri = mqtt__malloc(n);
    if (!uri) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    snprintf(uri, n, "%s%.*s", scheme, (int)ref.len, (const char *)ref.data);
    mqtt_endpoint ep;
    char err[256] = "";
    int rc = mqtt__endpoint_parse(uri, s->port, &ep, err, sizeof err);
    mqtt__endpoint_clear(&ep);
    if (rc != MQTT_OK || strlen(uri) != n - 1) {
        snprintf(why, whylen, "server reference '%.*s': %s", (int)(ref.len > 100 ? 100 : ref.len),
                 (const char *)ref.data, rc != MQTT_OK ? err : "a NUL byte");
        mqtt__free(uri);
        return NULL;
    }
    mqtt__free(s->pending);
    s->pending = uri;
    return uri;
}
