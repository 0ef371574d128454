/*
 * What every layer of the core shares: the visibility marker for internal
 * names, the byte view, and the per-thread system error.
 */
#ifndef MQTT_BASE_H
#define MQTT_BASE_H

#include <stddef.h>
#include <stdint.h>

#include "mqtt.h"

#define MQTT_HIDDEN __attribute__((visibility("hidden")))

/** Records "call: reason" for mqtt_system_error() in this thread; returns MQTT_ERR_SYSTEM. */
MQTT_HIDDEN int mqtt__system_failure(const char *call, int err);

/** A byte string view. data == NULL means absent. */
typedef struct mqtt_bytes {
    const uint8_t *data;
    size_t len;
} mqtt_bytes;

#endif
