/*
 * The store (src/store): round trips of every record kind and state,
 * order, compaction keeping exactly the live set, recovery of a log cut at
 * every byte and with every byte's bit flipped, a directory that cannot be
 * written, a store opened twice, every allocation failing in turn, a
 * writer killed with SIGKILL at random points (seeded: STORE_SEED), a child
 * of fork() or posix_spawn() that neither keeps nor releases the lock, and a
 * client destroyed while publishers wait for their fsync (fdatasync is this
 * program's own, so the test decides when the disk answers).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "client_internal.h"
#include "store_internal.h"
#include "test.h"

extern char **environ;

/* ---- the disk, as the test wants it ------------------------------------ */

/* fdatasync for the whole program (the library's calls land here): while
 * the gate is shut a call waits, counted in gate_waiting; disk_fails makes
 * it fail with EIO. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_shut, disk_fails;
static int gate_waiting;
static int fail_budget = -1; /* with disk_fails: calls that still fail (< 0: all) */

int fdatasync(int fd)
{
    pthread_mutex_lock(&gate_mu);
    gate_waiting++;
    pthread_cond_broadcast(&gate_cv);
    while (gate_shut)
        pthread_cond_wait(&gate_cv, &gate_mu);
    gate_waiting--;
    bool fails = disk_fails && fail_budget != 0;
    if (fails && fail_budget > 0)
        fail_budget--;
    pthread_mutex_unlock(&gate_mu);
    if (fails) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fdatasync, fd);
}

static void gate_set_budget(bool shut, bool fails, int budget)
{
    pthread_mutex_lock(&gate_mu);
    gate_shut = shut;
    disk_fails = fails;
    fail_budget = budget;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static void gate_set(bool shut, bool fails)
{
    gate_set_budget(shut, fails, -1);
}

/* Waits until n calls wait at the shut gate. */
static void gate_wait_for(int n)
{
    pthread_mutex_lock(&gate_mu);
    while (gate_waiting < n)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static char base_dir[64];

/* ---- files ------------------------------------------------------------ */

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* A fresh directory path under base_dir (not created). */
static const char *fresh_dir(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", base_dir, name);
    rm_tree(p);
    return p;
}

static mqtt_bytes cid(const char *s)
{
    return (mqtt_bytes){ (const uint8_t *)s, strlen(s) };
}

static mqtt_bytes str(const char *s)
{
    return (mqtt_bytes){ (const uint8_t *)s, s ? strlen(s) : 0 };
}

static char log_path[512];

static const char *logfile(const char *dir, const char *id)
{
    snprintf(log_path, sizeof log_path, "%s/zmqtt-", dir);
    for (const char *c = id; *c; c++)
        snprintf(log_path + strlen(log_path), 3, "%02x", (unsigned char)*c);
    strcat(log_path, ".log");
    return log_path;
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void write_file(const char *path, const uint8_t *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return;
    fwrite(buf, 1, n, f);
    fclose(f);
}

/* ---- a model of what the store must hold -------------------------------- */

typedef struct m_rec {
    uint64_t key;
    uint16_t id;
    uint8_t qos, state;
    bool dup, retain, incoming;
    char topic[32], payload[1024], props[8];
} m_rec;

typedef struct model {
    m_rec r[64];
    size_t n;
} model;

/* One line per record: what a recovered record must equal. */
static void describe_rec(char *out, size_t cap, bool in, uint64_t key, const mqtt_record *r)
{
    mqtt_bytes t = mqtt__record_topic(r), p = mqtt__record_payload(r), x = mqtt__record_props(r);
    snprintf(out + strlen(out), cap - strlen(out), "%c%llu:%u:%u:%u:%d:%d:%.*s:%.*s:%.*s\n",
             in ? 'I' : 'O', (unsigned long long)key, r->packet_id, r->qos, r->state, r->dup,
             r->retain, (int)t.len, (const char *)t.data, (int)p.len, (const char *)p.data,
             (int)x.len, (const char *)x.data);
}

/* The model's records as recovery hands them out: outgoing, then incoming. */
static void describe_model(const model *m, char *out, size_t cap)
{
    out[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < m->n; i++) {
            const m_rec *x = &m->r[i];
            if (x->incoming != (pass == 1))
                continue;
            mqtt_record *r;
            mqtt__record_publish(str(x->topic), str(x->payload), x->qos, x->retain,
                                 str(x->props[0] ? x->props : NULL), &r);
            r->packet_id = x->id;
            r->state = x->state;
            r->dup = x->dup;
            describe_rec(out, cap, x->incoming, x->incoming ? 0 : x->key, r);
            mqtt__record_free(r);
        }
    }
}

/* Iterates a freshly opened store into a description; rc of the first failure. */
static int describe_store(mqtt_store *st, char *out, size_t cap)
{
    out[0] = '\0';
    for (;;) {
        mqtt_store_item it;
        int rc = mqtt__store_next(st, &it);
        if (rc != MQTT_OK)
            return rc;
        if (it.rec == NULL)
            return MQTT_OK;
        describe_rec(out, cap, it.incoming, it.key, it.rec);
        mqtt__record_free(it.rec);
    }
}

static m_rec *m_find(model *m, bool in, uint64_t key, uint16_t id)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->r[i].incoming == in && (in ? m->r[i].id == id : m->r[i].key == key))
            return &m->r[i];
    return NULL;
}

static void m_drop(model *m, m_rec *x)
{
    size_t i = (size_t)(x - m->r);
    memmove(&m->r[i], &m->r[i + 1], (m->n - i - 1) * sizeof *x);
    m->n--;
}

/* ---- operations applied to both --------------------------------------- */

static int op_out_add(mqtt_store *st, model *m, const char *topic, const char *payload,
                      uint8_t qos, uint16_t id, bool retain, const char *props)
{
    mqtt_record *r;
    if (mqtt__record_publish(str(topic), str(payload), qos, retain, str(props), &r) != MQTT_OK)
        return MQTT_ERR_NOMEM;
    r->packet_id = id;
    uint64_t key = 0;
    int rc = mqtt__store_out_add(st, r, &key);
    if (rc == MQTT_OK && m != NULL) {
        m_rec *x = &m->r[m->n++];
        *x = (m_rec){ .key = key, .id = id, .qos = qos, .state = r->state, .retain = retain };
        snprintf(x->topic, sizeof x->topic, "%s", topic);
        snprintf(x->payload, sizeof x->payload, "%s", payload ? payload : "");
        snprintf(x->props, sizeof x->props, "%s", props ? props : "");
    }
    mqtt__record_free(r);
    return rc;
}

