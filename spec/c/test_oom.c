/*
 * Out of memory: every public entry point, with each of its allocations made
 * to fail in turn, returns success or MQTT_ERR_NOMEM (never crashes), and
 * once the client is destroyed nothing it allocated is left. Connected runs
 * talk to the in-process fake broker: a failure on the I/O thread must come
 * back as an error event, never as a hang or a message silently missing.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "fake_broker.h"
#include "mqtt.h"
#include "test.h"

/* Every wait for the client is bounded by this many seconds. */
#define WAIT 3.0

static fake_broker *broker;
static unsigned long failing_at; /* the allocation made to fail in this run */
static unsigned long by_event;   /* runs whose failure came back as an error event */

static int ok_or_nomem(int rc)
{
    return rc == MQTT_OK || rc == MQTT_ERR_NOMEM;
}

/* An offline client's whole API; returns false on an unexpected status. */
static bool offline_client(void)
{
    mqtt_client *c = NULL;
    int rc = fake_broker_new_client("oom-client", &c);
    if (rc != MQTT_OK)
        return rc == MQTT_ERR_NOMEM && c == NULL;
    mqtt_message will = {"will/t", 6, "", 0, 1, false, NULL, 0};
    bool good = ok_or_nomem(mqtt_client_set_will(c, &will)) &&
                ok_or_nomem(mqtt_client_set_credentials(c, "user", 4, "pw", 2));
    uint16_t mid;
    for (int qos = 0; qos <= 2; qos++) {
        mqtt_message m = {"a/b", 3, "payload", 7, qos, false, NULL, 0};
        good = good && ok_or_nomem(mqtt_client_publish(c, &m, &mid));
    }
    mqtt_subscription subs[2] = {{.filter = "a/+", .filter_len = 3, .qos = 1},
                                  {.filter = "b/#", .filter_len = 3, .qos = 2}};
    good = good && ok_or_nomem(mqtt_client_subscribe(c, subs, 2, NULL, 0, &mid)) &&
           ok_or_nomem(mqtt_client_unsubscribe(c, subs, 2, NULL, 0, &mid));
    mqtt_stats st;
    mqtt_client_stats(c, &st);
    mqtt_client_destroy(c);
    return good;
}

static bool tls_context(void)
{
    mqtt_tls_options o;
    mqtt_tls_options_init(&o);
    static const uint8_t key[] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const char *const alpn[] = {"mqtt", "x-other"};
    o.psk = key;
    o.psk_len = sizeof key;
    o.psk_identity = "device";
    o.alpn = alpn;
    o.alpn_count = 2;
    char err[256];
    mqtt_tls_config *cfg = NULL;
    int rc = mqtt_tls_config_new(&o, &cfg, err, sizeof err);
    if (rc != MQTT_OK)
        return cfg == NULL;
    mqtt_tls_config_unref(mqtt_tls_config_ref(cfg));
    mqtt_tls_config_unref(cfg);
    return true;
}

/* A CA file of the same self-signed certificate eight times (its
 * 4.6 kB make the loader grow its buffer); a failure must say "out of memory". */
static const char ca_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBfzCCASWgAwIBAgIUXlVCcdXOzKR4ixcROMEfoOgTBQEwCgYIKoZIzj0EAwIw\n"
    "FDESMBAGA1UEAwwJem1xdHQtb29tMCAXDTI2MTIwMjIwMzM1M1oYDzIxMjYxMTA4\n"
    "MjAzMzUzWjAUMRIwEAYDVQQDDAl6bXF0dC1vb20wWTATBgcqhkjOPQIBBggqhkjO\n"
    "PQMBBwNCAASzbckp2tF1HlNUUgiIe6+tcfjQxXX1KeGRoszlUFSRgiINvXu9/Sua\n"
    "OsbrvYDQw8ZKP87Max99Zt0oDTrd2yono1MwUTAdBgNVHQ4EFgQUT1RLw8udPY0r\n"
    "IibLwFN6UYPyMV8wHwYDVR0jBBgwFoAUT1RLw8udPY0rIibLwFN6UYPyMV8wDwYD\n"
    "VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiBqqfPX4VmRHgjeruscLYe2\n"
    "34bO1sXZ3yRMEYthzYgdvwIhAP4VALBTHIDm5J8bWlkUjiK2DHZ0x0MMuWkabonk\n"
    "dqZS\n"
    "-----END CERTIFICATE-----\n";

