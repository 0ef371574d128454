/*
 * Fuzz target: the MQTT 5 subscription family under both levels and roles:
 * SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK (see fuzz_v5.h).
 */
#include "fuzz_v5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static const uint8_t family[] = {MQTT_SUBSCRIBE, MQTT_SUBACK, MQTT_UNSUBSCRIBE,
                                     MQTT_UNSUBACK};
    fz_v5_run(data, len, family, sizeof family);
    return 0;
}
