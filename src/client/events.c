/*
 * The event queue between the I/O thread and the application: one
 * allocation per event holding its strings, a byte count for back-pressure,
 * and a notification pipe that is readable exactly while events wait.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "client_internal.h"

char mqtt__delivered_mark;

/* Fixed cost charged per event on top of its bytes, for the queue bound. */
#define EVENT_OVERHEAD 64
/* Text the spare status event holds; longer texts are cut. */
#define SPARE_TEXT 200

mqtt_event *mqtt__event_new(int type, size_t extra)
{
    mqtt_event *ev = mqtt__calloc(1, sizeof *ev + extra);
    if (!ev)
        return NULL;
    ev->type = type;
    ev->return_code = -1;
    ev->bytes = sizeof *ev + extra + EVENT_OVERHEAD;
    return ev;
}

void mqtt_event_free(mqtt_event *ev)
{
    mqtt__free(ev);
}

/* Appends the chain first..last to the list head/tail. */
static void append(mqtt_event **head, mqtt_event **tail, mqtt_event *first, mqtt_event *last)
{
    if (*tail)
        (*tail)->next = first;
    else
        *head = first;
    *tail = last;
}

/* Queues the chain first..last (bytes in all) for the application; the
 * notification fd becomes readable when the queue was empty. */
static void enqueue(mqtt_client *c, mqtt_event *first, mqtt_event *last, size_t bytes)
{
    bool was_empty = c->sh.ev_head == NULL;
    append(&c->sh.ev_head, &c->sh.ev_tail, first, last);
    c->sh.ev_bytes += bytes;
    if (was_empty)
        mqtt__fd_signal(c->set.notify_fd);
}

void mqtt__event_push(mqtt_client *c, mqtt_event *ev)
{
    ev->next = NULL;
    if (c->sh.staging) {
        append(&c->sh.st_head, &c->sh.st_tail, ev, ev);
        c->sh.staged_bytes += ev->bytes;
        return;
    }
    enqueue(c, ev, ev, ev->bytes);
}

void mqtt__event_release_staged(mqtt_client *c)
{
    if (!c->sh.st_head)
        return;
    enqueue(c, c->sh.st_head, c->sh.st_tail, c->sh.staged_bytes);
    c->sh.st_head = c->sh.st_tail = NULL;
    c->sh.staged_bytes = 0;
}

int mqtt__event_refill_spare(mqtt_client *c)
{
    if (!c->sh.spare)
        c->sh.spare = mqtt__event_new(0, SPARE_TEXT + 1);
    return c->sh.spare ? MQTT_OK : MQTT_ERR_NOMEM;
}

/* The I/O thread waits for room (reading paused, a reconnect held back). */
static bool waits_for_room(const mqtt_client *c)
{
    return c->sh.reading_paused || c->sh.state == ST_RETRY_WAIT;
}

/* keep: the batch stays counted against max_event_bytes until
 * mqtt_client_events_handled(); a new take means the last batch was handled. */
static mqtt_event *take_events(mqtt_client *c, bool keep)
{
    if (mqtt__foreign(c))
        return NULL;
    pthread_mutex_lock(&c->mu);
    (void)mqtt__event_refill_spare(c); /* failing, it is tried again next time */
    mqtt_event *head = c->sh.ev_head;
    c->sh.ev_head = c->sh.ev_tail = NULL;
    c->sh.taken_bytes = keep ? c->sh.ev_bytes : 0;
    c->sh.ev_bytes = 0;
    if (!keep || !head) /* nothing taken: nothing left to wake for */
        mqtt__fd_clear(c->set.notify_fd);
    bool resume = waits_for_room(c);
    pthread_mutex_unlock(&c->mu);
    if (resume)
        mqtt__wake(c);
    return head;
}

mqtt_event *mqtt_client_take_events(mqtt_client *c)
{
    return take_events(c, false);
}

mqtt_event *mqtt_client_take_events_keep(mqtt_client *c)
{
    return take_events(c, true);
}

void mqtt_client_events_handled(mqtt_client *c)
{
    if (mqtt__foreign(c))
        return;
    /* Under the lock: an event pushed since the take keeps the fd readable. */
    pthread_mutex_lock(&c->mu);
    if (!c->sh.ev_head)
        mqtt__fd_clear(c->set.notify_fd);
    bool resume = c->sh.taken_bytes > 0 && waits_for_room(c);
    c->sh.taken_bytes = 0;
    pthread_mutex_unlock(&c->mu);
    if (resume)
        mqtt__wake(c);
}

static void copy_text(mqtt_event *ev, const char *text, size_t len)
{
    char *dst = (char *)ev->data;
    memcpy(dst, text, len);
    dst[len] = '\0';
    ev->text = dst;
    ev->text_len = len;
}

