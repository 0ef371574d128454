/*
 * MQTT 5.0 properties on the wire: reading one property, the checks the
 * protocol table implies (allowed in the packet, in range, valid UTF-8, no
 * forbidden repeat), the validated block's iterator, and the encoder that
 * writes a caller's array in the deterministic order. Decoding and encoding
 * share the same checks. No allocation; reads never pass the block.
 */
#include "wire.h"

#define fail mqtt__fail

/* Bytes of a fixed-width integer type; 0 for the others. */
static size_t width_of(uint8_t type)
{
    static const uint8_t widths[] = {[MQTT_PTYPE_BYTE] = 1, [MQTT_PTYPE_U16] = 2,
                                     [MQTT_PTYPE_U32] = 4};
    return type < sizeof widths ? widths[type] : 0;
}

/* A big-endian integer of width bytes. */
static bool r_int(mqtt_reader *r, size_t width, uint32_t *v)
{
    if (r_left(r) < width)
        return false;
    *v = 0;
    for (size_t i = 0; i < width; i++)
        *v = *v << 8 | r->b[r->pos++];
    return true;
}

/* Reads one property at r; only its encoding is judged here. */
static int read_prop(mqtt_reader *r, mqtt_property *p, const mqtt_property_info **info,
                     const char **why)
{
    uint32_t id = 0;
    mqtt_bytes s = {NULL, 0}, s2 = {NULL, 0};
    bool ok;
    if (r_varint(r, &id) != MQTT_OK || (*info = mqtt__prop_info(id)) == NULL)
        return fail(MQTT_ERR_MALFORMED, "unknown property identifier", why);
    memset(p, 0, sizeof *p);
    p->id = (uint8_t)id;
    if (width_of((*info)->type) != 0)
        ok = r_int(r, width_of((*info)->type), &p->value);
    else if ((*info)->type == MQTT_PTYPE_VARINT)
        ok = r_varint(r, &p->value) == MQTT_OK;
    else
        ok = r_bytes(r, &s) && ((*info)->type != MQTT_PTYPE_PAIR || r_bytes(r, &s2));
    p->data = s.data;
    p->len = s.len;
    p->data2 = s2.data;
    p->len2 = s2.len;
    return ok ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "property runs past its block", why);
}

static bool is_integer(uint8_t type)
{
    return width_of(type) != 0 || type == MQTT_PTYPE_VARINT;
}

static bool utf8_ok(const uint8_t *s, size_t len)
{
    return (s != NULL || len == 0) && len <= MQTT__MAX_STRING && mqtt__utf8_valid(s, len);
}

/* What the table says of a property in a packet; *seen collects the identifiers. */
static int check_prop(const mqtt_property *p, const mqtt_property_info *pi, uint8_t packet_type,
                      uint64_t *seen, const char **why)
{
    uint64_t bit = (uint64_t)1 << p->id;
    uint32_t pk = MQTT_PACKET_BIT(packet_type);
    if ((pi->packets & pk) == 0)
        return fail(MQTT_ERR_MALFORMED, "property not allowed in this packet", why);
    if ((*seen & bit) != 0 && (pi->repeats & pk) == 0)
        return fail(MQTT_ERR_PROTOCOL, "property given twice", why);
    *seen |= bit;
    if (is_integer(pi->type)) {
        if (p->value < pi->min || p->value > pi->max)
            return fail(MQTT_ERR_PROTOCOL, "property value out of range", why);
        return MQTT_OK;
    }
    if ((pi->type == MQTT_PTYPE_STRING || pi->type == MQTT_PTYPE_PAIR) &&
        !utf8_ok(p->data, p->len))
        return fail(MQTT_ERR_MALFORMED, "property string is not valid UTF-8", why);
    if (pi->type == MQTT_PTYPE_PAIR && !utf8_ok(p->data2, p->len2))
        return fail(MQTT_ERR_MALFORMED, "property string is not valid UTF-8", why);
    if ((p->data == NULL && p->len > 0) || p->len > MQTT__MAX_STRING)
        return fail(MQTT_ERR_MALFORMED, "property data too long", why);
    return MQTT_OK;
}

int mqtt__props_check(const uint8_t *b, size_t len, uint8_t packet_type, const char **why)
{
    mqtt_reader r = {b, len, 0};
    uint64_t seen = 0;
    while (r_left(&r) > 0) {
        mqtt_property p;
        const mqtt_property_info *pi = NULL;
        int rc = read_prop(&r, &p, &pi, why);
        if (rc == MQTT_OK)
            rc = check_prop(&p, pi, packet_type, &seen, why);
        if (rc != MQTT_OK)
            return rc;
    }
    return MQTT_OK;
}

int mqtt__r_props(mqtt_reader *r, uint8_t packet_type, mqtt_bytes *props, const char **why)
{
    uint32_t len = 0;
    int rc = r_varint(r, &len);
    if (rc != MQTT_OK || len > r_left(r))
        return fail(MQTT_ERR_MALFORMED, "property length runs past the packet", why);
    props->data = r->b + r->pos;
    props->len = len;
    r->pos += len;
    return mqtt__props_check(props->data, len, packet_type, why);
}

void mqtt__prop_iter_init(mqtt_prop_iter *it, mqtt_bytes props)
{
    it->p = props.data;
    it->end = props.data == NULL ? NULL : props.data + props.len;
}

