/*
 * What the application asks of the connection (connect, connect_async,
 * reconnect, disconnect, the reconnect hook): it posts a request under the
 * client's lock and wakes the loop, which does the work (link.c). A blocking
 * caller waits on the condition variable for the outcome.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "client_internal.h"

/* ---- application side ---------------------------------------------- */

/* A request for the loop, which also ends an open under way. */
static void post(mqtt_client *c)
{
    mqtt__wake(c);
}

static int store_options(mqtt_client *c, const mqtt_connect_options *user)
{
    mqtt_connect_options full; /* read within the caller's struct_size, checked (args.c) */
    int rc = mqtt__connect_options_read(&full, user);
    if (rc != MQTT_OK)
        return rc;
    const mqtt_connect_options *o = &full;
    rc = mqtt__servers_set(&c->sh.srv, o);
    if (rc != MQTT_OK)
        return rc;
    mqtt_tls_config *old = c->sh.conn.tls;
    c->sh.conn = *o;
    /* The caller's strings are gone after the call: srv holds the copies. */
    c->sh.conn.host = NULL;
    c->sh.conn.servers = NULL;
    c->sh.conn.proxy = NULL;
    c->sh.conn.ws_headers = NULL;
    c->sh.conn.tls = mqtt_tls_config_ref(o->tls);
    mqtt_tls_config_unref(old);
    return MQTT_OK;
}

/* Posts a connect request with mu held; returns the request's sequence number. */
static int request_connect(mqtt_client *c, bool async, uint64_t *seq)
{
    c->sh.request = REQ_CONNECT;
    c->sh.state = ST_CONNECTING; /* visible at once: mqtt.run() must wait for it */
    c->sh.async_attempt = async;
    c->sh.user_disconnected = false;
    c->sh.retry_attempt = 0; /* the application starts over: so does the back-off */
    c->sh.srv.round_tries = 0;
    *seq = ++c->sh.connect_seq;
    return MQTT_OK;
}

static int wait_result(mqtt_client *c, uint64_t seq, mqtt_connect_result *res)
{
    pthread_mutex_lock(&c->mu);
    while (c->sh.result_seq < seq)
        pthread_cond_wait(&c->cv, &c->mu);
    *res = c->sh.result;
    pthread_mutex_unlock(&c->mu);
    return res->status;
}

static void fail(mqtt_connect_result *res, int status, const char *text)
{
    res->status = status;
    res->return_code = -1;
    res->session_present = false;
    snprintf(res->message, sizeof res->message, "%s", text);
}

static int connect_common(mqtt_client *c, const mqtt_connect_options *o, bool async,
                          mqtt_connect_result *res)
{
    mqtt_connect_result scratch;
    if (!res)
        res = &scratch;
    if (mqtt__foreign(c)) {
        fail(res, MQTT_ERR_STATE, "the client belongs to another process");
        return MQTT_ERR_STATE;
    }
    pthread_mutex_lock(&c->mu);
    int rc = MQTT_OK;
    /* Two cases give MQTT_ERR_STATE, one before and one after options are stored. */
    if (c->sh.state == ST_CONNECTED || c->sh.state == ST_DISCONNECTING)
        rc = MQTT_ERR_STATE; /* NOLINT(bugprone-branch-clone) */
    else if (o)
        rc = store_options(c, o);
    else if (!c->sh.srv.count)
        rc = MQTT_ERR_STATE;
    uint64_t seq = 0;
    if (rc == MQTT_OK)
        rc = request_connect(c, async, &seq);
    pthread_mutex_unlock(&c->mu);
    if (rc != MQTT_OK) {
        const char *why = mqtt_strerror(rc);
        if (rc == MQTT_ERR_STATE)
            why = "the client is already connected or was never connected";
        else if (rc == MQTT_ERR_INVAL)
            why = mqtt_last_error();
        else if (rc == MQTT_ERR_SYSTEM)
            why = mqtt_system_error();
        fail(res, rc, why);
        return rc;
    }
    post(c);
    if (async)
        return MQTT_OK;
    return wait_result(c, seq, res);
}

int mqtt_client_connect(mqtt_client *c, const mqtt_connect_options *o, mqtt_connect_result *res)
{
    if (!o) {
        fail(res, MQTT_ERR_INVAL, "no connect options");
        return MQTT_ERR_INVAL;
    }
    return connect_common(c, o, false, res);
}

int mqtt_client_connect_async(mqtt_client *c, const mqtt_connect_options *o)
{
    if (!o)
        return MQTT_ERR_INVAL;
    return connect_common(c, o, true, NULL);
}

size_t mqtt_client_server(mqtt_client *c, char *buf, size_t len)
{
    size_t n = 0;
    if (!buf || len == 0)
        return 0;
    buf[0] = '\0';
    if (mqtt__foreign(c))
        return 0;
    pthread_mutex_lock(&c->mu);
    const char *uri = mqtt__servers_current(&c->sh.srv);
    if (uri) {
        n = strlen(uri);
        snprintf(buf, len, "%s", uri);
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

int mqtt_client_reconnect(mqtt_client *c, mqtt_connect_result *res)
{
    if (!mqtt__foreign(c) && mqtt_client_is_connected(c)) {
        fail(res, MQTT_OK, "already connected");
        res->return_code = 0;
        return MQTT_OK;
    }
    return connect_common(c, NULL, false, res);
}

void mqtt_client_set_auto_reconnect(mqtt_client *c, bool on)
{
    if (mqtt__foreign(c))
        return;
    pthread_mutex_lock(&c->mu);
    c->sh.auto_reconnect = on;
    bool kick = on && c->set.opt.reconnect && c->sh.state == ST_IDLE && c->sh.srv.count &&
                !c->sh.user_disconnected && c->sh.request == REQ_NONE;
    if (kick)
        mqtt__schedule_retry(c, 0);
    pthread_mutex_unlock(&c->mu);
    if (kick)
        mqtt__wake(c);
}

void mqtt_client_set_reconnect_hook(mqtt_client *c, bool on)
{
    if (mqtt__foreign(c))
        return;
    pthread_mutex_lock(&c->mu);
    c->sh.hook = on;
    if (!on)
        c->sh.proceed = true;
    pthread_mutex_unlock(&c->mu);
    post(c);
}

void mqtt_client_proceed(mqtt_client *c)
{
    if (mqtt__foreign(c))
        return;
    pthread_mutex_lock(&c->mu);
    c->sh.proceed = true;
    pthread_mutex_unlock(&c->mu);
    mqtt__wake(c);
}

/* Waits until the loop has flushed, sent DISCONNECT and closed (within
 * disconnect_timeout), or dropped the attempt under way. */
int mqtt__disconnect(mqtt_client *c)
{
    if (mqtt__foreign(c))
        return MQTT_ERR_STATE;
    pthread_mutex_lock(&c->mu);
    c->sh.user_disconnected = true;
    bool busy = c->sh.state != ST_IDLE || c->sh.request != REQ_NONE;
    if (busy)
        c->sh.request = REQ_DISCONNECT;
    pthread_mutex_unlock(&c->mu);
    if (!busy)
        return MQTT_OK;
    post(c);
    pthread_mutex_lock(&c->mu);
    while (c->sh.state != ST_IDLE || c->sh.request != REQ_NONE) {
        c->sh.idle_wanted = true;
        pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return MQTT_OK;
}
