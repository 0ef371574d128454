/*
 * The store's private parts, shared by its files: the log format (a file
 * header, then entries: crc32c, body length, sequence number, type, body;
 * little-endian), the in-memory index of live records and the store itself.
 */
#ifndef MQTT_STORE_INTERNAL_H
#define MQTT_STORE_INTERNAL_H

#include "store.h"

#define ST_MAGIC "ZMQTTLOG" /* then u32 version, u32 crc32c of the 12 bytes before */
#define ST_VERSION 1u
#define ST_FILE_HDR 16u
#define ST_ENT_HDR 17u  /* crc 4, body length 4, seq 8, type 1; the crc covers the rest */
#define ST_MSG_FIXED 23u /* key 8, id 2, qos, state, flags, topic len 2, props len 4, payload len 4 */
#define ST_MAX_BODY (ST_MSG_FIXED + 65535u + 2u * 268435455u)

enum { ST_OUT_ADD = 1, ST_IN_ADD, ST_OUT_STATE, ST_OUT_DEL, ST_IN_STATE, ST_IN_DEL };

#define ST_F_DUP 1u
#define ST_F_RETAIN 2u
#define ST_F_DEAD 0x80u /* index only: removed, awaiting the squeeze */

/* Where a live record's add entry is in the stream (the file, then what is
 * being written, then what is pending) and what it is now. */
typedef struct st_ent {
    uint64_t key; /* outgoing: the add's seq; incoming: unused */
    uint64_t seq; /* of its add entry: compaction keeps it */
    uint64_t pos; /* of its add entry */
    uint32_t len; /* of its add entry, header included */
    uint16_t id;
    uint8_t qos, state, flags;
} st_ent;

typedef struct st_vec {
    st_ent *v;
    size_t n, cap, dead;
} st_vec;

struct mqtt_store {
    int fd, lock_fd;
    mqtt_store_sync sync;
    bool flushing;   /* a group is between flush_begin and flush_end */
    bool compacting; /* between compact_begin and compact_end */
    bool touched;  /* changed since open: no more recovery iteration */
    bool synced;   /* last_sync_ms is set */
    bool orphan;   /* a child of fork()'s copy of its parent's store: no I/O */
    mqtt_store *next_open; /* the process's open stores (store.c) */
    char *dir, *path, *tmp_path;
    uint64_t seq;      /* last appended */
    uint64_t durable;  /* last durable */
    uint64_t file_end; /* bytes in the file */
    uint64_t job_len;  /* bytes taken from pend, not yet in the file (written, or to retry) */
    uint8_t *retry;    /* a group whose write failed: written again first */
    uint64_t retry_seq, fail_ms;
    size_t retry_cap;
    uint8_t *pend, *spare;
    size_t pend_len, pend_cap, spare_cap;
    uint64_t last_sync_ms;
    uint64_t live_bytes;
    st_vec out, in;
    size_t it_out, it_in; /* recovery cursor */
    void *map;            /* the log as recovery mapped it, until iteration ends or a change */
    size_t map_len;
    mqtt_store_stats counts; /* syncs, compactions, corruptions, cut_bytes */
};

static inline void st_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void st_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void st_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t st_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t st_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t st_get64(const uint8_t *p)
{
    return (uint64_t)st_get32(p) | (uint64_t)st_get32(p + 4) << 32;
}

/** Applies the entry at e (total bytes, framing already checked) found at
 *  stream position pos to the index. strict: an update or removal of an
 *  unknown key or id is MQTT_ERR_INVAL (the API) rather than ignored (a log
 *  compacted while it was pending). MQTT_OK, MQTT_ERR_INVAL, MQTT_ERR_NOMEM. */
MQTT_HIDDEN int mqtt__store_apply(mqtt_store *st, const uint8_t *e, size_t total, uint64_t pos,
                                  bool strict);
/** Drops the mapping recovery kept for iteration. */
MQTT_HIDDEN void mqtt__store_unmap(mqtt_store *st);
/** Recovers the log open on st->fd into the index; cuts a damaged tail. */
MQTT_HIDDEN int mqtt__store_recover(mqtt_store *st, mqtt_store_report *rep);
/** Writes n bytes at off, retrying short writes; 0 or errno. */
MQTT_HIDDEN int mqtt__store_pwrite(int fd, const uint8_t *p, size_t n, uint64_t off);
/** Reads n bytes at off; 0, errno, or EIO at a short read. */
MQTT_HIDDEN int mqtt__store_pread(int fd, uint8_t *p, size_t n, uint64_t off);
/** The file header. */
MQTT_HIDDEN void mqtt__store_header(uint8_t hdr[ST_FILE_HDR]);
/** fsync of a directory, so a file made or renamed in it stays; 0 or errno. */
MQTT_HIDDEN int mqtt__store_sync_dir(const char *dir);
/** Closes the log's descriptor and uses fd instead, with fork() held off. */
MQTT_HIDDEN void mqtt__store_switch_fd(mqtt_store *st, int fd);
/** Drops removed entries from v once they are most of it. */
MQTT_HIDDEN void mqtt__store_squeeze(st_vec *v);

#endif
