/*
 * MQTT session state that outlives a connection: packet ids, outgoing
 * records (queued, in flight, awaiting which ack), resend after reconnect,
 * the in-flight window and offline queue limits, and incoming QoS 2 messages
 * held until PUBREL. Deterministic and single-threaded: the caller locks.
 */
#ifndef MQTT_SESSION_H
#define MQTT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "qos.h"

/**
 * An outgoing message kept until it is complete: what to send, not its
 * bytes; the I/O thread encodes it each time it writes it. One allocation,
 * small enough that a short message costs what its bytes did: the struct,
 * then inline the entries (SUBSCRIBE/UNSUBSCRIBE), the topic, the properties,
 * the filters' text and the payload; read them with the accessors below.
 */
typedef struct mqtt_record {
    struct mqtt_record *prev, *next; /* session order = publish order */
    struct mqtt_record *id_next;     /* the next record given the same id (ids ran out) */
    uint32_t bytes;                  /* its packet's size (3.1.1) plus props_len: counted
                                      * against max_queued_bytes */
    uint32_t payload_len;            /* PUBLISH */
    uint32_t props_len;              /* MQTT 5 properties, encoded, opaque here; 0 in 3.1.1 */
    uint16_t topic_len;              /* PUBLISH */
    uint16_t entry_count;            /* SUBSCRIBE/UNSUBSCRIBE: how many entries (>= 1) */
    uint16_t packet_id;              /* 0 for QoS 0; set by mqtt__session_add */
    uint8_t kind;                    /* mqtt_rec_kind */
    uint8_t qos;                     /* PUBLISH: 0..2 */
    uint8_t state;                   /* mqtt_qos_state */
    bool retain;                     /* PUBLISH */
    bool dup;                        /* PUBLISH: written before, the broker may have it */
    bool rewound;                    /* in flight, not written again on this connection */
} mqtt_record;

/** SUBSCRIBE/UNSUBSCRIBE: the entry_count filters (views into the record) and their QoS. */
static inline const mqtt_sub_entry *mqtt__record_entries(const mqtt_record *r)
{
    return (const mqtt_sub_entry *)(const void *)(r + 1);
}

/* Where the topic starts: after the entries. */
static inline const uint8_t *mqtt__record_text(const mqtt_record *r)
{
    return (const uint8_t *)(r + 1) + (size_t)r->entry_count * sizeof(mqtt_sub_entry);
}

/** PUBLISH: the topic name (len 0 for the others). */
static inline mqtt_bytes mqtt__record_topic(const mqtt_record *r)
{
    return (mqtt_bytes){ mqtt__record_text(r), r->topic_len };
}

/** The MQTT 5 property block, as given to the maker. */
static inline mqtt_bytes mqtt__record_props(const mqtt_record *r)
{
    return (mqtt_bytes){ mqtt__record_text(r) + r->topic_len, r->props_len };
}

/** PUBLISH: the payload. */
static inline mqtt_bytes mqtt__record_payload(const mqtt_record *r)
{
    return (mqtt_bytes){ mqtt__record_text(r) + r->topic_len + r->props_len, r->payload_len };
}

/**
 * A PUBLISH record holding copies of topic, payload and props (any may be
 * empty, data NULL). MQTT_OK with *out set (the caller's until
 * mqtt__session_add takes it), MQTT_ERR_INVAL when no such packet can exist
 * (qos > 2, a topic over 65535 bytes, too large), MQTT_ERR_NOMEM. Topic
 * validity (UTF-8, wildcards) is the caller's to check.
 */
MQTT_HIDDEN int mqtt__record_publish(mqtt_bytes topic, mqtt_bytes payload, uint8_t qos,
                                     bool retain, mqtt_bytes props, mqtt_record **out);
/**
 * A SUBSCRIBE or UNSUBSCRIBE record holding copies of n entries (1..65535)
 * and props. MQTT_OK, MQTT_ERR_INVAL (wrong kind, no entries, too large, a
 * QoS over 2), MQTT_ERR_NOMEM.
 */
