/*
 * Transport interface: a byte stream (TCP, a Unix socket, TLS over either)
 * opened by an endpoint's scheme as a non-blocking state machine, so one
 * thread can drive many opens: the transport shows one fd and the poll
 * events it waits for, and progress advances it. Once open, reads and writes
 * never block. Deadlines are the caller's; nothing here waits, except the
 * blocking wrappers at the end, which loop on the same machines.
 */
#ifndef MQTT_TRANSPORT_H
#define MQTT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base.h"
#include "clock.h"
#include "endpoint.h"

typedef struct mqtt_transport mqtt_transport;

/** A read this large leaves nothing decoded inside a transport (a TLS record
 *  fits whole, a WebSocket transport takes from below only what fits): all
 *  that is left waits in the socket, where poll sees it. A smaller read may
 *  leave bytes no poll reports. */
#define MQTT_TRANSPORT_WHOLE_READ (32 * 1024)

typedef struct mqtt_transport_ops {
    /** > 0: bytes read; 0: would block; < 0: -status (MQTT_ERR_CLOSED at EOF). */
    ssize_t (*read)(mqtt_transport *t, void *buf, size_t len);
    /** > 0: bytes written; 0: would block; < 0: -status. */
    ssize_t (*write)(mqtt_transport *t, const void *buf, size_t len);
    /** Closes the connection and frees t, open or still opening. */
    void (*close)(mqtt_transport *t);
    /** While opening (see mqtt__transport_progress); NULL for a transport made open. */
    int (*progress)(mqtt_transport *t, char *err, size_t errlen);
    /** While opening: the step it waits in, in words ("TLS handshake with h port p"). */
    void (*waiting)(const mqtt_transport *t, char *buf, size_t len);
} mqtt_transport_ops;

struct mqtt_transport {
    const mqtt_transport_ops *ops;
    int fd;           /* poll this; while opening it may change after each progress */
    bool want_write;  /* the last read/write needs POLLOUT to progress (TLS) */
    short events;     /* while opening: the poll events fd waits for (POLLIN, POLLOUT) */
};

/** What the caller lends an opening transport: all optional. */
typedef struct mqtt_transport_env {
    const mqtt_clock *clock; /* the blocking wrappers' clock; NULL: the default */
    void **tls_session;      /* the caller's slot for a TLS session kept between
                              * connections (freed with mqtt__tls_session_free), so a
                              * reconnect resumes it; it must outlive the opening,
                              * which writes it at the end; NULL: no resumption */
} mqtt_transport_env;

/**
 * Starts opening ep (which need not outlive the call) by its scheme: mqtt
 * (TCP), mqtts (TLS over TCP; ep->tls, or the system CA store when NULL),
 * ws (WebSocket over TCP), wss (WebSocket over TLS, verified as mqtts) and
 * unix. With ep->proxy, or ep->proxy_uri (a proxy URI or "env"; proxy.h),
 * the stream goes through the proxy (never for unix), TLS and WebSocket on top.
 * Never blocks: a host name is resolved without blocking (c-ares), numeric
 * addresses skip resolution. Returns MQTT_OK when *out already carries bytes,
 * MQTT_ERR_INCOMPLETE when *out must be polled (its fd, for its events) and
 * advanced with mqtt__transport_progress, or an error with err in words (and
 * *out NULL). Any thread; one thread at a time per transport.
 */
MQTT_HIDDEN int mqtt__transport_open(const mqtt_endpoint *ep, const mqtt_transport_env *env,
                                     mqtt_transport **out, char *err, size_t errlen);

/**
 * Advances an opening transport when its fd is ready (calling it early is
 * harmless). MQTT_OK: it carries bytes now (read, write); MQTT_ERR_INCOMPLETE:
 * poll t->fd for t->events again, both read anew after every call: the fd
 * changes from the resolver's to a socket and from one address to the next,
 * and the transport has closed the one it left (so epoll forgets it; the new
 * one must be added); else the error, err naming the step:
 * MQTT_ERR_DNS ("name resolution failed: ..."), MQTT_ERR_CONNECT ("connect
 * (TCP), mqtts (TLS over TCP; ep->tls, or the system CA store when NULL),
 * ws (WebSocket over TCP), wss (WebSocket over TLS, verified as mqtts) and
 * unix. With ep->proxy, or ep->proxy_uri (a proxy URI or "env"; proxy.h),
 * the stream goes through the proxy (never for unix), TLS and WebSocket on top.
 */
MQTT_HIDDEN int mqtt__transport_progress(mqtt_transport *t, char *err, size_t errlen);

/** Lets an open be abandoned: polled with the connection, checked when fd is readable. */
typedef struct mqtt_cancel {
    int fd;                          /* -1: none; drained by the transport when readable */
    bool (*cancelled)(void *ud);
    void *ud;
} mqtt_cancel;

/**
 * Blocks until an opening transport is open (MQTT_OK), fails (its error), the
 * deadline on env's clock passes (MQTT_ERR_TIMEOUT, err saying which step
 * timed out) or cancel fires (MQTT_ERR_CANCELLED). t stays the caller's.
 */
MQTT_HIDDEN int mqtt__transport_wait(mqtt_transport *t, const mqtt_transport_env *env,
                                     double deadline, const mqtt_cancel *cancel, char *err,
                                     size_t errlen);

/**
 * Blocking: opens mqtt://host:port within the deadline (DNS included), the
 * first address that answers, IPv4 or IPv6, with TCP_NODELAY and, when ka is
 * not NULL, SO_KEEPALIVE with count, idle and interval. On failure returns
 * the status and describes it in err.
 */
MQTT_HIDDEN int mqtt__tcp_open(const char *host, unsigned port, double deadline,
                               const mqtt_cancel *cancel, const int ka[3], mqtt_transport **out,
                               char *err, size_t errlen);

/**
 * Blocking: opens TCP as mqtt__tcp_open does, then runs the TLS handshake
 * within the same deadline: SNI and verification against cfg's server_name
 * or host. *session (owned by the caller, freed with mqtt__tls_session_free)
 * carries a saved session from one connection to the next so a reconnect
 * resumes it. Errors: MQTT_ERR_TLS with err in words (unknown CA, host-name
 * mismatch, expired certificate, ...), or what mqtt__tcp_open returns.
 */
MQTT_HIDDEN int mqtt__tls_open(mqtt_tls_config *cfg, const char *host, unsigned port,
                               double deadline, const mqtt_cancel *cancel, const int ka[3],
                               void **session, mqtt_transport **out, char *err, size_t errlen);
MQTT_HIDDEN void mqtt__tls_session_free(void *session);

#endif
