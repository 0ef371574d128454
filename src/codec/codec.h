/*
 * MQTT codec, protocol levels 4 (3.1.1) and 5 (5.0): encodes and decodes all
 * fifteen packet types in both directions (what a client sends and what a
 * broker sends), properties included. Pure functions over byte buffers: no
 * I/O, no clock, no allocation. Decoded strings are views into the input.
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

/* ---- properties (MQTT 5.0) ------------------------------------------- */

/** The table row of a property identifier; NULL when unknown. O(1). */
MQTT_HIDDEN const mqtt_property_info *mqtt__prop_info(uint32_t id);
/** The reason code may be carried by that packet type (MQTT 5.0 section 2.4). */
MQTT_HIDDEN bool mqtt__reason_valid(uint8_t code, uint8_t packet_type);

/**
 * Validates a property block (the bytes after its length) for a packet type
 * (or MQTT_WILL_PROPERTIES): known identifiers allowed in that packet, values
 * that fit and are in range, strings valid UTF-8, no property twice unless
 * the table lets it repeat there. MQTT_OK, MQTT_ERR_MALFORMED or
 * MQTT_ERR_PROTOCOL with *why.
 */
MQTT_HIDDEN int mqtt__props_check(const uint8_t *b, size_t len, uint8_t packet_type,
                                  const char **why);

/**
 * Checks a caller's property array for a packet type as the encoder would
 * (known, allowed there, in range, valid UTF-8, no forbidden repeat).
 * MQTT_OK, or an error with *bad the index of the first offending property
 * and *why what is wrong with it.
 */
MQTT_HIDDEN int mqtt__props_validate(const mqtt_property *p, size_t n, uint8_t packet_type,
                                     size_t *bad, const char **why);

/** Walks a validated property block (data NULL: none); no allocation. */
typedef struct mqtt_prop_iter {
    const uint8_t *p, *end;
} mqtt_prop_iter;

MQTT_HIDDEN void mqtt__prop_iter_init(mqtt_prop_iter *it, mqtt_bytes props);
/** The next property in wire order; false at the end. */
MQTT_HIDDEN bool mqtt__prop_next(mqtt_prop_iter *it, mqtt_property *prop);
/** The first property with that identifier; false when absent. */
MQTT_HIDDEN bool mqtt__prop_find(mqtt_bytes props, uint8_t id, mqtt_property *prop);

/** Writes a checked property array as a block without its length (ascending
 *  identifiers, user_property last), the form records and events keep; out
 *  NULL: only the size. Returns its size. */
MQTT_HIDDEN size_t mqtt__props_encode(uint8_t *out, const mqtt_property *p, size_t n);
/** Fills out[0..max) from a validated block; returns how many it holds (may be
 *  more than max: then only max were written). */
MQTT_HIDDEN size_t mqtt__props_unpack(mqtt_bytes block, mqtt_property *out, size_t max);

/* ---- decoding -------------------------------------------------------- */

/* The 5.0 subscription options byte beyond its QoS (MQTT 5.0 section 3.8.3.1). */
#define MQTT_SUB_QOS(o) ((uint8_t)((o) & 0x03u))
#define MQTT_SUB_NO_LOCAL 0x04u
#define MQTT_SUB_RETAIN_AS_PUBLISHED 0x08u
#define MQTT_SUB_RETAIN_HANDLING(o) ((uint8_t)(((o) >> 4) & 0x03u))

/** One (UN)SUBSCRIBE entry; options is ignored by UNSUBSCRIBE. */
typedef struct mqtt_sub_entry {
    mqtt_bytes filter;
    /* The options byte as on the wire: the QoS in bits 0-1 and, under 5.0,
     * MQTT_SUB_NO_LOCAL, MQTT_SUB_RETAIN_AS_PUBLISHED and retain handling in
     * bits 4-5. Under 3.1.1 it is the QoS alone, hence its name. */
    uint8_t qos;
} mqtt_sub_entry;

typedef struct mqtt_connect_params {
    mqtt_bytes client_id;  /* data may be NULL for "" */
    uint16_t keepalive;
    bool clean_session;    /* Clean Start under 5.0 */
    bool will;             /* will_topic/will_payload/will_qos/will_retain valid */
    mqtt_bytes will_topic;
    mqtt_bytes will_payload; /* may be empty */
    uint8_t will_qos;
    bool will_retain;
    mqtt_bytes username;   /* data == NULL: no username (and, under 3.1.1, no password) */
    mqtt_bytes password;   /* data == NULL: no password */
    /* 5.0; zero for 3.1.1 */
    uint8_t version;       /* MQTT_V311 (also when 0) or MQTT_V5 */
    const mqtt_property *props, *will_props; /* encoding only */
    size_t nprops, will_nprops;
} mqtt_connect_params;

