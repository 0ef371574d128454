/*
 * Transport tests: the URI parser, the injectable clock, and many opens
 * driven at once from one poll loop (as the shared I/O thread will): IPv4,
 * IPv6, localhost, names answered by a scripted DNS server (one address
 * refusing before one accepting), a refused port, names that fail, a Unix
 * socket, TLS against an in-process mbedtls server, bytes both ways through
 * each opened transport, and peers that stay silent while every progress
 * call returns at once. Then the blocking wrappers over the same machines.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>

#include "alloc.h"
#include "resolve.h"
#include "test.h"
#include "transport.h"

/* ---- the URI parser ---------------------------------------------------- */

typedef struct uri_case {
    const char *uri;
    unsigned plain_port;
    int scheme; /* -1: must fail */
    const char *host, *path;
    unsigned port;
    const char *why; /* for a failure: a piece of the message */
} uri_case;

static const uri_case uri_cases[] = {
    {"mqtt://broker.example", 0, MQTT_SCHEME_MQTT, "broker.example", NULL, 1883, NULL},
    {"mqtt://broker.example:1884", 0, MQTT_SCHEME_MQTT, "broker.example", NULL, 1884, NULL},
    {"mqtt://broker.example/", 0, MQTT_SCHEME_MQTT, "broker.example", NULL, 1883, NULL},
    {"MQTTS://Broker.Example", 0, MQTT_SCHEME_MQTTS, "Broker.Example", NULL, 8883, NULL},
    {"mqtts://10.0.0.1:9999", 0, MQTT_SCHEME_MQTTS, "10.0.0.1", NULL, 9999, NULL},
    {"ws://h", 0, MQTT_SCHEME_WS, "h", "/", 80, NULL},
    {"ws://h:8080/mqtt?x=1", 0, MQTT_SCHEME_WS, "h", "/mqtt?x=1", 8080, NULL},
    {"wss://h/mqtt", 0, MQTT_SCHEME_WSS, "h", "/mqtt", 443, NULL},
    {"unix:///run/mosquitto.sock", 0, MQTT_SCHEME_UNIX, NULL, "/run/mosquitto.sock", 0, NULL},
    {"mqtt://[::1]", 0, MQTT_SCHEME_MQTT, "::1", NULL, 1883, NULL},
    {"mqtt://[::1]:1999", 0, MQTT_SCHEME_MQTT, "::1", NULL, 1999, NULL},
    {"wss://[2001:db8::5]:8443/p", 0, MQTT_SCHEME_WSS, "2001:db8::5", "/p", 8443, NULL},
    {"mqtt://[fe80::1%eth0]:1", 0, MQTT_SCHEME_MQTT, "fe80::1%eth0", NULL, 1, NULL},
    {"mqtt://h:65535", 0, MQTT_SCHEME_MQTT, "h", NULL, 65535, NULL},
    {"broker.example", 0, MQTT_SCHEME_MQTT, "broker.example", NULL, 1883, NULL},
    {"broker.example", 1999, MQTT_SCHEME_MQTT, "broker.example", NULL, 1999, NULL},
    {"127.0.0.1", 0, MQTT_SCHEME_MQTT, "127.0.0.1", NULL, 1883, NULL},
    {"::1", 2000, MQTT_SCHEME_MQTT, "::1", NULL, 2000, NULL},
    {"[::1]", 0, MQTT_SCHEME_MQTT, "::1", NULL, 1883, NULL},
    {"localhost", 0, MQTT_SCHEME_MQTT, "localhost", NULL, 1883, NULL},
    {"http://h", 0, -1, NULL, NULL, 0, "unknown scheme 'http'"},
    {"://h", 0, -1, NULL, NULL, 0, "unknown scheme ''"},
    {"mqtt://", 0, -1, NULL, NULL, 0, "empty host"},
    {"mqtt://:1883", 0, -1, NULL, NULL, 0, "empty host"},
    {"ws:///path", 0, -1, NULL, NULL, 0, "empty host"},
    {"mqtt://h:", 0, -1, NULL, NULL, 0, "bad port ''"},
    {"mqtt://h:0", 0, -1, NULL, NULL, 0, "bad port '0'"},
    {"mqtt://h:65536", 0, -1, NULL, NULL, 0, "bad port '65536'"},
    {"mqtt://h:12a", 0, -1, NULL, NULL, 0, "bad port '12a'"},
    {"mqtt://h:-1", 0, -1, NULL, NULL, 0, "bad port"},
    {"mqtt://h:1883:1", 0, -1, NULL, NULL, 0, "bad port"},
    {"mqtt://h/path", 0, -1, NULL, NULL, 0, "mqtt:// takes no path"},
    {"mqtts://h/x", 0, -1, NULL, NULL, 0, "mqtts:// takes no path"},
    {"mqtt://h?x", 0, -1, NULL, NULL, 0, "junk '?'"},
    {"mqtt://h#x", 0, -1, NULL, NULL, 0, "junk '#'"},
    {"mqtt://bad_host!", 0, -1, NULL, NULL, 0, "bad character '!'"},
    {"mqtt://user:pw@h", 0, -1, NULL, NULL, 0, "user names in the URI are not supported"},
    {"mqtt://[::1", 0, -1, NULL, NULL, 0, "bad IPv6 address"},
    {"mqtt://[nope]:1", 0, -1, NULL, NULL, 0, "bad IPv6 address"},
    {"mqtt://[::1]x", 0, -1, NULL, NULL, 0, "junk after ']'"},
    {"mqtt://[::1]:", 0, -1, NULL, NULL, 0, "bad port"},
    {"mqtt://h ost", 0, -1, NULL, NULL, 0, "blank or control character"},
    {"", 0, -1, NULL, NULL, 0, "empty host"},
    {"host:1884", 0, -1, NULL, NULL, 0, "is not a host name"},
    {"broker.example", 70000, -1, NULL, NULL, 0, "bad port 70000"},
    {"unix://", 0, -1, NULL, NULL, 0, "absolute path"},
    {"unix://relative/x", 0, -1, NULL, NULL, 0, "absolute path"},
    {"unix:///", 0, -1, NULL, NULL, 0, "absolute path"},
};

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void test_uri_parser(void)
{
    char name[200], err[256];
    for (size_t i = 0; i < sizeof uri_cases / sizeof uri_cases[0]; i++) {
        const uri_case *c = &uri_cases[i];
        mqtt_endpoint ep;
        err[0] = '\0';
        int rc = mqtt__endpoint_parse(c->uri, c->plain_port, &ep, err, sizeof err);
        if (c->scheme < 0) {
            snprintf(name, sizeof name, "uri '%.60s' is refused: %.100s", c->uri, err);
            CHECK(rc == MQTT_ERR_INVAL && strstr(err, c->why) && !ep.host && !ep.path, name);
        } else {
            snprintf(name, sizeof name, "uri '%s' -> %s host %s port %u path %s", c->uri,
                     mqtt__scheme_name((mqtt_scheme)c->scheme), c->host ? c->host : "-",
                     c->port, c->path ? c->path : "-");
            CHECK(rc == MQTT_OK && (int)ep.scheme == c->scheme && same(ep.host, c->host) &&
                      same(ep.path, c->path) && ep.port == c->port && !ep.tls && !ep.proxy,
                  name);
        }
        mqtt__endpoint_clear(&ep);
    }
    char longpath[200] = "unix:///";
    memset(longpath + 8, 'a', 120);
    mqtt_endpoint ep;
    CHECK(mqtt__endpoint_parse(longpath, 0, &ep, err, sizeof err) == MQTT_ERR_INVAL &&
              strstr(err, "longer than"),
          "a Unix path longer than sun_path is refused");
    char longhost[300] = "mqtt://";
    memset(longhost + 7, 'a', 260);
    CHECK(mqtt__endpoint_parse(longhost, 0, &ep, err, sizeof err) == MQTT_ERR_INVAL &&
              strstr(err, "longer than 253"),
          "a host name longer than 253 bytes is refused");
    CHECK(mqtt__endpoint_parse(NULL, 0, &ep, err, sizeof err) == MQTT_ERR_INVAL,
          "no URI is refused");
    CHECK(mqtt__scheme_tls(MQTT_SCHEME_MQTTS) && mqtt__scheme_tls(MQTT_SCHEME_WSS) &&
              !mqtt__scheme_tls(MQTT_SCHEME_MQTT) && !mqtt__scheme_tls(MQTT_SCHEME_UNIX),
          "mqtts and wss are the TLS schemes");
}

