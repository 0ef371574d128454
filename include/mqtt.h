/*
 * zmqtt public C API (versioned: MQTT_API_VERSION): an MQTT client, speaking
 * 3.1.1 for now, with a background I/O thread.
 * The core knows nothing of Lua. Every function may be called from any one
 * application thread (not concurrently with close); the I/O thread is
 * internal. Events the application must see are queued and taken in batches.
 */
#ifndef MQTT_H
#define MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The version of this API: MQTT_API_VERSION is what a program was compiled
 * against, mqtt_api_version() what the library it runs with implements.
 * Version 2 brought the versioned option structs (struct_size), the message
 * and subscription structs with MQTT 5.0 properties, and events carrying
 * reason codes and properties.
 *
 * Versioned structs (mqtt_options, mqtt_connect_options, mqtt_tls_options)
 * start with struct_size, which their init macro sets to the size the program
 * was compiled with; later versions only append fields. The library reads
 * the fields that lie wholly inside struct_size and gives the others their
 * defaults, and refuses (MQTT_ERR_INVAL, see mqtt_last_error()) a size below
 * the struct's first versioned layout or above its own: a program built
 * against a newer header than the library it runs with. Always fill them
 * with the init macro, then change what you need.
 */
#define MQTT_API_VERSION 2
int mqtt_api_version(void);

/* One table of local status codes: X(enum, stable name, description). */
#define MQTT_STATUS_LIST(X)                                                              \
    X(MQTT_OK, "ok", "success")                                                          \
    X(MQTT_ERR_NOMEM, "out of memory", "out of memory")                                  \
    X(MQTT_ERR_INVAL, "invalid argument", "invalid argument")                            \
    X(MQTT_ERR_INCOMPLETE, "incomplete", "more bytes are needed")                       \
    X(MQTT_ERR_MALFORMED, "malformed packet", "the broker sent a malformed packet")      \
    X(MQTT_ERR_PROTOCOL, "protocol error", "the broker violated the MQTT protocol")      \
    X(MQTT_ERR_REFUSED, "connection refused", "the broker refused the connection")       \
    X(MQTT_ERR_DNS, "name resolution failed", "the host name could not be resolved")     \
    X(MQTT_ERR_CONNECT, "connect failed", "the TCP connection could not be made")        \
    X(MQTT_ERR_TIMEOUT, "timeout", "the operation timed out")                            \
    X(MQTT_ERR_IO, "i/o error", "reading or writing the socket failed")                  \
    X(MQTT_ERR_CLOSED, "connection closed", "the broker closed the connection")          \
    X(MQTT_ERR_KEEPALIVE, "keepalive timeout", "nothing heard from the broker in time")  \
    X(MQTT_ERR_NO_CONN, "not connected", "the client is not connected")                  \
    X(MQTT_ERR_QUEUE_FULL, "queue full", "the outgoing queue is full")                   \
    X(MQTT_ERR_NO_ID, "no packet id", "all 65535 packet ids are in use")                 \
    X(MQTT_ERR_STATE, "bad state", "the call is not allowed in the client's state")      \
    X(MQTT_ERR_CANCELLED, "cancelled", "the operation was cancelled")                    \
    X(MQTT_ERR_TLS, "tls error", "the TLS layer failed")                                  \
    X(MQTT_ERR_SYSTEM, "system error", "a system call failed")                            \
    X(MQTT_ERR_TOO_LARGE, "packet too large", "the broker sent a packet over the size limit") \
    X(MQTT_ERR_NOT_ALLOWED, "not allowed", "the broker announced it does not allow this") \
    X(MQTT_ERR_PROXY, "proxy error", "the proxy refused or broke the connection to the broker")

#define MQTT_ENUM_ENTRY(e, name, text) e,
typedef enum mqtt_status { MQTT_STATUS_LIST(MQTT_ENUM_ENTRY) MQTT_STATUS_COUNT } mqtt_status;
#undef MQTT_ENUM_ENTRY

/** Description of a status code; never NULL. */
const char *mqtt_strerror(int status);
/** Stable short name of a status code, for programs to branch on; never NULL. */
const char *mqtt_errname(int status);
/** What the last MQTT_ERR_SYSTEM in this thread was: the call and the system's
 *  reason ("eventfd: Too many open files"). Never NULL. */
const char *mqtt_system_error(void);
/**
 * Why the last call in this thread that returned MQTT_ERR_INVAL refused its
 * arguments, in words naming the argument ("topic: wildcards are not
 * allowed in a topic name", "property topic_alias: not allowed in SUBSCRIBE",
 * "properties need MQTT 5.0; the client speaks MQTT 3.1.1"). The calls that
 * set it clear it when they start; "" when the last one said nothing more.
 * Never NULL; valid until the next call into the library in this thread.
 */
const char *mqtt_last_error(void);
/** With MQTT_ERR_NOT_ALLOWED: the MQTT 5.0 reason code the broker would have
 *  given (0x9B "qos not supported", 0x95 "packet too large", ...); else 0. */
int mqtt_last_reason(void);
/** Name of a CONNACK return code (1..5 as in MQTT 3.1.1 section 3.2.2.3). */
const char *mqtt_connack_name(int return_code);

/* ---- Protocol tables (MQTT 3.1.1 and 5.0) ------------------------------- */
/* Each protocol fact is one row of one list below; the enums here, the codec's
 * validation, the names in errors and events and the Lua constants all derive
 * from these rows, so adding a property or a reason code is one line. */

/* Control packet types: X(enum, value as the high nibble of the first byte, name). */
#define MQTT_PACKET_LIST(X)                                                              \
    X(MQTT_CONNECT, 0x10, "CONNECT")                                                     \
    X(MQTT_CONNACK, 0x20, "CONNACK")                                                     \
    X(MQTT_PUBLISH, 0x30, "PUBLISH")                                                     \
    X(MQTT_PUBACK, 0x40, "PUBACK")                                                       \
    X(MQTT_PUBREC, 0x50, "PUBREC")                                                       \
    X(MQTT_PUBREL, 0x60, "PUBREL")                                                       \
    X(MQTT_PUBCOMP, 0x70, "PUBCOMP")                                                     \
    X(MQTT_SUBSCRIBE, 0x80, "SUBSCRIBE")                                                 \
    X(MQTT_SUBACK, 0x90, "SUBACK")                                                       \
    X(MQTT_UNSUBSCRIBE, 0xA0, "UNSUBSCRIBE")                                             \
    X(MQTT_UNSUBACK, 0xB0, "UNSUBACK")                                                   \
    X(MQTT_PINGREQ, 0xC0, "PINGREQ")                                                     \
    X(MQTT_PINGRESP, 0xD0, "PINGRESP")                                                   \
    X(MQTT_DISCONNECT, 0xE0, "DISCONNECT")                                               \
    X(MQTT_AUTH, 0xF0, "AUTH")