bool mqtt__prop_next(mqtt_prop_iter *it, mqtt_property *prop)
{
    mqtt_reader r = {it->p, (size_t)(it->end - it->p), 0};
    const mqtt_property_info *pi = NULL;
    const char *why = NULL;
    if (it->p == NULL || it->p >= it->end || read_prop(&r, prop, &pi, &why) != MQTT_OK)
        return false;
    it->p += r.pos;
    return true;
}

bool mqtt__prop_find(mqtt_bytes props, uint8_t id, mqtt_property *prop)
{
    mqtt_prop_iter it;
    mqtt__prop_iter_init(&it, props);
    while (mqtt__prop_next(&it, prop)) {
        if (prop->id == id)
            return true;
    }
    return false;
}

int mqtt__props_validate(const mqtt_property *p, size_t n, uint8_t packet_type, size_t *bad,
                         const char **why)
{
    uint64_t seen = 0;
    if (p == NULL && n > 0)
        return fail(MQTT_ERR_INVAL, "a property count without properties", why);
    for (size_t i = 0; i < n; i++) {
        const mqtt_property_info *pi = mqtt__prop_info(p[i].id);
        *bad = i;
        if (pi == NULL)
            return fail(MQTT_ERR_MALFORMED, "unknown property identifier", why);
        int rc = check_prop(&p[i], pi, packet_type, &seen, why);
        if (rc != MQTT_OK)
            return rc;
    }
    return MQTT_OK;
}

/* ---- encoding --------------------------------------------------------- */

static void w_prop(mqtt_writer *w, const mqtt_property *p, uint8_t type)
{
    size_t width = width_of(type);
    w_varint(w, p->id);
    for (size_t i = width; i > 0; i--)
        w_u8(w, p->value >> (8 * (i - 1)));
    if (type == MQTT_PTYPE_VARINT)
        w_varint(w, p->value);
    else if (width == 0)
        w_bytes(w, p->data, p->len);
    if (type == MQTT_PTYPE_PAIR)
        w_bytes(w, p->data2, p->len2);
}

/* Where an identifier goes in a block: ascending, user_property last. */
static uint32_t prop_rank(uint32_t id)
{
    return id == MQTT_PROP_USER_PROPERTY ? MQTT_PROP_MAX_ID + 1u : id;
}

/* The block without its length: ascending identifiers, user_property last
 * (pairs in the order given). Properties already in that order, as most
 * are, are written in one pass; others by a scan per identifier. */
static void w_props_body(mqtt_writer *w, const mqtt_property *p, size_t n)
{
    size_t sorted = 1;
    while (sorted < n && prop_rank(p[sorted - 1].id) <= prop_rank(p[sorted].id))
        sorted++;
    if (sorted >= n) {
        for (size_t i = 0; i < n; i++) {
            const mqtt_property_info *pi = mqtt__prop_info(p[i].id);
            if (pi == NULL) {
                w->ok = false;
                return;
            }
            w_prop(w, &p[i], pi->type);
        }
        return;
    }
    for (uint32_t id = 1; id <= MQTT_PROP_MAX_ID + 1; id++) {
        uint32_t want = id == MQTT_PROP_USER_PROPERTY ? 0 : id;
        if (id == MQTT_PROP_MAX_ID + 1)
            want = MQTT_PROP_USER_PROPERTY;
        for (size_t i = 0; want != 0 && i < n; i++) {
            if (p[i].id == want)
                w_prop(w, &p[i], mqtt__prop_info(want)->type);
        }
    }
}

/* The counting pass checks the properties and sizes the block once. */
static void count_props(mqtt_writer *w, const mqtt_property *p, size_t n, uint8_t packet_type)
{
    mqtt_writer count = {NULL, 0, true};
    uint64_t seen = 0;
    const char *why = NULL;
    for (size_t i = 0; i < n; i++) {
        const mqtt_property_info *pi = mqtt__prop_info(p[i].id);
        if (pi == NULL || check_prop(&p[i], pi, packet_type, &seen, &why) != MQTT_OK) {
            w->ok = false;
            return;
        }
    }
    w_props_body(&count, p, n);
    w->ok = w->ok && count.ok;
    w_varint(w, count.n);
    w->n += count.n;
}

void mqtt__w_props(mqtt_writer *w, const mqtt_property *p, size_t n, uint8_t packet_type)
{
    if (p == NULL && n > 0) {
        w->ok = false;
        return;
    }
    if (w->p == NULL) {
        count_props(w, p, n, packet_type);
        return;
    }
    /* The writing pass follows a counting pass that checked and sized the
     * packet: the body goes after a one-byte length and moves up in the rare
     * case its length takes more bytes. */
    size_t at = w->n;
    w->n++;
    w_props_body(w, p, n);
    size_t len = w->n - at - 1;
    size_t width = mqtt__varint_size((uint32_t)len);
    if (width > 1)
        memmove(w->p + at + width, w->p + at + 1, len);
    mqtt__varint_encode(w->p + at, (uint32_t)len);
    w->n = at + width + len;
}

/* NOLINTNEXTLINE(readability-non-const-parameter): written through the writer */
size_t mqtt__props_encode(uint8_t *out, const mqtt_property *p, size_t n)
{
    if (n == 0)
        return 0;
    mqtt_writer w = {out, 0, true};
    w_props_body(&w, p, n);
    return w.n;
}

size_t mqtt__props_unpack(mqtt_bytes block, mqtt_property *out, size_t max)
{
    mqtt_prop_iter it;
    mqtt_property prop;
    size_t n = 0;
    mqtt__prop_iter_init(&it, block);
    while (mqtt__prop_next(&it, &prop)) {
        if (n < max)
            out[n] = prop;
        n++;
    }
    return n;
}
