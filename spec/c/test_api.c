/*
 * The public C API's contract (API version 2): versioned option structs
 * read within their struct_size, refusals with mqtt_last_error()'s words
 * (properties and MQTT 5.0 options under 3.1.1 included), publish,
 * subscribe and unsubscribe end to end against the in-process fake broker,
 * and the events' reason codes, reason lists and property iterator.
 */
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>

#include "client_internal.h"
#include "fake_broker.h"
#include "test.h"

#define S(s) (const uint8_t *)(s), sizeof(s) - 1

static bool said(const char *part)
{
    return strstr(mqtt_last_error(), part) != NULL;
}

static mqtt_options named_options(const char *id)
{
    mqtt_options o;
    mqtt_options_init(&o);
    o.client_id = id;
    o.client_id_len = strlen(id);
    return o;
}

static void test_versions(void)
{
    CHECK(mqtt_api_version() == MQTT_API_VERSION && MQTT_API_VERSION == 2,
          "the library implements the API version of its header");
    mqtt_options o;
    memset(&o, 0xAB, sizeof o);
    CHECK(mqtt_options_init(&o) == MQTT_OK && o.struct_size == sizeof o && o.clean_session &&
              o.max_inflight == 20 && o.protocol == MQTT_V311 && o.connect_props == NULL,
          "mqtt_options_init sets struct_size and the defaults");
    CHECK(mqtt_options_init_v(&o, sizeof o + 8) == MQTT_ERR_INVAL &&
              mqtt_options_init_v(&o, MQTT_OPTIONS_MIN_SIZE - 1) == MQTT_ERR_INVAL,
          "mqtt_options_init_v refuses a size it does not know");
    /* A program built against the header before protocol: its struct ends there. */
    memset(&o, 0xAB, sizeof o);
    CHECK(mqtt_options_init_v(&o, MQTT_OPTIONS_MIN_SIZE) == MQTT_OK &&
              o.struct_size == MQTT_OPTIONS_MIN_SIZE && o.log_events == false &&
              o.protocol == (int)0xABABABAB,
          "an older size: the fields inside it get defaults, the bytes past it are not touched");
    o.client_id = "old";
    o.client_id_len = 3;
    mqtt_client *c = NULL;
    CHECK(mqtt_client_create(&o, &c) == MQTT_OK && c->set.opt.protocol == MQTT_V311 &&
              c->set.opt.connect_props == NULL && c->set.opt.connect_prop_count == 0 &&
              c->set.opt.struct_size == sizeof o,
          "create with an older size: the fields past it take their defaults");
    mqtt_client_destroy(c);
    o = named_options("new");
    o.struct_size = sizeof o + 8;
    c = NULL;
    CHECK(mqtt_client_create(&o, &c) == MQTT_ERR_INVAL && c == NULL && said("struct_size"),
          "create refuses a struct_size larger than the library's");
    o.struct_size = 0;
    CHECK(mqtt_client_create(&o, &c) == MQTT_ERR_INVAL && said("init macro"),
          "create refuses a struct never initialised");
    CHECK(mqtt_client_create(NULL, &c) == MQTT_OK && mqtt_last_error()[0] == '\0',
          "create with NULL options: the defaults, and no refusal left over");
    mqtt_client_destroy(c);
}

static void test_other_structs(void)
{
    mqtt_connect_options co;
    CHECK(mqtt_connect_options_init(&co) == MQTT_OK && co.struct_size == sizeof co &&
              co.port == 1883 && co.keepalive == 60,
          "mqtt_connect_options_init sets struct_size and the defaults");
    CHECK(mqtt_connect_options_init_v(&co, sizeof co + 4) == MQTT_ERR_INVAL,
          "mqtt_connect_options_init_v refuses a larger size");
    mqtt_options o = named_options("conn");
    mqtt_client *c = NULL;
    mqtt_client_create(&o, &c);
    co.host = "127.0.0.1";
    co.struct_size = sizeof co + 16;
    mqtt_connect_result res;
    CHECK(mqtt_client_connect(c, &co, &res) == MQTT_ERR_INVAL && said("connect options"),
          "connect refuses connect options of a size it does not know");
    co.struct_size = sizeof co;
    co.host = NULL;
    CHECK(mqtt_client_connect(c, &co, &res) == MQTT_ERR_INVAL && said("host: missing"),
          "connect without a host says so");
    mqtt_client_destroy(c);
    mqtt_tls_options to;
    CHECK(mqtt_tls_options_init(&to) == MQTT_OK && to.struct_size == sizeof to && to.verify &&
              to.min_version == 2,
          "mqtt_tls_options_init sets struct_size and the defaults");
    to.struct_size = sizeof to + 8;
    char err[256];
    mqtt_tls_config *cfg = NULL;
    CHECK(mqtt_tls_config_new(&to, &cfg, err, sizeof err) == MQTT_ERR_INVAL && cfg == NULL &&
              strstr(err, "tls options: struct_size") != NULL,
          "a TLS context refuses options of a size it does not know, saying so in err");
}

