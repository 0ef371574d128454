/*
 * bench/mosq_bench.c: the libmosquitto baseline of the zmqtt benchmarks.
 *
 * Written the way libmosquitto's users write it: library defaults (MQTT
 * 3.1.1, its default in-flight window and unbounded queue), one network
 * thread per client started with mosquitto_loop_start(), callbacks in C, the
 * application thread blocking on a condition variable until a callback says
 * the work is done. The scenarios mirror bench/zmqtt_bench.lua:
 *
 *   pub     HOST PORT QOS COUNT SIZE   publish COUNT messages, then a QoS 1
 *                                      "fence"; done when every callback
 *                                      (QoS 0 written, QoS 1/2 acked) came
 *   sub     HOST PORT COUNT TOPIC      subscribe at QoS 0, count COUNT
 *                                      messages in the on_message callback
 *   rtt     HOST PORT QOS COUNT SIZE WARMUP NODELAY   publish to a topic we
 *                                      are subscribed to, wait for it, repeat;
 *                                      NODELAY 1 sets MOSQ_OPT_TCP_NODELAY
 *   idle    HOST PORT KEEPALIVE SECONDS       connect, say "ready", sleep
 *   clients HOST PORT N HOLD           N connected clients in this process
 *
 * Prints one line "result key=value ..." on stdout; times are seconds, CPU
 * is the sum over this process's threads (the schedstat of each /proc/self/task).
 * MOSQ_BENCH_PROTOCOL=5 in the environment makes every client speak MQTT 5.0
 * (MOSQ_OPT_PROTOCOL_VERSION), otherwise the default 3.1.1.
 */
#include <dirent.h>
#include <errno.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_LIMIT 300.0   /* seconds any wait may take before we give up */

typedef struct state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int connected;    /* clients whose CONNACK accepted */
    atomic_int connect_fail; /* refusals */
    atomic_uint_fast64_t published, received;
    atomic_uint_fast64_t target; /* published or received count that ends a wait */
    bool subscribed;
} state;

static state st;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

_Noreturn static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "mosq_bench: %s: %s\n", what, detail);
    exit(1);
}

/* CPU seconds used so far by every thread of this process. */
static double cpu_seconds(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        fail("opendir", strerror(errno));
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        FILE *f = fopen(path, "r");
        unsigned long long ns = 0;
        if (f) {
            if (fscanf(f, "%llu", &ns) != 1)
                ns = 0;
            fclose(f);
        }
        total += (double)ns / 1e9;
    }
    closedir(d);
    return total;
}

/* A number field of /proc/self/status ("VmRSS: %ld kB", "Threads: %ld"); -1 if absent. */
static long status_field(const char *format)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, format, &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

/* VmRSS of this process in KiB. */
static long rss_kib(void)
{
    return status_field("VmRSS: %ld kB");
}

/* Waits up to limit seconds for done(); every callback that may make it true signals cv. */
static bool wait_until(bool (*done)(void), double limit)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)limit;
    pthread_mutex_lock(&st.mu);
    bool ok = done();
    while (!ok && pthread_cond_timedwait(&st.cv, &st.mu, &deadline) != ETIMEDOUT)
        ok = done();
    ok = ok || done();
    pthread_mutex_unlock(&st.mu);
    return ok;
}

static void wait_for(bool (*done)(void), const char *what)
{
    if (!wait_until(done, WAIT_LIMIT))
        fail("timed out waiting for", what);
}

static void wake(void)
{
    pthread_mutex_lock(&st.mu);
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
}

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    (void)obj;
    if (rc == 0)
        atomic_fetch_add(&st.connected, 1);
    else
        atomic_fetch_add(&st.connect_fail, 1);
    wake();
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    (void)obj;
    (void)rc;
    atomic_fetch_sub(&st.connected, 1);
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    (void)obj;
    (void)mid;
    if (atomic_fetch_add(&st.published, 1) + 1 == st.target)
        wake();
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    (void)obj;
    (void)msg;
    if (atomic_fetch_add(&st.received, 1) + 1 == st.target)
        wake();
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted)
{
    (void)m;
    (void)obj;
    (void)mid;
    (void)n;
    (void)granted;
    pthread_mutex_lock(&st.mu);
    st.subscribed = true;
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
}

static int want_connected = 1;
static bool all_connected(void)
{
    return atomic_load(&st.connected) + atomic_load(&st.connect_fail) >= want_connected;
}
static bool all_published(void)
{
    return atomic_load(&st.published) >= st.target;
}
static bool all_received(void)
{
    return atomic_load(&st.received) >= st.target;
}
static bool is_subscribed(void)
{
    return st.subscribed;
}

