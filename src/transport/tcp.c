/*
 * TCP transport: name resolution bounded by the connect deadline (getaddrinfo
 * runs in a detached helper thread that may be abandoned), non-blocking
 * connect over every address IPv4 and IPv6, TCP_NODELAY and keepalive options.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "transport.h"

double mqtt__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int ms_until(double deadline)
{
    double left = deadline - mqtt__now();
    if (left <= 0)
        return 0;
    return left > 3600 ? 3600000 : (int)(left * 1000.0) + 1;
}

/* Clears a cancel eventfd (or pipe) that became readable. */
static void drain_fd(int fd)
{
    uint64_t buf[8];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

int mqtt__wait_fd(int fd, short events, double deadline, const mqtt_cancel *cancel)
{
    struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = -1, .events = POLLIN}};
    if (cancel && cancel->fd >= 0)
        p[1].fd = cancel->fd;
    for (;;) {
        int ms = ms_until(deadline);
        if (ms == 0)
            return MQTT_ERR_TIMEOUT;
        int n = poll(p, 2, ms);
        if (n < 0 && errno != EINTR)
            return MQTT_ERR_SYSTEM;
        if (n <= 0)
            continue;
        if (p[1].revents) {
            drain_fd(p[1].fd);
            /* p[1] polls fd -1, so it has revents only when cancel is non-NULL. */
            if (cancel->cancelled(cancel->ud)) /* NOLINT(clang-analyzer-core.NullDereference) */
                return MQTT_ERR_CANCELLED;
        }
        if (p[0].revents)
            return MQTT_OK;
    }
}

/* ---- resolution with a deadline ------------------------------------- */

/* Shared by the waiting thread and the resolver; the last one out frees it. */
typedef struct resolve_job {
    pthread_mutex_t mu;
    int refs;
    int pipe[2];
    int rc;
    struct addrinfo *res;
    char port[8];
    char host[];
} resolve_job;

static void job_release(resolve_job *j)
{
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left)
        return;
    if (j->res)
        freeaddrinfo(j->res);
    close(j->pipe[0]);
    close(j->pipe[1]);
    pthread_mutex_destroy(&j->mu);
    mqtt__free(j);
}

static const struct addrinfo resolve_hints = {
    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};

static void *resolve_main(void *arg)
{
    resolve_job *j = arg;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(j->host, j->port, &resolve_hints, &res);
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->res = res;
    pthread_mutex_unlock(&j->mu);
    ssize_t w = write(j->pipe[1], "", 1);
    (void)w;
    job_release(j);
    return NULL;
}

static int resolve(const char *host, unsigned port, double deadline, const mqtt_cancel *cancel,
                   struct addrinfo **out, char *err, size_t errlen)
{
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    struct addrinfo hints = resolve_hints;
    hints.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(host, portstr, &hints, out) == 0)
        return MQTT_OK;

    size_t hlen = strlen(host);
    resolve_job *j = mqtt__calloc(1, sizeof *j + hlen + 1);
    if (!j)
        return MQTT_ERR_NOMEM;
    memcpy(j->host, host, hlen + 1);
    memcpy(j->port, portstr, sizeof portstr);
    j->refs = 2;
    pthread_mutex_init(&j->mu, NULL);
    if (pipe2(j->pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        pthread_mutex_destroy(&j->mu);
        mqtt__free(j);
        return MQTT_ERR_SYSTEM;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t tid;
    int started = pthread_create(&tid, &attr, resolve_main, j);
    pthread_attr_destroy(&attr);
    if (started != 0) {
        j->refs = 1;
        job_release(j);
        return MQTT_ERR_SYSTEM;
    }
    int rc = mqtt__wait_fd(j->pipe[0], POLLIN, deadline, cancel);
    pthread_mutex_lock(&j->mu);
    if (rc == MQTT_OK && j->rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(j->rc));
        rc = MQTT_ERR_DNS;
    } else if (rc == MQTT_OK) {
        *out = j->res;
        j->res = NULL;
    } else if (rc == MQTT_ERR_TIMEOUT) {
        snprintf(err, errlen, "resolving '%s' timed out", host);
    }
    pthread_mutex_unlock(&j->mu);
    job_release(j);
    return rc;
}

