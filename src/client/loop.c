/*
 * The process's I/O loops: one thread each (one by default), started with
 * the first client and joined when the last one leaves. Each waits in
 * epoll_wait on its members' sockets and its eventfd until the earliest
 * timer, then serves what is ready, what expired and what was kicked. It
 * holds its lock only to move the kicked list; it never calls the application.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "alloc.h"
#include "loop.h"
#include "transport.h"

#define MAX_LOOPS 16
#define EVENTS_PER_WAIT 256

struct mqtt_loop {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a detach is done */
    pthread_t thread;
    int ep, wake_fd;
    /* Under mu. */
    bool woken; /* the eventfd was signalled and the loop has not taken the kicks yet */
    bool stop;
    mqtt_member *dirty_head, *dirty_tail;
    /* Under the registry's lock. */
    size_t members;
    /* Loop thread only (freed once the thread is joined). */
    mqtt_heap heap;
    uint8_t *rbuf; /* the read buffer its members share; NULL until first read */
    /* Counters, written by the loop thread, read by anyone (relaxed). */
    uint64_t wakeups, services;
};

/* The registry: which loops run and how many members they serve. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned reg_threads = 1; /* the setting */
static unsigned reg_running;     /* loops started */
static size_t reg_members;
static mqtt_loop loops[MAX_LOOPS];
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

void mqtt__fd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t w = write(fd, &one, sizeof one);
    (void)w; /* only fails when the counter is already huge: still readable */
}

void mqtt__fd_clear(int fd)
{
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n);
    (void)r;
}

static void count(uint64_t *n) /* NOLINT(readability-non-const-parameter): the atomic writes *n */
{
    (void)__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
}

/* Takes the kicked members; the eventfd was drained first, so a kick that
 * comes after sees woken false and signals again. They stay marked dirty
 * until served: a kick meanwhile is theirs already and leaves the list whole. */
static mqtt_member *take_dirty(mqtt_loop *lp)
{
    mqtt__fd_clear(lp->wake_fd);
    pthread_mutex_lock(&lp->mu);
    mqtt_member *head = lp->dirty_head;
    lp->dirty_head = lp->dirty_tail = NULL;
    lp->woken = false;
    pthread_mutex_unlock(&lp->mu);
    return head;
}

static void serve(mqtt_loop *lp, mqtt_member *m, uint32_t events)
{
    count(&lp->services);
    m->service(m, events);
}

/* The member's last call; after the broadcast it belongs to the application. */
static void finish_detach(mqtt_loop *lp, mqtt_member *m)
{
    serve(lp, m, MQTT_LOOP_DETACH);
    mqtt__loop_watch(m, -1, false, false);
    mqtt__heap_remove(&lp->heap, m);
    pthread_mutex_lock(&lp->mu);
    /* A kick during its last call must not leave it on the list. */
    mqtt_member *prev = NULL;
    for (mqtt_member **p = &lp->dirty_head; m->dirty && *p; p = &(*p)->next_dirty) {
        if (*p == m) {
            *p = m->next_dirty;
            lp->dirty_tail = lp->dirty_tail == m ? prev : lp->dirty_tail;
            m->dirty = false;
            break;
        }
        prev = *p;
    }
    m->attached = false;
    pthread_cond_broadcast(&lp->cv);
    pthread_mutex_unlock(&lp->mu);
}

static void serve_kicked(mqtt_loop *lp)
{
    mqtt_member *m = take_dirty(lp);
    while (m) {
        pthread_mutex_lock(&lp->mu);
        mqtt_member *next = m->next_dirty;
        m->dirty = false; /* a kick from now on puts it on the next list */
        bool detach = m->detach;
        pthread_mutex_unlock(&lp->mu);
        if (detach)
            finish_detach(lp, m);
        else
            serve(lp, m, 0);
        m = next;
    }
}

/* Serves the members whose deadline passed; those that set a past deadline
 * again wait for the next turn, so no member holds the loop. */
static void serve_timers(mqtt_loop *lp)
{
    double now = mqtt__now();
    mqtt_member *due = NULL, *m;
    while ((m = mqtt__heap_top(&lp->heap)) && m->at <= now) {
        mqtt__heap_remove(&lp->heap, m);
        m->next_due = due;
        due = m;
    }
    for (; due; due = m) {
        m = due->next_due;
        serve(lp, due, 0);
    }
}

