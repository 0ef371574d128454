/*
 * Proxies between TCP and the rest: proxy URIs, the SOCKS5 (RFC 1928, 1929)
 * and HTTP CONNECT handshakes as a transport stacked on the TCP connection
 * to the proxy, and the choice of a proxy from the environment as curl makes
 * it. Private to src/transport (and the client, which parses the option).
 */
#ifndef MQTT_PROXY_H
#define MQTT_PROXY_H

#include "transport.h"

/**
 * Parses a proxy URI into *ep (cleared by the caller with
 * mqtt__endpoint_clear): socks5://[user[:password]@]host[:port] (socks5h://
 * is the same: the proxy always resolves the broker's name),
 * http://[user[:password]@]host[:port] (HTTP CONNECT), or host[:port] alone,
 * which means http:// as in curl. Without a port, 1080, curl's default for
 * every proxy but an HTTPS one. Credentials are percent-decoded into
 * ep->user and ep->password (the password "" when only a user is given).
 * MQTT_ERR_INVAL with err in words (the password never shown), MQTT_ERR_NOMEM.
 */
MQTT_HIDDEN int mqtt__proxy_parse(const char *uri, mqtt_endpoint *ep, char *err, size_t errlen);

/** Reads one environment variable (NULL or "": unset); ud is the caller's. */
typedef const char *(*mqtt_env_get)(const char *name, void *ud);

/**
 * The proxy URI curl would take from the environment for target, read
 * through get: no_proxy (else NO_PROXY) exempts the host; mqtt:// and ws://
 * take http_proxy (lower case only, as curl), mqtts:// and wss:// take
 * https_proxy (else HTTPS_PROXY), and without those all_proxy (else
 * ALL_PROXY); unix:// never takes one. *proxy_uri is a copy to free with
 * mqtt__free, or NULL for a direct connection. MQTT_OK or MQTT_ERR_NOMEM.
 * Pure: reads nothing but get.
 */
MQTT_HIDDEN int mqtt__proxy_select(const mqtt_endpoint *target, mqtt_env_get get, void *ud,
                                   char **proxy_uri);

/** mqtt__proxy_select over the process environment (getenv). */
MQTT_HIDDEN int mqtt__proxy_from_env(const mqtt_endpoint *target, char **proxy_uri);

/**
 * Whether no_proxy (a no_proxy value) exempts host, as curl judges: "*"
 * alone exempts all; else a list separated by commas (blanks around items
 * ignored) of domain names, each matching itself and its subdomains, with
 * or without a leading dot, case-insensitively; an IP address host matches
 * address items, IPv4 or IPv6, with an optional /bits prefix length.
 */
MQTT_HIDDEN bool mqtt__no_proxy_match(const char *host, const char *no_proxy);

/**
 * The proxy handshake over inner, an opening or open transport to the proxy
 * (which it takes in all cases): once inner is open it asks the proxy for a
 * stream to target's host and port (SOCKS5 or HTTP CONNECT by proxy->scheme,
 * with proxy's credentials). Answers as mqtt__transport_open does. Reads no
 * byte past the proxy's answer from inner except past an HTTP answer's
 * header, and those bytes the stream's first reads return. Errors:
 * MQTT_ERR_PROXY ("proxy refused: 407 Proxy Authentication Required",
 * "proxy refused: SOCKS5 reply 5 (connection refused)", "proxy
 * authentication failed: ...", a reply that is not the protocol's), or
 * inner's own, its words prefixed with "proxy " ("proxy connect failed:
 * 127.0.0.1:1: Connection refused").
 */
MQTT_HIDDEN int mqtt__proxy_stack(mqtt_transport *inner, const mqtt_endpoint *proxy,
                                  const mqtt_endpoint *target, mqtt_transport **out, char *err,
                                  size_t errlen);

#endif