static void test_create_refusals(void)
{
    mqtt_client *c = NULL;
    mqtt_options o = named_options("v5");
    o.protocol = MQTT_V5;
    CHECK(mqtt_client_create(&o, &c) == MQTT_OK && c != NULL && mqtt_client_protocol(c) == 0,
          "protocol MQTT_V5 is accepted; no protocol is in use before a CONNACK");
    mqtt_client_destroy(c);
    c = NULL;
    o.protocol = MQTT_PROTOCOL_AUTO;
    o.topic_alias = 3;
    CHECK(mqtt_client_create(&o, &c) == MQTT_ERR_INVAL && said("topic_alias 3"),
          "an unknown topic_alias mode is refused");
    o.topic_alias = MQTT_ALIAS_AUTO;
    o.protocol = 3;
    CHECK(mqtt_client_create(&o, &c) == MQTT_ERR_INVAL && said("protocol 3: must be"),
          "an unknown protocol level is refused");
    o.protocol = MQTT_V311;
    mqtt_property sei = {.id = MQTT_PROP_SESSION_EXPIRY_INTERVAL, .value = 60};
    o.connect_props = &sei;
    o.connect_prop_count = 1;
    CHECK(mqtt_client_create(&o, &c) == MQTT_ERR_INVAL &&
              said("CONNECT properties need MQTT 5.0; the client speaks MQTT 3.1.1"),
          "CONNECT properties are refused under 3.1.1");
    mqtt_property alias = {.id = MQTT_PROP_TOPIC_ALIAS, .value = 1};
    o.connect_props = &alias;
    CHECK(mqtt_client_create(&o, &c) == MQTT_ERR_INVAL &&
              said("CONNECT property topic_alias: property not allowed in this packet"),
          "a property CONNECT may not carry is named in the refusal");
    o = named_options("");
    o.clean_session = false;
    CHECK(mqtt_client_create(&o, &c) == MQTT_ERR_INVAL && said("client_id"),
          "an empty client id without clean_session is refused under 3.1.1, naming client_id");
    o.protocol = MQTT_V5;
    CHECK(mqtt_client_create(&o, &c) == MQTT_OK,
          "an empty client id without clean_session is accepted under 5.0 (the broker assigns)");
    mqtt_client_destroy(c);
}

