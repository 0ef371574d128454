/*
 * The client's private state, shared by its files. One mutex guards
 * everything the application thread and the I/O thread both touch; the I/O
 * thread alone owns the transport, the input buffer and the write buffer.
 */
#ifndef MQTT_CLIENT_INTERNAL_H
#define MQTT_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <sys/types.h>

#include "mqtt.h"
#include "session.h"
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
    ST_CONNECTING,    /* the I/O thread is opening a connection */
    ST_CONNECTED,
    ST_RETRY_WAIT,    /* back-off before an automatic reconnect */
    ST_HOOK_WAIT,     /* waiting for the application to run breconnect_cb */
    ST_DISCONNECTING  /* flushing before DISCONNECT */
} client_state;

typedef enum client_request { REQ_NONE, REQ_CONNECT, REQ_DISCONNECT } client_request;

struct mqtt_client {
    pid_t pid;                    /* the process that created it; set once */
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* connect results, thread exit */
    pthread_t thread;
    bool thread_running;
    int wake_fd;                  /* eventfd: application -> I/O thread */
    int notify_fd;                /* eventfd: readable while events are queued */
    bool pingresp_events;         /* someone listens for PINGRESP */

    mqtt_options opt;
    mqtt_buf client_id;

    /* Connect settings, copied by the I/O thread at each attempt. */
    char *host;
    mqtt_connect_options conn;
    bool has_will;
    mqtt_buf will_topic, will_payload;
    uint8_t will_qos;
    bool will_retain;
    bool has_username, has_password;
    mqtt_buf username, password;

    /* State shared under mu. */
    client_state state;
    client_request request;
    bool stop;                    /* the thread must exit */
    bool exit_when_idle;          /* after disconnect: the thread ends */
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
    uint64_t rng;

    mqtt_session *session;
    mqtt_buf out;                 /* encoded packets not yet handed to the writer */

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
    double connected_at;          /* when the current connection came up; 0: none */
    uint64_t reconnects, read_pauses, downgraded, connect_failures, logs_dropped;

    /* I/O thread only. */
    mqtt_transport *tr;
    void *tls_session;            /* saved TLS session for resumption */
    mqtt_buf in;
    bool in_backlog;              /* in holds packets not handled yet (no room for them) */
    double partial_since;         /* when the incomplete packet at the end of in began; 0: none */
    mqtt_buf wbuf;
    size_t wpos;
    double last_send, last_recv;
    /* Last write progress; the keepalive's pings write at least that often,
     * so with bytes owed and none written for 1.5 x keepalive the broker
     * reads nothing. */
    double write_ok_at;
    bool ping_outstanding;
    double disconnect_deadline;
    uint16_t keepalive;
};

/** The process clients created now belong to (client.c): written once before
 *  the first client exists, and in a child of fork() before it runs on. */
MQTT_HIDDEN extern pid_t mqtt__process_id;

/** True in a child of fork(): the client is its parent's; touch nothing shared. */
static inline bool mqtt__foreign(const mqtt_client *c)
{
    return c->pid != mqtt__process_id;
}

/** Held in the session for an incoming QoS 2 id whose message was delivered
 *  before its PUBREL (the bound was reached): the id stays known, so the
 *  message is delivered once. */
MQTT_HIDDEN extern char mqtt__delivered_mark;

/** Bytes the client must still write: queued for the writer and in its hands. mu held. */
static inline size_t mqtt__owed_bytes(const mqtt_client *c)
{
    return c->out.len + (c->wbuf.len - c->wpos);
}

/* Events (client_events.c); call with mu held. */
MQTT_HIDDEN mqtt_event *mqtt__event_new(int type, size_t extra);
/** Queues ev for the application, or stages it while c->staging. */
MQTT_HIDDEN void mqtt__event_push(mqtt_client *c, mqtt_event *ev);
/** Moves staged events to the queue (once the acks owed for them are written). */
MQTT_HIDDEN void mqtt__event_release_staged(mqtt_client *c);
/** Bytes held for the application: queued, staged, taken and held QoS 2 messages. */
static inline size_t mqtt__app_bytes(const mqtt_client *c)
{
    return c->ev_bytes + c->taken_bytes + c->held_bytes + c->staged_bytes;
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

/* The I/O thread (client_thread.c). */
MQTT_HIDDEN void *mqtt__thread_main(void *arg);
MQTT_HIDDEN void mqtt__wake(mqtt_client *c);
/** Signals (or clears) an eventfd; reads and writes are 8-byte counters. */
MQTT_HIDDEN void mqtt__fd_signal(int fd);
MQTT_HIDDEN void mqtt__fd_clear(int fd);
/** Moves what the session may send now into c->out; mu held. Returns > 0 when
 * out was empty and now is not, < 0 when out could not grow (the rest stays
 * queued in the session). */
MQTT_HIDDEN int mqtt__pump(mqtt_client *c);

/* Connection setup in the I/O thread (client_connect.c). */
MQTT_HIDDEN void mqtt__do_connect(mqtt_client *c);
MQTT_HIDDEN void mqtt__connection_lost(mqtt_client *c, int status, const char *text);

#endif