/* Turns a row X(enum, value, name) into an enumerator. */
#define MQTT_ENUM_VALUE_(e, value, name) e = (value),
enum { MQTT_PACKET_LIST(MQTT_ENUM_VALUE_) };

/** The protocol levels CONNECT carries: 3.1.1 and 5.0. */
enum { MQTT_V311 = 4, MQTT_V5 = 5 };
/** mqtt_options.protocol: MQTT 5.0 first, 3.1.1 when the broker refuses that
 *  version (CONNACK 0x84) or closes before any CONNACK; the version that
 *  worked is kept for reconnects. */
#define MQTT_PROTOCOL_AUTO (-1)

/** mqtt_options.topic_alias (MQTT 5.0, outgoing): AUTO gives aliases to
 *  published topics (least recently used out) up to the broker's maximum;
 *  MANUAL takes the topic_alias property of each publish; OFF sends none. */
enum { MQTT_ALIAS_AUTO = 0, MQTT_ALIAS_OFF = 1, MQTT_ALIAS_MANUAL = 2 };

/* When the store's writes reach the disk: a publish that returned is durable
 * (ALWAYS); within 100 ms, and before the broker sees them (BATCH); as the
 * operating system decides (NEVER). */
enum { MQTT_SYNC_ALWAYS = 0, MQTT_SYNC_BATCH = 1, MQTT_SYNC_NEVER = 2 };

/** A pseudo packet type standing for the will's properties inside CONNECT. */
enum { MQTT_WILL_PROPERTIES = 0x00 };
/** A packet type (or MQTT_WILL_PROPERTIES) as one bit of a packet set. */
#define MQTT_PACKET_BIT(type) (1u << ((unsigned)(type) >> 4))
#define MQTT_PK_(t) MQTT_PACKET_BIT(MQTT_##t)

/* Wire types of properties, numbered from 1: X(enum suffix, the spec's data type in snake_case). */
#define MQTT_PROPERTY_TYPE_LIST(X)                                                       \
    X(BYTE, "byte")                                                                      \
    X(U16, "two_byte_integer")                                                           \
    X(U32, "four_byte_integer")                                                          \
    X(VARINT, "variable_byte_integer")                                                   \
    X(STRING, "utf8_string")                                                             \
    X(BINARY, "binary_data")                                                             \
    X(PAIR, "utf8_string_pair")

#define MQTT_PTYPE_ENUM_(e, name) MQTT_PTYPE_##e,
enum { MQTT_PTYPE_NONE_ = 0, MQTT_PROPERTY_TYPE_LIST(MQTT_PTYPE_ENUM_) };

/* Packets that carry a property, by family. */
#define MQTT_PK_MESSAGE_ (MQTT_PK_(PUBLISH) | MQTT_PK_(WILL_PROPERTIES))
#define MQTT_PK_PUBACKS_ (MQTT_PK_(PUBACK) | MQTT_PK_(PUBREC) | MQTT_PK_(PUBREL) | MQTT_PK_(PUBCOMP))
#define MQTT_PK_ALL_                                                                     \
    (MQTT_PK_(CONNECT) | MQTT_PK_(CONNACK) | MQTT_PK_MESSAGE_ | MQTT_PK_PUBACKS_ |        \
     MQTT_PK_(SUBSCRIBE) | MQTT_PK_(SUBACK) | MQTT_PK_(UNSUBSCRIBE) | MQTT_PK_(UNSUBACK) |  \
     MQTT_PK_(DISCONNECT) | MQTT_PK_(AUTH))

/*
 * MQTT 5.0 properties (section 2.2.2.2): X(enum suffix, identifier, name,
 * wire type, packets that may carry it, packets in which it may repeat,
 * smallest and largest value of an integer). The name is the spec's name in
 * snake_case, the one Lua uses. A property outside [min, max] is a protocol
 * error (receive_maximum 0, maximum_qos 2, topic_alias 0, ...).
 */
