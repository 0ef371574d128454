/*
 * Proxy tests: proxy URIs, no_proxy and the choice from the environment
 * (tables of cases), then scripted proxies played by this thread on a
 * loopback listener, step by step, checking the exact bytes of each SOCKS5
 * and HTTP CONNECT handshake, the refusals in words, replies one byte at a
 * time, bytes past the answer kept for the stream, and every allocation
 * failing in turn. Then real proxies from Debian (tinyproxy, microsocks)
 * started on free ports and stopped by PID, with a real mosquitto behind
 * them: an MQTT CONNECT/CONNACK round trip through each, also in TLS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "proxy.h"
#include "test.h"
#include "transport.h"

extern char **environ;

/* ---- proxy URIs ------------------------------------------------------ */

typedef struct uri_case {
    const char *uri;
    int scheme; /* -1: must fail */
    const char *host;
    unsigned port;
    const char *user, *password;
    const char *why; /* for a failure: a piece of the message */
} uri_case;

static const uri_case uri_cases[] = {
    {"socks5://proxy.example", MQTT_SCHEME_SOCKS5, "proxy.example", 1080, NULL, NULL, NULL},
    {"socks5h://proxy.example:9050", MQTT_SCHEME_SOCKS5, "proxy.example", 9050, NULL, NULL, NULL},
    {"SOCKS5://u:p@10.0.0.1:1", MQTT_SCHEME_SOCKS5, "10.0.0.1", 1, "u", "p", NULL},
    {"http://proxy.example", MQTT_SCHEME_HTTP, "proxy.example", 1080, NULL, NULL, NULL},
    {"http://proxy.example:3128/", MQTT_SCHEME_HTTP, "proxy.example", 3128, NULL, NULL, NULL},
    {"proxy.example:8080", MQTT_SCHEME_HTTP, "proxy.example", 8080, NULL, NULL, NULL},
    {"proxy.example", MQTT_SCHEME_HTTP, "proxy.example", 1080, NULL, NULL, NULL},
    {"http://[::1]:3128", MQTT_SCHEME_HTTP, "::1", 3128, NULL, NULL, NULL},
    {"socks5://[2001:db8::7]", MQTT_SCHEME_SOCKS5, "2001:db8::7", 1080, NULL, NULL, NULL},
    {"http://alice@h", MQTT_SCHEME_HTTP, "h", 1080, "alice", "", NULL},
    {"http://alice:@h", MQTT_SCHEME_HTTP, "h", 1080, "alice", "", NULL},
    {"http://al%69ce:p%40ss%3Aw%2f@h:1", MQTT_SCHEME_HTTP, "h", 1, "alice", "p@ss:w/", NULL},
    {"http://a:p@ss@h", MQTT_SCHEME_HTTP, "h", 1080, "a", "p@ss", NULL},
    {"http://:secret@h", MQTT_SCHEME_HTTP, "h", 1080, "", "secret", NULL},
    {"https://h", -1, NULL, 0, NULL, NULL, "https:// proxies are not supported"},
    {"socks4://h", -1, NULL, 0, NULL, NULL, "socks4:// proxies are not supported"},
    {"socks4a://h", -1, NULL, 0, NULL, NULL, "socks4a:// proxies are not supported"},
    {"ftp://h", -1, NULL, 0, NULL, NULL, "unknown proxy scheme 'ftp'"},
    {"mqtt://h", -1, NULL, 0, NULL, NULL, "unknown proxy scheme 'mqtt'"},
    {"http://", -1, NULL, 0, NULL, NULL, "empty host"},
    {"", -1, NULL, 0, NULL, NULL, "empty host"},
    {"http://u:p@", -1, NULL, 0, NULL, NULL, "empty host in 'http://u:***@'"},
    {"http://h:0", -1, NULL, 0, NULL, NULL, "bad port '0'"},
    {"http://h:65536", -1, NULL, 0, NULL, NULL, "bad port '65536'"},
    {"http://h:x", -1, NULL, 0, NULL, NULL, "bad port 'x'"},
    {"http://h/path", -1, NULL, 0, NULL, NULL, "takes no path"},
    {"http://h?x=1", -1, NULL, 0, NULL, NULL, "takes no path"},
    {"http://h p", -1, NULL, 0, NULL, NULL, "blank or control character"},
    {"http://b@d!:1", -1, NULL, 0, NULL, NULL, "bad character '!'"},
    {"http://u:p%zz@h", -1, NULL, 0, NULL, NULL, "bad percent escape"},
    {"http://u:p%4@h", -1, NULL, 0, NULL, NULL, "bad percent escape"},
    {"http://u:p%00@h", -1, NULL, 0, NULL, NULL, "bad percent escape"},
    {"http://[::1", -1, NULL, 0, NULL, NULL, "bad IPv6 address"},
};

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void test_uris(void)
{
    char name[300], err[300];
    for (size_t i = 0; i < sizeof uri_cases / sizeof uri_cases[0]; i++) {
        const uri_case *c = &uri_cases[i];
        mqtt_endpoint ep;
        err[0] = '\0';
        int rc = mqtt__proxy_parse(c->uri, &ep, err, sizeof err);
        if (c->scheme < 0) {
            snprintf(name, sizeof name, "proxy '%.60s' is refused: %.160s", c->uri, err);
            CHECK(rc == MQTT_ERR_INVAL && strstr(err, c->why) && !ep.host && !ep.user, name);
        } else {
            snprintf(name, sizeof name, "proxy '%s' -> %s host %s port %u user %s password %s",
                     c->uri, mqtt__scheme_name(ep.scheme), c->host, c->port,
                     c->user ? c->user : "-", c->password ? c->password : "-");
            CHECK(rc == MQTT_OK && (int)ep.scheme == c->scheme && same(ep.host, c->host) &&
                      ep.port == c->port && same(ep.user, c->user) &&
                      same(ep.password, c->password) && !ep.path,
                  name);
        }
        mqtt__endpoint_clear(&ep);
    }
    mqtt_endpoint ep;
    CHECK(mqtt__proxy_parse("http://user:hunter2@h:0", &ep, err, sizeof err) == MQTT_ERR_INVAL &&
              !strstr(err, "hunter2") && strstr(err, "http://user:***@h:0"),
          "an error quotes the proxy URI with its password hidden");
    char longuser[400] = "socks5://";
    memset(longuser + 9, 'u', 256);
    strcat(longuser, ":p@h");
    CHECK(mqtt__proxy_parse(longuser, &ep, err, sizeof err) == MQTT_ERR_INVAL &&
              strstr(err, "at most 255 bytes"),
          "a SOCKS5 user name over 255 bytes is refused");
    CHECK(mqtt__proxy_parse(NULL, &ep, err, sizeof err) == MQTT_ERR_INVAL &&
              strstr(err, "no proxy URI"),
          "no proxy URI is refused");
    CHECK(mqtt__endpoint_parse("socks5://h", 0, &ep, err, sizeof err) == MQTT_ERR_INVAL &&
              strstr(err, "unknown scheme 'socks5'"),
          "a proxy scheme is no broker URI");
}

