/*
 * The client's private state, shared by its files, in three parts: settings
 * fixed at create, state shared under the one mutex by the application
 * thread and the I/O loop, and the loop's own (transport, input, timers).
 */
#ifndef MQTT_CLIENT_INTERNAL_H
#define MQTT_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <sys/types.h>
#include <time.h>

#include "mqtt.h"
#include "session.h"
#include "store.h"
#include "loop.h"
#include "transport.h"

/** Buffers grown past this by a large packet or a backlog are given back once drained. */
#define MQTT_BUF_KEEP (256 * 1024)

/** A growable byte buffer. */
typedef struct mqtt_buf {
    uint8_t *data;
    size_t len, cap;
} mqtt_buf;

MQTT_HIDDEN int mqtt__buf_reserve(mqtt_buf *b, size_t extra);
MQTT_HIDDEN int mqtt__buf_append(mqtt_buf *b, const void *p, size_t n);
MQTT_HIDDEN void mqtt__buf_consume(mqtt_buf *b, size_t n);
MQTT_HIDDEN void mqtt__buf_free(mqtt_buf *b);
/** Gives memory back: a buffer grown past cap holding at most cap bytes shrinks to cap. */
MQTT_HIDDEN void mqtt__buf_trim(mqtt_buf *b, size_t cap);

typedef enum client_state {
    ST_IDLE,          /* not connected, nothing scheduled */
    ST_CONNECTING,    /* an attempt runs: opening, then CONNECT and CONNACK */
    ST_CONNECTED,
    ST_RETRY_WAIT,    /* back-off before an automatic reconnect */
    ST_HOOK_WAIT,     /* waiting for the application to run breconnect_cb */
    ST_DISCONNECTING  /* flushing before DISCONNECT */
} client_state;

typedef enum client_request { REQ_NONE, REQ_CONNECT, REQ_DISCONNECT } client_request;

/* Where a connection attempt stands (the loop's; see link.c). */
typedef enum attempt_phase {
    PH_NONE,      /* no attempt */
    PH_OPENING,   /* the transport opens (DNS, TCP, TLS), driven by the loop */
    PH_HANDSHAKE  /* CONNECT queued on the loop, waiting for CONNACK */
} attempt_phase;

typedef struct attempt attempt;

/* What the broker announced in its CONNACK (MQTT 5.0); what 3.1.1 implies otherwise. */
typedef struct server_limits {
    uint32_t max_packet;       /* 0: none announced */
    uint16_t receive_max;      /* 65535 when not announced */
    uint16_t alias_max;        /* topic aliases the client may use */
    uint8_t max_qos;           /* 2 when not announced */
    bool retain, wildcard, sub_ids, shared; /* available */
} server_limits;

/* Outgoing topic aliases (MQTT 5.0): one slot per alias, least recently used
 * out; forgotten at every new connection. */
typedef struct alias_slot {
    char *topic;               /* NULL: free */
    uint16_t len;
    uint64_t used;             /* the tick of its last use */
} alias_slot;

/* An outgoing alias decided before the size check: 0 for none. */
typedef struct mqtt_alias_pick {
    uint16_t alias;
    bool with_topic;           /* the broker does not know the topic there yet */
} mqtt_alias_pick;

/* The servers of the last connect options (servers.c): owned copies. */
typedef struct mqtt_key_map mqtt_key_map;

typedef struct mqtt_servers {
    char **uri;               /* as given: URIs or plain hosts */
    size_t count;
    size_t index;             /* the one in use, being tried or next */
    size_t round_tries;       /* failed attempts and losses in the round under way */
    unsigned port;            /* for plain host names */
    char *proxy;              /* NULL: direct */
    mqtt_header *headers;     /* ws_headers, strings owned */
    size_t header_count;
    bool redirected;          /* uri[0] came from a server_reference */
    char *pending;            /* a server_reference to go to at the next move */
} mqtt_servers;

/* Settings: fixed once mqtt_client_create returns; read without the lock. */
typedef struct client_settings {
    pid_t pid;                    /* the process that created it */
    mqtt_options opt;
    mqtt_buf client_id;
    int notify_fd;                /* eventfd: readable while events are queued */
} client_settings;