#define MQTT_PROPERTY_LIST(X)                                                                   \
    X(PAYLOAD_FORMAT_INDICATOR, 0x01, "payload_format_indicator", BYTE, MQTT_PK_MESSAGE_, 0, 0, 1) \
    X(MESSAGE_EXPIRY_INTERVAL, 0x02, "message_expiry_interval", U32, MQTT_PK_MESSAGE_, 0, 0,      \
      UINT32_MAX)                                                                               \
    X(CONTENT_TYPE, 0x03, "content_type", STRING, MQTT_PK_MESSAGE_, 0, 0, 0)                      \
    X(RESPONSE_TOPIC, 0x08, "response_topic", STRING, MQTT_PK_MESSAGE_, 0, 0, 0)                  \
    X(CORRELATION_DATA, 0x09, "correlation_data", BINARY, MQTT_PK_MESSAGE_, 0, 0, 0)              \
    X(SUBSCRIPTION_IDENTIFIER, 0x0B, "subscription_identifier", VARINT,                           \
      MQTT_PK_(PUBLISH) | MQTT_PK_(SUBSCRIBE), MQTT_PK_(PUBLISH), 1, 268435455)                  \
    X(SESSION_EXPIRY_INTERVAL, 0x11, "session_expiry_interval", U32,                              \
      MQTT_PK_(CONNECT) | MQTT_PK_(CONNACK) | MQTT_PK_(DISCONNECT), 0, 0, UINT32_MAX)             \
    X(ASSIGNED_CLIENT_IDENTIFIER, 0x12, "assigned_client_identifier", STRING, MQTT_PK_(CONNACK),  \
      0, 0, 0)                                                                                  \
    X(SERVER_KEEP_ALIVE, 0x13, "server_keep_alive", U16, MQTT_PK_(CONNACK), 0, 0, 65535)          \
    X(AUTHENTICATION_METHOD, 0x15, "authentication_method", STRING,                               \
      MQTT_PK_(CONNECT) | MQTT_PK_(CONNACK) | MQTT_PK_(AUTH), 0, 0, 0)                            \
    X(AUTHENTICATION_DATA, 0x16, "authentication_data", BINARY,                                   \
      MQTT_PK_(CONNECT) | MQTT_PK_(CONNACK) | MQTT_PK_(AUTH), 0, 0, 0)                            \
    X(REQUEST_PROBLEM_INFORMATION, 0x17, "request_problem_information", BYTE, MQTT_PK_(CONNECT),  \
      0, 0, 1)                                                                                  \
    X(WILL_DELAY_INTERVAL, 0x18, "will_delay_interval", U32, MQTT_PK_(WILL_PROPERTIES), 0, 0,     \
      UINT32_MAX)                                                                               \
    X(REQUEST_RESPONSE_INFORMATION, 0x19, "request_response_information", BYTE,                   \
      MQTT_PK_(CONNECT), 0, 0, 1)                                                               \
    X(RESPONSE_INFORMATION, 0x1A, "response_information", STRING, MQTT_PK_(CONNACK), 0, 0, 0)     \
    X(SERVER_REFERENCE, 0x1C, "server_reference", STRING,                                         \
      MQTT_PK_(CONNACK) | MQTT_PK_(DISCONNECT), 0, 0, 0)                                          \
    X(REASON_STRING, 0x1F, "reason_string", STRING,                                               \
      MQTT_PK_ALL_ & ~(MQTT_PK_(CONNECT) | MQTT_PK_MESSAGE_ | MQTT_PK_(SUBSCRIBE) |               \
                       MQTT_PK_(UNSUBSCRIBE)), 0, 0, 0)                                         \
    X(RECEIVE_MAXIMUM, 0x21, "receive_maximum", U16, MQTT_PK_(CONNECT) | MQTT_PK_(CONNACK), 0, 1, \
      65535)                                                                                    \
    X(TOPIC_ALIAS_MAXIMUM, 0x22, "topic_alias_maximum", U16,                                      \
      MQTT_PK_(CONNECT) | MQTT_PK_(CONNACK), 0, 0, 65535)                                         \
    X(TOPIC_ALIAS, 0x23, "topic_alias", U16, MQTT_PK_(PUBLISH), 0, 1, 65535)                      \
    X(MAXIMUM_QOS, 0x24, "maximum_qos", BYTE, MQTT_PK_(CONNACK), 0, 0, 1)                         \
    X(RETAIN_AVAILABLE, 0x25, "retain_available", BYTE, MQTT_PK_(CONNACK), 0, 0, 1)               \
    X(USER_PROPERTY, 0x26, "user_property", PAIR, MQTT_PK_ALL_, MQTT_PK_ALL_, 0, 0)               \
    X(MAXIMUM_PACKET_SIZE, 0x27, "maximum_packet_size", U32,                                      \
      MQTT_PK_(CONNECT) | MQTT_PK_(CONNACK), 0, 1, UINT32_MAX)                                    \
    X(WILDCARD_SUBSCRIPTION_AVAILABLE, 0x28, "wildcard_subscription_available", BYTE,             \
      MQTT_PK_(CONNACK), 0, 0, 1)                                                               \
    X(SUBSCRIPTION_IDENTIFIER_AVAILABLE, 0x29, "subscription_identifier_available", BYTE,         \
      MQTT_PK_(CONNACK), 0, 0, 1)                                                               \
    X(SHARED_SUBSCRIPTION_AVAILABLE, 0x2A, "shared_subscription_available", BYTE,                 \
      MQTT_PK_(CONNACK), 0, 0, 1)

#define MQTT_PROP_ENUM(e, id, name, type, packets, repeats, lo, hi) MQTT_PROP_##e = (id),
enum { MQTT_PROPERTY_LIST(MQTT_PROP_ENUM) };
#undef MQTT_PROP_ENUM
/** Largest property identifier of the list (room for a bit set of them all). */
#define MQTT_PROP_MAX_ID 0x2A

/* Packets that carry a reason code, by family. */
#define MQTT_PK_PUBRESULT_ (MQTT_PK_(PUBACK) | MQTT_PK_(PUBREC))
#define MQTT_PK_REFUSALS_                                                                \
    (MQTT_PK_(CONNACK) | MQTT_PK_PUBRESULT_ | MQTT_PK_(SUBACK) | MQTT_PK_(UNSUBACK) |     \
     MQTT_PK_(DISCONNECT))
#define MQTT_PK_CD_ (MQTT_PK_(CONNACK) | MQTT_PK_(DISCONNECT))

/*
 * MQTT 5.0 reason codes (section 2.4): X(enum suffix, code, name, packets
 * that may carry it). A code that means different things in different
 * packets (0x00) has one row per meaning. Names are the spec's, in lower case.
 */
