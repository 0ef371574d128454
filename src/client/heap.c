/*
 * The loop's timers: a binary min-heap of members by deadline, each member
 * knowing its place, so setting, moving and removing a timer cost O(log n)
 * and the loop finds the next deadline in O(1), however many clients.
 */
#include "alloc.h"
#include "loop.h"

static void place(mqtt_heap *h, size_t i, mqtt_member *m)
{
    h->items[i] = m;
    m->heap_idx = i;
}

static void sift_up(mqtt_heap *h, size_t i)
{
    mqtt_member *m = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->at <= m->at)
            break;
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, m);
}

static void sift_down(mqtt_heap *h, size_t i)
{
    mqtt_member *m = h->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && h->items[child + 1]->at < h->items[child]->at)
            child++;
        if (m->at <= h->items[child]->at)
            break;
        place(h, i, h->items[child]);
        i = child;
    }
    place(h, i, m);
}

static bool contains(const mqtt_heap *h, const mqtt_member *m)
{
    return m->heap_idx < h->len && h->items[m->heap_idx] == m;
}

int mqtt__heap_set(mqtt_heap *h, mqtt_member *m, double at)
{
    if (at < 0) {
        mqtt__heap_remove(h, m);
        return MQTT_OK;
    }
    if (contains(h, m)) {
        double old = m->at;
        m->at = at;
        if (at < old)
            sift_up(h, m->heap_idx);
        else
            sift_down(h, m->heap_idx);
        return MQTT_OK;
    }
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        mqtt_member **items = mqtt__realloc(h->items, cap * sizeof(mqtt_member *));
        if (!items)
            return MQTT_ERR_NOMEM;
        h->items = items;
        h->cap = cap;
    }
    m->at = at;
    place(h, h->len++, m);
    sift_up(h, m->heap_idx);
    return MQTT_OK;
}

void mqtt__heap_remove(mqtt_heap *h, mqtt_member *m)
{
    if (!contains(h, m)) {
        m->at = -1;
        return;
    }
    size_t i = m->heap_idx;
    mqtt_member *last = h->items[--h->len];
    m->at = -1;
    m->heap_idx = (size_t)-1;
    if (last == m)
        return;
    place(h, i, last);
    sift_up(h, i);
    sift_down(h, last->heap_idx);
}

void mqtt__heap_free(mqtt_heap *h)
{
    mqtt__free(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}
