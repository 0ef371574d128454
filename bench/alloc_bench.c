/*
 * bench/alloc_bench.c: allocations the zmqtt core makes per received message.
 *
 * The C core alone (libzmqtt.a), counted through its own allocator's test
 * hooks (src/base/alloc.c): every allocation of the I/O thread and of the
 * application thread goes through them. One client at the protocol level
 * asked for subscribes at QoS 0 to the fake broker in blast mode and takes
 * COUNT messages as a C application does (event fd, take_events,
 * mqtt_event_free); the first tenth (at most 1,000) warms the buffers up and
 * is not counted.
 *
 * Usage: alloc_bench HOST PORT COUNT TOPIC PROTOCOL(4|5)
 * Prints "result count=<measured messages> allocs=<n> per_message=<x>
 * protocol=<level>" on stdout.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "mqtt.h"

_Noreturn static void fail(const char *what, int rc)
{
    fprintf(stderr, "alloc_bench: %s: %s (%s)\n", what, mqtt_strerror(rc), mqtt_last_error());
    exit(1);
}

/* Handles every pending event; returns the messages among them. */
static long take(mqtt_client *c)
{
    long n = 0;
    for (mqtt_event *ev = mqtt_client_take_events(c), *next; ev; ev = next) {
        next = ev->next;
        if (ev->type == MQTT_EV_PUBLISH && ev->has_message)
            n++;
        mqtt_event_free(ev);
    }
    return n;
}

/* Waits for events and takes them until at least target messages came. */
static void receive(mqtt_client *c, long *got, long target)
{
    while (*got < target) {
        struct pollfd p = {.fd = mqtt_client_event_fd(c), .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0) {
            fprintf(stderr, "alloc_bench: no message for 10 s after %ld\n", *got);
            exit(1);
        }
        *got += take(c);
    }
}

static mqtt_client *connect_client(const char *host, int port, int protocol)
{
    mqtt_options o;
    mqtt_options_init(&o);
    o.client_id = "zmqtt-alloc-bench";
    o.client_id_len = strlen(o.client_id);
    o.protocol = protocol;
    mqtt_client *c;
    int rc = mqtt_client_create(&o, &c);
    if (rc != MQTT_OK)
        fail("create", rc);
    mqtt_connect_options co;
    mqtt_connect_options_init(&co);
    co.host = host;
    co.port = (uint16_t)port;
    mqtt_connect_result res;
    rc = mqtt_client_connect(c, &co, &res);
    if (rc != MQTT_OK)
        fail("connect", rc);
    if (mqtt_client_protocol(c) != protocol) {
        fprintf(stderr, "alloc_bench: the broker answered at level %d\n", mqtt_client_protocol(c));
        exit(1);
    }
    return c;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: alloc_bench HOST PORT COUNT TOPIC PROTOCOL(4|5)\n");
        return 2;
    }
    long count = atol(argv[3]);
    int protocol = atoi(argv[5]);
    if (count < 10 || (protocol != MQTT_V311 && protocol != MQTT_V5)) {
        fprintf(stderr, "alloc_bench: COUNT must be at least 10, PROTOCOL 4 or 5\n");
        return 2;
    }
    mqtt__alloc_track(); /* before the first allocation, as the hook asks */
    mqtt_client *c = connect_client(argv[1], atoi(argv[2]), protocol);
    mqtt_subscription sub = {.filter = argv[4], .filter_len = strlen(argv[4]), .qos = 0};
    int rc = mqtt_client_subscribe(c, &sub, 1, NULL, 0, NULL);
    if (rc != MQTT_OK)
        fail("subscribe", rc);
    long warm = count / 10 < 1000 ? count / 10 : 1000, got = 0;
    receive(c, &got, warm);
    long from = got;
    mqtt__alloc_fail_at(0); /* resets the count: from here on, the measured part */
    receive(c, &got, count);
    unsigned long allocs = mqtt__alloc_fail_at(0);
    long measured = got - from;
    printf("result count=%ld allocs=%lu per_message=%.4f protocol=%d\n", measured, allocs,
           (double)allocs / (double)measured, protocol);
    mqtt_client_disconnect(c);
    mqtt_client_destroy(c);
    return 0;
}
