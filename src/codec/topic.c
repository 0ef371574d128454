/*
 * Codec string rules: UTF-8 validation, topic name and topic filter checks,
 * and filter matching (MQTT 3.1.1 sections 1.5.3 and 4.7), plus the public
 * topic helpers of mqtt.h. Pure functions over byte strings: no allocation,
 * never a read past the given length.
 */
#include <string.h>

#include "codec.h"

#define MAX_STRING 65535u

/*
 * Length of the sequence a lead byte starts and the range its second byte
 * must fall in (Unicode table 3-7); the narrowed ranges are what exclude
 * overlongs, surrogates and code points above U+10FFFF. 0: not a lead byte.
 */
static size_t utf8_lead(uint8_t c, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        return 2;
    }
    if (c == 0xE0) {
        *lo = 0xA0;
        return 3;
    }
    if (c == 0xED) {
        *hi = 0x9F;
        return 3;
    }
    if (c >= 0xE1 && c <= 0xEF) {
        return 3;
    }
    if (c == 0xF0) {
        *lo = 0x90;
        return 4;
    }
    if (c >= 0xF1 && c <= 0xF3) {
        return 4;
    }
    if (c == 0xF4) {
        *hi = 0x8F;
        return 4;
    }
    return 0;
}

bool mqtt__utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t lo, hi;
        size_t n;
        if (s[i] < 0x80) {
            if (s[i] == 0) {
                return false; /* U+0000 is forbidden by MQTT-1.5.3-2 */
            }
            i++;
            continue;
        }
        n = utf8_lead(s[i], &lo, &hi);
        if (n == 0 || n > len - i || s[i + 1] < lo || s[i + 1] > hi) {
            return false;
        }
        for (size_t k = 2; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return false;
            }
        }
        i += n;
    }
    return true;
}

/* Checks shared by names and filters; NULL when the string is acceptable. */
static const char *string_problem(const uint8_t *s, size_t len)
{
    if (len == 0) {
        return "empty topic";
    }
    if (len > MAX_STRING) {
        return "topic longer than 65535 bytes";
    }
    if (s == NULL) {
        return "NULL topic";
    }
    if (memchr(s, 0, len) != NULL) {
        return "NUL in topic";
    }
    if (!mqtt__utf8_valid(s, len)) {
        return "topic is not valid UTF-8";
    }
    return NULL;
}

static int verdict(const char *problem, const char **why)
{
    if (problem == NULL) {
        return MQTT_OK;
    }
    if (why != NULL) {
        *why = problem;
    }
    return MQTT_ERR_INVAL;
}

int mqtt__check_topic_name(const uint8_t *s, size_t len, const char **why)
{
    const char *problem = string_problem(s, len);
    if (problem == NULL && (memchr(s, '+', len) != NULL || memchr(s, '#', len) != NULL)) {
        problem = "wildcard in topic name";
    }
    return verdict(problem, why);
}

/* Wildcards must fill a whole level, and '#' must be the last level. */
static const char *wildcard_problem(const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        bool starts = i == 0 || s[i - 1] == '/';
        bool ends = i + 1 == len || s[i + 1] == '/';
        if (s[i] == '#' && !(starts && i + 1 == len)) {
            return "'#' not alone in the last level";
        }
        if (s[i] == '+' && !(starts && ends)) {
            return "'+' not alone in its level";
        }
    }
    return NULL;
}

static const char share_prefix[] = "$share/";
#define SHARE_PREFIX_LEN (sizeof share_prefix - 1)

/* Where the filter of "$share/{group}/{filter}" starts; 0 for other strings. */
static size_t shared_filter_start(const uint8_t *s, size_t len)
{
    if (s == NULL || len <= SHARE_PREFIX_LEN || memcmp(s, share_prefix, SHARE_PREFIX_LEN) != 0) {
        return 0;
    }
    const uint8_t *slash = memchr(s + SHARE_PREFIX_LEN, '/', len - SHARE_PREFIX_LEN);
    return slash == NULL ? 0 : (size_t)(slash - s) + 1;
}