/* ---- the clock --------------------------------------------------------- */

typedef struct fake_clock {
    double t, step; /* each reading adds step */
} fake_clock;

static double fake_now(void *ud)
{
    fake_clock *c = ud;
    double now = c->t;
    c->t += c->step;
    return now;
}

static void test_clock(void)
{
    double a = mqtt__now(), b = mqtt__clock_now(NULL);
    CHECK(b >= a && b - a < 1.0, "the default clock is mqtt__now (monotonic seconds)");
    fake_clock fc = {100.0, 0.5};
    mqtt_clock clock = {fake_now, &fc};
    CHECK(mqtt__clock_now(&clock) == 100.0 && mqtt__clock_now(&clock) == 100.5,
          "an injected clock is read through its function");
}

/* ---- local peers: listeners, echo, a scripted DNS server, TLS -------- */

static int listen_on(int family, const char *addr, unsigned *port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, addr, &s6->sin6_addr);
        len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        inet_pton(AF_INET, addr, &s4->sin_addr);
        len = sizeof *s4;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%.100s", path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, 16) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int udp_on_loopback(unsigned *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    bind(fd, (struct sockaddr *)&sa, len);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* The scripted DNS server: "two.test" has A 127.0.0.2 (refuses) then
 * 127.0.0.1, "one.test" A 127.0.0.1, anything else NXDOMAIN; AAAA: none. */