/* The message refusals of a client not connected: nothing queued, ever. */
static void test_publish_refusals(mqtt_client *c)
{
    mqtt_property mei = {.id = MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, .value = 10};
    mqtt_message m = {"a/b", 3, "x", 1, 1, false, &mei, 1};
    uint16_t mid = 0;
    CHECK(mqtt_client_publish(c, &m, &mid) == MQTT_ERR_INVAL && mid == 0 &&
              said("PUBLISH properties need MQTT 5.0"),
          "publish: valid PUBLISH properties are refused under 3.1.1");
    mqtt_property sid = {.id = MQTT_PROP_SUBSCRIPTION_IDENTIFIER, .value = 1};
    m.props = &sid;
    CHECK(mqtt_client_publish(c, &m, &mid) == MQTT_ERR_INVAL &&
              said("PUBLISH property subscription_identifier: property not allowed"),
          "publish: subscription_identifier is refused in PUBLISH, by name");
    mqtt_property pfi = {.id = MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, .value = 2};
    m.props = &pfi;
    CHECK(mqtt_client_publish(c, &m, &mid) == MQTT_ERR_INVAL &&
              said("payload_format_indicator: property value out of range"),
          "publish: a property out of range is refused, by name");
    mqtt_property unknown = {.id = 0x7F};
    m.props = &unknown;
    CHECK(mqtt_client_publish(c, &m, &mid) == MQTT_ERR_INVAL &&
              said("unknown property identifier"),
          "publish: an unknown property identifier is refused");
    m.props = NULL;
    m.prop_count = 2;
    CHECK(mqtt_client_publish(c, &m, &mid) == MQTT_ERR_INVAL, "publish: a count without properties");
    mqtt_message bad[] = {{"a/+", 3, "x", 1, 0, false, NULL, 0},
                          {"a/b", 3, "x", 1, 3, false, NULL, 0},
                          {"a/b", 3, NULL, 5, 0, false, NULL, 0}};
    const char *words[] = {"topic: ", "qos 3", "payload: NULL"};
    for (size_t i = 0; i < 3; i++)
        CHECK(mqtt_client_publish(c, &bad[i], &mid) == MQTT_ERR_INVAL && said(words[i]), words[i]);
    mqtt_stats st;
    mqtt_client_stats(c, &st);
    CHECK(st.queued == 0 && st.queued_bytes == 0, "publish: nothing refused was queued");
    m = (mqtt_message){"a/b", 3, "x", 1, 1, false, NULL, 0};
    CHECK(mqtt_client_publish(c, &m, &mid) == MQTT_OK && mid == 1 && mqtt_last_error()[0] == 0,
          "publish: a good message after refusals takes the first id; the refusal is cleared");
}

static void test_subscribe_refusals(mqtt_client *c)
{
    mqtt_subscription s = {.filter = "a/#", .filter_len = 3, .qos = 1, .no_local = true};
    uint16_t mid = 0;
    CHECK(mqtt_client_subscribe(c, &s, 1, NULL, 0, &mid) == MQTT_ERR_INVAL &&
              said("filter 1: no_local, retain_as_published and retain_handling need MQTT 5.0"),
          "subscribe: no_local is refused under 3.1.1");
    s = (mqtt_subscription){.filter = "a/#", .filter_len = 3, .retain_handling = 3};
    CHECK(mqtt_client_subscribe(c, &s, 1, NULL, 0, &mid) == MQTT_ERR_INVAL &&
              said("retain_handling 3"),
          "subscribe: retain_handling 3 is refused");
    mqtt_subscription two[] = {{.filter = "a/#", .filter_len = 3, .qos = 1},
                               {.filter = "b/#/c", .filter_len = 5, .qos = 1}};
    CHECK(mqtt_client_subscribe(c, two, 2, NULL, 0, &mid) == MQTT_ERR_INVAL && said("filter 2: "),
          "subscribe: a bad filter is named by its place");
    mqtt_property up = {.id = MQTT_PROP_USER_PROPERTY, .data = S("k"), .data2 = S("v")};
    CHECK(mqtt_client_subscribe(c, two, 1, &up, 1, &mid) == MQTT_ERR_INVAL &&
              said("SUBSCRIBE properties need MQTT 5.0"),
          "subscribe: SUBSCRIBE properties are refused under 3.1.1");
    mqtt_property sid = {.id = MQTT_PROP_SUBSCRIPTION_IDENTIFIER, .value = 5};
    CHECK(mqtt_client_unsubscribe(c, two, 1, &sid, 1, &mid) == MQTT_ERR_INVAL &&
              said("UNSUBSCRIBE property subscription_identifier: property not allowed"),
          "unsubscribe: subscription_identifier is refused in UNSUBSCRIBE, by name");
    mqtt_property wd = {.id = MQTT_PROP_WILL_DELAY_INTERVAL, .value = 5};
    mqtt_message will = {"w/t", 3, "bye", 3, 1, false, &wd, 1};
    CHECK(mqtt_client_set_will(c, &will) == MQTT_ERR_INVAL &&
              said("will properties need MQTT 5.0"),
          "set_will: will properties are refused under 3.1.1");
    will.props = &sid;
    CHECK(mqtt_client_set_will(c, &will) == MQTT_ERR_INVAL &&
              said("will property subscription_identifier: property not allowed"),
          "set_will: a property the will may not carry is named");
    will.prop_count = 0;
    CHECK(mqtt_client_set_will(c, &will) == MQTT_OK && c->sh.has_will &&
              mqtt_client_set_will(c, NULL) == MQTT_OK && !c->sh.has_will,
          "set_will takes a message, and NULL clears it");
    mqtt_stats st;
    mqtt_client_stats(c, &st);
    CHECK(st.queued == 1, "subscribe: nothing refused was queued");
    struct {
        mqtt_stats known;
        uint64_t later[2];
    } newer;
    memset(&newer, 0xAB, sizeof newer);
    mqtt_client_stats_v(c, &newer.known, sizeof newer);
    CHECK(newer.known.queued == 1 && newer.later[0] == 0 && newer.later[1] == 0,
          "stats into a newer, larger struct: what the library knows, zeros after");
    size_t older = offsetof(mqtt_stats, inflight);
    memset(&newer, 0xAB, sizeof newer);
    mqtt_client_stats_v(c, &newer.known, older);
    CHECK(newer.known.queued == 1 && newer.known.inflight == (size_t)0xABABABABABABABABu,
          "stats into an older, smaller struct: nothing written past its size");
}

