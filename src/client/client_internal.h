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

#include "mqtt.h"
#include "session.h"
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
    /* Connect settings, copied by the loop at each attempt. */
    char *host;
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
    uint64_t reconnects, read_pauses, downgraded, connect_failures, logs_dropped;
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
MQTT_HIDDEN void mqtt__log(mqtt_client *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
MQTT_HIDDEN mqtt_event *mqtt__event_message(int type, const mqtt_packet *p);
/** An ack's event for id: with p (SUBACK, UNSUBACK, the QoS acks) its reason
 *  code, its reason list and its properties, copied; p may be NULL. */
MQTT_HIDDEN mqtt_event *mqtt__event_ack(int type, uint16_t id, const mqtt_packet *p);

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
/** The first packet of a handshake: MQTT_OK when connected. */
MQTT_HIDDEN int mqtt__attempt_connack(mqtt_client *c, const mqtt_packet *pkt);
/** Ends the attempt (PH_HANDSHAKE) or the connection with status. */
MQTT_HIDDEN void mqtt__link_lost(mqtt_client *c, int status, const char *text);
MQTT_HIDDEN void mqtt__connection_lost(mqtt_client *c, int status, const char *text);
MQTT_HIDDEN void mqtt__schedule_retry(mqtt_client *c, double delay);
/** The loop lets go of c: connection closed, attempt dropped. */
MQTT_HIDDEN void mqtt__link_release(mqtt_client *c);

/* The loop's service for a client (io.c). */
MQTT_HIDDEN void mqtt__client_service(mqtt_member *m, uint32_t events);

#endif
