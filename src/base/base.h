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

/** Starts a call that may refuse its arguments: mqtt_last_error() says "" again. */
MQTT_HIDDEN void mqtt__refusal_clear(void);
/** The reason code mqtt_last_reason() gives for this thread's last refusal. */
MQTT_HIDDEN void mqtt__refusal_reason(int reason);
/** Records why a call refused its arguments for mqtt_last_error() in this
 *  thread (printf format); returns status. */
MQTT_HIDDEN int mqtt__refuse(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/**
 * Versioned structs, which begin with size_t struct_size. struct_init: the
 * caller's o of size bytes (min_size..full_size) gets the first size bytes
 * of defaults, struct_size = size. struct_read: dst (full_size bytes,
 * holding the defaults) gets the first struct_size bytes of src and
 * struct_size = full_size; a field partly inside struct_size is the
 * caller's to reset. Both MQTT_ERR_INVAL for any other size (struct_read
 * says why for mqtt_last_error(), naming what).
 */
MQTT_HIDDEN int mqtt__struct_init(void *o, size_t size, const void *defaults, size_t full_size,
                                  size_t min_size);
MQTT_HIDDEN int mqtt__struct_read(void *dst, size_t full_size, const void *src, size_t min_size,
                                  const char *what);

/** A byte string view. data == NULL means absent. */
typedef struct mqtt_bytes {
    const uint8_t *data;
    size_t len;
} mqtt_bytes;

#endif
