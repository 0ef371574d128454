/*
 * TLS contexts: what every TLS connection of a context shares — trust
 * anchors, client identity, PSK, ALPN, the version floor and a seeded
 * CTR-DRBG — parsed once into an immutable, reference-counted mbedtls
 * configuration that any number of clients use at once. It reads the files
 * it is given and nothing else; connections live in transport_tls.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/pkcs12.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "alloc.h"
#include "base.h"
#include "mqtt.h"
#include "tls_internal.h"

/* A context's private key and its DRBG serve many I/O threads at once:
 * mbedtls guards RSA blinding state only when built with threading. */
#if !defined(MBEDTLS_THREADING_C)
#error "zmqtt shares TLS contexts between threads: mbedtls must be built with MBEDTLS_THREADING_C"
#endif

#define MAX_FILE_BYTES ((size_t)64 * 1024 * 1024)

/* Where the usual Linux distributions keep the system's CA bundle. */
static const char *const system_bundles[] = {
    "/etc/ssl/certs/ca-certificates.crt", /* Debian, Ubuntu, Arch, Gentoo */
    "/etc/pki/tls/certs/ca-bundle.crt",   /* Fedora, RHEL */
    "/etc/ssl/ca-bundle.pem",             /* openSUSE */
    "/etc/ssl/cert.pem",                  /* Alpine, macOS */
};

struct mqtt_tls_config {
    atomic_int refs;
    uint64_t id;       /* unique: a saved session is resumed only with its own context */
    bool verify, has_cert, has_psk;
    char *server_name; /* NULL: the host given to connect */
    mbedtls_ssl_config ssl;
    mbedtls_x509_crt ca, cert;
    mbedtls_pk_context key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    pthread_mutex_t rng_mu; /* one DRBG, many handshakes in many threads */
    char **alpn;            /* NULL-terminated; mbedtls keeps the pointer */
    int *suites;            /* PSK-only cipher suites, 0-terminated, or NULL */
};

const mbedtls_ssl_config *mqtt__tls_config_info(const mqtt_tls_config *cfg,
                                                const char **server_name, uint64_t *id,
                                                bool flags[3])
{
    *server_name = cfg->server_name;
    *id = cfg->id;
    flags[0] = cfg->verify;
    flags[1] = cfg->has_cert;
    flags[2] = cfg->has_psk;
    return &cfg->ssl;
}

static void tls_options_defaults(mqtt_tls_options *o)
{
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->verify = true;
    o->min_version = 2;
}

int mqtt_tls_options_init_v(mqtt_tls_options *o, size_t size)
{
    mqtt_tls_options d;
    tls_options_defaults(&d);
    return mqtt__struct_init(o, size, &d, sizeof d, sizeof d);
}

/* ---- small helpers --------------------------------------------------- */

static void mbed_text(int ret, char *buf, size_t n)
{
    mbedtls_strerror(ret, buf, n);
}

/* "cafile '/etc/x.pem'" or "cadata": how errors name a source. */
static void label(char *out, size_t n, const char *what, const char *path)
{
    if (path)
        snprintf(out, n, "%s '%s'", what, path);
    else
        snprintf(out, n, "%s", what);
}

static size_t chain_length(const mbedtls_x509_crt *c)
{
    size_t n = 0;
    for (; c && c->raw.p; c = c->next)
        n++;
    return n;
}

/* Reads a whole file, NUL-terminated. *len counts the NUL for PEM text, as
 * mbedtls's parsers want, and not for DER, whose length must be exact. */