static int wait_ms(const mqtt_loop *lp)
{
    const mqtt_member *m = mqtt__heap_top(&lp->heap);
    if (!m)
        return -1;
    double ms = ceil((m->at - mqtt__now()) * 1000.0);
    if (ms <= 0)
        return 0;
    return ms > 3600000 ? 3600000 : (int)ms;
}

static void *loop_main(void *arg)
{
    mqtt_loop *lp = arg;
    struct epoll_event evs[EVENTS_PER_WAIT];
    for (;;) {
        int n = epoll_wait(lp->ep, evs, EVENTS_PER_WAIT, wait_ms(lp));
        count(&lp->wakeups);
        bool kicked = false;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr)
                serve(lp, evs[i].data.ptr, evs[i].events);
            else
                kicked = true;
        }
        serve_timers(lp);
        /* Kicks last: a member leaving is forgotten after its events. */
        if (kicked)
            serve_kicked(lp);
        pthread_mutex_lock(&lp->mu);
        bool stop = lp->stop && !lp->dirty_head;
        pthread_mutex_unlock(&lp->mu);
        if (stop)
            return NULL;
    }
}

void mqtt__loop_kick(mqtt_member *m)
{
    mqtt_loop *lp = m->loop;
    pthread_mutex_lock(&lp->mu);
    if (!m->dirty) {
        m->dirty = true;
        m->next_dirty = NULL;
        if (lp->dirty_tail)
            lp->dirty_tail->next_dirty = m;
        else
            lp->dirty_head = m;
        lp->dirty_tail = m;
    }
    bool wake = !lp->woken;
    lp->woken = true;
    pthread_mutex_unlock(&lp->mu);
    if (wake)
        mqtt__fd_signal(lp->wake_fd);
}

bool mqtt__loop_watch(mqtt_member *m, int fd, bool in, bool out)
{
    uint32_t want = (in ? EPOLLIN : 0) | (out ? EPOLLOUT : 0);
    struct epoll_event ev = {.events = want, .data.ptr = m};
    int ep = m->loop->ep;
    if (fd != m->fd) {
        /* Callers stop watching a socket before they close it. */
        if (m->fd >= 0)
            (void)epoll_ctl(ep, EPOLL_CTL_DEL, m->fd, NULL);
        m->fd = -1;
        m->watching = want;
        if (fd < 0)
            return true;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            return mqtt__system_failure("epoll_ctl", errno) == MQTT_OK;
        m->fd = fd;
        return true;
    }
    if (fd < 0 || want == m->watching)
        return true;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0)
        return mqtt__system_failure("epoll_ctl", errno) == MQTT_OK;
    m->watching = want;
    return true;
}

uint8_t *mqtt__loop_read_buffer(mqtt_member *m)
{
    mqtt_loop *lp = m->loop;
    if (!lp->rbuf)
        lp->rbuf = mqtt__malloc(MQTT_LOOP_READ_BYTES);
    return lp->rbuf;
}

void mqtt__loop_timer(mqtt_member *m, double at)
{
    /* Without memory for a bigger heap the member is served at once instead. */
    if (mqtt__heap_set(&m->loop->heap, m, at) != MQTT_OK)
        mqtt__loop_kick(m);
}

/* ---- starting and stopping, under reg_mu ---------------------------- */

static int loop_start(mqtt_loop *lp)
{
    memset(lp, 0, sizeof *lp);
    lp->ep = epoll_create1(EPOLL_CLOEXEC);
    if (lp->ep < 0)
        return mqtt__system_failure("epoll_create1", errno);
    lp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (lp->wake_fd < 0 || epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->wake_fd, &ev) != 0) {
        int rc = mqtt__system_failure(lp->wake_fd < 0 ? "eventfd" : "epoll_ctl", errno);
        if (lp->wake_fd >= 0)
            close(lp->wake_fd);
        close(lp->ep);
        return rc;
    }
    pthread_mutex_init(&lp->mu, NULL);
    pthread_cond_init(&lp->cv, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&lp->thread, &attr, loop_main, lp);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return MQTT_OK;
    pthread_mutex_destroy(&lp->mu);
    pthread_cond_destroy(&lp->cv);
    close(lp->wake_fd);
    close(lp->ep);
    return mqtt__system_failure("pthread_create", rc);
}

