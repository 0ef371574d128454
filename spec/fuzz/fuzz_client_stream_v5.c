/*
 * Fuzz target: the client's receive and send paths end to end under MQTT 5.0
 * (or "auto", which may fall back to 3.1.1): the script of fuzz_client.h,
 * whose first bytes after the 3.1.1 ones choose the protocol, the CONNECT's
 * properties and the topic alias mode, and whose CONNACK announces limits.
 */
#include "fuzz_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    fz_v5 = true;
    return fz_client_run(data, len);
}