static int load_file(const char *path, const char *what, unsigned char **buf, size_t *len,
                     char *err, size_t errlen)
{
    char eb[128]; /* strerror_r, not strerror: several threads may load files */
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s '%s': cannot open: %s", what, path,
                 strerror_r(errno, eb, sizeof eb));
        return MQTT_ERR_INVAL;
    }
    size_t cap = 4096, n = 0;
    unsigned char *b = mqtt__malloc(cap);
    int rc = b ? MQTT_OK : MQTT_ERR_NOMEM;
    if (!b)
        snprintf(err, errlen, "%s '%s': out of memory", what, path);
    while (rc == MQTT_OK) {
        if (n + 1 == cap) {
            if (cap >= MAX_FILE_BYTES) {
                snprintf(err, errlen, "%s '%s': too large", what, path);
                rc = MQTT_ERR_INVAL;
                break;
            }
            unsigned char *nb = mqtt__realloc(b, cap * 2);
            if (!nb) {
                snprintf(err, errlen, "%s '%s': out of memory", what, path);
                rc = MQTT_ERR_NOMEM;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0 && ferror(f)) {
            snprintf(err, errlen, "%s '%s': cannot read: %s", what, path,
                     strerror_r(errno, eb, sizeof eb));
            rc = MQTT_ERR_INVAL;
        } else if (got == 0) {
            break;
        }
    }
    (void)fclose(f); /* read-only: nothing to lose */
    if (rc != MQTT_OK) {
        mqtt__free(b);
        return rc;
    }
    b[n] = '\0';
    *buf = b;
    *len = strstr((const char *)b, "-----BEGIN ") ? n + 1 : n;
    return MQTT_OK;
}

/* Copies caller text so PEM parsers get the NUL they require. */
static int copy_data(const char *data, size_t n, unsigned char **buf, size_t *len)
{
    unsigned char *b = mqtt__malloc(n + 1);
    if (!b)
        return MQTT_ERR_NOMEM;
    memcpy(b, data, n);
    b[n] = '\0';
    *buf = b;
    *len = strstr((const char *)b, "-----BEGIN ") ? n + 1 : n;
    return MQTT_OK;
}

static void free_secret(unsigned char *buf, size_t len)
{
    if (buf)
        mbedtls_platform_zeroize(buf, len);
    mqtt__free(buf);
}

/* ---- certificates and keys ------------------------------------------- */

/* Adds the certificates in buf to chain. A CA bundle may hold a few entries
 * this mbedtls cannot parse; it is usable as long as one certificate is. */
static int add_certs(mbedtls_x509_crt *chain, const unsigned char *buf, size_t len,
                     const char *name, bool tolerate_some, char *err, size_t errlen)
{
    size_t before = chain_length(chain);
    int ret = mbedtls_x509_crt_parse(chain, buf, len);
    size_t added = chain_length(chain) - before;
    if (ret == 0 || (ret > 0 && tolerate_some && added > 0))
        return MQTT_OK;
    if (ret > 0) {
        snprintf(err, errlen, "%s: %d certificate(s) could not be parsed", name, ret);
    } else {
        char why[128];
        mbed_text(ret, why, sizeof why);
        snprintf(err, errlen, "%s: not a certificate in PEM or DER (%s)", name, why);
    }
    return MQTT_ERR_INVAL;
}

/* Certificates from a file (path) or from caller text (data). */
static int load_certs(mbedtls_x509_crt *chain, const char *what, const char *path,
                      const char *data, size_t data_len, bool tolerate_some, char *err,
                      size_t errlen)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    char name[300];
    label(name, sizeof name, what, path);
    int rc = path ? load_file(path, what, &buf, &len, err, errlen)
                  : copy_data(data, data_len, &buf, &len);
    if (rc == MQTT_OK)
        rc = add_certs(chain, buf, len, name, tolerate_some, err, errlen);
    mqtt__free(buf);
    return rc;
}

static int load_capath(mqtt_tls_config *cfg, const char *dir, char *err, size_t errlen)
{
    size_t before = chain_length(&cfg->ca);
    int ret = mbedtls_x509_crt_parse_path(&cfg->ca, dir);
    if (ret < 0) {
        char why[128];
        mbed_text(ret, why, sizeof why);
        snprintf(err, errlen, "capath '%s': cannot read the directory (%s)", dir, why);
        return MQTT_ERR_INVAL;
    }
    if (chain_length(&cfg->ca) == before) {
        snprintf(err, errlen, "capath '%s': no certificate found in the directory", dir);
        return MQTT_ERR_INVAL;
    }
    return MQTT_OK;
}

/* Without any CA and with verification on, the system's bundle is the trust
 * store, as browsers and curl do; a PSK context authenticates without one. */
