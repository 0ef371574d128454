/*
 * The core's allocator: libc's, with a countdown that makes the n-th
 * allocation fail for the out-of-memory tests. Counting costs atomic updates
 * of counters every thread shares, so it runs only once a test turned it on:
 * otherwise each call reads one flag nobody writes.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

static atomic_bool tracking;
static atomic_ulong fail_countdown;
static atomic_ulong made;
static atomic_long live; /* blocks allocated and not yet freed */

/* True when this allocation is the one the test asked to fail. A CAS, not a
 * load and a store: the I/O thread and the application thread allocate at
 * the same time, and exactly one allocation may fail. */
static int should_fail(void)
{
    if (!atomic_load_explicit(&tracking, memory_order_relaxed))
        return 0;
    atomic_fetch_add_explicit(&made, 1, memory_order_relaxed);
    unsigned long left = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    while (left != 0 &&
           !atomic_compare_exchange_weak_explicit(&fail_countdown, &left, left - 1,
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
    return left == 1;
}

void mqtt__alloc_track(void)
{
    atomic_store(&tracking, true);
}

unsigned long mqtt__alloc_fail_at(unsigned long n)
{
    atomic_store(&fail_countdown, n);
    return atomic_exchange(&made, 0);
}

long mqtt__alloc_live(void)
{
    return atomic_load(&live);
}

static void *counted(void *p)
{
    if (p && atomic_load_explicit(&tracking, memory_order_relaxed))
        atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
    return p;
}

void *mqtt__malloc(size_t n)
{
    return should_fail() ? NULL : counted(malloc(n));
}

void *mqtt__calloc(size_t count, size_t size)
{
    return should_fail() ? NULL : counted(calloc(count, size));
}

void *mqtt__realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return p ? realloc(p, n) : counted(realloc(NULL, n));
}

char *mqtt__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mqtt__malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void mqtt__free(void *p)
{
    if (p && atomic_load_explicit(&tracking, memory_order_relaxed))
        atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
    free(p);
}