static char ca_path[64];

static bool tls_cafile(void)
{
    char *path = ca_path;
    if (!path[0]) {
        snprintf(path, sizeof ca_path, "/tmp/zmqtt-oom-ca.%ld.pem", (long)getpid());
        FILE *f = fopen(path, "w");
        for (int i = 0; f && i < 8; i++)
            fputs(ca_pem, f);
        if (!f || fclose(f) != 0)
            return false;
    }
    mqtt_tls_options o;
    mqtt_tls_options_init(&o);
    o.cafile = path;
    char err[256] = "";
    mqtt_tls_config *cfg = NULL;
    int rc = mqtt_tls_config_new(&o, &cfg, err, sizeof err);
    if (rc != MQTT_OK)
        return cfg == NULL && rc == MQTT_ERR_NOMEM && strstr(err, "out of memory") != NULL;
    mqtt_tls_config_unref(cfg);
    return true;
}

/* ---- connected runs ------------------------------------------------ */

/* The events a connected run waits for, as bits. */
enum {
    E_CONNACK = 1 << 0,
    E_SUBACK = 1 << 1,
    E_MSG0 = 1 << 2, /* the broker's QoS 0 message */
    E_MSG1 = 1 << 3, /* its QoS 1 message */
    E_MSG2 = 1 << 4, /* the arrival of its QoS 2 message (mid only) */
    E_REL2 = 1 << 5, /* the QoS 2 message itself, released */
    E_PUBACK = 1 << 6,
    E_PUBREC = 1 << 7,
    E_PUBCOMP = 1 << 8,
    E_PINGRESP = 1 << 9
};

typedef struct run {
    mqtt_client *c;
    unsigned want, got;
    bool lost;       /* an error event reported the injected failure */
    bool bad;        /* an event that should not be: wrong content, status or no reason */
    int disconnects; /* DISCONNECT events: one per connection, whatever happens */
    uint16_t sub_mid, pub1_mid, pub2_mid;
} run;

static void complain(run *r, const char *what)
{
    printf("# allocation %lu failing: %s\n", failing_at, what);
    r->bad = true;
}

static bool is_message(const mqtt_event *ev, const char *payload)
{
    return ev->has_message && strcmp(ev->topic, "oom/t") == 0 &&
           ev->payload_len == strlen(payload) && memcmp(ev->payload, payload, ev->payload_len) == 0;
}

/* A failure must name its cause: out of memory, with words for it. */
static void failure_event(run *r, const mqtt_event *ev)
{
    by_event += !r->lost;
    r->lost = true;
    if (ev->status != MQTT_ERR_NOMEM || !ev->text || !ev->text[0])
        complain(r, "an error event without the out-of-memory status and a reason");
}

/* Which bit ev stands for (0: none), checking its content on the way. */
static unsigned event_bit(run *r, const mqtt_event *ev)
{
    switch (ev->type) {
    case MQTT_EV_CONNACK:
        if (ev->status == MQTT_OK)
            return E_CONNACK;
        failure_event(r, ev);
        return 0;
    case MQTT_EV_DISCONNECT:
        r->disconnects++;
        if (ev->status != MQTT_OK)
            failure_event(r, ev);
        return 0;
    case MQTT_EV_SUBACK:
        if (ev->mid == r->sub_mid && ev->reason_count == 1 && ev->reasons[0] == 2)
            return E_SUBACK;
        return 0;
    case MQTT_EV_PUBLISH:
        if (is_message(ev, "m0") && ev->qos == 0)
            return E_MSG0;
        if (is_message(ev, "m1") && ev->qos == 1)
            return E_MSG1;
        return !ev->has_message && ev->mid == 2 ? E_MSG2 : 0;
    case MQTT_EV_PUBREL:
        return is_message(ev, "m2") ? E_REL2 : 0;
    case MQTT_EV_PUBACK:
        return ev->mid == r->pub1_mid ? E_PUBACK : 0;
    case MQTT_EV_PUBREC:
        return ev->mid == r->pub2_mid ? E_PUBREC : 0;
    case MQTT_EV_PUBCOMP:
        return ev->mid == r->pub2_mid ? E_PUBCOMP : 0;
    case MQTT_EV_PINGRESP:
        return E_PINGRESP;
    default:
        return 0;
    }
}