#define MQTT_REASON_LIST(X)                                                                     \
    X(SUCCESS, 0x00, "success",                                                                 \
      MQTT_PK_(CONNACK) | MQTT_PK_PUBACKS_ | MQTT_PK_(UNSUBACK) | MQTT_PK_(AUTH))                 \
    X(NORMAL_DISCONNECTION, 0x00, "normal disconnection", MQTT_PK_(DISCONNECT))                 \
    X(GRANTED_QOS_0, 0x00, "granted qos 0", MQTT_PK_(SUBACK))                                   \
    X(GRANTED_QOS_1, 0x01, "granted qos 1", MQTT_PK_(SUBACK))                                   \
    X(GRANTED_QOS_2, 0x02, "granted qos 2", MQTT_PK_(SUBACK))                                   \
    X(DISCONNECT_WITH_WILL_MESSAGE, 0x04, "disconnect with will message", MQTT_PK_(DISCONNECT)) \
    X(NO_MATCHING_SUBSCRIBERS, 0x10, "no matching subscribers", MQTT_PK_PUBRESULT_)             \
    X(NO_SUBSCRIPTION_EXISTED, 0x11, "no subscription existed", MQTT_PK_(UNSUBACK))             \
    X(CONTINUE_AUTHENTICATION, 0x18, "continue authentication", MQTT_PK_(AUTH))                 \
    X(RE_AUTHENTICATE, 0x19, "re-authenticate", MQTT_PK_(AUTH))                                 \
    X(UNSPECIFIED_ERROR, 0x80, "unspecified error", MQTT_PK_REFUSALS_)                          \
    X(MALFORMED_PACKET, 0x81, "malformed packet", MQTT_PK_CD_)                                  \
    X(PROTOCOL_ERROR, 0x82, "protocol error", MQTT_PK_CD_)                                      \
    X(IMPLEMENTATION_SPECIFIC_ERROR, 0x83, "implementation specific error", MQTT_PK_REFUSALS_)  \
    X(UNSUPPORTED_PROTOCOL_VERSION, 0x84, "unsupported protocol version", MQTT_PK_(CONNACK))    \
    X(CLIENT_IDENTIFIER_NOT_VALID, 0x85, "client identifier not valid", MQTT_PK_(CONNACK))      \
    X(BAD_USER_NAME_OR_PASSWORD, 0x86, "bad user name or password", MQTT_PK_(CONNACK))          \
    X(NOT_AUTHORIZED, 0x87, "not authorized", MQTT_PK_REFUSALS_)                                \
    X(SERVER_UNAVAILABLE, 0x88, "server unavailable", MQTT_PK_(CONNACK))                        \
    X(SERVER_BUSY, 0x89, "server busy", MQTT_PK_CD_)                                            \
    X(BANNED, 0x8A, "banned", MQTT_PK_(CONNACK))                                                \
    X(SERVER_SHUTTING_DOWN, 0x8B, "server shutting down", MQTT_PK_(DISCONNECT))                 \
    X(BAD_AUTHENTICATION_METHOD, 0x8C, "bad authentication method", MQTT_PK_CD_)                \
    X(KEEP_ALIVE_TIMEOUT, 0x8D, "keep alive timeout", MQTT_PK_(DISCONNECT))                     \
    X(SESSION_TAKEN_OVER, 0x8E, "session taken over", MQTT_PK_(DISCONNECT))                     \
    X(TOPIC_FILTER_INVALID, 0x8F, "topic filter invalid",                                       \
      MQTT_PK_(SUBACK) | MQTT_PK_(UNSUBACK) | MQTT_PK_(DISCONNECT))                               \
    X(TOPIC_NAME_INVALID, 0x90, "topic name invalid", MQTT_PK_CD_ | MQTT_PK_PUBRESULT_)         \
    X(PACKET_IDENTIFIER_IN_USE, 0x91, "packet identifier in use",                               \
      MQTT_PK_PUBRESULT_ | MQTT_PK_(SUBACK) | MQTT_PK_(UNSUBACK))                                 \
    X(PACKET_IDENTIFIER_NOT_FOUND, 0x92, "packet identifier not found",                         \
      MQTT_PK_(PUBREL) | MQTT_PK_(PUBCOMP))                                                       \
    X(RECEIVE_MAXIMUM_EXCEEDED, 0x93, "receive maximum exceeded", MQTT_PK_(DISCONNECT))         \
    X(TOPIC_ALIAS_INVALID, 0x94, "topic alias invalid", MQTT_PK_(DISCONNECT))                   \
    X(PACKET_TOO_LARGE, 0x95, "packet too large", MQTT_PK_CD_)                                  \
    X(MESSAGE_RATE_TOO_HIGH, 0x96, "message rate too high", MQTT_PK_(DISCONNECT))               \
    X(QUOTA_EXCEEDED, 0x97, "quota exceeded", MQTT_PK_CD_ | MQTT_PK_PUBRESULT_ | MQTT_PK_(SUBACK)) \
    X(ADMINISTRATIVE_ACTION, 0x98, "administrative action", MQTT_PK_(DISCONNECT))               \
    X(PAYLOAD_FORMAT_INVALID, 0x99, "payload format invalid", MQTT_PK_CD_ | MQTT_PK_PUBRESULT_) \
    X(RETAIN_NOT_SUPPORTED, 0x9A, "retain not supported", MQTT_PK_CD_)                          \
    X(QOS_NOT_SUPPORTED, 0x9B, "qos not supported", MQTT_PK_CD_)                                \
    X(USE_ANOTHER_SERVER, 0x9C, "use another server", MQTT_PK_CD_)                              \
    X(SERVER_MOVED, 0x9D, "server moved", MQTT_PK_CD_)                                          \
    X(SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, 0x9E, "shared subscriptions not supported",           \
      MQTT_PK_(SUBACK) | MQTT_PK_(DISCONNECT))                                                    \
    X(CONNECTION_RATE_EXCEEDED, 0x9F, "connection rate exceeded", MQTT_PK_CD_)                  \
    X(MAXIMUM_CONNECT_TIME, 0xA0, "maximum connect time", MQTT_PK_(DISCONNECT))                 \
    X(SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, 0xA1, "subscription identifiers not supported",   \
      MQTT_PK_(SUBACK) | MQTT_PK_(DISCONNECT))                                                    \
    X(WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED, 0xA2, "wildcard subscriptions not supported",       \
      MQTT_PK_(SUBACK) | MQTT_PK_(DISCONNECT))

#define MQTT_REASON_ENUM(e, code, name, packets) MQTT_RC_##e = (code),
enum { MQTT_REASON_LIST(MQTT_REASON_ENUM) };
#undef MQTT_REASON_ENUM

/**
 * One MQTT 5.0 property, as the codec takes it to encode and gives it when
 * walking a decoded packet. Integers (byte, two-, four- and variable-byte)
 * are in value; a string or binary property is data/len; a user_property's
 * name is data/len and its value data2/len2. The bytes are borrowed: the
 * caller's when encoding, the input buffer's when decoding. Strings are not
 * NUL terminated.
 */
typedef struct mqtt_property {
    uint8_t id;           /* MQTT_PROP_* */
    uint32_t value;
    const uint8_t *data;
    size_t len;
    const uint8_t *data2;
    size_t len2;
} mqtt_property;

/** What the protocol tables say about one property. */
typedef struct mqtt_property_info {
    uint8_t id;           /* 0 in an unused slot */
    uint8_t type;         /* MQTT_PTYPE_* */
    const char *name;     /* snake_case */
    uint32_t packets;     /* MQTT_PACKET_BIT of each packet that may carry it */
    uint32_t repeats;     /* ... and of each in which it may appear more than once */
    uint32_t min, max;    /* integer range; both 0 for strings, binary and pairs */
} mqtt_property_info;