static int op_out_update(mqtt_store *st, model *m, uint64_t key, uint8_t state, bool dup)
{
    m_rec *x = m_find(m, false, key, 0);
    mqtt_record *r;
    if (mqtt__record_publish(str("t"), str(NULL), x->qos, false, str(NULL), &r) != MQTT_OK)
        return MQTT_ERR_NOMEM;
    r->packet_id = x->id;
    r->state = state;
    r->dup = dup;
    int rc = mqtt__store_out_update(st, key, r);
    mqtt__record_free(r);
    if (rc == MQTT_OK) {
        x->state = state;
        x->dup = dup;
    }
    return rc;
}

static int op_out_remove(mqtt_store *st, model *m, uint64_t key)
{
    int rc = mqtt__store_out_remove(st, key);
    if (rc == MQTT_OK)
        m_drop(m, m_find(m, false, key, 0));
    return rc;
}

static int op_in_add(mqtt_store *st, model *m, uint16_t id, const char *topic,
                     const char *payload)
{
    int rc = mqtt__store_in_add(st, id, str(topic), str(payload), true, str("pp"));
    if (rc == MQTT_OK) {
        m_rec *x = &m->r[m->n++];
        *x = (m_rec){ .id = id, .qos = 2, .state = MQTT_QS_IN_HELD, .retain = true,
                      .incoming = true };
        snprintf(x->topic, sizeof x->topic, "%s", topic);
        snprintf(x->payload, sizeof x->payload, "%s", payload);
        snprintf(x->props, sizeof x->props, "pp");
    }
    return rc;
}

static mqtt_store *open_ok(const char *dir, mqtt_store_sync sync, mqtt_store_report *rep)
{
    mqtt_store *st = NULL;
    char err[300];
    int rc = mqtt__store_open(dir, cid("dev-1"), sync, &st, rep, err, sizeof err);
    if (rc != MQTT_OK)
        printf("# open %s: %s\n", dir, err);
    return st;
}

/* ---- round trips -------------------------------------------------------- */

/* Every kind and state; the model must equal what recovery hands out. */
static void build_mixed(mqtt_store *st, model *m)
{
    op_out_add(st, m, "a/q0", "zero", 0, 0, false, NULL);
    op_out_add(st, m, "a/q1", "one", 1, 1, true, "p1");
    op_out_add(st, m, "a/q2", "two", 2, 2, false, NULL);
    op_out_add(st, m, "a/q1b", "", 1, 3, false, NULL);
    op_out_add(st, m, "a/q2b", "rec", 2, 4, false, "x");
    op_in_add(st, m, 7, "in/a", "held");
    op_in_add(st, m, 9, "in/b", "released");
    op_out_update(st, m, m->r[1].key, MQTT_QS_WAIT_PUBACK, false);
    op_out_update(st, m, m->r[2].key, MQTT_QS_WAIT_PUBREC, true);
    op_out_update(st, m, m->r[4].key, MQTT_QS_WAIT_PUBREC, false);
    op_out_update(st, m, m->r[4].key, MQTT_QS_WAIT_PUBCOMP, false);
    mqtt__store_in_release(st, 9);
    m_find(m, true, 0, 9)->state = MQTT_QS_IN_RELEASED;
}

static void test_round_trip(void)
{
    const char *dir = fresh_dir("rt/sub/dir"); /* made with its parents */
    static model m;
    m.n = 0;
    mqtt_store_report rep;
    mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_ALWAYS, &rep);
    CHECK(st != NULL && rep.outgoing == 0 && rep.corruptions == 0, "a new store opens empty");
    build_mixed(st, &m);
    CHECK(mqtt__store_last(st) > mqtt__store_durable(st), "changes are pending until a flush");
    CHECK(mqtt__store_flush_due(st, 0) == 0, "sync=always: a flush is due at once");
    CHECK(mqtt__store_flush(st, 0) == MQTT_OK &&
              mqtt__store_durable(st) == mqtt__store_last(st),
          "a flush makes every change durable");
    mqtt_store_item it;
    CHECK(mqtt__store_next(st, &it) == MQTT_ERR_STATE, "recovery iteration ends at the first change");
    CHECK(mqtt__store_close(st) == MQTT_OK, "close");
    static char want[4096], got[4096];
    describe_model(&m, want, sizeof want);
    st = open_ok(dir, MQTT_STORE_SYNC_ALWAYS, &rep);
    CHECK(st != NULL && rep.outgoing == 5 && rep.incoming == 2 && rep.corruptions == 0,
          "reopened: 5 outgoing and 2 incoming records, no damage");
    CHECK(describe_store(st, got, sizeof got) == MQTT_OK && strcmp(want, got) == 0,
          "every kind and state comes back as stored, outgoing in order, then incoming");
    if (strcmp(want, got) != 0)
        printf("# want:\n%s# got:\n%s", want, got);
    mqtt__store_close(st);
}

static void test_rejects(void)
{
    const char *dir = fresh_dir("rej");
    mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_NEVER, NULL);
    mqtt_record *r;
    mqtt__record_publish(str("t"), str("p"), 1, false, str(NULL), &r);
    uint64_t key;
    CHECK(mqtt__store_out_add(st, r, &key) == MQTT_ERR_INVAL, "QoS 1 without a packet id refused");
    r->packet_id = 5;
    r->state = MQTT_QS_WAIT_PUBREC;
    CHECK(mqtt__store_out_add(st, r, &key) == MQTT_ERR_INVAL, "a state QoS 1 cannot be in refused");
    r->state = MQTT_QS_QUEUED1;
    CHECK(mqtt__store_out_add(st, r, &key) == MQTT_OK, "a queued QoS 1 publish is added");
    r->qos = 2;
    CHECK(mqtt__store_out_update(st, key, r) == MQTT_ERR_INVAL, "an update changing QoS refused");
    r->qos = 1;
    CHECK(mqtt__store_out_update(st, key + 1, r) == MQTT_ERR_INVAL, "an unknown key refused");
    CHECK(mqtt__store_out_remove(st, key + 1) == MQTT_ERR_INVAL, "removing an unknown key refused");
    CHECK(mqtt__store_in_add(st, 3, str("a"), str("b"), false, str(NULL)) == MQTT_OK &&
              mqtt__store_in_add(st, 3, str("a"), str("b"), false, str(NULL)) == MQTT_ERR_INVAL,
          "an incoming id held already refused");
    CHECK(mqtt__store_in_remove(st, 4) == MQTT_ERR_INVAL && mqtt__store_in_release(st, 4) ==
              MQTT_ERR_INVAL, "an unknown incoming id refused");
    mqtt_record *s;
    mqtt_sub_entry e = { str("f/#"), 1 };
    mqtt__record_subscribe(MQTT_REC_SUBSCRIBE, &e, 1, str(NULL), &s);
    CHECK(mqtt__store_out_add(st, s, &key) == MQTT_ERR_INVAL, "a SUBSCRIBE is not stored");
    mqtt__record_free(s);
    mqtt__record_free(r);
    mqtt_store_stats ss;
    mqtt__store_stats(st, &ss);
    CHECK(ss.outgoing == 1 && ss.incoming == 1, "refused changes changed nothing");
    mqtt__store_close(st);
    char err[300];
    CHECK(mqtt__store_open(dir, cid("x"), (mqtt_store_sync)7, &st, NULL, err, sizeof err) ==
              MQTT_ERR_INVAL, "a bad sync mode refused");
    char big[128];
    memset(big, 'x', sizeof big);
    CHECK(mqtt__store_open(dir, (mqtt_bytes){ (uint8_t *)big, sizeof big }, MQTT_STORE_SYNC_NEVER,
                           &st, NULL, err, sizeof err) == MQTT_ERR_INVAL &&
              strstr(err, "at most 100 bytes") != NULL,
          "a client id too long for a file name refused clearly");
}

