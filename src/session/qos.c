/*
 * The QoS transition table. Each row is one rule of MQTT 3.1.1 section 4.3
 * (and the client's own duties around it); every cell not written here is
 * MQTT_QA_INVALID. Pure data and two lookups: no state, no allocation.
 */
#include "qos.h"

#define S(next, action) { MQTT_QS_##next, MQTT_QA_##action }

static const mqtt_qos_step table[MQTT_QS_COUNT][MQTT_QE_COUNT] = {
    /* Written the first time: a QoS 0 PUBLISH is done, the rest await their ack. */
    [MQTT_QS_QUEUED0][MQTT_QE_SEND] = S(NONE, SEND),
    [MQTT_QS_QUEUED1][MQTT_QE_SEND] = S(WAIT_PUBACK, SEND),
    [MQTT_QS_QUEUED2][MQTT_QE_SEND] = S(WAIT_PUBREC, SEND),
    [MQTT_QS_QUEUED_SUB][MQTT_QE_SEND] = S(WAIT_SUBACK, SEND),
    [MQTT_QS_QUEUED_UNSUB][MQTT_QE_SEND] = S(WAIT_UNSUBACK, SEND),
    /* Never written: a reconnect changes nothing. */
    [MQTT_QS_QUEUED0][MQTT_QE_RECONNECT] = S(QUEUED0, NONE),
    [MQTT_QS_QUEUED1][MQTT_QE_RECONNECT] = S(QUEUED1, NONE),
    [MQTT_QS_QUEUED2][MQTT_QE_RECONNECT] = S(QUEUED2, NONE),
    [MQTT_QS_QUEUED_SUB][MQTT_QE_RECONNECT] = S(QUEUED_SUB, NONE),
    [MQTT_QS_QUEUED_UNSUB][MQTT_QE_RECONNECT] = S(QUEUED_UNSUB, NONE),

    /* QoS 1 (4.3.2): PUBLISH until PUBACK, again with DUP after a reconnect. */
    [MQTT_QS_WAIT_PUBACK][MQTT_QE_RECONNECT] = S(WAIT_PUBACK, MARK_DUP),
    [MQTT_QS_WAIT_PUBACK][MQTT_QE_SEND] = S(WAIT_PUBACK, RESEND),
    [MQTT_QS_WAIT_PUBACK][MQTT_QE_PUBACK] = S(NONE, ACKED),

    /* QoS 2 (4.3.3): PUBLISH until PUBREC, then PUBREL until PUBCOMP. */
    [MQTT_QS_WAIT_PUBREC][MQTT_QE_RECONNECT] = S(WAIT_PUBREC, MARK_DUP),
    [MQTT_QS_WAIT_PUBREC][MQTT_QE_SEND] = S(WAIT_PUBREC, RESEND),
    [MQTT_QS_WAIT_PUBREC][MQTT_QE_PUBREC] = S(WAIT_PUBCOMP, ACKED),
    /* A broker that answers PUBACK took it as QoS 1: delivered at least once. */
    [MQTT_QS_WAIT_PUBREC][MQTT_QE_PUBACK] = S(NONE, DOWNGRADED),
    [MQTT_QS_WAIT_PUBCOMP][MQTT_QE_RECONNECT] = S(WAIT_PUBCOMP, NONE),
    [MQTT_QS_WAIT_PUBCOMP][MQTT_QE_SEND] = S(WAIT_PUBCOMP, PUBREL),
    [MQTT_QS_WAIT_PUBCOMP][MQTT_QE_PUBREC] = S(WAIT_PUBCOMP, DUPLICATE),
    [MQTT_QS_WAIT_PUBCOMP][MQTT_QE_PUBCOMP] = S(NONE, ACKED),

    /* SUBSCRIBE and UNSUBSCRIBE: resent unchanged until their ack. */
    [MQTT_QS_WAIT_SUBACK][MQTT_QE_RECONNECT] = S(WAIT_SUBACK, NONE),
    [MQTT_QS_WAIT_SUBACK][MQTT_QE_SEND] = S(WAIT_SUBACK, RESEND),
    [MQTT_QS_WAIT_SUBACK][MQTT_QE_SUBACK] = S(NONE, ACKED),
    [MQTT_QS_WAIT_UNSUBACK][MQTT_QE_RECONNECT] = S(WAIT_UNSUBACK, NONE),
    [MQTT_QS_WAIT_UNSUBACK][MQTT_QE_SEND] = S(WAIT_UNSUBACK, RESEND),
    [MQTT_QS_WAIT_UNSUBACK][MQTT_QE_UNSUBACK] = S(NONE, ACKED),

    /* Incoming QoS 2 (4.3.3, method B): stored at PUBLISH, delivered once. */
    [MQTT_QS_NONE][MQTT_QE_PUBLISH] = S(IN_HELD, STORE),
    [MQTT_QS_NONE][MQTT_QE_PUBREL] = S(NONE, PUBCOMP),
    [MQTT_QS_IN_HELD][MQTT_QE_PUBLISH] = S(IN_HELD, PUBREC),
    [MQTT_QS_IN_HELD][MQTT_QE_PUBREL] = S(NONE, DELIVER),
    [MQTT_QS_IN_HELD][MQTT_QE_RECONNECT] = S(IN_HELD, NONE),
    [MQTT_QS_IN_HELD][MQTT_QE_RELEASE] = S(IN_RELEASED, DELIVER),
    [MQTT_QS_IN_HELD][MQTT_QE_DROP] = S(NONE, DELIVER),
    /* Handed over already: the id is known until PUBREL, so a resend is not new. */
    [MQTT_QS_IN_RELEASED][MQTT_QE_PUBLISH] = S(IN_RELEASED, PUBREC),
    [MQTT_QS_IN_RELEASED][MQTT_QE_PUBREL] = S(NONE, PUBCOMP),
    [MQTT_QS_IN_RELEASED][MQTT_QE_RECONNECT] = S(IN_RELEASED, NONE),
    [MQTT_QS_IN_RELEASED][MQTT_QE_RELEASE] = S(IN_RELEASED, NONE),
    [MQTT_QS_IN_RELEASED][MQTT_QE_DROP] = S(NONE, NONE),
};

mqtt_qos_step mqtt__qos_step(mqtt_qos_state state, mqtt_qos_event event)
{
    mqtt_qos_step invalid = { (uint8_t)state, MQTT_QA_INVALID };
    if ((unsigned)state >= MQTT_QS_COUNT || (unsigned)event >= MQTT_QE_COUNT)
        return invalid;
    mqtt_qos_step st = table[state][event];
    return st.action == MQTT_QA_INVALID ? invalid : st;
}

mqtt_qos_state mqtt__qos_initial(mqtt_rec_kind kind, uint8_t qos)
{
    static const mqtt_qos_state publish[] = { MQTT_QS_QUEUED0, MQTT_QS_QUEUED1,
                                              MQTT_QS_QUEUED2 };
    switch (kind) {
    case MQTT_REC_PUBLISH:
        return qos < 3 ? publish[qos] : MQTT_QS_NONE;
    case MQTT_REC_SUBSCRIBE:
        return MQTT_QS_QUEUED_SUB;
    case MQTT_REC_UNSUBSCRIBE:
        return MQTT_QS_QUEUED_UNSUB;
    default:
        return MQTT_QS_NONE;
    }
}
