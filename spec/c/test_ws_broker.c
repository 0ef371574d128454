/*
 * The WebSocket transport against real servers started here on free loopback
 * ports and stopped by PID: mosquitto, behind websockify (Debian's mosquitto
 * is built without websockets), once plain and once with TLS (a certificate
 * made by openssl for the run). Over ws:// and wss:// the transport opens,
 * then carries CONNECT/CONNACK, SUBSCRIBE/SUBACK and PUBLISH both ways, a
 * small message and one of 100 kB (several frames each way). wss:// without
 * the test CA fails verification.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "test.h"
#include "transport.h"

#define MOSQUITTO "/usr/sbin/mosquitto"
#define WEBSOCKIFY "/usr/bin/websockify"
#define GATEWAY "spec/tools/mqtt_websockify.py" /* websockify, answering "mqtt" */

static char dir[64];
static pid_t procs[3] = {-1, -1, -1}; /* mosquitto, websockify (ws), websockify (wss) */

/* n distinct free ports: each socket stays bound until all are chosen, or
 * the kernel may hand out one port twice. */
static void free_ports(unsigned *out, size_t n)
{
    int fds[8];
    for (size_t i = 0; i < n && i < 8; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bind(fds[i], (struct sockaddr *)&sa, len);
        getsockname(fds[i], (struct sockaddr *)&sa, &len);
        out[i] = ntohs(sa.sin_port);
    }
    for (size_t i = 0; i < n && i < 8; i++)
        close(fds[i]);
}

static bool port_open(unsigned port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* Runs argv in its own process group (websockify forks per connection), its
 * output to a file in dir. */
static pid_t spawn(char *const argv[], const char *log)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, log);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        if (!freopen(path, "w", stdout) || !freopen(path, "a", stderr))
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* The certificate, mosquitto and the two gateways; true once every port answers. */
static bool servers_start(unsigned mqtt, unsigned ws, unsigned wss)
{
    char cmd[600], conf[128], crt[96], key[96], src[3][48], dst[48];
    snprintf(dir, sizeof dir, "/tmp/zmqtt-ws-XXXXXX");
    if (!mkdtemp(dir))
        return false;
    snprintf(crt, sizeof crt, "%s/crt.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
             "-keyout %s -out %s >/dev/null 2>&1", key, crt);
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", dir);
    FILE *f = system(cmd) == 0 ? fopen(conf, "w") : NULL;
    if (!f)
        return false;
    fprintf(f, "listener %u 127.0.0.1\nallow_anonymous true\nlog_dest file %s/mosquitto.log\n%s",
            mqtt, dir, getuid() == 0 ? "user root\n" : "");
    fclose(f);
    snprintf(src[1], sizeof src[1], "127.0.0.1:%u", ws);
    snprintf(src[2], sizeof src[2], "127.0.0.1:%u", wss);
    snprintf(dst, sizeof dst, "127.0.0.1:%u", mqtt);
    procs[0] = spawn((char *const[]){MOSQUITTO, "-c", conf, NULL}, "mosquitto.out");
    procs[1] = spawn((char *const[]){"/usr/bin/python3", GATEWAY, src[1], dst, NULL}, "ws.out");
    procs[2] = spawn((char *const[]){"/usr/bin/python3", GATEWAY, "--ssl-only", "--cert", crt, "--key", key,
                                     src[2], dst, NULL},
                     "wss.out");
    unsigned ports[3] = {mqtt, ws, wss};
    for (size_t i = 0; i < 3; i++) {
        int tries = 0;
        while (!port_open(ports[i]) && tries++ < 200 && waitpid(procs[i], NULL, WNOHANG) == 0)
            usleep(50000);
        if (!port_open(ports[i]))
            return false;
    }
    return true;
}

