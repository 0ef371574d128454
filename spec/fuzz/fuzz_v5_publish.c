/*
 * Fuzz target: the MQTT 5 publish family under both levels and roles:
 * PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP (see fuzz_v5.h).
 */
#include "fuzz_v5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static const uint8_t family[] = {MQTT_PUBLISH, MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL,
                                     MQTT_PUBCOMP};
    fz_v5_run(data, len, family, sizeof family);
    return 0;
}
