/*
 * Stream sockets, TCP and Unix, as a non-blocking state machine: resolve
 * (resolve.c), then a non-blocking connect to each address in turn until one
 * answers, then TCP_NODELAY and the keepalive options. Every step returns at
 * once; the caller polls the fd it shows. Once open, reads and writes never
 * block. It never waits and keeps no deadline: that is the caller's.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "alloc.h"
#include "resolve.h"
#include "stack.h"

enum { S_RESOLVE, S_CONNECT, S_OPEN, S_FAILED };

#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)0)->sun_path)

typedef struct sock_conn {
    mqtt_transport base; /* first: callers see only this */
    int state;
    bool tcp;            /* TCP (options, quick acks) rather than a Unix socket */
    mqtt_resolver *res;
    mqtt_addr *addrs;
    size_t n_addrs, next;
    bool has_ka;
    int ka[3];
    int status;          /* the error once S_FAILED */
    char why[320];       /* its words, or the last address's failure */
    char name[];         /* host or Unix path */
} sock_conn;

/* ---- the stream ------------------------------------------------------ */

static ssize_t sock_read(mqtt_transport *t, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(t->fd, buf, len, 0);
        if (n > 0) {
            /* Ack at once: a broker with Nagle on (mosquitto's default) holds
             * its next packet until our ACK, and a delayed ACK costs ~40 ms. */
            int one = 1;
            if (((sock_conn *)t)->tcp)
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

static ssize_t sock_write(mqtt_transport *t, const void *buf, size_t len)
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

/* Ends our side with a FIN after what was written; what the peer sent and
 * nobody read is taken first, so the close sends no reset that could cut
 * off what is still in flight to it. Never blocks. */
static void sock_finish(int fd)
{
    char sink[4096];
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        continue;
    close(fd);
}

static void sock_close(mqtt_transport *t)
{
    sock_conn *s = (sock_conn *)t;
    if (!s->res && t->fd >= 0) /* while resolving, fd is the resolver's */
        sock_finish(t->fd);
    mqtt__resolver_free(s->res);
    mqtt__free(s->addrs);
    mqtt__free(s);
}

/* ---- connecting ------------------------------------------------------ */

static void set_options(const sock_conn *s, int fd)
{
    int one = 1;
    if (!s->tcp)
        return;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!s->has_ka)
        return;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &s->ka[0], sizeof s->ka[0]);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &s->ka[1], sizeof s->ka[1]);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &s->ka[2], sizeof s->ka[2]);
}