/**
 * A decoded packet; pointers refer into the input buffer. Fields a packet
 * does not have are zero, except the last three (entries, will_props,
 * connect): they are set only for the packets that have them, so the receive
 * path clears only what comes before them.
 */
typedef struct mqtt_packet {
    uint8_t type;          /* MQTT_CONNACK, MQTT_PUBLISH, ... */
    uint8_t flags;
    uint16_t packet_id;    /* PUBLISH qos>0, acks, (UN)SUBSCRIBE, SUBACK, UNSUBACK */
    /* CONNACK */
    bool session_present;
    uint8_t return_code;   /* 3.1.1 return code or 5.0 reason code */
    /* PUBLISH */
    uint8_t qos;
    bool retain, dup;
    mqtt_bytes topic;      /* 5.0: may be empty when a topic_alias is given */
    mqtt_bytes payload;    /* data may be non-NULL with len 0 */
    /* SUBACK (and 5.0 UNSUBACK): one return/reason code per byte */
    mqtt_bytes granted;
    /* 5.0 */
    uint8_t version;       /* the protocol level it was decoded under */
    uint8_t reason_code;   /* acks, CONNACK, DISCONNECT, AUTH; 0 when absent */
    mqtt_bytes props;      /* validated property block; data NULL when none */
    /* set only for the packets named */
    mqtt_bytes entries;    /* (UN)SUBSCRIBE: the validated list, for mqtt__sub_next */
    mqtt_bytes will_props; /* CONNECT (5.0, with a will) */
    mqtt_connect_params connect; /* CONNECT */
} mqtt_packet;

/** Who decodes: what a client may receive differs from what a broker may. */
typedef enum mqtt_role { MQTT_ROLE_CLIENT = 0, MQTT_ROLE_BROKER = 1 } mqtt_role;

typedef struct mqtt_decode_opts {
    uint8_t version;       /* MQTT_V311 or MQTT_V5; a broker's CONNECT says its own */
    mqtt_role role;        /* CLIENT decodes what a broker sends, BROKER what a client sends */
    size_t max_packet;     /* 0: no limit */
} mqtt_decode_opts;

/**
 * Decodes one complete packet from the start of buf.
 * MQTT_OK: *pkt filled, *consumed = its total size.
 * MQTT_ERR_INCOMPLETE: *consumed = total bytes needed so far (at least len+1).
 * MQTT_ERR_MALFORMED / MQTT_ERR_PROTOCOL: *why says what is wrong.
 * Packets larger than max_packet bytes in all are MQTT_ERR_TOO_LARGE, judged
 * from the fixed header alone.
 * Rejects: remaining length over 4 bytes, lengths past the packet, reserved
 * packet types and types the role never receives, wrong flags, QoS 3, DUP on
 * QoS 0, packet id 0, bad CONNACK flags or codes, reason codes the packet may
 * not carry, bad properties (mqtt__props_check), bad subscription options,
 * empty or wildcarded or non-UTF-8 topic names, invalid filters.
 */
MQTT_HIDDEN int mqtt__decode(const uint8_t *buf, size_t len, const mqtt_decode_opts *o,
                             mqtt_packet *pkt, size_t *consumed, const char **why);

/** mqtt__decode of what a 3.1.1 broker sends (the client's receive path). */
MQTT_HIDDEN int mqtt__decode_packet(const uint8_t *buf, size_t len, size_t max_packet,
                                    mqtt_packet *pkt, size_t *consumed, const char **why);

/** Walks the entries of a decoded (UN)SUBSCRIBE. */
typedef struct mqtt_sub_iter {
    const uint8_t *p, *end;
    bool options;          /* SUBSCRIBE: an options byte follows each filter */
} mqtt_sub_iter;

MQTT_HIDDEN void mqtt__sub_iter_init(mqtt_sub_iter *it, const mqtt_packet *pkt);
MQTT_HIDDEN bool mqtt__sub_next(mqtt_sub_iter *it, mqtt_sub_entry *e);

/* ---- encoding -------------------------------------------------------- */
/* Each encoder writes a whole packet and returns its size; its *_size twin
 * returns the same size (0 when the packet cannot be encoded: a field over
 * 65535 bytes, a remaining length over MQTT_MAX_REMAINING, a value out of
 * range, a property unknown, out of range, repeated or not allowed in the
 * packet). Properties go out in ascending identifier order, user_property
 * pairs last, in the order given. Under 3.1.1 properties must be absent. */

MQTT_HIDDEN size_t mqtt__connect_size(const mqtt_connect_params *p);
MQTT_HIDDEN size_t mqtt__encode_connect(uint8_t *out, const mqtt_connect_params *p);

