/*
 * Fuzz target: the MQTT 5 connection family under both levels and roles:
 * CONNECT, CONNACK, DISCONNECT, AUTH, PINGREQ, PINGRESP (see fuzz_v5.h).
 */
#include "fuzz_v5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static const uint8_t family[] = {MQTT_CONNECT, MQTT_CONNACK, MQTT_DISCONNECT,
                                     MQTT_AUTH,    MQTT_PINGREQ, MQTT_PINGRESP};
    fz_v5_run(data, len, family, sizeof family);
    return 0;
}
