/*
 * Crash-safe persistence of one client's session: an append-only log per
 * client id in a directory, of records (messages and their state changes,
 * never wire bytes), each framed with a length, a sequence number and a
 * CRC32C. Recovery keeps the longest intact prefix and cuts the rest off;
 * compaction rewrites the live set into a new file renamed over the old.
 * Not thread-safe: the caller locks; only the flush_write step may run
 * without the lock, so the fsync never holds it.
 */
#ifndef MQTT_STORE_H
#define MQTT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session.h"

typedef enum mqtt_store_sync {
    MQTT_STORE_SYNC_ALWAYS, /* durable once its group's fsync returned */
    MQTT_STORE_SYNC_BATCH,  /* at most one fsync every MQTT_STORE_BATCH_MS */
    MQTT_STORE_SYNC_NEVER   /* written, never fsynced: the system decides */
} mqtt_store_sync;

#define MQTT_STORE_BATCH_MS 100u

typedef struct mqtt_store mqtt_store;

/** What open found. A damaged tail is cut off, never refused. */
typedef struct mqtt_store_report {
    size_t outgoing;     /* outgoing records recovered */
    size_t incoming;     /* incoming QoS 2 messages awaiting PUBREL recovered */
    size_t corruptions;  /* damaged places cut off: 0 or 1 */
    uint64_t cut_offset; /* where the cut began (file offset) */
    uint64_t cut_bytes;  /* bytes cut off there */
    uint64_t file_bytes; /* the log's size after recovery */
} mqtt_store_report;

typedef struct mqtt_store_stats {
    size_t outgoing, incoming; /* live records */
    uint64_t file_bytes;       /* the log, written so far */
    uint64_t live_bytes;       /* what a compaction would keep */
    uint64_t pending_bytes;    /* appended, not yet written */
    uint64_t syncs;            /* fsyncs of the log */
    uint64_t compactions;
    uint64_t corruptions;      /* as reported by open */
    uint64_t cut_bytes;
} mqtt_store_stats;

/**
 * Opens (creating dir and the files when missing) the store of client_id
 * in dir, takes its exclusive lock and recovers it. MQTT_OK with *out and
 * *rep (may be NULL) set; otherwise *out is NULL and err (errlen bytes,
 * may be NULL) says why: MQTT_ERR_INVAL (no dir, a client id over 100
 * bytes), MQTT_ERR_STATE ("store ... is in use by process N"),
 * MQTT_ERR_SYSTEM (a directory that cannot be made or written),
 * MQTT_ERR_NOMEM. A damaged log is no error: rep says what was cut.
 */
MQTT_HIDDEN int mqtt__store_open(const char *dir, mqtt_bytes client_id, mqtt_store_sync sync,
                                 mqtt_store **out, mqtt_store_report *rep, char *err,
                                 size_t errlen);
/** Writes what is pending (fsynced unless sync is NEVER), releases the lock, frees. */
MQTT_HIDDEN int mqtt__store_close(mqtt_store *st);
/** Removes the store of client_id in dir (MQTT_OK when there is none);
 *  MQTT_ERR_STATE when a client holds it, errors as open. */
MQTT_HIDDEN int mqtt__store_clear(const char *dir, mqtt_bytes client_id, char *err,
                                  size_t errlen);

/** A record recovered by open. */
typedef struct mqtt_store_item {
    mqtt_record *rec; /* the caller's: a PUBLISH with packet_id, state, dup set */
    uint64_t key;     /* outgoing: the key for update/remove; incoming: 0 */
    bool incoming;    /* a QoS 2 message awaiting PUBREL (state IN_HELD or IN_RELEASED) */
} mqtt_store_item;

/**
 * The next recovered record: outgoing ones in publish order, then incoming
 * ones in arrival order; it->rec NULL at the end. Only before the first
 * change after open (MQTT_ERR_STATE after). MQTT_ERR_NOMEM or
 * MQTT_ERR_SYSTEM (reading failed) leave the cursor where it was.
 */
MQTT_HIDDEN int mqtt__store_next(mqtt_store *st, mqtt_store_item *it);

/**
 * Changes, appended in memory (no I/O), durable after the flush that
 * writes them. Each returns MQTT_OK, MQTT_ERR_INVAL (not a PUBLISH, a
 * state its QoS cannot be in, an unknown key or id, an id held already)
 * or MQTT_ERR_NOMEM, the store unchanged on error.
 * out_add: r (a PUBLISH of any QoS, queued or in flight) under a new *key.
 * out_update: r's state, dup and packet_id now (r's QoS must be the one added).
 * out_remove: complete, or dropped.
 * in_add: an incoming QoS 2 message held for id until PUBREL.
 * in_release: handed over before its PUBREL (the id stays known).
 * in_remove: its PUBREL came.
 */
