/*
 * Every allocation of the core goes through these, so tests can make the
 * n-th one fail and check that each entry point fails cleanly, leaking nothing.
 */
#ifndef MQTT_ALLOC_H
#define MQTT_ALLOC_H

#include <stddef.h>

#define MQTT_ALLOC_HIDDEN __attribute__((visibility("hidden")))

MQTT_ALLOC_HIDDEN void *mqtt__malloc(size_t n);
MQTT_ALLOC_HIDDEN void *mqtt__calloc(size_t count, size_t size);
MQTT_ALLOC_HIDDEN void *mqtt__realloc(void *p, size_t n);
MQTT_ALLOC_HIDDEN char *mqtt__strdup(const char *s);
MQTT_ALLOC_HIDDEN void mqtt__free(void *p);

/** Test hook: turns on counting and failure injection; call it before the
 * first allocation, so that every block freed was counted. */
MQTT_ALLOC_HIDDEN void mqtt__alloc_track(void);
/** Test hook (after mqtt__alloc_track): the n-th allocation from now fails (0: none fails); returns how
 * many allocations were made since the last call. */
MQTT_ALLOC_HIDDEN unsigned long mqtt__alloc_fail_at(unsigned long n);
/** Test hook: blocks allocated through these functions and not yet freed. */
MQTT_ALLOC_HIDDEN long mqtt__alloc_live(void);

#endif