/* ---- group commit ------------------------------------------------------ */

static void test_group_commit(void)
{
    CHECK(mqtt__crc32c(0, (const uint8_t *)"123456789", 9) == 0xE3069283u,
          "CRC32C: the standard check value");
    const char *dir = fresh_dir("group");
    static model m;
    m.n = 0;
    mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_BATCH, NULL);
    op_out_add(st, &m, "g/1", "a", 1, 1, false, NULL);
    op_out_add(st, &m, "g/2", "b", 1, 2, false, NULL);
    uint64_t first = mqtt__store_last(st);
    mqtt_store_flush f;
    CHECK(mqtt__store_flush_begin(st, &f) && f.seq == first, "a group takes what is pending");
    mqtt_store_flush g;
    CHECK(!mqtt__store_flush_begin(st, &g), "one group at a time");
    op_out_add(st, &m, "g/3", "c", 1, 3, false, NULL); /* while the group is written */
    mqtt__store_flush_write(&f);
    CHECK(mqtt__store_flush_end(st, &f, 1000) == MQTT_OK && mqtt__store_durable(st) == first &&
              mqtt__store_last(st) > first,
          "the group is durable, the change made during its write is not yet");
    CHECK(mqtt__store_flush_due(st, 1050) == 50 && mqtt__store_flush_due(st, 1100) == 0,
          "sync=batch: the next fsync 100 ms after the last");
    /* A failed write: the group is kept and written again. */
    CHECK(mqtt__store_flush_begin(st, &f), "the next group");
    f.fd = -1;
    mqtt__store_flush_write(&f);
    CHECK(mqtt__store_flush_end(st, &f, 2000) == MQTT_ERR_SYSTEM &&
              mqtt__store_durable(st) == first && mqtt__store_flush_due(st, 2000) == 100,
          "a failed write: not durable, tried again 100 ms later");
    op_out_update(st, &m, m.r[0].key, MQTT_QS_WAIT_PUBACK, false);
    CHECK(mqtt__store_flush(st, 2100) == MQTT_OK && mqtt__store_flush(st, 2300) == MQTT_OK &&
              mqtt__store_durable(st) == mqtt__store_last(st),
          "the failed group, then what followed, written");
    mqtt__store_close(st);
    static char want[4096], got[4096];
    describe_model(&m, want, sizeof want);
    mqtt_store_report rep;
    st = open_ok(dir, MQTT_STORE_SYNC_BATCH, &rep);
    CHECK(describe_store(st, got, sizeof got) == MQTT_OK && strcmp(want, got) == 0 &&
              rep.corruptions == 0, "after a failed write and its retry: every change, in order");
    mqtt__store_close(st);
}

/* ---- order, compaction ------------------------------------------------- */

static void test_order_and_compaction(void)
{
    const char *dir = fresh_dir("order");
    static model m;
    m.n = 0;
    mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_NEVER, NULL);
    uint64_t keys[60];
    char t[32];
    for (int i = 0; i < 60; i++) {
        snprintf(t, sizeof t, "o/%d", i);
        model *mm = (i % 3 == 0) ? &m : NULL; /* the model keeps every third */
        mqtt_record *r;
        mqtt__record_publish(str(t), str("payload"), 1, false, str(NULL), &r);
        r->packet_id = (uint16_t)(i + 1);
        mqtt__store_out_add(st, r, &keys[i]);
        mqtt__record_free(r);
        if (mm != NULL) {
            m_rec *x = &m.r[m.n++];
            *x = (m_rec){ .key = keys[i], .id = (uint16_t)(i + 1), .qos = 1,
                          .state = MQTT_QS_QUEUED1 };
            snprintf(x->topic, sizeof x->topic, "%s", t);
            snprintf(x->payload, sizeof x->payload, "payload");
        }
        if (i % 10 == 9)
            mqtt__store_flush(st, 0);
    }
    for (int i = 0; i < 60; i++)
        if (i % 3 != 0)
            mqtt__store_out_remove(st, keys[i]);
    op_out_update(st, &m, keys[3], MQTT_QS_WAIT_PUBACK, true);
    mqtt__store_flush(st, 0);
    mqtt_store_stats before, after;
    mqtt__store_stats(st, &before);
    /* Pending changes across a compaction: they go to the new file. */
    op_out_add(st, &m, "late/1", "after", 2, 99, false, NULL);
    op_out_remove(st, &m, keys[0]);
    CHECK(mqtt__store_compact(st) == MQTT_OK, "compaction with changes pending");
    mqtt__store_stats(st, &after);
    CHECK(after.compactions == 1 && after.file_bytes < before.file_bytes / 2,
          "compaction shrank the log to the live set");
    mqtt__store_flush(st, 0);
    /* In three steps, with changes to records in the snapshot and new ones
     * in between, as the I/O thread and a publisher would make them. */
    mqtt_store_compaction c;
    CHECK(mqtt__store_compact_begin(st, &c) == MQTT_OK, "compaction begins");
    mqtt_store_compaction c2;
    CHECK(mqtt__store_compact_begin(st, &c2) == MQTT_ERR_STATE, "one compaction at a time");
    op_out_update(st, &m, keys[6], MQTT_QS_WAIT_PUBACK, false);
    op_out_remove(st, &m, keys[9]);
    op_out_add(st, &m, "late/2", "during", 1, 100, false, NULL);
    mqtt_store_flush f;
    CHECK(!mqtt__store_flush_begin(st, &f), "no flush during a compaction");
    mqtt__store_compact_run(&c);
    CHECK(mqtt__store_compact_end(st, &c) == MQTT_OK, "compaction ends");
    mqtt__store_flush(st, 0);
    CHECK(mqtt__store_compact(st) == MQTT_OK, "a second compaction reads the first's file");
    mqtt__store_stats(st, &after);
    CHECK(after.compactions == 3, "three compactions counted");
    op_out_remove(st, &m, m.r[0].key); /* dead bytes again: the next compaction moves records */
    mqtt__store_close(st);
    static char want[8192], got[8192];
    describe_model(&m, want, sizeof want);
    mqtt_store_report rep;
    st = open_ok(dir, MQTT_STORE_SYNC_NEVER, &rep);
    CHECK(mqtt__store_compact(st) == MQTT_OK, "a compaction right after recovery");
    CHECK(describe_store(st, got, sizeof got) == MQTT_OK && strcmp(want, got) == 0 &&
              rep.outgoing == 19 && rep.corruptions == 0,
          "after compaction exactly the live set, in order, with its last states");
    if (strcmp(want, got) != 0)
        printf("# want:\n%s# got:\n%s", want, got);
    mqtt__store_close(st);
}

