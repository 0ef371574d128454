/*
 * The open workers: up to MAX_WORKERS threads, each running one blocking
 * transport open at a time from a shared queue and leaving as soon as the
 * queue is empty, so a process with every client connected runs none. A
 * worker's eventfd lets a cancel interrupt its open. Never calls the application.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop.h"
#include "opener.h"

#define MAX_WORKERS 4

typedef enum worker_state { W_FREE, W_BUSY, W_LEAVING } worker_state;

typedef struct worker {
    pthread_t thread;
    worker_state state;
    int cancel_fd;
    mqtt_open_job *job; /* the job running; NULL between jobs */
    void *owner;        /* its owner: the job itself may be gone once done */
} worker;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t job_done = PTHREAD_COND_INITIALIZER;
static mqtt_open_job *queue_head, *queue_tail;
static worker workers[MAX_WORKERS];
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static mqtt_open_job *pop_job(void)
{
    mqtt_open_job *j = queue_head;
    if (j) {
        queue_head = j->next;
        if (!queue_head)
            queue_tail = NULL;
    }
    return j;
}

static void run_job(worker *w, mqtt_open_job *j)
{
    mqtt_cancel cancel = {w->cancel_fd, j->cancelled, j->owner};
    j->tr = NULL;
    j->err[0] = '\0';
    /* A cancel that came before the eventfd was cleared is seen here. */
    if (j->cancelled(j->owner)) {
        j->rc = MQTT_ERR_CANCELLED;
        return;
    }
    /* NON-BLOCKING OPEN: this is the one call that blocks a thread. */
    if (j->tls)
        j->rc = mqtt__tls_open(j->tls, j->host, j->port, j->deadline, &cancel, j->ka,
                               j->tls_session, &j->tr, j->err, sizeof j->err);
    else
        j->rc = mqtt__tcp_open(j->host, j->port, j->deadline, &cancel, j->ka, &j->tr, j->err,
                               sizeof j->err);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        mqtt_open_job *j = pop_job();
        if (!j)
            break;
        w->job = j;
        w->owner = j->owner;
        pthread_mutex_unlock(&mu);
        mqtt__fd_clear(w->cancel_fd);
        run_job(w, j);
        j->done(j);
        pthread_mutex_lock(&mu);
        w->job = NULL;
        w->owner = NULL;
        pthread_cond_broadcast(&job_done);
    }
    w->state = W_LEAVING;
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* mu held: joins a worker that left, so its slot can be used again. */
static void join_left(worker *w)
{
    if (w->state != W_LEAVING)
        return;
    pthread_join(w->thread, NULL);
    close(w->cancel_fd);
    w->state = W_FREE;
}

/* A child of fork() has no workers: it forgets its parent's. */
static void forget_in_child(void)
{
    for (int i = 0; i < MAX_WORKERS; i++) {
        if (workers[i].state != W_FREE)
            close(workers[i].cancel_fd);
        workers[i].state = W_FREE;
        workers[i].job = NULL;
    }
    queue_head = queue_tail = NULL;
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&job_done, NULL);
}

static void lock(void)
{
    pthread_mutex_lock(&mu);
}

static void unlock(void)
{
    pthread_mutex_unlock(&mu);
}

static void watch_forks(void)
{
    (void)pthread_atfork(lock, unlock, forget_in_child);
}

/* mu held: starts a worker in a free slot unless MAX_WORKERS are busy. */
static int spawn(void)
{
    worker *w = NULL;
    for (int i = 0; i < MAX_WORKERS; i++) {
        join_left(&workers[i]);
        if (!w && workers[i].state == W_FREE)
            w = &workers[i];
    }
    if (!w)
        return MQTT_OK; /* the busy ones take the job when they are done */
    w->cancel_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->cancel_fd < 0)
        return mqtt__system_failure("eventfd", errno);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&w->thread, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        close(w->cancel_fd);
        return mqtt__system_failure("pthread_create", rc);
    }
    w->state = W_BUSY;
    w->job = NULL;
    return MQTT_OK;
}

int mqtt__open_submit(mqtt_open_job *j)
{
    pthread_once(&fork_once, watch_forks);
    pthread_mutex_lock(&mu);
    j->next = NULL;
    bool was_empty = queue_head == NULL;
    if (queue_tail)
        queue_tail->next = j;
    else
        queue_head = j;
    queue_tail = j;
    int rc = MQTT_OK;
    /* A worker between jobs takes this one too; otherwise one more starts. */
    bool idle = false;
    for (int i = 0; i < MAX_WORKERS && was_empty; i++)
        idle = idle || (workers[i].state == W_BUSY && !workers[i].job);
    if (!idle)
        rc = spawn();
    if (rc != MQTT_OK) {
        /* Take it back: without a thread the job would wait forever. */
        mqtt_open_job **p = &queue_head;
        while (*p != j)
            p = &(*p)->next;
        *p = NULL;
        queue_tail = NULL;
        for (mqtt_open_job *q = queue_head; q; q = q->next)
            queue_tail = q;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

static worker *running(const void *owner)
{
    for (int i = 0; i < MAX_WORKERS; i++)
        if (workers[i].state == W_BUSY && workers[i].job && workers[i].owner == owner)
            return &workers[i];
    return NULL;
}

void mqtt__open_poke(void *owner)
{
    pthread_mutex_lock(&mu);
    const worker *w = running(owner);
    if (w)
        mqtt__fd_signal(w->cancel_fd);
    pthread_mutex_unlock(&mu);
}

void mqtt__open_forget(void *owner)
{
    pthread_mutex_lock(&mu);
    for (mqtt_open_job **p = &queue_head; *p;) {
        if ((*p)->owner == owner)
            *p = (*p)->next;
        else
            p = &(*p)->next;
    }
    queue_tail = NULL;
    for (mqtt_open_job *q = queue_head; q; q = q->next)
        queue_tail = q;
    const worker *w;
    while ((w = running(owner)) != NULL) {
        mqtt__fd_signal(w->cancel_fd);
        pthread_cond_wait(&job_done, &mu);
    }
    pthread_mutex_unlock(&mu);
}

void mqtt__open_reap(void)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX_WORKERS; i++)
        join_left(&workers[i]);
    pthread_mutex_unlock(&mu);
}