static void servers_stop(void)
{
    char cmd[128];
    for (size_t i = 0; i < 3; i++) {
        if (procs[i] > 0) {
            kill(-procs[i], SIGTERM); /* the group this test made for it */
            waitpid(procs[i], NULL, 0);
        }
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (dir[0] && system(cmd) != 0)
        printf("# could not remove %s\n", dir);
}

/* ---- MQTT over the transport, by hand ---------------------------------- */

static bool send_all(mqtt_transport *t, const uint8_t *b, size_t n)
{
    for (int idle = 0; n > 0 && idle < 100;) {
        ssize_t k = t->ops->write(t, b, n);
        if (k < 0)
            return false;
        if (k == 0) {
            struct pollfd p = {.fd = t->fd, .events = POLLOUT};
            poll(&p, 1, 100);
            idle++;
        }
        b += k > 0 ? k : 0;
        n -= (size_t)(k > 0 ? k : 0);
    }
    while (t->want_write) { /* bytes the transport took but holds: POLLOUT, then a read */
        struct pollfd p = {.fd = t->fd, .events = POLLOUT};
        uint8_t none;
        poll(&p, 1, 100);
        if (t->ops->read(t, &none, 0) < 0)
            return false;
    }
    return n == 0;
}

typedef struct rx {
    uint8_t buf[300000];
    size_t len;
} rx;

/* The length of the first whole packet in r, or 0. */
static size_t packet_len(const rx *r)
{
    size_t rl = 0, i = 1;
    for (unsigned shift = 0; i < r->len && i < 5; i++, shift += 7) {
        rl |= (size_t)(r->buf[i] & 0x7f) << shift;
        if (!(r->buf[i] & 0x80))
            return i + 1 + rl <= r->len ? i + 1 + rl : 0;
    }
    return 0;
}

/* Reads until a whole packet is in r; its length (taken off by the caller), or 0. */
static size_t recv_packet(mqtt_transport *t, rx *r)
{
    for (int idle = 0; idle < 50;) {
        size_t n = packet_len(r);
        if (n)
            return n;
        ssize_t k = t->ops->read(t, r->buf + r->len, sizeof r->buf - r->len);
        if (k < 0)
            return 0;
        if (k == 0) {
            struct pollfd p = {.fd = t->fd, .events = POLLIN};
            poll(&p, 1, 100);
            idle++;
        }
        r->len += (size_t)(k > 0 ? k : 0);
    }
    return 0;
}

static void consume(rx *r, size_t n)
{
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
}

/* A QoS 0 PUBLISH of n payload bytes to "t/ws"; its length. */
static size_t publish(uint8_t *out, const uint8_t *payload, size_t n)
{
    size_t rl = 2 + 4 + n, i = 1;
    out[0] = 0x30;
    do {
        out[i] = (uint8_t)(rl & 0x7f);
        rl >>= 7;
        if (rl)
            out[i] |= 0x80;
        i++;
    } while (rl);
    memcpy(out + i, "\x00\x04t/ws", 6);
    memcpy(out + i + 6, payload, n);
    return i + 6 + n;
}

static rx in;
static uint8_t msg[100000], pkt[100016];

static bool echo(mqtt_transport *t, size_t n)
{
    size_t pl = publish(pkt, msg, n);
    if (!send_all(t, pkt, pl))
        return false;
    size_t got = recv_packet(t, &in);
    bool same = got == pl && memcmp(in.buf, pkt, pl) == 0;
    consume(&in, got);
    return same;
}

static void round_trip(const char *scheme, unsigned port, mqtt_tls_config *cfg)
{
    char uri[100], err[400] = "", name[600];
    snprintf(uri, sizeof uri, "%s://127.0.0.1:%u/mqtt", scheme, port);
    mqtt_endpoint ep;
    mqtt_transport *t = NULL;
    int rc = mqtt__endpoint_parse(uri, 0, &ep, err, sizeof err);
    ep.tls = mqtt_tls_config_ref(cfg);
    if (rc == MQTT_OK)
        rc = mqtt__transport_open(&ep, NULL, &t, err, sizeof err);
    mqtt__endpoint_clear(&ep);
    if (rc == MQTT_ERR_INCOMPLETE)
        rc = mqtt__transport_wait(t, NULL, mqtt__now() + 10, NULL, err, sizeof err);
    snprintf(name, sizeof name, "%s: the transport opens through the gateway's upgrade (%s)", uri,
             rc == MQTT_OK ? "ok" : err);
    CHECK(rc == MQTT_OK, name);
    if (rc != MQTT_OK) {
        if (t)
            t->ops->close(t);
        return;
    }
    static const uint8_t connect_pkt[] = {0x10, 24, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30,
                                          0, 12, 'z', 'm', 'q', 't', 't', '-', 'w', 's', '-',
                                          't', 's', 't'};
    static const uint8_t sub[] = {0x82, 9, 0, 1, 0, 4, 't', '/', 'w', 's', 0};
    in.len = 0;
    bool ok = send_all(t, connect_pkt, sizeof connect_pkt);
    size_t n = ok ? recv_packet(t, &in) : 0;
    ok = n == 4 && memcmp(in.buf, "\x20\x02\x00\x00", 4) == 0;
    consume(&in, n);
    snprintf(name, sizeof name, "%s: CONNECT is answered by CONNACK (accepted)", scheme);
    CHECK(ok, name);
    ok = ok && send_all(t, sub, sizeof sub);
    n = ok ? recv_packet(t, &in) : 0;
    ok = n == 5 && memcmp(in.buf, "\x90\x03\x00\x01\x00", 5) == 0;
    consume(&in, n);
    snprintf(name, sizeof name, "%s: SUBSCRIBE is answered by SUBACK", scheme);
    CHECK(ok, name);
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 31 + 7);
    snprintf(name, sizeof name, "%s: a 5-byte and a 100 kB PUBLISH come back from the broker "
                                "byte for byte", scheme);
    CHECK(ok && echo(t, 5) && echo(t, sizeof msg), name);
    send_all(t, (const uint8_t *)"\xe0\x00", 2);
    t->ops->close(t);
}