static void dns_answer(int fd)
{
    uint8_t q[512], r[600];
    struct sockaddr_storage from;
    socklen_t flen = sizeof from;
    ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
    if (n < 17)
        return;
    size_t i = 12;
    char name[256] = "";
    while (i < (size_t)n && q[i] && strlen(name) + q[i] + 2 < sizeof name) {
        strncat(name, (const char *)q + i + 1, q[i]);
        strcat(name, ".");
        i += (size_t)q[i] + 1;
    }
    size_t qend = i + 5;
    if (qend > (size_t)n)
        return;
    unsigned qtype = (unsigned)q[i + 1] << 8 | q[i + 2];
    static const uint8_t two[][4] = {{127, 0, 0, 2}, {127, 0, 0, 1}};
    bool known = strcmp(name, "two.test.") == 0 || strcmp(name, "one.test.") == 0;
    size_t count = !known || qtype != 1 ? 0 : strcmp(name, "two.test.") == 0 ? 2 : 1;
    memcpy(r, q, qend);
    r[2] = 0x81;
    r[3] = known ? 0x80 : 0x83; /* NOERROR or NXDOMAIN */
    r[6] = 0;
    r[7] = (uint8_t)count;
    r[8] = r[9] = r[10] = r[11] = 0;
    size_t len = qend;
    for (size_t k = 0; k < count; k++) {
        const uint8_t *ip = count == 2 ? two[k] : two[1];
        const uint8_t rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ip[0], ip[1], ip[2], ip[3]};
        memcpy(r + len, rr, sizeof rr);
        len += sizeof rr;
    }
    sendto(fd, r, len, 0, (struct sockaddr *)&from, flen);
}

/* The TLS server: a self-signed certificate for localhost and 127.0.0.1,
 * made with openssl as the busted TLS specs make theirs. */
typedef struct tls_server {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
    mbedtls_ssl_config conf;
    char dir[64], crt_path[96], key_path[96];
    bool ok;
} tls_server;

static void tls_server_init(tls_server *s)
{
    memset(s, 0, sizeof *s);
    mbedtls_entropy_init(&s->entropy);
    mbedtls_ctr_drbg_init(&s->drbg);
    mbedtls_x509_crt_init(&s->crt);
    mbedtls_pk_init(&s->key);
    mbedtls_ssl_config_init(&s->conf);
    snprintf(s->dir, sizeof s->dir, "/tmp/zmqtt-transport-XXXXXX");
    if (!mkdtemp(s->dir))
        return;
    snprintf(s->crt_path, sizeof s->crt_path, "%s/crt.pem", s->dir);
    snprintf(s->key_path, sizeof s->key_path, "%s/key.pem", s->dir);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
             "-keyout %s -out %s >/dev/null 2>&1", s->key_path, s->crt_path);
    s->ok = system(cmd) == 0 &&
            mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy, NULL, 0) == 0 &&
            mbedtls_x509_crt_parse_file(&s->crt, s->crt_path) == 0 &&
            mbedtls_pk_parse_keyfile(&s->key, s->key_path, NULL) == 0 &&
            mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
                                        MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT) == 0 &&
            mbedtls_ssl_conf_own_cert(&s->conf, &s->crt, &s->key) == 0;
    mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &s->drbg);
}

static void tls_server_free(tls_server *s)
{
    mbedtls_ssl_config_free(&s->conf);
    mbedtls_pk_free(&s->key);
    unlink(s->key_path); /* the files go with what was read from them */
    mbedtls_x509_crt_free(&s->crt);
    unlink(s->crt_path);
    mbedtls_ctr_drbg_free(&s->drbg);
    mbedtls_entropy_free(&s->entropy);
    rmdir(s->dir);
}

