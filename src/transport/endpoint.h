/*
 * Where to connect: a scheme, a host and port or a Unix path, what the
 * transports stacked for that scheme need (TLS context, socket keepalive),
 * and room for a proxy. The URI parser fills one from a string and says in
 * words what is wrong with a bad one; it never resolves or connects.
 */
#ifndef MQTT_ENDPOINT_H
#define MQTT_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "base.h"

typedef enum mqtt_scheme {
    MQTT_SCHEME_MQTT,  /* TCP */
    MQTT_SCHEME_MQTTS, /* TLS over TCP */
    MQTT_SCHEME_WS,    /* WebSocket over TCP */
    MQTT_SCHEME_WSS,   /* WebSocket over TLS */
    MQTT_SCHEME_UNIX,  /* a Unix domain socket */
    MQTT_SCHEME_SOCKS5, /* a proxy only (proxy.h): SOCKS5, the proxy resolves the name */
    MQTT_SCHEME_HTTP    /* a proxy only (proxy.h): HTTP CONNECT */
} mqtt_scheme;

typedef struct mqtt_endpoint {
    mqtt_scheme scheme;
    char *host;           /* name or address (IPv6 without brackets); NULL for unix */
    unsigned port;        /* 1..65535; 0 for unix */
    char *path;           /* ws/wss: the request path ("/" at least); unix: the socket
                           * path; NULL otherwise */
    mqtt_tls_config *tls; /* a reference for mqtts/wss (NULL: the system CA store) */
    bool has_keepalive;   /* sets SO_KEEPALIVE with keepalive = {count, idle, interval} */
    int keepalive[3];
    struct mqtt_endpoint *proxy; /* the proxy to go through; NULL: direct */
    char *user, *password;       /* a proxy's credentials, percent-decoded; NULL: none */
    /* Borrowed for the open call (the opener copies what it keeps), never
     * freed by mqtt__endpoint_clear: */
    const char *proxy_uri;          /* the proxy as the application gave it ("socks5://...",
                                     * "http://...", "env"); NULL: direct */
    const mqtt_header *ws_headers;  /* ws/wss: added to the upgrade request, in order */
    size_t ws_header_count;
} mqtt_endpoint;

/** The scheme's name as in a URI ("mqtts"). */
MQTT_HIDDEN const char *mqtt__scheme_name(mqtt_scheme scheme);

/** Whether the scheme runs TLS. */
MQTT_HIDDEN bool mqtt__scheme_tls(mqtt_scheme scheme);

/**
 * Parses uri into *ep (which the caller clears with mqtt__endpoint_clear):
 * scheme://host[:port][/path] for mqtt, mqtts, ws and wss (an IPv6 address in
 * brackets; without a port, the scheme's default 1883, 8883, 80 or 443; ws
 * without a path means "/"), unix:///absolute/path, or a plain host name or
 * address, which means mqtt:// on plain_port (0: 1883). Leaves tls, keepalive
 * and proxy empty. MQTT_ERR_INVAL with err in words for a bad URI (unknown
 * scheme, bad port, empty host, stray characters); MQTT_ERR_NOMEM.
 */
MQTT_HIDDEN int mqtt__endpoint_parse(const char *uri, unsigned plain_port, mqtt_endpoint *ep,
                                     char *err, size_t errlen);

/**
 * The host[:port] part auth[0..n) of uri (which error messages quote): the
 * host into ep->host, the port, when given, into ep->port. For parsers of
 * other URIs (proxy.c); MQTT_ERR_INVAL with err in words, MQTT_ERR_NOMEM.
 */
MQTT_HIDDEN int mqtt__endpoint_authority(const char *uri, const char *auth, size_t n,
                                         mqtt_endpoint *ep, char *err, size_t errlen);

/** Frees what *ep owns (strings, the TLS reference, the proxy) and zeroes it. */
MQTT_HIDDEN void mqtt__endpoint_clear(mqtt_endpoint *ep);

#endif
