/*
 * Shared by the fuzz targets: a cursor that reads script bytes from the
 * fuzzer's input (reading past the end yields zeros, so every input is a
 * valid script) and a check that aborts with a message, which libFuzzer
 * records as a crash. Header-only; each target includes it once.
 */
#ifndef ZMQTT_FUZZ_UTIL_H
#define ZMQTT_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Aborts when cond is false: the input that got here is a bug reproducer. */
#define FZ_CHECK(cond)                                                                   \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz check failed: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* The libFuzzer entry point each target defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

static inline bool fz_more(const fz_in *in)
{
    return in->n > 0;
}

static inline uint8_t fz_u8(fz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in *in)
{
    uint16_t hi = fz_u8(in);
    return (uint16_t)(hi << 8 | fz_u8(in));
}

/* Up to want bytes of the input; *len says how many there were. */
static inline const uint8_t *fz_bytes(fz_in *in, size_t want, size_t *len)
{
    const uint8_t *p = in->p;
    *len = want < in->n ? want : in->n;
    in->p += *len;
    in->n -= *len;
    return p;
}

#endif