void mqtt__event_status(mqtt_client *c, int type, int status, int return_code,
                        bool session_present, const char *text)
{
    size_t len = text ? strlen(text) : 0;
    mqtt_event *ev = mqtt__event_new(type, len + 1);
    if (!ev && c->sh.spare) {
        /* A lost connection or a waiting reconnect must never go unseen. */
        ev = c->sh.spare;
        c->sh.spare = NULL;
        ev->type = type;
        len = len < SPARE_TEXT ? len : SPARE_TEXT;
    }
    if (!ev)
        return;
    ev->status = status;
    ev->return_code = return_code;
    ev->session_present = session_present;
    if (text)
        copy_text(ev, text, len);
    mqtt__event_push(c, ev);
}

void mqtt__log(mqtt_client *c, int level, const char *fmt, ...)
{
    if (!c->set.opt.log_events)
        return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* Log lines are the one thing dropped when the application's bound is reached. */
    if (mqtt__app_bytes(c) >= c->set.opt.max_event_bytes) {
        c->sh.logs_dropped++;
        return;
    }
    size_t len = strlen(text);
    mqtt_event *ev = mqtt__event_new(MQTT_EV_LOG, len + 1);
    if (!ev)
        return;
    ev->level = level;
    copy_text(ev, text, len);
    mqtt__event_push(c, ev);
}

/* Copies the packet's property block to the event's data at off (the
 * caller reserved p->props.len bytes there); nothing when it has none. */
static void copy_props(mqtt_event *ev, size_t off, const mqtt_packet *p)
{
    if (p->props.len == 0)
        return;
    memcpy(ev->data + off, p->props.data, p->props.len);
    ev->props = ev->data + off;
    ev->props_len = (uint32_t)p->props.len; /* at most MQTT_MAX_REMAINING */
}

mqtt_event *mqtt__event_message(int type, const mqtt_packet *p)
{
    size_t tl = p->topic.len, pl = p->payload.len;
    mqtt_event *ev = mqtt__event_new(type, tl + 1 + pl + p->props.len);
    if (!ev)
        return NULL;
    char *topic = (char *)ev->data;
    memcpy(topic, p->topic.data, tl);
    topic[tl] = '\0';
    if (pl)
        memcpy(ev->data + tl + 1, p->payload.data, pl);
    ev->topic = topic;
    ev->topic_len = tl;
    ev->payload = ev->data + tl + 1;
    ev->payload_len = pl;
    ev->has_message = true;
    ev->mid = p->packet_id;
    ev->qos = p->qos;
    ev->retain = p->retain;
    ev->dup = p->dup;
    copy_props(ev, tl + 1 + pl, p);
    return ev;
}

mqtt_event *mqtt__event_ack(int type, uint16_t id, const mqtt_packet *p)
{
    size_t n = p ? p->granted.len : 0;
    mqtt_event *ev = mqtt__event_new(type, n + (p ? p->props.len : 0));
    if (!ev)
        return NULL;
    ev->mid = id;
    if (!p)
        return ev;
    ev->reason_code = p->reason_code;
    if (n) {
        memcpy(ev->data, p->granted.data, n);
        ev->reasons = ev->data;
        ev->reason_count = (uint32_t)n;
    }
    copy_props(ev, n, p);
    return ev;
}

bool mqtt_event_property_next(const mqtt_event *ev, size_t *pos, mqtt_property *out)
{
    if (!ev || !pos || !out || !ev->props || *pos >= ev->props_len)
        return false;
    mqtt_prop_iter it;
    mqtt__prop_iter_init(&it, (mqtt_bytes){ev->props + *pos, ev->props_len - *pos});
    if (!mqtt__prop_next(&it, out))
        return false;
    *pos = (size_t)(it.p - ev->props);
    return true;
}

bool mqtt_event_property_find(const mqtt_event *ev, int id, mqtt_property *out)
{
    if (!ev || !out || !ev->props || id < 0 || id > 0xff)
        return false;
    return mqtt__prop_find((mqtt_bytes){ev->props, ev->props_len}, (uint8_t)id, out);
}

mqtt_event *mqtt__event_reason(int type, int status, const char *text, uint8_t reason,
                               mqtt_bytes props)
{
    size_t len = strlen(text);
    mqtt_event *ev = mqtt__event_new(type, props.len + len + 1);
    if (!ev)
        return NULL;
    mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.props = props;
    copy_props(ev, 0, &p);
    memcpy(ev->data + props.len, text, len + 1);
    ev->text = (const char *)ev->data + props.len;
    ev->text_len = len;
    ev->status = status;
    ev->return_code = -1;
    ev->reason_code = reason;
    return ev;
}

void mqtt__event_disconnect(mqtt_client *c, int status, const char *text, uint8_t reason,
                            mqtt_bytes props, bool from_broker)
{
    mqtt_event *ev = mqtt__event_reason(MQTT_EV_DISCONNECT, status, text, reason, props);
    if (ev) {
        ev->from_broker = from_broker;
        mqtt__event_push(c, ev);
    }
    else
        mqtt__event_status(c, MQTT_EV_DISCONNECT, status, -1, false, text);
}
