/*
 * Name resolution that never blocks, for the socket transports: numeric
 * addresses at once, names through c-ares, whose sockets and retry timer sit
 * in one private epoll set, so a resolution shows the poller one fd.
 * Private to src/transport.
 */
#ifndef MQTT_RESOLVE_H
#define MQTT_RESOLVE_H

#include <stddef.h>
#include <sys/socket.h>

#include "base.h"

/** One address to connect to, port included. */
typedef struct mqtt_addr {
    struct sockaddr_storage sa;
    socklen_t len;
} mqtt_addr;

typedef struct mqtt_resolver mqtt_resolver;

/**
 * Starts resolving host for port (TCP, IPv4 and IPv6, /etc/hosts first).
 * A numeric address (or a name whose answer is known at once) gives MQTT_OK
 * with the addresses in *addrs and *n (free with mqtt__free) and no resolver;
 * otherwise MQTT_ERR_INCOMPLETE with *out to poll (mqtt__resolver_fd, POLLIN)
 * and advance; or MQTT_ERR_DNS / MQTT_ERR_NOMEM / MQTT_ERR_SYSTEM with err.
 */
MQTT_HIDDEN int mqtt__resolve_start(const char *host, unsigned port, mqtt_resolver **out,
                                    mqtt_addr **addrs, size_t *n, char *err, size_t errlen);

/** The one fd to poll for POLLIN while resolving. */
MQTT_HIDDEN int mqtt__resolver_fd(const mqtt_resolver *r);

/** Advances: MQTT_OK with the addresses (as mqtt__resolve_start), MQTT_ERR_INCOMPLETE,
 * or MQTT_ERR_DNS with err ("name resolution failed: host: reason"). Never blocks. */
MQTT_HIDDEN int mqtt__resolve_progress(mqtt_resolver *r, mqtt_addr **addrs, size_t *n, char *err,
                                       size_t errlen);

/** Test hook: the DNS servers ("127.0.0.1:5353,...") of resolutions started from
 * now on; NULL: the system's (/etc/resolv.conf). Not thread-safe; tests only. */
MQTT_HIDDEN void mqtt__resolver_servers(const char *csv);

/** Abandons or ends a resolution. NULL is fine. */
MQTT_HIDDEN void mqtt__resolver_free(mqtt_resolver *r);

#endif
