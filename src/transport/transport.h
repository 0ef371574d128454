/*
 * Transport interface: a connected byte stream (TCP now, TLS over TCP next)
 * with non-blocking read and write. The client layer owns one at a time and
 * polls its fd; a transport never blocks except inside its open function.
 */
#ifndef MQTT_TRANSPORT_H
#define MQTT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base.h"

typedef struct mqtt_transport mqtt_transport;

typedef struct mqtt_transport_ops {
    /** > 0: bytes read; 0: would block; < 0: -status (MQTT_ERR_CLOSED at EOF). */
    ssize_t (*read)(mqtt_transport *t, void *buf, size_t len);
    /** > 0: bytes written; 0: would block; < 0: -status. */
    ssize_t (*write)(mqtt_transport *t, const void *buf, size_t len);
    /** Closes the connection and frees t. */
    void (*close)(mqtt_transport *t);
} mqtt_transport_ops;

struct mqtt_transport {
    const mqtt_transport_ops *ops;
    int fd;           /* poll this */
    bool want_write;  /* the last read/write needs POLLOUT to progress (TLS) */
};

/** Lets an open be abandoned: polled with the connection, checked when fd is readable. */
typedef struct mqtt_cancel {
    int fd;                          /* -1: none; drained by the transport when readable */
    bool (*cancelled)(void *ud);
    void *ud;
} mqtt_cancel;

/** Monotonic seconds. */
MQTT_HIDDEN double mqtt__now(void);

/**
 * Resolves host (within the deadline, DNS included) and connects over TCP to
 * the first address that answers, IPv4 or IPv6. Sets TCP_NODELAY and, when
 * ka is not NULL, SO_KEEPALIVE with count, idle and interval. On failure
 * returns the status and describes it in err.
 */
MQTT_HIDDEN int mqtt__tcp_open(const char *host, unsigned port, double deadline,
                               const mqtt_cancel *cancel, const int ka[3], mqtt_transport **out,
                               char *err, size_t errlen);

/**
 * Opens TCP as mqtt__tcp_open does, then runs the TLS handshake within the
 * same deadline: SNI and verification against cfg's server_name or host.
 * *session (owned by the caller, freed with mqtt__tls_session_free) carries a
 * saved session from one connection to the next so a reconnect resumes it.
 * Errors: MQTT_ERR_TLS with err in words (unknown CA, host-name mismatch,
 * expired certificate, ...), or what mqtt__tcp_open returns.
 */
MQTT_HIDDEN int mqtt__tls_open(mqtt_tls_config *cfg, const char *host, unsigned port,
                               double deadline, const mqtt_cancel *cancel, const int ka[3],
                               void **session, mqtt_transport **out, char *err, size_t errlen);
MQTT_HIDDEN void mqtt__tls_session_free(void *session);

/** Waits until fd is ready for events (POLLIN/POLLOUT) or deadline; honours cancel. */
MQTT_HIDDEN int mqtt__wait_fd(int fd, short events, double deadline, const mqtt_cancel *cancel);

#endif