/* Takes the whole queue and frees each event after use, as the Lua binding does. */
static void take_events(run *r)
{
    for (mqtt_event *ev = mqtt_client_take_events(r->c), *next; ev; ev = next) {
        next = ev->next;
        unsigned bit = event_bit(r, ev);
        if (bit == 0 && ev->status == MQTT_OK && ev->type != MQTT_EV_DISCONNECT)
            complain(r, "an event nobody asked for");
        if (r->got & bit)
            complain(r, "an event twice");
        r->got |= bit;
        mqtt_event_free(ev);
    }
}

/* Waits until every wanted event came or a failure was reported. */
static void await(run *r)
{
    double end = test_now() + WAIT;
    while ((r->got & r->want) != r->want && !r->lost) {
        int ms = (int)((end - test_now()) * 1000);
        if (ms <= 0) {
            printf("# events wanted 0x%x, got 0x%x\n", r->want, r->got);
            complain(r, "no error event, yet some wanted events never came");
            return;
        }
        struct pollfd p = {.fd = mqtt_client_event_fd(r->c), .events = POLLIN};
        poll(&p, 1, ms);
        take_events(r);
    }
}

static int new_client(run *r, const char *id)
{
    mqtt_options o;
    mqtt_options_init(&o);
    o.client_id = id;
    o.client_id_len = strlen(id);
    o.disconnect_timeout = 1;
    return mqtt_client_create(&o, &r->c);
}

/* The broker saw the QoS 0 message (when publish took it) and the DISCONNECT. */
static bool broker_saw(unsigned ended, bool qos0)
{
    fake_broker_conn last;
    return fake_broker_wait_ended(broker, ended + 1, WAIT, &last) &&
           last.publishes[0] == (qos0 ? 1u : 0u) && last.disconnect;
}

/* Subscribes, receives a message at each QoS and publishes one at each;
 * *qos0 says whether the QoS 0 publish was accepted. */
static bool pubsub(run *r, bool *qos0)
{
    mqtt_subscription sub = {.filter = "oom/t", .filter_len = 5, .qos = 2};
    int rc = mqtt_client_subscribe(r->c, &sub, 1, NULL, 0, &r->sub_mid);
    if (rc == MQTT_OK)
        r->want |= E_SUBACK | E_MSG0 | E_MSG1 | E_MSG2 | E_REL2;
    await(r);
    bool good = ok_or_nomem(rc);
    uint16_t mid;
    rc = mqtt_client_publish(r->c, &(mqtt_message){"oom/out", 7, "p0", 2, 0, false, NULL, 0}, &mid);
    *qos0 = rc == MQTT_OK;
    good = good && ok_or_nomem(rc);
    rc = mqtt_client_publish(r->c, &(mqtt_message){"oom/out", 7, "p1", 2, 1, false, NULL, 0}, &r->pub1_mid);
    r->want |= rc == MQTT_OK ? E_PUBACK : 0;
    good = good && ok_or_nomem(rc);
    rc = mqtt_client_publish(r->c, &(mqtt_message){"oom/out", 7, "p2", 2, 2, false, NULL, 0}, &r->pub2_mid);
    r->want |= rc == MQTT_OK ? E_PUBREC | E_PUBCOMP : 0;
    good = good && ok_or_nomem(rc);
    await(r);
    return good;
}

