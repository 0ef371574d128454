/*
 * Compaction: the live records, each add entry patched to the state it is
 * in now, copied in sequence order into a new file; fsynced, renamed over
 * the log, the directory fsynced. A crash before the rename leaves the old
 * log whole, after it the new one. Three steps like a flush: begin takes a
 * snapshot of the live entries in the file (under the caller's lock), run
 * copies and renames without any lock, end switches the store to the new
 * file (under the lock). Changes appended meanwhile stay pending and go to
 * the new file; no flush runs in between.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "store_internal.h"

#define COMPACT_MIN_BYTES (1u << 20) /* below this a dead log costs less than rewriting it */
#define COMPACT_RATIO 4u             /* compact when the file is this many times the live set */
#define COPY_BUF (64u * 1024u)

typedef struct writer {
    int fd;
    uint8_t *buf;
    size_t len;
    uint64_t off; /* where buf goes in the new file */
} writer;

/* The next live entry in sequence order, from out (*i) and in (*j); NULL at the end. */
static st_ent *merge_next(mqtt_store *st, size_t *i, size_t *j)
{
    while (*i < st->out.n && (st->out.v[*i].flags & ST_F_DEAD))
        (*i)++;
    st_ent *a = *i < st->out.n ? &st->out.v[*i] : NULL;
    st_ent *b = *j < st->in.n ? &st->in.v[*j] : NULL;
    if (a != NULL && (b == NULL || a->seq < b->seq)) {
        (*i)++;
        return a;
    }
    if (b != NULL)
        (*j)++;
    return b;
}

bool mqtt__store_compact_due(const mqtt_store *st)
{
    return st != NULL && st->file_end >= COMPACT_MIN_BYTES &&
           st->live_bytes * COMPACT_RATIO <= st->file_end;
}

int mqtt__store_compact_begin(mqtt_store *st, mqtt_store_compaction *c)
{
    if (st == NULL || c == NULL)
        return MQTT_ERR_INVAL;
    if (st->flushing || st->compacting || st->retry != NULL || st->orphan)
        return MQTT_ERR_STATE;
    size_t n = 0, i = 0, j = 0;
    for (const st_ent *e; (e = merge_next(st, &i, &j)) != NULL && e->pos < st->file_end;)
        n++;
    *c = (mqtt_store_compaction){ .fd = st->fd, .new_fd = -1, .old_end = st->file_end,
                                  .fsync = st->sync != MQTT_STORE_SYNC_NEVER,
                                  .path = st->path, .tmp_path = st->tmp_path, .dir = st->dir };
    c->snap = mqtt__malloc((n ? n : 1u) * sizeof *c->snap);
    if (c->snap == NULL)
        return MQTT_ERR_NOMEM;
    i = j = 0;
    for (st_ent *e; c->n < n && (e = merge_next(st, &i, &j)) != NULL;)
        c->snap[c->n++] = *e; /* pending entries come last: the first n are the file's */
    st->compacting = true;
    return MQTT_OK;
}

static int w_flush(writer *w)
{
    int err = mqtt__store_pwrite(w->fd, w->buf, w->len, w->off);
    w->off += w->len;
    w->len = 0;
    return err;
}

/* The add entry of e as it must read now: its state, its id, its seq. */
static int patch(uint8_t *p, const st_ent *e)
{
    if ((uint64_t)st_get32(p + 4) + ST_ENT_HDR != e->len ||
        (p[16] != ST_OUT_ADD && p[16] != ST_IN_ADD))
        return EIO; /* the file changed under the store */
    uint8_t *b = p + ST_ENT_HDR;
    st_put64(p + 8, e->seq);
    st_put16(b + 8, e->id);
    b[11] = e->state;
    b[12] = (uint8_t)(e->flags & (ST_F_DUP | ST_F_RETAIN));
    st_put32(p, mqtt__crc32c(0, p + 4, e->len - 4u));
    return 0;
}