static int load_trust(mqtt_tls_config *cfg, const mqtt_tls_options *o, char *err,
                      size_t errlen)
{
    int rc = MQTT_OK;
    if (o->cafile)
        rc = load_certs(&cfg->ca, "cafile", o->cafile, NULL, 0, true, err, errlen);
    if (rc == MQTT_OK && o->capath)
        rc = load_capath(cfg, o->capath, err, errlen);
    if (rc == MQTT_OK && o->cadata)
        rc = load_certs(&cfg->ca, "cadata", NULL, o->cadata, o->cadata_len, true, err, errlen);
    if (rc != MQTT_OK || chain_length(&cfg->ca) > 0 || !o->verify || o->psk)
        return rc;
    for (size_t i = 0; i < sizeof system_bundles / sizeof system_bundles[0]; i++) {
        FILE *f = fopen(system_bundles[i], "rb");
        if (!f)
            continue;
        (void)fclose(f);
        return load_certs(&cfg->ca, "system CA bundle", system_bundles[i], NULL, 0, true, err,
                          errlen);
    }
    snprintf(err, errlen, "no CA to verify the broker with: give cafile, capath or cadata "
                          "(no system CA bundle was found), or verify = false");
    return MQTT_ERR_INVAL;
}

static int parse_key(mqtt_tls_config *cfg, const unsigned char *buf, size_t len,
                     const char *name, bool key_in_cert, const char *password, char *err,
                     size_t errlen)
{
    const unsigned char *pwd = (const unsigned char *)password;
    size_t pwdlen = password ? strlen(password) : 0;
    int ret = mbedtls_pk_parse_key(&cfg->key, buf, len, pwd, pwdlen);
    if (ret == 0)
        return MQTT_OK;
    char why[128];
    mbed_text(ret, why, sizeof why);
    /* A wrong password is found by a padding check that random bytes pass
     * now and then, so an encrypted PEM that fails to parse is blamed on the
     * password whatever mbedtls says next. */
    bool encrypted = strstr((const char *)buf, "ENCRYPTED") != NULL;
    bool unsupported = ret == MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE ||
                       ret == MBEDTLS_ERR_PKCS12_FEATURE_UNAVAILABLE ||
                       ret == MBEDTLS_ERR_PK_FEATURE_UNAVAILABLE;
    if (ret == MBEDTLS_ERR_PK_PASSWORD_REQUIRED || (encrypted && !password))
        snprintf(err, errlen, "%s: the private key is encrypted: give key_password", name);
    else if (unsupported)
        snprintf(err, errlen, "%s: the private key is encrypted with a scheme this mbedtls "
                              "cannot read (%s); re-encrypt it, e.g. openssl pkey "
                              "-traditional -aes256", name, why);
    else if (ret == MBEDTLS_ERR_PK_PASSWORD_MISMATCH || encrypted)
        snprintf(err, errlen, "%s: wrong key_password for the private key", name);
    else if (key_in_cert)
        snprintf(err, errlen, "%s holds no private key: give keyfile or keydata", name);
    else
        snprintf(err, errlen, "%s: not a private key in PEM or DER (%s)", name, why);
    return MQTT_ERR_INVAL;
}

/* The key comes from keyfile/keydata or, when neither is given, from the
 * certificate's own file or text (one PEM holding both is common). */
static int load_key(mqtt_tls_config *cfg, const mqtt_tls_options *o, char *err, size_t errlen)
{
    bool key_in_cert = !o->keyfile && !o->keydata;
    const char *path = key_in_cert ? o->certfile : o->keyfile;
    const char *what = key_in_cert ? (o->certfile ? "certfile" : "certdata")
                                   : (o->keyfile ? "keyfile" : "keydata");
    char name[300];
    label(name, sizeof name, what, path);
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc;
    if (path)
        rc = load_file(path, what, &buf, &len, err, errlen);
    else if (key_in_cert)
        rc = copy_data(o->certdata, o->certdata_len, &buf, &len);
    else
        rc = copy_data(o->keydata, o->keydata_len, &buf, &len);
    if (rc == MQTT_OK)
        rc = parse_key(cfg, buf, len, name, key_in_cert, o->key_password, err, errlen);
    free_secret(buf, len);
    if (rc == MQTT_OK && mbedtls_pk_check_pair(&cfg->cert.pk, &cfg->key) != 0) {
        snprintf(err, errlen, "%s does not belong to the certificate in %s%s%s", name,
                 o->certfile ? "certfile '" : "certdata", o->certfile ? o->certfile : "",
                 o->certfile ? "'" : "");
        rc = MQTT_ERR_INVAL;
    }
    return rc;
}

