/*
 * Getting the store's changes to disk: group commit (many changes, one
 * write and one fsync, the fsync outside the caller's lock), a failed group
 * kept and written again, and compaction: the live records copied into a
 * new file that is renamed over the log, so a crash leaves one or the other.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "store_internal.h"


int mqtt__store_pwrite(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int mqtt__store_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int rc = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

int64_t mqtt__store_flush_due(const mqtt_store *st, uint64_t now_ms)
{
    if (st == NULL || (st->pend_len == 0 && st->retry == NULL))
        return -1;
    uint64_t from = 0;
    if (st->retry != NULL)
        from = st->fail_ms; /* a failing disk is tried again, not spun on */
    else if (st->sync == MQTT_STORE_SYNC_BATCH && st->synced)
        from = st->last_sync_ms;
    else
        return 0;
    uint64_t due = from + MQTT_STORE_BATCH_MS;
    return due <= now_ms ? 0 : (int64_t)(due - now_ms);
}

bool mqtt__store_flush_begin(mqtt_store *st, mqtt_store_flush *f)
{
    if (st == NULL || f == NULL || st->flushing || st->compacting || st->orphan ||
        (st->pend_len == 0 && st->retry == NULL))
        return false;
    *f = (mqtt_store_flush){ .at = st->file_end, .fd = st->fd,
                             .fsync = st->sync != MQTT_STORE_SYNC_NEVER };
    if (st->retry != NULL) {
        f->buf = st->retry;
        f->len = (size_t)st->job_len;
        f->cap = st->retry_cap;
        f->seq = st->retry_seq;
        st->retry = NULL;
    } else {
        f->buf = st->pend;
        f->len = st->pend_len;
        f->cap = st->pend_cap;
        f->seq = st->seq;
        st->job_len = st->pend_len;
        st->pend = st->spare;
        st->pend_cap = st->spare_cap;
        st->pend_len = 0;
        st->spare = NULL;
        st->spare_cap = 0;
    }
    st->flushing = true;
    return true;
}

void mqtt__store_flush_write(mqtt_store_flush *f)
{
    f->err = mqtt__store_pwrite(f->fd, f->buf, f->len, f->at);
    if (f->err == 0 && f->fsync && fdatasync(f->fd) != 0)
        f->err = errno;
}

/* Keeps the larger of the spare buffer and buf, frees the other. */
static void keep_spare(mqtt_store *st, uint8_t *buf, size_t cap)
{
    if (cap <= st->spare_cap) {
        mqtt__free(buf);
        return;
    }
    mqtt__free(st->spare);
    st->spare = buf;
    st->spare_cap = cap;
}

int mqtt__store_flush_end(mqtt_store *st, mqtt_store_flush *f, uint64_t now_ms)
{
    if (st == NULL || f == NULL || !st->flushing)
        return MQTT_ERR_INVAL;
    st->flushing = false;
    if (f->err != 0) {
        /* Cut what part of the group reached the file, keep the group: a
         * rewrite also replaces pages a failed fsync may have dropped. */
        (void)ftruncate(st->fd, (off_t)st->file_end);
        st->retry = f->buf;
        st->retry_cap = f->cap;
        st->retry_seq = f->seq;
        st->fail_ms = now_ms;
        f->buf = NULL;
        return mqtt__system_failure(f->fsync ? "store write/fdatasync" : "store write", f->err);
    }
    st->file_end += f->len;
    st->job_len = 0;
    st->durable = f->seq;
    if (f->fsync) {
        st->counts.syncs++;
        st->last_sync_ms = now_ms;
        st->synced = true;
    }
    keep_spare(st, f->buf, f->cap);
    f->buf = NULL;
    return MQTT_OK;
}

int mqtt__store_flush(mqtt_store *st, uint64_t now_ms)
{
    mqtt_store_flush f;
    if (!mqtt__store_flush_begin(st, &f))
        return MQTT_OK;
    mqtt__store_flush_write(&f);
    int rc = mqtt__store_flush_end(st, &f, now_ms);
    if (rc == MQTT_OK && mqtt__store_compact_due(st))
        (void)mqtt__store_compact(st); /* on failure the old log simply stays in use */
    return rc;
}
