/*
 * A store's life: the directory made when missing, the files named after
 * the client id, the exclusive lock (flock on a lock file holding the
 * owner's pid, so a second opener, in this process or another, is refused
 * by name), recovery at open, the last flush at close, and clearing.
 * A child of fork() gets none of it: the lock belongs to the open file
 * description, which a child's copy of the descriptor would keep alive after
 * the parent closed its own, so the child closes its copies at the fork
 * (close-on-exec covers a posix_spawn, which runs no fork handlers).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "store_internal.h"

#define MAX_ID_BYTES 100u /* hex-encoded into a file name: 200 of NAME_MAX's 255 */

/* The stores open in this process, and the lock fork() takes: held while a
 * lock file is open but not yet listed, so no fork copies it unseen. */
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
static mqtt_store *open_list;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
    pthread_mutex_lock(&open_mu);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&open_mu);
}

/* The parent's stores are not the child's: it closes its copies (which
 * releases nothing, the parent's descriptors hold the lock) and may neither
 * write the log nor release the lock later. */
static void fork_child(void)
{
    for (mqtt_store *st = open_list; st != NULL; st = st->next_open) {
        if (st->fd >= 0)
            close(st->fd);
        if (st->lock_fd >= 0)
            close(st->lock_fd);
        st->fd = st->lock_fd = -1;
        st->orphan = true;
    }
    open_list = NULL;
    pthread_mutex_unlock(&open_mu);
}