/* "127.0.0.1:1883", "[::1]:1883" or the Unix path. */
static void describe_addr(const sock_conn *s, const mqtt_addr *a, char *out, size_t n)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (!s->tcp)
        snprintf(out, n, "%s", s->name);
    else if (getnameinfo((const struct sockaddr *)&a->sa, a->len, host, sizeof host, serv,
                         sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(out, n, "?");
    else
        snprintf(out, n, a->sa.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

static void address_failed(sock_conn *s, const mqtt_addr *a, int sys_errno)
{
    char addr[200], eb[96];
    describe_addr(s, a, addr, sizeof addr);
    snprintf(s->why, sizeof s->why, "connect failed: %.200s: %.96s", addr,
             strerror_r(sys_errno, eb, sizeof eb)); /* thread-safe strerror */
}

static int opened(sock_conn *s)
{
    set_options(s, s->base.fd);
    s->state = S_OPEN;
    s->base.events = 0;
    mqtt__free(s->addrs);
    s->addrs = NULL;
    return MQTT_OK;
}

/* Starts connecting to the next address that does not fail at once. */
static int connect_next(sock_conn *s)
{
    while (s->next < s->n_addrs) {
        const mqtt_addr *a = &s->addrs[s->next++];
        int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            address_failed(s, a, errno);
            continue;
        }
        s->base.fd = fd;
        if (connect(fd, (const struct sockaddr *)&a->sa, a->len) == 0)
            return opened(s);
        if (errno == EINPROGRESS) {
            s->state = S_CONNECT;
            s->base.events = POLLOUT;
            return MQTT_ERR_INCOMPLETE;
        }
        address_failed(s, a, errno);
        close(fd);
        s->base.fd = -1;
    }
    return MQTT_ERR_CONNECT;
}

/* The connect in flight: done, still going, or failed (then the next address). */
static int check_connect(sock_conn *s)
{
    struct pollfd p = {.fd = s->base.fd, .events = POLLOUT};
    if (poll(&p, 1, 0) == 0)
        return MQTT_ERR_INCOMPLETE; /* a zero timeout: only asks */
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(s->base.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        soerr = errno;
    if (soerr == 0)
        return opened(s);
    address_failed(s, &s->addrs[s->next - 1], soerr);
    close(s->base.fd);
    s->base.fd = -1;
    return connect_next(s);
}

static int fail(sock_conn *s, int status, char *err, size_t errlen)
{
    s->state = S_FAILED;
    s->status = status;
    s->base.fd = -1;
    s->base.events = 0;
    snprintf(err, errlen, "%s", s->why);
    return status;
}

/* Takes the resolver's answer: MQTT_OK with addresses, or its verdict. */
static int resolve_step(sock_conn *s, int rc, char *err, size_t errlen)
{
    if (rc == MQTT_ERR_INCOMPLETE) {
        s->base.fd = mqtt__resolver_fd(s->res);
        s->base.events = POLLIN;
        return rc;
    }
    mqtt__resolver_free(s->res);
    s->res = NULL;
    s->base.fd = -1;
    s->state = S_CONNECT;
    if (rc != MQTT_OK) {
        snprintf(s->why, sizeof s->why, "%s", rc == MQTT_ERR_DNS ? err : mqtt_strerror(rc));
        return fail(s, rc, err, errlen);
    }
    snprintf(s->why, sizeof s->why, "connect failed: %s: no address", s->name);
    rc = connect_next(s);
    return rc == MQTT_ERR_CONNECT ? fail(s, rc, err, errlen) : rc;
}

static int sock_progress(mqtt_transport *t, char *err, size_t errlen)
{
    sock_conn *s = (sock_conn *)t;
    int rc;
    switch (s->state) {
    case S_RESOLVE:
        rc = mqtt__resolve_progress(s->res, &s->addrs, &s->n_addrs, err, errlen);
        return resolve_step(s, rc, err, errlen);
    case S_CONNECT:
        rc = check_connect(s);
        return rc == MQTT_ERR_CONNECT ? fail(s, rc, err, errlen) : rc;
    case S_OPEN:
        return MQTT_OK;
    default:
        snprintf(err, errlen, "%s", s->why);
        return s->status;
    }
}

static void sock_waiting(const mqtt_transport *t, char *buf, size_t len)
{
    const sock_conn *s = (const sock_conn *)t;
    char addr[NI_MAXHOST + 16];
    if (s->state == S_RESOLVE) {
        snprintf(buf, len, "resolving '%s'", s->name);
        return;
    }
    if (s->state == S_CONNECT && s->next > 0)
        describe_addr(s, &s->addrs[s->next - 1], addr, sizeof addr);
    else
        snprintf(addr, sizeof addr, "%s", s->name);
    snprintf(buf, len, "connecting to %s", addr);
}

static const mqtt_transport_ops sock_ops = {sock_read, sock_write, sock_close, sock_progress,
                                            sock_waiting};

/* ---- open ------------------------------------------------------------ */

static int unix_address(sock_conn *s)
{
    struct sockaddr_un *sun;
    s->addrs = mqtt__calloc(1, sizeof *s->addrs);
    if (!s->addrs)
        return MQTT_ERR_NOMEM;
    sun = (struct sockaddr_un *)&s->addrs->sa;
    sun->sun_family = AF_UNIX;
    snprintf(sun->sun_path, sizeof sun->sun_path, "%s", s->name);
    s->addrs->len = (socklen_t)sizeof *sun;
    s->n_addrs = 1;
    return MQTT_OK;
}

int mqtt__sock_open(const mqtt_endpoint *ep, mqtt_transport **out, char *err, size_t errlen)
{
    bool tcp = ep->scheme != MQTT_SCHEME_UNIX;
    const char *name = tcp ? ep->host : ep->path;
    if (!name || !name[0] || (!tcp && strlen(name) >= SUN_PATH_SIZE)) {
        snprintf(err, errlen, "%s", tcp ? "no host to connect to" : "bad Unix socket path");
        return MQTT_ERR_INVAL;
    }
    size_t nlen = strlen(name);
    sock_conn *s = mqtt__calloc(1, sizeof *s + nlen + 1);
    if (!s)
        return MQTT_ERR_NOMEM;
    memcpy(s->name, name, nlen + 1);
    s->base.ops = &sock_ops;
    s->base.fd = -1;
    s->tcp = tcp;
    s->has_ka = ep->has_keepalive;
    memcpy(s->ka, ep->keepalive, sizeof s->ka);
    s->state = S_RESOLVE;
    int rc = tcp ? mqtt__resolve_start(name, ep->port, &s->res, &s->addrs, &s->n_addrs, err,
                                       errlen)
                 : unix_address(s);
    if (rc != MQTT_ERR_INCOMPLETE && rc != MQTT_OK) {
        if (rc != MQTT_ERR_DNS) /* the resolver words only its own failures */
            snprintf(err, errlen, "name resolution failed: %s: %s", name, mqtt_strerror(rc));
        mqtt__free(s);
        return rc;
    }
    rc = resolve_step(s, rc, err, errlen);
    if (rc != MQTT_OK && rc != MQTT_ERR_INCOMPLETE) {
        sock_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return rc;
}