/* Copies e's add entry from the log (fd) to w; 0, errno, or -1 for NOMEM. */
static int copy_entry(int fd, writer *w, const st_ent *e)
{
    int err = 0;
    if (e->len > COPY_BUF - w->len && (err = w_flush(w)) != 0)
        return err;
    uint8_t *p = e->len <= COPY_BUF ? w->buf + w->len : mqtt__malloc(e->len);
    if (p == NULL)
        return -1;
    err = mqtt__store_pread(fd, p, e->len, e->pos);
    if (err == 0)
        err = patch(p, e);
    if (p == w->buf + w->len) {
        w->len += e->len;
        return err;
    }
    if (err == 0)
        err = mqtt__store_pwrite(w->fd, p, e->len, w->off);
    w->off += e->len;
    mqtt__free(p);
    return err;
}

/* Writes the new file whole: header, the snapshot's entries, fsync. 0, errno or -1. */
static int write_new(mqtt_store_compaction *c, writer *w)
{
    mqtt__store_header(w->buf);
    w->len = ST_FILE_HDR;
    for (size_t i = 0; i < c->n; i++) {
        int err = copy_entry(c->fd, w, &c->snap[i]);
        if (err != 0)
            return err;
    }
    int err = w_flush(w);
    if (err == 0 && c->fsync && fdatasync(w->fd) != 0)
        err = errno;
    return err;
}

void mqtt__store_compact_run(mqtt_store_compaction *c)
{
    writer w = { .fd = -1, .buf = mqtt__malloc(COPY_BUF) };
    int err = w.buf == NULL ? -1 : 0;
    if (err == 0 && (w.fd = open(c->tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        err = errno;
    if (err == 0)
        err = write_new(c, &w);
    if (err == 0 && rename(c->tmp_path, c->path) != 0)
        err = errno;
    mqtt__free(w.buf);
    if (err != 0 && w.fd >= 0) {
        close(w.fd);
        unlink(c->tmp_path);
        w.fd = -1;
    }
    c->new_fd = w.fd;
    c->new_end = w.off;
    c->err = err;
    /* Renamed: the new file is the log. Its name must survive too; until
     * then a crash finds the old log, whole. */
    if (err == 0 && c->fsync)
        c->dir_err = mqtt__store_sync_dir(c->dir);
}

/* The index on the new file: the snapshot's entries where they were
 * copied, pending ones where they will be, after the new file's end. */
static void relocate(mqtt_store *st, const mqtt_store_compaction *c)
{
    uint64_t at = ST_FILE_HDR;
    size_t k = 0, i = 0, j = 0;
    for (st_ent *e; (e = merge_next(st, &i, &j)) != NULL;) {
        if (e->pos >= c->old_end) {
            e->pos = e->pos - c->old_end + c->new_end;
            continue;
        }
        while (k < c->n && c->snap[k].seq < e->seq)
            at += c->snap[k++].len; /* removed since the snapshot */
        if (k < c->n && c->snap[k].seq == e->seq) {
            e->pos = at;
            at += c->snap[k++].len;
        }
    }
    st->file_end = c->new_end;
}

int mqtt__store_compact_end(mqtt_store *st, mqtt_store_compaction *c)
{
    if (st == NULL || c == NULL || !st->compacting)
        return MQTT_ERR_INVAL;
    st->compacting = false;
    int rc = MQTT_OK;
    if (c->err != 0) {
        rc = c->err < 0 ? MQTT_ERR_NOMEM : mqtt__system_failure("store compaction", c->err);
    } else {
        mqtt__store_unmap(st); /* positions change: iteration reads the new file */
        mqtt__store_switch_fd(st, c->new_fd);
        relocate(st, c);
        st->counts.compactions++;
        if (c->dir_err != 0)
            rc = mqtt__system_failure("store compaction: fsync of the directory", c->dir_err);
    }
    mqtt__free(c->snap);
    c->snap = NULL;
    return rc;
}

int mqtt__store_compact(mqtt_store *st)
{
    mqtt_store_compaction c;
    int rc = mqtt__store_compact_begin(st, &c);
    if (rc != MQTT_OK)
        return rc;
    mqtt__store_compact_run(&c);
    return mqtt__store_compact_end(st, &c);
}
