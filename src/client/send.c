/*
 * The send path: what the session may send now is encoded into the client's
 * outgoing buffer, where the loop's writer takes it. Kept apart so the way
 * records become bytes changes in one place. Called with the client's lock held.
 */
#include "client_internal.h"

int mqtt__pump(mqtt_client *c)
{
    bool was_empty = c->sh.out.len == 0;
    mqtt_bytes pkt;
    uint8_t scratch[4];
    while (mqtt__session_next(c->sh.session, &pkt, scratch)) {
        if (mqtt__buf_append(&c->sh.out, pkt.data, pkt.len) != MQTT_OK)
            return -1;
        mqtt__session_sent(c->sh.session);
    }
    return was_empty && c->sh.out.len > 0;
}
