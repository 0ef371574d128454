/*
 * bench-store: the store's own log against SQLite in WAL mode, the same
 * work for both, on the same disk (STORE_BENCH_DIR, default build/).
 *  - a QoS 1 flow: each commit group adds a message, marks the one before
 *    sent and removes the one before that (acked); messages per second
 *    with sync always (an fsync per group of 1 and of 16 publishes), batch
 *    (at most one fsync per 100 ms) and never;
 *  - bytes on disk per queued message (10,000 queued, 18-byte topic,
 *    64-byte payload);
 *  - recovery: opening a store of 100,000 queued messages and reading every
 *    one back as a record.
 * STORE_BENCH_SECONDS (default 2) per flow row.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define TOPIC "sensors/room1/temp"
#define PAYLOAD_LEN 64

static char dir[256];
static double seconds = 2.0;
static uint8_t payload[PAYLOAD_LEN];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ms(void)
{
    return (uint64_t)(now_s() * 1000.0);
}

static const mqtt_bytes topic = { (const uint8_t *)TOPIC, sizeof TOPIC - 1 };

static void die(const char *what)
{
    fprintf(stderr, "store_bench: %s\n", what);
    exit(1);
}

/* ---- the log ----------------------------------------------------------- */

static mqtt_store *log_open(mqtt_store_sync sync, const char *id)
{
    char err[300];
    mqtt_store *st;
    mqtt_bytes cid = { (const uint8_t *)id, strlen(id) };
    mqtt__store_clear(dir, cid, err, sizeof err);
    if (mqtt__store_open(dir, cid, sync, &st, NULL, err, sizeof err) != MQTT_OK)
        die(err);
    return st;
}

static uint64_t log_add(mqtt_store *st, uint16_t id)
{
    mqtt_record *r;
    uint64_t key;
    if (mqtt__record_publish(topic, (mqtt_bytes){ payload, PAYLOAD_LEN }, 1, false,
                             (mqtt_bytes){ NULL, 0 }, &r) != MQTT_OK)
        die("record");
    r->packet_id = id;
    if (mqtt__store_out_add(st, r, &key) != MQTT_OK)
        die("add");
    mqtt__record_free(r);
    return key;
}

static void log_sent(mqtt_store *st, uint64_t key, uint16_t id)
{
    mqtt_record *r;
    if (mqtt__record_publish(topic, (mqtt_bytes){ NULL, 0 }, 1, false, (mqtt_bytes){ NULL, 0 },
                             &r) != MQTT_OK)
        die("record");
    r->packet_id = id;
    r->state = MQTT_QS_WAIT_PUBACK;
    if (mqtt__store_out_update(st, key, r) != MQTT_OK)
        die("update");
    mqtt__record_free(r);
}

/* group publishes per commit; batch: commits only when the 100 ms are up. */
static double log_flow(mqtt_store_sync sync, int group)
{
    mqtt_store *st = log_open(sync, "flow");
    static uint64_t keys[1 << 16];
    unsigned long n = 0;
    double t0 = now_s();
    while (now_s() - t0 < seconds) {
        for (int g = 0; g < group; g++, n++) {
            uint16_t id = (uint16_t)(n % 65535 + 1);
            keys[id] = log_add(st, id);
            if (n >= 1)
                log_sent(st, keys[(n - 1) % 65535 + 1], (uint16_t)((n - 1) % 65535 + 1));
            if (n >= 2 && mqtt__store_out_remove(st, keys[(n - 2) % 65535 + 1]) != MQTT_OK)
                die("remove");
        }
        uint64_t t = now_ms();
        if (mqtt__store_flush_due(st, t) == 0 && mqtt__store_flush(st, t) != MQTT_OK)
            die("flush");
    }
    double rate = (double)n / (now_s() - t0);
    mqtt__store_close(st);
    return rate;
}

static double log_bytes_per_msg(void)
{
    mqtt_store *st = log_open(MQTT_STORE_SYNC_NEVER, "size");
    for (unsigned i = 0; i < 10000; i++)
        log_add(st, (uint16_t)(i + 1));
    mqtt__store_flush(st, 0);
    mqtt_store_stats s;
    mqtt__store_stats(st, &s);
    mqtt__store_close(st);
    return (double)s.file_bytes / 10000.0;
}

