/*
 * The I/O loop shared by every client of the process: one thread (or a small
 * pool) waiting in epoll on the members' sockets, one eventfd to wake it, and
 * a timer heap. It knows members, not clients: a member's service function
 * does the work. It never calls the application.
 */
#ifndef MQTT_LOOP_H
#define MQTT_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

typedef struct mqtt_loop mqtt_loop;
typedef struct mqtt_member mqtt_member;

/** Passed to service() instead of epoll bits: the member leaves the loop. */
#define MQTT_LOOP_DETACH 0x80000000u

/**
 * One client's place in a loop. The application thread owns it until
 * mqtt__loop_attach and again after mqtt__loop_detach returns; in between
 * the fields below the line are the loop thread's alone.
 */
struct mqtt_member {
    /** Called on the loop thread: events are epoll bits, 0 (a kick or a
     *  timer) or MQTT_LOOP_DETACH (the last call). */
    void (*service)(mqtt_member *m, uint32_t events);
    mqtt_loop *loop;
    /* Under the loop's lock. */
    mqtt_member *next_dirty;
    bool dirty, detach, attached;
    /* Loop thread only. */
    int fd;            /* registered with epoll; -1: none */
    uint32_t watching; /* the epoll bits registered for fd */
    double at;         /* timer deadline; < 0: none */
    size_t heap_idx;   /* place in the timer heap while at >= 0 */
    mqtt_member *next_due;
};

/** The loop's counters; wakeups and services are read without stopping it. */
typedef struct mqtt_loop_stats {
    unsigned threads;  /* loop threads running */
    size_t members;    /* clients attached */
    uint64_t wakeups;  /* returns from epoll_wait */
    uint64_t services; /* calls to a member's service function */
} mqtt_loop_stats;

/**
 * Joins the process's loop, starting the loop threads with the first
 * member; the member goes to the loop with the fewest members. Application
 * thread. MQTT_ERR_SYSTEM when a thread, epoll or eventfd cannot be made.
 */
MQTT_HIDDEN int mqtt__loop_attach(mqtt_member *m, void (*service)(mqtt_member *, uint32_t));

/**
 * Leaves the loop synchronously: the loop calls service(m, MQTT_LOOP_DETACH)
 * one last time and forgets m before this returns. The last member to leave
 * stops and joins the loop threads. Application thread; never the loop's.
 */
MQTT_HIDDEN void mqtt__loop_detach(mqtt_member *m);

/** Asks the loop to call service(m, 0) soon; any thread. Wakes the loop
 *  only when no wake-up is on its way already. */
MQTT_HIDDEN void mqtt__loop_kick(mqtt_member *m);

/** Loop thread: watch fd (-1: none) for input and/or output. False when
 *  epoll refuses (mqtt_system_error() says why): fd is not watched. */
MQTT_HIDDEN bool mqtt__loop_watch(mqtt_member *m, int fd, bool in, bool out);

/** Bytes in a loop's read buffer. */
#define MQTT_LOOP_READ_BYTES (256 * 1024)

/**
 * Loop thread: the loop's read buffer (MQTT_LOOP_READ_BYTES), which its
 * members read into in turn, so a client holds input of its own only for a
 * packet not yet whole. Made at the first call; NULL without memory. Its
 * contents do not outlive the service call that filled it.
 */
MQTT_HIDDEN uint8_t *mqtt__loop_read_buffer(mqtt_member *m);

/** Loop thread: call service(m, 0) at `at` (mqtt__now() time); < 0: never. */
MQTT_HIDDEN void mqtt__loop_timer(mqtt_member *m, double at);

/** Signals (or clears) an eventfd; reads and writes are 8-byte counters. */
MQTT_HIDDEN void mqtt__fd_signal(int fd);
MQTT_HIDDEN void mqtt__fd_clear(int fd);

/** Sets the number of loop threads; MQTT_ERR_STATE once a loop runs. */
MQTT_HIDDEN int mqtt__loop_set_threads(unsigned n);

MQTT_HIDDEN void mqtt__loop_stats(mqtt_loop_stats *st);

/* The timer heap (heap.c): members ordered by at, earliest first. */
typedef struct mqtt_heap {
    mqtt_member **items;
    size_t len, cap;
} mqtt_heap;

/** Adds m, or moves it when it is in the heap; MQTT_ERR_NOMEM. */
MQTT_HIDDEN int mqtt__heap_set(mqtt_heap *h, mqtt_member *m, double at);
MQTT_HIDDEN void mqtt__heap_remove(mqtt_heap *h, mqtt_member *m);
static inline mqtt_member *mqtt__heap_top(const mqtt_heap *h)
{
    return h->len ? h->items[0] : NULL;
}
MQTT_HIDDEN void mqtt__heap_free(mqtt_heap *h);

#endif