/* A connection the servers accepted: echoes what it reads, in TLS or not. */
typedef struct peer {
    int fd;
    bool tls;
    mbedtls_ssl_context ssl;
} peer;

#define MAX_PEERS 32
static peer peers[MAX_PEERS];
static size_t n_peers;

static int bio_send(void *ctx, const unsigned char *b, size_t n)
{
    ssize_t w = send(*(int *)ctx, b, n, MSG_NOSIGNAL);
    return w >= 0 ? (int)w : errno == EAGAIN ? MBEDTLS_ERR_SSL_WANT_WRITE : -1;
}

static int bio_recv(void *ctx, unsigned char *b, size_t n)
{
    ssize_t r = recv(*(int *)ctx, b, n, 0);
    return r >= 0 ? (int)r : errno == EAGAIN ? MBEDTLS_ERR_SSL_WANT_READ : -1;
}

static void accept_peer(int lfd, tls_server *tls)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 || n_peers == MAX_PEERS) {
        if (fd >= 0)
            close(fd);
        return;
    }
    peer *p = &peers[n_peers++];
    p->fd = fd;
    p->tls = tls != NULL;
    if (tls) {
        mbedtls_ssl_init(&p->ssl);
        mbedtls_ssl_setup(&p->ssl, &tls->conf);
        mbedtls_ssl_set_bio(&p->ssl, &p->fd, bio_send, bio_recv, NULL);
    }
}

static void serve_peer(peer *p)
{
    unsigned char buf[256];
    if (!p->tls) {
        ssize_t n = recv(p->fd, buf, sizeof buf, 0);
        if (n > 0)
            send(p->fd, buf, (size_t)n, MSG_NOSIGNAL);
        return;
    }
    int n = mbedtls_ssl_read(&p->ssl, buf, sizeof buf); /* runs the handshake first */
    if (n > 0)
        mbedtls_ssl_write(&p->ssl, buf, (size_t)n);
}

static void close_peers(void)
{
    for (size_t i = 0; i < n_peers; i++) {
        if (peers[i].tls)
            mbedtls_ssl_free(&peers[i].ssl);
        close(peers[i].fd);
    }
    n_peers = 0;
}

/* ---- many opens from one poll loop ------------------------------------ */

enum { J_OPENING, J_ECHO, J_DONE };

typedef struct job {
    const char *what;
    char uri[160];
    mqtt_tls_config *tls;
    int want;             /* the status the open ends with */
    const char *want_err; /* in its words */
    bool silent;          /* the peer never answers: stays opening */
    const char *dns;      /* the DNS servers for its resolution (NULL: the system's) */
    mqtt_transport *t;
    int stage, rc;
    char err[400];
    char echo[32];
    size_t echoed;
} job;

/* How long calls took, and how long they spent off the CPU (waiting):
 * a handshake step may compute for a while (slowly under valgrind), but
 * it must never wait. */
typedef struct loop_stats {
    unsigned calls;
    double slowest, waited;
    const char *which; /* the open with the slowest call */
    double t0, c0;
} loop_stats;

static void timer_start(loop_stats *st)
{
    st->t0 = test_now();
    st->c0 = test_cpu_now();
}

static void timer_stop(loop_stats *st, const job *j)
{
    double took = test_now() - st->t0, waited = took - (test_cpu_now() - st->c0);
    st->calls++;
    st->waited = waited > st->waited ? waited : st->waited;
    if (took > st->slowest) {
        st->slowest = took;
        st->which = j->what;
    }
}

static void job_start(job *j, loop_stats *st)
{
    mqtt_endpoint ep;
    j->rc = mqtt__endpoint_parse(j->uri, 0, &ep, j->err, sizeof j->err);
    mqtt__resolver_servers(j->dns);
    if (j->rc == MQTT_OK) {
        ep.tls = mqtt_tls_config_ref(j->tls);
        timer_start(st);
        j->rc = mqtt__transport_open(&ep, NULL, &j->t, j->err, sizeof j->err);
        timer_stop(st, j);
        mqtt__endpoint_clear(&ep);
    }
    j->stage = j->rc == MQTT_ERR_INCOMPLETE ? J_OPENING : J_DONE;
    snprintf(j->echo, sizeof j->echo, "hello %.20s", j->what);
    if (j->rc == MQTT_OK) {
        j->stage = J_ECHO;
        j->t->ops->write(j->t, j->echo, strlen(j->echo));
    }
}