/* State the application thread and the loop share: under the client's lock. */
typedef struct client_shared {
    bool pingresp_events;         /* someone listens for PINGRESP */
    /* Connect settings, read by the loop at each attempt; conn's pointers
     * other than tls are not kept (srv holds the copies). */
    mqtt_servers srv;
    mqtt_connect_options conn;
    bool has_will;
    mqtt_buf will_topic, will_payload;
    uint8_t will_qos;
    bool will_retain;
    bool has_username, has_password;
    mqtt_buf username, password;

    client_state state;
    client_request request;
    bool stop;                    /* destroy: the loop lets go of the client */
    bool idle_wanted;             /* disconnect() waits for ST_IDLE */
    bool auto_reconnect;          /* loop() was called */
    bool user_disconnected;
    bool hook;                    /* queue BEFORE_RECONNECT and wait */
    bool proceed;
    bool ever_connected;
    bool async_attempt;           /* the current attempt reports by event only */
    uint64_t connect_seq, result_seq;
    mqtt_connect_result result;
    unsigned retry_attempt;
    double retry_at;

    mqtt_session *session;
    mqtt_buf out;                 /* encoded packets not yet handed to the writer */
    mqtt_buf wbuf;                /* the writer's: its data the loop's, len and wpos shared */
    size_t wpos;

    mqtt_event *ev_head, *ev_tail;
    mqtt_event *spare;            /* a status event kept for when memory runs out */
    /* Memory held for the application, bounded by opt.max_event_bytes: */
    size_t ev_bytes;              /* events queued for taking */
    size_t taken_bytes;           /* the batch taken with _keep, until handled */
    size_t held_bytes;            /* incoming QoS 2 messages awaiting PUBREL */
    size_t staged_bytes;          /* events made from input, released once its acks are written */
    mqtt_event *st_head, *st_tail;
    bool staging;                 /* new events go to the staged list */
    bool reading_paused;
    uint64_t reconnects, read_pauses, downgraded, connect_failures, logs_dropped, expired;

    /* MQTT 5.0 */
    uint8_t version;              /* the protocol level of the last CONNACK; 0 before any */
    uint8_t try_version;          /* what attempts speak (auto: 5 until the broker refuses) */
    server_limits server;
    mqtt_buf server_props;        /* the last CONNACK's property block */
    mqtt_buf connect_props;       /* the user's CONNECT properties, as a block */
    mqtt_buf will_props;          /* the will's, as a block */
    mqtt_buf assigned_id;         /* the broker's assigned_client_identifier; len 0: none */
    uint8_t disconnect_reason;    /* what disconnect() sends (5.0) */
    bool connect_expiry_zero;     /* the last CONNECT asked for session expiry 0 (5.0) */
    mqtt_buf disconnect_props;
    alias_slot *alias_out;        /* server.alias_max slots at most, or NULL */
    uint16_t alias_count;
    uint64_t alias_tick;

    /* Persistence (persist.c); NULL: none. */
    mqtt_store *store;
    mqtt_key_map *store_keys;      /* the store's key of each stored record */
    int store_sync;               /* MQTT_SYNC_* */
    bool store_error;             /* the last group commit failed */
    bool store_closing;           /* destroy wrote what it could: waiting ends */
    unsigned store_waiters;       /* publishers in mqtt__persist_wait, or about to be */
    uint64_t store_need;          /* the last change the output waits for (durable first) */
    uint64_t store_corruptions;   /* reported by the recovery */
} client_shared;

/* The loop thread's alone. */
typedef struct client_io {
    mqtt_transport *tr;
    void *tls_session;            /* saved TLS session for resumption */
    attempt *att;                 /* the connection attempt under way; NULL: none */
    attempt_phase phase;
    mqtt_buf in;                  /* input left over from a read (a packet not yet whole,
                                   * or no room for it); freed when empty */
    bool in_backlog;              /* in holds packets not handled yet (no room for them) */
    double partial_since;         /* when the incomplete packet at the end of in began; 0: none */
    double last_send, last_recv;
    /* Last write progress; the keepalive's pings write at least that often,
     * so with bytes owed and none written for 1.5 x keepalive the broker
     * reads nothing. */
    double write_ok_at;
    bool ping_outstanding;
    bool wrote;                   /* this service turn wrote bytes (keep the output buffers) */
    double disconnect_deadline;
    double connected_at;          /* when the current connection came up; 0: none */
    uint16_t keepalive;
    uint64_t rng;                 /* the back-off's jitter */
    uint8_t version;              /* the protocol level of the connection or attempt */
    int lost_reason;              /* the reason code the loss reports (5.0); -1: none */
    mqtt_bytes lost_props;        /* and the broker's DISCONNECT properties, for that call */
    bool lost_from_broker;        /* a DISCONNECT packet from the broker ended it */
    uint16_t alias_in_max;        /* the topic_alias_maximum we sent */
    uint16_t receive_max;         /* the receive_maximum we sent (65535 when not) */
    size_t max_packet;            /* the largest packet accepted on this connection */
    mqtt_buf *alias_in;           /* topics the broker gave aliases, by alias - 1 */
} client_io;

