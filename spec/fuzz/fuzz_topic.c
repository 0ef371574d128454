/*
 * Fuzz target: mqtt__utf8_valid, mqtt__check_topic_name,
 * mqtt__check_topic_filter and mqtt__topic_match, each against a reference
 * written here a different way (code points decoded, strings split into
 * levels), plus the laws that tie them together. Input: byte 0 is the filter
 * length k, then k bytes of filter, then the topic; the whole input is also
 * validated as one string.
 */
#include <string.h>

#include "codec.h"
#include "fuzz_util.h"

/* ---- references ------------------------------------------------------ */

/* Decodes each code point and judges its value: no overlongs, surrogates,
 * values past U+10FFFF or U+0000. */
static bool ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], min;
        size_t k;
        if (c < 0x80) {
            if (c == 0)
                return false;
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            k = 1, c &= 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, c &= 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, c &= 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            c = c << 6 | (s[i + j] & 0x3Fu);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

/* Topic levels: start offsets and lengths. */
typedef struct levels {
    size_t n;
    size_t *off, *len;
} levels;

static levels split(const uint8_t *s, size_t n)
{
    levels l = {0, malloc((n + 1) * sizeof(size_t)), malloc((n + 1) * sizeof(size_t))};
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '/') {
            l.off[l.n] = start;
            l.len[l.n] = i - start;
            l.n++;
            start = i + 1;
        }
    }
    return l;
}

static void free_levels(levels *l)
{
    free(l->off);
    free(l->len);
}

static bool level_is(const uint8_t *s, const levels *l, size_t i, uint8_t c)
{
    return l->len[i] == 1 && s[l->off[i]] == c;
}

static bool ref_name(const uint8_t *s, size_t n)
{
    return n >= 1 && n <= 65535 && ref_utf8(s, n) && !memchr(s, '+', n) && !memchr(s, '#', n);
}

/* "$share/{group}/{filter}": where {filter} starts (0: not shared, or no
 * second '/'). */
static size_t ref_shared_start(const uint8_t *s, size_t n)
{
    if (n < 7 || memcmp(s, "$share/", 7) != 0)
        return 0;
    for (size_t i = 7; i < n; i++)
        if (s[i] == '/')
            return i + 1;
    return 0;
}

static bool ref_filter(const uint8_t *s, size_t n)
{
    if (n < 1 || n > 65535 || !ref_utf8(s, n))
        return false;
    if (n >= 7 && memcmp(s, "$share/", 7) == 0) {
        /* A group without wildcards, then a filter that is not empty. */
        size_t start = ref_shared_start(s, n);
        if (start == 0 || start == n || start == 8)
            return false;
        for (size_t i = 7; i + 1 < start; i++)
            if (s[i] == '+' || s[i] == '#')
                return false;
    }
    levels l = split(s, n);
    bool ok = true;
    for (size_t i = 0; i < l.n && ok; i++) {
        const uint8_t *lv = s + l.off[i];
        if (memchr(lv, '#', l.len[i]))
            ok = level_is(s, &l, i, '#') && i + 1 == l.n;
        else if (memchr(lv, '+', l.len[i]))
            ok = level_is(s, &l, i, '+');
    }
    free_levels(&l);
    return ok;
}

/* For a valid filter and topic name. */
static bool ref_match(const uint8_t *f, size_t fn, const uint8_t *t, size_t tn)
{
    size_t shared = ref_shared_start(f, fn);
    f += shared;
    fn -= shared;
    if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
        return false;
    levels fl = split(f, fn), tl = split(t, tn);
    bool result = false, decided = false;
    for (size_t i = 0; i < fl.n && !decided; i++) {
        if (level_is(f, &fl, i, '#')) {
            result = decided = true; /* this level and all below, or none: "a/#" matches "a" */
        } else if (i >= tl.n) {
            decided = true;
        } else if (!level_is(f, &fl, i, '+') &&
                   (fl.len[i] != tl.len[i] || memcmp(f + fl.off[i], t + tl.off[i], fl.len[i]))) {
            decided = true;
        }
    }
    if (!decided)
        result = fl.n == tl.n;
    free_levels(&fl);
    free_levels(&tl);
    return result;
}

/* ---- checks ---------------------------------------------------------- */

static uint8_t *exact_copy(const uint8_t *b, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    memcpy(c, b, n);
    return c;
}