static void test_auto_compaction(void)
{
    const char *dir = fresh_dir("auto");
    mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_NEVER, NULL);
    static char payload[1001];
    memset(payload, 'p', 1000);
    static model m;
    m.n = 0;
    for (int i = 0; i < 3000; i++) {
        op_out_add(st, &m, "auto", payload, 1, (uint16_t)(i % 65535 + 1), false, NULL);
        mqtt__store_flush(st, 0);
        if (m.n > 3)
            op_out_remove(st, &m, m.r[0].key);
    }
    mqtt__store_flush(st, 0);
    mqtt_store_stats s;
    mqtt__store_stats(st, &s);
    CHECK(s.compactions >= 1 && s.file_bytes < (4u << 20),
          "a QoS 1 flow compacts its log by itself, the file stays small");
    mqtt__store_close(st);
    mqtt_store_report rep;
    st = open_ok(dir, MQTT_STORE_SYNC_NEVER, &rep);
    static char want[8192], got[8192];
    describe_model(&m, want, sizeof want);
    CHECK(describe_store(st, got, sizeof got) == MQTT_OK && strcmp(want, got) == 0 &&
              rep.corruptions == 0, "after automatic compactions: the live set, whole");
    mqtt__store_close(st);
}

/* ---- damage: every cut, every flipped byte ----------------------------- */

#define MAX_STEPS 32

typedef struct history {
    size_t bound[MAX_STEPS]; /* file size after step k (bound[0]: the header alone) */
    char *snap[MAX_STEPS];   /* the model after step k */
    size_t steps;
} history;

static void snap(history *h, const char *dir, const model *m)
{
    uint8_t buf[1];
    (void)buf;
    struct stat sb;
    stat(logfile(dir, "dev-1"), &sb);
    h->bound[h->steps] = (size_t)sb.st_size;
    h->snap[h->steps] = malloc(4096);
    describe_model(m, h->snap[h->steps], 4096);
    h->steps++;
}

/* A small log, one entry per step, flushed after each so the boundaries are known. */
static void build_history(const char *dir, history *h)
{
    static model m;
    m.n = 0;
    h->steps = 0;
    mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_NEVER, NULL);
    snap(h, dir, &m);
#define STEP(call)                                                                             \
    do {                                                                                       \
        call;                                                                                  \
        mqtt__store_flush(st, 0);                                                              \
        snap(h, dir, &m);                                                                      \
    } while (0)
    STEP(op_out_add(st, &m, "d/1", "first", 1, 1, false, NULL));
    STEP(op_out_add(st, &m, "d/2", "second", 2, 2, true, "pr"));
    STEP(op_in_add(st, &m, 5, "in/5", "five"));
    STEP(op_out_update(st, &m, m.r[0].key, MQTT_QS_WAIT_PUBACK, false));
    STEP(op_out_add(st, &m, "d/3", "third", 0, 0, false, NULL));
    STEP(op_out_update(st, &m, m.r[1].key, MQTT_QS_WAIT_PUBREC, true));
    STEP((mqtt__store_in_release(st, 5), m_find(&m, true, 0, 5)->state = MQTT_QS_IN_RELEASED));
    STEP(op_out_remove(st, &m, m.r[0].key));
    STEP(op_in_add(st, &m, 6, "in/6", "six"));
    STEP((mqtt__store_in_remove(st, 5), m_drop(&m, m_find(&m, true, 0, 5))));
    STEP(op_out_add(st, &m, "d/4", "fourth", 1, 4, false, NULL));
#undef STEP
    mqtt__store_close(st);
}

/* The last step whose entry lies wholly before offset off. */
static size_t step_before(const history *h, size_t off)
{
    size_t k = 0;
    while (k + 1 < h->steps && h->bound[k + 1] <= off)
        k++;
    return k;
}

/* Recovers the bytes as a log; true when it holds want and reports the cut. */
static bool recovers_as(const char *dir, const uint8_t *bytes, size_t n, const char *want,
                        uint64_t cut_at, uint64_t cut)
{
    write_file(logfile(dir, "dev-1"), bytes, n);
    mqtt_store_report rep;
    mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_NEVER, &rep);
    if (st == NULL)
        return false;
    static char got[4096];
    bool ok = describe_store(st, got, sizeof got) == MQTT_OK && strcmp(got, want) == 0 &&
              rep.cut_bytes == cut && rep.corruptions == (cut > 0) &&
              (cut == 0 || rep.cut_offset == cut_at);
    /* A cut store takes appends again and keeps them. */
    ok = ok && op_out_add(st, NULL, "after", "cut", 0, 0, false, NULL) == MQTT_OK;
    mqtt__store_close(st);
    st = open_ok(dir, MQTT_STORE_SYNC_NEVER, &rep);
    ok = ok && st != NULL && rep.corruptions == 0;
    mqtt__store_close(st);
    if (!ok)
        printf("# %zu bytes: want cut %llu at %llu:\n%s# got cut %llu at %llu:\n%s", n,
               (unsigned long long)cut, (unsigned long long)cut_at, want,
               (unsigned long long)rep.cut_bytes, (unsigned long long)rep.cut_offset, got);
    return ok;
}

