/*
 * The scripted broker of fake_broker.h. It trusts its client only as far as
 * the framing: a malformed or oversized packet ends the connection. Every
 * wait is a 50 ms poll that also checks the stop flag, so it never hangs.
 */
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fake_broker.h"

struct fake_broker {
    int listen_fd;
    uint16_t port;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    unsigned ended;
    fake_broker_conn last;
};

static bool stopping(fake_broker *b)
{
    pthread_mutex_lock(&b->mu);
    bool s = b->stop;
    pthread_mutex_unlock(&b->mu);
    return s;
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the client went away: its reads will tell it */
        p += w;
        n -= (size_t)w;
    }
}

static void send_ack(int fd, uint8_t type, uint16_t id)
{
    uint8_t b[4] = {type, 2, (uint8_t)(id >> 8), (uint8_t)id};
    send_all(fd, b, sizeof b);
}

/* PUBLISH of payload on "oom/t"; ids 1 and 2 for QoS 1 and 2. */
static void send_message(int fd, uint8_t qos, const char *payload)
{
    uint8_t b[64];
    size_t n = 2;
    b[n++] = 0;
    b[n++] = 5;
    memcpy(b + n, "oom/t", 5);
    n += 5;
    if (qos) {
        b[n++] = 0;
        b[n++] = qos;
    }
    memcpy(b + n, payload, strlen(payload));
    n += strlen(payload);
    b[0] = (uint8_t)(0x30 | qos << 1);
    b[1] = (uint8_t)(n - 2);
    send_all(fd, b, n);
}

/* Answers one whole packet (p: the body after the fixed header). False to close. */
static bool handle(int fd, uint8_t first, const uint8_t *p, size_t len, fake_broker_conn *st)
{
    uint16_t id = len >= 2 ? (uint16_t)(p[0] << 8 | p[1]) : 0;
    switch (first & 0xF0) {
    case 0x10: /* CONNECT */
        send_all(fd, (const uint8_t *)"\x20\x02\x00\x00", 4);
        break;
    case 0x30: { /* PUBLISH */
        uint8_t qos = (first >> 1) & 3;
        size_t tl = id; /* the topic length comes first */
        if (qos > 2 || len < 2 + tl + (qos ? 2u : 0u))
            return false;
        st->publishes[qos]++;
        uint16_t pid = qos ? (uint16_t)(p[2 + tl] << 8 | p[3 + tl]) : 0;
        if (qos)
            send_ack(fd, qos == 1 ? 0x40 : 0x50, pid);
        break;
    }
    case 0x50: /* PUBREC for our QoS 2 message */
        send_ack(fd, 0x62, id);
        break;
    case 0x60: /* PUBREL */
        send_ack(fd, 0x70, id);
        break;
    case 0x80: { /* SUBSCRIBE: grant each requested QoS, then send the messages */
        uint8_t b[64] = {0x90, 0, (uint8_t)(id >> 8), (uint8_t)id};
        size_t n = 4;
        for (size_t i = 2; i + 2 < len && n < sizeof b;) {
            i += 2 + (size_t)(p[i] << 8 | p[i + 1]);
            if (i < len)
                b[n++] = p[i++];
        }
        b[1] = (uint8_t)(n - 2);
        send_all(fd, b, n);
        send_message(fd, 0, "m0");
        send_message(fd, 1, "m1");
        send_message(fd, 2, "m2");
        break;
    }
    case 0xA0: /* UNSUBSCRIBE */
        send_ack(fd, 0xB0, id);
        break;
    case 0xC0: /* PINGREQ */
        send_all(fd, (const uint8_t *)"\xD0\x00", 2);
        break;
    case 0xE0: /* DISCONNECT */
        st->disconnect = true;
        return false;
    default: /* PUBACK, PUBCOMP from the client: nothing to answer */
        break;
    }
    return true;
}

/* Handles every whole packet in buf[0..*have); keeps the partial rest. */
static bool drain_packets(int fd, uint8_t *buf, size_t *have, fake_broker_conn *st)
{
    size_t off = 0;
    while (off + 2 <= *have) {
        size_t rem = 0, i = off + 1;
        for (unsigned shift = 0; i < *have && shift < 28; shift += 7, i++) {
            rem |= (size_t)(buf[i] & 0x7F) << shift;
            if (!(buf[i] & 0x80))
                break;
        }
        if (i >= *have)
            break; /* length incomplete */
        if (buf[i] & 0x80)
            return false;
        size_t body = i + 1;
        if (body + rem > *have)
            break;
        if (!handle(fd, buf[off], buf + body, rem, st))
            return false;
        off = body + rem;
    }
    memmove(buf, buf + off, *have - off);
    *have -= off;
    return true;
}

static void serve(fake_broker *b, int fd)
{
    enum { CAP = 64 * 1024 };
    uint8_t *buf = malloc(CAP);
    size_t have = 0;
    fake_broker_conn st = {{0}, false};
    while (buf && !stopping(b)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t n = recv(fd, buf + have, CAP - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        if (!drain_packets(fd, buf, &have, &st) || have == CAP)
            break;
    }
    free(buf);
    close(fd);
    pthread_mutex_lock(&b->mu);
    b->last = st;
    b->ended++;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void *broker_main(void *arg)
{
    fake_broker *b = arg;
    while (!stopping(b)) {
        struct pollfd p = {.fd = b->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept4(b->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            serve(b, fd);
    }
    return NULL;
}

fake_broker *fake_broker_start(void)
{
    fake_broker *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    b->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (b->listen_fd < 0 || bind(b->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(b->listen_fd, 8) != 0 ||
        getsockname(b->listen_fd, (struct sockaddr *)&a, &alen) != 0) {
        if (b->listen_fd >= 0)
            close(b->listen_fd);
        free(b);
        return NULL;
    }
    b->port = ntohs(a.sin_port);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (pthread_create(&b->thread, NULL, broker_main, b) != 0) {
        close(b->listen_fd);
        free(b);
        return NULL;
    }
    return b;
}

uint16_t fake_broker_port(const fake_broker *b)
{
    return b->port;
}

int fake_broker_new_client(const char *id, mqtt_client **out)
{
    mqtt_options o;
    mqtt_options_init(&o);
    o.client_id = id;
    o.client_id_len = strlen(id);
    *out = NULL;
    return mqtt_client_create(&o, out);
}

bool fake_broker_connect(const fake_broker *b, mqtt_client *c)
{
    mqtt_connect_options co;
    mqtt_connect_options_init(&co);
    co.host = "127.0.0.1";
    co.port = fake_broker_port(b);
    mqtt_connect_result res;
    return mqtt_client_connect(c, &co, &res) == MQTT_OK;
}

unsigned fake_broker_ended(fake_broker *b)
{
    pthread_mutex_lock(&b->mu);
    unsigned n = b->ended;
    pthread_mutex_unlock(&b->mu);
    return n;
}

bool fake_broker_wait_ended(fake_broker *b, unsigned ended, double timeout, fake_broker_conn *last)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)timeout;
    until.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&b->mu);
    int rc = 0;
    while (b->ended < ended && rc == 0)
        rc = pthread_cond_timedwait(&b->cv, &b->mu, &until);
    bool ok = b->ended >= ended;
    if (last)
        *last = b->last;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void fake_broker_stop(fake_broker *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    close(b->listen_fd);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}
