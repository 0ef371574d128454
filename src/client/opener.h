/*
 * Blocking opens (DNS, TCP, TLS) off the I/O loop: a few short-lived worker
 * threads take queued jobs, run the transport's blocking open and hand the
 * result back through the job's done callback. This is the intermediate
 * step: once the transports are non-blocking state machines, the loop drives
 * them itself and this file goes (see NON-BLOCKING OPEN in link.c).
 */
#ifndef MQTT_OPENER_H
#define MQTT_OPENER_H

#include <stdbool.h>

#include "transport.h"

typedef struct mqtt_open_job {
    struct mqtt_open_job *next;
    /* In: read by the worker, left alone by the owner while the job runs. */
    const char *host;
    unsigned port;
    mqtt_tls_config *tls;
    const int *ka; /* NULL: no TCP keepalive options */
    double deadline;
    void **tls_session;
    bool (*cancelled)(void *owner);
    /** Called by the worker when the job is done; the owner may reuse or free
     *  the job from then on, and the worker touches it no more. */
    void (*done)(struct mqtt_open_job *j);
    void *owner; /* one job per owner at a time */
    /* Out: set before done is called. */
    int rc;
    mqtt_transport *tr;
    char err[256];
} mqtt_open_job;

/** Queues j; a worker starts when none is free. MQTT_ERR_SYSTEM: no thread. */
MQTT_HIDDEN int mqtt__open_submit(mqtt_open_job *j);

/** Wakes the worker running owner's job so it asks cancelled() again. */
MQTT_HIDDEN void mqtt__open_poke(void *owner);

/** Returns once no job of owner's is queued or running (a running one is
 *  poked and waited for; a queued one is dropped, done never called). */
MQTT_HIDDEN void mqtt__open_forget(void *owner);

/** Joins the workers that have finished (none are running when no client
 *  exists, so unloading the module afterwards is safe). */
MQTT_HIDDEN void mqtt__open_reap(void);

#endif