/* New client, connected and running its own network thread; NULL plus *err on failure. */
static int tcp_nodelay; /* rtt: MOSQ_OPT_TCP_NODELAY, off in libmosquitto's defaults */
static int protocol = MQTT_PROTOCOL_V311;

static struct mosquitto *start_client(const char *host, int port, int keepalive, int index,
                                      const char **err)
{
    char id[64];
    snprintf(id, sizeof id, "mosq-bench-%d-%d", (int)getpid(), index);
    struct mosquitto *m = mosquitto_new(id, true, NULL);
    if (!m) {
        *err = strerror(errno);
        return NULL;
    }
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_disconnect_callback_set(m, on_disconnect);
    mosquitto_publish_callback_set(m, on_publish);
    mosquitto_message_callback_set(m, on_message);
    mosquitto_subscribe_callback_set(m, on_subscribe);
    int rc = mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, protocol);
    if (rc == MOSQ_ERR_SUCCESS && tcp_nodelay)
        rc = mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_connect(m, host, port, keepalive);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_loop_start(m);
    if (rc != MOSQ_ERR_SUCCESS) {
        *err = rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc);
        mosquitto_destroy(m);
        return NULL;
    }
    return m;
}

static struct mosquitto *start_one(const char *host, int port, int keepalive)
{
    const char *err = NULL;
    struct mosquitto *m = start_client(host, port, keepalive, 0, &err);
    if (!m)
        fail("connect", err);
    wait_for(all_connected, "CONNACK");
    if (atomic_load(&st.connect_fail))
        fail("connect", "refused");
    return m;
}

static void stop_client(struct mosquitto *m)
{
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    mosquitto_destroy(m);
}

static void subscribe(struct mosquitto *m, const char *topic, int qos)
{
    int rc = mosquitto_subscribe(m, NULL, topic, qos);
    if (rc != MOSQ_ERR_SUCCESS)
        fail("subscribe", mosquitto_strerror(rc));
}

static void publish(struct mosquitto *m, const char *topic, const char *payload, int size, int qos)
{
    int rc = mosquitto_publish(m, NULL, topic, size, payload, qos, false);
    if (rc != MOSQ_ERR_SUCCESS)
        fail("publish", mosquitto_strerror(rc));
}

static char *make_payload(int size)
{
    char *p = malloc((size_t)size + 1);
    if (!p)
        fail("malloc", "payload");
    for (int i = 0; i < size; i++)
        p[i] = (char)('a' + i % 26);
    p[size] = 0;
    return p;
}

static int run_pub(const char *host, int port, int qos, long count, int size)
{
    struct mosquitto *m = start_one(host, port, 60);
    char *payload = make_payload(size);
    st.target = (uint64_t)count + 1; /* every message's callback, then the fence's */
    double cpu0 = cpu_seconds(), t0 = now();
    for (long i = 0; i < count; i++)
        publish(m, "bench/pub", payload, size, qos);
    publish(m, "bench/pub", payload, size, 1); /* the fence */
    wait_for(all_published, "the fence PUBACK");
    double t1 = now(), cpu1 = cpu_seconds();
    printf("result count=%ld elapsed=%.6f cpu=%.6f\n", count, t1 - t0, cpu1 - cpu0);
    stop_client(m);
    free(payload);
    return 0;
}