static void job_step(job *j, loop_stats *st)
{
    if (j->stage == J_OPENING) {
        timer_start(st);
        j->rc = mqtt__transport_progress(j->t, j->err, sizeof j->err);
        timer_stop(st, j);
        if (j->rc == MQTT_OK) {
            j->stage = J_ECHO;
            ssize_t w = j->t->ops->write(j->t, j->echo, strlen(j->echo));
            if (w != (ssize_t)strlen(j->echo))
                j->rc = MQTT_ERR_IO;
        } else if (j->rc != MQTT_ERR_INCOMPLETE) {
            j->stage = J_DONE;
        }
        return;
    }
    char buf[64];
    ssize_t n = j->t->ops->read(j->t, buf, sizeof buf);
    if (n > 0 && j->echoed + (size_t)n <= strlen(j->echo) &&
        memcmp(buf, j->echo + j->echoed, (size_t)n) == 0)
        j->echoed += (size_t)n;
    else if (n != 0)
        j->rc = MQTT_ERR_IO;
    if (j->echoed == strlen(j->echo) || j->rc != MQTT_OK)
        j->stage = J_DONE;
}

typedef struct servers {
    int lfd[4];        /* TCP v4, TCP v6, Unix, TLS */
    int silent;        /* a listener that never accepts */
    int dns_fd, silent_dns_fd;
    char sock[100], dns[32], silent_dns[32];
    tls_server tls;
} servers;

static bool loop_busy(const job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (jobs[i].stage != J_DONE && !jobs[i].silent)
            return true;
    return false;
}

/* Polls every job's fd for its events plus the servers, stepping whatever is
 * ready, until every job that can end has ended (or 15 s pass). */
static void run_loop(job *jobs, size_t n, servers *sv, loop_stats *st)
{
    struct pollfd p[64 + MAX_PEERS];
    double give_up = test_now() + 15;
    while (loop_busy(jobs, n) && test_now() < give_up) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            bool open = jobs[i].stage == J_OPENING;
            p[k].fd = jobs[i].stage == J_DONE ? -1 : jobs[i].t->fd;
            p[k++].events = open ? jobs[i].t->events : POLLIN;
        }
        for (size_t i = 0; i < 4; i++)
            p[k++] = (struct pollfd){.fd = sv->lfd[i], .events = POLLIN};
        p[k++] = (struct pollfd){.fd = sv->dns_fd, .events = POLLIN};
        for (size_t i = 0; i < n_peers; i++)
            p[k++] = (struct pollfd){.fd = peers[i].fd, .events = POLLIN};
        if (poll(p, k, 100) < 0)
            break;
        for (size_t i = 0; i < n; i++)
            if (p[i].revents && jobs[i].stage != J_DONE)
                job_step(&jobs[i], st);
        for (size_t i = 0; i < 4; i++)
            if (p[n + i].revents)
                accept_peer(sv->lfd[i], i == 3 ? &sv->tls : NULL);
        if (p[n + 4].revents)
            dns_answer(sv->dns_fd);
        for (size_t i = 0; i + n + 5 < k; i++)
            if (p[n + 5 + i].revents)
                serve_peer(&peers[i]);
    }
}

static void check_jobs(const job *jobs, size_t n)
{
    char name[600];
    for (size_t i = 0; i < n; i++) {
        const job *j = &jobs[i];
        if (j->silent) {
            snprintf(name, sizeof name, "%s: still opening while the peer is silent (%s)",
                     j->what, mqtt_errname(j->rc));
            CHECK(j->rc == MQTT_ERR_INCOMPLETE && j->stage == J_OPENING, name);
        } else if (j->want == MQTT_OK) {
            snprintf(name, sizeof name, "%s: opens, and bytes go through it both ways (%s%s%s)",
                     j->what, mqtt_errname(j->rc), j->err[0] ? ": " : "", j->err);
            CHECK(j->rc == MQTT_OK && j->echoed == strlen(j->echo), name);
        } else {
            snprintf(name, sizeof name, "%s: fails with %s, \"%s\"", j->what,
                     mqtt_errname(j->want), j->err);
            CHECK(j->rc == j->want && strstr(j->err, j->want_err) != NULL, name);
        }
    }
}

static mqtt_tls_config *tls_config(const char *cafile, const char *server_name)
{
    mqtt_tls_options o;
    mqtt_tls_options_init(&o);
    o.cafile = cafile;
    o.server_name = server_name;
    mqtt_tls_config *cfg = NULL;
    char err[256];
    if (mqtt_tls_config_new(&o, &cfg, err, sizeof err) != MQTT_OK)
        printf("# tls config: %s\n", err);
    return cfg;
}