/* Takes events until want of them passed check, or 5 s went by. */
typedef struct seen {
    unsigned suback, unsuback, puback, messages, empty_props;
    bool suback_ok;
} seen;

static void look(seen *s, const mqtt_event *ev, uint16_t sub_mid)
{
    size_t pos = 0;
    mqtt_property p;
    if (ev->type != MQTT_EV_CONNACK && ev->props == NULL && ev->props_len == 0 &&
        !mqtt_event_property_next(ev, &pos, &p))
        s->empty_props++;
    if (ev->type == MQTT_EV_SUBACK && ev->mid == sub_mid) {
        s->suback++;
        s->suback_ok = ev->reason_count == 2 && ev->reasons[0] == 2 && ev->reasons[1] == 0 &&
                       ev->reason_code == 0;
    }
    s->unsuback += ev->type == MQTT_EV_UNSUBACK && ev->reason_count == 0;
    s->puback += ev->type == MQTT_EV_PUBACK && ev->reason_code == 0 && ev->reasons == NULL;
    s->messages += ev->has_message;
}

static void take_until(mqtt_client *c, seen *s, uint16_t sub_mid, unsigned events)
{
    unsigned n = 0;
    for (int i = 0; i < 100 && n < events; i++) {
        struct pollfd p = {.fd = mqtt_client_event_fd(c), .events = POLLIN};
        poll(&p, 1, 50);
        for (mqtt_event *ev = mqtt_client_take_events(c), *next; ev; ev = next) {
            next = ev->next;
            look(s, ev, sub_mid);
            n += ev->type != MQTT_EV_CONNACK;
            mqtt_event_free(ev);
        }
    }
}

static void test_end_to_end(void)
{
    fake_broker *broker = fake_broker_start();
    CHECK(broker != NULL, "fake broker listening on 127.0.0.1");
    if (!broker)
        return;
    mqtt_options o = named_options("api-e2e");
    mqtt_client *c = NULL;
    mqtt_client_create(&o, &c);
    test_publish_refusals(c);
    test_subscribe_refusals(c);
    CHECK(fake_broker_connect(broker, c), "connected to the fake broker");
    mqtt_subscription subs[] = {{.filter = "oom/t", .filter_len = 5, .qos = 2},
                                {.filter = "x/#", .filter_len = 3, .qos = 0}};
    uint16_t sub_mid = 0, unsub_mid = 0;
    CHECK(mqtt_client_subscribe(c, subs, 2, NULL, 0, &sub_mid) == MQTT_OK &&
              mqtt_client_unsubscribe(c, subs + 1, 1, NULL, 0, &unsub_mid) == MQTT_OK,
          "subscribe and unsubscribe with the new calls");
    seen s = {0};
    /* PUBACK of the queued publish, SUBACK, QoS 2 arrival, 3 messages, UNSUBACK. */
    take_until(c, &s, sub_mid, 7);
    CHECK(s.suback == 1 && s.suback_ok, "SUBACK: the granted list as reasons, reason_code 0");
    CHECK(s.unsuback == 1, "UNSUBACK: no reason list under 3.1.1");
    CHECK(s.puback == 1, "PUBACK of the publish queued offline: reason_code 0, no reasons");
    CHECK(s.messages == 3, "a message at each QoS arrived");
    CHECK(s.empty_props == 7, "no event has properties under 3.1.1");
    mqtt_client_destroy(c);
    fake_broker_stop(broker);
}