/* Lookups in the tables above: pure, any thread. */
/** "PUBLISH" for MQTT_PUBLISH (the type with or without its flag nibble); NULL for 0x00. */
const char *mqtt_packet_name(int type);
/** The property's table row; NULL for an unknown identifier. */
const mqtt_property_info *mqtt_property_lookup(int id);
/** "topic_alias" for 0x23; NULL for an unknown identifier. */
const char *mqtt_property_name(int id);
/** 0x23 for "topic_alias" (NUL-terminated); 0 for an unknown name. */
int mqtt_property_id(const char *name);
/** MQTT_PTYPE_* of the property; 0 for an unknown identifier. */
int mqtt_property_type(int id);
/** "two_byte_integer" for MQTT_PTYPE_U16; NULL for an unknown type. */
const char *mqtt_property_type_name(int type);
/** The property may be carried by that packet type (or MQTT_WILL_PROPERTIES). */
bool mqtt_property_allowed(int id, int packet_type);
/**
 * The name of a reason code in a packet type, in lower case ("granted qos 1"
 * in SUBACK, "normal disconnection" in DISCONNECT); with packet_type 0 the
 * first name the code has in any packet ("success" for 0x00). NULL when the
 * code does not exist, or does not exist in that packet.
 */
const char *mqtt_reason_name(int code, int packet_type);

/** Largest remaining length MQTT can encode (4 bytes of varint). */
#define MQTT_MAX_REMAINING 268435455u
/** Largest payload `publish` accepts: the protocol's 256 MiB. */
#define MQTT_MAX_PAYLOAD (256u * 1024u * 1024u)

typedef struct mqtt_client mqtt_client;

/**
 * Client options: fill with mqtt_options_init() and change what you need.
 * A versioned struct (see MQTT_API_VERSION): the fields from protocol on are
 * read only when struct_size covers them.
 */
typedef struct mqtt_options {
    size_t struct_size;    /* set by mqtt_options_init */
    const char *client_id; /* borrowed for the create call only */
    size_t client_id_len;
    bool clean_session;      /* default true */
    /* Outgoing QoS 1/2 awaiting ack; default 20, what brokers accept unasked
     * (mosquitto's max_inflight_messages): more can be acked and dropped. */
    uint32_t max_inflight;
    uint32_t max_queued;     /* records held unsent; default 100000 */
    /* Bytes held in all records, and the bound on what the client must still
     * write (publishes and owed acks): reading stops there; default 256 MiB. */
    size_t max_queued_bytes;
    /* Bytes held for the application (events not yet handled, QoS 2 messages
     * awaiting PUBREL): reading pauses there; default 64 MiB. */
    size_t max_event_bytes;
    bool reconnect;          /* automatic reconnect once enabled; default true */
    double reconnect_min;    /* seconds; default 1 */
    double reconnect_max;    /* seconds; default 30 */
    double connect_timeout;  /* seconds, DNS included; default 10 */
    double disconnect_timeout; /* seconds to flush before DISCONNECT; default 5 */
    size_t max_packet;       /* largest packet accepted from the broker, fixed header included */
    bool log_events;         /* queue MQTT_EV_LOG events; default false */
    /* The protocol level: MQTT_V311 (the default), MQTT_V5 or MQTT_PROTOCOL_AUTO. */
    int protocol;
    /* CONNECT properties (MQTT 5.0 only): checked against the property table
     * for CONNECT, then refused under 3.1.1 (MQTT_ERR_INVAL). Borrowed for
     * the create call only. Without session_expiry_interval a client with
     * clean_session false sends 0xFFFFFFFF (the session never expires). */
    const mqtt_property *connect_props;
    size_t connect_prop_count;
    int topic_alias;         /* MQTT_ALIAS_*; default AUTO */
    /* Persistence: the store directory (created when missing; one store per
     * client id; borrowed for the create call only); NULL: none. */
    const char *store;
    int store_sync;          /* MQTT_SYNC_*; default ALWAYS */
} mqtt_options;

/** The smallest struct_size mqtt_client_create accepts: the layout before protocol. */
#define MQTT_OPTIONS_MIN_SIZE offsetof(mqtt_options, protocol)

/** Sets struct_size to size and every field inside it to its default.
 *  MQTT_ERR_INVAL (o untouched) for a size this library does not know. */
int mqtt_options_init_v(mqtt_options *o, size_t size);
#define mqtt_options_init(o) mqtt_options_init_v((o), sizeof *(o))

/** Removes the store options.store kept for client_id in dir (MQTT_OK when
 *  there is none). MQTT_ERR_STATE while a client holds it; MQTT_ERR_INVAL,
 *  MQTT_ERR_SYSTEM as for mqtt_client_create. */
int mqtt_store_clear(const char *dir, const char *client_id, size_t client_id_len);

/* ---- TLS ------------------------------------------------------------ */

typedef struct mqtt_tls_config mqtt_tls_config;

/** What a TLS context is made of. Strings are read during mqtt_tls_config_new only. */
typedef struct mqtt_tls_options {
    size_t struct_size;           /* set by mqtt_tls_options_init */
    const char *cafile, *capath;  /* PEM or DER file; directory of certificates */
    const char *cadata;           /* PEM text */
    size_t cadata_len;
    const char *certfile, *keyfile;
    const char *certdata, *keydata; /* PEM text */
    size_t certdata_len, keydata_len;
    const char *key_password;
    const char *server_name;      /* SNI and verification name; NULL: the connect host */
    bool verify;                  /* chain and host name; default true */
    const char *const *alpn;      /* protocol names */
    size_t alpn_count;
    int min_version;              /* 2 for TLS 1.2 (default), 3 for TLS 1.3 */
    const uint8_t *psk;           /* raw key bytes */
    size_t psk_len;
    const char *psk_identity;
} mqtt_tls_options;

/** Versioned like mqtt_options: sets struct_size and the defaults;
 *  MQTT_ERR_INVAL for a size this library does not know. */
int mqtt_tls_options_init_v(mqtt_tls_options *o, size_t size);
#define mqtt_tls_options_init(o) mqtt_tls_options_init_v((o), sizeof *(o))
/** Builds an immutable, shareable context (refcount 1). On failure err says why, naming
 *  files (a struct_size the library does not know: MQTT_ERR_INVAL). */
int mqtt_tls_config_new(const mqtt_tls_options *o, mqtt_tls_config **out, char *err,
                        size_t errlen);
/** Reference counting: any thread; the last unref frees. NULL is fine. */
mqtt_tls_config *mqtt_tls_config_ref(mqtt_tls_config *cfg);
void mqtt_tls_config_unref(mqtt_tls_config *cfg);