static int run_sub(const char *host, int port, long count, const char *topic)
{
    struct mosquitto *m = start_one(host, port, 60);
    st.target = (uint64_t)count;
    double cpu0 = cpu_seconds(), t0 = now();
    subscribe(m, topic, 0);
    wait_for(all_received, "the messages");
    double t1 = now(), cpu1 = cpu_seconds();
    printf("result count=%ld elapsed=%.6f cpu=%.6f\n", count, t1 - t0, cpu1 - cpu0);
    stop_client(m);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v. */
static double percentile(const double *v, long n, double p)
{
    long k = (long)(p * (double)n + 0.999999) - 1;
    return v[k < 0 ? 0 : (k >= n ? n - 1 : k)];
}

static int run_rtt(const char *host, int port, int qos, long count, int size, long warmup)
{
    struct mosquitto *m = start_one(host, port, 60);
    char topic[64];
    snprintf(topic, sizeof topic, "bench/rtt/mosq-%d", (int)getpid());
    subscribe(m, topic, qos);
    wait_for(is_subscribed, "SUBACK");
    char *payload = make_payload(size);
    double *lat = malloc((size_t)count * sizeof *lat);
    if (!lat)
        fail("malloc", "latencies");
    double cpu0 = cpu_seconds(), t_start = now();
    for (long i = -warmup; i < count; i++) {
        if (i == 0) {
            cpu0 = cpu_seconds();
            t_start = now();
        }
        st.target = atomic_load(&st.received) + 1;
        double t0 = now();
        publish(m, topic, payload, size, qos);
        wait_for(all_received, "the message to come back");
        if (i >= 0)
            lat[i] = now() - t0;
    }
    double elapsed = now() - t_start, cpu = cpu_seconds() - cpu0;
    double sum = 0;
    for (long i = 0; i < count; i++)
        sum += lat[i];
    qsort(lat, (size_t)count, sizeof *lat, cmp_double);
    printf("result count=%ld elapsed=%.6f cpu=%.6f p50=%.9f p99=%.9f mean=%.9f max=%.9f\n", count,
           elapsed, cpu, percentile(lat, count, 0.50), percentile(lat, count, 0.99),
           sum / (double)count, lat[count - 1]);
    stop_client(m);
    free(lat);
    free(payload);
    return 0;
}

static void sleep_seconds(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int run_idle(const char *host, int port, int keepalive, double seconds)
{
    struct mosquitto *m = start_one(host, port, keepalive);
    printf("ready pid=%d\n", (int)getpid());
    fflush(stdout);
    sleep_seconds(seconds);
    printf("result connected=%d\n", atomic_load(&st.connected));
    stop_client(m);
    return 0;
}

static int run_clients(const char *host, int port, int n, double hold)
{
    long rss0 = rss_kib();
    struct mosquitto **ms = calloc((size_t)n, sizeof *ms);
    if (!ms)
        fail("calloc", "clients");
    double t0 = now();
    int started = 0;
    const char *err = NULL;
    for (; started < n; started++) {
        ms[started] = start_client(host, port, 60, started, &err);
        if (!ms[started])
            break;
    }
    if (started < n)
        fprintf(stderr, "mosq_bench: client %d of %d failed to connect: %s\n", started + 1, n,
                err);
    want_connected = started;
    double limit = 2.0 + n / 1000.0; /* loopback: every CONNACK is long there by then */
    if (!wait_until(all_connected, limit))
        fprintf(stderr, "mosq_bench: %d of %d clients had no CONNACK after %.0f s\n",
                started - atomic_load(&st.connected), n, limit);
    double connect_time = now() - t0;
    sleep_seconds(hold);
    long rss1 = rss_kib();
    int connected = atomic_load(&st.connected);
    printf("result clients=%d connected=%d connect_time=%.3f rss_kib=%ld base_kib=%ld threads=%ld\n",
           n, connected, connect_time, rss1, rss0, status_field("Threads: %ld"));
    fflush(stdout);
    for (int i = 0; i < started; i++)
        mosquitto_disconnect(ms[i]);
    for (int i = 0; i < started; i++) {
        mosquitto_loop_stop(ms[i], false);
        mosquitto_destroy(ms[i]);
    }
    free(ms);
    return connected == n ? 0 : 1;
}

_Noreturn static void usage(void)
{
    fprintf(stderr, "usage: mosq_bench pub HOST PORT QOS COUNT SIZE\n"
                    "       mosq_bench sub HOST PORT COUNT TOPIC\n"
                    "       mosq_bench rtt HOST PORT QOS COUNT SIZE WARMUP NODELAY\n"
                    "       mosq_bench idle HOST PORT KEEPALIVE SECONDS\n"
                    "       mosq_bench clients HOST PORT N HOLD_SECONDS\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        usage();
    const char *mode = argv[1], *host = argv[2];
    int port = atoi(argv[3]);
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    mosquitto_lib_init();
    const char *level = getenv("MOSQ_BENCH_PROTOCOL");
    if (level && strcmp(level, "5") == 0)
        protocol = MQTT_PROTOCOL_V5;
    else if (level && *level && strcmp(level, "4") != 0)
        fail("MOSQ_BENCH_PROTOCOL", "must be 4 or 5");
    int rc;
    if (strcmp(mode, "pub") == 0 && argc == 7)
        rc = run_pub(host, port, atoi(argv[4]), atol(argv[5]), atoi(argv[6]));
    else if (strcmp(mode, "sub") == 0 && argc == 6)
        rc = run_sub(host, port, atol(argv[4]), argv[5]);
    else if (strcmp(mode, "rtt") == 0 && argc == 9 && (tcp_nodelay = atoi(argv[8])) >= 0)
        rc = run_rtt(host, port, atoi(argv[4]), atol(argv[5]), atoi(argv[6]), atol(argv[7]));
    else if (strcmp(mode, "idle") == 0 && argc == 6)
        rc = run_idle(host, port, atoi(argv[4]), atof(argv[5]));
    else if (strcmp(mode, "clients") == 0 && argc == 6)
        rc = run_clients(host, port, atoi(argv[4]), atof(argv[5]));
    else
        usage();
    mosquitto_lib_cleanup();
    return rc;
}
