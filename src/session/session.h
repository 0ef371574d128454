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

typedef enum mqtt_rec_kind { MQTT_REC_PUBLISH, MQTT_REC_SUBSCRIBE, MQTT_REC_UNSUBSCRIBE } mqtt_rec_kind;

typedef enum mqtt_rec_state {
    MQTT_REC_QUEUED,       /* never written on any connection */
    MQTT_REC_WAIT_PUBACK,  /* QoS 1 sent */
    MQTT_REC_WAIT_PUBREC,  /* QoS 2 sent */
    MQTT_REC_WAIT_PUBCOMP, /* QoS 2 PUBREC received, PUBREL sent */
    MQTT_REC_WAIT_SUBACK,
    MQTT_REC_WAIT_UNSUBACK
} mqtt_rec_state;

/** An outgoing packet kept until it is complete. Allocated with mqtt__record_new. */
typedef struct mqtt_record {
    struct mqtt_record *prev, *next; /* session order = publish order */
    struct mqtt_record *id_next;     /* the next record given the same id (ids ran out) */
    uint16_t packet_id;              /* 0 for QoS 0 */
    uint16_t filters;                /* SUBSCRIBE: how many filters (return codes expected) */
    uint8_t qos;
    uint8_t kind;                    /* mqtt_rec_kind */
    uint8_t state;                   /* mqtt_rec_state */
    size_t id_offset;                /* where the packet id sits in packet[] (0: none) */
    size_t len;
    uint8_t packet[];                /* the encoded packet, packet id filled by the session */
} mqtt_record;

/** A record able to hold len packet bytes; NULL on out of memory. */
MQTT_HIDDEN mqtt_record *mqtt__record_new(mqtt_rec_kind kind, uint8_t qos, size_t len,
                                          size_t id_offset);
MQTT_HIDDEN void mqtt__record_free(mqtt_record *r);

typedef struct mqtt_session_limits {
    uint32_t max_inflight;   /* QoS 1/2 publishes awaiting completion; 0 means 1 */
    uint32_t max_queued;     /* records never sent yet */
    size_t max_queued_bytes; /* packet bytes held by all records */
} mqtt_session_limits;

typedef struct mqtt_session mqtt_session;

/** NULL on out of memory. */
MQTT_HIDDEN mqtt_session *mqtt__session_new(const mqtt_session_limits *l);
/** Frees every record; incoming items are passed to free_item (may be NULL). */
MQTT_HIDDEN void mqtt__session_free(mqtt_session *s, void (*free_item)(void *));

/**
 * Takes ownership of r on MQTT_OK: allocates a packet id when the record
 * needs one (publish QoS > 0, subscribe, unsubscribe), writes it big-endian
 * at r->id_offset, appends r in state QUEUED. When every id 1..65535 is held,
 * r shares the next id in turn with the records holding it and is sent only
 * once they are complete: only the queue limits refuse a record. On error r
 * stays the caller's: MQTT_ERR_QUEUE_FULL (max_queued or max_queued_bytes
 * would be exceeded), MQTT_ERR_NOMEM.
 */
MQTT_HIDDEN int mqtt__session_add(mqtt_session *s, mqtt_record *r);

/**
 * A message id for a QoS 0 publish, from the same sequence as packet ids but
 * not reserved (a QoS 0 PUBLISH carries no id): not 0, not one in use now.
 */
MQTT_HIDDEN uint16_t mqtt__session_take_id(mqtt_session *s);

/**
 * The next packet to write on the current connection, in session order:
 * a QUEUED record (a QoS 1/2 publish only while the window has room, a
 * record sharing an id only once the records before it with that id are
 * complete), or,
 * after a rewind, the resend of an in-flight record: its PUBLISH with DUP
 * set, its PUBREL (written into scratch) or its SUBSCRIBE/UNSUBSCRIBE.
 * Returns false when nothing may be sent now. *out stays valid until the
 * next call into the session.
 */
MQTT_HIDDEN bool mqtt__session_next(mqtt_session *s, mqtt_bytes *out, uint8_t scratch[4]);
/** Confirms the packet returned by the last next(): QoS 0 records are freed, others wait. */
MQTT_HIDDEN void mqtt__session_sent(mqtt_session *s);

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

/** After a connection loss: every in-flight record is to be resent, in order. */
MQTT_HIDDEN void mqtt__session_rewind(mqtt_session *s);

/** The sent record that awaits an ack for id (NULL: none); valid until the next call. */
MQTT_HIDDEN const mqtt_record *mqtt__session_awaiting(const mqtt_session *s, uint16_t id);

/** True while a QoS 1/2 publish, subscribe or unsubscribe holds id (queued or in flight). */
MQTT_HIDDEN bool mqtt__session_out_has(const mqtt_session *s, uint16_t id);

/** Incoming QoS 2: true when id is held awaiting PUBREL. */
MQTT_HIDDEN bool mqtt__session_in_has(const mqtt_session *s, uint16_t id);
/** Holds item for id (id must not be held already). MQTT_OK or MQTT_ERR_NOMEM. */
MQTT_HIDDEN int mqtt__session_in_put(mqtt_session *s, uint16_t id, void *item);
/** Removes and returns the item for id, or NULL. */
MQTT_HIDDEN void *mqtt__session_in_take(mqtt_session *s, uint16_t id);
/**
 * Hands every held item other than mark to fn, oldest first, and holds mark
 * for its id instead (the id stays known until its PUBREL). MQTT_OK, or
 * MQTT_ERR_NOMEM with nothing changed.
 */
MQTT_HIDDEN int mqtt__session_in_replace(mqtt_session *s, void *mark,
                                         void (*fn)(void *item, void *ud), void *ud);
/** Removes every held item, oldest first, handing each to fn. */
MQTT_HIDDEN void mqtt__session_in_drain(mqtt_session *s, void (*fn)(void *item, void *ud), void *ud);

typedef struct mqtt_session_counts {
    size_t queued;    /* records in state QUEUED */
    size_t inflight;  /* QoS 1/2 publishes in WAIT_PUBACK/PUBREC/PUBCOMP */
    size_t records;   /* all records */
    size_t bytes;     /* packet bytes of all records */
    size_t incoming;  /* QoS 2 items held */
} mqtt_session_counts;

MQTT_HIDDEN void mqtt__session_counts(const mqtt_session *s, mqtt_session_counts *c);

#endif
