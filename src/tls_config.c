/* Temporary: replaced by the mbedtls implementation. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"

struct mqtt_tls_config {
    atomic_int refs;
};

void mqtt_tls_options_init(mqtt_tls_options *o)
{
    memset(o, 0, sizeof *o);
    o->verify = true;
    o->min_version = 2;
}

int mqtt_tls_config_new(const mqtt_tls_options *o, mqtt_tls_config **out, char *err, size_t errlen)
{
    (void)o;
    *out = NULL;
    snprintf(err, errlen, "TLS is not built");
    return MQTT_ERR_TLS;
}

mqtt_tls_config *mqtt_tls_config_ref(mqtt_tls_config *cfg)
{
    if (cfg)
        atomic_fetch_add(&cfg->refs, 1);
    return cfg;
}

void mqtt_tls_config_unref(mqtt_tls_config *cfg)
{
    if (cfg && atomic_fetch_sub(&cfg->refs, 1) == 1)
        free(cfg);
}