/** An HTTP header: a name and its value (the WebSocket upgrade request's). */
typedef struct mqtt_header {
    const char *name, *value;
} mqtt_header;

/**
 * Where and how to connect. Strings are copied by the call. A server is a
 * URI (mqtt://host[:1883], mqtts://host[:8883], ws://host[:80]/path,
 * wss://host[:443]/path, unix:///path) or a plain host name or address,
 * which means mqtt:// on port, or mqtts:// on port when tls is set. A URI's
 * own port wins, else its scheme's default. mqtts:// and wss:// use tls,
 * else a context that verifies against the system CA store. Every URI is
 * checked by the connect call (MQTT_ERR_INVAL, mqtt_last_error() saying what
 * is wrong) before anything is sent.
 */
typedef struct mqtt_connect_options {
    size_t struct_size; /* set by mqtt_connect_options_init */
    const char *host;   /* a URI or a host; NULL when servers are given */
    uint16_t port;      /* default 1883; for plain host names only */
    uint16_t keepalive; /* seconds; 0 disables */
    bool has_sock_keepalive;
    int sock_keepalive[3]; /* count, idle seconds, interval seconds */
    mqtt_tls_config *tls; /* the TLS context for mqtts/wss and plain hosts; referenced */
    /* From here on read only when struct_size covers them. */
    /* Servers tried round robin instead of host: after a failed attempt or a
     * loss the next one, the back-off applied per full round; a blocking
     * connect tries each once. */
    const char *const *servers;
    size_t server_count;
    /* A proxy URI (socks5://, http://) or "env"; NULL: direct. */
    const char *proxy;
    /* Headers added to the WebSocket upgrade request (ws://, wss://). */
    const mqtt_header *ws_headers;
    size_t ws_header_count;
    /* MQTT 5.0: a CONNACK refusal or a DISCONNECT with reason 0x9C (use
     * another server) or 0x9D (server moved) and a server_reference puts
     * that server at the front of the list, tried next. A reference without
     * "scheme://" takes the current server's scheme. */
    bool follow_redirects;
} mqtt_connect_options;

/** The smallest struct_size the connect calls accept: the layout before servers. */
#define MQTT_CONNECT_OPTIONS_MIN_SIZE offsetof(mqtt_connect_options, servers)

/** Versioned like mqtt_options: sets struct_size and the defaults;
 *  MQTT_ERR_INVAL for a size this library does not know. */
int mqtt_connect_options_init_v(mqtt_connect_options *o, size_t size);
#define mqtt_connect_options_init(o) mqtt_connect_options_init_v((o), sizeof *(o))

/** Result of a blocking connect, filled on every outcome. A fixed layout:
 *  what MQTT 5.0's CONNACK adds (its reason code and properties) comes with
 *  the MQTT_EV_CONNACK event, which a blocking connect queues too (sync). */
typedef struct mqtt_connect_result {
    int status;          /* MQTT_OK, MQTT_ERR_REFUSED (see return_code), or the local error */
    int return_code;     /* CONNACK return code, or -1 when no CONNACK arrived */
    bool session_present;
    char message[256];   /* what happened, in words */
} mqtt_connect_result;

/* Events the application takes from the queue. */
enum {
    MQTT_EV_CONNACK = MQTT_CONNACK,     /* connect outcome (success or failure) */
    MQTT_EV_PUBLISH = MQTT_PUBLISH,     /* QoS 0/1 message, or QoS 2 arrival (mid only) */
    MQTT_EV_PUBACK = MQTT_PUBACK,
    MQTT_EV_PUBREC = MQTT_PUBREC,
    MQTT_EV_PUBREL = MQTT_PUBREL,       /* QoS 2 message released, exactly once */
    MQTT_EV_PUBCOMP = MQTT_PUBCOMP,
    MQTT_EV_SUBACK = MQTT_SUBACK,
    MQTT_EV_UNSUBACK = MQTT_UNSUBACK,
    MQTT_EV_PINGRESP = MQTT_PINGRESP,
    MQTT_EV_DISCONNECT = MQTT_DISCONNECT, /* connection lost or closed */
    MQTT_EV_AUTH = MQTT_AUTH,           /* MQTT 5.0 AUTH from the broker */
    MQTT_EV_BEFORE_RECONNECT = 0x100,   /* the I/O thread waits for mqtt_client_proceed() */
    MQTT_EV_LOG = 0x101
};

/**
 * One queued event; owned by the caller once taken, freed with
 * mqtt_event_free(). The library allocates events: later versions add
 * fields after props_len only, so the offsets here never move.
 */
typedef struct mqtt_event {
    struct mqtt_event *next;
    int type;             /* MQTT_EV_* */
    int status;           /* local status for CONNACK/DISCONNECT events */
    uint16_t mid;
    uint8_t qos;
    bool retain, dup;
    bool has_message;     /* topic/payload are valid */
    bool sync;            /* CONNACK of a blocking connect already reported */
    bool session_present;
    bool downgraded;      /* PUBACK completing a QoS 2 publish the broker took as QoS 1 */
    /* The packet's reason code (MQTT 5.0 acks, DISCONNECT, AUTH); 0 when the
     * packet had none, so always 0 under 3.1.1 (CONNACK's code is return_code). */
    uint8_t reason_code;
    int return_code;      /* CONNACK code, -1 when none */
    int level;            /* MQTT_EV_LOG level */
    size_t topic_len, payload_len, text_len;
    const char *topic;    /* points into the event; NUL terminated */
    const uint8_t *payload;
    const char *text;     /* error or log text, NUL terminated, or NULL */
    size_t bytes;         /* accounted size */
    /* SUBACK and UNSUBACK: reason_count codes, one per filter, in order
     * (SUBACK: the granted QoS 0..2, or >= 0x80 refused). Under 3.1.1 UNSUBACK
     * has none. NULL/0 for the other events. */
    const uint8_t *reasons;
    /* The packet's MQTT 5.0 property block (props_len bytes), as received;
     * walk it with mqtt_event_property_next(). NULL/0 when it had none
     * (always under 3.1.1). */
    const uint8_t *props;
    uint32_t reason_count;
    uint32_t props_len;
    /* DISCONNECT: the broker sent a DISCONNECT packet (reason_code and props
     * are its); false for a loss, a fault the client found, or its own. */
    bool from_broker;
    uint8_t data[];       /* private: what the pointers above point into */
} mqtt_event;