/* Connect, subscribe, messages both ways at QoS 0/1/2, disconnect. */
static bool connected_client(void)
{
    run r = {0};
    int rc = new_client(&r, "oom-connected");
    if (rc != MQTT_OK)
        return rc == MQTT_ERR_NOMEM;
    mqtt_message will = {"will/t", 6, "bye", 3, 1, false, NULL, 0};
    bool good = ok_or_nomem(mqtt_client_set_will(r.c, &will)) &&
                ok_or_nomem(mqtt_client_set_credentials(r.c, "user", 4, "pw", 2));
    mqtt_connect_options co;
    mqtt_connect_options_init(&co);
    co.host = "127.0.0.1";
    co.port = fake_broker_port(broker);
    co.keepalive = 0;
    mqtt_connect_result res;
    rc = mqtt_client_connect(r.c, &co, &res);
    good = good && ok_or_nomem(rc) && res.status == rc && res.message[0];
    if (rc == MQTT_OK) {
        unsigned ended = fake_broker_ended(broker);
        r.want = E_CONNACK;
        bool qos0 = false;
        good = pubsub(&r, &qos0) && good;
        mqtt_client_disconnect(r.c);
        take_events(&r);
        good = good && !mqtt_client_is_connected(r.c) && r.disconnects == 1;
        /* Nothing failed visibly: then nothing may be missing at the broker either. */
        if (!r.lost && !broker_saw(ended, qos0))
            complain(&r, "the broker missed the QoS 0 message or the DISCONNECT");
    }
    mqtt_client_destroy(r.c);
    return good && !r.bad;
}

/* An asynchronous connect to a host name, then keepalive: the client pings
 * after a second. */
static bool keepalive_client(void)
{
    run r = {0};
    int rc = new_client(&r, "oom-keepalive");
    if (rc != MQTT_OK)
        return rc == MQTT_ERR_NOMEM;
    mqtt_client_want_pingresp(r.c, true);
    mqtt_connect_options co;
    mqtt_connect_options_init(&co);
    co.host = "localhost"; /* a name: the resolver's allocation too */
    co.port = fake_broker_port(broker);
    co.keepalive = 1;
    rc = mqtt_client_connect_async(r.c, &co);
    if (rc == MQTT_OK) {
        r.want = E_CONNACK;
        await(&r);
        r.want |= E_PINGRESP;
        await(&r);
        mqtt_client_disconnect(r.c);
        take_events(&r);
    }
    mqtt_client_destroy(r.c);
    return ok_or_nomem(rc) && !r.bad && r.disconnects == ((r.got & E_CONNACK) ? 1 : 0);
}

/* Blocks allocated and not freed, once the name resolver's detached thread
 * (which frees its share of a lookup on its own, maybe after the connect
 * gave up) has had up to a second to finish. */
static long live_after_settling(long base)
{
    for (int i = 0; i < 100 && mqtt__alloc_live() != base; i++)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    return mqtt__alloc_live();
}

/* Runs scenario with its 1st, 2nd, ... allocation failing until a run makes
 * fewer allocations than the one that would fail. Threads make the count
 * vary a little from run to run. */
static void each_failure(const char *name, bool (*scenario)(void))
{
    long base = mqtt__alloc_live();
    bool all_good = true, no_leak = true;
    unsigned long made = 0, points = 0;
    double start = test_now();
    by_event = 0;
    for (failing_at = 1; failing_at < 100000; failing_at++) {
        mqtt__alloc_fail_at(failing_at);
        bool good = scenario();
        made = mqtt__alloc_fail_at(0);
        if (made < failing_at)
            break; /* nothing failed: every point is covered */
        points++;
        all_good = good && all_good;
        if (!good)
            printf("# %s: allocation %lu failing: unexpected status\n", name, failing_at);
        long live = live_after_settling(base);
        if (live != base)
            printf("# %s: allocation %lu failing: %ld blocks left\n", name, failing_at,
                   live - base);
        no_leak = no_leak && live == base;
    }
    printf("# %s: %lu allocation points, %lu reported by an error event, in %.2f s\n", name, points,
           by_event, test_now() - start);
    char label[128];
    snprintf(label, sizeof label, "%s: %lu allocation points, each failing: clean status", name,
             points);
    CHECK(points > 0 && made > 0 && made < failing_at && all_good, label);
    snprintf(label, sizeof label, "%s: nothing left allocated after any failure", name);
    CHECK(no_leak && mqtt__alloc_live() == base, label);
}

int main(void)
{
    mqtt__alloc_track();
    each_failure("offline client", offline_client);
    each_failure("TLS context", tls_context);
    each_failure("TLS context with a CA file", tls_cafile);
    unlink(ca_path);
    broker = fake_broker_start();
    CHECK(broker != NULL, "fake broker listening on 127.0.0.1");
    if (broker) {
        each_failure("connected client", connected_client);
        each_failure("keepalive client", keepalive_client);
    }
    fake_broker_stop(broker);
    return test_done();
}