static char refused_err[100];

/* Every kind of open at once. Returns the jobs' count. */
static size_t make_jobs(job *jobs, const unsigned *port, unsigned refused, const char *sock,
                        mqtt_tls_config *good, mqtt_tls_config *wrong_name, bool v6)
{
    size_t n = 0;
#define JOB(w, want_, werr, ...)                                                             \
    do {                                                                                 \
        jobs[n] = (job){.what = (w), .want = (want_), .want_err = (werr)};               \
        snprintf(jobs[n].uri, sizeof jobs[n].uri, __VA_ARGS__);                          \
        n++;                                                                             \
    } while (0)
    JOB("IPv4 127.0.0.1", MQTT_OK, "", "mqtt://127.0.0.1:%u", port[0]);
    if (v6)
        JOB("IPv6 ::1", MQTT_OK, "", "mqtt://[::1]:%u", port[1]);
    JOB("localhost (/etc/hosts)", MQTT_OK, "", "mqtt://localhost:%u", port[0]);
    JOB("a name from DNS", MQTT_OK, "", "mqtt://one.test:%u", port[0]);
    JOB("two addresses, the first refusing", MQTT_OK, "", "mqtt://two.test:%u", port[0]);
    JOB("a Unix socket", MQTT_OK, "", "unix://%s", sock);
    JOB("TLS to 127.0.0.1", MQTT_OK, "", "mqtts://127.0.0.1:%u", port[3]);
    jobs[n - 1].tls = good;
    JOB("TLS to localhost", MQTT_OK, "", "mqtts://localhost:%u", port[3]);
    jobs[n - 1].tls = good;
    JOB("a refused port", MQTT_ERR_CONNECT, refused_err, "mqtt://127.0.0.1:%u", refused);
    JOB("a name DNS does not know", MQTT_ERR_DNS,
        "name resolution failed: nowhere.test: Domain name not found", "nowhere.test");
    JOB("nonexistent.invalid", MQTT_ERR_DNS, "name resolution failed: nonexistent.invalid",
        "nonexistent.invalid");
    JOB("a missing Unix socket", MQTT_ERR_CONNECT,
        "connect failed: /nonexistent/zmqtt.sock: No such file or directory",
        "unix:///nonexistent/zmqtt.sock");
    JOB("TLS with the wrong name", MQTT_ERR_TLS, "host name mismatch: certificate is not for "
        "wrong.example", "mqtts://127.0.0.1:%u", port[3]);
    jobs[n - 1].tls = wrong_name;
    JOB("TLS refused port", MQTT_ERR_CONNECT, "connect failed: 127.0.0.1:", "mqtts://127.0.0.1:%u",
        refused);
    jobs[n - 1].tls = good;
    JOB("TLS with no context: the system CA store", MQTT_ERR_TLS,
        "certificate not trusted (unknown CA)", "mqtts://localhost:%u", port[3]);
    /* WebSocket stacks on TCP and TLS; its own tests are spec/c/test_ws*.c. */
    JOB("ws:// to a refused port", MQTT_ERR_CONNECT, refused_err, "ws://127.0.0.1:%u/mqtt",
        refused);
    JOB("wss:// with the wrong name", MQTT_ERR_TLS, "host name mismatch: certificate is not "
        "for wrong.example", "wss://127.0.0.1:%u/mqtt", port[3]);
    jobs[n - 1].tls = wrong_name;
#undef JOB
    return n;
}

/* Each silent open, asked again and again, answers at once and goes on waiting. */
static void check_silent(job *jobs, size_t n)
{
    double slowest = 0;
    bool waiting = true;
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < n; i++) {
            if (!jobs[i].silent)
                continue;
            double t0 = test_now();
            int rc = mqtt__transport_progress(jobs[i].t, jobs[i].err, sizeof jobs[i].err);
            double took = test_now() - t0;
            slowest = took > slowest ? took : slowest;
            waiting = waiting && rc == MQTT_ERR_INCOMPLETE && jobs[i].t->fd >= 0 &&
                      jobs[i].t->events == POLLIN;
        }
    }
    char name[160];
    snprintf(name, sizeof name, "silent peers: 100 progress calls, each returns at once "
                                "(slowest %.2f ms), all still waiting for POLLIN", slowest * 1e3);
    CHECK(waiting && slowest < 0.1, name); /* a wait for a silent peer would not end */
}

