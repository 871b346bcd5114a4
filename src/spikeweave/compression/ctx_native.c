/* The ctx block decoder of spikeweave.compression.ctxcode, in C.

   It must decode exactly what ctxcode.encode_block writes through `constriction` 0.5
   (queue RangeEncoder: 32-bit words, 64-bit state; categorical models built with
   `Categorical(probs, perfect=False)`, i.e. from_floating_point_probabilities_fast at 24-bit
   precision; `Uniform(size)`), with the same adaptive schedule as ctxcode._code_column:
   per sub-block, contexts in ascending order, each context's symbols in file order, the model
   the KT counts of the earlier sub-blocks. tests/compression/test_ctx_native.py checks it
   against the Python path symbol for symbol on random and real streams.

   Every symbol decoded lies inside its alphabet whatever the payload says, so a crafted block
   can make wrong events (caught by the CRC-32 in Python) but never touch memory out of range.
   Returns 0, 1 for invalid data (a quantile constriction refuses), 2 when out of memory. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SF_CTX_VERSION 1
#define PREC 24
#define ONE (1u << PREC)
#define ZIGZAG 1
#define XFIRST 2
#define MAX_TABLE (1 << 20)
#define SUB_FIRST 128
#define SUB_MAX 16384
#define B_SYMBOLS 65
#define AGE_CTX 34

int sf_ctx_version(void) { return SF_CTX_VERSION; }

typedef struct {
    const uint32_t *w;
    int64_t nw, pos;
    uint64_t lower, range, point;
    int bad;
} dec_t;

static void dec_init(dec_t *d, const uint32_t *w, int64_t nw) {
    uint64_t point = 0;
    int nr = 0;
    d->w = w;
    d->nw = nw;
    d->pos = 0;
    d->lower = 0;
    d->range = UINT64_MAX;
    d->bad = 0;
    while (nr < 2 && d->pos < nw) {
        point = (point << 32) | w[d->pos++];
        nr++;
    }
    if (nr == 1) point <<= 32;
    d->point = point;
}

static inline uint32_t dec_quantile(dec_t *d, uint64_t *scale) {
    uint64_t q;
    *scale = d->range >> PREC;
    q = (d->point - d->lower) / *scale;
    if (q >= ONE) { /* constriction: InvalidData; decode on in range, report at the end */
        d->bad = 1;
        q = 0;
    }
    return (uint32_t)q;
}

static inline void dec_update(dec_t *d, uint64_t scale, uint32_t left, uint32_t prob) {
    d->lower += scale * left;
    d->range = scale * prob;
    if (d->range < ((uint64_t)1 << 32)) {
        d->lower <<= 32;
        d->range <<= 32;
        d->point <<= 32;
        if (d->pos < d->nw) d->point |= d->w[d->pos++];
    }
}

/* ctxcode._probs + constriction's fast_quantized_cdf: cdf[0..k], cdf[k] = 2**24. */
static void build_cdf(const uint32_t *cnt, int64_t k, uint32_t *cdf) {
    int64_t j, top = 0, sum = 0, cap, w;
    double norm = 0.0, scale, cum = 0.0;
    int capped;
    for (j = 0; j < k; j++) {
        w = 2 * (int64_t)cnt[j] + 1;
        sum += w;
        if (w > top) top = w;
    }
    cap = 4095 * (sum - top);
    capped = top > cap;
    for (j = 0; j < k; j++) {
        w = 2 * (int64_t)cnt[j] + 1;
        if (capped && w == top) w = cap;
        norm += (double)w;
    }
    scale = (double)(ONE - (uint32_t)k) / norm;
    for (j = 0; j < k; j++) {
        w = 2 * (int64_t)cnt[j] + 1;
        if (capped && w == top) w = cap;
        cdf[j] = (uint32_t)(cum * scale) + (uint32_t)j;
        cum += (double)w;
    }
    cdf[k] = ONE;
}

static inline int32_t dec_categorical(dec_t *d, const uint32_t *cdf, int64_t k) {
    uint64_t scale;
    uint32_t q = dec_quantile(d, &scale);
    int64_t lo = 0, hi = k; /* largest s in [0, k) with cdf[s] <= q (cdf[0] == 0) */
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) >> 1;
        if (cdf[mid] <= q) lo = mid;
        else hi = mid;
    }
    dec_update(d, scale, cdf[lo], cdf[lo + 1] - cdf[lo]);
    return (int32_t)lo;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* ctxcode._code_column, decoding: out[n] in 0..k-1 under adaptive models chosen by ctx. */
