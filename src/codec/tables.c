/*
 * Protocol tables: packet names, MQTT 5.0 properties and reason codes, each
 * built from its one list in mqtt.h, and the lookups every layer uses (the
 * codec's validation, names in errors and events, the Lua constants). Pure
 * data and lookups: nothing here allocates or keeps state.
 */
#include <string.h>

#include "codec.h"

#define PACKET_NAME(e, value, name) [(value) >> 4] = (name),
static const char *const packet_names[16] = {MQTT_PACKET_LIST(PACKET_NAME)};

/* Indexed by identifier, so a lookup is one load; unused slots have id 0. */
#define PROP_ROW(e, id, name, type, packets, repeats, lo, hi) \
    [id] = {(id), MQTT_PTYPE_##type, (name), (packets), (repeats), (lo), (hi)},
static const mqtt_property_info props[MQTT_PROP_MAX_ID + 1] = {MQTT_PROPERTY_LIST(PROP_ROW)};

#define TYPE_NAME(e, name) [MQTT_PTYPE_##e] = (name),
static const char *const type_names[] = {MQTT_PROPERTY_TYPE_LIST(TYPE_NAME)};

typedef struct reason_row {
    uint8_t code;
    const char *name;
    uint32_t packets;
} reason_row;

#define REASON_ROW(e, code, name, packets) {(code), (name), (packets)},
static const reason_row reasons[] = {MQTT_REASON_LIST(REASON_ROW)};

const char *mqtt_packet_name(int type)
{
    if (type < 0 || type > 0xFF)
        return NULL;
    return packet_names[(unsigned)type >> 4];
}

const mqtt_property_info *mqtt__prop_info(uint32_t id)
{
    if (id > MQTT_PROP_MAX_ID || props[id].id == 0)
        return NULL;
    return &props[id];
}

const mqtt_property_info *mqtt_property_lookup(int id)
{
    return id < 0 ? NULL : mqtt__prop_info((uint32_t)id);
}

const char *mqtt_property_name(int id)
{
    const mqtt_property_info *pi = mqtt_property_lookup(id);
    return pi == NULL ? NULL : pi->name;
}

int mqtt_property_id(const char *name)
{
    if (name == NULL)
        return 0;
    for (size_t i = 0; i <= MQTT_PROP_MAX_ID; i++) {
        if (props[i].id != 0 && strcmp(props[i].name, name) == 0)
            return props[i].id;
    }
    return 0;
}

int mqtt_property_type(int id)
{
    const mqtt_property_info *pi = mqtt_property_lookup(id);
    return pi == NULL ? 0 : pi->type;
}

const char *mqtt_property_type_name(int type)
{
    if (type <= 0 || (size_t)type >= sizeof type_names / sizeof type_names[0])
        return NULL;
    return type_names[type];
}

bool mqtt_property_allowed(int id, int packet_type)
{
    const mqtt_property_info *pi = mqtt_property_lookup(id);
    if (pi == NULL || packet_type < 0 || packet_type > 0xFF)
        return false;
    return (pi->packets & MQTT_PACKET_BIT(packet_type)) != 0;
}

/* The row of a code in a packet type; type 0: in any packet. */
static const reason_row *reason_row_of(unsigned code, unsigned packet_type)
{
    uint32_t want = packet_type == 0 ? UINT32_MAX : MQTT_PACKET_BIT(packet_type);
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        if (reasons[i].code == code && (reasons[i].packets & want) != 0)
            return &reasons[i];
    }
    return NULL;
}

bool mqtt__reason_valid(uint8_t code, uint8_t packet_type)
{
    return packet_type != 0 && reason_row_of(code, packet_type) != NULL;
}

const char *mqtt_reason_name(int code, int packet_type)
{
    const reason_row *r;
    if (code < 0 || code > 0xFF || packet_type < 0 || packet_type > 0xFF)
        return NULL;
    r = reason_row_of((unsigned)code, (unsigned)packet_type & 0xF0u);
    return r == NULL ? NULL : r->name;
}