/* The blocking wait over a silent open, on a clock that jumps a second per
 * reading: the deadline passes at once, and the error names the step. */
static void check_deadline(job *j, const char *step)
{
    fake_clock fc = {1000.49, 1.0};
    mqtt_clock clock = {fake_now, &fc};
    mqtt_transport_env env = {.clock = &clock};
    char err[300] = "", name[400];
    double t0 = test_now();
    int rc = mqtt__transport_wait(j->t, &env, 1000.5, NULL, err, sizeof err);
    snprintf(name, sizeof name, "%s: the injected clock passes the deadline: \"%s\"", j->what,
             err);
    CHECK(rc == MQTT_ERR_TIMEOUT && strstr(err, step) && test_now() - t0 < 0.5, name);
}

/* Fails each allocation of an open in turn: the open ends in MQTT_ERR_NOMEM
 * (or succeeds where the allocation was optional) and frees all it took. */
static void check_oom(servers *sv, const unsigned *port, mqtt_tls_config *good)
{
    const char *what[] = {"TCP", "a name from DNS", "TLS", "Unix"};
    char uris[4][160];
    snprintf(uris[0], sizeof uris[0], "mqtt://127.0.0.1:%u", port[0]);
    snprintf(uris[1], sizeof uris[1], "mqtt://one.test:%u", port[0]);
    snprintf(uris[2], sizeof uris[2], "mqtts://localhost:%u", port[3]);
    snprintf(uris[3], sizeof uris[3], "unix://%s", sv->sock);
    for (size_t u = 0; u < 4; u++) {
        bool clean = true;
        unsigned long k = 1, points = 0;
        for (; k < 64; k++) {
            long live = mqtt__alloc_live();
            job j = {.what = what[u], .tls = u == 2 ? good : NULL, .dns = sv->dns};
            memcpy(j.uri, uris[u], sizeof j.uri); /* same size: gcc -O1 saw a truncation */
            loop_stats st = {0};
            mqtt__alloc_fail_at(k);
            job_start(&j, &st);
            run_loop(&j, 1, sv, &st);
            points = mqtt__alloc_fail_at(0);
            mqtt__resolver_servers(NULL);
            if (j.t)
                j.t->ops->close(j.t);
            close_peers();
            clean = clean && (j.rc == MQTT_OK || j.rc == MQTT_ERR_NOMEM) &&
                    mqtt__alloc_live() == live;
            if (points < k)
                break; /* the k-th allocation was never made: every one has failed once */
        }
        char name[200];
        snprintf(name, sizeof name, "%s: each of its %lu allocations failing in turn ends the "
                                    "open cleanly, leaking nothing", what[u], k - 1);
        CHECK(clean && k > 1 && k < 64, name);
    }
}

static bool cancelled(void *ud)
{
    (void)ud;
    return true;
}

static void check_blocking(const unsigned *port, unsigned refused, unsigned silent_port)
{
    char err[300] = "", name[400];
    mqtt_transport *t = NULL;
    double deadline = mqtt__now() + 5;
    int rc = mqtt__tcp_open("127.0.0.1", port[0], deadline, NULL, (const int[3]){3, 10, 5}, &t,
                            err, sizeof err);
    CHECK(rc == MQTT_OK && t && t->fd >= 0 && t->events == 0,
          "mqtt__tcp_open (blocking) opens 127.0.0.1 with keepalive options");
    if (t)
        t->ops->close(t);
    t = NULL;
    rc = mqtt__tcp_open("127.0.0.1", refused, deadline, NULL, NULL, &t, err, sizeof err);
    snprintf(name, sizeof name, "mqtt__tcp_open to a refused port: \"%s\"", err);
    CHECK(rc == MQTT_ERR_CONNECT && !t && strstr(err, refused_err), name);
    rc = mqtt__tcp_open("nonexistent.invalid", 1883, deadline, NULL, NULL, &t, err, sizeof err);
    snprintf(name, sizeof name, "mqtt__tcp_open to nonexistent.invalid: \"%s\"", err);
    CHECK(rc == MQTT_ERR_DNS && !t && strstr(err, "name resolution failed"), name);

    int efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
    mqtt_cancel cancel = {efd, cancelled, NULL};
    void *session = NULL;
    mqtt_tls_config *cfg = tls_config(NULL, NULL);
    rc = mqtt__tls_open(cfg, "127.0.0.1", silent_port, deadline, &cancel, NULL, &session, &t,
                        err, sizeof err);
    CHECK(rc == MQTT_ERR_CANCELLED && !t && !session,
          "mqtt__tls_open waiting on a silent broker is cancelled through mqtt_cancel");
    mqtt_tls_config_unref(cfg);
    close(efd);
}