static int decode_column(dec_t *d, int32_t *out, const int32_t *ctx, int64_t n_ctx, int64_t k,
                         int64_t n, int32_t *order, int32_t *present) {
    int64_t start = 0, size = SUB_FIRST, i;
    uint32_t *counts, *cdf;
    int32_t *hist;
    if (k < 2) {
        memset(out, 0, (size_t)n * sizeof(int32_t));
        return 0;
    }
    counts = calloc((size_t)(n_ctx * k), sizeof(uint32_t));
    hist = calloc((size_t)n_ctx, sizeof(int32_t));
    cdf = malloc((size_t)(k + 1) * sizeof(uint32_t));
    if (!counts || !hist || !cdf) {
        free(counts);
        free(hist);
        free(cdf);
        return 2;
    }
    while (start < n) {
        int64_t stop = start + size < n ? start + size : n, n_present = 0, off = 0, g;
        for (i = start; i < stop; i++)
            if (hist[ctx[i]]++ == 0) present[n_present++] = ctx[i];
        qsort(present, (size_t)n_present, sizeof(int32_t), cmp_i32);
        for (g = 0; g < n_present; g++) { /* counts become group starts */
            int32_t c = hist[present[g]];
            hist[present[g]] = (int32_t)off;
            off += c;
        }
        for (i = start; i < stop; i++) order[hist[ctx[i]]++] = (int32_t)i;
        off = 0;
        for (g = 0; g < n_present; g++) {
            int32_t c = present[g];
            int64_t end = hist[c];
            build_cdf(counts + (int64_t)c * k, k, cdf);
            for (; off < end; off++) out[order[off]] = dec_categorical(d, cdf, k);
            hist[c] = 0;
        }
        for (i = start; i < stop; i++) counts[(int64_t)ctx[i] * k + out[i]]++;
        start = stop;
        size = 2 * size < SUB_MAX ? 2 * size : SUB_MAX;
    }
    free(counts);
    free(hist);
    free(cdf);
    return 0;
}

/* ctxcode._merge: the shift that keeps the count table at most 2**20 cells. */
static int merge_shift(int64_t n_ctx, int64_t k, int64_t *n_out) {
    int shift = 0;
    while (((n_ctx + (1ll << shift) - 1) >> shift) * k > MAX_TABLE && (n_ctx >> shift) > 1)
        shift++;
    *n_out = (n_ctx + (1ll << shift) - 1) >> shift;
    if (*n_out < 1) *n_out = 1;
    return shift;
}

static inline int bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

