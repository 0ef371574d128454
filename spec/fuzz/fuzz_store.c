/*
 * Fuzz target: recovering a store from arbitrary file bytes. The first
 * byte chooses how the rest becomes the log: as it is (raw bytes), or as a
 * script of entries [type, body length, body...] that this target frames
 * with a valid header, sequence numbers and checksums (some bits of the
 * type byte spoil one of them), so the fuzzer reaches the meaning of
 * entries and not only their framing. Recovery must hand out every record
 * it counted, in key order; the cut store must take a change, compact and
 * reopen undamaged with exactly one record more.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "store_internal.h"

static char dir[64];
static char path[128];

static void remove_dir(void)
{
    static const char *const files[] = { "log", "lock", "tmp" };
    char p[160];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/zmqtt-66.%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void make_dir(void)
{
    if (dir[0] != '\0')
        return;
    /* tmpfs when there is one: ext4 writes back on every rename over a file. */
    snprintf(dir, sizeof dir, "%s/zmqtt-fuzz-store-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    FZ_CHECK(mkdtemp(dir) != NULL);
    /* The client id "f" is 66 in hex. */
    snprintf(path, sizeof path, "%s/zmqtt-66.log", dir);
    atexit(remove_dir);
}

/* Frames the script into entries with valid checksums. */
static size_t frame(const uint8_t *p, size_t n, uint8_t *out, size_t cap)
{
    size_t len = ST_FILE_HDR;
    mqtt__store_header(out);
    uint64_t seq = 0;
    while (n >= 2) {
        uint8_t type = p[0];
        size_t bl = p[1];
        p += 2;
        n -= 2;
        if (bl > n)
            bl = n;
        if (len + ST_ENT_HDR + bl > cap)
            break;
        uint8_t *e = out + len;
        seq += (type & 0x40u) ? 0u : 1u; /* bit 6: a repeated sequence number */
        st_put32(e + 4, (uint32_t)bl);
        st_put64(e + 8, seq);
        e[16] = type & 0x0Fu;
        memcpy(e + ST_ENT_HDR, p, bl);
        /* An out add's key must be its seq: put it there unless bit 5 says not. */
        if ((type & 0x0Fu) == ST_OUT_ADD && bl >= 8 && !(type & 0x20u))
            st_put64(e + ST_ENT_HDR, seq);
        st_put32(e, mqtt__crc32c(0, e + 4, ST_ENT_HDR - 4u + bl));
        if (type & 0x80u)
            e[0] ^= 1u; /* bit 7: a bad checksum */
        len += ST_ENT_HDR + bl;
        p += bl;
        n -= bl;
    }
    return len;
}

static void write_log(const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FZ_CHECK(fd >= 0);
    FZ_CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
    close(fd);
}

static mqtt_store *reopen(mqtt_store_report *rep)
{
    mqtt_store *st = NULL;
    char err[256];
    int rc = mqtt__store_open(dir, (mqtt_bytes){ (const uint8_t *)"f", 1 },
                              MQTT_STORE_SYNC_NEVER, &st, rep, err, sizeof err);
    if (rc != MQTT_OK)
        fprintf(stderr, "open: %s\n", err);
    FZ_CHECK(rc == MQTT_OK && st != NULL);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static uint8_t log[1 << 16];
    make_dir();
    if (len > 0 && (data[0] & 1u))
        write_log(log, frame(data + 1, len - 1, log, sizeof log));
    else
        write_log(len > 0 ? data + 1 : data, len > 0 ? len - 1 : 0);
    mqtt_store_report rep;
    mqtt_store *st = reopen(&rep);
    size_t out = 0, in = 0;
    uint64_t last_key = 0;
    mqtt_store_item it;
    while (mqtt__store_next(st, &it) == MQTT_OK && it.rec != NULL) {
        FZ_CHECK(it.incoming ? (in++, it.key == 0) : (out++, it.key > last_key && in == 0));
        if (!it.incoming)
            last_key = it.key;
        mqtt__record_free(it.rec);
    }
    FZ_CHECK(out == rep.outgoing && in == rep.incoming);
    mqtt_record *r;
    FZ_CHECK(mqtt__record_publish((mqtt_bytes){ (const uint8_t *)"t", 1 },
                                  (mqtt_bytes){ NULL, 0 }, 0, false, (mqtt_bytes){ NULL, 0 },
                                  &r) == MQTT_OK);
    uint64_t key;
    FZ_CHECK(mqtt__store_out_add(st, r, &key) == MQTT_OK && key > last_key);
    mqtt__record_free(r);
    FZ_CHECK(mqtt__store_flush(st, 0) == MQTT_OK && mqtt__store_compact(st) == MQTT_OK);
    FZ_CHECK(mqtt__store_close(st) == MQTT_OK);
    st = reopen(&rep);
    FZ_CHECK(rep.corruptions == 0 && rep.outgoing == out + 1 && rep.incoming == in);
    mqtt__store_close(st);
    return 0;
}