/* ---- no_proxy and the environment ------------------------------------- */

typedef struct no_proxy_case {
    const char *host, *no_proxy;
    bool match;
} no_proxy_case;

static const no_proxy_case no_proxy_cases[] = {
    {"broker.example", "*", true},
    {"10.0.0.1", "*", true},
    {"broker.example", "", false},
    {"broker.example", "broker.example", true},
    {"BROKER.Example", "broker.EXAMPLE", true},
    {"broker.example", "example", true},
    {"broker.example", ".example", true},
    {"broker.example", "example.", true},
    {"a.b.broker.example", "broker.example", true},
    {"notbroker.example", "broker.example", false},
    {"broker.example", "a.broker.example", false},
    {"broker.example.", "broker.example", true},
    {"broker.example", "other.example, broker.example", true},
    {"broker.example", " other.example ,broker.example ", true},
    {"broker.example", "other,,broker.example", true},
    {"broker.example", "other.example", false},
    {"broker.example", "*.example", false}, /* "*" is a wildcard only alone */
    {"broker.example", "other *", false},
    {"broker.example", "other broker.example", false}, /* curl stops at a blank */
    {"localhost", "localhost,127.0.0.1", true},
    {"127.0.0.1", "localhost,127.0.0.1", true},
    {"127.0.0.2", "127.0.0.1", false},
    {"127.0.0.2", "127.0.0.0/8", true},
    {"128.0.0.1", "127.0.0.0/8", false},
    {"10.1.2.3", "10.1.0.0/16", true},
    {"10.2.2.3", "10.1.0.0/16", false},
    {"10.2.2.3", "10.1.0.0/33", false},
    {"10.2.2.3", "0.0.0.0/0", true},
    {"10.0.0.1", "10.0.0", false}, /* an address matches addresses, never as a suffix */
    {"::1", "::1", true},
    {"::1", "0:0::1", true},
    {"2001:db8::5", "2001:db8::/32", true},
    {"2001:db9::5", "2001:db8::/32", false},
    {"2001:db8::5", "2001:db8::4/127", true},
    {"2001:db8::5", "2001:db8::6/127", false},
    {"::1", "localhost", false},
    {"example", "broker.example", false},
};

static void test_no_proxy(void)
{
    char name[200];
    for (size_t i = 0; i < sizeof no_proxy_cases / sizeof no_proxy_cases[0]; i++) {
        const no_proxy_case *c = &no_proxy_cases[i];
        snprintf(name, sizeof name, "no_proxy '%s' %s '%s'", c->no_proxy,
                 c->match ? "exempts" : "does not exempt", c->host);
        CHECK(mqtt__no_proxy_match(c->host, c->no_proxy) == c->match, name);
    }
}

/* A scripted environment: "name=value" strings. */
typedef struct env_case {
    const char *target;
    const char *vars[6];
    const char *want; /* the proxy URI chosen, NULL: direct */
} env_case;

static const char *table_get(const char *name, void *ud)
{
    const env_case *c = ud;
    size_t n = strlen(name);
    for (size_t i = 0; i < 6 && c->vars[i]; i++)
        if (strncmp(c->vars[i], name, n) == 0 && c->vars[i][n] == '=')
            return c->vars[i] + n + 1;
    return NULL;
}

static const env_case env_cases[] = {
    {"mqtt://b", {NULL}, NULL},
    {"mqtt://b", {"http_proxy=http://hp:1"}, "http://hp:1"},
    {"ws://b/mqtt", {"http_proxy=http://hp:1"}, "http://hp:1"},
    {"mqtt://b", {"HTTP_PROXY=http://HP:1"}, NULL}, /* never the upper-case one */
    {"mqtt://b", {"HTTP_PROXY=http://HP:1", "ALL_PROXY=socks5://all:1"}, "socks5://all:1"},
    {"mqtts://b", {"http_proxy=http://hp:1"}, NULL},
    {"mqtts://b", {"https_proxy=http://sp:1", "http_proxy=http://hp:1"}, "http://sp:1"},
    {"wss://b", {"https_proxy=http://sp:1"}, "http://sp:1"},
    {"mqtts://b", {"HTTPS_PROXY=http://SP:1"}, "http://SP:1"},
    {"mqtts://b", {"https_proxy=http://sp:1", "HTTPS_PROXY=http://SP:1"}, "http://sp:1"},
    {"mqtts://b", {"https_proxy=", "HTTPS_PROXY=http://SP:1"}, "http://SP:1"},
    {"ws://b", {"https_proxy=http://sp:1"}, NULL},
    {"mqtt://b", {"all_proxy=socks5://all:1"}, "socks5://all:1"},
    {"wss://b", {"ALL_PROXY=socks5://ALL:1"}, "socks5://ALL:1"},
    {"mqtt://b", {"all_proxy=socks5://all:1", "ALL_PROXY=socks5://ALL:1"}, "socks5://all:1"},
    {"mqtt://b", {"all_proxy=socks5://all:1", "http_proxy=http://hp:1"}, "http://hp:1"},
    {"mqtt://b", {"all_proxy=", "http_proxy="}, NULL},
    {"unix:///run/m.sock", {"all_proxy=socks5://all:1", "http_proxy=http://hp:1"}, NULL},
    {"mqtt://b", {"http_proxy=http://hp:1", "no_proxy=b"}, NULL},
    {"mqtt://b.example", {"http_proxy=http://hp:1", "NO_PROXY=.example"}, NULL},
    {"mqtt://b.example", {"http_proxy=http://hp:1", "no_proxy=other", "NO_PROXY=example"},
     "http://hp:1"},
    {"mqtt://b.example", {"http_proxy=http://hp:1", "no_proxy=", "NO_PROXY=example"}, NULL},
    {"mqtts://10.1.1.1", {"all_proxy=socks5://all:1", "no_proxy=10.0.0.0/8"}, NULL},
    {"mqtts://[::1]", {"all_proxy=socks5://all:1", "no_proxy=::1"}, NULL},
    {"mqtt://b", {"all_proxy=socks5://all:1", "no_proxy=*"}, NULL},
};