static void watch_forks(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Takes st off the list of open stores; open_mu held. */
static void unlist(mqtt_store *st)
{
    for (mqtt_store **at = &open_list; *at != NULL; at = &(*at)->next_open)
        if (*at == st) {
            *at = st->next_open;
            break;
        }
    st->next_open = NULL;
}

void mqtt__store_switch_fd(mqtt_store *st, int fd)
{
    pthread_mutex_lock(&open_mu);
    if (st->fd >= 0)
        close(st->fd);
    st->fd = fd;
    pthread_mutex_unlock(&open_mu);
}

/* Writes why into err (errlen bytes, may be NULL), then ": " and the text of
 * the system error e unless it is 0; returns status. */
static int fail(char *err, size_t errlen, int status, int e, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(char *err, size_t errlen, int status, int e, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return status;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    size_t n = strlen(err);
    if (e != 0 && n < errlen) {
        char eb[128];
        (void)snprintf(err + n, errlen - n, ": %s", strerror_r(e, eb, sizeof eb));
    }
    return status;
}

/* dir/zmqtt-<client id in hex><suffix>: any id, no path tricks. NULL on NOMEM. */
static char *file_path(const char *dir, mqtt_bytes id, const char *suffix)
{
    size_t dl = strlen(dir), n = dl + 1u + 6u + 2u * id.len + strlen(suffix) + 1u;
    char *p = mqtt__malloc(n);
    if (p == NULL)
        return NULL;
    char *at = p + snprintf(p, n, "%s/zmqtt-", dir);
    for (size_t i = 0; i < id.len; i++)
        at += snprintf(at, 3, "%02x", id.data[i]);
    (void)snprintf(at, n - (size_t)(at - p), "%s", suffix);
    return p;
}

/* mkdir -p dir (0700: it holds messages); 0 or errno. */
static int make_dirs(const char *dir)
{
    char *p = mqtt__strdup(dir);
    if (p == NULL)
        return ENOMEM;
    int err = 0;
    for (char *s = p + 1; err == 0; s++) {
        bool end = *s == '\0';
        if (!end && *s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            err = errno;
        if (end)
            break;
        *s = '/';
    }
    mqtt__free(p);
    struct stat sb;
    if (err == 0 && stat(dir, &sb) != 0)
        err = errno;
    else if (err == 0 && !S_ISDIR(sb.st_mode))
        err = ENOTDIR;
    return err;
}

/* Opens and locks the lock file, writing our pid in it; MQTT_ERR_STATE naming the holder. */
static int take_lock(const char *path, int *fd_out, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(err, errlen, MQTT_ERR_SYSTEM, errno, "cannot open %s", path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        long holder = 0;
        if (e == EWOULDBLOCK && pread(fd, pid, sizeof pid - 1u, 0) > 0)
            holder = strtol(pid, NULL, 10);
        close(fd);
        if (holder > 0)
            return fail(err, errlen, MQTT_ERR_STATE, 0, "store %s is in use by process %ld",
                        path, holder);
        return fail(err, errlen, e == EWOULDBLOCK ? MQTT_ERR_STATE : MQTT_ERR_SYSTEM, e,
                    "store %s is in use", path);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || mqtt__store_pwrite(fd, (const uint8_t *)pid, (size_t)n, 0)) {
        int e = errno;
        close(fd);
        return fail(err, errlen, MQTT_ERR_SYSTEM, e, "cannot write %s", path);
    }
    *fd_out = fd;
    return MQTT_OK;
}

/* The checks every entry point shares, then the directory, made if missing. */
static int check_dir(const char *dir, mqtt_bytes id, bool make, char *err, size_t errlen)
{
    if (dir == NULL || dir[0] == '\0')
        return fail(err, errlen, MQTT_ERR_INVAL, 0, "store: no directory given");
    if (id.len > MAX_ID_BYTES || (id.len > 0 && id.data == NULL))
        return fail(err, errlen, MQTT_ERR_INVAL, 0,
                    "store: the client id must be at most %u bytes", MAX_ID_BYTES);
    int e = make ? make_dirs(dir) : 0;
    if (e == ENOMEM)
        return fail(err, errlen, MQTT_ERR_NOMEM, 0, "store: out of memory");
    if (e != 0)
        return fail(err, errlen, MQTT_ERR_SYSTEM, e, "cannot create store directory %s", dir);
    if (make && access(dir, W_OK | X_OK) != 0)
        return fail(err, errlen, MQTT_ERR_SYSTEM, errno, "store directory %s is not writable",
                    dir);
    return MQTT_OK;
}

static void store_free(mqtt_store *st)
{
    mqtt__store_unmap(st);
    pthread_mutex_lock(&open_mu);
    unlist(st);
    if (st->fd >= 0)
        close(st->fd);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* releases the lock */
    pthread_mutex_unlock(&open_mu);
    mqtt__free(st->out.v);
    mqtt__free(st->in.v);
    mqtt__free(st->pend);
    mqtt__free(st->spare);
    mqtt__free(st->retry);
    mqtt__free(st->dir);
    mqtt__free(st->path);
    mqtt__free(st->tmp_path);
    mqtt__free(st);
}

/* Paths, lock, log file, recovery. */
static int store_start(mqtt_store *st, const char *dir, mqtt_bytes id, mqtt_store_report *rep,
                       char *err, size_t errlen)
{
    char *lock = file_path(dir, id, ".lock");
    st->dir = mqtt__strdup(dir);
    st->path = file_path(dir, id, ".log");
    st->tmp_path = file_path(dir, id, ".tmp");
    int rc = lock && st->dir && st->path && st->tmp_path ? MQTT_OK : MQTT_ERR_NOMEM;
    pthread_mutex_lock(&open_mu);
    if (rc == MQTT_OK)
        rc = take_lock(lock, &st->lock_fd, err, errlen);
    else
        (void)fail(err, errlen, rc, 0, "store: out of memory");
    mqtt__free(lock);
    if (rc == MQTT_OK) {
        st->next_open = open_list;
        open_list = st;
        st->fd = open(st->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (st->fd < 0)
            rc = fail(err, errlen, MQTT_ERR_SYSTEM, errno, "cannot open %s", st->path);
    }
    pthread_mutex_unlock(&open_mu);
    if (rc != MQTT_OK)
        return rc;
    rc = mqtt__store_recover(st, rep);
    if (rc == MQTT_ERR_NOMEM)
        return fail(err, errlen, rc, 0, "store %s: out of memory", st->path);
    if (rc != MQTT_OK)
        return fail(err, errlen, rc, 0, "cannot recover store %s: %s", st->path,
                    mqtt_system_error());
    (void)unlink(st->tmp_path); /* a compaction that a crash interrupted */
    int e = st->sync == MQTT_STORE_SYNC_NEVER ? 0 : mqtt__store_sync_dir(dir);
    if (e != 0)
        return fail(err, errlen, MQTT_ERR_SYSTEM, e, "cannot sync store directory %s", dir);
    return MQTT_OK;
}

int mqtt__store_open(const char *dir, mqtt_bytes client_id, mqtt_store_sync sync,
                     mqtt_store **out, mqtt_store_report *rep, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL || (unsigned)sync > MQTT_STORE_SYNC_NEVER)
        return fail(err, errlen, MQTT_ERR_INVAL, 0, "store: bad arguments");
    *out = NULL;
    pthread_once(&fork_once, watch_forks);
    int rc = check_dir(dir, client_id, true, err, errlen);
    if (rc != MQTT_OK)
        return rc;
    mqtt_store *st = mqtt__calloc(1, sizeof *st);
    if (st == NULL)
        return fail(err, errlen, MQTT_ERR_NOMEM, 0, "store: out of memory");
    st->fd = st->lock_fd = -1;
    st->sync = sync;
    rc = store_start(st, dir, client_id, rep, err, errlen);
    if (rc != MQTT_OK) {
        store_free(st);
        return rc;
    }
    *out = st;
    return MQTT_OK;
}

int mqtt__store_close(mqtt_store *st)
{
    if (st == NULL)
        return MQTT_OK;
    int rc = MQTT_OK;
    mqtt_store_flush f;
    /* flush_begin refuses a child's copy of its parent's store: nothing written. */
    while (rc == MQTT_OK && !st->flushing && mqtt__store_flush_begin(st, &f)) {
        mqtt__store_flush_write(&f);
        rc = mqtt__store_flush_end(st, &f, 0);
    }
    store_free(st);
    return rc;
}

/* Removes path; ENOENT is success. */
static int remove_file(const char *path, char *err, size_t errlen)
{
    if (unlink(path) == 0 || errno == ENOENT)
        return MQTT_OK;
    return fail(err, errlen, MQTT_ERR_SYSTEM, errno, "cannot remove %s", path);
}

int mqtt__store_clear(const char *dir, mqtt_bytes client_id, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    int rc = check_dir(dir, client_id, false, err, errlen);
    if (rc != MQTT_OK)
        return rc;
    struct stat sb;
    if (stat(dir, &sb) != 0 && errno == ENOENT)
        return MQTT_OK; /* no directory, no store */
    char *lock = file_path(dir, client_id, ".lock");
    char *log = file_path(dir, client_id, ".log");
    char *tmp = file_path(dir, client_id, ".tmp");
    int fd = -1;
    pthread_once(&fork_once, watch_forks);
    pthread_mutex_lock(&open_mu); /* a fork meanwhile would keep the lock */
    if (lock == NULL || log == NULL || tmp == NULL) {
        rc = fail(err, errlen, MQTT_ERR_NOMEM, 0, "store: out of memory");
    } else {
        rc = take_lock(lock, &fd, err, errlen);
        if (rc == MQTT_OK)
            rc = remove_file(log, err, errlen);
        if (rc == MQTT_OK)
            rc = remove_file(tmp, err, errlen);
        if (rc == MQTT_OK)
            rc = remove_file(lock, err, errlen);
    }
    if (fd >= 0)
        close(fd);
    pthread_mutex_unlock(&open_mu);
    mqtt__free(lock);
    mqtt__free(log);
    mqtt__free(tmp);
    return rc;
}

void mqtt__store_stats(const mqtt_store *st, mqtt_store_stats *s)
{
    if (s == NULL)
        return;
    memset(s, 0, sizeof *s);
    if (st == NULL)
        return;
    *s = st->counts;
    s->outgoing = st->out.n - st->out.dead;
    s->incoming = st->in.n;
    s->file_bytes = st->file_end;
    s->live_bytes = st->live_bytes;
    s->pending_bytes = st->pend_len + st->job_len;
}
