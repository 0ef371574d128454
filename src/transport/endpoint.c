/*
 * The URI parser behind mqtt__endpoint_parse: schemes and their default
 * ports in one table, host names and bracketed IPv6 addresses, ports, paths.
 * It only reads the string: no resolution, no sockets. Every refusal says
 * what is wrong and quotes the URI.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "alloc.h"
#include "endpoint.h"

static const struct {
    const char *name;
    unsigned port;
    bool tls, path;
} schemes[] = {
    [MQTT_SCHEME_MQTT] = {"mqtt", 1883, false, false},
    [MQTT_SCHEME_MQTTS] = {"mqtts", 8883, true, false},
    [MQTT_SCHEME_WS] = {"ws", 80, false, true},
    [MQTT_SCHEME_WSS] = {"wss", 443, true, true},
    [MQTT_SCHEME_UNIX] = {"unix", 0, false, true},
};
#define N_SCHEMES (sizeof schemes / sizeof schemes[0])
#define MAX_HOST 253 /* the longest DNS name */
#define MAX_UNIX_PATH (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

const char *mqtt__scheme_name(mqtt_scheme scheme)
{
    return (size_t)scheme < N_SCHEMES ? schemes[scheme].name : "?";
}

bool mqtt__scheme_tls(mqtt_scheme scheme)
{
    return (size_t)scheme < N_SCHEMES && schemes[scheme].tls;
}

static void clear_one(mqtt_endpoint *ep)
{
    mqtt__free(ep->host);
    mqtt__free(ep->path);
    mqtt_tls_config_unref(ep->tls);
    for (char **h = ep->ws_headers; h && *h; h++)
        mqtt__free(*h);
    mqtt__free(ep->ws_headers);
}

void mqtt__endpoint_clear(mqtt_endpoint *ep)
{
    if (!ep)
        return;
    mqtt_endpoint *proxy = ep->proxy; /* a chain of proxies, each on the heap */
    clear_one(ep);
    memset(ep, 0, sizeof *ep);
    while (proxy) {
        mqtt_endpoint *next = proxy->proxy;
        clear_one(proxy);
        mqtt__free(proxy);
        proxy = next;
    }
}

/* A copy of s[0..n) or NULL. */
static char *dup_n(const char *s, size_t n)
{
    char *d = mqtt__malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static bool host_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

/* An IPv6 address, with an optional %zone (fe80::1%eth0). */
static bool is_ipv6(const char *s, size_t n)
{
    char buf[64];
    size_t addr = strcspn(s, "%");
    if (addr > n)
        addr = n;
    if (n >= sizeof buf || addr == 0 || (addr < n && addr + 1 == n))
        return false;
    memcpy(buf, s, addr);
    buf[addr] = '\0';
    struct in6_addr a;
    for (size_t i = addr + 1; i < n; i++)
        if (!host_char(s[i]))
            return false;
    return inet_pton(AF_INET6, buf, &a) == 1;
}

/* Checks a host name or IPv4 address s[0..n); on success copies it to ep. */
static int take_host(const char *uri, const char *s, size_t n, mqtt_endpoint *ep, char *err,
                     size_t errlen)
{
    if (n == 0) {
        snprintf(err, errlen, "empty host in '%s'", uri);
        return MQTT_ERR_INVAL;
    }
    if (n > MAX_HOST) {
        snprintf(err, errlen, "host name longer than %d bytes in '%.40s...'", MAX_HOST, uri);
        return MQTT_ERR_INVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!host_char(s[i])) {
            snprintf(err, errlen, "bad character '%c' in the host of '%s'", s[i], uri);
            return MQTT_ERR_INVAL;
        }
    }
    ep->host = dup_n(s, n);
    return ep->host ? MQTT_OK : MQTT_ERR_NOMEM;
}

/* "[v6]" at s; *end is set past the ']'. */
static int take_bracketed(const char *uri, const char *s, const char **end, mqtt_endpoint *ep,
                          char *err, size_t errlen)
{
    const char *close = strchr(s, ']');
    if (!close || !is_ipv6(s + 1, (size_t)(close - s - 1))) {
        snprintf(err, errlen, "bad IPv6 address in brackets in '%s'", uri);
        return MQTT_ERR_INVAL;
    }
    *end = close + 1;
    ep->host = dup_n(s + 1, (size_t)(close - s - 1));
    return ep->host ? MQTT_OK : MQTT_ERR_NOMEM;
}

