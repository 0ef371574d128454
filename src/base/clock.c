/*
 * The default clock (CLOCK_MONOTONIC seconds) and the reading of an injected
 * one. mqtt__now() stays a function of its own: the client calls it, and the
 * fuzz target replaces it at link time.
 */
#include <time.h>

#include "clock.h"

double mqtt__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double mqtt__clock_now(const mqtt_clock *clock)
{
    return clock && clock->now ? clock->now(clock->ud) : mqtt__now();
}