MQTT_HIDDEN int mqtt__record_subscribe(mqtt_rec_kind kind, const mqtt_sub_entry *e, size_t n,
                                       mqtt_bytes props, mqtt_record **out);
MQTT_HIDDEN void mqtt__record_free(mqtt_record *r);

typedef struct mqtt_session_limits {
    uint32_t max_inflight;   /* QoS 1/2 publishes awaiting completion; 0 means 1 */
    uint32_t max_queued;     /* records never sent yet */
    size_t max_queued_bytes; /* packet bytes (mqtt_record.bytes) held by all records */
} mqtt_session_limits;

typedef struct mqtt_session mqtt_session;

/** NULL on out of memory. */
MQTT_HIDDEN mqtt_session *mqtt__session_new(const mqtt_session_limits *l);
/** Frees every record; incoming items are passed to free_item (may be NULL). */
MQTT_HIDDEN void mqtt__session_free(mqtt_session *s, void (*free_item)(void *));

/**
 * Takes ownership of r on MQTT_OK: allocates a packet id when the record
 * needs one (publish QoS > 0, subscribe, unsubscribe) into r->packet_id,
 * appends r in its queued state. When every id 1..65535 is held, r shares
 * the next id in turn with the records holding it and is sent only once they
 * are complete: only the queue limits refuse a record. On error r stays the
 * caller's: MQTT_ERR_INVAL (r was not made by mqtt__record_* or was changed
 * since), MQTT_ERR_QUEUE_FULL (max_queued or max_queued_bytes would be
 * exceeded), MQTT_ERR_NOMEM.
 */
MQTT_HIDDEN int mqtt__session_add(mqtt_session *s, mqtt_record *r);

/**
 * Takes ownership of r on MQTT_OK: a PUBLISH recovered from a store, with
 * its packet id, state (queued, or awaiting an ack: it goes out again as
 * after a reconnect) and dup flag, appended past the queue limits (they were
 * checked when it was published). MQTT_ERR_INVAL for a state its QoS cannot
 * be in or a missing id; MQTT_ERR_NOMEM.
 */
MQTT_HIDDEN int mqtt__session_restore(mqtt_session *s, mqtt_record *r);

/**
 * A message id for a QoS 0 publish, from the same sequence as packet ids but
 * not reserved (a QoS 0 PUBLISH carries no id): not 0, not one in use now.
 */
MQTT_HIDDEN uint16_t mqtt__session_take_id(mqtt_session *s);

/**
 * The next record to write on the current connection, in session order, and
 * in *action what to write for it (the QoS table's MQTT_QE_SEND cell):
 * MQTT_QA_SEND, its packet the first time (a QoS 1/2 publish only while the
 * window has room, a record sharing an id only once the records before it
 * with that id are complete); after a rewind MQTT_QA_RESEND, its packet
 * again (a PUBLISH with r->dup set), or MQTT_QA_PUBREL, a PUBREL for its id.
 * NULL when nothing may be sent now. The record stays valid until the next
 * call into the session; the caller encodes it and confirms with sent().
 */
MQTT_HIDDEN const mqtt_record *mqtt__session_next(mqtt_session *s, mqtt_qos_action *action);
/** Confirms the record returned by the last next(): QoS 0 records are freed, others wait. */
MQTT_HIDDEN void mqtt__session_sent(mqtt_session *s);

/** Instead of sent(): the record returned by the last next() for its first
 *  write is dropped unsent (MQTT 5.0 message expiry); its id is free again. */
MQTT_HIDDEN void mqtt__session_expire(mqtt_session *s);

typedef enum mqtt_ack_result {
    MQTT_ACK_NEW,       /* advanced a record: report it */
    MQTT_ACK_DOWNGRADED, /* PUBACK for a QoS 2 publish awaiting PUBREC: complete, at least once */
    MQTT_ACK_DUPLICATE, /* PUBREC for a record already awaiting PUBCOMP */
    MQTT_ACK_UNKNOWN    /* no record with that id awaits this ack */
} mqtt_ack_result;