static void loop_stop(mqtt_loop *lp)
{
    pthread_mutex_lock(&lp->mu);
    lp->stop = true;
    lp->woken = true;
    pthread_mutex_unlock(&lp->mu);
    mqtt__fd_signal(lp->wake_fd);
    pthread_join(lp->thread, NULL);
    mqtt__heap_free(&lp->heap);
    mqtt__free(lp->rbuf);
    pthread_mutex_destroy(&lp->mu);
    pthread_cond_destroy(&lp->cv);
    close(lp->wake_fd);
    close(lp->ep);
}

static void stop_all(void)
{
    for (unsigned i = 0; i < reg_running; i++)
        loop_stop(&loops[i]);
    reg_running = 0;
}

/* A child of fork() has no loop threads: it forgets its parent's loops
 * (closing its copies of their descriptors) and starts its own when it
 * makes a client. Its copies of the parent's clients are foreign. */
static void forget_loops_in_child(void)
{
    for (unsigned i = 0; i < reg_running; i++) {
        close(loops[i].wake_fd);
        close(loops[i].ep);
    }
    reg_running = 0;
    reg_members = 0;
    pthread_mutex_init(&reg_mu, NULL);
}

static void lock_registry(void)
{
    pthread_mutex_lock(&reg_mu);
}

static void unlock_registry(void)
{
    pthread_mutex_unlock(&reg_mu);
}

static void watch_forks(void)
{
    (void)pthread_atfork(lock_registry, unlock_registry, forget_loops_in_child);
}

static int start_all(void)
{
    for (unsigned i = 0; i < reg_threads; i++) {
        int rc = loop_start(&loops[i]);
        if (rc != MQTT_OK) {
            stop_all();
            return rc;
        }
        reg_running++;
    }
    return MQTT_OK;
}

static mqtt_loop *least_busy(void)
{
    mqtt_loop *best = &loops[0];
    for (unsigned i = 1; i < reg_running; i++)
        if (loops[i].members < best->members)
            best = &loops[i];
    return best;
}

int mqtt__loop_attach(mqtt_member *m, void (*service)(mqtt_member *, uint32_t))
{
    pthread_once(&fork_once, watch_forks);
    memset(m, 0, sizeof *m);
    m->service = service;
    m->fd = -1;
    m->at = -1;
    m->heap_idx = (size_t)-1;
    pthread_mutex_lock(&reg_mu);
    int rc = reg_running ? MQTT_OK : start_all();
    if (rc == MQTT_OK) {
        m->loop = least_busy();
        m->loop->members++;
        m->attached = true;
        reg_members++;
    }
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

void mqtt__loop_detach(mqtt_member *m)
{
    mqtt_loop *lp = m->loop;
    if (!lp)
        return;
    pthread_mutex_lock(&lp->mu);
    m->detach = true;
    pthread_mutex_unlock(&lp->mu);
    mqtt__loop_kick(m);
    pthread_mutex_lock(&lp->mu);
    while (m->attached)
        pthread_cond_wait(&lp->cv, &lp->mu);
    pthread_mutex_unlock(&lp->mu);
    pthread_mutex_lock(&reg_mu);
    lp->members--;
    if (--reg_members == 0)
        stop_all();
    pthread_mutex_unlock(&reg_mu);
    m->loop = NULL;
}

int mqtt__loop_set_threads(unsigned n)
{
    if (n < 1 || n > MAX_LOOPS)
        return MQTT_ERR_INVAL;
    pthread_mutex_lock(&reg_mu);
    int rc = reg_running ? MQTT_ERR_STATE : MQTT_OK;
    if (rc == MQTT_OK)
        reg_threads = n;
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

void mqtt__loop_stats(mqtt_loop_stats *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&reg_mu);
    st->threads = reg_running;
    st->members = reg_members;
    for (unsigned i = 0; i < reg_running; i++) {
        st->wakeups += __atomic_load_n(&loops[i].wakeups, __ATOMIC_RELAXED);
        st->services += __atomic_load_n(&loops[i].services, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&reg_mu);
}