/* ---- the TCP stream ------------------------------------------------- */

static ssize_t tcp_read(mqtt_transport *t, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(t->fd, buf, len, 0);
        if (n > 0) {
            /* Ack at once: a broker with Nagle on (mosquitto's default) holds
             * its next packet until our ACK, and a delayed ACK costs ~40 ms. */
            int one = 1;
            setsockopt(t->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
            return n;
        }
        if (n == 0)
            return -MQTT_ERR_CLOSED;
        if (errno == EINTR)
            continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -MQTT_ERR_IO;
    }
}

static ssize_t tcp_write(mqtt_transport *t, const void *buf, size_t len)
{
    for (;;) {
        ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -MQTT_ERR_IO;
    }
}

static void tcp_close(mqtt_transport *t)
{
    close(t->fd);
    mqtt__free(t);
}

static const mqtt_transport_ops tcp_ops = {tcp_read, tcp_write, tcp_close};

static void set_options(int fd, const int ka[3])
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!ka)
        return;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &ka[0], sizeof ka[0]);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &ka[1], sizeof ka[1]);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &ka[2], sizeof ka[2]);
}

static void describe_addr(const struct addrinfo *ai, char *out, size_t n)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(out, n, "?");
    else
        snprintf(out, n, ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

/* Connects one address; returns the socket or -status. */
static int connect_one(const struct addrinfo *ai, double deadline, const mqtt_cancel *cancel,
                       int *sys_errno)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0) {
        *sys_errno = errno;
        return -MQTT_ERR_CONNECT;
    }
    int rc = MQTT_OK;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            *sys_errno = errno;
            rc = MQTT_ERR_CONNECT;
        } else {
            rc = mqtt__wait_fd(fd, POLLOUT, deadline, cancel);
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (rc == MQTT_OK && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr)) {
                *sys_errno = soerr ? soerr : errno;
                rc = MQTT_ERR_CONNECT;
            }
        }
    }
    if (rc != MQTT_OK) {
        close(fd);
        return -rc;
    }
    return fd;
}

int mqtt__tcp_open(const char *host, unsigned port, double deadline, const mqtt_cancel *cancel,
                   const int ka[3], mqtt_transport **out, char *err, size_t errlen)
{
    struct addrinfo *list = NULL;
    snprintf(err, errlen, "cannot connect to %s port %u", host, port);
    int rc = resolve(host, port, deadline, cancel, &list, err, errlen);
    if (rc != MQTT_OK)
        return rc;
    int fd = -MQTT_ERR_CONNECT;
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        int sys_errno = 0;
        fd = connect_one(ai, deadline, cancel, &sys_errno);
        if (fd >= 0)
            break;
        char addr[NI_MAXHOST + 16], eb[128];
        describe_addr(ai, addr, sizeof addr);
        if (fd == -MQTT_ERR_TIMEOUT)
            snprintf(err, errlen, "connecting to %s timed out", addr);
        else if (fd == -MQTT_ERR_CONNECT)
            snprintf(err, errlen, "cannot connect to %s: %s", addr,
                     strerror_r(sys_errno, eb, sizeof eb)); /* thread-safe strerror */
        if (fd == -MQTT_ERR_TIMEOUT || fd == -MQTT_ERR_CANCELLED)
            break;
    }
    freeaddrinfo(list);
    if (fd < 0)
        return -fd;
    set_options(fd, ka);
    mqtt_transport *t = mqtt__calloc(1, sizeof *t);
    if (!t) {
        close(fd);
        return MQTT_ERR_NOMEM;
    }
    t->ops = &tcp_ops;
    t->fd = fd;
    *out = t;
    return MQTT_OK;
}
