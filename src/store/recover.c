/*
 * Recovery: the log mapped read-only and replayed entry by entry through
 * the same apply as the live path, up to the first entry whose framing,
 * checksum, sequence or meaning is wrong; everything from there on is cut
 * off (the file truncated), reported, never refused. Then the recovered
 * records are handed out one by one, read back from the file.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "store_internal.h"

void mqtt__store_header(uint8_t hdr[ST_FILE_HDR])
{
    static const uint8_t magic[8] = ST_MAGIC; /* no terminating NUL: exactly 8 bytes */
    memcpy(hdr, magic, sizeof magic);
    st_put32(hdr + 8, ST_VERSION);
    st_put32(hdr + 12, mqtt__crc32c(0, hdr, 12));
}

int mqtt__store_pread(int fd, uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? errno : EIO;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static bool header_ok(const uint8_t *m, size_t size)
{
    uint8_t want[ST_FILE_HDR];
    mqtt__store_header(want);
    return size >= ST_FILE_HDR && memcmp(m, want, ST_FILE_HDR) == 0;
}

/* Bytes of the intact entry at p (n bytes left) coming after seq last; 0: damaged. */
static size_t entry_ok(const uint8_t *p, size_t n, uint64_t last)
{
    if (n < ST_ENT_HDR)
        return 0;
    uint64_t bl = st_get32(p + 4);
    if (bl > ST_MAX_BODY || bl > n - ST_ENT_HDR || st_get64(p + 8) <= last)
        return 0;
    if (st_get32(p) != mqtt__crc32c(0, p + 4, ST_ENT_HDR - 4u + (size_t)bl))
        return 0;
    return ST_ENT_HDR + (size_t)bl;
}

/* Applies the intact prefix of the mapped log; *good: where it ends. */
static int replay(mqtt_store *st, const uint8_t *m, size_t size, size_t *good)
{
    size_t at = ST_FILE_HDR;
    uint64_t last = 0;
    while (at < size) {
        size_t n = entry_ok(m + at, size - at, last);
        if (n == 0)
            break;
        int rc = mqtt__store_apply(st, m + at, n, at, false);
        if (rc == MQTT_ERR_NOMEM)
            return rc;
        if (rc != MQTT_OK)
            break; /* well framed, but not a change this store could have made */
        last = st_get64(m + at + 8);
        at += n;
    }
    st->seq = last;
    *good = at;
    return MQTT_OK;
}

void mqtt__store_unmap(mqtt_store *st)
{
    if (st->map != NULL)
        munmap(st->map, st->map_len);
    st->map = NULL;
    st->map_len = 0;
}

/* The intact prefix's end (0 when even the header is damaged), or an error.
 * The mapping stays for iteration (pages faulted in at once: one fault per
 * page costs more than the checksums). */
static int scan(mqtt_store *st, size_t size, size_t *good)
{
    *good = 0;
    if (size == 0)
        return MQTT_OK;
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, st->fd, 0);
    if (m == MAP_FAILED)
        return mqtt__system_failure("mmap", errno);
    st->map = m;
    st->map_len = size;
    int rc = MQTT_OK;
    if (header_ok(m, size))
        rc = replay(st, m, size, good);
    if (rc != MQTT_OK || st->out.n + st->in.n == 0)
        mqtt__store_unmap(st);
    return rc;
}

/* Cuts the file to good bytes (a fresh header when none were good) and syncs. */
static int cut(mqtt_store *st, size_t good)
{
    uint8_t hdr[ST_FILE_HDR];
    mqtt__store_header(hdr);
    if (ftruncate(st->fd, (off_t)good) != 0)
        return mqtt__system_failure("ftruncate", errno);
    int err = good == 0 ? mqtt__store_pwrite(st->fd, hdr, ST_FILE_HDR, 0) : 0;
    if (err == 0 && st->sync != MQTT_STORE_SYNC_NEVER && fdatasync(st->fd) != 0)
        err = errno;
    return err == 0 ? MQTT_OK : mqtt__system_failure("store write", err);
}

int mqtt__store_recover(mqtt_store *st, mqtt_store_report *rep)
{
    struct stat sb;
    if (fstat(st->fd, &sb) != 0)
        return mqtt__system_failure("fstat", errno);
    size_t size = (size_t)sb.st_size, good = 0;
    int rc = scan(st, size, &good);
    if (rc != MQTT_OK)
        return rc;
    if (good < size) {
        st->counts.corruptions = 1;
        st->counts.cut_bytes = size - good;
    }
    if (good < size || good == 0) {
        rc = cut(st, good);
        if (rc != MQTT_OK)
            return rc;
    }
    st->file_end = good == 0 ? ST_FILE_HDR : good;
    st->durable = st->seq;
    if (rep != NULL) {
        *rep = (mqtt_store_report){ .outgoing = st->out.n - st->out.dead,
                                    .incoming = st->in.n,
                                    .corruptions = (size_t)st->counts.corruptions,
                                    .cut_offset = good < size ? good : 0,
                                    .cut_bytes = st->counts.cut_bytes,
                                    .file_bytes = st->file_end };
    }
    return MQTT_OK;
}

/* The record of e's add entry, from the mapping or read back from the file. */
static int build(const mqtt_store *st, const st_ent *e, mqtt_record **out)
{
    bool mapped = st->map != NULL && e->pos + e->len <= st->map_len;
    uint8_t *copy = mapped ? NULL : mqtt__malloc(e->len);
    if (!mapped && copy == NULL)
        return MQTT_ERR_NOMEM;
    int err = mapped ? 0 : mqtt__store_pread(st->fd, copy, e->len, e->pos);
    if (err != 0) {
        mqtt__free(copy);
        return mqtt__system_failure("store read", err);
    }
    const uint8_t *p = mapped ? (const uint8_t *)st->map + e->pos : copy;
    const uint8_t *b = p + ST_ENT_HDR, *text = b + ST_MSG_FIXED;
    size_t tl = st_get16(b + 13), xl = st_get32(b + 15), pl = st_get32(b + 19);
    mqtt_bytes topic = { text, tl }, props = { text + tl, xl }, payload = { text + tl + xl, pl };
    int rc = mqtt__record_publish(topic, payload, e->qos, (e->flags & ST_F_RETAIN) != 0, props, out);
    mqtt__free(copy);
    if (rc != MQTT_OK)
        return rc;
    (*out)->packet_id = e->id;
    (*out)->state = e->state;
    (*out)->dup = (e->flags & ST_F_DUP) != 0;
    return MQTT_OK;
}

int mqtt__store_next(mqtt_store *st, mqtt_store_item *it)
{
    if (st == NULL || it == NULL)
        return MQTT_ERR_INVAL;
    *it = (mqtt_store_item){ NULL, 0, false };
    if (st->touched)
        return MQTT_ERR_STATE;
    while (st->it_out < st->out.n && (st->out.v[st->it_out].flags & ST_F_DEAD))
        st->it_out++;
    bool incoming = st->it_out >= st->out.n;
    if (incoming && st->it_in >= st->in.n) {
        mqtt__store_unmap(st);
        return MQTT_OK;
    }
    const st_ent *e = incoming ? &st->in.v[st->it_in] : &st->out.v[st->it_out];
    int rc = build(st, e, &it->rec);
    if (rc != MQTT_OK)
        return rc;
    it->key = incoming ? 0 : e->key;
    it->incoming = incoming;
    if (incoming)
        st->it_in++;
    else
        st->it_out++;
    return MQTT_OK;
}
