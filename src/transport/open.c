/*
 * Opening by scheme: which transports an endpoint stacks (TCP or a Unix
 * socket, TLS on top, WebSocket on either TCP or TLS), the progress call, and blocking wrappers for tests
 * and tools (the client's loop drives the machines itself), which poll the
 * same state machines until done, the deadline or cancel. The only waits of
 * the transport layer live here.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "proxy.h"
#include "stack.h"

/* Where Debian's ca-certificates puts the system CA bundle. */
#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

static int system_ca_config(mqtt_tls_config **out, char *err, size_t errlen)
{
    mqtt_tls_options o;
    mqtt_tls_options_init(&o);
    o.cafile = SYSTEM_CA_FILE;
    return mqtt_tls_config_new(&o, out, err, errlen);
}

/* The byte stream under everything: a socket to ep, or, with ep->proxy (never
 * for unix://), TCP to the proxy with ep's socket options and the proxy's
 * handshake to ep's host and port on it. */
static int open_stream(const mqtt_endpoint *ep, mqtt_transport **out, char *err, size_t errlen)
{
    if (!ep->proxy || ep->scheme == MQTT_SCHEME_UNIX)
        return mqtt__sock_open(ep, out, err, errlen);
    mqtt_endpoint to_proxy = *ep->proxy;
    to_proxy.has_keepalive = ep->has_keepalive;
    memcpy(to_proxy.keepalive, ep->keepalive, sizeof to_proxy.keepalive);
    mqtt_transport *tcp = NULL;
    int rc = mqtt__sock_open(&to_proxy, &tcp, err, errlen);
    if (rc != MQTT_OK && rc != MQTT_ERR_INCOMPLETE) {
        char why[400];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "proxy %s", why);
        return rc;
    }
    return mqtt__proxy_stack(tcp, ep->proxy, ep, out, err, errlen);
}

static int open_tls(const mqtt_endpoint *ep, const mqtt_transport_env *env, mqtt_transport **out,
                    char *err, size_t errlen)
{
    mqtt_tls_config *cfg = mqtt_tls_config_ref(ep->tls);
    int rc = cfg ? MQTT_OK : system_ca_config(&cfg, err, errlen);
    if (rc != MQTT_OK)
        return rc;
    mqtt_transport *inner = NULL;
    rc = open_stream(ep, &inner, err, errlen);
    if (rc == MQTT_OK || rc == MQTT_ERR_INCOMPLETE)
        rc = mqtt__tls_stack(inner, ep, cfg, env ? env->tls_session : NULL, out, err, errlen);
    mqtt_tls_config_unref(cfg);
    return rc;
}

/* WebSocket on TCP (ws) or on TLS verified like mqtts (wss). */
static int open_ws(const mqtt_endpoint *ep, const mqtt_transport_env *env, mqtt_transport **out,
                   char *err, size_t errlen)
{
    mqtt_transport *inner = NULL;
    int rc = mqtt__ws_check(ep, err, errlen);
    if (rc != MQTT_OK)
        return rc;
    rc = ep->scheme == MQTT_SCHEME_WSS ? open_tls(ep, env, &inner, err, errlen)
                                       : open_stream(ep, &inner, err, errlen);
    if (rc == MQTT_OK || rc == MQTT_ERR_INCOMPLETE)
        rc = mqtt__ws_stack(inner, ep, out, err, errlen);
    return rc;
}

/* ep->proxy_uri into *proxy (proxy.h): a URI, or "env" as curl reads the
 * environment. *used false: a direct connection. */
static int proxy_of(const mqtt_endpoint *ep, mqtt_endpoint *proxy, bool *used, char *err,
                    size_t errlen)
{
    char *uri = NULL;
    bool env = strcmp(ep->proxy_uri, "env") == 0;
    *used = false;
    if (ep->scheme == MQTT_SCHEME_UNIX)
        return MQTT_OK;
    if (env && mqtt__proxy_from_env(ep, &uri) != MQTT_OK) {
        snprintf(err, errlen, "out of memory");
        return MQTT_ERR_NOMEM;
    }
    const char *given = env ? uri : ep->proxy_uri;
    int rc = given ? mqtt__proxy_parse(given, proxy, err, errlen) : MQTT_OK;
    *used = given != NULL && rc == MQTT_OK;
    mqtt__free(uri);
    return rc;
}

static int open_scheme(const mqtt_endpoint *ep, const mqtt_transport_env *env,
                       mqtt_transport **out, char *err, size_t errlen)
{
    switch (ep->scheme) {
    case MQTT_SCHEME_MQTT:
    case MQTT_SCHEME_UNIX:
        return open_stream(ep, out, err, errlen);
    case MQTT_SCHEME_MQTTS:
        return open_tls(ep, env, out, err, errlen);
    case MQTT_SCHEME_WS:
    case MQTT_SCHEME_WSS:
        return open_ws(ep, env, out, err, errlen);
    default:
        snprintf(err, errlen, "unknown scheme");
        return MQTT_ERR_INVAL;
    }
}

int mqtt__transport_open(const mqtt_endpoint *ep, const mqtt_transport_env *env,
                         mqtt_transport **out, char *err, size_t errlen)
{
    if (!ep || !out) {
        snprintf(err, errlen, "no endpoint");
        return MQTT_ERR_INVAL;
    }
    *out = NULL;
    if (ep->proxy || !ep->proxy_uri)
        return open_scheme(ep, env, out, err, errlen);
    /* The proxy's endpoint lives for this call: the stages copy what they keep. */
    mqtt_endpoint proxy, via = *ep;
    bool used = false;
    memset(&proxy, 0, sizeof proxy);
    int rc = proxy_of(ep, &proxy, &used, err, errlen);
    via.proxy = used ? &proxy : NULL;
    if (rc == MQTT_OK)
        rc = open_scheme(&via, env, out, err, errlen);
    mqtt__endpoint_clear(&proxy);
    return rc;
}

int mqtt__inner_progress(mqtt_transport *outer, mqtt_transport *inner, char *why,
                         size_t whylen, char *err, size_t errlen)
{
    int rc = inner->ops->progress ? inner->ops->progress(inner, err, errlen) : MQTT_OK;
    outer->fd = inner->fd;
    outer->events = inner->events;
    if (rc != MQTT_OK && rc != MQTT_ERR_INCOMPLETE)
        snprintf(why, whylen, "%s", err);
    return rc;
}

int mqtt__transport_progress(mqtt_transport *t, char *err, size_t errlen)
{
    if (!t)
        return MQTT_ERR_INVAL;
    return t->ops->progress ? t->ops->progress(t, err, errlen) : MQTT_OK;
}

/* ---- the blocking side ----------------------------------------------- */

static int ms_until(const mqtt_clock *clock, double deadline)
{
    double left = deadline - mqtt__clock_now(clock);
    if (left <= 0)
        return 0;
    return left > 3600 ? 3600000 : (int)(left * 1000.0) + 1;
}

/* Clears a cancel eventfd (or pipe) that became readable. */
static void drain_fd(int fd)
{
    uint64_t buf[8];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

static int wait_fd_on(const mqtt_clock *clock, int fd, short events, double deadline,
                      const mqtt_cancel *cancel)
{
    struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = -1, .events = POLLIN}};
    if (cancel && cancel->fd >= 0)
        p[1].fd = cancel->fd;
    for (;;) {
        int ms = ms_until(clock, deadline);
        if (ms == 0)
            return MQTT_ERR_TIMEOUT;
        int n = poll(p, 2, ms);
        if (n < 0 && errno != EINTR)
            return MQTT_ERR_SYSTEM;
        if (n <= 0)
            continue;
        if (p[1].revents) {
            drain_fd(p[1].fd);
            /* p[1] polls fd -1, so it has revents only when cancel is non-NULL. */
            if (cancel->cancelled(cancel->ud)) /* NOLINT(clang-analyzer-core.NullDereference) */
                return MQTT_ERR_CANCELLED;
        }
        if (p[0].revents)
            return MQTT_OK;
    }
}

int mqtt__transport_wait(mqtt_transport *t, const mqtt_transport_env *env, double deadline,
                         const mqtt_cancel *cancel, char *err, size_t errlen)
{
    const mqtt_clock *clock = env ? env->clock : NULL;
    for (;;) {
        int rc = mqtt__transport_progress(t, err, errlen);
        if (rc != MQTT_ERR_INCOMPLETE)
            return rc;
        rc = wait_fd_on(clock, t->fd, t->events, deadline, cancel);
        if (rc == MQTT_ERR_TIMEOUT) {
            char step[200] = "opening";
            if (t->ops->waiting)
                t->ops->waiting(t, step, sizeof step);
            snprintf(err, errlen, "%s timed out", step);
        }
        if (rc != MQTT_OK)
            return rc;
    }
}

/* Opens ep and waits for it; the blocking wrappers' common part. */
static int open_blocking(const mqtt_endpoint *ep, const mqtt_transport_env *env, double deadline,
                         const mqtt_cancel *cancel, mqtt_transport **out, char *err,
                         size_t errlen)
{
    mqtt_transport *t = NULL;
    int rc = mqtt__transport_open(ep, env, &t, err, errlen);
    if (rc == MQTT_ERR_INCOMPLETE)
        rc = mqtt__transport_wait(t, env, deadline, cancel, err, errlen);
    if (rc == MQTT_OK) {
        *out = t;
        return MQTT_OK;
    }
    if (t)
        t->ops->close(t);
    return rc;
}

static void host_endpoint(mqtt_endpoint *ep, mqtt_scheme scheme, const char *host, unsigned port,
                          const int ka[3])
{
    memset(ep, 0, sizeof *ep);
    ep->scheme = scheme;
    ep->host = (char *)host; /* NOLINT: borrowed for the call, never freed here */
    ep->port = port;
    if (ka) {
        ep->has_keepalive = true;
        memcpy(ep->keepalive, ka, sizeof ep->keepalive);
    }
}

int mqtt__tcp_open(const char *host, unsigned port, double deadline, const mqtt_cancel *cancel,
                   const int ka[3], mqtt_transport **out, char *err, size_t errlen)
{
    mqtt_endpoint ep;
    host_endpoint(&ep, MQTT_SCHEME_MQTT, host, port, ka);
    return open_blocking(&ep, NULL, deadline, cancel, out, err, errlen);
}

int mqtt__tls_open(mqtt_tls_config *cfg, const char *host, unsigned port, double deadline,
                   const mqtt_cancel *cancel, const int ka[3], void **session,
                   mqtt_transport **out, char *err, size_t errlen)
{
    mqtt_endpoint ep;
    host_endpoint(&ep, MQTT_SCHEME_MQTTS, host, port, ka);
    ep.tls = cfg;
    mqtt_transport_env env = {.clock = NULL, .tls_session = session};
    return open_blocking(&ep, &env, deadline, cancel, out, err, errlen);
}