static void test_env(void)
{
    char name[300];
    for (size_t i = 0; i < sizeof env_cases / sizeof env_cases[0]; i++) {
        const env_case *c = &env_cases[i];
        mqtt_endpoint ep;
        char err[200], *uri = NULL;
        int rc = mqtt__endpoint_parse(c->target, 0, &ep, err, sizeof err);
        if (rc == MQTT_OK)
            rc = mqtt__proxy_select(&ep, table_get, (void *)c, &uri);
        snprintf(name, sizeof name, "env {%s%s%s%s} for %s: %s", c->vars[0] ? c->vars[0] : "",
                 c->vars[1] ? ", " : "", c->vars[1] ? c->vars[1] : "",
                 c->vars[2] ? ", ..." : "", c->target, c->want ? c->want : "direct");
        CHECK(rc == MQTT_OK && same(uri, c->want), name);
        mqtt__free(uri);
        mqtt__endpoint_clear(&ep);
    }
    /* The same through the process environment. */
    mqtt_endpoint ep;
    char err[200], *uri = NULL;
    mqtt__endpoint_parse("mqtts://broker.example", 0, &ep, err, sizeof err);
    setenv("https_proxy", "socks5://from-env:1", 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    int rc = mqtt__proxy_from_env(&ep, &uri);
    CHECK(rc == MQTT_OK && same(uri, "socks5://from-env:1"),
          "mqtt__proxy_from_env reads the process environment");
    mqtt__free(uri);
    setenv("no_proxy", "example", 1);
    rc = mqtt__proxy_from_env(&ep, &uri);
    CHECK(rc == MQTT_OK && !uri, "mqtt__proxy_from_env: no_proxy exempts the broker");
    unsetenv("https_proxy");
    unsetenv("no_proxy");
    mqtt__endpoint_clear(&ep);
}

/* ---- scripted proxies ---------------------------------------------------- */

typedef struct bytes {
    const char *p;
    size_t n;
} bytes;
#define B(s) {(s), sizeof(s) - 1}

typedef struct script {
    const char *what;
    const char *proxy;  /* %u: the listener's port */
    const char *target; /* the broker URI */
    bytes expect[3];    /* what the client sends at each step */
    bytes reply[3];     /* what the proxy answers */
    int want;           /* the status the open ends with */
    const char *want_err;
    bytes after;        /* for an open: what the stream reads first */
} script;

/* SOCKS5 requests: greeting, user/password, connect. */
#define S5_HELLO "\x05\x01\x00"
#define S5_HELLO_AUTH "\x05\x02\x00\x02"
#define S5_OK_V4 "\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"
#define S5_CONNECT_NAME "\x05\x01\x00\x03\x0e" "broker.example" "\x07\x5b"

static const script scripts[] = {
    {"SOCKS5, no auth, a name for the proxy to resolve", "socks5://127.0.0.1:%u",
     "mqtt://broker.example",
     {B(S5_HELLO), B(S5_CONNECT_NAME)},
     {B("\x05\x00"), B(S5_OK_V4 "MQTT")},
     MQTT_OK, NULL, B("MQTT")},
    {"SOCKS5, user and password (RFC 1929)", "socks5h://alice:s%%40cret@127.0.0.1:%u",
     "mqtt://broker.example:1884",
     {B(S5_HELLO_AUTH), B("\x01\x05" "alice" "\x06" "s@cret"),
      B("\x05\x01\x00\x03\x0e" "broker.example" "\x07\x5c")},
     {B("\x05\x02"), B("\x01\x00"), B(S5_OK_V4)},
     MQTT_OK, NULL, {NULL, 0}},
    {"SOCKS5 with credentials, the proxy wants none", "socks5://u:p@127.0.0.1:%u",
     "mqtt://broker.example",
     {B(S5_HELLO_AUTH), B(S5_CONNECT_NAME)},
     {B("\x05\x00"), B(S5_OK_V4)},
     MQTT_OK, NULL, {NULL, 0}},
    {"SOCKS5 to an IPv4 broker, bound IPv6 address", "socks5://127.0.0.1:%u",
     "mqtt://10.1.2.3:8883",
     {B(S5_HELLO), B("\x05\x01\x00\x01\x0a\x01\x02\x03\x22\xb3")},
     {B("\x05\x00"), B("\x05\x00\x00\x04" "0123456789abcdef" "\x12\x34" "rest")},
     MQTT_OK, NULL, B("rest")},
    {"SOCKS5 to an IPv6 broker, bound name", "socks5://127.0.0.1:%u",
     "mqtt://[2001:db8::1]:1883",
     {B(S5_HELLO), B("\x05\x01\x00\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                     "\x00\x01\x07\x5b")},
     {B("\x05\x00"), B("\x05\x00\x00\x03\x05" "bound" "\x00\x01" "x")},
     MQTT_OK, NULL, B("x")},
    {"SOCKS5 bound name of length 0", "socks5://127.0.0.1:%u", "mqtt://broker.example",
     {B(S5_HELLO), B(S5_CONNECT_NAME)},
     {B("\x05\x00"), B("\x05\x00\x00\x03\x00\x00\x01")},
     MQTT_OK, NULL, {NULL, 0}},
    {"SOCKS5 reply 5", "socks5://127.0.0.1:%u", "mqtt://broker.example",
     {B(S5_HELLO), B(S5_CONNECT_NAME)},
     {B("\x05\x00"), B("\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")},
     MQTT_ERR_PROXY, "proxy refused: SOCKS5 reply 5 (connection refused) for broker.example port "
                     "1883", {NULL, 0}},
    {"SOCKS5 reply 4", "socks5://127.0.0.1:%u", "mqtt://broker.example",
     {B(S5_HELLO), B(S5_CONNECT_NAME)},
     {B("\x05\x00"), B("\x05\x04\x00\x01")},
     MQTT_ERR_PROXY, "proxy refused: SOCKS5 reply 4 (host unreachable)", {NULL, 0}},
    {"SOCKS5 reply 99", "socks5://127.0.0.1:%u", "mqtt://broker.example",
     {B(S5_HELLO), B(S5_CONNECT_NAME)},
     {B("\x05\x00"), B("\x05\x63\x00\x01")},
     MQTT_ERR_PROXY, "proxy refused: SOCKS5 reply 99 (unassigned)", {NULL, 0}},
    {"SOCKS5 wrong password", "socks5://u:bad@127.0.0.1:%u", "mqtt://broker.example",
     {B(S5_HELLO_AUTH), B("\x01\x01u\x03" "bad")},
     {B("\x05\x02"), B("\x01\x01")},
     MQTT_ERR_PROXY, "proxy authentication failed: the SOCKS5 proxy 127.0.0.1 port", {NULL, 0}},
    {"SOCKS5 wants credentials, none given", "socks5://127.0.0.1:%u", "mqtt://broker.example",
     {B(S5_HELLO)}, {B("\x05\xff")},
     MQTT_ERR_PROXY, "proxy authentication failed: the SOCKS5 proxy 127.0.0.1 port",
     {NULL, 0}},
    {"SOCKS5 chooses a method not offered", "socks5://127.0.0.1:%u", "mqtt://broker.example",
     {B(S5_HELLO)}, {B("\x05\x02")},
     MQTT_ERR_PROXY, "chose an authentication method we did not offer", {NULL, 0}},
    {"not a SOCKS5 proxy", "socks5://127.0.0.1:%u", "mqtt://broker.example",
     {B(S5_HELLO)}, {B("HTTP/1.0 400 Bad\r\n\r\n")},
     MQTT_ERR_PROXY, "does not answer as a SOCKS5 proxy", {NULL, 0}},
    {"SOCKS5 bad address type", "socks5://127.0.0.1:%u", "mqtt://broker.example",
     {B(S5_HELLO), B(S5_CONNECT_NAME)},
     {B("\x05\x00"), B("\x05\x00\x00\x07")},
     MQTT_ERR_PROXY, "an unknown address type", {NULL, 0}},
    {"SOCKS5 proxy closes mid-reply", "socks5://127.0.0.1:%u", "mqtt://broker.example",
     {B(S5_HELLO), B(S5_CONNECT_NAME)},
     {B("\x05\x00"), B("\x05\x00\x00\x01\x7f")},
     MQTT_ERR_PROXY, "closed the connection during the SOCKS5 handshake", {NULL, 0}},
    {"HTTP CONNECT", "http://127.0.0.1:%u", "mqtt://broker.example",
     {B("CONNECT broker.example:1883 HTTP/1.1\r\nHost: broker.example:1883\r\n\r\n")},
     {B("HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n" "\x20\x02\x00\x00")},
     MQTT_OK, NULL, B("\x20\x02\x00\x00")},
    {"HTTP CONNECT with Basic credentials", "http://Aladdin:open%%20sesame@127.0.0.1:%u",
     "mqtts://[2001:db8::1]",
     {B("CONNECT [2001:db8::1]:8883 HTTP/1.1\r\nHost: [2001:db8::1]:8883\r\n"
        "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n")},
     {B("HTTP/1.0 200 OK\r\n\r\n")},
     MQTT_ERR_INCOMPLETE, NULL, {NULL, 0}},
    {"HTTP CONNECT, a user without a password", "http://user@127.0.0.1:%u", "mqtt://b:1",
     {B("CONNECT b:1 HTTP/1.1\r\nHost: b:1\r\nProxy-Authorization: Basic dXNlcjo=\r\n\r\n")},
     {B("HTTP/1.1 204 No Content\r\n\r\n")},
     MQTT_OK, NULL, {NULL, 0}},
    {"HTTP 407", "http://127.0.0.1:%u", "mqtt://10.0.0.1:1883",
     {B("CONNECT 10.0.0.1:1883 HTTP/1.1\r\nHost: 10.0.0.1:1883\r\n\r\n")},
     {B("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n")},
     MQTT_ERR_PROXY, "proxy refused: 407 Proxy Authentication Required (HTTP CONNECT to "
                     "10.0.0.1 port 1883; no credentials in the proxy URI)", {NULL, 0}},
    {"HTTP 403 without a reason", "http://u:p@127.0.0.1:%u", "mqtt://10.0.0.1:1883",
     {B("CONNECT 10.0.0.1:1883 HTTP/1.1\r\nHost: 10.0.0.1:1883\r\n"
        "Proxy-Authorization: Basic dTpw\r\n\r\n")},
     {B("HTTP/1.1 403\r\n\r\n")},
     MQTT_ERR_PROXY, "proxy refused: 403 (HTTP CONNECT to 10.0.0.1 port 1883)", {NULL, 0}},
    {"HTTP answer that is not HTTP", "http://127.0.0.1:%u", "mqtt://10.0.0.1:1883",
     {B("CONNECT 10.0.0.1:1883 HTTP/1.1\r\nHost: 10.0.0.1:1883\r\n\r\n")},
     {B("SSH-2.0-OpenSSH\r\n\r\n")},
     MQTT_ERR_PROXY, "its answer is not an HTTP/1 status line", {NULL, 0}},
    {"HTTP proxy closes before the end of its header", "http://127.0.0.1:%u",
     "mqtt://10.0.0.1:1883",
     {B("CONNECT 10.0.0.1:1883 HTTP/1.1\r\nHost: 10.0.0.1:1883\r\n\r\n")},
     {B("HTTP/1.1 200 OK\r\n")},
     MQTT_ERR_PROXY, "closed the connection during the HTTP CONNECT", {NULL, 0}},
};

static int listen_loopback(unsigned *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) != 0 || listen(fd, 16) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A port nothing listens on. */
static unsigned closed_port(void)
{
    unsigned port = 0;
    int fd = listen_loopback(&port);
    close(fd);
    return port;
}

/* Opens target through proxy (URIs); rc as mqtt__transport_open. */
static int open_via(const char *proxy, const char *target, mqtt_tls_config *tls,
                    mqtt_transport **t, char *err, size_t errlen)
{
    mqtt_endpoint ep;
    *t = NULL;
    int rc = mqtt__endpoint_parse(target, 0, &ep, err, errlen);
    if (rc != MQTT_OK)
        return rc;
    ep.tls = mqtt_tls_config_ref(tls);
    ep.proxy = mqtt__calloc(1, sizeof *ep.proxy);
    rc = ep.proxy ? mqtt__proxy_parse(proxy, ep.proxy, err, errlen) : MQTT_ERR_NOMEM;
    if (rc == MQTT_OK)
        rc = mqtt__transport_open(&ep, NULL, t, err, errlen);
    mqtt__endpoint_clear(&ep);
    return rc;
}

/* One turn: waits (at most 2 s) for the client's fd or srv, then progress. */
static int turn(mqtt_transport *t, int rc, int srv, char *err, size_t errlen)
{
    if (rc != MQTT_ERR_INCOMPLETE)
        return rc;
    struct pollfd p[2] = {{.fd = t->fd, .events = t->events}, {.fd = srv, .events = POLLIN}};
    poll(p, 2, 2000);
    return mqtt__transport_progress(t, err, errlen);
}

/* Reads what the client sends until n bytes came or the client stops. */
static size_t gather(mqtt_transport *t, int *rc, int srv, char *buf, size_t n, char *err,
                     size_t errlen)
{
    size_t got = 0;
    double give_up = test_now() + 3;
    while (got < n && test_now() < give_up) {
        ssize_t r = recv(srv, buf + got, n - got, MSG_DONTWAIT);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0 || (*rc != MQTT_ERR_INCOMPLETE && *rc != MQTT_OK))
            break;
        *rc = turn(t, *rc, srv, err, errlen);
    }
    return got;
}

/* Sends a reply, one byte at a time (with a progress call after each) when split. */
static void answer(mqtt_transport *t, int *rc, int srv, const bytes *b, bool split, char *err,
                   size_t errlen)
{
    for (size_t i = 0; i < b->n;) {
        size_t n = split ? 1 : b->n;
        ssize_t w = send(srv, b->p + i, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        i += (size_t)w;
        if (split && *rc == MQTT_ERR_INCOMPLETE)
            *rc = mqtt__transport_progress(t, err, errlen);
    }
}

typedef struct run {
    mqtt_transport *t;
    int rc, srv;
    bool bytes_ok;         /* every request exactly as expected */
    char err[400], waiting[300];
    char sent[3][600];
} run;

/* TLS goes on over the proxy's stream: its handshake starts and waits for
 * the broker, which this script does not play. */
static void tls_next(run *r)
{
    for (int i = 0; i < 100 && r->rc == MQTT_ERR_INCOMPLETE; i++) {
        r->rc = mqtt__transport_progress(r->t, r->err, sizeof r->err);
        r->t->ops->waiting(r->t, r->waiting, sizeof r->waiting);
        if (strncmp(r->waiting, "TLS handshake", 13) == 0)
            return;
        struct pollfd p = {.fd = r->t->fd, .events = r->t->events};
        poll(&p, 1, 20);
    }
}

/* Plays sc as the proxy listening on lfd. */
static void play(const script *sc, int lfd, unsigned port, bool split, run *r)
{
    char proxy[200];
    snprintf(proxy, sizeof proxy, sc->proxy, port);
    memset(r, 0, sizeof *r);
    r->srv = -1;
    r->bytes_ok = true;
    r->rc = open_via(proxy, sc->target, NULL, &r->t, r->err, sizeof r->err);
    struct pollfd lp = {.fd = lfd, .events = POLLIN};
    for (int i = 0; i < 100 && r->rc == MQTT_ERR_INCOMPLETE && r->srv < 0; i++) {
        if (poll(&lp, 1, 20) > 0)
            r->srv = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        else
            r->rc = turn(r->t, r->rc, -1, r->err, sizeof r->err);
    }
    for (size_t s = 0; s < 3 && sc->expect[s].p && r->srv >= 0; s++) {
        size_t got = gather(r->t, &r->rc, r->srv, r->sent[s], sc->expect[s].n, r->err,
                            sizeof r->err);
        r->bytes_ok = r->bytes_ok && got == sc->expect[s].n &&
                      memcmp(r->sent[s], sc->expect[s].p, got) == 0;
        if (s == 0 && r->t)
            r->t->ops->waiting(r->t, r->waiting, sizeof r->waiting);
        answer(r->t, &r->rc, r->srv, &sc->reply[s], split, r->err, sizeof r->err);
    }
    if (r->srv >= 0 && sc->want != MQTT_OK && sc->want != MQTT_ERR_INCOMPLETE)
        shutdown(r->srv, SHUT_WR); /* a refusing proxy closes */
    if (sc->want == MQTT_ERR_INCOMPLETE) {
        tls_next(r);
        return;
    }
    for (int i = 0; i < 50 && r->rc == MQTT_ERR_INCOMPLETE && r->srv >= 0; i++)
        r->rc = turn(r->t, r->rc, -1, r->err, sizeof r->err);
}

static void end_run(run *r)
{
    if (r->t)
        r->t->ops->close(r->t);
    if (r->srv >= 0)
        close(r->srv);
    r->t = NULL;
    r->srv = -1;
}

/* Reads n bytes from the stream (a split reply may still be arriving). */
static bool read_exact(mqtt_transport *t, char *buf, size_t n)
{
    size_t got = 0;
    for (double until = test_now() + 2; got < n && test_now() < until;) {
        ssize_t r = t->ops->read(t, buf + got, n - got);
        if (r < 0)
            return false;
        got += (size_t)r;
        struct pollfd p = {.fd = t->fd, .events = POLLIN};
        if (got < n)
            poll(&p, 1, 100);
    }
    return got == n;
}

/* After an open: the stream reads what followed the answer, then carries bytes both ways. */
static bool stream_works(run *r, const bytes *after)
{
    char buf[64];
    mqtt_transport *t = r->t;
    if (after->n && (!read_exact(t, buf, after->n) || memcmp(buf, after->p, after->n) != 0))
        return false;
    if (t->ops->write(t, "ping", 4) != 4)
        return false;
    if (recv(r->srv, buf, 4, MSG_WAITALL) != 4 || memcmp(buf, "ping", 4) != 0)
        return false;
    send(r->srv, "pong", 4, MSG_NOSIGNAL);
    return read_exact(t, buf, 4) && memcmp(buf, "pong", 4) == 0;
}

static void check_script(const script *sc, int lfd, unsigned port, bool split)
{
    run r;
    char name[900];
    play(sc, lfd, port, split, &r);
    const char *how = split ? ", replies one byte at a time" : "";
    if (sc->want == MQTT_OK) {
        bool works = r.rc == MQTT_OK && stream_works(&r, &sc->after);
        snprintf(name, sizeof name, "%s%s: exact requests, opens (%s%s%s), the stream works",
                 sc->what, how, mqtt_errname(r.rc), r.err[0] ? ": " : "", r.err);
        CHECK(r.bytes_ok && works, name);
    } else if (sc->want == MQTT_ERR_INCOMPLETE) {
        snprintf(name, sizeof name, "%s%s: exact requests, then TLS waits for the broker (%s)",
                 sc->what, how, r.waiting);
        CHECK(r.bytes_ok && r.rc == MQTT_ERR_INCOMPLETE && r.t->events == POLLIN &&
                  strstr(r.waiting, "TLS handshake with 2001:db8::1 port 8883"),
              name);
    } else {
        snprintf(name, sizeof name, "%s%s: %s, \"%s\"", sc->what, how, mqtt_errname(r.rc),
                 r.err);
        CHECK(r.bytes_ok && r.rc == sc->want && strstr(r.err, sc->want_err), name);
    }
    bool socks = strncmp(sc->proxy, "socks5", 6) == 0;
    if (!split && (sc == &scripts[0] || strcmp(sc->what, "HTTP CONNECT") == 0)) {
        char want[200];
        snprintf(want, sizeof want, "%s with proxy 127.0.0.1 port %u (to broker.example port "
                                    "1883)", socks ? "SOCKS5 handshake" : "HTTP CONNECT", port);
        snprintf(name, sizeof name, "waiting() names the proxy step: \"%s\"", r.waiting);
        CHECK(strcmp(r.waiting, want) == 0, name);
    }
    end_run(&r);
}

/* An HTTP proxy that sends the broker's first bytes with its header, in
 * one write, and surplus larger than one read. */
static void check_surplus(int lfd, unsigned port)
{
    static const script sc = {
        "", "http://127.0.0.1:%u", "mqtt://b",
        {B("CONNECT b:1883 HTTP/1.1\r\nHost: b:1883\r\n\r\n")},
        {B("HTTP/1.1 200 OK\r\n\r\n0123456789")}, MQTT_OK, NULL, {NULL, 0}};
    run r;
    play(&sc, lfd, port, false, &r);
    char a[4] = "", b[16] = "";
    ssize_t n1 = r.rc == MQTT_OK ? r.t->ops->read(r.t, a, sizeof a) : -1;
    ssize_t n2 = r.rc == MQTT_OK ? r.t->ops->read(r.t, b, sizeof b) : -1;
    CHECK(n1 == 4 && memcmp(a, "0123", 4) == 0 && n2 == 6 && memcmp(b, "456789", 6) == 0,
          "HTTP: the bytes after the header are the stream's first, across reads");
    end_run(&r);
}

/* An HTTP answer header longer than the 8192 bytes taken. */
static void check_long_header(int lfd, unsigned port)
{
    static char reply[9000];
    size_t n = (size_t)snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\n");
    while (n + 40 < sizeof reply)
        n += (size_t)snprintf(reply + n, sizeof reply - n, "X-Padding: %026zu\r\n", n);
    script sc = {"", "http://127.0.0.1:%u", "mqtt://b",
                 {B("CONNECT b:1883 HTTP/1.1\r\nHost: b:1883\r\n\r\n")}, {{reply, n}},
                 MQTT_ERR_PROXY, NULL, {NULL, 0}};
    run r;
    play(&sc, lfd, port, false, &r);
    char name[500];
    snprintf(name, sizeof name, "an HTTP answer header over 8192 bytes: %s, \"%s\"",
             mqtt_errname(r.rc), r.err);
    CHECK(r.rc == MQTT_ERR_PROXY && strstr(r.err, "longer than 8192 bytes"), name);
    end_run(&r);
}

static void drain_listener(int lfd)
{
    int fd;
    while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(fd);
}

/* A proxy that accepts and never answers: the deadline's error names the step. */
static void check_silent(int lfd, unsigned port)
{
    char uri[100], err[400] = "", want[200], name[700];
    mqtt_transport *t = NULL;
    snprintf(uri, sizeof uri, "socks5://127.0.0.1:%u", port);
    int rc = open_via(uri, "mqtt://b", NULL, &t, err, sizeof err);
    if (rc == MQTT_ERR_INCOMPLETE)
        rc = mqtt__transport_wait(t, NULL, mqtt__now() + 0.2, NULL, err, sizeof err);
    snprintf(want, sizeof want, "SOCKS5 handshake with proxy 127.0.0.1 port %u (to b port 1883) "
                                "timed out", port);
    snprintf(name, sizeof name, "a silent proxy: %s, \"%s\"", mqtt_errname(rc), err);
    CHECK(rc == MQTT_ERR_TIMEOUT && strcmp(err, want) == 0, name);
    if (t)
        t->ops->close(t);
    drain_listener(lfd);
}

/* Fails each allocation of a proxied open in turn: it ends cleanly. */
static void check_oom(int lfd, unsigned port, const script *sc)
{
    bool clean = true;
    unsigned long k = 1, points = 0;
    for (; k < 64; k++) {
        long live = mqtt__alloc_live();
        run r;
        mqtt__alloc_fail_at(k);
        play(sc, lfd, port, false, &r);
        points = mqtt__alloc_fail_at(0);
        end_run(&r);
        drain_listener(lfd);
        clean = clean && (r.rc == sc->want || r.rc == MQTT_ERR_NOMEM) &&
                mqtt__alloc_live() == live;
        if (points < k)
            break;
    }
    char name[200];
    snprintf(name, sizeof name, "%s: each of its %lu allocations failing in turn ends the open "
                                "cleanly, leaking nothing", sc->what, k - 1);
    CHECK(clean && k > 2 && k < 64, name);
}

static const script *find_script(const char *what)
{
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++)
        if (strcmp(scripts[i].what, what) == 0)
            return &scripts[i];
    return NULL;
}

static void test_scripted(void)
{
    unsigned port = 0;
    int lfd = listen_loopback(&port);
    CHECK(lfd >= 0, "a scripted proxy listens on 127.0.0.1");
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        check_script(&scripts[i], lfd, port, false);
        check_script(&scripts[i], lfd, port, true);
    }
    check_surplus(lfd, port);
    check_long_header(lfd, port);
    check_silent(lfd, port);
    check_oom(lfd, port, find_script("SOCKS5, user and password (RFC 1929)"));
    check_oom(lfd, port, find_script("HTTP CONNECT, a user without a password"));
    close(lfd);

    unsigned dead = closed_port();
    char uri[100], err[300], want[200], name[600];
    mqtt_transport *t = NULL;
    snprintf(uri, sizeof uri, "socks5://127.0.0.1:%u", dead);
    int rc = open_via(uri, "mqtt://broker.example", NULL, &t, err, sizeof err);
    while (rc == MQTT_ERR_INCOMPLETE)
        rc = turn(t, rc, -1, err, sizeof err);
    snprintf(want, sizeof want, "proxy connect failed: 127.0.0.1:%u: Connection refused", dead);
    snprintf(name, sizeof name, "an unreachable proxy: %s, \"%s\"", mqtt_errname(rc), err);
    CHECK(rc == MQTT_ERR_CONNECT && strcmp(err, want) == 0, name);
    if (t)
        t->ops->close(t);
    rc = open_via("http://nonexistent.invalid:3128", "mqtt://b", NULL, &t, err, sizeof err);
    while (rc == MQTT_ERR_INCOMPLETE)
        rc = turn(t, rc, -1, err, sizeof err);
    snprintf(name, sizeof name, "a proxy name that does not resolve: %s, \"%s\"",
             mqtt_errname(rc), err);
    CHECK(rc == MQTT_ERR_DNS && strstr(err, "proxy name resolution failed"), name);
    if (t)
        t->ops->close(t);
}

/* ---- real proxies and a real broker ---------------------------------------- */

typedef struct daemon_proc {
    pid_t pid;
    unsigned port;
} daemon_proc;

static char tmpdir[64];

static bool port_open(unsigned port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* Starts argv (its output to a log in tmpdir) and waits until port accepts. */
static bool start(daemon_proc *d, char *const argv[], unsigned port)
{
    char log[128];
    snprintf(log, sizeof log, "%s/%s-%u.log", tmpdir, strrchr(argv[0], '/') + 1, port);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    d->port = port;
    int rc = posix_spawn(&d->pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        d->pid = 0;
        return false;
    }
    for (double until = test_now() + 5; test_now() < until;) {
        if (port_open(port))
            return true;
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
            d->pid = 0;
            return false;
        }
        poll(NULL, 0, 10); /* the daemon's start-up: nothing of ours to wait on */
    }
    return false;
}

static void stop(daemon_proc *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

#define CONNECT_311 "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"

/* CONNECT (3.1.1, clean session, empty client id), then the CONNACK. */
static bool mqtt_round_trip(mqtt_transport *t)
{
    const size_t n = sizeof CONNECT_311 - 1;
    size_t done = 0;
    uint8_t ack[8];
    size_t got = 0;
    for (double until = test_now() + 5; test_now() < until && got < 4;) {
        struct pollfd p = {.fd = t->fd, .events = done < n ? POLLOUT : POLLIN};
        poll(&p, 1, 500);
        if (done < n) {
            ssize_t w = t->ops->write(t, CONNECT_311 + done, n - done);
            done += w > 0 ? (size_t)w : 0;
            continue;
        }
        ssize_t r = t->ops->read(t, ack + got, 4 - got);
        if (r < 0)
            return false;
        got += (size_t)r;
    }
    return got == 4 && memcmp(ack, "\x20\x02\x00\x00", 4) == 0;
}

static int open_wait(const char *proxy, const char *target, mqtt_tls_config *tls,
                     mqtt_transport **t, char *err, size_t errlen)
{
    int rc = open_via(proxy, target, tls, t, err, errlen);
    if (rc == MQTT_ERR_INCOMPLETE)
        rc = mqtt__transport_wait(*t, NULL, mqtt__now() + 10, NULL, err, errlen);
    return rc;
}

static void through(const char *what, const char *proxy, const char *target,
                    mqtt_tls_config *tls)
{
    mqtt_transport *t = NULL;
    char err[400] = "", name[700];
    int rc = open_wait(proxy, target, tls, &t, err, sizeof err);
    bool ok = rc == MQTT_OK && mqtt_round_trip(t);
    snprintf(name, sizeof name, "%s: %s via %s, CONNECT/CONNACK round trip (%s%s%s)", what,
             target, proxy, mqtt_errname(rc), err[0] ? ": " : "", err);
    CHECK(ok, name);
    if (t)
        t->ops->close(t);
}

static void refused(const char *what, const char *proxy, const char *target, int want,
                    const char *want_err)
{
    mqtt_transport *t = NULL;
    char err[400] = "", name[700];
    int rc = open_wait(proxy, target, NULL, &t, err, sizeof err);
    snprintf(name, sizeof name, "%s: %s, \"%s\"", what, mqtt_errname(rc), err);
    CHECK(rc == want && strstr(err, want_err), name);
    if (t)
        t->ops->close(t);
}

static bool make_certificate(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
             "-keyout %s/broker.key -out %s/broker.crt >/dev/null 2>&1", tmpdir, tmpdir);
    return system(cmd) == 0;
}

static bool start_broker(daemon_proc *mosq, unsigned *tls_port)
{
    char conf[1200], path[128];
    unsigned port = 0;
    /* Both bound at once, or the kernel may hand out one port twice. */
    int a = listen_loopback(&port), b = listen_loopback(tls_port);
    close(a);
    close(b);
    snprintf(conf, sizeof conf,
             "listener %u 127.0.0.1\nallow_anonymous true\npersistence false\n%s"
             "listener %u 127.0.0.1\ncertfile %s/broker.crt\nkeyfile %s/broker.key\n",
             port, getuid() == 0 ? "user root\n" : "", *tls_port, tmpdir, tmpdir);
    snprintf(path, sizeof path, "%s/mosquitto.conf", tmpdir);
    write_text(path, conf);
    char *argv[] = {"/usr/sbin/mosquitto", "-c", path, NULL};
    return start(mosq, argv, port) && port_open(*tls_port);
}

static bool start_tinyproxy(daemon_proc *d, const char *auth, unsigned mq, unsigned mq_tls)
{
    char conf[800], path[128];
    unsigned port = closed_port();
    snprintf(conf, sizeof conf,
             "Port %u\nListen 127.0.0.1\nTimeout 30\nMaxClients 8\nAllow 127.0.0.1\n"
             "ConnectPort %u\nConnectPort %u\n%s%s%s%s\n",
             port, mq, mq_tls, auth ? "BasicAuth " : "", auth ? auth : "", auth ? "\n" : "",
             getuid() == 0 ? "User nobody\nGroup nogroup\n" : "");
    snprintf(path, sizeof path, "%s/tinyproxy-%u.conf", tmpdir, port);
    write_text(path, conf);
    char *argv[] = {"/usr/bin/tinyproxy", "-d", "-c", path, NULL};
    return start(d, argv, port);
}

static bool start_microsocks(daemon_proc *d, bool auth)
{
    unsigned port = closed_port();
    char p[16];
    snprintf(p, sizeof p, "%u", port);
    char *plain[] = {"/usr/bin/microsocks", "-i", "127.0.0.1", "-p", p, NULL};
    char *with[] = {"/usr/bin/microsocks", "-i", "127.0.0.1", "-p", p, "-u", "bob",
                    "-P", "s3cret", NULL};
    return start(d, auth ? with : plain, port);
}

/* Accepts on a listener that plays a broker: did anything connect? */
static void check_nothing_sent(void)
{
    char uri[100], err[300], name[500];
    unsigned dead = closed_port();
    unsigned broker_port = 0;
    int broker = listen_loopback(&broker_port);
    snprintf(uri, sizeof uri, "http://127.0.0.1:%u", dead);
    char target[100];
    snprintf(target, sizeof target, "mqtt://127.0.0.1:%u", broker_port);
    mqtt_transport *t = NULL;
    int rc = open_wait(uri, target, NULL, &t, err, sizeof err);
    int fd = accept4(broker, NULL, NULL, SOCK_CLOEXEC);
    snprintf(name, sizeof name, "an unreachable proxy: \"%s\", and the broker saw no connection",
             err);
    CHECK(rc == MQTT_ERR_CONNECT && strstr(err, "proxy connect failed") && fd < 0, name);
    if (fd >= 0)
        close(fd);
    if (t)
        t->ops->close(t);
    close(broker);
}

static void test_real(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/zmqtt-proxy-XXXXXX");
    bool have = mkdtemp(tmpdir) && access("/usr/bin/tinyproxy", X_OK) == 0 &&
                access("/usr/bin/microsocks", X_OK) == 0 && make_certificate();
    CHECK(have, "tinyproxy, microsocks and openssl are installed (make deps-test)");
    if (!have)
        return;
    chmod(tmpdir, 0755); /* tinyproxy drops to nobody and reads its file */
    daemon_proc mosq = {0}, tiny = {0}, tiny_auth = {0}, socks = {0}, socks_auth = {0};
    unsigned tls_port = 0;
    bool up = start_broker(&mosq, &tls_port);
    CHECK(up, "mosquitto runs with a TCP and a TLS listener");
    up = up && start_tinyproxy(&tiny, NULL, mosq.port, tls_port) &&
         start_tinyproxy(&tiny_auth, "carol pa55", mosq.port, tls_port) &&
         start_microsocks(&socks, false) && start_microsocks(&socks_auth, true);
    CHECK(up, "two tinyproxy (one with BasicAuth) and two microsocks (one with -u/-P) run");
    char crt[128], plain[100], tls[100], uri[100];
    snprintf(crt, sizeof crt, "%s/broker.crt", tmpdir);
    mqtt_tls_options o;
    mqtt_tls_options_init(&o);
    o.cafile = crt;
    mqtt_tls_config *cfg = NULL;
    char err[300];
    mqtt_tls_config_new(&o, &cfg, err, sizeof err);
    snprintf(plain, sizeof plain, "mqtt://127.0.0.1:%u", mosq.port);
    snprintf(tls, sizeof tls, "mqtts://127.0.0.1:%u", tls_port);
    if (up) {
        snprintf(uri, sizeof uri, "http://127.0.0.1:%u", tiny.port);
        through("tinyproxy", uri, plain, NULL);
        through("tinyproxy, TLS", uri, tls, cfg);
        refused("tinyproxy, a port not in ConnectPort", uri, "mqtt://127.0.0.1:1", MQTT_ERR_PROXY,
                "proxy refused: 403");
        snprintf(uri, sizeof uri, "http://carol:pa55@127.0.0.1:%u", tiny_auth.port);
        through("tinyproxy with BasicAuth", uri, plain, NULL);
        through("tinyproxy with BasicAuth, TLS", uri, tls, cfg);
        snprintf(uri, sizeof uri, "http://127.0.0.1:%u", tiny_auth.port);
        refused("tinyproxy with BasicAuth, no credentials", uri, plain, MQTT_ERR_PROXY,
                "proxy refused: 407");
        snprintf(uri, sizeof uri, "socks5://127.0.0.1:%u", socks.port);
        through("microsocks", uri, plain, NULL);
        through("microsocks, TLS", uri, tls, cfg);
        snprintf(uri, sizeof uri, "socks5h://bob:s3cret@127.0.0.1:%u", socks_auth.port);
        through("microsocks with -u/-P", uri, plain, NULL);
        through("microsocks with -u/-P, TLS", uri, tls, cfg);
        snprintf(uri, sizeof uri, "socks5://bob:wrong@127.0.0.1:%u", socks_auth.port);
        refused("microsocks, a wrong password", uri, plain, MQTT_ERR_PROXY,
                "proxy authentication failed");
    }
    check_nothing_sent();
    mqtt_tls_config_unref(cfg);
    stop(&socks_auth);
    stop(&socks);
    stop(&tiny_auth);
    stop(&tiny);
    stop(&mosq);
    char cmd[100];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmpdir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    mqtt__alloc_track();
    test_uris();
    test_no_proxy();
    test_env();
    test_scripted();
    test_real();
    CHECK(mqtt__alloc_live() == 0, "every block the proxies allocated is freed");
    return test_done();
}
