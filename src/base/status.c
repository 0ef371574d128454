/*
 * Status codes: the names and descriptions behind MQTT_STATUS_LIST, and the
 * names of CONNACK return codes. One table, so the two never drift apart.
 */
#include <stdarg.h>
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

int mqtt_api_version(void)
{
    return MQTT_API_VERSION;
}

/* Per thread too: why the last refused call in this thread was refused. */
static _Thread_local char refusal_text[256];
static _Thread_local int refusal_reason;

void mqtt__refusal_clear(void)
{
    refusal_text[0] = '\0';
    refusal_reason = 0;
}

void mqtt__refusal_reason(int reason)
{
    refusal_reason = reason;
}

int mqtt_last_reason(void)
{
    return refusal_reason;
}

int mqtt__refuse(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(refusal_text, sizeof refusal_text, fmt, ap);
    va_end(ap);
    return status;
}

const char *mqtt_last_error(void)
{
    return refusal_text;
}

int mqtt__struct_read(void *dst, size_t dst_size, const void *src, size_t min_size,
                      const char *what)
{
    size_t size = 0;
    if (src)
        memcpy(&size, src, sizeof size);
    if (!src || size < min_size || size > dst_size)
        return mqtt__refuse(MQTT_ERR_INVAL,
                            "%s: struct_size %zu is not a size this library knows (%zu to %zu);"
                            " fill it with its init macro",
                            what, size, min_size, dst_size);
    memcpy(dst, src, size);
    memcpy(dst, &dst_size, sizeof dst_size);
    return MQTT_OK;
}

int mqtt__struct_init(void *o, size_t size, const void *defaults, size_t full_size,
                      size_t min_size)
{
    if (!o || size < min_size || size > full_size)
        return MQTT_ERR_INVAL;
    memcpy(o, defaults, size);
    memcpy(o, &size, sizeof size);
    return MQTT_OK;
}