typedef struct mqtt_publish_params {
    mqtt_bytes topic;      /* may be empty under 5.0 with a topic_alias */
    mqtt_bytes payload;
    uint8_t qos;
    bool retain, dup;      /* dup is dropped on QoS 0 (MQTT-3.3.1-2) */
    uint16_t packet_id;    /* QoS 1 and 2 */
    const mqtt_property *props;
    size_t nprops;
} mqtt_publish_params;

MQTT_HIDDEN size_t mqtt__publish_size_v(uint8_t version, const mqtt_publish_params *p);
MQTT_HIDDEN size_t mqtt__encode_publish_v(uint8_t *out, uint8_t version,
                                          const mqtt_publish_params *p);

/** The 3.1.1 PUBLISH the client sends. */
MQTT_HIDDEN size_t mqtt__publish_size(size_t topic_len, size_t payload_len, uint8_t qos);
MQTT_HIDDEN size_t mqtt__encode_publish(uint8_t *out, const uint8_t *topic, size_t topic_len,
                                        const uint8_t *payload, size_t payload_len, uint8_t qos,
                                        bool retain, bool dup, uint16_t packet_id);

/**
 * A packet made of an optional packet id, a reason code and properties:
 * PUBACK, PUBREC, PUBREL (flags 0x2 added), PUBCOMP, DISCONNECT, AUTH,
 * PINGREQ, PINGRESP. Under 5.0 the short forms are used: no reason code and
 * no property length for a success without properties (not for AUTH with
 * properties), the reason code alone when there are no properties.
 */
typedef struct mqtt_ack_params {
    uint8_t type;
    uint16_t packet_id;    /* the QoS acks */
    uint8_t reason_code;
    const mqtt_property *props;
    size_t nprops;
} mqtt_ack_params;

MQTT_HIDDEN size_t mqtt__ack_size_v(uint8_t version, const mqtt_ack_params *p);
MQTT_HIDDEN size_t mqtt__encode_ack_v(uint8_t *out, uint8_t version, const mqtt_ack_params *p);

/** PUBACK, PUBREC, PUBREL (flags 0x2 added) or PUBCOMP under 3.1.1: always 4 bytes. */
MQTT_HIDDEN size_t mqtt__encode_ack(uint8_t out[4], uint8_t type, uint16_t packet_id);
/** PINGREQ or DISCONNECT under 3.1.1 (or PINGRESP): always 2 bytes. */
MQTT_HIDDEN size_t mqtt__encode_empty(uint8_t out[2], uint8_t type);

/** SUBSCRIBE or UNSUBSCRIBE. */
typedef struct mqtt_sub_params {
    uint16_t packet_id;
    const mqtt_sub_entry *e;
    size_t n;              /* at least 1 */
    const mqtt_property *props;
    size_t nprops;
} mqtt_sub_params;

MQTT_HIDDEN size_t mqtt__sub_size_v(uint8_t version, uint8_t type, const mqtt_sub_params *p);
MQTT_HIDDEN size_t mqtt__encode_sub_v(uint8_t *out, uint8_t version, uint8_t type,
                                      const mqtt_sub_params *p);

MQTT_HIDDEN size_t mqtt__subscribe_size(const mqtt_sub_entry *e, size_t n);
MQTT_HIDDEN size_t mqtt__encode_subscribe(uint8_t *out, uint16_t packet_id, const mqtt_sub_entry *e,
                                          size_t n);
MQTT_HIDDEN size_t mqtt__unsubscribe_size(const mqtt_sub_entry *e, size_t n);
MQTT_HIDDEN size_t mqtt__encode_unsubscribe(uint8_t *out, uint16_t packet_id,
                                            const mqtt_sub_entry *e, size_t n);

/** What a broker sends: CONNACK, SUBACK and UNSUBACK (5.0, or SUBACK under 3.1.1). */
typedef struct mqtt_reply_params {
    uint8_t type;          /* MQTT_CONNACK, MQTT_SUBACK or MQTT_UNSUBACK */
    uint16_t packet_id;    /* SUBACK, UNSUBACK */
    bool session_present;  /* CONNACK */
    uint8_t reason_code;   /* CONNACK: 3.1.1 return code or 5.0 reason code */
    const mqtt_property *props;
    size_t nprops;
    mqtt_bytes codes;      /* SUBACK, UNSUBACK: one code per byte */
} mqtt_reply_params;

/** Used by the broker role (tests, fake brokers); a client never sends these. */
MQTT_HIDDEN size_t mqtt__reply_size_v(uint8_t version, const mqtt_reply_params *p);
MQTT_HIDDEN size_t mqtt__encode_reply_v(uint8_t *out, uint8_t version,
                                        const mqtt_reply_params *p);

#endif