/**
 * Walks the event's properties in the order received: start with *pos = 0;
 * each call fills *out (strings and binary point into the event) and
 * advances *pos; false at the end, or for an event without properties.
 */
bool mqtt_event_property_next(const mqtt_event *ev, size_t *pos, mqtt_property *out);
/** The event's first property with that identifier (MQTT_PROP_*); false when absent. */
bool mqtt_event_property_find(const mqtt_event *ev, int id, mqtt_property *out);

void mqtt_event_free(mqtt_event *ev);

/**
 * Creates a client; *out is owned by the caller until mqtt_client_destroy().
 * MQTT_ERR_SYSTEM: mqtt_system_error() names the call that failed.
 * A client belongs to the process that created it: in a child after fork(),
 * every call returns MQTT_ERR_STATE (or false, or nothing) without blocking.
 */
int mqtt_client_create(const mqtt_options *o, mqtt_client **out);
/**
 * Stops and joins the I/O thread, closes the socket, frees everything. NULL is
 * fine. With a store it writes what is pending first, and publishes waiting
 * in other threads under sync "always" return before it does: MQTT_OK when
 * their message is on disk. In a child after fork() it only closes the
 * child's copies of the descriptors: the parent's connection, thread and
 * store are left alone.
 */
void mqtt_client_destroy(mqtt_client *c);
/** The process the client belongs to, and whether that is not this one (after fork()). */
long mqtt_client_owner(const mqtt_client *c);
bool mqtt_client_foreign(const mqtt_client *c);

/**
 * An outgoing message, for mqtt_client_publish and mqtt_client_set_will.
 * Everything is borrowed for the call only (copied). topic: a topic name
 * (no wildcards); payload may be NULL when payload_len is 0; qos 0..2.
 * props/prop_count: MQTT 5.0 properties (PUBLISH's, or the will's), checked
 * against the property table, refused under 3.1.1. A fixed layout: what a
 * later protocol adds to a message comes as properties.
 */
typedef struct mqtt_message {
    const char *topic;
    size_t topic_len;
    const void *payload;
    size_t payload_len;
    int qos;
    bool retain;
    const mqtt_property *props;
    size_t prop_count;
} mqtt_message;

/** Will for the next connects; NULL clears it. The payload is at most 65535 bytes.
 *  MQTT_ERR_INVAL (mqtt_last_error() says why), MQTT_ERR_NOMEM, MQTT_ERR_STATE. */
int mqtt_client_set_will(mqtt_client *c, const mqtt_message *will);
/** Credentials for the next connects; username NULL clears both. */
int mqtt_client_set_credentials(mqtt_client *c, const char *username, size_t username_len,
                                const char *password, size_t password_len);

/** Connects and waits for the CONNACK. *res always describes the outcome. */
int mqtt_client_connect(mqtt_client *c, const mqtt_connect_options *o, mqtt_connect_result *res);
/** Starts connecting in the I/O thread; the outcome is an MQTT_EV_CONNACK event. */
int mqtt_client_connect_async(mqtt_client *c, const mqtt_connect_options *o);
/**
 * The server in use (connected, or being tried, or the next to try) as the
 * connect options gave it, copied into buf (cut to len - 1 bytes). Returns
 * its length, or 0 (buf "") before any connect.
 */
size_t mqtt_client_server(mqtt_client *c, char *buf, size_t len);
/** Blocking reconnect with the last connect options (after a loss). */
int mqtt_client_reconnect(mqtt_client *c, mqtt_connect_result *res);
/** Enables automatic reconnection (what loop() turns on) unless options said no. */
void mqtt_client_set_auto_reconnect(mqtt_client *c, bool on);
/** With this set, the I/O thread queues MQTT_EV_BEFORE_RECONNECT and waits for proceed. */
void mqtt_client_set_reconnect_hook(mqtt_client *c, bool on);
/** Lets a reconnect waiting on MQTT_EV_BEFORE_RECONNECT go ahead. */
void mqtt_client_proceed(mqtt_client *c);

/**
 * Queues a message; *mid (may be NULL) receives its id (QoS 0: a fresh id of
 * the same sequence, not sent). Everything is copied. Nothing is queued and
 * no id is used on an error: MQTT_ERR_INVAL (a bad topic, QoS, payload size
 * or property, or properties under 3.1.1: mqtt_last_error() says which),
 * MQTT_ERR_QUEUE_FULL, MQTT_ERR_NOMEM, MQTT_ERR_STATE (after fork()).
 */
int mqtt_client_publish(mqtt_client *c, const mqtt_message *m, uint16_t *mid);

/**
 * One entry of SUBSCRIBE (filter and options) or UNSUBSCRIBE (which reads
 * the filter alone, so one array can serve both). Borrowed for the call only.
 * no_local, retain_as_published and retain_handling (0 send retained
 * messages, 1 only for a new subscription, 2 never) are MQTT 5.0 options:
 * refused under 3.1.1 unless false/0.
 */
typedef struct mqtt_subscription {
    const char *filter;
    size_t filter_len;
    int qos;
    bool no_local;
    bool retain_as_published;
    int retain_handling;
} mqtt_subscription;

/**
 * Queues a SUBSCRIBE of n (1..65535) entries with the packet's properties
 * (SUBSCRIBE allows subscription_identifier and user_property; refused under
 * 3.1.1); *mid receives its id, the SUBACK event carries it. Nothing is
 * queued on an error: MQTT_ERR_INVAL (mqtt_last_error() names the entry or
 * property), MQTT_ERR_QUEUE_FULL, MQTT_ERR_NOMEM, MQTT_ERR_STATE.
 */
int mqtt_client_subscribe(mqtt_client *c, const mqtt_subscription *subs, size_t n,
                          const mqtt_property *props, size_t prop_count, uint16_t *mid);
/** Like mqtt_client_subscribe, for UNSUBSCRIBE (user_property only, under 5.0). */
int mqtt_client_unsubscribe(mqtt_client *c, const mqtt_subscription *subs, size_t n,
                            const mqtt_property *props, size_t prop_count, uint16_t *mid);

