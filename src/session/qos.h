/*
 * The QoS rules as one pure transition table: for each state a packet flow
 * can be in and each event that can happen to it, the next state and what
 * the caller must do. Outgoing publishes, subscribes and unsubscribes and
 * incoming QoS 2 messages all live here; the session only follows it.
 */
#ifndef MQTT_QOS_H
#define MQTT_QOS_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"

/** What an outgoing record carries. */
typedef enum mqtt_rec_kind { MQTT_REC_PUBLISH, MQTT_REC_SUBSCRIBE, MQTT_REC_UNSUBSCRIBE } mqtt_rec_kind;

typedef enum mqtt_qos_state {
    MQTT_QS_NONE,         /* nothing held: complete, or an incoming id not known */
    MQTT_QS_QUEUED0,      /* a QoS 0 PUBLISH never written on any connection (QUEUED0..2 in
                           * QoS order: mqtt__qos_initial counts on it) */
    MQTT_QS_QUEUED1,      /* a QoS 1 PUBLISH never written */
    MQTT_QS_QUEUED2,      /* a QoS 2 PUBLISH never written */
    MQTT_QS_QUEUED_SUB,   /* a SUBSCRIBE never written */
    MQTT_QS_QUEUED_UNSUB, /* an UNSUBSCRIBE never written */
    MQTT_QS_WAIT_PUBACK,  /* QoS 1 written */
    MQTT_QS_WAIT_PUBREC,  /* QoS 2 written */
    MQTT_QS_WAIT_PUBCOMP, /* QoS 2: PUBREC received, PUBREL written */
    MQTT_QS_WAIT_SUBACK,
    MQTT_QS_WAIT_UNSUBACK,
    MQTT_QS_IN_HELD,      /* incoming QoS 2 stored, PUBREC sent, awaiting PUBREL */
    MQTT_QS_IN_RELEASED,  /* incoming QoS 2 handed over before its PUBREL; its id stays known */
    MQTT_QS_COUNT
} mqtt_qos_state;

typedef enum mqtt_qos_event {
    MQTT_QE_SEND,      /* out: the record is written on the current connection */
    MQTT_QE_RECONNECT, /* the connection was lost: what was written goes out again */
    MQTT_QE_PUBACK,
    MQTT_QE_PUBREC,
    MQTT_QE_PUBCOMP,
    MQTT_QE_SUBACK,
    MQTT_QE_UNSUBACK,
    MQTT_QE_PUBLISH, /* in: a QoS 2 PUBLISH with this id arrived */
    MQTT_QE_PUBREL,  /* in: a PUBREL for this id arrived */
    MQTT_QE_RELEASE, /* in: the application's bound is reached: hand over before PUBREL */
    MQTT_QE_DROP,    /* in: the broker lost the session: no PUBREL will come */
    MQTT_QE_PUBREC_REFUSED, /* out: a PUBREC with a reason code >= 0x80 (MQTT 5.0) */
    MQTT_QE_COUNT
} mqtt_qos_event;

typedef enum mqtt_qos_action {
    MQTT_QA_INVALID,    /* no such transition: refused, the state stays */
    MQTT_QA_NONE,       /* allowed, nothing to do */
    MQTT_QA_SEND,       /* write the record's packet, the first time on any connection */
    MQTT_QA_RESEND,     /* write it again: a PUBLISH with DUP, a (UN)SUBSCRIBE unchanged */
    MQTT_QA_PUBREL,     /* write a PUBREL for the record's id */
    MQTT_QA_MARK_DUP,   /* the PUBLISH will go out again: set its DUP flag */
    MQTT_QA_ACKED,      /* an ack advanced or completed the record: report it */
    MQTT_QA_DOWNGRADED, /* PUBACK for a QoS 2 PUBLISH: taken as QoS 1, complete, report it */
    MQTT_QA_DUPLICATE,  /* PUBREC again while awaiting PUBCOMP: answer PUBREL again */
    MQTT_QA_STORE,      /* in: keep the message until PUBREL, answer PUBREC */
    MQTT_QA_PUBREC,     /* in: a resent PUBLISH: answer PUBREC, keep nothing */
    MQTT_QA_DELIVER,    /* in: hand the message to the application now */
    MQTT_QA_PUBCOMP     /* in: PUBREL with nothing to deliver: answer PUBCOMP only */
} mqtt_qos_action;

/** One cell of the table: the state after the event and what the caller does. */
typedef struct mqtt_qos_step {
    uint8_t next;   /* mqtt_qos_state */
    uint8_t action; /* mqtt_qos_action */
} mqtt_qos_step;

/** The table itself (qos.c); read it through mqtt__qos_step. */
MQTT_HIDDEN extern const mqtt_qos_step mqtt__qos_table[MQTT_QS_COUNT][MQTT_QE_COUNT];

/**
 * The cell for state and event. MQTT_QA_INVALID (state unchanged) for every
 * pair the protocol does not allow and for values out of range. Pure; inline
 * because the session asks it about every packet it sends or is acked.
 */
static inline mqtt_qos_step mqtt__qos_step(mqtt_qos_state state, mqtt_qos_event event)
{
    mqtt_qos_step invalid = { (uint8_t)state, MQTT_QA_INVALID };
    if ((unsigned)state >= MQTT_QS_COUNT || (unsigned)event >= MQTT_QE_COUNT)
        return invalid;
    mqtt_qos_step st = mqtt__qos_table[state][event];
    return st.action == MQTT_QA_INVALID ? invalid : st;
}

/** The state an outgoing record starts in; MQTT_QS_NONE when kind or qos is invalid. */
static inline mqtt_qos_state mqtt__qos_initial(mqtt_rec_kind kind, uint8_t qos)
{
    if (kind == MQTT_REC_PUBLISH)
        return qos <= 2 ? (mqtt_qos_state)(MQTT_QS_QUEUED0 + qos) : MQTT_QS_NONE;
    if (kind == MQTT_REC_SUBSCRIBE)
        return MQTT_QS_QUEUED_SUB;
    return kind == MQTT_REC_UNSUBSCRIBE ? MQTT_QS_QUEUED_UNSUB : MQTT_QS_NONE;
}

/** Never written on any connection yet (counts against max_queued). */
static inline bool mqtt__qos_queued(uint8_t state)
{
    return state >= MQTT_QS_QUEUED0 && state <= MQTT_QS_QUEUED_UNSUB;
}

/** A QoS 1/2 PUBLISH written and not complete (counts against the in-flight window). */
static inline bool mqtt__qos_inflight(uint8_t state)
{
    return state >= MQTT_QS_WAIT_PUBACK && state <= MQTT_QS_WAIT_PUBCOMP;
}

#endif
