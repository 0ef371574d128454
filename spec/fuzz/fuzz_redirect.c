/*
 * Fuzz target: follow_redirects (src/client/servers.c). The first byte picks
 * the reason code (0x9C, 0x9D or another), whether the client has TLS and
 * which server list it uses; the rest is a CONNACK/DISCONNECT property block
 * as the broker sent it. Checks: a reference is followed only for 0x9C and
 * 0x9D; a followed one is a URI the endpoint parser takes and becomes the
 * current server at the next move; a second redirect replaces the first
 * (the list grows by one at most); a refused one says why.
 */
#include <string.h>

#include "client_internal.h"
#include "fuzz_util.h"

static const char *const lists[4][2] = {
    {"broker.example", NULL},
    {"mqtts://a.example:8883", "ws://b.example/mqtt"},
    {"unix:///run/mqtt.sock", "wss://c.example"},
    {"127.0.0.1", "[::1]"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    fz_in in = {data, len};
    uint8_t pick = fz_u8(&in);
    int reason = (pick & 3) == 0   ? MQTT_RC_USE_ANOTHER_SERVER
                 : (pick & 3) == 1 ? MQTT_RC_SERVER_MOVED
                                   : MQTT_RC_NOT_AUTHORIZED;
    bool tls = (pick & 4) != 0;
    const char *const *list = lists[(pick >> 3) & 3];
    mqtt_connect_options co;
    mqtt_connect_options_init(&co);
    co.servers = list;
    co.server_count = list[1] ? 2 : 1;
    mqtt_servers s;
    memset(&s, 0, sizeof s);
    if (mqtt__servers_set(&s, &co) != MQTT_OK)
        return 0;
    size_t count = s.count;
    mqtt_bytes props = {in.p, in.n};
    for (int round = 0; round < 2; round++) {
        char why[300] = "";
        const char *to = mqtt__servers_redirect(&s, reason, props, tls, why, sizeof why);
        FZ_CHECK(!to || reason != MQTT_RC_NOT_AUTHORIZED);
        if (!to) {
            mqtt__servers_next(&s);
            continue;
        }
        char copy[600];
        snprintf(copy, sizeof copy, "%s", to);
        mqtt_endpoint ep;
        char err[256];
        FZ_CHECK(mqtt__endpoint_parse(copy, s.port, &ep, err, sizeof err) == MQTT_OK);
        mqtt__endpoint_clear(&ep);
        FZ_CHECK(mqtt__servers_next(&s));
        FZ_CHECK(strcmp(mqtt__servers_current(&s), copy) == 0 && s.index == 0);
        FZ_CHECK(s.count == count + 1);
    }
    mqtt__servers_free(&s);
    return 0;
}
