/*
 * A scripted in-process MQTT 3.1.1 broker for the C tests: one thread serving
 * one connection at a time on 127.0.0.1. It acks what the client sends and,
 * after a SUBACK, sends the client one message at each QoS on "oom/t".
 * It uses plain malloc, so it never touches the core's allocation counters.
 */
#ifndef ZMQTT_FAKE_BROKER_H
#define ZMQTT_FAKE_BROKER_H

#include <stdbool.h>
#include <stdint.h>

#include "mqtt.h"

/* What the broker read on one connection. */
typedef struct fake_broker_conn {
    unsigned publishes[3]; /* PUBLISH packets received, by QoS */
    bool disconnect;       /* a DISCONNECT packet came before the close */
} fake_broker_conn;

typedef struct fake_broker fake_broker;

/** Listens on an ephemeral port and starts the serving thread; NULL on failure. */
fake_broker *fake_broker_start(void);
uint16_t fake_broker_port(const fake_broker *b);
/** A client with default options and client id `id`: mqtt_client_create's
 *  status, the client in *out. */
int fake_broker_new_client(const char *id, mqtt_client **out);
/** Connects c to the broker (blocking; default connect options): true on success. */
bool fake_broker_connect(const fake_broker *b, mqtt_client *c);
/** Connections served to their end so far. */
unsigned fake_broker_ended(fake_broker *b);
/** Waits up to timeout seconds until `ended` connections have ended; false on
 * timeout. *last (may be NULL) receives what the last one to end carried. */
bool fake_broker_wait_ended(fake_broker *b, unsigned ended, double timeout, fake_broker_conn *last);
/** Stops and joins the thread, closes everything. */
void fake_broker_stop(fake_broker *b);

#endif
