/*
 * How the transports stack, for open.c: each constructor starts a
 * non-blocking state machine and answers as mqtt__transport_open does
 * (MQTT_OK, MQTT_ERR_INCOMPLETE, or an error having freed everything).
 * Private to src/transport.
 */
#ifndef MQTT_STACK_H
#define MQTT_STACK_H

#include "transport.h"

/** A stream socket: TCP to ep's host and port (resolved without blocking, every
 * address in turn), or the Unix socket at ep's path for the unix scheme. */
MQTT_HIDDEN int mqtt__sock_open(const mqtt_endpoint *ep, mqtt_transport **out, char *err,
                                size_t errlen);

/**
 * A stacked transport's step while the one below it still opens: advances
 * inner, shows its fd and events as outer's, and on a failure keeps inner's
 * words in why. Returns inner's answer.
 */
MQTT_HIDDEN int mqtt__inner_progress(mqtt_transport *outer, mqtt_transport *inner, char *why,
                                     size_t whylen, char *err, size_t errlen);

/**
 * TLS over inner, an opening or open transport: the handshake starts once
 * inner is open (asking an open transport's progress again is harmless).
 * Takes inner in all cases. Verifies against cfg's server_name or ep's host;
 * session as in mqtt_transport_env (NULL: none).
 */
MQTT_HIDDEN int mqtt__tls_stack(mqtt_transport *inner, const mqtt_endpoint *ep,
                                mqtt_tls_config *cfg, void **session, mqtt_transport **out,
                                char *err, size_t errlen);

/**
 * WebSocket (RFC 6455, subprotocol mqtt) over inner, an opening or open TCP or
 * TLS transport: once inner is open, the upgrade request for ep's host, port,
 * path and ws_headers goes out and the response is checked. Takes inner in all
 * cases. Errors: MQTT_ERR_INVAL (a bad header in ws_headers), MQTT_ERR_CONNECT
 * ("websocket upgrade refused: 403 Forbidden", "websocket upgrade failed: bad
 * Sec-WebSocket-Accept", ...), what inner fails with, MQTT_ERR_NOMEM. Open, a
 * read fails with MQTT_ERR_CLOSED after a close frame (answered) and
 * MQTT_ERR_PROTOCOL when the server breaks the framing rules (a text frame,
 * a masked or reserved-bit frame, a stray continuation).
 */
/** Checks what a WebSocket open takes from ep (ws_headers, path) before any
 * connection is made: MQTT_OK, or MQTT_ERR_INVAL with err in words. */
MQTT_HIDDEN int mqtt__ws_check(const mqtt_endpoint *ep, char *err, size_t errlen);

MQTT_HIDDEN int mqtt__ws_stack(mqtt_transport *inner, const mqtt_endpoint *ep,
                               mqtt_transport **out, char *err, size_t errlen);

#endif