static void test_damage(void)
{
    const char *dir = fresh_dir("damage");
    history h;
    build_history(dir, &h);
    static uint8_t orig[8192], bytes[8192];
    size_t size = read_file(logfile(dir, "dev-1"), orig, sizeof orig);
    CHECK(size == h.bound[h.steps - 1] && h.steps == 12, "the damage test's log: 11 entries");
    bool cuts_ok = true;
    for (size_t off = 0; off <= size && cuts_ok; off++) {
        size_t k = step_before(&h, off);
        size_t good = off < ST_FILE_HDR ? 0 : h.bound[k];
        cuts_ok = recovers_as(dir, orig, off, h.snap[k], good, off - good);
    }
    CHECK(cuts_ok, "cut at every byte: the entries before the cut recovered, the cut reported");
    bool flips_ok = true;
    for (size_t b = 0; b < size && flips_ok; b++) {
        memcpy(bytes, orig, size);
        bytes[b] ^= (uint8_t)(1u << (b % 8));
        size_t k = b < ST_FILE_HDR ? 0 : step_before(&h, b);
        size_t good = b < ST_FILE_HDR ? 0 : h.bound[k];
        flips_ok = recovers_as(dir, bytes, size, h.snap[k], good, size - good);
    }
    CHECK(flips_ok, "a bit flipped in every byte: the entries before it recovered, the rest cut");
    memcpy(bytes, orig, size);
    memset(bytes + h.bound[6], 0, size - h.bound[6]);
    CHECK(recovers_as(dir, bytes, size, h.snap[6], h.bound[6], size - h.bound[6]),
          "a zeroed tail (a file extended, its data lost) is cut");
    for (size_t k = 0; k < h.steps; k++)
        free(h.snap[k]);
}

/* ---- the directory and the lock -------------------------------------- */

