/*
 * Out of memory: every public entry point, with each of its allocations made
 * to fail in turn, returns success or MQTT_ERR_NOMEM (never crashes), and
 * once the client is destroyed nothing it allocated is left.
 */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "mqtt.h"
#include "test.h"

static int ok_or_nomem(int rc)
{
    return rc == MQTT_OK || rc == MQTT_ERR_NOMEM;
}

/* An offline client's whole API; returns false on an unexpected status. */
static bool offline_client(void)
{
    mqtt_options o;
    mqtt_options_init(&o);
    o.client_id = "oom-client";
    o.client_id_len = strlen(o.client_id);
    mqtt_client *c = NULL;
    int rc = mqtt_client_create(&o, &c);
    if (rc != MQTT_OK)
        return rc == MQTT_ERR_NOMEM && c == NULL;
    bool good = ok_or_nomem(mqtt_client_set_will(c, "will/t", 6, "", 0, 1, false)) &&
                ok_or_nomem(mqtt_client_set_credentials(c, "user", 4, "pw", 2));
    uint16_t mid;
    for (int qos = 0; qos <= 2; qos++)
        good = good && ok_or_nomem(mqtt_client_publish(c, "a/b", 3, "payload", 7, qos, false,
                                                       &mid));
    mqtt_subscription subs[2] = {{"a/+", 3, 1}, {"b/#", 3, 2}};
    good = good && ok_or_nomem(mqtt_client_subscribe(c, subs, 2, &mid)) &&
           ok_or_nomem(mqtt_client_unsubscribe(c, subs, 2, &mid));
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

/* Runs scenario with its 1st, 2nd, ... allocation failing until it makes no
 * more allocations than the one that would fail. */
static void each_failure(const char *name, bool (*scenario)(void))
{
    long base = mqtt__alloc_live();
    mqtt__alloc_fail_at(0);
    scenario();
    unsigned long total = mqtt__alloc_fail_at(0);
    bool all_good = true, no_leak = true;
    for (unsigned long n = 1; n <= total; n++) {
        mqtt__alloc_fail_at(n);
        all_good = scenario() && all_good;
        mqtt__alloc_fail_at(0);
        no_leak = no_leak && mqtt__alloc_live() == base;
    }
    char label[128];
    snprintf(label, sizeof label, "%s: %lu allocations, each failing: no crash, clean status",
             name, total);
    CHECK(total > 0 && all_good, label);
    snprintf(label, sizeof label, "%s: nothing left allocated after any failure", name);
    CHECK(no_leak && mqtt__alloc_live() == base, label);
}

int main(void)
{
    each_failure("offline client", offline_client);
    each_failure("TLS context", tls_context);
    return test_done();
}
