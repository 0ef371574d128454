/* Temporary: replaced by the mbedtls implementation. */
#include <stdio.h>

#include "transport.h"

int mqtt__tls_open(mqtt_tls_config *cfg, const char *host, unsigned port, double deadline,
                   const mqtt_cancel *cancel, const int ka[3], void **session,
                   mqtt_transport **out, char *err, size_t errlen)
{
    (void)cfg; (void)host; (void)port; (void)deadline; (void)cancel; (void)ka; (void)session;
    (void)out;
    snprintf(err, errlen, "TLS is not built");
    return MQTT_ERR_TLS;
}

void mqtt__tls_session_free(void *session)
{
    (void)session;
}