MQTT_HIDDEN int mqtt__store_out_add(mqtt_store *st, const mqtt_record *r, uint64_t *key);
MQTT_HIDDEN int mqtt__store_out_update(mqtt_store *st, uint64_t key, const mqtt_record *r);
MQTT_HIDDEN int mqtt__store_out_remove(mqtt_store *st, uint64_t key);
MQTT_HIDDEN int mqtt__store_in_add(mqtt_store *st, uint16_t id, mqtt_bytes topic,
                                   mqtt_bytes payload, bool retain, mqtt_bytes props);
MQTT_HIDDEN int mqtt__store_in_release(mqtt_store *st, uint16_t id);
MQTT_HIDDEN int mqtt__store_in_remove(mqtt_store *st, uint16_t id);

/** Sequence number of the last change appended; durable once mqtt__store_durable reaches it. */
MQTT_HIDDEN uint64_t mqtt__store_last(const mqtt_store *st);
/** Every change up to this sequence number is on disk as the sync mode promises. */
MQTT_HIDDEN uint64_t mqtt__store_durable(const mqtt_store *st);

/** Milliseconds until a flush is due at now_ms (0: now), -1 when nothing is pending. */
MQTT_HIDDEN int64_t mqtt__store_flush_due(const mqtt_store *st, uint64_t now_ms);

/** One group of changes on its way to disk (see flush_begin). */
typedef struct mqtt_store_flush {
    uint8_t *buf;
    size_t len, cap;
    uint64_t at;  /* file offset it goes to */
    uint64_t seq; /* its last change */
    int fd;
    bool fsync;
    int err; /* errno of a failed write or fsync, 0 */
} mqtt_store_flush;

/**
 * Group commit in three steps, so that the fsync holds no lock: begin
 * (under the caller's lock) takes every pending change into f and returns
 * true, false when there is nothing or a flush is under way; write
 * (without the lock, one at a time, the I/O thread) writes f and fsyncs;
 * end (under the lock) makes f's changes durable, or on failure puts them
 * back to be written again and returns MQTT_ERR_SYSTEM. Changes appended
 * meanwhile join the next group. No group begins during a compaction.
 */
MQTT_HIDDEN bool mqtt__store_flush_begin(mqtt_store *st, mqtt_store_flush *f);
MQTT_HIDDEN void mqtt__store_flush_write(mqtt_store_flush *f);
MQTT_HIDDEN int mqtt__store_flush_end(mqtt_store *st, mqtt_store_flush *f, uint64_t now_ms);
/** The three steps at once, for a caller with no lock to drop, then a
 *  compaction when one is due. MQTT_OK when nothing is pending. */
MQTT_HIDDEN int mqtt__store_flush(mqtt_store *st, uint64_t now_ms);

/** True when the log is mostly dead: at least 1 MiB and 4 times the live records. */
MQTT_HIDDEN bool mqtt__store_compact_due(const mqtt_store *st);

/** A compaction on its way (see compact_begin). */
typedef struct mqtt_store_compaction {
    struct st_ent *snap; /* the live entries in the file, in sequence order */
    size_t n;
    const char *path, *tmp_path, *dir; /* the store's, valid while it is open */
    uint64_t old_end, new_end;
    int fd, new_fd;
    bool fsync;
    int err, dir_err; /* errno of a failed step (-1: no memory), 0 */
} mqtt_store_compaction;

/**
 * Rewrites the live records into a new file renamed over the log, in
 * three steps so that no lock is held while it copies and fsyncs: begin
 * (under the caller's lock, between flushes) snapshots the live entries;
 * run (without the lock, the thread that flushes) writes the new file,
 * fsyncs it and renames it; end (under the lock) switches to it. Changes
 * may be appended meanwhile; no flush begins until end. begin: MQTT_OK,
 * MQTT_ERR_STATE (a flush or compaction under way, or a failed group to
 * write again), MQTT_ERR_NOMEM; end: MQTT_OK, MQTT_ERR_NOMEM or
 * MQTT_ERR_SYSTEM (the old log stays in use, whole; or, for a failed fsync
 * of the directory, the new one is in use and a crash may find the old).
 */
MQTT_HIDDEN int mqtt__store_compact_begin(mqtt_store *st, mqtt_store_compaction *c);
MQTT_HIDDEN void mqtt__store_compact_run(mqtt_store_compaction *c);
MQTT_HIDDEN int mqtt__store_compact_end(mqtt_store *st, mqtt_store_compaction *c);
/** The three steps at once. */
MQTT_HIDDEN int mqtt__store_compact(mqtt_store *st);

MQTT_HIDDEN void mqtt__store_stats(const mqtt_store *st, mqtt_store_stats *s);

/** CRC32C (Castagnoli) of n bytes, continuing from crc (0 to start). */
MQTT_HIDDEN uint32_t mqtt__crc32c(uint32_t crc, const uint8_t *p, size_t n);

#endif