/** Flushes (bounded by disconnect_timeout), sends DISCONNECT, closes; no reconnect follows. */
int mqtt_client_disconnect(mqtt_client *c);
/** mqtt_client_disconnect with MQTT 5.0's reason code and properties (0 and
 *  none under 3.1.1, else MQTT_ERR_INVAL); 0x04 asks the broker to publish the will.
 *  A non-zero session_expiry_interval after a CONNECT that asked for 0 is
 *  MQTT_ERR_INVAL, nothing sent (MQTT 5.0 3.14.2.2.2). */
int mqtt_client_disconnect_v(mqtt_client *c, int reason_code, const mqtt_property *props,
                             size_t prop_count);

/* MQTT 5.0 */
/** The protocol level of the last CONNACK (MQTT_V311 or MQTT_V5); 0 before any. */
int mqtt_client_protocol(mqtt_client *c);
/** Replaces the CONNECT properties from the next (re)connect on (checked as at create). */
int mqtt_client_set_connect_properties(mqtt_client *c, const mqtt_property *props,
                                       size_t prop_count);
/**
 * Copies the last CONNACK's property block (empty under 3.1.1) into buf;
 * *len receives its size. MQTT_ERR_NOMEM when cap is too small (*len says
 * how much is needed). Walk it with mqtt_properties_next.
 */
int mqtt_client_server_properties(mqtt_client *c, uint8_t *buf, size_t cap, size_t *len);
/** Walks a property block (as given by mqtt_client_server_properties) like
 *  mqtt_event_property_next. */
bool mqtt_properties_next(const uint8_t *block, size_t len, size_t *pos, mqtt_property *out);
/**
 * The client identifier in use: the one given at create, or the broker's
 * assigned_client_identifier once a CONNACK carried one. Copies up to cap
 * bytes; returns the full length.
 */
size_t mqtt_client_id(mqtt_client *c, char *buf, size_t cap);
/**
 * Sends AUTH (enhanced authentication): reason 0x18 continues an exchange
 * the broker started, 0x19 starts a re-authentication on a live connection.
 * MQTT_ERR_INVAL under 3.1.1 or for another code; MQTT_ERR_NO_CONN.
 */
int mqtt_client_auth(mqtt_client *c, int reason_code, const mqtt_property *props,
                     size_t prop_count);

bool mqtt_client_is_connected(mqtt_client *c);
/** "connected", "connecting", "reconnecting", "disconnected". */
const char *mqtt_client_state(mqtt_client *c);
/**
 * True while the QoS 1/2 publish, subscribe or unsubscribe with this mid
 * awaits its acknowledgement (queued or in flight). Once false, the ack's
 * event is queued (or was popped already).
 */
bool mqtt_client_pending(mqtt_client *c, uint16_t mid);
/** PINGRESP events are queued only after this is turned on (default off). */
void mqtt_client_want_pingresp(mqtt_client *c, bool on);
/** Readable while events are queued. Owned by the client. */
int mqtt_client_event_fd(mqtt_client *c);
/** Takes every queued event, oldest first; NULL when none. */
mqtt_event *mqtt_client_take_events(mqtt_client *c);
/**
 * Like mqtt_client_take_events, but when it takes events the fd stays
 * readable until mqtt_client_events_handled(): a caller interrupted half-way
 * through the batch (an error raised by a callback) is woken again for the rest.
 */
mqtt_event *mqtt_client_take_events_keep(mqtt_client *c);
/** Once every event taken with _keep was handled: the fd stops being readable
 *  unless new events are queued. */
void mqtt_client_events_handled(mqtt_client *c);

/** Counters for tests and back-pressure reporting. */
typedef struct mqtt_stats {
    size_t queued;        /* records not yet sent */
    size_t inflight;      /* QoS 1/2 sent, awaiting completion */
    size_t queued_bytes;  /* bytes of records plus bytes the client must still write */
    size_t event_bytes;   /* bytes held for the application (bounded by max_event_bytes) */
    size_t held_bytes;    /* of which incoming QoS 2 messages awaiting PUBREL */
    uint64_t reconnects;
    uint64_t read_pauses; /* times reading paused: no room for events, or for replies */
    uint64_t downgraded;  /* QoS 2 publishes the broker acknowledged with PUBACK */
    uint64_t connect_failures; /* connect attempts that failed, refused ones included */
    uint64_t logs_dropped; /* log events dropped while max_event_bytes was reached */
    uint64_t expired;     /* queued messages dropped past their message_expiry_interval */
    uint64_t store_corruptions; /* damaged store tails cut off at create */
} mqtt_stats;

/**
 * Fills the caller's counters. Versioned by size (the macro passes sizeof):
 * later versions append counters; the library writes at most size bytes and
 * zeroes those of a larger struct that it does not know.
 */
void mqtt_client_stats_v(mqtt_client *c, mqtt_stats *out, size_t size);
#define mqtt_client_stats(c, st) mqtt_client_stats_v((c), (st), sizeof *(st))

/* The I/O loop: one thread (or a small pool) serves every client of the
 * process through epoll; it starts with the first client and stops when the
 * last one is destroyed. */

/** Sets how many I/O threads serve the clients (1 to 16, default 1); clients
 *  spread over them. Any thread; MQTT_ERR_STATE while a client exists,
 *  MQTT_ERR_INVAL out of range. */
int mqtt_set_io_threads(unsigned n);

/** What the I/O loop is doing; counters grow for the life of a loop. */
typedef struct mqtt_io_stats {
    unsigned threads;  /* I/O threads running (0: no client exists) */
    size_t clients;    /* clients they serve */
    uint64_t wakeups;  /* times an I/O thread woke up */
    uint64_t services; /* client turns: a socket ready, a timer due, a request */
} mqtt_io_stats;

void mqtt_io_stats_get(mqtt_io_stats *st);

/* Topic helpers (pure). */
bool mqtt_topic_matches(const char *filter, size_t filter_len, const char *topic,
                        size_t topic_len);
/** Where the filter part of a shared subscription "$share/{group}/{filter}"
 *  starts; 0 for any other filter. mqtt_topic_matches matches that part. */
size_t mqtt_shared_filter_start(const char *filter, size_t len);
/** MQTT_OK, or MQTT_ERR_INVAL with *why set. */
int mqtt_validate_topic_name(const char *topic, size_t len, const char **why);
int mqtt_validate_topic_filter(const char *filter, size_t len, const char **why);
/** An MQTT UTF-8 string: well-formed UTF-8, no surrogates, no U+0000. */
bool mqtt_utf8_valid(const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif
