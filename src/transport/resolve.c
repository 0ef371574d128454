/*
 * Resolution without blocking: numeric addresses by getaddrinfo with
 * AI_NUMERICHOST (no lookup at all), names by c-ares (/etc/hosts, then DNS).
 * Each resolution owns a c-ares channel and an epoll set holding the
 * channel's sockets and a timerfd for its retries, so the caller polls one
 * fd. Nothing here waits; abandoning a resolution frees it at once.
 */
#include <ares.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "alloc.h"
#include "resolve.h"

struct mqtt_resolver {
    ares_channel channel;
    int epfd, timerfd;
    int status;        /* MQTT_ERR_INCOMPLETE until the answer */
    mqtt_addr *addrs;
    size_t n;
    char why[96];      /* c-ares's reason when it failed */
    char host[];
};

static const char *test_servers; /* mqtt__resolver_servers */

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_status;

static void init_ares(void)
{
    ares_init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/* Copies an address list into one block the caller frees. */
static int copy_addrs(const struct ares_addrinfo_node *node, mqtt_addr **out, size_t *n)
{
    size_t count = 0;
    for (const struct ares_addrinfo_node *p = node; p; p = p->ai_next)
        count++;
    mqtt_addr *a = mqtt__calloc(count ? count : 1, sizeof *a);
    if (!a)
        return MQTT_ERR_NOMEM;
    size_t i = 0;
    for (const struct ares_addrinfo_node *p = node; p; p = p->ai_next) {
        if (p->ai_addrlen > sizeof a[i].sa)
            continue;
        memcpy(&a[i].sa, p->ai_addr, p->ai_addrlen);
        a[i++].len = p->ai_addrlen;
    }
    *out = a;
    *n = i;
    return MQTT_OK;
}

static int numeric(const char *host, const char *port, mqtt_addr **out, size_t *n)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return MQTT_ERR_DNS;
    mqtt_addr *a = mqtt__calloc(1, sizeof *a);
    int rc = a ? MQTT_OK : MQTT_ERR_NOMEM;
    if (a && res->ai_addrlen <= sizeof a->sa) {
        memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
        a->len = res->ai_addrlen;
        *out = a;
        *n = 1;
    } else if (a) {
        mqtt__free(a);
        rc = MQTT_ERR_DNS;
    }
    freeaddrinfo(res);
    return rc;
}

static void answered(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    mqtt_resolver *r = arg;
    (void)timeouts;
    if (status == ARES_EDESTRUCTION || r->status != MQTT_ERR_INCOMPLETE) {
        ares_freeaddrinfo(res);
        return;
    }
    if (status == ARES_SUCCESS && res && res->nodes)
        r->status = copy_addrs(res->nodes, &r->addrs, &r->n);
    else
        r->status = MQTT_ERR_DNS;
    if (r->status == MQTT_OK && r->n == 0)
        r->status = MQTT_ERR_DNS;
    if (r->status == MQTT_ERR_DNS)
        snprintf(r->why, sizeof r->why, "%s",
                 status == ARES_SUCCESS ? "no address" : ares_strerror(status));
    ares_freeaddrinfo(res);
}

/* c-ares tells which of its sockets to watch; they go in the epoll set. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    mqtt_resolver *r = data;
    struct epoll_event ev = {.events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0),
                             .data.fd = fd};
    if (!readable && !writable) {
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL);
        return;
    }
    if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
        epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int close_on_exec(ares_socket_t fd, int type, void *ud)
{
    (void)type, (void)ud;
    return fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 ? 0 : -1;
}

/* Arms the timerfd for c-ares's next retry, or disarms it. */
static void arm_timer(mqtt_resolver *r)
{
    struct timeval tv;
    struct itimerspec its = {{0, 0}, {0, 0}};
    if (ares_timeout(r->channel, NULL, &tv)) {
        its.it_value.tv_sec = tv.tv_sec;
        its.it_value.tv_nsec = (long)tv.tv_usec * 1000;
        if (tv.tv_sec == 0 && tv.tv_usec == 0)
            its.it_value.tv_nsec = 1; /* zero would disarm it */
    }
    timerfd_settime(r->timerfd, 0, &its, NULL);
}

static int make_resolver(const char *host, mqtt_resolver **out)
{
    size_t hlen = strlen(host);
    mqtt_resolver *r = mqtt__calloc(1, sizeof *r + hlen + 1);
    if (!r)
        return MQTT_ERR_NOMEM;
    memcpy(r->host, host, hlen + 1);
    r->status = MQTT_ERR_INCOMPLETE;
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    r->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = r->timerfd};
    struct ares_options o = {.sock_state_cb = sock_state, .sock_state_cb_data = r};
    int rc = MQTT_OK;
    if (r->epfd < 0 || r->timerfd < 0 || epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->timerfd, &ev) != 0)
        rc = mqtt__system_failure("epoll", errno);
    else if (ares_init_options(&r->channel, &o, ARES_OPT_SOCK_STATE_CB) != ARES_SUCCESS)
        rc = MQTT_ERR_NOMEM; /* reading resolv.conf cannot fail it: defaults apply */
    if (rc != MQTT_OK) {
        mqtt__resolver_free(r);
        return rc;
    }
    ares_set_socket_configure_callback(r->channel, close_on_exec, NULL);
    if (test_servers && ares_set_servers_ports_csv(r->channel, test_servers) != ARES_SUCCESS) {
        mqtt__resolver_free(r);
        return MQTT_ERR_INVAL;
    }
    *out = r;
    return MQTT_OK;
}

/* .invalid never resolves (RFC 6761 section 6.4): say so without asking. */
static bool reserved_invalid(const char *host)
{
    size_t n = strlen(host);
    if (n && host[n - 1] == '.')
        n--;
    return (n == 7 && strncasecmp(host, "invalid", 7) == 0) ||
           (n > 8 && strncasecmp(host + n - 8, ".invalid", 8) == 0);
}

static int finish(mqtt_resolver *r, mqtt_addr **addrs, size_t *n, char *err, size_t errlen)
{
    if (r->status == MQTT_OK) {
        *addrs = r->addrs;
        *n = r->n;
        r->addrs = NULL;
    } else if (r->status == MQTT_ERR_DNS) {
        snprintf(err, errlen, "name resolution failed: %s: %s", r->host, r->why);
    }
    return r->status;
}

int mqtt__resolve_start(const char *host, unsigned port, mqtt_resolver **out, mqtt_addr **addrs,
                        size_t *n, char *err, size_t errlen)
{
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    *out = NULL;
    int rc = numeric(host, portstr, addrs, n);
    if (rc != MQTT_ERR_DNS)
        return rc;
    if (reserved_invalid(host)) {
        snprintf(err, errlen, "name resolution failed: %s: the .invalid domain never resolves",
                 host);
        return MQTT_ERR_DNS;
    }
    pthread_once(&ares_once, init_ares);
    if (ares_init_status != ARES_SUCCESS)
        return MQTT_ERR_NOMEM;
    mqtt_resolver *r = NULL;
    rc = make_resolver(host, &r);
    if (rc != MQTT_OK)
        return rc;
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    ares_getaddrinfo(r->channel, host, portstr, &hints, answered, r);
    if (r->status != MQTT_ERR_INCOMPLETE) { /* answered at once (/etc/hosts) */
        rc = finish(r, addrs, n, err, errlen);
        mqtt__resolver_free(r);
        return rc;
    }
    arm_timer(r);
    *out = r;
    return MQTT_ERR_INCOMPLETE;
}

void mqtt__resolver_servers(const char *csv)
{
    test_servers = csv;
}

int mqtt__resolver_fd(const mqtt_resolver *r)
{
    return r->epfd;
}

int mqtt__resolve_progress(mqtt_resolver *r, mqtt_addr **addrs, size_t *n, char *err,
                           size_t errlen)
{
    struct epoll_event evs[8];
    int k = epoll_wait(r->epfd, evs, 8, 0);
    for (int i = 0; i < k && r->status == MQTT_ERR_INCOMPLETE; i++) {
        int fd = evs[i].data.fd;
        if (fd == r->timerfd) {
            uint64_t ticks;
            ssize_t got = read(fd, &ticks, sizeof ticks);
            (void)got;
            continue;
        }
        bool rd = evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP);
        bool wr = evs[i].events & EPOLLOUT;
        ares_process_fd(r->channel, rd ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
    }
    if (r->status == MQTT_ERR_INCOMPLETE) /* retries and timeouts that fell due */
        ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    if (r->status == MQTT_ERR_INCOMPLETE)
        arm_timer(r);
    return finish(r, addrs, n, err, errlen);
}

void mqtt__resolver_free(mqtt_resolver *r)
{
    if (!r)
        return;
    if (r->channel)
        ares_destroy(r->channel);
    if (r->epfd >= 0)
        close(r->epfd);
    if (r->timerfd >= 0)
        close(r->timerfd);
    mqtt__free(r->addrs);
    mqtt__free(r);
}
