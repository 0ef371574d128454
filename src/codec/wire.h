/*
 * Codec-private wire primitives: a bounded reader over a packet body and a
 * writer that either writes or, with no buffer, only counts, so each encoder
 * has one body function for both its size twin and itself. Header-only, and
 * private to src/codec.
 */
#ifndef MQTT_CODEC_WIRE_H
#define MQTT_CODEC_WIRE_H

#include <string.h>

#include "codec.h"

#define MQTT__MAX_STRING 65535u
/* The varint holds at most 4 bytes of 7 bits each. */
#define VARINT_MAX_BYTES 4u
/* Inlined where the receive path calls it, so constants fold into it. */
#define MQTT__INLINE static inline __attribute__((always_inline))

/* ---- varints and the fixed header (the bodies of header.c's functions) ---- */

MQTT__INLINE int mqtt__varint_decode_inline(const uint8_t *b, size_t n, uint32_t *v, size_t *used)
{
    uint32_t value = 0;
    for (size_t i = 0; i < VARINT_MAX_BYTES; i++) {
        if (i >= n) {
            *used = n;
            return MQTT_ERR_INCOMPLETE;
        }
        value |= (uint32_t)(b[i] & 0x7Fu) << (7u * i);
        if ((b[i] & 0x80u) == 0) {
            *v = value;
            *used = i + 1;
            return MQTT_OK;
        }
    }
    return MQTT_ERR_MALFORMED;
}

/*
 * Non-minimal encodings (0x80 0x00 for 0) are accepted as the 3.1.1 text
 * does not forbid them; a continuation bit on the 4th varint byte is
 * malformed, and is reported without waiting for a 5th byte.
 */
MQTT__INLINE int mqtt__fixed_header_inline(const uint8_t *buf, size_t len,
                                           mqtt_fixed_header *h, size_t *need, const char **why)
{
    uint32_t value = 0;
    size_t used = 0;
    int rc;
    if ((buf == NULL && len > 0) || h == NULL) {
        if (why != NULL) {
            *why = "invalid argument";
        }
        return MQTT_ERR_INVAL;
    }
    rc = MQTT_ERR_INCOMPLETE;
    if (len > 0)
        rc = mqtt__varint_decode_inline(buf + 1, len - 1, &value, &used);
    if (rc == MQTT_OK) {
        h->type = (uint8_t)(buf[0] & 0xF0u);
        h->flags = (uint8_t)(buf[0] & 0x0Fu);
        h->remaining = value;
        h->header_len = used + 1;
    } else if (rc == MQTT_ERR_INCOMPLETE && need != NULL) {
        *need = used + 2;
    } else if (rc == MQTT_ERR_MALFORMED && why != NULL) {
        *why = "remaining length over 4 bytes";
    }
    return rc;
}

/* ---- reader ----------------------------------------------------------- */

typedef struct mqtt_reader {
    const uint8_t *b;
    size_t n, pos;
} mqtt_reader;

static inline size_t r_left(const mqtt_reader *r)
{
    return r->n - r->pos;
}

static inline bool r_u8(mqtt_reader *r, uint8_t *v)
{
    if (r_left(r) < 1)
        return false;
    *v = r->b[r->pos++];
    return true;
}

static inline bool r_u16(mqtt_reader *r, uint16_t *v)
{
    if (r_left(r) < 2)
        return false;
    *v = (uint16_t)((unsigned)r->b[r->pos] << 8 | r->b[r->pos + 1]);
    r->pos += 2;
    return true;
}

static inline bool r_u32(mqtt_reader *r, uint32_t *v)
{
    const uint8_t *p = r->b + r->pos;
    if (r_left(r) < 4)
        return false;
    *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    r->pos += 4;
    return true;
}

/* A varint inside a body: INCOMPLETE there means it runs past the packet. */
static inline int r_varint(mqtt_reader *r, uint32_t *v)
{
    size_t used = 0;
    int rc = mqtt__varint_decode_inline(r->b + r->pos, r_left(r), v, &used);
    if (rc == MQTT_OK)
        r->pos += used;
    return rc;
}