/* The decimal port s[0..n). */
static int take_port(const char *uri, const char *s, size_t n, mqtt_endpoint *ep, char *err,
                     size_t errlen)
{
    unsigned long v = 0;
    bool ok = n > 0 && n <= 5;
    for (size_t i = 0; ok && i < n; i++) {
        ok = isdigit((unsigned char)s[i]) != 0;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (!ok || v < 1 || v > 65535) {
        snprintf(err, errlen, "bad port '%.*s' in '%s' (1 to 65535)", (int)(n > 16 ? 16 : n), s,
                 uri);
        return MQTT_ERR_INVAL;
    }
    ep->port = (unsigned)v;
    return MQTT_OK;
}

/* host[:port] in auth[0..n), the host possibly in brackets. */
static int take_authority(const char *uri, const char *auth, size_t n, mqtt_endpoint *ep,
                          char *err, size_t errlen)
{
    const char *end = auth + n, *colon;
    int rc;
    if (memchr(auth, '@', n)) {
        snprintf(err, errlen, "user names in the URI are not supported: '%s' (use the "
                              "username and password options)", uri);
        return MQTT_ERR_INVAL;
    }
    if (n > 0 && auth[0] == '[') {
        const char *after = NULL;
        rc = take_bracketed(uri, auth, &after, ep, err, errlen);
        if (rc == MQTT_OK && (after > end || (after < end && *after != ':'))) {
            snprintf(err, errlen, "junk after ']' in '%s'", uri);
            rc = MQTT_ERR_INVAL;
        }
        colon = after < end ? after : NULL;
    } else {
        colon = memchr(auth, ':', n);
        rc = take_host(uri, auth, colon ? (size_t)(colon - auth) : n, ep, err, errlen);
    }
    if (rc == MQTT_OK && colon)
        rc = take_port(uri, colon + 1, (size_t)(end - colon - 1), ep, err, errlen);
    return rc;
}

/* The path after the authority: ws/wss keep it ("/" by default); mqtt and
 * mqtts take at most a lone "/". */
static int take_path(const char *uri, const char *path, mqtt_endpoint *ep, char *err,
                     size_t errlen)
{
    if (!schemes[ep->scheme].path) {
        if (path[0] && strcmp(path, "/") != 0) {
            snprintf(err, errlen, "%s:// takes no path: '%s'", schemes[ep->scheme].name, uri);
            return MQTT_ERR_INVAL;
        }
        return MQTT_OK;
    }
    ep->path = mqtt__strdup(path[0] ? path : "/");
    return ep->path ? MQTT_OK : MQTT_ERR_NOMEM;
}

static int parse_unix(const char *uri, const char *rest, mqtt_endpoint *ep, char *err,
                      size_t errlen)
{
    if (rest[0] != '/' || rest[1] == '\0') {
        snprintf(err, errlen, "unix:// takes an absolute path (unix:///path/to/socket), not "
                              "'%s'", uri);
        return MQTT_ERR_INVAL;
    }
    if (strlen(rest) > MAX_UNIX_PATH) {
        snprintf(err, errlen, "Unix socket path longer than %zu bytes: '%s'",
                 (size_t)MAX_UNIX_PATH, uri);
        return MQTT_ERR_INVAL;
    }
    ep->path = mqtt__strdup(rest);
    return ep->path ? MQTT_OK : MQTT_ERR_NOMEM;
}

/* A host name or address without a scheme: mqtt:// on plain_port. */
static int parse_plain(const char *uri, unsigned plain_port, mqtt_endpoint *ep, char *err,
                       size_t errlen)
{
    size_t n = strlen(uri);
    ep->scheme = MQTT_SCHEME_MQTT;
    ep->port = plain_port ? plain_port : schemes[MQTT_SCHEME_MQTT].port;
    if (plain_port > 65535) {
        snprintf(err, errlen, "bad port %u (1 to 65535)", plain_port);
        return MQTT_ERR_INVAL;
    }
    if (n > 0 && uri[0] == '[' && uri[n - 1] == ']' && is_ipv6(uri + 1, n - 2)) {
        ep->host = dup_n(uri + 1, n - 2);
        return ep->host ? MQTT_OK : MQTT_ERR_NOMEM;
    }
    if (is_ipv6(uri, n)) {
        ep->host = dup_n(uri, n);
        return ep->host ? MQTT_OK : MQTT_ERR_NOMEM;
    }
    if (memchr(uri, ':', n)) {
        snprintf(err, errlen, "'%s' is not a host name (a port goes in a URI: "
                              "mqtt://host:port)", uri);
        return MQTT_ERR_INVAL;
    }
    return take_host(uri, uri, n, ep, err, errlen);
}

static int find_scheme(const char *uri, size_t n, mqtt_endpoint *ep, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_SCHEMES; i++) {
        if (strlen(schemes[i].name) == n && strncasecmp(uri, schemes[i].name, n) == 0) {
            ep->scheme = (mqtt_scheme)i;
            ep->port = schemes[i].port;
            return MQTT_OK;
        }
    }
    snprintf(err, errlen, "unknown scheme '%.*s' in '%s' (mqtt, mqtts, ws, wss or unix)",
             (int)(n > 16 ? 16 : n), uri, uri);
    return MQTT_ERR_INVAL;
}

static int parse(const char *uri, unsigned plain_port, mqtt_endpoint *ep, char *err,
                 size_t errlen)
{
    for (const char *p = uri; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen, "blank or control character in the URI '%s'", uri);
            return MQTT_ERR_INVAL;
        }
    }
    const char *sep = strstr(uri, "://");
    if (!sep)
        return parse_plain(uri, plain_port, ep, err, errlen);
    int rc = find_scheme(uri, (size_t)(sep - uri), ep, err, errlen);
    const char *auth = sep + 3;
    if (rc != MQTT_OK || ep->scheme == MQTT_SCHEME_UNIX)
        return rc == MQTT_OK ? parse_unix(uri, auth, ep, err, errlen) : rc;
    size_t n = strcspn(auth, "/?#");
    if (auth[n] == '?' || auth[n] == '#') {
        snprintf(err, errlen, "junk '%c' after the host in '%s'", auth[n], uri);
        return MQTT_ERR_INVAL;
    }
    rc = take_authority(uri, auth, n, ep, err, errlen);
    return rc == MQTT_OK ? take_path(uri, auth + n, ep, err, errlen) : rc;
}

int mqtt__endpoint_parse(const char *uri, unsigned plain_port, mqtt_endpoint *ep, char *err,
                         size_t errlen)
{
    if (!ep)
        return MQTT_ERR_INVAL;
    memset(ep, 0, sizeof *ep);
    if (!uri) {
        snprintf(err, errlen, "no URI");
        return MQTT_ERR_INVAL;
    }
    int rc = parse(uri, plain_port, ep, err, errlen);
    if (rc == MQTT_ERR_NOMEM)
        snprintf(err, errlen, "out of memory");
    if (rc != MQTT_OK)
        mqtt__endpoint_clear(ep);
    return rc;
}