/* Starts the peers: listeners (port[0..4]: v4 echo, v6 echo, -, TLS, silent),
 * the Unix socket, both DNS servers; a refused port. */
static void servers_start(servers *sv, unsigned *port, unsigned *refused)
{
    unsigned dns_port, silent_dns_port;
    tls_server_init(&sv->tls);
    CHECK(sv->tls.ok, "a TLS server with a fresh certificate (openssl) is up");
    sv->lfd[0] = listen_on(AF_INET, "127.0.0.1", &port[0]);
    sv->lfd[1] = listen_on(AF_INET6, "::1", &port[1]);
    snprintf(sv->sock, sizeof sv->sock, "%s/broker.sock", sv->tls.dir);
    sv->lfd[2] = listen_unix(sv->sock);
    sv->lfd[3] = listen_on(AF_INET, "127.0.0.1", &port[3]);
    sv->silent = listen_on(AF_INET, "127.0.0.1", &port[4]); /* never accepts */
    int gone = listen_on(AF_INET, "127.0.0.1", refused);
    close(gone);
    snprintf(refused_err, sizeof refused_err, "connect failed: 127.0.0.1:%u: Connection refused",
             *refused);
    sv->dns_fd = udp_on_loopback(&dns_port);
    sv->silent_dns_fd = udp_on_loopback(&silent_dns_port);
    snprintf(sv->dns, sizeof sv->dns, "127.0.0.1:%u", dns_port);
    snprintf(sv->silent_dns, sizeof sv->silent_dns, "127.0.0.1:%u", silent_dns_port);
}

static void servers_stop(servers *sv)
{
    close_peers();
    for (size_t i = 0; i < 4; i++)
        if (sv->lfd[i] >= 0)
            close(sv->lfd[i]);
    close(sv->silent);
    close(sv->dns_fd);
    close(sv->silent_dns_fd);
    unlink(sv->sock);
    tls_server_free(&sv->tls);
}

int main(void)
{
    mqtt__alloc_track();
    test_uri_parser();
    test_clock();

    servers sv;
    unsigned port[5] = {0}, refused;
    servers_start(&sv, port, &refused);
    mqtt_tls_config *good = tls_config(sv.tls.crt_path, NULL);
    mqtt_tls_config *wrong = tls_config(sv.tls.crt_path, "wrong.example");
    job jobs[32];
    size_t n = make_jobs(jobs, port, refused, sv.sock, good, wrong, sv.lfd[1] >= 0);
    for (size_t i = 0; i < n; i++)
        if (strstr(jobs[i].uri, ".test"))
            jobs[i].dns = sv.dns;
    jobs[n] = (job){.what = "TLS to a silent broker", .silent = true, .tls = good};
    snprintf(jobs[n++].uri, sizeof jobs[0].uri, "mqtts://127.0.0.1:%u", port[4]);
    jobs[n] = (job){.what = "a silent DNS server", .silent = true, .dns = sv.silent_dns};
    snprintf(jobs[n++].uri, sizeof jobs[0].uri, "mqtt://silent.test:1");

    loop_stats st = {0};
    for (size_t i = 0; i < n; i++)
        job_start(&jobs[i], &st);
    mqtt__resolver_servers(NULL);
    run_loop(jobs, n, &sv, &st);
    check_jobs(jobs, n);
    char name[200];
    snprintf(name, sizeof name, "%zu opens from one poll loop: %u open/progress calls, none "
                                "waits (longest off-CPU %.2f ms; slowest call %.2f ms, %s)",
             n, st.calls, st.waited * 1e3, st.slowest * 1e3, st.which);
    /* Generous, as the CPU is shared; the silent peers below are the strict test. */
    CHECK(st.waited < 1.0, name);
    check_silent(jobs, n);
    check_deadline(&jobs[n - 2], "TLS handshake with 127.0.0.1 port");
    check_deadline(&jobs[n - 1], "resolving 'silent.test' timed out");
    for (size_t i = 0; i < n; i++)
        if (jobs[i].t)
            jobs[i].t->ops->close(jobs[i].t);
    check_blocking(port, refused, port[4]);
    check_oom(&sv, port, good);

    servers_stop(&sv);
    mqtt_tls_config_unref(good);
    mqtt_tls_config_unref(wrong);
    CHECK(mqtt__alloc_live() == 0, "every block the transports allocated is freed");
    return test_done();
}