/* A two-byte length and that many bytes. */
static inline bool r_bytes(mqtt_reader *r, mqtt_bytes *s)
{
    uint16_t len;
    if (!r_u16(r, &len) || r_left(r) < len) {
        return false;
    }
    s->data = r->b + r->pos;
    s->len = len;
    r->pos += len;
    return true;
}

/* ---- writer ----------------------------------------------------------- */

/* p NULL: count only. ok turns false on anything that cannot be encoded. */
typedef struct mqtt_writer {
    uint8_t *p;
    size_t n;
    bool ok;
} mqtt_writer;

MQTT__INLINE void w_u8(mqtt_writer *w, unsigned v)
{
    if (w->p != NULL)
        w->p[w->n] = (uint8_t)(v & 0xFFu);
    w->n++;
}

MQTT__INLINE void w_u16(mqtt_writer *w, unsigned v)
{
    w_u8(w, v >> 8);
    w_u8(w, v);
}

MQTT__INLINE void w_u32(mqtt_writer *w, uint32_t v)
{
    w_u16(w, v >> 16);
    w_u16(w, v & 0xFFFFu);
}

MQTT__INLINE void w_varint(mqtt_writer *w, size_t v)
{
    if (v > MQTT_MAX_REMAINING) {
        w->ok = false;
        return;
    }
    if (w->p != NULL)
        w->n += mqtt__varint_encode(w->p + w->n, (uint32_t)v);
    else
        w->n += mqtt__varint_size((uint32_t)v);
}

MQTT__INLINE void w_raw(mqtt_writer *w, const uint8_t *data, size_t len)
{
    if (data == NULL && len > 0) {
        w->ok = false;
        return;
    }
    if (w->p != NULL && len > 0)
        memcpy(w->p + w->n, data, len);
    w->n += len;
}

/* A length-prefixed string or binary; data NULL is written as "". */
MQTT__INLINE void w_bytes(mqtt_writer *w, const uint8_t *data, size_t len)
{
    if (data == NULL)
        len = 0;
    if (len > MQTT__MAX_STRING) {
        w->ok = false;
        return;
    }
    w_u16(w, (unsigned)len);
    w_raw(w, data, len);
}

MQTT__INLINE void w_string(mqtt_writer *w, mqtt_bytes s)
{
    w_bytes(w, s.data, s.len);
}

/** Writes a property block (its varint length first) for a packet type; w->ok
 *  false when a property cannot go out there. Defined in props.c. */
MQTT_HIDDEN void mqtt__w_props(mqtt_writer *w, const mqtt_property *p, size_t n,
                               uint8_t packet_type);
/** Reads a property block's length and validates it; *props is the block. */
MQTT_HIDDEN int mqtt__r_props(mqtt_reader *r, uint8_t packet_type, mqtt_bytes *props,
                              const char **why);

/* ---- packet bodies decoded in decode_broker.c (what a client sends) --------- */

/** Sets *why, returns status: the one shape of every decoding failure. */
static inline int mqtt__fail(int status, const char *what, const char **why)
{
    *why = what;
    return status;
}

static inline int mqtt__check_end(const mqtt_reader *r, const char **why)
{
    if (r_left(r) == 0)
        return MQTT_OK;
    return mqtt__fail(MQTT_ERR_MALFORMED, "bytes after the packet's end", why);
}

/** A SUBACK or UNSUBACK code: 5.0 by the reason table, 3.1.1 SUBACK 0, 1, 2, 0x80. */
static inline bool mqtt__code_ok(uint8_t code, uint8_t type, bool v5)
{
    if (v5)
        return mqtt__reason_valid(code, type);
    return type == MQTT_SUBACK && (code <= 2 || code == 0x80u);
}

/** CONNECT body; sets pkt->version from the packet's protocol level. */
MQTT_HIDDEN int mqtt__decode_connect(mqtt_reader *r, mqtt_packet *pkt, const char **why);
/** SUBSCRIBE or UNSUBSCRIBE body (pkt->type says which) under pkt->version. */
MQTT_HIDDEN int mqtt__decode_sub(mqtt_reader *r, mqtt_packet *pkt, const char **why);

#endif
