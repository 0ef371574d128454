/*
 * A QoS 1 message becomes visible to the application only after its PUBACK
 * was written to the socket, so a program that exits right after handling it
 * has acknowledged it. Linked with --wrap: send() counts the PUBACKs the
 * client writes, and the two ways an event becomes visible (pushed to the
 * queue, or staged events released) check that count for each QoS 1 message.
 * The in-process fake broker sends a QoS 1 message after every SUBACK.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "client_internal.h"
#include "fake_broker.h"
#include "test.h"

#define ROUNDS 50

static atomic_uint pubacks_written[65536];
static unsigned visible[65536]; /* QoS 1 messages made visible, by mid; under the client lock */
static atomic_uint early;       /* made visible before their PUBACK was written */
static atomic_uint checked;

ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
void __real_mqtt__event_push(mqtt_client *c, mqtt_event *ev);
void __wrap_mqtt__event_push(mqtt_client *c, mqtt_event *ev);
void __real_mqtt__event_release_staged(mqtt_client *c);
void __wrap_mqtt__event_release_staged(mqtt_client *c);

/* The fake broker never sends PUBACK here (the client publishes nothing). */
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    ssize_t n = __real_send(fd, buf, len, flags);
    const uint8_t *p = buf;
    for (size_t i = 0; n > 0 && i + 4 <= (size_t)n; i += 2u + p[i + 1]) {
        if (p[i] == 0x40 && p[i + 1] == 2)
            atomic_fetch_add(&pubacks_written[p[i + 2] << 8 | p[i + 3]], 1);
        if (p[i + 1] & 0x80)
            break; /* a long packet: not an ack stream */
    }
    return n;
}

static void becomes_visible(const mqtt_event *ev)
{
    if (ev->type != MQTT_EV_PUBLISH || !ev->has_message || ev->qos != 1)
        return;
    atomic_fetch_add(&checked, 1);
    if (++visible[ev->mid] > atomic_load(&pubacks_written[ev->mid]))
        atomic_fetch_add(&early, 1);
}

void __wrap_mqtt__event_push(mqtt_client *c, mqtt_event *ev)
{
    if (!c->sh.staging)
        becomes_visible(ev);
    __real_mqtt__event_push(c, ev);
}

void __wrap_mqtt__event_release_staged(mqtt_client *c)
{
    for (const mqtt_event *ev = c->sh.st_head; ev; ev = ev->next)
        becomes_visible(ev);
    __real_mqtt__event_release_staged(c);
}

/* Messages taken: QoS 0 and 1 with PUBLISH, QoS 2 with PUBREL. */
static unsigned take_messages(mqtt_client *c)
{
    unsigned n = 0;
    for (mqtt_event *ev = mqtt_client_take_events(c), *next; ev; ev = next) {
        next = ev->next;
        n += ev->has_message;
        mqtt_event_free(ev);
    }
    return n;
}

int main(void)
{
    fake_broker *broker = fake_broker_start();
    CHECK(broker != NULL, "fake broker listening on 127.0.0.1");
    if (!broker)
        return test_done();
    mqtt_client *c = NULL;
    CHECK(fake_broker_new_client("ack-order", &c) == MQTT_OK, "client created");
    CHECK(fake_broker_connect(broker, c), "connected to the fake broker");
    unsigned messages = 0;
    for (int round = 0; round < ROUNDS; round++) {
        mqtt_subscription sub = {.filter = "oom/t", .filter_len = 5, .qos = 1};
        uint16_t mid;
        mqtt_client_subscribe(c, &sub, 1, NULL, 0, &mid);
        /* Each SUBACK brings one message at each QoS: 0 and 1 now, 2 at PUBREL. */
        unsigned want = (unsigned)(round + 1) * 3;
        for (int i = 0; i < 3000 && messages < want; i++) {
            messages += take_messages(c);
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(messages == ROUNDS * 3, "every message arrived");
    CHECK(atomic_load(&checked) == ROUNDS, "each QoS 1 message checked once");
    CHECK(atomic_load(&early) == 0, "no QoS 1 message was visible before its PUBACK was written");
    mqtt_client_destroy(c);
    fake_broker_stop(broker);
    return test_done();
}
