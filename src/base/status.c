/*
 * Status codes: the names and descriptions behind MQTT_STATUS_LIST, and the
 * names of CONNACK return codes. One table, so the two never drift apart.
 */
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "mqtt.h"

#define NAME_ENTRY(e, name, text) name,
#define TEXT_ENTRY(e, name, text) text,
static const char *const status_names[] = {MQTT_STATUS_LIST(NAME_ENTRY)};
static const char *const status_texts[] = {MQTT_STATUS_LIST(TEXT_ENTRY)};

const char *mqtt_strerror(int status)
{
    if (status < 0 || status >= MQTT_STATUS_COUNT)
        return "unknown status";
    return status_texts[status];
}

const char *mqtt_errname(int status)
{
    if (status < 0 || status >= MQTT_STATUS_COUNT)
        return "unknown";
    return status_names[status];
}

const char *mqtt_connack_name(int return_code)
{
    static const char *const names[] = {
        "connection accepted",   "unacceptable protocol version", "identifier rejected",
        "server unavailable",    "bad user name or password",     "not authorized",
    };
    if (return_code < 0 || return_code > 5)
        return "unknown return code";
    return names[return_code];
}

/* Per thread, as errno is: a failure in one thread never shows in another. */
static _Thread_local char system_text[192];

int mqtt__system_failure(const char *call, int err)
{
    char eb[128];
    snprintf(system_text, sizeof system_text, "%s: %s", call, strerror_r(err, eb, sizeof eb));
    return MQTT_ERR_SYSTEM;
}

const char *mqtt_system_error(void)
{
    return system_text[0] ? system_text : mqtt_strerror(MQTT_ERR_SYSTEM);
}
