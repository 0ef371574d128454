/*
 * Compaction: the live records, each add entry patched to the state it is
 * in now, copied in sequence order into a new file; fsynced, renamed over
 * the log, the directory fsynced. A crash before the rename leaves the old
 * log whole, after it the new one; changes appended meanwhile stay pending
 * and go to the new file. Runs between flushes only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "store_internal.h"

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

/* Copies e's add entry from the log to w; 0, errno, or -1 for NOMEM. */
static int copy_entry(mqtt_store *st, writer *w, const st_ent *e)
{
    int err = 0;
    if (e->len > COPY_BUF - w->len && (err = w_flush(w)) != 0)
        return err;
    uint8_t *p = e->len <= COPY_BUF ? w->buf + w->len : mqtt__malloc(e->len);
    if (p == NULL)
        return -1;
    err = mqtt__store_pread(st->fd, p, e->len, e->pos);
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

/* Writes the new file whole: header, live entries, fsync. 0, errno or -1 (NOMEM). */
static int write_new(mqtt_store *st, writer *w)
{
    mqtt__store_header(w->buf);
    w->len = ST_FILE_HDR;
    size_t i = 0, j = 0;
    for (st_ent *e; (e = merge_next(st, &i, &j)) != NULL;) {
        if (e->pos >= st->file_end)
            break; /* this one and all after it are pending: they follow later */
        int err = copy_entry(st, w, e);
        if (err != 0)
            return err;
    }
    int err = w_flush(w);
    if (err == 0 && st->sync != MQTT_STORE_SYNC_NEVER && fdatasync(w->fd) != 0)
        err = errno;
    return err;
}

/* The index after the switch: copied entries where they are now, pending
 * ones where they will be, after the new file's end. */
static void relocate(mqtt_store *st, uint64_t new_end)
{
    uint64_t at = ST_FILE_HDR, old_end = st->file_end;
    size_t i = 0, j = 0;
    for (st_ent *e; (e = merge_next(st, &i, &j)) != NULL;) {
        if (e->pos < old_end) {
            e->pos = at;
            at += e->len;
        } else {
            e->pos = e->pos - old_end + new_end;
        }
    }
    st->file_end = new_end;
}

int mqtt__store_compact(mqtt_store *st)
{
    if (st == NULL)
        return MQTT_ERR_INVAL;
    if (st->flushing || st->retry != NULL)
        return MQTT_ERR_STATE;
    writer w = { .fd = -1, .buf = mqtt__malloc(COPY_BUF) };
    if (w.buf == NULL)
        return MQTT_ERR_NOMEM;
    int err = 0;
    w.fd = open(st->tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w.fd < 0)
        err = errno;
    if (err == 0)
        err = write_new(st, &w);
    if (err == 0 && rename(st->tmp_path, st->path) != 0)
        err = errno;
    mqtt__free(w.buf);
    if (err != 0) {
        if (w.fd >= 0) {
            close(w.fd);
            unlink(st->tmp_path);
        }
        return err < 0 ? MQTT_ERR_NOMEM : mqtt__system_failure("store compaction", err);
    }
    close(st->fd);
    st->fd = w.fd;
    relocate(st, w.off);
    st->counts.compactions++;
    /* The new name must survive too; until then a crash finds the old log, whole. */
    if (st->sync != MQTT_STORE_SYNC_NEVER && (err = mqtt__store_sync_dir(st->dir)) != 0)
        return mqtt__system_failure("store compaction: fsync of the directory", err);
    return MQTT_OK;
}