/* Validation agrees with the references; names are filters; reasons are given. */
static void check_string(const uint8_t *s, size_t n)
{
    const char *why = NULL;
    bool utf8 = mqtt__utf8_valid(s, n);
    FZ_CHECK(utf8 == ref_utf8(s, n));
    int name = mqtt__check_topic_name(s, n, &why);
    FZ_CHECK((name == MQTT_OK) == ref_name(s, n));
    FZ_CHECK(name == MQTT_OK || (name == MQTT_ERR_INVAL && why != NULL && why[0] != '\0'));
    FZ_CHECK(mqtt_validate_topic_name((const char *)s, n, NULL) == name);
    why = NULL;
    int filter = mqtt__check_topic_filter(s, n, &why);
    FZ_CHECK((filter == MQTT_OK) == ref_filter(s, n));
    FZ_CHECK(filter == MQTT_OK || (filter == MQTT_ERR_INVAL && why != NULL && why[0] != '\0'));
    FZ_CHECK(mqtt_validate_topic_filter((const char *)s, n, NULL) == filter);
    if (name == MQTT_OK) {
        /* Names are filters, but for malformed shared subscriptions. */
        FZ_CHECK(filter == MQTT_OK || (n >= 7 && memcmp(s, "$share/", 7) == 0));
        FZ_CHECK(utf8);
        /* A name matches itself; as a shared filter, it matches by its
         * shorter filter part, never itself. '#' and '+' obey the '$' rule. */
        if (filter == MQTT_OK)
            FZ_CHECK(mqtt__topic_match(s, n, s, n) == (ref_shared_start(s, n) == 0));
        FZ_CHECK(mqtt__topic_match((const uint8_t *)"#", 1, s, n) == (s[0] != '$'));
        FZ_CHECK(mqtt__topic_match((const uint8_t *)"+", 1, s, n) ==
                 (s[0] != '$' && !memchr(s, '/', n)));
    }
}

/* A topic built from a valid filter (wildcards filled in; of a shared
 * filter, its filter part) must match it. */
static void check_instance(const uint8_t *whole, size_t wn, bool drop_hash)
{
    size_t shared = ref_shared_start(whole, wn);
    const uint8_t *f = whole + shared;
    size_t fn = wn - shared;
    levels l = split(f, fn);
    uint8_t *t = malloc(fn + 4);
    size_t tn = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (level_is(f, &l, i, '#') && drop_hash)
            break; /* "a/#" also matches "a" */
        if (i > 0)
            t[tn++] = '/';
        if (level_is(f, &l, i, '#')) {
            memcpy(t + tn, "y/z", 3);
            tn += 3;
        } else if (level_is(f, &l, i, '+')) {
            t[tn++] = 'x';
        } else {
            memcpy(t + tn, f + l.off[i], l.len[i]);
            tn += l.len[i];
        }
    }
    if (tn > 0 && tn <= 65535) {
        FZ_CHECK(mqtt__check_topic_name(t, tn, NULL) == MQTT_OK);
        FZ_CHECK(mqtt__topic_match(whole, wn, t, tn));
    }
    free(t);
    free_levels(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    check_string(data, len);
    if (len == 0)
        return 0;
    size_t fn = data[0] < len - 1 ? data[0] : len - 1;
    uint8_t *f = exact_copy(data + 1, fn);
    uint8_t *t = exact_copy(data + 1 + fn, len - 1 - fn);
    size_t tn = len - 1 - fn;
    check_string(f, fn);
    check_string(t, tn);

    bool m = mqtt__topic_match(f, fn, t, tn); /* any bytes: must not crash */
    FZ_CHECK(mqtt_topic_matches((const char *)f, fn, (const char *)t, tn) == m);
    if (fn == 0 || tn == 0)
        FZ_CHECK(!m);
    bool valid_filter = mqtt__check_topic_filter(f, fn, NULL) == MQTT_OK;
    bool valid_name = mqtt__check_topic_name(t, tn, NULL) == MQTT_OK;
    if (valid_filter && valid_name)
        FZ_CHECK(m == ref_match(f, fn, t, tn));
    if (valid_filter) {
        check_instance(f, fn, false);
        check_instance(f, fn, true);
    }
    free(f);
    free(t);
    return 0;
}
