/*
 * A minimal TAP test harness for the C unit tests: each CHECK is one TAP
 * line, so the test runner can sum C and busted results the same way.
 */
#ifndef ZMQTT_TEST_H
#define ZMQTT_TEST_H

#include <stdio.h>
#include <string.h>
#include <time.h>

static int test_count;
static int test_failed;

#define CHECK(cond, name)                                                               \
    do {                                                                                \
        ++test_count;                                                                   \
        if (cond) {                                                                     \
            printf("ok %d - %s\n", test_count, name);                                   \
        } else {                                                                        \
            ++test_failed;                                                              \
            printf("not ok %d - %s\n#   %s:%d: %s\n", test_count, name, __FILE__,      \
                   __LINE__, #cond);                                                    \
        }                                                                               \
    } while (0)

#define CHECK_BYTES(got, got_len, want, want_len, name)                                 \
    CHECK((got_len) == (want_len) && memcmp((got), (want), (want_len)) == 0, name)

/* Monotonic wall time, seconds. */
static inline double test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this thread: a call that blocks spends wall time, not CPU time. */
static inline double test_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int test_done(void)
{
    printf("1..%d\n", test_count);
    return test_failed ? 1 : 0;
}

#endif