static int load_identity(mqtt_tls_config *cfg, const mqtt_tls_options *o, char *err,
                         size_t errlen)
{
    if (!o->certfile && !o->certdata)
        return MQTT_OK;
    int rc = load_certs(&cfg->cert, o->certfile ? "certfile" : "certdata", o->certfile,
                        o->certdata, o->certdata_len, false, err, errlen);
    if (rc == MQTT_OK)
        rc = load_key(cfg, o, err, errlen);
    if (rc == MQTT_OK && mbedtls_ssl_conf_own_cert(&cfg->ssl, &cfg->cert, &cfg->key) != 0) {
        snprintf(err, errlen, "out of memory while setting up the client certificate");
        rc = MQTT_ERR_NOMEM;
    }
    cfg->has_cert = rc == MQTT_OK;
    return rc;
}

/* ---- PSK, ALPN, name ------------------------------------------------- */

static bool psk_exchange(const mbedtls_ssl_ciphersuite_t *info)
{
    return info && (info->key_exchange == MBEDTLS_KEY_EXCHANGE_PSK ||
                    info->key_exchange == MBEDTLS_KEY_EXCHANGE_DHE_PSK ||
                    info->key_exchange == MBEDTLS_KEY_EXCHANGE_ECDHE_PSK);
}

/* A PSK context offers only suites the key alone authenticates: a broker
 * picking a certificate suite would need a CA the context may not have. */
static int setup_psk(mqtt_tls_config *cfg, const mqtt_tls_options *o, char *err, size_t errlen)
{
    if (!o->psk)
        return MQTT_OK;
    int ret = mbedtls_ssl_conf_psk(&cfg->ssl, o->psk, o->psk_len,
                                   (const unsigned char *)o->psk_identity,
                                   strlen(o->psk_identity));
    if (ret != 0) {
        char why[128];
        mbed_text(ret, why, sizeof why);
        snprintf(err, errlen, "psk: not accepted by mbedtls (%s)", why);
        return ret == MBEDTLS_ERR_SSL_ALLOC_FAILED ? MQTT_ERR_NOMEM : MQTT_ERR_INVAL;
    }
    const int *all = mbedtls_ssl_list_ciphersuites();
    size_t n = 0;
    while (all[n])
        n++;
    cfg->suites = mqtt__calloc(n + 1, sizeof *cfg->suites);
    if (!cfg->suites)
        return MQTT_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (psk_exchange(mbedtls_ssl_ciphersuite_from_id(all[i])))
            cfg->suites[k++] = all[i];
    if (k == 0) {
        snprintf(err, errlen, "psk: this mbedtls was built without PSK cipher suites");
        return MQTT_ERR_INVAL;
    }
    mbedtls_ssl_conf_ciphersuites(&cfg->ssl, cfg->suites);
    cfg->has_psk = true;
    return MQTT_OK;
}

static int setup_alpn(mqtt_tls_config *cfg, const mqtt_tls_options *o, char *err,
                      size_t errlen)
{
    if (o->alpn_count == 0)
        return MQTT_OK;
    cfg->alpn = mqtt__calloc(o->alpn_count + 1, sizeof *cfg->alpn);
    if (!cfg->alpn)
        return MQTT_ERR_NOMEM;
    for (size_t i = 0; i < o->alpn_count; i++) {
        size_t len = o->alpn[i] ? strlen(o->alpn[i]) : 0;
        if (len == 0 || len > 255) {
            snprintf(err, errlen, "alpn: protocol name %zu must be 1 to 255 bytes", i + 1);
            return MQTT_ERR_INVAL;
        }
        cfg->alpn[i] = mqtt__strdup(o->alpn[i]);
        if (!cfg->alpn[i])
            return MQTT_ERR_NOMEM;
    }
    if (mbedtls_ssl_conf_alpn_protocols(&cfg->ssl, (const char **)cfg->alpn) != 0) {
        snprintf(err, errlen, "alpn: the protocol list is too long");
        return MQTT_ERR_INVAL;
    }
    return MQTT_OK;
}