struct mqtt_client {
    client_settings set;
    mqtt_member member;           /* its place in the I/O loop (the loop's lock) */
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* connect results, disconnect done */
    client_shared sh;
    client_io io;
};

/** The process clients created now belong to (client.c): written once before
 *  the first client exists, and in a child of fork() before it runs on. */
MQTT_HIDDEN extern pid_t mqtt__process_id;

/** True in a child of fork(): the client is its parent's; touch nothing shared. */
static inline bool mqtt__foreign(const mqtt_client *c)
{
    return c->set.pid != mqtt__process_id;
}

/** Held in the session for an incoming QoS 2 id whose message was delivered
 *  before its PUBREL (the bound was reached): the id stays known, so the
 *  message is delivered once. */
MQTT_HIDDEN extern char mqtt__delivered_mark;

/** Wall-clock seconds: message expiry deadlines are kept on this clock, so
 *  the ones a store keeps still mean the same after a restart or a reboot. */
static inline double mqtt__wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/** Bytes the client must still write: queued for the writer and in its hands. mu held. */
static inline size_t mqtt__owed_bytes(const mqtt_client *c)
{
    return c->sh.out.len + (c->sh.wbuf.len - c->sh.wpos);
}

/* Events (client_events.c); call with mu held. */
MQTT_HIDDEN mqtt_event *mqtt__event_new(int type, size_t extra);
/** Queues ev for the application, or stages it while c->sh.staging. */
MQTT_HIDDEN void mqtt__event_push(mqtt_client *c, mqtt_event *ev);
/** Moves staged events to the queue (once the acks owed for them are written). */
MQTT_HIDDEN void mqtt__event_release_staged(mqtt_client *c);
/** Bytes held for the application: queued, staged, taken and held QoS 2 messages. */
static inline size_t mqtt__app_bytes(const mqtt_client *c)
{
    return c->sh.ev_bytes + c->sh.taken_bytes + c->sh.held_bytes + c->sh.staged_bytes;
}
/** Makes the spare status event if there is none; MQTT_ERR_NOMEM on failure. */
MQTT_HIDDEN int mqtt__event_refill_spare(mqtt_client *c);
/** Queues a status event; out of memory, the spare carries it, text cut short. */
MQTT_HIDDEN void mqtt__event_status(mqtt_client *c, int type, int status, int return_code,
                                    bool session_present, const char *text);
/** A status event with an MQTT 5.0 reason code and properties (copied), not
 *  queued; NULL without memory. */
MQTT_HIDDEN mqtt_event *mqtt__event_reason(int type, int status, const char *text,
                                           uint8_t reason, mqtt_bytes props);
/** The DISCONNECT event of a connection that ended with an MQTT 5.0 reason
 *  code: the broker's DISCONNECT (its properties), or the client's own
 *  answer to a broker that broke the protocol. */
MQTT_HIDDEN void mqtt__event_disconnect(mqtt_client *c, int status, const char *text,
                                        uint8_t reason, mqtt_bytes props, bool from_broker);
