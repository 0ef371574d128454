/*
 * The I/O loop's timer heap (src/client/heap.c): members come out earliest
 * first however their deadlines are set, moved and removed, and each knows
 * its place. A fixed pseudo-random script drives thousands of operations
 * against a plain array that says what the heap must hold.
 */
#include <stdint.h>

#include "loop.h"
#include "test.h"

#define MEMBERS 500
#define STEPS 20000

static uint64_t rng = 88172645463325252ull;

static unsigned next_rand(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* Every member in the heap sits where it says, and no child is earlier than its parent. */
static bool heap_sound(const mqtt_heap *h)
{
    for (size_t i = 0; i < h->len; i++) {
        if (h->items[i]->heap_idx != i)
            return false;
        if (i > 0 && h->items[(i - 1) / 2]->at > h->items[i]->at)
            return false;
    }
    return true;
}

static mqtt_member *earliest(mqtt_member *m, const double *want)
{
    mqtt_member *best = NULL;
    for (int i = 0; i < MEMBERS; i++)
        if (want[i] >= 0 && (!best || want[i] < best->at))
            best = &m[i];
    return best;
}

int main(void)
{
    static mqtt_member m[MEMBERS];
    static double want[MEMBERS]; /* each member's deadline; < 0: not in the heap */
    mqtt_heap h = {0};
    for (int i = 0; i < MEMBERS; i++) {
        m[i].at = -1;
        m[i].heap_idx = (size_t)-1;
        want[i] = -1;
    }
    bool sound = true, order = true, sets = true;
    for (int step = 0; step < STEPS; step++) {
        unsigned i = next_rand(MEMBERS);
        unsigned op = next_rand(10);
        if (op < 6) { /* set or move */
            double at = (double)next_rand(100000) / 10.0;
            sets = sets && mqtt__heap_set(&h, &m[i], at) == MQTT_OK;
            want[i] = at;
        } else if (op < 8) { /* remove, also when absent */
            mqtt__heap_remove(&h, &m[i]);
            want[i] = -1;
        } else if (op == 8) { /* a negative deadline removes */
            sets = sets && mqtt__heap_set(&h, &m[i], -1) == MQTT_OK;
            want[i] = -1;
        } else { /* pop the earliest, as the loop does when it is due */
            mqtt_member *top = mqtt__heap_top(&h);
            const mqtt_member *best = earliest(m, want);
            order = order && (top == NULL) == (best == NULL);
            if (top && best) {
                order = order && top->at == best->at;
                want[top - m] = -1;
                mqtt__heap_remove(&h, top);
            }
        }
        sound = sound && heap_sound(&h);
    }
    size_t held = 0;
    for (int i = 0; i < MEMBERS; i++)
        held += want[i] >= 0;
    CHECK(sets, "setting and moving deadlines succeeds");
    CHECK(sound, "after every step each member knows its place and the heap is ordered");
    CHECK(order, "the top is always the earliest deadline");
    CHECK(h.len == held, "the heap holds exactly the members with a deadline");
    double last = -1;
    bool drained = true;
    for (mqtt_member *top; (top = mqtt__heap_top(&h)) != NULL;) {
        drained = drained && top->at >= last;
        last = top->at;
        mqtt__heap_remove(&h, top);
    }
    CHECK(drained && h.len == 0, "draining yields deadlines in order");
    mqtt__heap_free(&h);
    return test_done();
}