static void wss_unverified(unsigned port)
{
    char uri[100], err[400] = "", name[600];
    snprintf(uri, sizeof uri, "wss://127.0.0.1:%u/mqtt", port);
    mqtt_endpoint ep;
    mqtt_transport *t = NULL;
    int rc = mqtt__endpoint_parse(uri, 0, &ep, err, sizeof err);
    if (rc == MQTT_OK)
        rc = mqtt__transport_open(&ep, NULL, &t, err, sizeof err);
    mqtt__endpoint_clear(&ep);
    if (rc == MQTT_ERR_INCOMPLETE)
        rc = mqtt__transport_wait(t, NULL, mqtt__now() + 10, NULL, err, sizeof err);
    if (t)
        t->ops->close(t);
    snprintf(name, sizeof name, "wss:// without the test CA verifies against the system store "
                                "and fails: \"%s\"", err);
    CHECK(rc == MQTT_ERR_TLS && strstr(err, "not trusted"), name);
}

int main(void)
{
    if (access(MOSQUITTO, X_OK) != 0 || access(WEBSOCKIFY, X_OK) != 0 ||
        access(GATEWAY, R_OK) != 0) {
        printf("ok 1 # SKIP mosquitto or websockify is not installed\n1..1\n");
        return 0;
    }
    mqtt__alloc_track();
    unsigned p[3];
    free_ports(p, 3);
    unsigned mqtt = p[0], ws = p[1], wss = p[2];
    bool up = servers_start(mqtt, ws, wss);
    CHECK(up, "mosquitto runs behind websockify, plain and with TLS");
    if (up) {
        char ca[128];
        snprintf(ca, sizeof ca, "%s/crt.pem", dir);
        mqtt_tls_options o;
        mqtt_tls_options_init(&o);
        o.cafile = ca;
        mqtt_tls_config *cfg = NULL;
        char err[256];
        if (mqtt_tls_config_new(&o, &cfg, err, sizeof err) != MQTT_OK)
            printf("# tls config: %s\n", err);
        round_trip("ws", ws, NULL);
        round_trip("wss", wss, cfg);
        wss_unverified(wss);
        mqtt_tls_config_unref(cfg);
    }
    servers_stop();
    CHECK(mqtt__alloc_live() == 0, "every block the transports allocated is freed");
    return test_done();
}
