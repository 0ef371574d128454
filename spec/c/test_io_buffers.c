/*
 * The I/O loop's buffers: a busy client keeps its output buffers from turn to
 * turn, but a client that has gone quiet holds none, whatever made it write
 * last (the CONNECT, a ping, a publish). Its input goes through the loop's
 * read buffer and is checked by the other tests; here, what an idle client
 * keeps, read under the client's lock, against the in-process fake broker.
 */
#include <string.h>
#include <time.h>

#include "client_internal.h"
#include "fake_broker.h"
#include "test.h"

static bool holds_output(mqtt_client *c)
{
    pthread_mutex_lock(&c->mu);
    bool held = c->sh.out.data != NULL || c->sh.wbuf.data != NULL;
    pthread_mutex_unlock(&c->mu);
    return held;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The loop gives the buffers back in the turn that finds nothing to write;
 * up to 5 s for that turn to come. */
static bool output_released(mqtt_client *c)
{
    for (int i = 0; i < 5000; i++) {
        if (!holds_output(c))
            return true;
        pause_ms(1);
    }
    return false;
}

/* Takes events until one of type arrives (up to 5 s). */
static bool wait_event(mqtt_client *c, int type)
{
    for (int i = 0; i < 5000; i++) {
        bool seen = false;
        for (mqtt_event *ev = mqtt_client_take_events(c), *next; ev; ev = next) {
            next = ev->next;
            seen = seen || ev->type == type;
            mqtt_event_free(ev);
        }
        if (seen)
            return true;
        pause_ms(1);
    }
    return false;
}

int main(void)
{
    fake_broker *broker = fake_broker_start();
    CHECK(broker != NULL, "fake broker listening on 127.0.0.1");
    if (!broker)
        return test_done();
    mqtt_client *c = NULL;
    CHECK(fake_broker_new_client("io-buffers", &c) == MQTT_OK, "client created");
    mqtt_client_want_pingresp(c, true);
    mqtt_connect_options co;
    mqtt_connect_options_init(&co);
    co.host = "127.0.0.1";
    co.port = fake_broker_port(broker);
    co.keepalive = 1;
    mqtt_connect_result res;
    CHECK(mqtt_client_connect(c, &co, &res) == MQTT_OK, "connected with keepalive 1 s");
    CHECK(output_released(c), "connected and quiet: no output buffer held");

    mqtt_message m = {.topic = "io/b", .topic_len = 4, .payload = "x", .payload_len = 1, .qos = 1};
    uint16_t mid = 0;
    for (int i = 0; i < 200; i++)
        mqtt_client_publish(c, &m, &mid);
    CHECK(mid != 0, "200 QoS 1 messages queued");
    bool acked = false;
    for (int i = 0; i < 5000 && !acked; i++) {
        acked = !mqtt_client_pending(c, mid);
        pause_ms(1);
    }
    CHECK(acked, "the last one acknowledged");
    CHECK(output_released(c), "publishes acknowledged: no output buffer held");

    CHECK(wait_event(c, MQTT_EV_PINGRESP), "a ping answered");
    CHECK(output_released(c), "after the ping: no output buffer held");

    mqtt_client_destroy(c);
    fake_broker_stop(broker);
    return test_done();
}