static double log_recovery(void)
{
    mqtt_store *st = log_open(MQTT_STORE_SYNC_NEVER, "recover");
    for (unsigned i = 0; i < 100000; i++)
        log_add(st, (uint16_t)(i % 65535 + 1));
    mqtt__store_close(st);
    sync();
    char err[300];
    double t0 = now_s();
    mqtt_store_report rep;
    if (mqtt__store_open(dir, (mqtt_bytes){ (const uint8_t *)"recover", 7 }, MQTT_STORE_SYNC_NEVER,
                         &st, &rep, err, sizeof err) != MQTT_OK)
        die(err);
    mqtt_store_item it;
    size_t n = 0;
    while (mqtt__store_next(st, &it) == MQTT_OK && it.rec != NULL) {
        n++;
        mqtt__record_free(it.rec);
    }
    double t = now_s() - t0;
    if (n != 100000)
        die("recovery lost records");
    mqtt__store_close(st);
    return t;
}

/* ---- SQLite (WAL) ------------------------------------------------------ */

typedef struct sq {
    sqlite3 *db;
    sqlite3_stmt *add, *sent, *del, *begin, *commit;
} sq;

static void sq_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die(msg ? msg : sql);
}

static void sq_step(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        die(sqlite3_errstr(rc));
    sqlite3_reset(s);
}

static void sq_open(sq *q, const char *name, const char *synchronous)
{
    char path[512], sql[600];
    snprintf(path, sizeof path, "%s/%s.db", dir, name);
    unlink(path);
    snprintf(sql, sizeof sql, "%s-wal", path);
    unlink(sql);
    if (sqlite3_open(path, &q->db) != SQLITE_OK)
        die("sqlite3_open");
    sq_exec(q->db, "PRAGMA journal_mode=WAL");
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", synchronous);
    sq_exec(q->db, sql);
    sq_exec(q->db, "CREATE TABLE out(key INTEGER PRIMARY KEY, id INT, qos INT, state INT, "
                   "flags INT, topic BLOB, props BLOB, payload BLOB)");
    sqlite3_prepare_v2(q->db, "INSERT INTO out VALUES(?,?,1,2,0,?,NULL,?)", -1, &q->add, NULL);
    sqlite3_prepare_v2(q->db, "UPDATE out SET state=6 WHERE key=?", -1, &q->sent, NULL);
    sqlite3_prepare_v2(q->db, "DELETE FROM out WHERE key=?", -1, &q->del, NULL);
    sqlite3_prepare_v2(q->db, "BEGIN", -1, &q->begin, NULL);
    sqlite3_prepare_v2(q->db, "COMMIT", -1, &q->commit, NULL);
}

static void sq_close(sq *q)
{
    sqlite3_finalize(q->add);
    sqlite3_finalize(q->sent);
    sqlite3_finalize(q->del);
    sqlite3_finalize(q->begin);
    sqlite3_finalize(q->commit);
    sqlite3_close(q->db);
}

static void sq_add(sq *q, sqlite3_int64 key)
{
    sqlite3_bind_int64(q->add, 1, key);
    sqlite3_bind_int(q->add, 2, (int)(key % 65535 + 1));
    sqlite3_bind_blob(q->add, 3, TOPIC, sizeof TOPIC - 1, SQLITE_STATIC);
    sqlite3_bind_blob(q->add, 4, payload, PAYLOAD_LEN, SQLITE_STATIC);
    sq_step(q->add);
}

static double sq_flow(const char *synchronous, int group, bool batch)
{
    sq q;
    sq_open(&q, "flow", synchronous);
    sqlite3_int64 n = 0;
    double t0 = now_s(), last = t0;
    bool open = false;
    while (now_s() - t0 < seconds) {
        if (!open)
            sq_step(q.begin);
        open = true;
        for (int g = 0; g < group; g++, n++) {
            sq_add(&q, n);
            sqlite3_bind_int64(q.sent, 1, n - 1);
            sq_step(q.sent);
            sqlite3_bind_int64(q.del, 1, n - 2);
            sq_step(q.del);
        }
        if (!batch || now_s() - last >= 0.1) {
            sq_step(q.commit);
            open = false;
            last = now_s();
        }
    }
    if (open)
        sq_step(q.commit);
    double rate = (double)n / (now_s() - t0);
    sq_close(&q);
    return rate;
}

