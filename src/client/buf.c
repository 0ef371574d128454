/*
 * Growable byte buffers for the client's input and output. Growth doubles,
 * so appending many small packets costs amortised O(1) per byte.
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "client_internal.h"

int mqtt__buf_reserve(mqtt_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return MQTT_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2)
            return MQTT_ERR_NOMEM;
        cap *= 2;
    }
    uint8_t *p = mqtt__realloc(b->data, cap);
    if (!p)
        return MQTT_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return MQTT_OK;
}

int mqtt__buf_append(mqtt_buf *b, const void *p, size_t n)
{
    int rc = mqtt__buf_reserve(b, n);
    if (rc != MQTT_OK)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return MQTT_OK;
}

void mqtt__buf_consume(mqtt_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void mqtt__buf_free(mqtt_buf *b)
{
    mqtt__free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void mqtt__buf_trim(mqtt_buf *b, size_t cap)
{
    if (b->cap <= cap || b->len > cap)
        return;
    if (b->len == 0) {
        mqtt__buf_free(b);
        return;
    }
    uint8_t *p = mqtt__realloc(b->data, cap);
    if (!p)
        return; /* keeping the larger block is harmless */
    b->data = p;
    b->cap = cap;
}