/**
 * Applies PUBACK, PUBREC, PUBCOMP, SUBACK or UNSUBACK for id. PUBREC moves a
 * QoS 2 record to WAIT_PUBCOMP (the caller sends PUBREL for NEW, DUPLICATE and
 * UNKNOWN alike); the others complete and free the record. A PUBACK for a
 * QoS 2 record awaiting PUBREC (a broker that downgraded it to QoS 1)
 * completes it too, as MQTT_ACK_DOWNGRADED.
 */
MQTT_HIDDEN mqtt_ack_result mqtt__session_ack(mqtt_session *s, uint8_t type, uint16_t id);

/** A PUBREC refusing the QoS 2 publish with id (MQTT 5.0, code >= 0x80):
 *  the publish is over, MQTT_ACK_NEW, and no PUBREL follows. MQTT_ACK_UNKNOWN
 *  when no publish awaits that PUBREC. (A refusing PUBACK is a PUBACK.) */
MQTT_HIDDEN mqtt_ack_result mqtt__session_refused(mqtt_session *s, uint16_t id);

/** The in-flight window from now on: min(max_inflight, n); 0 restores max_inflight
 *  (MQTT 5.0's receive maximum). Records already in flight stay. */
MQTT_HIDDEN void mqtt__session_set_window(mqtt_session *s, uint32_t n);

/** After a connection loss: every in-flight record is to be resent, in order,
 *  publishes with DUP (MQTT_QE_RECONNECT). */
MQTT_HIDDEN void mqtt__session_rewind(mqtt_session *s);

/** The sent record that awaits an ack for id (NULL: none); valid until the next call. */
MQTT_HIDDEN const mqtt_record *mqtt__session_awaiting(const mqtt_session *s, uint16_t id);

/** True while a QoS 1/2 publish, subscribe or unsubscribe holds id (queued or in flight). */
MQTT_HIDDEN bool mqtt__session_out_has(const mqtt_session *s, uint16_t id);

/** Incoming QoS 2: true when id is held awaiting PUBREL. */
MQTT_HIDDEN bool mqtt__session_in_has(const mqtt_session *s, uint16_t id);
/** Holds item for id (id must not be held already). MQTT_OK or MQTT_ERR_NOMEM. */
MQTT_HIDDEN int mqtt__session_in_put(mqtt_session *s, uint16_t id, void *item);
/** At PUBREL: forgets id; returns its item when it is to be delivered now, NULL
 *  when the id was unknown or its item was handed over by in_replace already. */
MQTT_HIDDEN void *mqtt__session_in_take(mqtt_session *s, uint16_t id);
/**
 * Hands every held item not handed over yet to fn, oldest first, and holds
 * mark (not NULL) for its id instead (the id stays known until its PUBREL).
 * MQTT_OK, or MQTT_ERR_NOMEM with nothing changed.
 */
MQTT_HIDDEN int mqtt__session_in_replace(mqtt_session *s, void *mark,
                                         void (*fn)(void *item, void *ud), void *ud);
/** Forgets every held id, handing each item not handed over yet to fn, oldest first. */
MQTT_HIDDEN void mqtt__session_in_drain(mqtt_session *s, void (*fn)(void *item, void *ud), void *ud);

typedef struct mqtt_session_counts {
    size_t queued;    /* records never written (a queued state) */
    size_t inflight;  /* QoS 1/2 publishes in WAIT_PUBACK/PUBREC/PUBCOMP */
    size_t rewound;   /* of those, not written again since the last rewind */
    size_t records;   /* all records */
    size_t bytes;     /* mqtt_record.bytes of all records */
    size_t incoming;  /* QoS 2 items held */
} mqtt_session_counts;

MQTT_HIDDEN void mqtt__session_counts(const mqtt_session *s, mqtt_session_counts *c);

#endif