/* A shared subscription names a group (no wildcards) and a filter (MQTT 5.0 4.8.2). */
static const char *shared_problem(const uint8_t *s, size_t len)
{
    if (len < SHARE_PREFIX_LEN || memcmp(s, share_prefix, SHARE_PREFIX_LEN) != 0) {
        return NULL;
    }
    size_t start = shared_filter_start(s, len);
    if (start == 0 || start == len) {
        return "shared subscription without a topic filter";
    }
    if (start == SHARE_PREFIX_LEN + 1) {
        return "shared subscription with an empty group name";
    }
    for (size_t i = SHARE_PREFIX_LEN; i + 1 < start; i++) {
        if (s[i] == '+' || s[i] == '#') {
            return "wildcard in a shared subscription's group name";
        }
    }
    return NULL;
}

int mqtt__check_topic_filter(const uint8_t *s, size_t len, const char **why)
{
    const char *problem = string_problem(s, len);
    if (problem == NULL) {
        problem = shared_problem(s, len);
    }
    if (problem == NULL) {
        problem = wildcard_problem(s, len);
    }
    return verdict(problem, why);
}

size_t mqtt_shared_filter_start(const char *filter, size_t len)
{
    return shared_filter_start((const uint8_t *)filter, len);
}

/* End of the level that starts at i: the next '/' or len. */
static size_t level_end(const uint8_t *s, size_t len, size_t i)
{
    const uint8_t *slash = memchr(s + i, '/', len - i);
    return slash == NULL ? len : (size_t)(slash - s);
}

static bool is_level(const uint8_t *s, size_t start, size_t end, uint8_t c)
{
    return end - start == 1 && s[start] == c;
}

/*
 * Level by level. A trailing "#" also matches the parent level ("a/#"
 * matches "a"); a "#" anywhere else matches nothing. Empty strings match
 * nothing, since neither is a valid name or filter.
 */
bool mqtt__topic_match(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen)
{
    size_t fi = 0, ti = 0;
    bool topic_done = false;
    if (flen == 0 || tlen == 0 || filter == NULL || topic == NULL) {
        return false;
    }
    /* "$share/{group}/{filter}" matches what {filter} matches. */
    size_t shared = shared_filter_start(filter, flen);
    filter += shared;
    flen -= shared;
    if (flen == 0) {
        return false;
    }
    /* MQTT 4.7.2: a leading wildcard does not match topics starting with '$'. */
    if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) {
        return false;
    }
    for (;;) {
        size_t fe = level_end(filter, flen, fi), te;
        if (is_level(filter, fi, fe, '#')) {
            return fe == flen;
        }
        if (topic_done) {
            return false;
        }
        te = level_end(topic, tlen, ti);
        if (!is_level(filter, fi, fe, '+') &&
            (fe - fi != te - ti || memcmp(filter + fi, topic + ti, fe - fi) != 0)) {
            return false;
        }
        if (fe == flen) {
            return te == tlen;
        }
        fi = fe + 1;
        topic_done = te == tlen;
        ti = topic_done ? te : te + 1;
    }
}

bool mqtt_topic_matches(const char *filter, size_t filter_len, const char *topic,
                        size_t topic_len)
{
    return mqtt__topic_match((const uint8_t *)filter, filter_len, (const uint8_t *)topic,
                             topic_len);
}

int mqtt_validate_topic_name(const char *topic, size_t len, const char **why)
{
    return mqtt__check_topic_name((const uint8_t *)topic, len, why);
}

int mqtt_validate_topic_filter(const char *filter, size_t len, const char **why)
{
    return mqtt__check_topic_filter((const uint8_t *)filter, len, why);
}

bool mqtt_utf8_valid(const char *s, size_t len)
{
    return mqtt__utf8_valid((const uint8_t *)s, len);
}
