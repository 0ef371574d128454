/*
 * Which proxy, and where: the proxy URI parser (credentials percent-decoded,
 * never shown in an error) and the choice from the environment with curl's
 * rules, a pure function of what a getter returns. Nothing here connects
 * or resolves.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "proxy.h"

#define DEFAULT_PROXY_PORT 1080 /* curl's for every proxy but an HTTPS one */
#define SOCKS5_MAX_CRED 255     /* RFC 1929: one length byte */

/* ---- the URI --------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) into a new string; NULL with *bad set for a bad
 * escape or an encoded NUL, NULL alone when out of memory. */
static char *decode(const char *s, size_t n, bool *bad)
{
    char *d = mqtt__malloc(n + 1);
    size_t k = 0;
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            d[k++] = s[i];
            continue;
        }
        int hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
        int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
        if (lo < 0 || (hi == 0 && lo == 0)) {
            *bad = true;
            mqtt__free(d);
            return NULL;
        }
        d[k++] = (char)(hi << 4 | lo);
        i += 2;
    }
    d[k] = '\0';
    return d;
}

/* user[:password] in s[0..n) into ep. */
static int take_credentials(const char *shown, const char *s, size_t n, mqtt_endpoint *ep,
                            char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', n);
    size_t ulen = colon ? (size_t)(colon - s) : n;
    bool bad = false;
    ep->user = decode(s, ulen, &bad);
    if (ep->user)
        ep->password = colon ? decode(colon + 1, n - ulen - 1, &bad) : mqtt__strdup("");
    if (bad) {
        snprintf(err, errlen, "bad percent escape in the credentials of the proxy URI '%s'", shown);
        return MQTT_ERR_INVAL;
    }
    if (!ep->user || !ep->password)
        return MQTT_ERR_NOMEM;
    if (ep->scheme == MQTT_SCHEME_SOCKS5 &&
        (strlen(ep->user) > SOCKS5_MAX_CRED || strlen(ep->password) > SOCKS5_MAX_CRED)) {
        snprintf(err, errlen, "SOCKS5 user names and passwords have at most %d bytes: '%s'",
                 SOCKS5_MAX_CRED, shown);
        return MQTT_ERR_INVAL;
    }
    return MQTT_OK;
}

static int proxy_scheme(const char *shown, const char *s, size_t n, mqtt_endpoint *ep, char *err,
                        size_t errlen)
{
    static const struct {
        const char *name;
        int scheme; /* -1: known to curl, not supported here */
    } names[] = {{"socks5", MQTT_SCHEME_SOCKS5},
                 {"socks5h", MQTT_SCHEME_SOCKS5},
                 {"http", MQTT_SCHEME_HTTP},
                 {"https", -1},
                 {"socks4", -1},
                 {"socks4a", -1}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i].name) != n || strncasecmp(s, names[i].name, n) != 0)
            continue;
        if (names[i].scheme >= 0) {
            ep->scheme = (mqtt_scheme)names[i].scheme;
            return MQTT_OK;
        }
        snprintf(err, errlen,
                 "%s:// proxies are not supported: '%s' (socks5://, socks5h:// "
                 "or http://)",
                 names[i].name, shown);
        return MQTT_ERR_INVAL;
    }
    snprintf(err, errlen,
             "unknown proxy scheme '%.*s' in '%s' (socks5://, socks5h:// or "
             "http://)",
             (int)(n > 16 ? 16 : n), s, shown);
    return MQTT_ERR_INVAL;
}

/* The URI as errors show it: the password, if any, replaced by "***". */
static void redact(const char *uri, char *out, size_t n)
{
    const char *sep = strstr(uri, "://");
    const char *auth = sep ? sep + 3 : uri;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++)
        at = *p == '@' ? p : at;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon)
        snprintf(out, n, "%s", uri);
    else
        snprintf(out, n, "%.*s***%s", (int)(colon + 1 - uri), uri, at);
}

static int parse_proxy(const char *uri, const char *shown, mqtt_endpoint *ep, char *err,
                       size_t errlen)
{
    for (const char *p = uri; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen, "blank or control character in the proxy URI '%s'", shown);
            return MQTT_ERR_INVAL;
        }
    }
    const char *sep = strstr(uri, "://");
    const char *auth = sep ? sep + 3 : uri;
    ep->scheme = MQTT_SCHEME_HTTP;
    ep->port = DEFAULT_PROXY_PORT;
    int rc = sep ? proxy_scheme(shown, uri, (size_t)(sep - uri), ep, err, errlen) : MQTT_OK;
    size_t n = strcspn(auth, "/?#");
    if (rc == MQTT_OK && auth[n] && strcmp(auth + n, "/") != 0) {
        snprintf(err, errlen, "a proxy URI takes no path: '%s'", shown);
        rc = MQTT_ERR_INVAL;
    }
    const char *at = NULL;
    for (const char *p = auth; p < auth + n; p++)
        at = *p == '@' ? p : at; /* the last '@': one in a password is taken as written */
    if (rc == MQTT_OK && at)
        rc = take_credentials(shown, auth, (size_t)(at - auth), ep, err, errlen);
    const char *host = at ? at + 1 : auth;
    if (rc == MQTT_OK)
        rc = mqtt__endpoint_authority(shown, host, (size_t)(auth + n - host), ep, err, errlen);
    return rc;
}

