/*
 * The zmqtt core from C, without Lua: connect, subscribe, publish at QoS 1,
 * wait on the event fd, print what arrives, disconnect. It also shows an
 * MQTT 5.0 property refused, in words, while the client speaks 3.1.1.
 * Usage: c_client host port topic message
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"

/* Waits for events and handles them until the message and its PUBACK came. */
static int run(mqtt_client *c, uint16_t pub_mid)
{
    bool got_message = false, got_puback = false;
    while (!(got_message && got_puback)) {
        struct pollfd p = {.fd = mqtt_client_event_fd(c), .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0) {
            fprintf(stderr, "timed out waiting for events\n");
            return 1;
        }
        for (mqtt_event *ev = mqtt_client_take_events(c), *next; ev; ev = next) {
            next = ev->next;
            if (ev->type == MQTT_EV_PUBLISH && ev->has_message) {
                printf("message on %s: %.*s\n", ev->topic, (int)ev->payload_len,
                       (const char *)ev->payload);
                got_message = true;
            } else if (ev->type == MQTT_EV_PUBACK && ev->mid == pub_mid) {
                printf("PUBACK for mid %u\n", ev->mid);
                got_puback = true;
            } else if (ev->type == MQTT_EV_SUBACK) {
                printf("SUBACK for mid %u, granted %u\n", ev->mid, ev->reasons[0]);
            }
            mqtt_event_free(ev);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s host port topic message\n", argv[0]);
        return 2;
    }
    mqtt_options o;
    mqtt_options_init(&o);
    o.client_id = "zmqtt-c-example";
    o.client_id_len = strlen(o.client_id);
    mqtt_client *c;
    int rc = mqtt_client_create(&o, &c);
    if (rc != MQTT_OK) {
        fprintf(stderr, "create: %s (%s)\n", mqtt_strerror(rc), mqtt_last_error());
        return 1;
    }
    mqtt_connect_options co;
    mqtt_connect_options_init(&co);
    co.host = argv[1];
    co.port = (uint16_t)atoi(argv[2]);
    mqtt_connect_result res;
    rc = mqtt_client_connect(c, &co, &res);
    if (rc != MQTT_OK) {
        fprintf(stderr, "connect: %s\n", res.message);
        mqtt_client_destroy(c);
        return 1;
    }
    printf("connected (session present: %d, API version %d)\n", res.session_present,
           mqtt_api_version());
    mqtt_subscription sub = {.filter = argv[3], .filter_len = strlen(argv[3]), .qos = 1};
    uint16_t sub_mid, pub_mid;
    rc = mqtt_client_subscribe(c, &sub, 1, NULL, 0, &sub_mid);
    mqtt_message m = {.topic = argv[3], .topic_len = strlen(argv[3]), .payload = argv[4],
                      .payload_len = strlen(argv[4]), .qos = 1};
    if (rc == MQTT_OK)
        rc = mqtt_client_publish(c, &m, &pub_mid);
    mqtt_property user = {.id = MQTT_PROP_USER_PROPERTY, .data = (const uint8_t *)"from",
                          .len = 4, .data2 = (const uint8_t *)"c", .len2 = 1};
    mqtt_message with_props = m;
    with_props.props = &user;
    with_props.prop_count = 1;
    if (rc == MQTT_OK && mqtt_client_publish(c, &with_props, NULL) == MQTT_ERR_INVAL)
        printf("refused: %s\n", mqtt_last_error());
    if (rc == MQTT_OK)
        rc = run(c, pub_mid) ? MQTT_ERR_TIMEOUT : MQTT_OK;
    mqtt_client_disconnect(c);
    mqtt_client_destroy(c);
    if (rc != MQTT_OK)
        fprintf(stderr, "failed: %s %s\n", mqtt_strerror(rc), mqtt_last_error());
    return rc == MQTT_OK ? 0 : 1;
}
