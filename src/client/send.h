/*
 * Record to bytes: what the session hands out is encoded here, when the I/O
 * thread sends it, so the connection's terms (protocol version, the broker's
 * limits, topic aliases) are decided at the moment of writing. Call with the
 * client's lock held; nothing here touches the session's state.
 */
#ifndef MQTT_SEND_H
#define MQTT_SEND_H

#include "client_internal.h"

/**
 * Appends to out the packet action asks for r (mqtt__session_next's
 * answer): MQTT_QA_SEND or MQTT_QA_RESEND, r's PUBLISH (DUP from r->dup),
 * SUBSCRIBE or UNSUBSCRIBE; MQTT_QA_PUBREL, a PUBREL for r->packet_id.
 * The payload is copied once, from the record into out. MQTT_OK;
 * MQTT_ERR_NOMEM (out unchanged); MQTT_ERR_INVAL for any other action or a
 * record that cannot be encoded (out unchanged). c gives the connection's
 * terms: its protocol level and topic aliases; NULL: MQTT 3.1.1.
 * MQTT_ERR_TIMEOUT: a PUBLISH's first write past its message expiry;
 * MQTT_ERR_TOO_LARGE: a PUBLISH over the broker's maximum packet size now
 * (out unchanged for both); the caller drops it.
 */
MQTT_HIDDEN int mqtt__send_record(mqtt_buf *out, const mqtt_record *r, mqtt_qos_action action,
                                  mqtt_client *c);

/** A QoS 0 message straight into out under 5.0, with the topic alias that
 *  mqtt__v5_check_publish picked and checked under this lock hold. */
MQTT_HIDDEN int mqtt__send_message_v5(mqtt_buf *out, mqtt_client *c, const mqtt_message *m,
                                      mqtt_alias_pick pick);

#endif