int mqtt__proxy_parse(const char *uri, mqtt_endpoint *ep, char *err, size_t errlen)
{
    if (!ep)
        return MQTT_ERR_INVAL;
    memset(ep, 0, sizeof *ep);
    if (!uri) {
        snprintf(err, errlen, "no proxy URI");
        return MQTT_ERR_INVAL;
    }
    char shown[300];
    redact(uri, shown, sizeof shown);
    int rc = parse_proxy(uri, shown, ep, err, errlen);
    if (rc == MQTT_ERR_NOMEM)
        snprintf(err, errlen, "out of memory");
    if (rc != MQTT_OK)
        mqtt__endpoint_clear(ep);
    return rc;
}

/* ---- no_proxy --------------------------------------------------------- */

/* Whether the addresses a and b (of len bytes) share their first bits. */
static bool same_prefix(const uint8_t *a, const uint8_t *b, size_t len, unsigned bits)
{
    size_t whole = bits / 8;
    unsigned rest = bits % 8;
    if (whole > len || (whole == len && rest))
        return false;
    if (memcmp(a, b, whole) != 0)
        return false;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return rest == 0 || ((a[whole] ^ b[whole]) & mask) == 0;
}

/* An address item "addr[/bits]" against the host's address ip (4 or 16 bytes). */
static bool match_address(const uint8_t *ip, int family, const char *item, size_t n)
{
    char buf[64];
    uint8_t want[16];
    if (n >= sizeof buf)
        return false;
    memcpy(buf, item, n);
    buf[n] = '\0';
    size_t len = family == AF_INET ? 4 : 16;
    unsigned bits = (unsigned)len * 8;
    char *slash = strchr(buf, '/');
    if (slash) {
        char *end;
        unsigned long b = strtoul(slash + 1, &end, 10);
        if (end == slash + 1 || *end || b > bits)
            return false;
        bits = (unsigned)b;
        *slash = '\0';
    }
    return inet_pton(family, buf, want) == 1 && same_prefix(ip, want, len, bits);
}

/* A name item against host[0..hn): itself or a subdomain of it. */
static bool match_name(const char *host, size_t hn, const char *item, size_t n)
{
    if (n && item[n - 1] == '.')
        n--;
    if (n && item[0] == '.') {
        item++;
        n--;
    }
    if (n == 0 || n > hn)
        return false;
    if (n < hn && host[hn - n - 1] != '.')
        return false;
    return strncasecmp(host + hn - n, item, n) == 0;
}

bool mqtt__no_proxy_match(const char *host, const char *no_proxy)
{
    if (!host || !host[0] || !no_proxy || !no_proxy[0])
        return false;
    if (strcmp(no_proxy, "*") == 0)
        return true;
    uint8_t ip[16];
    int family = inet_pton(AF_INET, host, ip) == 1    ? AF_INET
                 : inet_pton(AF_INET6, host, ip) == 1 ? AF_INET6
                                                      : 0;
    size_t hn = strlen(host);
    if (!family && host[hn - 1] == '.')
        hn--; /* "example.com." is "example.com" */
    const char *p = no_proxy;
    while (*p) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, ", \t");
        if (n && (family ? match_address(ip, family, p, n) : match_name(host, hn, p, n)))
            return true;
        p += n;
        p += strspn(p, " \t");
        if (*p != ',')
            break; /* as curl: blanks inside an item end the list */
        p += strspn(p, ",");
    }
    return false;
}

/* ---- the environment --------------------------------------------------- */

/* A variable, NULL when unset or empty (curl treats both alike). */
static const char *var(mqtt_env_get get, void *ud, const char *name)
{
    const char *v = get(name, ud);
    return v && v[0] ? v : NULL;
}

int mqtt__proxy_select(const mqtt_endpoint *target, mqtt_env_get get, void *ud, char **proxy_uri)
{
    *proxy_uri = NULL;
    if (!target || target->scheme == MQTT_SCHEME_UNIX || !target->host)
        return MQTT_OK;
    const char *no = var(get, ud, "no_proxy");
    if (!no)
        no = var(get, ud, "NO_PROXY");
    if (mqtt__no_proxy_match(target->host, no))
        return MQTT_OK;
    const char *uri;
    if (mqtt__scheme_tls(target->scheme)) {
        uri = var(get, ud, "https_proxy");
        if (!uri)
            uri = var(get, ud, "HTTPS_PROXY");
    } else {
        /* Never HTTP_PROXY: a CGI program gets the request's Proxy header there. */
        uri = var(get, ud, "http_proxy");
    }
    if (!uri)
        uri = var(get, ud, "all_proxy");
    if (!uri)
        uri = var(get, ud, "ALL_PROXY");
    if (!uri)
        return MQTT_OK;
    *proxy_uri = mqtt__strdup(uri);
    return *proxy_uri ? MQTT_OK : MQTT_ERR_NOMEM;
}

static const char *process_env(const char *name, void *ud)
{
    (void)ud;
    return getenv(name);
}

int mqtt__proxy_from_env(const mqtt_endpoint *target, char **proxy_uri)
{
    return mqtt__proxy_select(target, process_env, NULL, proxy_uri);
}
