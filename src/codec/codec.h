/*
 * MQTT 3.1.1 codec: encodes what a client sends, decodes and validates what a
 * broker sends. Pure functions over byte buffers: no I/O, no clock, no
 * allocation. Decoded strings are views into the input buffer.
 */
#ifndef MQTT_CODEC_H
#define MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* ---- validation ------------------------------------------------------ */

/** Well-formed UTF-8 (RFC 3629, no surrogates, no overlongs) without U+0000. */
MQTT_HIDDEN bool mqtt__utf8_valid(const uint8_t *s, size_t len);
/** Topic name for PUBLISH: 1..65535 bytes, valid UTF-8, no '+' or '#'. */
MQTT_HIDDEN int mqtt__check_topic_name(const uint8_t *s, size_t len, const char **why);
/** Topic filter: 1..65535 bytes, valid UTF-8, '#' last and alone, '+' alone in its level. */
MQTT_HIDDEN int mqtt__check_topic_filter(const uint8_t *s, size_t len, const char **why);
/** Filter/topic matching with the '$' rule of MQTT 3.1.1 section 4.7.2. */
MQTT_HIDDEN bool mqtt__topic_match(const uint8_t *filter, size_t flen, const uint8_t *topic,
                                   size_t tlen);

/* ---- fixed header ---------------------------------------------------- */

/** Bytes the varint encoding of v takes (1..4); 0 when v > MQTT_MAX_REMAINING. */
MQTT_HIDDEN size_t mqtt__varint_size(uint32_t v);
/** Writes the varint; returns its size. out must hold mqtt__varint_size(v) bytes. */
MQTT_HIDDEN size_t mqtt__varint_encode(uint8_t *out, uint32_t v);

typedef struct mqtt_fixed_header {
    uint8_t type;         /* high nibble, e.g. MQTT_PUBLISH */
    uint8_t flags;        /* low nibble */
    uint32_t remaining;   /* remaining length */
    size_t header_len;    /* 2..5 */
} mqtt_fixed_header;

/**
 * Decodes a fixed header. MQTT_OK, MQTT_ERR_INCOMPLETE (need at least *need
 * bytes in all, when need is not NULL), or MQTT_ERR_MALFORMED (*why says).
 */
MQTT_HIDDEN int mqtt__decode_fixed_header(const uint8_t *buf, size_t len, mqtt_fixed_header *h,
                                          size_t *need, const char **why);

/* ---- decoding what a broker sends ------------------------------------ */

/** A decoded packet from the broker; pointers refer into the input buffer. */
typedef struct mqtt_packet {
    uint8_t type;          /* MQTT_CONNACK, MQTT_PUBLISH, ... */
    uint8_t flags;
    uint16_t packet_id;    /* PUBLISH qos>0, acks, SUBACK, UNSUBACK */
    /* CONNACK */
    bool session_present;
    uint8_t return_code;
    /* PUBLISH */
    uint8_t qos;
    bool retain, dup;
    mqtt_bytes topic;
    mqtt_bytes payload;    /* data may be non-NULL with len 0 */
    /* SUBACK */
    mqtt_bytes granted;    /* one return code per byte */
} mqtt_packet;

/**
 * Decodes one complete packet from the start of buf.
 * MQTT_OK: *pkt filled, *consumed = its total size.
 * MQTT_ERR_INCOMPLETE: *consumed = total bytes needed so far (at least len+1).
 * MQTT_ERR_MALFORMED / MQTT_ERR_PROTOCOL: *why says what is wrong.
 * Packets larger than max_packet bytes in all are MQTT_ERR_TOO_LARGE, judged
 * from the fixed header alone.
 * Rejects: remaining length over 4 bytes, lengths past the packet, reserved
 * packet types and types a client never receives, wrong flags, QoS 3, DUP on
 * QoS 0, packet id 0, bad CONNACK flags or codes > 5, SUBACK codes other than
 * 0, 1, 2 and 0x80, empty or wildcarded or non-UTF-8 topic names.
 */
MQTT_HIDDEN int mqtt__decode_packet(const uint8_t *buf, size_t len, size_t max_packet,
                                    mqtt_packet *pkt, size_t *consumed, const char **why);

/* ---- encoding what a client sends ------------------------------------ */
/* Each encoder writes a whole packet and returns its size; its *_size twin
 * returns the same size (0 when the packet cannot be encoded: a field over
 * 65535 bytes or a remaining length over MQTT_MAX_REMAINING). */

typedef struct mqtt_connect_params {
    mqtt_bytes client_id;  /* data may be NULL for "" */
    uint16_t keepalive;
    bool clean_session;
    bool will;             /* will_topic/will_payload/will_qos/will_retain valid */
    mqtt_bytes will_topic;
    mqtt_bytes will_payload; /* may be empty */
    uint8_t will_qos;
    bool will_retain;
    mqtt_bytes username;   /* data == NULL: no username (and then no password) */
    mqtt_bytes password;   /* data == NULL: no password */
} mqtt_connect_params;

MQTT_HIDDEN size_t mqtt__connect_size(const mqtt_connect_params *p);
MQTT_HIDDEN size_t mqtt__encode_connect(uint8_t *out, const mqtt_connect_params *p);

MQTT_HIDDEN size_t mqtt__publish_size(size_t topic_len, size_t payload_len, uint8_t qos);
MQTT_HIDDEN size_t mqtt__encode_publish(uint8_t *out, const uint8_t *topic, size_t topic_len,
                                        const uint8_t *payload, size_t payload_len, uint8_t qos,
                                        bool retain, bool dup, uint16_t packet_id);

/** PUBACK, PUBREC, PUBREL (flags 0x2 added) or PUBCOMP: always 4 bytes. */
MQTT_HIDDEN size_t mqtt__encode_ack(uint8_t out[4], uint8_t type, uint16_t packet_id);
/** PINGREQ or DISCONNECT: always 2 bytes. */
MQTT_HIDDEN size_t mqtt__encode_empty(uint8_t out[2], uint8_t type);

typedef struct mqtt_sub_entry {
    mqtt_bytes filter;
    uint8_t qos;           /* ignored by UNSUBSCRIBE */
} mqtt_sub_entry;

MQTT_HIDDEN size_t mqtt__subscribe_size(const mqtt_sub_entry *e, size_t n);
MQTT_HIDDEN size_t mqtt__encode_subscribe(uint8_t *out, uint16_t packet_id, const mqtt_sub_entry *e,
                                          size_t n);
MQTT_HIDDEN size_t mqtt__unsubscribe_size(const mqtt_sub_entry *e, size_t n);
MQTT_HIDDEN size_t mqtt__encode_unsubscribe(uint8_t *out, uint16_t packet_id,
                                            const mqtt_sub_entry *e, size_t n);

#endif