MQTT_HIDDEN void mqtt__log(mqtt_client *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
MQTT_HIDDEN mqtt_event *mqtt__event_message(int type, const mqtt_packet *p);
/** An ack's event for id: with p (SUBACK, UNSUBACK, the QoS acks) its reason
 *  code, its reason list and its properties, copied; p may be NULL. */
MQTT_HIDDEN mqtt_event *mqtt__event_ack(int type, uint16_t id, const mqtt_packet *p);

/* The servers (servers.c); mu held where they are the client's. */
/** The host or servers, ws_headers and proxy of connect options: every URI
 *  parsed, refusals in words for mqtt_last_error(). Pure. */
MQTT_HIDDEN int mqtt__servers_check(const mqtt_connect_options *o);
/** Replaces *dst with copies of o's (checked) servers, port, proxy and
 *  ws_headers, starting at the first server; *dst unchanged on MQTT_ERR_NOMEM. */
MQTT_HIDDEN int mqtt__servers_set(mqtt_servers *dst, const mqtt_connect_options *o);
MQTT_HIDDEN void mqtt__servers_free(mqtt_servers *s);
/** The current server as given; NULL when none was ever set. */
MQTT_HIDDEN const char *mqtt__servers_current(const mqtt_servers *s);
/** The current server's endpoint for an attempt, with conn's TLS context
 *  (mqtts, wss, and a plain host when conn has one), socket keepalive, and
 *  the proxy and headers lent from s. Clear it with mqtt__endpoint_clear. */
MQTT_HIDDEN int mqtt__servers_endpoint(const mqtt_servers *s, const mqtt_connect_options *conn,
                                       mqtt_endpoint *ep, char *err, size_t errlen);
/** After a failed attempt or a loss: moves to the next server, round robin.
 *  True while the round has servers left (try the next at once); false when
 *  the round is complete (the back-off comes first). */
MQTT_HIDDEN bool mqtt__servers_next(mqtt_servers *s);
/** MQTT 5.0 follow_redirects: the server_reference in props of a refusal or
 *  DISCONNECT with reason 0x9C/0x9D, made a URI (the current server's scheme,
 *  or mqtts/mqtt for a plain host after tls), becomes the server the next
 *  mqtt__servers_next moves to, at the front of the list (one redirect
 *  there at a time). Returns that URI (s owns it), or NULL: none, or a
 *  reference that is not a valid server (why says it). */
MQTT_HIDDEN const char *mqtt__servers_redirect(mqtt_servers *s, int reason, mqtt_bytes props,
                                               bool tls, char *why, size_t whylen);

/* Arguments of the public calls (args.c); each refusal says why for
 * mqtt_last_error(). */
/** The caller's options (NULL: defaults) read within their struct_size, and checked. */
MQTT_HIDDEN int mqtt__options_read(mqtt_options *dst, const mqtt_options *src);
/** The caller's connect options read within their struct_size; a host and a port needed. */
MQTT_HIDDEN int mqtt__connect_options_read(mqtt_connect_options *dst,
                                           const mqtt_connect_options *src);
/** A property array for a packet type (or MQTT_WILL_PROPERTIES) under a protocol level:
 *  table checks first, then refused unless MQTT 5.0. */
MQTT_HIDDEN int mqtt__check_props(const mqtt_property *p, size_t n, int packet_type,
                                  int protocol);
/** A message to publish, or the will (a payload of at most 65535 bytes). */
MQTT_HIDDEN int mqtt__check_message(const mqtt_message *m, int protocol, bool will);
/** n subscriptions into n wire entries (e[i] points into subs[i]). */
MQTT_HIDDEN int mqtt__check_subscriptions(const mqtt_subscription *subs, size_t n, bool unsub,
                                          int protocol, mqtt_sub_entry *e);

/** Asks the loop to serve c soon (after a publish filled an empty buffer,
 *  a request, room for events); any thread. */
static inline void mqtt__wake(mqtt_client *c)
{
    mqtt__loop_kick(&c->member);
}

/* The send path (send.c); mu held. */
/** Moves what the session may send now into c->sh.out. Returns > 0 when out was
 * empty and now is not, < 0 when out could not grow (the rest stays queued in
 * the session). */
MQTT_HIDDEN int mqtt__pump(mqtt_client *c);

/* The connection's life on the loop (link.c); mu held. */
/** Starts an attempt: the transport's open begins, never blocking; state is
 *  ST_CONNECTING. */
MQTT_HIDDEN void mqtt__attempt_begin(mqtt_client *c);
/** Advances the opening transport once its fd is ready (PH_OPENING; else
 *  nothing). It stops watching the fd first: the step may close it. Loop
 *  thread, mu not needed (the transport is the loop's alone). */
MQTT_HIDDEN void mqtt__attempt_progress(mqtt_client *c);
/** While opening, the fd to watch and for what; -1 otherwise. Loop thread. */
MQTT_HIDDEN int mqtt__attempt_fd(const mqtt_client *c, bool *in, bool *out);
/** An attempt's timers and hand-overs: returns its deadline (-1: none), or
 *  -2 when it ended and the caller should look at the state again. */
MQTT_HIDDEN double mqtt__attempt_tend(mqtt_client *c, double now);
/** "auto" only: the handshake starts over in MQTT 3.1.1 (true), because the
 *  broker refused 5.0 in its own way (why, for the log). */
MQTT_HIDDEN bool mqtt__attempt_downgrade(mqtt_client *c, const char *why);
/** The first packet of a handshake: MQTT_OK when connected. */
MQTT_HIDDEN int mqtt__attempt_connack(mqtt_client *c, const mqtt_packet *pkt);
/** Ends the attempt (PH_HANDSHAKE) or the connection with status. */
MQTT_HIDDEN void mqtt__link_lost(mqtt_client *c, int status, const char *text);
MQTT_HIDDEN void mqtt__connection_lost(mqtt_client *c, int status, const char *text);
MQTT_HIDDEN void mqtt__schedule_retry(mqtt_client *c, double delay);
/** The loop lets go of c: connection closed, attempt dropped. */
MQTT_HIDDEN void mqtt__link_release(mqtt_client *c);

/* MQTT 5.0 (v5.c). */
/** The value of the first property id in p[0..n) into *value; false when absent. */
MQTT_HIDDEN bool mqtt__props_value(const mqtt_property *p, size_t n, uint8_t id, uint32_t *value);
/** Applies a CONNACK's announcements (limits, keepalive, assigned id, receive
 *  maximum) and keeps its properties; mu held. MQTT_ERR_NOMEM. */
MQTT_HIDDEN int mqtt__v5_connack(mqtt_client *c, const mqtt_packet *p);
/** The broker's limits at a publish whose properties (the caller's topic
 *  alias left out) take props_len bytes; the alias it would go with is
 *  decided first, so the size checked is the one that would go out. mu held. */
MQTT_HIDDEN int mqtt__v5_check_publish(const mqtt_client *c, const mqtt_message *m,
                                       size_t props_len, mqtt_alias_pick *pick);
/** Outgoing: the alias for topic on this connection (requested: the caller's
 *  under MQTT_ALIAS_MANUAL) and whether the topic must go with it (the broker
 *  does not know it yet), without changing the table. mu held. */
MQTT_HIDDEN mqtt_alias_pick mqtt__v5_alias_peek(const mqtt_client *c, mqtt_bytes topic,
                                                uint32_t requested);
/** The broker's limits at a (un)subscribe; size of the packet. */
MQTT_HIDDEN int mqtt__v5_check_subscribe(const mqtt_client *c, const mqtt_subscription *subs,
                                         size_t n, bool unsub, bool ids, size_t size);
/** The CONNECT's property array for this attempt (the user's, plus the
 *  session expiry a persistent session implies) in *out (NULL when none; the
 *  caller frees it with mqtt__free; it points into c->sh), *n its count. */
MQTT_HIDDEN int mqtt__v5_connect_props(const mqtt_client *c, mqtt_property **out, size_t *n);
/** An incoming PUBLISH's topic through the broker's aliases; MQTT_OK, or a
 *  protocol error with *reason (0x82, 0x94) and *why. Loop thread. */
MQTT_HIDDEN int mqtt__v5_alias_in(mqtt_client *c, mqtt_packet *p, uint8_t *reason,
                                  const char **why);
/** Room for one more incoming QoS 2 message under the receive maximum the
 *  client announced; false sets the fault's reason code (0x93). */
MQTT_HIDDEN bool mqtt__v5_receive_room(mqtt_client *c);
/** Commits a pick of mqtt__v5_alias_peek made under the same lock hold: the
 *  slot takes topic when it goes with the alias and becomes the most
 *  recently used. The alias to send (0: none, out of memory: the topic goes
 *  alone). mu held. */
MQTT_HIDDEN uint16_t mqtt__v5_alias_take(mqtt_client *c, mqtt_bytes topic, mqtt_alias_pick pick);
/** Forgets both alias tables (a new connection). */
MQTT_HIDDEN void mqtt__v5_alias_reset(mqtt_client *c);
/** DISCONNECT and AUTH from the broker, and what no broker may send after
 *  CONNACK: MQTT_OK, or a status that ends the connection (*why). Loop, mu held. */
MQTT_HIDDEN int mqtt__v5_handle(mqtt_client *c, const mqtt_packet *p, const char **why);
/** Before a connection ends on the broker's fault (status): under 5.0 a
 *  DISCONNECT with the reason code, best effort, and the code for the event. */
MQTT_HIDDEN void mqtt__v5_answer_fault(mqtt_client *c, int status);
/** The DISCONNECT disconnect() sends when it has no properties (2 or 3
 *  bytes, no allocation); 0 when it has. */
MQTT_HIDDEN size_t mqtt__v5_disconnect_short(const mqtt_client *c, uint8_t out[3]);
/** Appends the DISCONNECT disconnect() sends (reason code and properties under 5.0). */
MQTT_HIDDEN int mqtt__v5_disconnect_packet(const mqtt_client *c, mqtt_buf *b);
/** disconnect()'s work once the DISCONNECT's terms are set (connect.c). */
MQTT_HIDDEN int mqtt__disconnect(mqtt_client *c);
/** A 5.0 PUBLISH's whole size from its parts; 0 past the protocol's limit. */
MQTT_HIDDEN size_t mqtt__v5_publish_len(size_t topic_len, size_t payload_len, int qos,
                                        size_t props_len);
/** The size of m's property block, its topic alias left out (a checked m). */
MQTT_HIDDEN size_t mqtt__v5_props_len(const mqtt_message *m);
/** A property block's copy as a buffer: mqtt_buf holding mqtt__props_encode's output. */
MQTT_HIDDEN int mqtt__v5_props_block(mqtt_buf *b, const mqtt_property *p, size_t n);

/* Persistence (persist.c): each a no-op without a store; mu held. */
/** At create: opens options.store, puts back what it recovered; mqtt_last_error says why not. */
MQTT_HIDDEN int mqtt__persist_open(mqtt_client *c, const mqtt_options *o);
MQTT_HIDDEN void mqtt__persist_close(mqtt_client *c);
/** A record just added to the session: stored (publishes); returns the change's
 *  sequence number for mqtt__persist_wait (0: nothing stored). */
MQTT_HIDDEN uint64_t mqtt__persist_added(mqtt_client *c, mqtt_record *r);
/** Under sync "always", in the section that stored change seq: true when the
 *  caller is to wait for it (mqtt__persist_wait); destroy waits for it then. */
MQTT_HIDDEN bool mqtt__persist_must_wait(mqtt_client *c, uint64_t seq);
/** Waits until change seq is durable (mu let go meanwhile), or until the
 *  disk failed or destroy wrote what it could: MQTT_OK exactly when it is. */
MQTT_HIDDEN int mqtt__persist_wait(mqtt_client *c, uint64_t seq);
/** destroy, the I/O thread gone: writes what is pending, gives each waiting
 *  publisher its outcome and waits until they all have left. */
MQTT_HIDDEN void mqtt__persist_finish(mqtt_client *c);
/** The store's key of an outgoing record (0: not stored). */
MQTT_HIDDEN uint64_t mqtt__persist_key(const mqtt_client *c, const mqtt_record *r);
/** The same for a record about to be written: the change that added it is
 *  to be durable before the output goes out. */
MQTT_HIDDEN uint64_t mqtt__persist_sending(mqtt_client *c, const mqtt_record *r);
/** Forgets r's key: r is complete or dropped (it may be freed already: only compared). */
MQTT_HIDDEN void mqtt__persist_forget(mqtt_client *c, const mqtt_record *r);
/** An outgoing publish's key (0: not stored) moved on: r its new state, NULL
 *  when done. first: the output waits for this change (a PUBREC's: the PUBREL
 *  goes out once a restart cannot send the PUBLISH again). */
MQTT_HIDDEN void mqtt__persist_sent(mqtt_client *c, uint64_t key, const mqtt_record *r,
                                    bool first);
/** Incoming QoS 2 by p's id: MQTT_PUBLISH held, MQTT_PUBREL done, 0 handed over early. */
MQTT_HIDDEN void mqtt__persist_in(mqtt_client *c, uint8_t what, const mqtt_packet *p);
/** Before the session forgets every incoming id (a broker without our session). */
MQTT_HIDDEN void mqtt__persist_in_forget_all(mqtt_client *c);
/** The I/O thread: writes the pending changes (mu let go during the write),
 *  wakes waiting publishers, compacts when due. */
MQTT_HIDDEN void mqtt__persist_flush(mqtt_client *c);
/** The I/O thread, before writing output or handing over events: the
 *  changes they depend on reach the disk first. False when they could not. */
MQTT_HIDDEN bool mqtt__persist_settle(mqtt_client *c);
/** The I/O thread's timer: flushes when due; returns the next deadline (-1: none). */
MQTT_HIDDEN double mqtt__persist_tend(mqtt_client *c);

/* The loop's service for a client (io.c). */
MQTT_HIDDEN void mqtt__client_service(mqtt_member *m, uint32_t events);

#endif
