/*
 * The clock the core reads: a function and its user data, so tests and
 * fuzzers can move time without sleeping. NULL always means the default
 * clock, CLOCK_MONOTONIC in seconds. Nothing here sleeps or waits.
 */
#ifndef MQTT_CLOCK_H
#define MQTT_CLOCK_H

#include "base.h"

typedef struct mqtt_clock {
    /** Seconds on a clock that never goes back; any origin. */
    double (*now)(void *ud);
    void *ud;
} mqtt_clock;

/** Reads clock, or the default clock when clock is NULL. Any thread. */
MQTT_HIDDEN double mqtt__clock_now(const mqtt_clock *clock);

/** The default clock's reading: CLOCK_MONOTONIC in seconds. Any thread. */
MQTT_HIDDEN double mqtt__now(void);

#endif