int sf_ctx_decode(const uint32_t *words, int64_t n_words, int64_t n, int64_t width,
                  int64_t height, int32_t flags, int64_t t_first, int64_t *t, uint16_t *x,
                  uint16_t *y, uint8_t *p) {
    dec_t d;
    int rc = 2;
    int64_t i, j, n_merged, hsize = 1;
    int shift;
    uint64_t acc, *keys = NULL;
    int32_t *b = malloc((size_t)n * sizeof(int32_t));
    int32_t *ctx = malloc((size_t)n * sizeof(int32_t));
    int32_t *sym = malloc((size_t)n * sizeof(int32_t));
    int32_t *sym2 = malloc((size_t)n * sizeof(int32_t));
    int32_t *order = malloc((size_t)n * sizeof(int32_t));
    int32_t *present = malloc((size_t)n * sizeof(int32_t));
    int32_t *prev = malloc((size_t)n * sizeof(int32_t));
    int32_t *last = NULL;
    uint64_t *z = calloc((size_t)n, sizeof(uint64_t));
    if (!b || !ctx || !sym || !sym2 || !order || !present || !prev || !z) goto done;
    dec_init(&d, words, n_words);

    /* 1. bit lengths of the timestamp deltas, then the mantissas in 16-bit uniform pieces */
    memset(ctx, 0, (size_t)n * sizeof(int32_t));
    if ((rc = decode_column(&d, b, ctx, 1, B_SYMBOLS, n, order, present))) goto done;
    for (j = 0; j < 4; j++) {
        for (i = 0; i < n; i++) {
            int64_t left = (b[i] > 0 ? b[i] - 1 : 0) - 16 * j;
            if (left > 0) {
                uint32_t per_bin = ONE >> (left < 16 ? left : 16), last_sym, q, s, lo, pr;
                uint64_t scale;
                last_sym = (ONE / per_bin) - 1;
                q = dec_quantile(&d, &scale);
                s = q / per_bin;
                if (s < last_sym) {
                    lo = s * per_bin;
                    pr = per_bin;
                } else {
                    s = last_sym;
                    lo = last_sym * per_bin;
                    pr = ONE - lo;
                }
                dec_update(&d, scale, lo, pr);
                z[i] |= (uint64_t)s << (16 * j);
            }
        }
    }
    acc = (uint64_t)t_first;
    for (i = 0; i < n; i++) {
        uint64_t v = z[i] + (b[i] > 0 ? (uint64_t)1 << (b[i] - 1) : 0);
        uint64_t dv = (flags & ZIGZAG) ? (v >> 1) ^ (0 - (v & 1)) : v;
        if (i > 0) acc += dv;
        t[i] = (int64_t)acc;
    }

    /* 2. pixels */
    if (!(flags & XFIRST)) {
        memset(ctx, 0, (size_t)n * sizeof(int32_t));
        if ((rc = decode_column(&d, sym, ctx, 1, height, n, order, present))) goto done;
        shift = merge_shift(height, width, &n_merged);
        for (i = 0; i < n; i++) ctx[i] = sym[i] >> shift;
        if ((rc = decode_column(&d, sym2, ctx, n_merged, width, n, order, present))) goto done;
        for (i = 0; i < n; i++) {
            y[i] = (uint16_t)sym[i];
            x[i] = (uint16_t)sym2[i];
        }
    } else {
        int64_t xv = 0;
        for (i = 0; i < n; i++) ctx[i] = b[i] < 15 ? b[i] : 15;
        if ((rc = decode_column(&d, sym, ctx, 16, width, n, order, present))) goto done;
        for (i = 0; i < n; i++) {
            xv = (xv + sym[i]) % width;
            x[i] = (uint16_t)xv;
        }
        shift = merge_shift(width, height, &n_merged);
        for (i = 0; i < n; i++) ctx[i] = x[i] >> shift;
        if ((rc = decode_column(&d, sym2, ctx, n_merged, height, n, order, present))) goto done;
        for (i = 0; i < n; i++) y[i] = (uint16_t)sym2[i];
    }

    /* 3. polarity errors given the pixel's age; each event's previous event at its pixel
       comes from an open-addressing table (keys y * width + x + 1, 0 = empty) */
    while (hsize < 2 * n) hsize <<= 1;
    keys = calloc((size_t)hsize, sizeof(uint64_t));
    last = malloc((size_t)hsize * sizeof(int32_t));
    if (!keys || !last) {
        rc = 2;
        goto done;
    }
    for (i = 0; i < n; i++) {
        uint64_t key = (uint64_t)y[i] * (uint64_t)width + x[i] + 1;
        uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 20;
        for (;;) {
            h &= (uint64_t)(hsize - 1);
            if (keys[h] == key) {
                prev[i] = last[h];
                break;
            }
            if (keys[h] == 0) {
                keys[h] = key;
                prev[i] = -1;
                break;
            }
            h++;
        }
        last[h] = (int32_t)i;
        if (flags & ZIGZAG || prev[i] < 0) {
            ctx[i] = 0;
        } else {
            int c = 1 + bit_length((uint64_t)t[i] - (uint64_t)t[prev[i]]);
            ctx[i] = c < AGE_CTX - 1 ? c : AGE_CTX - 1;
        }
    }
    if ((rc = decode_column(&d, sym, ctx, AGE_CTX, 2, n, order, present))) goto done;
    for (i = 0; i < n; i++) p[i] = (uint8_t)(sym[i] ^ (prev[i] >= 0 ? p[prev[i]] : 0));
    rc = d.bad ? 1 : 0;
done:
    free(b);
    free(ctx);
    free(sym);
    free(sym2);
    free(order);
    free(present);
    free(prev);
    free(z);
    free(keys);
    free(last);
    return rc;
}
