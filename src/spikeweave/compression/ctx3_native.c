/* The ctx3 block coder of spikeweave.compression.ctx3code, in C: encoder and decoder.

   It must write and read exactly the bitstream of ctx3code._run (LZMA's binary range coder:
   32-bit range, 11-bit probabilities updated by shift 5, direct bits; the same model and
   context order). tests/compression/test_ctx3.py holds the two equal byte for byte on random
   and real streams. One model function serves both directions: it is inlined twice, with
   ENC a constant, so each direction compiles without the other's branches.

   Every symbol decoded is checked against its alphabet whatever the payload says, so a crafted
   block can make wrong events (caught by the CRC-32 in Python) but never touch memory out of
   range. Returns: encoder, the payload length (-1 out of memory, -2 buffer too small);
   decoder 0, 1 for invalid data, 2 when out of memory. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SF_CTX3_VERSION 1
#define ZIGZAG 1
#define XFIRST 2
#define MAX_TABLE (1 << 20)
#define B_BITS 4 /* min(b, 15) on a 4-level tree; 15 escapes to a 6-level tree of b - 15 */
#define B_ESC 15
#define B_CTX 16
#define AGE_CTX 34
#define TOP (1u << 24)
#define HALF 1024

int sf_ctx3_version(void) { return SF_CTX3_VERSION; }

typedef struct {
    /* encoder */
    uint64_t low;
    uint32_t cache;
    uint64_t csize;
    uint8_t *out;
    int64_t cap, pos;
    int overflow;
    /* decoder */
    const uint8_t *in;
    int64_t n_in, ipos;
    uint32_t code;
    /* both */
    uint32_t range;
} rc_t;

static inline void put_byte(rc_t *c, uint8_t b) {
    if (c->pos < c->cap) c->out[c->pos] = b;
    else c->overflow = 1;
    c->pos++;
}