/* A loopback port nothing listens on: bound, read, closed. */
static unsigned dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    unsigned port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static uint64_t failures(mqtt_client *c)
{
    mqtt_stats st;
    mqtt_client_stats(c, &st);
    return st.connect_failures;
}

/* Connect options refused before anything is sent, in words. */
static void test_server_refusals(mqtt_client *c)
{
    mqtt_connect_options co;
    mqtt_connect_result res;
    static const struct {
        const char *uri, *words;
    } bad[] = {
        {"foo://h", "host: unknown scheme 'foo'"},
        {"mqtt://h:0", "bad port '0'"},
        {"mqtt://h:99999", "bad port"},
        {"mqtt://:1883", "empty host"},
        {"unix://relative", "absolute path"},
        {"h:1883", "not a host name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mqtt_connect_options_init(&co);
        co.host = bad[i].uri;
        CHECK(mqtt_client_connect(c, &co, &res) == MQTT_ERR_INVAL && said(bad[i].words) &&
                  strstr(res.message, bad[i].words) != NULL,
              "a bad host URI is refused at the call, naming the problem");
    }
    const char *list[] = {"mqtt://127.0.0.1", "wss://h:443/mqtt", "ftp://x"};
    mqtt_connect_options_init(&co);
    co.servers = list;
    co.server_count = 3;
    CHECK(mqtt_client_connect(c, &co, &res) == MQTT_ERR_INVAL && said("servers 3: unknown scheme"),
          "a bad URI in servers is refused, naming its place");
    co.host = "127.0.0.1";
    co.server_count = 2;
    CHECK(mqtt_client_connect(c, &co, &res) == MQTT_ERR_INVAL && said("give one"),
          "host and servers together are refused");
    co.host = NULL;
    co.servers = NULL;
    CHECK(mqtt_client_connect(c, &co, &res) == MQTT_ERR_INVAL && said("servers: NULL"),
          "a server count without a list is refused");
    mqtt_header h[] = {{"X-Token", "abc"}, {"Bad Name", "v"}};
    mqtt_connect_options_init(&co);
    co.host = "ws://127.0.0.1/mqtt";
    co.ws_headers = h;
    co.ws_header_count = 2;
    CHECK(mqtt_client_connect(c, &co, &res) == MQTT_ERR_INVAL && said("ws_headers 2"),
          "a header name with a blank is refused");
    h[1].name = "X-Other";
    h[1].value = "a\r\nInjected: 1";
    CHECK(mqtt_client_connect(c, &co, &res) == MQTT_ERR_INVAL && said("line breaks"),
          "a header value with a line break is refused");
    mqtt_connect_options_init(&co);
    co.host = "127.0.0.1";
    co.proxy = "ftp://127.0.0.1:1080";
    CHECK(mqtt_client_connect(c, &co, &res) == MQTT_ERR_INVAL && said("proxy: "),
          "a bad proxy URI is refused at the call, naming the proxy");
    CHECK(failures(c) == 0, "nothing was attempted");
}

/* What an attempt hands the transport: the endpoint of the current server. */
static void test_server_endpoints(void)
{
    mqtt_tls_options to;
    mqtt_tls_options_init(&to);
    to.verify = false;
    mqtt_tls_config *cfg = NULL;
    char err[256];
    CHECK(mqtt_tls_config_new(&to, &cfg, err, sizeof err) == MQTT_OK, "a TLS context");
    const char *list[] = {"wss://h/mqtt", "broker", "mqtt://h", "unix:///run/m.sock"};
    mqtt_header hdr[] = {{"Authorization", "Bearer x"}};
    mqtt_connect_options co;
    mqtt_connect_options_init(&co);
    co.servers = list;
    co.server_count = 4;
    co.port = 8884;
    co.tls = cfg;
    co.has_sock_keepalive = true;
    co.proxy = "env";
    co.ws_headers = hdr;
    co.ws_header_count = 1;
    mqtt_servers srv;
    memset(&srv, 0, sizeof srv);
    CHECK(mqtt__servers_set(&srv, &co) == MQTT_OK && srv.count == 4 && srv.index == 0,
          "the servers are copied, the first one current");
    mqtt_endpoint ep;
    bool ok = mqtt__servers_endpoint(&srv, &co, &ep, err, sizeof err) == MQTT_OK;
    CHECK(ok && ep.scheme == MQTT_SCHEME_WSS && ep.port == 443 && strcmp(ep.path, "/mqtt") == 0 &&
              ep.tls == cfg && ep.has_keepalive && strcmp(ep.proxy_uri, "env") == 0 &&
              ep.ws_header_count == 1 && strcmp(ep.ws_headers[0].value, "Bearer x") == 0,
          "wss://: its default port and path, the context, the proxy and headers lent");
    mqtt__endpoint_clear(&ep);
    CHECK(mqtt__servers_next(&srv) && mqtt__servers_endpoint(&srv, &co, &ep, err, sizeof err) ==
                                          MQTT_OK &&
              ep.scheme == MQTT_SCHEME_MQTTS && ep.port == 8884 && ep.tls == cfg,
          "a plain host with a context: TLS on the positional port");
    mqtt__endpoint_clear(&ep);
    CHECK(mqtt__servers_next(&srv) && mqtt__servers_endpoint(&srv, &co, &ep, err, sizeof err) ==
                                          MQTT_OK &&
              ep.scheme == MQTT_SCHEME_MQTT && ep.port == 1883 && ep.tls == NULL,
          "mqtt:// stays TCP on its default port, context or not");
    mqtt__endpoint_clear(&ep);
    CHECK(mqtt__servers_next(&srv) && mqtt__servers_endpoint(&srv, &co, &ep, err, sizeof err) ==
                                          MQTT_OK &&
              ep.scheme == MQTT_SCHEME_UNIX && !ep.has_keepalive &&
              strcmp(ep.path, "/run/m.sock") == 0,
          "unix://: the path, no TCP keepalive");
    mqtt__endpoint_clear(&ep);
    CHECK(!mqtt__servers_next(&srv) && srv.index == 0 && srv.round_tries == 0,
          "after the last server the round is complete and starts over at the first");
    mqtt__servers_free(&srv);
    mqtt_tls_config_unref(cfg);
}

static void test_servers(void)
{
    fake_broker *broker = fake_broker_start();
    CHECK(broker != NULL, "fake broker listening on 127.0.0.1");
    if (!broker)
        return;
    mqtt_options o = named_options("api-servers");
    mqtt_client *c = NULL;
    mqtt_client_create(&o, &c);
    char buf[128];
    CHECK(mqtt_client_server(c, buf, sizeof buf) == 0 && buf[0] == '\0',
          "no server before the first connect");
    test_server_refusals(c);
    char dead[64], live[64];
    snprintf(dead, sizeof dead, "mqtt://127.0.0.1:%u", dead_port());
    snprintf(live, sizeof live, "mqtt://127.0.0.1:%u", fake_broker_port(broker));
    const char *list[] = {dead, live};
    mqtt_connect_options co;
    mqtt_connect_options_init(&co);
    co.servers = list;
    co.server_count = 2;
    mqtt_connect_result res;
    CHECK(mqtt_client_connect(c, &co, &res) == MQTT_OK, "a blocking connect tries the round");
    CHECK(failures(c) == 1, "one failure: the first server");
    CHECK(mqtt_client_server(c, buf, sizeof buf) == strlen(live) && strcmp(buf, live) == 0,
          "the server in use, as given");
    mqtt_client_disconnect(c);
    /* A program built before servers existed: the old layout still connects. */
    mqtt_connect_options_init_v(&co, MQTT_CONNECT_OPTIONS_MIN_SIZE);
    co.host = "127.0.0.1";
    co.port = fake_broker_port(broker);
    co.servers = list; /* beyond the old struct_size: must not be read */
    CHECK(co.struct_size == MQTT_CONNECT_OPTIONS_MIN_SIZE &&
              mqtt_client_connect(c, &co, &res) == MQTT_OK,
          "connect options of the first layout still work");
    CHECK(mqtt_client_server(c, buf, sizeof buf) == 9 && strcmp(buf, "127.0.0.1") == 0,
          "a plain host is the server as given");
    mqtt_client_destroy(c);
    fake_broker_stop(broker);
}

/* A v5 packet as the decoder gives it, from the codec's own encoder. */
static bool decoded(uint8_t *buf, size_t len, mqtt_packet *pkt)
{
    const mqtt_decode_opts o = {MQTT_V5, MQTT_ROLE_CLIENT, 0};
    size_t used = 0;
    const char *why = NULL;
    return mqtt__decode(buf, len, &o, pkt, &used, &why) == MQTT_OK && used == len;
}

static void test_event_properties(void)
{
    uint8_t buf[128];
    const mqtt_property props[] = {
        {.id = MQTT_PROP_USER_PROPERTY, .data = S("k"), .data2 = S("v")},
        {.id = MQTT_PROP_REASON_STRING, .data = S("no")},
    };
    mqtt_reply_params r = {MQTT_SUBACK, 9, false, 0, props, 2, {(const uint8_t *)"\x01\x87", 2}};
    mqtt_packet pkt;
    memset(&pkt, 0, sizeof pkt);
    bool ok = decoded(buf, mqtt__encode_reply_v(buf, MQTT_V5, &r), &pkt);
    mqtt_event *ev = ok ? mqtt__event_ack(MQTT_EV_SUBACK, 9, &pkt) : NULL;
    CHECK(ev && ev->reason_count == 2 && ev->reasons[0] == 1 && ev->reasons[1] == 0x87 &&
              ev->props_len == pkt.props.len && ev->props != pkt.props.data,
          "a v5 SUBACK's event: its reason list and its own copy of the properties");
    size_t pos = 0;
    mqtt_property a = {0}, b = {0}, end;
    bool walked = ev && mqtt_event_property_next(ev, &pos, &a) &&
                  mqtt_event_property_next(ev, &pos, &b) &&
                  !mqtt_event_property_next(ev, &pos, &end) && pos == ev->props_len;
    CHECK(walked && a.id == MQTT_PROP_REASON_STRING && a.len == 2 && memcmp(a.data, "no", 2) == 0 &&
              b.id == MQTT_PROP_USER_PROPERTY && b.len == 1 && b.len2 == 1 && b.data2[0] == 'v',
          "mqtt_event_property_next walks them in wire order, user_property last");
    CHECK(ev && mqtt_event_property_find(ev, MQTT_PROP_USER_PROPERTY, &a) && a.data[0] == 'k' &&
              !mqtt_event_property_find(ev, MQTT_PROP_CONTENT_TYPE, &a),
          "mqtt_event_property_find finds one by identifier");
    mqtt_event_free(ev);
    mqtt_property ct = {.id = MQTT_PROP_CONTENT_TYPE, .data = S("text/plain")};
    mqtt_publish_params pp = {{S("t/1")}, {S("hello")}, 0, false, false, 0, &ct, 1};
    memset(&pkt, 0, sizeof pkt);
    ok = decoded(buf, mqtt__encode_publish_v(buf, MQTT_V5, &pp), &pkt);
    ev = ok ? mqtt__event_message(MQTT_EV_PUBLISH, &pkt) : NULL;
    CHECK(ev && strcmp(ev->topic, "t/1") == 0 && ev->payload_len == 5 &&
              mqtt_event_property_find(ev, MQTT_PROP_CONTENT_TYPE, &a) && a.len == 10 &&
              memcmp(a.data, "text/plain", 10) == 0,
          "a v5 message event keeps its properties in the same allocation");
    mqtt_event_free(ev);
    memset(&pkt, 0, sizeof pkt);
    pkt.topic = (mqtt_bytes){S("t/1")};
    pkt.payload = (mqtt_bytes){S("hello")};
    ev = mqtt__event_message(MQTT_EV_PUBLISH, &pkt);
    /* events.c charges the struct, its data and 64 bytes of overhead */
    CHECK(ev && ev->props == NULL && ev->props_len == 0 &&
              ev->bytes == sizeof *ev + 3 + 1 + 5 + 64,
          "a message without properties costs its topic and payload only");
    mqtt_event_free(ev);
}

int main(void)
{
    test_versions();
    test_other_structs();
    test_create_refusals();
    test_end_to_end();
    test_server_endpoints();
    test_servers();
    test_event_properties();
    return test_done();
}