/* Checks what needs no file: contradictions, sizes, unsupported versions. */
static int validate(const mqtt_tls_options *o, char *err, size_t errlen)
{
    const char *why = NULL;
    if (o->min_version == 3) {
        snprintf(err, errlen, "min_version 'tls1.3': this mbedtls (%s) does not support TLS 1.3",
                 MBEDTLS_VERSION_STRING);
        return MQTT_ERR_INVAL;
    }
    if (o->min_version != 2)
        why = "min_version must be 'tls1.2' or 'tls1.3'";
    else if (o->certfile && o->certdata)
        why = "give certfile or certdata, not both";
    else if (o->keyfile && o->keydata)
        why = "give keyfile or keydata, not both";
    else if ((o->keyfile || o->keydata) && !o->certfile && !o->certdata)
        why = "a private key (keyfile, keydata) needs its certificate (certfile, certdata)";
    else if (o->key_password && !o->certfile && !o->certdata)
        why = "key_password is given but no client certificate and key are";
    else if (!o->psk != !o->psk_identity)
        why = "psk and psk_identity go together";
    else if (o->psk_identity && !o->psk_identity[0])
        why = "psk_identity must not be empty";
    else if (o->server_name && !o->server_name[0])
        why = "server_name must not be empty";
    else if (o->alpn_count && !o->alpn)
        why = "alpn: no protocol list";
    if (!why && o->psk && (o->psk_len == 0 || o->psk_len > MBEDTLS_PSK_MAX_LEN)) {
        snprintf(err, errlen, "psk must be 1 to %d bytes (2 to %d hex digits)",
                 MBEDTLS_PSK_MAX_LEN, 2 * MBEDTLS_PSK_MAX_LEN);
        return MQTT_ERR_INVAL;
    }
    if (why)
        snprintf(err, errlen, "%s", why);
    return why ? MQTT_ERR_INVAL : MQTT_OK;
}

/* ---- randomness and the mbedtls configuration ------------------------ */

/* The DRBG is shared by every handshake of the context, in any thread. */
static int locked_random(void *p, unsigned char *out, size_t len)
{
    mqtt_tls_config *cfg = p;
    pthread_mutex_lock(&cfg->rng_mu);
    int ret = mbedtls_ctr_drbg_random(&cfg->drbg, out, len);
    pthread_mutex_unlock(&cfg->rng_mu);
    return ret;
}