static inline void shift_low(rc_t *c) {
    if ((uint32_t)c->low < 0xFF000000u || (c->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(c->low >> 32);
        uint32_t temp = c->cache;
        do {
            put_byte(c, (uint8_t)(temp + carry));
            temp = 0xFF;
        } while (--c->csize != 0);
        c->cache = (uint32_t)((c->low >> 24) & 0xFF);
    }
    c->csize++;
    c->low = (c->low & 0x00FFFFFFu) << 8;
}

static inline uint32_t next_byte(rc_t *c) {
    return c->ipos < c->n_in ? c->in[c->ipos++] : (c->ipos++, 0u);
}

static inline int code_bit(rc_t *c, const int ENC, uint16_t *prob, int bit) {
    uint32_t p = *prob, bound = (c->range >> 11) * p;
    if (ENC) {
        if (bit) {
            c->low += bound;
            c->range -= bound;
            *prob = (uint16_t)(p - (p >> 5));
        } else {
            c->range = bound;
            *prob = (uint16_t)(p + ((2048 - p) >> 5));
        }
        while (c->range < TOP) {
            c->range <<= 8;
            shift_low(c);
        }
        return bit;
    }
    if (c->code < bound) {
        c->range = bound;
        *prob = (uint16_t)(p + ((2048 - p) >> 5));
        bit = 0;
    } else {
        c->code -= bound;
        c->range -= bound;
        *prob = (uint16_t)(p - (p >> 5));
        bit = 1;
    }
    if (c->range < TOP) {
        c->range <<= 8;
        c->code = (c->code << 8) | next_byte(c);
    }
    return bit;
}

static inline uint64_t code_direct(rc_t *c, const int ENC, uint64_t value, int nbits) {
    uint64_t out = 0;
    int j;
    for (j = nbits - 1; j >= 0; j--) {
        c->range >>= 1;
        if (ENC) {
            if ((value >> j) & 1) c->low += c->range;
            while (c->range < TOP) {
                c->range <<= 8;
                shift_low(c);
            }
        } else {
            uint32_t bit = c->code >= c->range;
            c->code -= c->range & (0u - bit);
            out = (out << 1) | bit;
            if (c->range < TOP) {
                c->range <<= 8;
                c->code = (c->code << 8) | next_byte(c);
            }
        }
    }
    return ENC ? value : out;
}

static inline uint32_t code_tree(rc_t *c, const int ENC, uint16_t *probs, int nb, uint32_t sym) {
    uint32_t m = 1;
    int j;
    for (j = nb - 1; j >= 0; j--) {
        int bit = code_bit(c, ENC, probs + m, ENC ? (int)((sym >> j) & 1) : 0);
        m = (m << 1) | (uint32_t)bit;
    }
    return m - (1u << nb);
}

static int nbits_of(int64_t k) {
    int b = 0;
    uint64_t v = k > 1 ? (uint64_t)(k - 1) : 0;
    while (v) {
        b++;
        v >>= 1;
    }
    return b;
}

static int merge_shift(int64_t n_ctx, int64_t leaves) {
    int s = 0;
    while (((n_ctx + ((int64_t)1 << s) - 1) >> s) * leaves > MAX_TABLE && (n_ctx >> s) > 1) s++;
    return s;
}

static int bitlen64(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

/* The per-pixel state of a block: 1 + the index of the pixel's last event (0: none yet).
   A direct array up to DIRECT_PIXELS pixels, else an open-addressing table keyed by pixel
   index + 1 (the same state either way; the direct array saves a probe and a cache miss). */
#define DIRECT_PIXELS (1 << 22)
typedef struct {
    uint32_t key, last;
} slot_t;

static uint16_t *probs_new(int64_t n) {
    uint16_t *a = malloc((size_t)n * sizeof(uint16_t));
    int64_t i;
    if (a)
        for (i = 0; i < n; i++) a[i] = HALF;
    return a;
}

static inline __attribute__((always_inline)) int run(rc_t *c, const int ENC, int64_t n,
                                                     int64_t width, int64_t height, int flags,
                                                     int64_t t_first, int64_t *t, uint16_t *x,
                                                     uint16_t *y, uint8_t *p) {
    const int zig = flags & ZIGZAG, mode = (flags & XFIRST) ? 1 : 0;
    const int nbx = nbits_of(width), nby = nbits_of(height);
    int s_shift, s_bits, rc = 0;
    int64_t n_first, n_second, i, hsize = 16, prev_t = 0;
    uint16_t *bp, esc[64], mp[65], pol[2 * AGE_CTX], *first, *second;
    slot_t *table = NULL;
    uint32_t *direct = NULL, *cell;
    const int use_direct = width * height <= DIRECT_PIXELS;
    uint32_t prev_b = 0, x_prev = 0;
    if (mode == 0) {
        s_shift = merge_shift(height, (int64_t)1 << nbx);
        s_bits = nbx;
        n_first = (int64_t)1 << nby;
        n_second = ((height + ((int64_t)1 << s_shift) - 1) >> s_shift) << nbx;
    } else {
        s_shift = merge_shift(width, (int64_t)1 << nby);
        s_bits = nby;
        n_first = (int64_t)B_CTX << nbx;
        n_second = ((width + ((int64_t)1 << s_shift) - 1) >> s_shift) << nby;
    }
    while (hsize < 2 * n) hsize <<= 1;
    bp = probs_new((int64_t)B_CTX << B_BITS);
    first = probs_new(n_first);
    second = probs_new(n_second);
    if (use_direct) direct = calloc((size_t)(width * height), sizeof(uint32_t));
    else table = calloc((size_t)hsize, sizeof(slot_t));
    if (!bp || !first || !second || (!table && !direct)) {
        rc = 2;
        goto done;
    }
    for (i = 0; i < 65; i++) mp[i] = HALF;
    for (i = 0; i < 64; i++) esc[i] = HALF;
    for (i = 0; i < 2 * AGE_CTX; i++) pol[i] = HALF;
    for (i = 0; i < n; i++) {
        uint64_t z = 0, key, h;
        uint32_t b, bctx, xi, yi, e, pp, actx;
        int64_t ti;
        if (ENC) {
            /* int64 wrapping difference, through unsigned arithmetic */
            int64_t d = i ? (int64_t)((uint64_t)t[i] - (uint64_t)prev_t) : 0;
            z = zig ? (((uint64_t)d << 1) ^ (uint64_t)(d >> 63)) : (uint64_t)d;
        }
        {
            uint32_t bl = (uint32_t)bitlen64(z);
            b = code_tree(c, ENC, bp + ((prev_b < B_CTX - 1 ? prev_b : B_CTX - 1) << B_BITS), B_BITS,
                          bl < B_ESC ? bl : B_ESC);
            if (b == B_ESC) b += code_tree(c, ENC, esc, 6, bl - B_ESC);
        }
        if (b > 64) {
            rc = 1;
            goto done;
        }
        if (b >= 2) {
            uint64_t top = (uint64_t)code_bit(c, ENC, mp + b, (int)((z >> (b - 2)) & 1));
            uint64_t low = code_direct(c, ENC, z & ((((uint64_t)1) << (b - 2)) - 1), (int)b - 2);
            z = ((uint64_t)1 << (b - 1)) | (top << (b - 2)) | low;
        } else {
            z = b;
        }
        if (ENC) {
            ti = t[i];
        } else {
            uint64_t d = zig ? ((z >> 1) ^ (0 - (z & 1))) : z;
            if (i == 0 && d) {
                rc = 1;
                goto done;
            }
            ti = (int64_t)((uint64_t)prev_t + d); /* relative to t_first until the end */
        }
        bctx = b < B_CTX - 1 ? b : B_CTX - 1;
        if (mode == 0) {
            yi = code_tree(c, ENC, first, nby, ENC ? y[i] : 0);
            if (yi >= height) {
                rc = 1;
                goto done;
            }
            xi = code_tree(c, ENC, second + (((int64_t)(yi >> s_shift)) << s_bits), nbx,
                           ENC ? x[i] : 0);
            if (xi >= width) {
                rc = 1;
                goto done;
            }
        } else {
            uint32_t dx = ENC ? (uint32_t)(((int64_t)x[i] - x_prev + width) % width) : 0;
            dx = code_tree(c, ENC, first + ((int64_t)bctx << nbx), nbx, dx);
            if (dx >= width) {
                rc = 1;
                goto done;
            }
            xi = (uint32_t)((x_prev + dx) % width);
            yi = code_tree(c, ENC, second + (((int64_t)(xi >> s_shift)) << s_bits), nby,
                           ENC ? y[i] : 0);
            if (yi >= height) {
                rc = 1;
                goto done;
            }
        }
        key = (uint64_t)yi * (uint64_t)width + xi;
        if (use_direct) {
            cell = direct + key;
        } else {
            h = ((key + 1) * 0x9E3779B97F4A7C15ull) >> 40;
            for (;;) {
                h &= (uint64_t)(hsize - 1);
                if (table[h].key == key + 1 || table[h].key == 0) break;
                h++;
            }
            table[h].key = (uint32_t)(key + 1);
            cell = &table[h].last;
        }
        if (*cell == 0) {
            pp = 0;
            actx = 0;
        } else {
            pp = p[*cell - 1];
            actx = zig ? 1 : 1 + (uint32_t)bitlen64((uint64_t)ti - (uint64_t)t[*cell - 1]);
            if (actx > AGE_CTX - 1) actx = AGE_CTX - 1;
        }
        e = (uint32_t)code_bit(c, ENC, pol + 2 * actx + pp, ENC ? (int)(p[i] ^ pp) : 0);
        *cell = (uint32_t)i + 1;
        if (!ENC) {
            t[i] = ti;
            x[i] = (uint16_t)xi;
            y[i] = (uint16_t)yi;
            p[i] = (uint8_t)(e ^ pp);
        }
        prev_b = b;
        prev_t = ti;
        x_prev = xi;
    }
    if (!ENC)
        for (i = 0; i < n; i++) t[i] = (int64_t)((uint64_t)t[i] + (uint64_t)t_first);
done:
    free(bp);
    free(first);
    free(second);
    free(table);
    free(direct);
    return rc;
}

int64_t sf_ctx3_encode(const int64_t *t, const uint16_t *x, const uint16_t *y, const uint8_t *p,
                       int64_t n, int64_t width, int64_t height, int32_t flags, uint8_t *out,
                       int64_t cap) {
    rc_t c;
    int rc, k;
    memset(&c, 0, sizeof c);
    c.range = 0xFFFFFFFFu;
    c.csize = 1;
    c.out = out;
    c.cap = cap;
    rc = run(&c, 1, n, width, height, flags, 0, (int64_t *)t, (uint16_t *)x, (uint16_t *)y,
             (uint8_t *)p);
    if (rc) return -1;
    for (k = 0; k < 5; k++) shift_low(&c);
    return c.overflow ? -2 : c.pos;
}

int sf_ctx3_decode(const uint8_t *in, int64_t n_in, int64_t n, int64_t width, int64_t height,
                   int32_t flags, int64_t t_first, int64_t *t, uint16_t *x, uint16_t *y,
                   uint8_t *p) {
    rc_t c;
    int k;
    memset(&c, 0, sizeof c);
    if (n_in < 5 || in[0] != 0) return 1;
    c.in = in;
    c.n_in = n_in;
    c.range = 0xFFFFFFFFu;
    c.ipos = 1;
    for (k = 0; k < 4; k++) c.code = (c.code << 8) | next_byte(&c);
    return run(&c, 0, n, width, height, flags, t_first, t, x, y, p);
}