static off_t file_size(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size : 0;
}

static double sq_bytes_per_msg(void)
{
    sq q;
    sq_open(&q, "size", "OFF");
    sq_step(q.begin);
    for (sqlite3_int64 i = 0; i < 10000; i++)
        sq_add(&q, i);
    sq_step(q.commit);
    sq_exec(q.db, "PRAGMA wal_checkpoint(TRUNCATE)");
    double b = (double)(file_size("size.db") + file_size("size.db-wal")) / 10000.0;
    sq_close(&q);
    return b;
}

static double sq_recovery(void)
{
    sq q;
    sq_open(&q, "recover", "OFF");
    sq_step(q.begin);
    for (sqlite3_int64 i = 0; i < 100000; i++)
        sq_add(&q, i);
    sq_step(q.commit);
    sq_close(&q);
    sync();
    char path[512];
    snprintf(path, sizeof path, "%s/recover.db", dir);
    double t0 = now_s();
    if (sqlite3_open(path, &q.db) != SQLITE_OK)
        die("sqlite3_open");
    sqlite3_stmt *s;
    sqlite3_prepare_v2(q.db, "SELECT key,id,qos,state,flags,topic,props,payload FROM out "
                             "ORDER BY key", -1, &s, NULL);
    size_t n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        mqtt_record *r;
        mqtt_bytes t = { sqlite3_column_blob(s, 5), (size_t)sqlite3_column_bytes(s, 5) };
        mqtt_bytes p = { sqlite3_column_blob(s, 7), (size_t)sqlite3_column_bytes(s, 7) };
        if (mqtt__record_publish(t, p, 1, false, (mqtt_bytes){ NULL, 0 }, &r) != MQTT_OK)
            die("record");
        r->packet_id = (uint16_t)sqlite3_column_int(s, 1);
        n++;
        mqtt__record_free(r);
    }
    sqlite3_finalize(s);
    double t = now_s() - t0;
    sqlite3_close(q.db);
    if (n != 100000)
        die("sqlite recovery lost rows");
    return t;
}

int main(void)
{
    const char *d = getenv("STORE_BENCH_DIR");
    snprintf(dir, sizeof dir, "%s/store-bench", d ? d : "build");
    mkdir(dir, 0700);
    if (getenv("STORE_BENCH_SECONDS"))
        seconds = atof(getenv("STORE_BENCH_SECONDS"));
    memset(payload, 'v', sizeof payload);
    printf("store bench in %s (%.1f s per flow row), QoS 1: add, mark sent, ack\n", dir, seconds);
    printf("%-34s %12s %12s\n", "", "own log", "SQLite WAL");
    printf("%-34s %10.0f/s %10.0f/s\n", "sync always, fsync per publish", log_flow(MQTT_STORE_SYNC_ALWAYS, 1),
           sq_flow("FULL", 1, false));
    printf("%-34s %10.0f/s %10.0f/s\n", "sync always, 16 publishes a group",
           log_flow(MQTT_STORE_SYNC_ALWAYS, 16), sq_flow("FULL", 16, false));
    printf("%-34s %10.0f/s %10.0f/s\n", "sync batch (100 ms)", log_flow(MQTT_STORE_SYNC_BATCH, 1),
           sq_flow("FULL", 1, true));
    printf("%-34s %10.0f/s %10.0f/s\n", "sync never", log_flow(MQTT_STORE_SYNC_NEVER, 1),
           sq_flow("OFF", 1, false));
    printf("%-34s %12.1f %12.1f\n", "bytes on disk per queued message", log_bytes_per_msg(),
           sq_bytes_per_msg());
    printf("%-34s %10.1fms %10.1fms\n", "recovery of 100,000 records", log_recovery() * 1e3,
           sq_recovery() * 1e3);
    return 0;
}