static int setup_ssl(mqtt_tls_config *cfg, const mqtt_tls_options *o, char *err, size_t errlen)
{
    /* The id personalises the seed so two contexts never share a stream. */
    unsigned char pers[32];
    int plen = snprintf((char *)pers, sizeof pers, "zmqtt tls %llu", (unsigned long long)cfg->id);
    int ret = mbedtls_ctr_drbg_seed(&cfg->drbg, mbedtls_entropy_func, &cfg->entropy, pers,
                                    (size_t)plen);
    if (ret != 0) {
        char why[128];
        mbed_text(ret, why, sizeof why);
        snprintf(err, errlen, "cannot seed the random number generator (%s)", why);
        return MQTT_ERR_TLS;
    }
    ret = mbedtls_ssl_config_defaults(&cfg->ssl, MBEDTLS_SSL_IS_CLIENT,
                                      MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) {
        snprintf(err, errlen, "cannot set up the TLS configuration");
        return MQTT_ERR_TLS;
    }
    mbedtls_ssl_conf_rng(&cfg->ssl, locked_random, cfg);
    mbedtls_ssl_conf_min_version(&cfg->ssl, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&cfg->ssl,
                              o->verify ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_session_tickets(&cfg->ssl, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
    mbedtls_ssl_conf_renegotiation(&cfg->ssl, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    cfg->verify = o->verify;
    return MQTT_OK;
}

/* ---- life cycle ------------------------------------------------------ */

static void config_free(mqtt_tls_config *cfg)
{
    /* The random generator, the strings, then what the SSL config points at. */
    mbedtls_ctr_drbg_free(&cfg->drbg);
    mbedtls_entropy_free(&cfg->entropy);
    pthread_mutex_destroy(&cfg->rng_mu);
    for (size_t i = 0; cfg->alpn && cfg->alpn[i]; i++)
        mqtt__free(cfg->alpn[i]);
    mqtt__free(cfg->alpn);
    mqtt__free(cfg->suites);
    mqtt__free(cfg->server_name);
    mbedtls_ssl_config_free(&cfg->ssl);
    mbedtls_x509_crt_free(&cfg->ca);
    mbedtls_x509_crt_free(&cfg->cert);
    mbedtls_pk_free(&cfg->key);
    mqtt__free(cfg);
}

static mqtt_tls_config *config_alloc(void)
{
    static atomic_uint_fast64_t next_id;
    mqtt_tls_config *cfg = mqtt__calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    atomic_init(&cfg->refs, 1);
    cfg->id = atomic_fetch_add(&next_id, 1) + 1;
    mbedtls_ssl_config_init(&cfg->ssl);
    mbedtls_x509_crt_init(&cfg->ca);
    mbedtls_x509_crt_init(&cfg->cert);
    mbedtls_pk_init(&cfg->key);
    mbedtls_entropy_init(&cfg->entropy);
    mbedtls_ctr_drbg_init(&cfg->drbg);
    pthread_mutex_init(&cfg->rng_mu, NULL);
    return cfg;
}

int mqtt_tls_config_new(const mqtt_tls_options *o, mqtt_tls_config **out, char *err,
                        size_t errlen)
{
    char scratch[2];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    if (!o || !out)
        return MQTT_ERR_INVAL;
    *out = NULL;
    mqtt_tls_options full; /* the caller's fields, within its struct_size */
    tls_options_defaults(&full);
    int rc = mqtt__struct_read(&full, sizeof full, o, sizeof full, "tls options");
    if (rc != MQTT_OK) {
        snprintf(err, errlen, "%s", mqtt_last_error());
        return rc;
    }
    o = &full;
    rc = validate(o, err, errlen);
    if (rc != MQTT_OK)
        return rc;
    mqtt_tls_config *cfg = config_alloc();
    if (!cfg) {
        snprintf(err, errlen, "%s", mqtt_strerror(MQTT_ERR_NOMEM));
        return MQTT_ERR_NOMEM;
    }
    rc = setup_ssl(cfg, o, err, errlen);
    if (rc == MQTT_OK)
        rc = load_trust(cfg, o, err, errlen);
    if (rc == MQTT_OK && chain_length(&cfg->ca) > 0)
        mbedtls_ssl_conf_ca_chain(&cfg->ssl, &cfg->ca, NULL);
    if (rc == MQTT_OK)
        rc = load_identity(cfg, o, err, errlen);
    if (rc == MQTT_OK)
        rc = setup_psk(cfg, o, err, errlen);
    if (rc == MQTT_OK)
        rc = setup_alpn(cfg, o, err, errlen);
    if (rc == MQTT_OK && o->server_name && !(cfg->server_name = mqtt__strdup(o->server_name)))
        rc = MQTT_ERR_NOMEM;
    if (rc != MQTT_OK) {
        if (!err[0])
            snprintf(err, errlen, "%s", mqtt_strerror(rc));
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return MQTT_OK;
}

mqtt_tls_config *mqtt_tls_config_ref(mqtt_tls_config *cfg)
{
    if (cfg)
        atomic_fetch_add(&cfg->refs, 1);
    return cfg;
}

void mqtt_tls_config_unref(mqtt_tls_config *cfg)
{
    if (cfg && atomic_fetch_sub(&cfg->refs, 1) == 1)
        config_free(cfg);
}
