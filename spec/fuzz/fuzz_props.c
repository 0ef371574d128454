/*
 * Fuzz target: MQTT 5 property blocks. data[0] picks the packet (or the
 * will) the block is judged for; the rest is the block. A block that passes
 * mqtt__props_check must walk without leaving its bytes, encode again (the
 * encoder accepts exactly what the decoder accepted), and the encoding must
 * be canonical: ascending identifiers, user_property last, each identifier's
 * properties in their order, and encoding that again gives the same bytes.
 */
#include <string.h>

#include "fuzz_v5.h"
#include "wire.h"

static const uint8_t packets[] = {MQTT_WILL_PROPERTIES, MQTT_CONNECT,  MQTT_CONNACK,
                                  MQTT_PUBLISH,         MQTT_PUBACK,   MQTT_PUBREC,
                                  MQTT_PUBREL,          MQTT_PUBCOMP,  MQTT_SUBSCRIBE,
                                  MQTT_SUBACK,          MQTT_UNSUBSCRIBE, MQTT_UNSUBACK,
                                  MQTT_DISCONNECT,      MQTT_AUTH};

/* Encodes props for type into a fresh buffer; *n its size, *block the block in it. */
static uint8_t *encode_block(const fz_props *props, uint8_t type, size_t *n, mqtt_bytes *block)
{
    mqtt_writer count = {NULL, 0, true};
    mqtt__w_props(&count, props->p, props->n, type);
    FZ_CHECK(count.ok);
    uint8_t *out = malloc(count.n);
    mqtt_writer w = {out, 0, true};
    mqtt__w_props(&w, props->p, props->n, type);
    FZ_CHECK(w.ok && w.n == count.n);
    mqtt_reader r = {out, w.n, 0};
    const char *why = NULL;
    FZ_CHECK(mqtt__r_props(&r, type, block, &why) == MQTT_OK && r.pos == w.n);
    *n = w.n;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    const char *why = NULL;
    size_t n1, n2;
    mqtt_bytes b1, b2;
    if (len < 1)
        return 0;
    uint8_t type = packets[data[0] % sizeof packets];
    mqtt_bytes block = {NULL, len - 1};
    uint8_t *copy = malloc(len - 1 ? len - 1 : 1);
    memcpy(copy, data + 1, len - 1);
    block.data = copy;
    int rc = mqtt__props_check(copy, len - 1, type, &why);
    FZ_CHECK(rc == MQTT_OK || rc == MQTT_ERR_MALFORMED || rc == MQTT_ERR_PROTOCOL);
    if (rc != MQTT_OK) {
        FZ_CHECK(why != NULL && why[0] != '\0');
        free(copy);
        return 0;
    }
    fz_props wire = fz_collect(block, false);
    for (size_t i = 0; i < wire.n; i++)
        FZ_CHECK(mqtt_property_allowed(wire.p[i].id, type));
    uint8_t *e1 = encode_block(&wire, type, &n1, &b1);
    FZ_CHECK(fz_same_props(block, b1));
    fz_props again = fz_collect(b1, false);
    uint8_t *e2 = encode_block(&again, type, &n2, &b2);
    FZ_CHECK(fz_same_bytes(e1, n1, e2, n2));
    free(wire.p);
    free(again.p);
    free(e1);
    free(e2);
    free(copy);
    return 0;
}
