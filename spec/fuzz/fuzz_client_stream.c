/*
 * Fuzz target: the client's receive path end to end under MQTT 3.1.1; the
 * harness and the script's format are in fuzz_client.h.
 */
#include "fuzz_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    return fz_client_run(data, len);
}