static void test_not_writable(void)
{
    const char *dir = fresh_dir("ro");
    chmod(base_dir, 0755); /* mkdtemp made it 0700: the other user must reach dir */
    mkdir(dir, 0555);
    chmod(dir, 0555);
    fflush(stdout); /* a child must not print what the parent buffered */
    pid_t pid = fork();
    if (pid == 0) {
        if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        char err[300];
        mqtt_store *st;
        int rc = mqtt__store_open(dir, cid("x"), MQTT_STORE_SYNC_ALWAYS, &st, NULL, err,
                                  sizeof err);
        printf("# %s\n", err);
        fflush(stdout);
        _exit(rc == MQTT_ERR_SYSTEM && strstr(err, "is not writable") && st == NULL ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a directory that cannot be written: a clear error");
    chmod(dir, 0755);
    char file[300], err[300];
    snprintf(file, sizeof file, "%s/plain", dir);
    write_file(file, (const uint8_t *)"x", 1);
    snprintf(file, sizeof file, "%s/plain/store", dir);
    mqtt_store *st;
    CHECK(mqtt__store_open(file, cid("x"), MQTT_STORE_SYNC_ALWAYS, &st, NULL, err, sizeof err) ==
              MQTT_ERR_SYSTEM && strstr(err, "cannot create store directory") != NULL,
          "a store path under a file: a clear error");
    printf("# %s\n", err);
}

static void test_lock(void)
{
    const char *dir = fresh_dir("lock");
    mqtt_store *a = open_ok(dir, MQTT_STORE_SYNC_ALWAYS, NULL), *b = NULL;
    char err[300], want[64];
    snprintf(want, sizeof want, "is in use by process %ld", (long)getpid());
    int rc = mqtt__store_open(dir, cid("dev-1"), MQTT_STORE_SYNC_ALWAYS, &b, NULL, err, sizeof err);
    CHECK(a != NULL && rc == MQTT_ERR_STATE && b == NULL && strstr(err, want) != NULL,
          "a second open of one store in the same process is refused, naming the holder");
    printf("# %s\n", err);
    fflush(stdout); /* a child must not print what the parent buffered */
    pid_t pid = fork();
    if (pid == 0) {
        mqtt_store *c = NULL;
        int r = mqtt__store_open(dir, cid("dev-1"), MQTT_STORE_SYNC_ALWAYS, &c, NULL, err,
                                 sizeof err);
        mqtt__store_close(a); /* the child's copy: the parent's descriptors keep the lock */
        _exit(r == MQTT_ERR_STATE && strstr(err, want) != NULL ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "another process opening the store is refused, naming the holder");
    CHECK(mqtt__store_clear(dir, cid("dev-1"), err, sizeof err) == MQTT_ERR_STATE,
          "clear refuses a store in use");
    mqtt_store *other = NULL;
    CHECK(mqtt__store_open(dir, cid("dev-2"), MQTT_STORE_SYNC_ALWAYS, &other, NULL, err,
                           sizeof err) == MQTT_OK, "another client id in the same directory opens");
    mqtt__store_close(other);
    op_out_add(a, NULL, "kept", "x", 0, 0, false, NULL);
    mqtt__store_close(a);
    CHECK(mqtt__store_clear(dir, cid("dev-1"), err, sizeof err) == MQTT_OK,
          "clear after close");
    mqtt_store_report rep;
    a = open_ok(dir, MQTT_STORE_SYNC_ALWAYS, &rep);
    CHECK(a != NULL && rep.outgoing == 0, "a cleared store opens empty");
    mqtt__store_close(a);
    CHECK(mqtt__store_clear(fresh_dir("never-made"), cid("z"), err, sizeof err) == MQTT_OK,
          "clearing a store that never existed is no error");
}

/* ---- fork, spawn and a destroy under waiting publishers ------------------ */

static char lock_path[512];

static const char *lockfile(const char *dir, const char *id)
{
    snprintf(lock_path, sizeof lock_path, "%s", logfile(dir, id));
    strcpy(lock_path + strlen(lock_path) - 4, ".lock");
    return lock_path;
}

/* Whether process pid (0: this one) has a descriptor open on path. */
static bool holds_file(pid_t pid, const char *path)
{
    char fd_dir[64], link[600], target[600];
    snprintf(fd_dir, sizeof fd_dir, pid ? "/proc/%ld/fd" : "/proc/self/fd", (long)pid);
    DIR *d = opendir(fd_dir);
    bool found = false;
    struct dirent *e;
    while (d != NULL && !found && (e = readdir(d)) != NULL) {
        snprintf(link, sizeof link, "%s/%s", fd_dir, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            found = strcmp(target, path) == 0;
        }
    }
    if (d != NULL)
        closedir(d);
    return found;
}

/* A client on the store of id in dir, never connected. */
static mqtt_client *store_client(const char *dir, const char *id, int *rc)
{
    mqtt_options o;
    mqtt_options_init(&o);
    o.client_id = id;
    o.client_id_len = strlen(id);
    o.clean_session = false;
    o.store = dir;
    o.store_sync = MQTT_SYNC_ALWAYS;
    mqtt_client *c = NULL;
    *rc = mqtt_client_create(&o, &c);
    return c;
}

static int publish_n(mqtt_client *c, int n)
{
    char payload[16];
    int len = snprintf(payload, sizeof payload, "%d", n);
    mqtt_message m = { .topic = "store/w", .topic_len = 7, .payload = payload,
                       .payload_len = (size_t)len, .qos = 1 };
    return mqtt_client_publish(c, &m, NULL);
}

/* The parent's client, which a child of fork() abandons: still pointed at,
 * so that a leak checker does not count it lost in the child. */
static mqtt_client *volatile abandoned;

/* The child of test_fork: what it may do with its parent's client and store;
 * says how it went over out, then lives until in is closed. */
static void fork_child(const char *dir, mqtt_client *c, mqtt_store *st, int in, int out)
{
    char want[64];
    snprintf(want, sizeof want, "is in use by process %ld", (long)getppid());
    const char *lock = lockfile(dir, "forked"), *why = "ok";
    int rc;
    mqtt_client *d = store_client(dir, "forked", &rc);
    if (holds_file(0, lock) || holds_file(0, logfile(dir, "forked")))
        why = "the child has the parent's lock file or log open";
    else if (d != NULL || rc != MQTT_ERR_STATE || strstr(mqtt_last_error(), want) == NULL)
        why = "the child could open the parent's store";
    abandoned = c;
    mqtt_client_destroy(c); /* the parent's: only the child's copies go */
    if (mqtt__store_close(st) != MQTT_OK)
        why = "closing the parent's store in the child failed";
    if (write(out, why, strlen(why)) < 0)
        _exit(3);
    char b;
    while (read(in, &b, 1) > 0)
        ;
    _exit(0);
}

/* A client and a bare store with changes pending, then a child forked; while
 * it lives the parent closes both and opens them again: the child kept no lock.
 * Then the same with a process made by posix_spawn (close-on-exec). */
static void test_fork(void)
{
    const char *dir = fresh_dir("fork");
    int rc;
    mqtt_client *c = store_client(dir, "forked", &rc);
    CHECK(c != NULL && publish_n(c, 1) == MQTT_OK, "a client with a store publishes");
    mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_ALWAYS, NULL);
    CHECK(st != NULL, "a bare store opens");
    op_out_add(st, NULL, "t", "pending", 1, 1, false, NULL); /* not written yet */
    int down[2], up[2];
    if (c == NULL || st == NULL || pipe(down) != 0 || pipe(up) != 0)
        return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        fork_child(dir, c, st, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    char said[128] = "";
    ssize_t n = read(up[0], said, sizeof said - 1);
    said[n > 0 ? n : 0] = '\0';
    close(up[0]);
    CHECK(strcmp(said, "ok") == 0, "in a child of fork() the parent's client and store are "
                                   "refused, hold no descriptor of them and close without I/O");
    if (strcmp(said, "ok") != 0)
        printf("# %s\n", said);
    mqtt_client_destroy(c);
    CHECK(mqtt__store_close(st) == MQTT_OK, "the parent closes its store");
    c = store_client(dir, "forked", &rc);
    mqtt_stats s;
    if (c != NULL)
        mqtt_client_stats(c, &s);
    CHECK(c != NULL && s.queued == 1,
          "with the child alive the parent opens its client's store again: the child kept no lock");
    mqtt_store_report rep;
    st = open_ok(dir, MQTT_STORE_SYNC_ALWAYS, &rep);
    CHECK(st != NULL && rep.outgoing == 1 && rep.corruptions == 0,
          "and its bare store: the record the parent wrote at close, once, nothing else");
    close(down[1]);
    int status = 0;
    waitpid(pid, &status, 0);

    /* posix_spawn runs no fork handlers: close-on-exec keeps the lock from the new program. */
    int keep[2];
    if (pipe(keep) != 0)
        return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, keep[0], 0);
    posix_spawn_file_actions_addclose(&fa, keep[1]);
    char *argv[] = { "sh", "-c", "read x", NULL };
    pid_t sp = 0;
    int spawned = posix_spawn(&sp, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(keep[0]);
    bool none = spawned == 0 && !holds_file(sp, lockfile(dir, "forked")) &&
                !holds_file(sp, lockfile(dir, "dev-1")) && !holds_file(sp, logfile(dir, "dev-1"));
    mqtt_client_destroy(c);
    mqtt__store_close(st);
    c = store_client(dir, "forked", &rc);
    CHECK(none && c != NULL, "a spawned program holds none of the store's files; "
                             "the store opens again while it runs");
    mqtt_client_destroy(c);
    close(keep[1]);
    if (spawned == 0)
        waitpid(sp, &status, 0);
}

typedef struct publisher {
    mqtt_client *c;
    int n, rc;
    pthread_t th;
} publisher;

static void *publish_thread(void *arg)
{
    publisher *p = arg;
    p->rc = publish_n(p->c, p->n);
    return NULL;
}

static void *destroy_thread(void *arg)
{
    mqtt_client_destroy(arg);
    return NULL;
}

static unsigned waiters(mqtt_client *c)
{
    pthread_mutex_lock(&c->mu);
    unsigned n = c->sh.store_waiters;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static bool stopping(mqtt_client *c)
{
    pthread_mutex_lock(&c->mu);
    bool b = c->sh.stop;
    pthread_mutex_unlock(&c->mu);
    return b;
}

/* Two publishers under sync "always": the first one's group held at its
 * fdatasync, the second waiting behind it; the client destroyed meanwhile.
 * Each publish returns, MQTT_OK exactly for what a restart finds. fails:
 * the number of fsyncs that fail from then on (-1: all). */
static void destroy_under_waiters(int fails)
{
    const char *dir = fresh_dir(fails == 0 ? "destroy" : fails < 0 ? "destroy-fail" : "destroy-heal");
    int rc;
    mqtt_client *c = store_client(dir, "waited", &rc);
    if (c == NULL)
        return;
    publisher p[2] = { { .c = c, .n = 1 }, { .c = c, .n = 2 } };
    gate_set(true, false);
    pthread_create(&p[0].th, NULL, publish_thread, &p[0]);
    gate_wait_for(1); /* the I/O thread writes the first group */
    pthread_create(&p[1].th, NULL, publish_thread, &p[1]);
    while (waiters(c) < 2)
        sched_yield();
    pthread_t d;
    pthread_create(&d, NULL, destroy_thread, c);
    while (!stopping(c))
        sched_yield();
    gate_set_budget(false, fails != 0, fails);
    pthread_join(p[0].th, NULL);
    pthread_join(p[1].th, NULL);
    pthread_join(d, NULL);
    gate_set(false, false);
    mqtt_store_report rep;
    mqtt_store *st = NULL;
    char err[300];
    rc = mqtt__store_open(dir, cid("waited"), MQTT_STORE_SYNC_ALWAYS, &st, &rep, err, sizeof err);
    size_t kept = rc == MQTT_OK ? rep.outgoing : 99;
    mqtt__store_close(st);
    printf("# publishes returned %d and %d; %zu recovered\n", p[0].rc, p[1].rc, kept);
    if (fails > 0)
        /* The disk heals while destroy writes. A failed write is tried again, so
         * a publish told MQTT_ERR_SYSTEM may be kept after all; MQTT_OK never lies. */
        CHECK(kept >= (size_t)(p[0].rc == MQTT_OK) + (size_t)(p[1].rc == MQTT_OK) &&
                  kept <= 2 && (p[0].rc == MQTT_OK || p[0].rc == MQTT_ERR_SYSTEM) &&
                  (p[1].rc == MQTT_OK || p[1].rc == MQTT_ERR_SYSTEM),
              "destroy while the disk fails, then heals: every publish returns, and "
              "each one that returned MQTT_OK is kept");
    else if (fails < 0)
        CHECK(p[0].rc == MQTT_ERR_SYSTEM && p[1].rc == MQTT_ERR_SYSTEM && kept == 0,
              "destroy with publishers waiting on a failing disk: both fail, neither is kept");
    else
        CHECK(p[0].rc == MQTT_OK && p[1].rc == MQTT_OK && kept == 2,
              "destroy with publishers waiting for their fsync: both return MQTT_OK, both kept");
}

static void test_destroy_wakes(void)
{
    alarm(60); /* a publisher left waiting would hang the test: fail it instead */
    destroy_under_waiters(0);
    destroy_under_waiters(-1);
    for (int n = 1; n <= 4; n++)
        destroy_under_waiters(n);
    alarm(0);
}

/* ---- out of memory ----------------------------------------------------- */

/* Open, recover, change, flush, compact, close; stops at the first NOMEM. */
static int oom_run(const char *dir)
{
    mqtt_store *st = NULL;
    char err[300];
    int rc = mqtt__store_open(dir, cid("dev-1"), MQTT_STORE_SYNC_NEVER, &st, NULL, err,
                              sizeof err);
    if (rc != MQTT_OK)
        return rc;
    static char got[8192];
    rc = describe_store(st, got, sizeof got);
    for (int i = 0; rc == MQTT_OK && i < 40; i++)
        rc = op_out_add(st, NULL, "oom/t", "payload", 1, (uint16_t)(i + 1), false, NULL);
    if (rc == MQTT_OK)
        rc = mqtt__store_in_add(st, 1, str("i"), str("p"), false, str(NULL));
    if (rc == MQTT_OK)
        rc = mqtt__store_flush(st, 0);
    if (rc == MQTT_OK)
        rc = mqtt__store_compact(st);
    int crc = mqtt__store_close(st);
    return rc != MQTT_OK ? rc : crc;
}

static void test_oom(void)
{
    const char *dir = fresh_dir("oom");
    history h;
    build_history(dir, &h); /* something to recover */
    for (size_t k = 0; k < h.steps; k++)
        free(h.snap[k]);
    static uint8_t orig[8192];
    size_t size = read_file(logfile(dir, "dev-1"), orig, sizeof orig);
    bool clean = true;
    unsigned long k = 1, points = 0;
    for (; k < 200; k++) {
        write_file(logfile(dir, "dev-1"), orig, size);
        long live = mqtt__alloc_live();
        mqtt__alloc_fail_at(k);
        int rc = oom_run(dir);
        points = mqtt__alloc_fail_at(0);
        clean = clean && (rc == MQTT_OK || rc == MQTT_ERR_NOMEM) && mqtt__alloc_live() == live;
        if (!clean)
            printf("# allocation %lu: rc %d, live %ld -> %ld\n", k, rc, live, mqtt__alloc_live());
        mqtt_store_report rep;
        mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_NEVER, &rep);
        clean = clean && st != NULL && rep.corruptions == 0;
        mqtt__store_close(st);
        if (points < k)
            break;
    }
    char name[200];
    snprintf(name, sizeof name, "each of the store's %lu allocations failing in turn fails "
                                "cleanly, leaking nothing, the log intact", k - 1);
    CHECK(clean && k > 5 && k < 200, name);
}

/* ---- kill -9 ------------------------------------------------------------ */

#define KILL_ROUNDS 20
#define MAX_N 200000

/* What the parent knows from the writer's reports: each message by its number. */
typedef struct kill_model {
    uint8_t state[MAX_N]; /* 0 unknown; 1 durable queued; 2 durable sent; 3 durably removed;
                           * 4 being removed: there or not */
    uint32_t next_n;      /* numbers below were perhaps used */
} kill_model;

static uint32_t payload_n(const mqtt_record *r)
{
    mqtt_bytes p = mqtt__record_payload(r);
    char buf[16] = "";
    memcpy(buf, p.data, p.len < 15 ? p.len : 15);
    return (uint32_t)strtoul(buf + 2, NULL, 10);
}

/* The writer: adds, marks sent and removes QoS 1 messages in groups, and
 * reports each group over fd once the flush said it was durable. */
static void kill_child(const char *dir, int fd, uint32_t next_n, unsigned seed)
{
    srand(seed);
    mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_ALWAYS, NULL);
    if (st == NULL)
        _exit(2);
    static uint64_t keys[MAX_N];
    static uint32_t ns[MAX_N];
    static uint8_t sent[MAX_N];
    size_t head = 0, tail = 0;
    mqtt_store_item it;
    while (mqtt__store_next(st, &it) == MQTT_OK && it.rec != NULL) {
        keys[tail] = it.key;
        sent[tail] = it.rec->state == MQTT_QS_WAIT_PUBACK;
        ns[tail++] = payload_n(it.rec);
        mqtt__record_free(it.rec);
    }
    char report[4096];
    for (;;) {
        report[0] = '\0';
        int group = 1 + rand() % 4;
        for (int g = 0; g < group && next_n < MAX_N - 1; g++) {
            int what = rand() % 4;
            char line[40];
            if (tail - head < 4 || what < 2) {
                char payload[16];
                snprintf(payload, sizeof payload, "n=%u", next_n);
                op_out_add(st, NULL, "kill/t", payload, 1, (uint16_t)(next_n % 65535 + 1), false,
                           NULL);
                keys[tail] = mqtt__store_last(st);
                sent[tail] = 0;
                ns[tail++] = next_n;
                snprintf(line, sizeof line, "A %u\n", next_n++);
            } else if (what == 2 && !sent[head]) {
                mqtt_record *r;
                mqtt__record_publish(str("x"), str(NULL), 1, false, str(NULL), &r);
                r->packet_id = (uint16_t)(ns[head] % 65535 + 1);
                r->state = MQTT_QS_WAIT_PUBACK;
                mqtt__store_out_update(st, keys[head], r);
                mqtt__record_free(r);
                sent[head] = 1;
                snprintf(line, sizeof line, "S %u\n", ns[head]);
            } else {
                /* Said before it is done: from here on the record may be gone or not. */
                char intent[24];
                int n = snprintf(intent, sizeof intent, "R %u\n", ns[head]);
                if (write(fd, intent, (size_t)n) < 0)
                    _exit(4);
                mqtt__store_out_remove(st, keys[head]);
                snprintf(line, sizeof line, "D %u\n", ns[head++]);
            }
            strcat(report, line);
        }
        if (mqtt__store_flush(st, 0) != MQTT_OK || mqtt__store_durable(st) != mqtt__store_last(st))
            _exit(3);
        if (write(fd, report, strlen(report)) < 0)
            _exit(4);
        /* Now and then a compaction, so kills land inside one too. */
        if (rand() % 8 == 0 && mqtt__store_compact(st) != MQTT_OK)
            _exit(5);
    }
}

/* Takes in one report line; false at the end. *durable: it was A, S or D. */
static bool read_report(kill_model *km, FILE *f, bool *durable)
{
    char op;
    unsigned n;
    *durable = false;
    if (fscanf(f, " %c %u", &op, &n) != 2 || n >= MAX_N)
        return false;
    if (op == 'R') {
        km->state[n] = 4;
        return true;
    }
    km->state[n] = op == 'A' ? 1 : op == 'S' ? 2 : 3;
    *durable = true;
    return true;
}

/* Recovers the store; checks it against the reports and takes it as the new truth. */
static bool kill_check(const char *dir, kill_model *km, size_t *found)
{
    mqtt_store *st = open_ok(dir, MQTT_STORE_SYNC_ALWAYS, NULL);
    if (st == NULL)
        return false;
    static uint8_t seen[MAX_N];
    memset(seen, 0, sizeof seen);
    bool ok = true;
    uint32_t last = 0;
    bool first = true;
    mqtt_store_item it;
    *found = 0;
    while (ok && mqtt__store_next(st, &it) == MQTT_OK && it.rec != NULL) {
        uint32_t n = payload_n(it.rec);
        bool sent = it.rec->state == MQTT_QS_WAIT_PUBACK;
        ok = n < MAX_N && (first || n > last) && km->state[n] != 3 && (km->state[n] != 2 || sent);
        if (!ok)
            printf("# recovered n=%u (state %u) after %u: reported %u\n", n, it.rec->state, last,
                   n < MAX_N ? km->state[n] : 9);
        seen[n] = 1;
        km->state[n] = sent ? 2 : 1;
        last = n;
        first = false;
        (*found)++;
        mqtt__record_free(it.rec);
        if (n >= km->next_n)
            km->next_n = n + 1;
    }
    for (uint32_t n = 0; ok && n < km->next_n; n++) {
        if ((km->state[n] == 1 || km->state[n] == 2) && !seen[n]) {
            printf("# n=%u was reported durable and is gone\n", n);
            ok = false;
        }
    }
    mqtt__store_close(st);
    return ok;
}

static void test_kill(void)
{
    const char *dir = fresh_dir("kill");
    unsigned seed = getenv("STORE_SEED") ? (unsigned)atoi(getenv("STORE_SEED")) : 20261202u;
    printf("# kill -9 test, STORE_SEED=%u\n", seed);
    srand(seed);
    static kill_model km;
    memset(&km, 0, sizeof km);
    size_t reports = 0, found = 0, max_found = 0;
    bool ok = true;
    for (int round = 0; round < KILL_ROUNDS && ok; round++) {
        int p[2];
        if (pipe(p) != 0)
            break;
        unsigned child_seed = (unsigned)rand();
        useconds_t delay = (useconds_t)(2000 + rand() % 40000);
        /* Numbers the writer might have used unreported are skipped. */
        km.next_n += 16;
        fflush(stdout); /* a child must not print what the parent buffered */
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            kill_child(dir, p[1], km.next_n, child_seed);
        }
        close(p[1]);
        /* The delay counts from the writer's first durable group, so a slow
         * machine (valgrind) still sees every round make progress. */
        FILE *f = fdopen(p[0], "r");
        bool durable = false;
        while (!durable && read_report(&km, f, &durable))
            ;
        reports += durable;
        usleep(delay);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        while (read_report(&km, f, &durable))
            reports += durable;
        fclose(f);
        ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && kill_check(dir, &km, &found);
        if (!ok)
            printf("# round %d failed (status %d)\n", round, status);
        if (found > max_found)
            max_found = found;
        km.next_n += 64; /* whatever the writer added, unreported, after the last durable */
    }
    printf("# %zu durable reports, up to %zu records recovered at once\n", reports, max_found);
    CHECK(ok && reports >= KILL_ROUNDS,
          "a writer killed with SIGKILL 20 times: every change it reported durable is there, "
          "in order, nothing it removed durably came back");
}

int main(void)
{
    mqtt__alloc_track();
    snprintf(base_dir, sizeof base_dir, "/tmp/zmqtt-store-XXXXXX");
    if (mkdtemp(base_dir) == NULL)
        return 2;
    test_round_trip();
    test_rejects();
    test_group_commit();
    test_order_and_compaction();
    test_auto_compaction();
    test_damage();
    test_not_writable();
    test_lock();
    test_fork();
    test_destroy_wakes();
    test_oom();
    test_kill();
    rm_tree(base_dir);
    return test_done();
}
