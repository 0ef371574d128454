/*
 * What the TLS transport needs from a TLS context (tls_config.c owns the
 * context; transport_tls.c runs connections on it). Private to those two.
 */
#ifndef MQTT_TLS_INTERNAL_H
#define MQTT_TLS_INTERNAL_H

#include <mbedtls/ssl.h>

#include "base.h"

/** The context's mbedtls configuration, its verification name override, its
 * unique id, and flags {verify, client certificate, PSK}. */
MQTT_HIDDEN const mbedtls_ssl_config *mqtt__tls_config_info(const mqtt_tls_config *cfg,
                                                            const char **server_name,
                                                            uint64_t *id, bool flags[3]);

#endif
