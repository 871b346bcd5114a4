/* The rans block coder of spikeweave.compression.ranscode, in C: the rANS encoder loop and the
   block decoder.

   It must write and read exactly the bitstream of ranscode (_rans_encode_python and
   _decode_python: rANS with 32-bit states in [2^16, 2^32) renormalised by 16-bit words, 12-bit
   frequencies, three states interleaved as T, X, Y of each event; raw bits MSB first).
   tests/compression/test_rans.py holds the two equal byte for byte. The decoder does a table
   lookup, a multiply and a shift per symbol, no divide, and is written without data-dependent
   branches where the data is unpredictable (a symbol reads at most one word, selected, not
   looped; the raw bits come from one unaligned 64-bit load): mispredicted branches, not the
   arithmetic, were most of its time. The selections are masks, since gcc 12 -O2 turns ?: into
   branches (10-20 % of the time on N-MNIST). The contexts come from the tokens, not the decoded
   values, so the next symbol does not wait on the raw-bit reads; a coordinate's raw bits (only
   past 1023) are read behind a branch, predicted on any sensor up to 1024 pixels a side.

   Every table is checked (symbols inside the alphabet, at least two present, frequencies
   summing to 2^pb, none above 2^pb - 2^pb / 64) and every decoded value against the sensor, so a
   crafted block can make wrong events (caught by the CRC-32 in Python) but never touch memory
   out of range. Returns: encoder, the stream length (-1 buffer too small); decoder 0, 1 for
   invalid data, 2 when the workspace is too small. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SF_RANS_VERSION 1
#define ZIGZAG 1
#define DELTAS 2
#define PROB_SCALE 4096u /* the largest table; a block's tables have 2^pb slots, pb 10..12 */
#define RANS_L (1u << 16)
#define T_K 4
#define C_K 10
#define T_ALPHA ((1 << T_K) + 4 * (64 - T_K))
#define C_ALPHA ((1 << C_K) + 4 * (16 - C_K))
#define N_TABLES 9
#define PAD 48 /* zero bytes after each copied stream: more than one event can read past it */

int sf_rans_version(void) { return SF_RANS_VERSION; }

/* Symbols k = n_sym-1 .. 0 into lane k % 3 with tables of 2^pb slots, bytes written backwards
   from the end of out. Returns the number of bytes written at out[cap - len .. cap). */
int64_t sf_rans_encode(const uint16_t *freq, const uint16_t *start, int64_t n_sym, int32_t pb,
                       uint8_t *out, int64_t cap) {
    uint32_t st[3] = {RANS_L, RANS_L, RANS_L};
    uint8_t *p = out + cap;
    int lane = (int)((n_sym - 1) % 3);
    if (n_sym <= 0) lane = 0;
    for (int64_t k = n_sym - 1; k >= 0; k--) {
        uint32_t f = freq[k], s = st[lane];
        uint32_t limit = ((RANS_L >> pb) << 16) * f;
        if (s >= limit) {
            if (p - out < 2) return -1;
            p -= 2;
            p[0] = (uint8_t)s;
            p[1] = (uint8_t)(s >> 8);
            s >>= 16;
        }
        st[lane] = ((s / f) << pb) + (s % f) + start[k];
        lane = lane ? lane - 1 : 2;
    }
    for (int l = 2; l >= 0; l--) {
        if (p - out < 4) return -1;
        p -= 4;
        p[0] = (uint8_t)st[l];
        p[1] = (uint8_t)(st[l] >> 8);
        p[2] = (uint8_t)(st[l] >> 16);
        p[3] = (uint8_t)(st[l] >> 24);
    }
    return (int64_t)(out + cap - p);
}

/* One table's 4096 slots as two arrays (filling them vectorises; a 6-byte struct per slot
   took 1.4 ns a slot, 11 ns an event on N-MNIST): freq << 16 | (slot - start), and the symbol */
typedef struct {
    uint32_t fo[PROB_SCALE];
    uint16_t sym[PROB_SCALE];
} slot_t;

/* Parse one table at data[*pos]; fill tab[4096] (when used). 0 ok, 1 invalid. */
static int read_table(const uint8_t *data, int64_t n, int64_t *pos, int alphabet, int pb,
                      slot_t *tab, int *used) {
    const uint32_t scale = 1u << pb, max_freq = scale - (scale >> 6);
    int64_t q = *pos;
    if (q >= n) return 1;
    int kind = data[q++];
    if (kind == 0) {
        *used = 0;
        *pos = q;
        return 0;
    }
    if (kind > 2 || q + 2 > n) return 1;
    int max_sym = data[q] | (data[q + 1] << 8);
    q += 2;
    int nb = (max_sym + 8) / 8;
    if (max_sym >= alphabet || q + nb + 2 > n) return 1;
    const uint8_t *bm = data + q;
    q += nb;
    /* padding bits above max_sym are zero, max_sym itself present */
    if (!((bm[max_sym >> 3] >> (max_sym & 7)) & 1)) return 1;
    if ((bm[nb - 1] >> ((max_sym & 7) + 1)) != 0) return 1;
    int count = 0;
    for (int i = 0; i < nb; i++) count += __builtin_popcount(bm[i]);
    int implied = data[q] | (data[q + 1] << 8);
    q += 2;
    int k = count - 1;
    if (k < 1 || implied > k || q + (int64_t)kind * k > n) return 1;
    const uint8_t *fr = data + q;
    q += (int64_t)kind * k;
    uint32_t sum = 0;
    for (int i = 0; i < k; i++) sum += (kind == 2 ? (uint32_t)(fr[2 * i] | (fr[2 * i + 1] << 8)) : fr[i]) + 1;
    if (sum >= scale) return 1;
    uint32_t rest = scale - sum;
    if (rest > max_freq) return 1;
    uint32_t slot = 0;
    int idx = 0, given = 0;
    for (int s = 0; s <= max_sym; s++) {
        if (!((bm[s >> 3] >> (s & 7)) & 1)) continue;
        uint32_t f;
        if (idx == implied) f = rest;
        else {
            f = (kind == 2 ? (uint32_t)(fr[2 * given] | (fr[2 * given + 1] << 8)) : fr[given]) + 1;
            given++;
        }
        idx++;
        if (f > max_freq) return 1;
        uint32_t *fo = tab->fo + slot;
        uint16_t *sy = tab->sym + slot;
        for (uint32_t j = 0; j < f; j++) fo[j] = (f << 16) | j;
        for (uint32_t j = 0; j < f; j++) sy[j] = (uint16_t)s;
        slot += f;
    }
    *used = 1;
    *pos = q;
    return 0;
}

/* The raw bits, copied into a buffer with PAD zero bytes after them: the decoder checks the
   position once per event, and an event reads at most 3 x 61 bits, so every unaligned 64-bit
   load stays inside the buffer. */
typedef struct {
    const uint8_t *buf;
    uint64_t pos;
} bits_t;

static inline uint64_t load_be64(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return __builtin_bswap64(w); /* little-endian hosts */
}

/* nb <= 56 bits, MSB first (nb = 0 gives 0) */
static inline uint64_t get_bits(bits_t *b, int nb) {
    uint64_t w = load_be64(b->buf + (b->pos >> 3)) << (b->pos & 7);
    b->pos += (uint64_t)nb;
    return (w >> 1) >> (63 - nb);
}

/* The value of token tok (< 2^k: itself; else its b - 3 raw bits follow). Selected by masks,
   not ?:, which gcc 12 -O2 compiles to a branch that mispredicts on unpredictable tokens; the
   contexts are taken from the tokens, so nothing waits on this. */
static inline uint64_t untoken(uint32_t tok, int k, bits_t *b) {
    uint32_t big = tok >= (1u << k);
    uint32_t j = tok - (1u << k);
    int nb = (int)(((j >> 2) + (uint32_t)k - 2) & (0u - big)); /* b - 3, b = j/4 + k + 1 */
    uint64_t low;
    if (__builtin_expect(nb > 56, 0)) {
        uint64_t hi = get_bits(b, nb - 32);
        low = (hi << 32) | get_bits(b, 32);
    } else {
        low = get_bits(b, nb);
    }
    uint64_t v = ((uint64_t)(4 | (j & 3)) << nb) | low;
    uint64_t m = 0 - (uint64_t)big;
    return (v & m) | (tok & ~m);
}

/* c ? n : v for c in {0, 1}, by a mask: gcc 12 -O2 compiles ?: here (even with
   __builtin_expect_with_probability) to a branch, which mispredicts on about every third
   symbol (10-15 % of the decode time on N-MNIST). */
static inline uint32_t select_u32(uint32_t c, uint32_t n, uint32_t v) {
    return v ^ ((v ^ n) & (0u - c));
}

#define GET(lane, tab, out)                                            \
    do {                                                               \
        uint32_t s_ = st[lane];                                        \
        uint32_t i_ = s_ & mask;                                       \
        uint32_t e_ = (tab)->fo[i_];                                   \
        s_ = (e_ >> 16) * (s_ >> pb) + (e_ & 0xFFFF);                  \
        uint32_t low_ = s_ < RANS_L;                                   \
        uint32_t word_ = (uint32_t)rp[0] | ((uint32_t)rp[1] << 8);     \
        s_ = select_u32(low_, (s_ << 16) | word_, s_);                 \
        rp += 2 * low_;                                                \
        st[lane] = s_;                                                 \
        out = (tab)->sym[i_];                                          \
    } while (0)

#define fail(slots, rc) (rc)

/* The events of a block, inlined once per pixel mode and timestamp coding: with those
   constant, the mode tests leave the loop and its values fit in registers better (the general
   loop spilled the rANS states to the stack): ~20 % faster on N-MNIST. Constant table sizes
   as well (12 copies) measured no better. */
static inline __attribute__((always_inline)) int
decode_loop(const slot_t *const *tab, const uint32_t *st0, const uint8_t *rp, const uint8_t *rend,
            const uint8_t *rawc, int64_t raw_len, int64_t n, uint32_t w, uint32_t h,
            int64_t t_first, uint8_t *out, const int pb, const int zig, const int deltas) {
    uint32_t st[3] = {st0[0], st0[1], st0[2]}; /* locals: out (bytes) may alias any pointer */
    bits_t bits = {rawc, 0};
    const uint64_t raw_bits = 8 * (uint64_t)raw_len;
    const uint32_t mask = (1u << pb) - 1;
    uint64_t t = 0;
    uint32_t x = 0, y = 0;
    int prev_cls = 0;
    /* x * 3 / w without a divide: x >= ceil(w / 3) and x >= ceil(2 w / 3) */
    const uint32_t third1 = (w + 2) / 3, third2 = (2 * w + 2) / 3;
    for (int64_t i = 0; i < n; i++) {
        uint32_t tok, xs, ys;
        const slot_t *tt = tab[prev_cls];
        if (!tt) return 1;
        GET(0, tt, tok);
        uint64_t z = untoken(tok, T_K, &bits);
        int cls = (tok != 0) + (tok >= (1u << T_K)); /* (z != 0) + (z >= 16), without the bits */
        uint64_t d = zig ? ((z >> 1) ^ (0 - (z & 1))) : z;
        if (i == 0 && d) return 1;
        t += d; /* wraps as int64 */
        const slot_t *xt = tab[3 + cls];
        if (!xt) return 1;
        GET(1, xt, xs);
        uint64_t vx = xs; /* raw bits only past 1023: a predicted branch on most sensors */
        if (__builtin_expect(xs >= (1u << C_K), 0)) vx = untoken(xs, C_K, &bits);
        int cy;
        if (deltas) {
            cy = (vx != 0) + ((vx != 0) & (vx != 1) & (vx != w - 1));
            if (vx >= w) return 1;
            x = i ? x + (uint32_t)vx : (uint32_t)vx; /* both < w: one subtraction wraps */
            if (x >= w) x -= w;
        } else {
            if (vx >= w) return 1;
            x = (uint32_t)vx;
            cy = (x >= third1) + (x >= third2);
        }
        const slot_t *yt = tab[6 + cy];
        if (!yt) return 1;
        GET(2, yt, ys);
        uint64_t vy = ys >> 1;
        if (__builtin_expect(vy >= (1u << C_K), 0)) vy = untoken((uint32_t)vy, C_K, &bits);
        if (vy >= h) return 1;
        y = (deltas && i) ? y + (uint32_t)vy : (uint32_t)vy;
        if (y >= h) y -= h;
        /* past the end of either stream: invalid (and the padding is never overrun) */
        if (bits.pos > raw_bits || rp > rend) return 1;
        uint8_t *rec = out + 13 * i;
        uint64_t tv = t + (uint64_t)t_first;
        uint16_t xv = (uint16_t)x, yv = (uint16_t)y;
        memcpy(rec, &tv, 8); /* little-endian hosts (linux/darwin on x86-64 and arm64) */
        memcpy(rec + 8, &xv, 2);
        memcpy(rec + 10, &yv, 2);
        rec[12] = (uint8_t)(ys & 1);
        prev_cls = cls;
    }
    /* the end: every state back at its start, every byte used, zero padding */
    int ok = st[0] == RANS_L && st[1] == RANS_L && st[2] == RANS_L && rp == rend;
    uint64_t left = raw_bits - bits.pos;
    ok = ok && left < 8 && get_bits(&bits, (int)left) == 0;
    return ok ? 0 : 1;
}

/* Decodes straight into n packed 13-byte event records (t i64, x u16, y u16, p u8, little
   endian: spikeweave.data.events.EVENT_DTYPE), so no column is copied afterwards. */
int64_t sf_rans_workspace(int64_t n_data) {
    return (int64_t)(sizeof(slot_t) * N_TABLES) + n_data + 2 * PAD;
}

/* work: sf_rans_workspace(n_data) bytes from the caller, reused between blocks (a fresh
   220 KB allocation per block cost ~10 ns an event on N-MNIST, in page faults). */
int sf_rans_decode(const uint8_t *data, int64_t n_data, int64_t n, int64_t width, int64_t height,
                   int32_t flags, int64_t t_first, uint8_t *out, uint8_t *work,
                   int64_t work_len) {
    static const int alpha[N_TABLES] = {T_ALPHA, T_ALPHA, T_ALPHA, C_ALPHA, C_ALPHA,
                                        C_ALPHA, 2 * C_ALPHA, 2 * C_ALPHA, 2 * C_ALPHA};
    if (n_data < 2 || data[0] < 10 || data[0] > 12 || data[1] > 7) return 1;
    const int pb = data[0], shared = data[1];
    /* the tables, then the rANS words and the raw bits copied with zero padding after each
       (so reads up to 8 bytes past either end stay inside the buffer, and read zeros) */
    size_t tab_bytes = sizeof(slot_t) * N_TABLES;
    if (work_len < sf_rans_workspace(n_data)) return 2;
    slot_t *slots = (slot_t *)work;
    uint8_t *copy = (uint8_t *)slots + tab_bytes;
    /* an unused table decodes nothing: its slots stay NULL */
    const slot_t *tab[N_TABLES];
    int64_t pos = 2;
    for (int i = 0; i < N_TABLES; i++) {
        int used = 0;
        if ((shared >> (i / 3)) & 1 && i % 3) { /* the kind's one table serves every context */
            tab[i] = tab[i - 1];
            continue;
        }
        if (read_table(data, n_data, &pos, alpha[i], pb, slots + i, &used)) return fail(slots, 1);
        tab[i] = used ? slots + i : NULL;
    }
    if (pos + 4 > n_data) return fail(slots, 1);
    uint32_t r_len = (uint32_t)data[pos] | ((uint32_t)data[pos + 1] << 8) |
                     ((uint32_t)data[pos + 2] << 16) | ((uint32_t)data[pos + 3] << 24);
    pos += 4;
    if (r_len < 12 || (int64_t)r_len > n_data - pos) return fail(slots, 1);
    memcpy(copy, data + pos, r_len);
    memset(copy + r_len, 0, PAD);
    uint8_t *rawc = copy + r_len + PAD;
    int64_t raw_len = n_data - pos - r_len;
    memcpy(rawc, data + pos + r_len, (size_t)raw_len);
    memset(rawc + raw_len, 0, PAD);
    const uint8_t *rp = copy, *rend = copy + r_len;
    uint32_t st[3];
    for (int l = 0; l < 3; l++) {
        st[l] = (uint32_t)rp[0] | ((uint32_t)rp[1] << 8) | ((uint32_t)rp[2] << 16) |
                ((uint32_t)rp[3] << 24);
        rp += 4;
        if (st[l] < RANS_L) return fail(slots, 1);
    }
    const int zig = (flags & ZIGZAG) != 0, deltas = (flags & DELTAS) != 0;
    const uint32_t w = (uint32_t)width, h = (uint32_t)height;
#define LOOP(z_, d_) \
    decode_loop(tab, st, rp, rend, rawc, raw_len, n, w, h, t_first, out, pb, z_, d_)
    if (deltas) return zig ? LOOP(1, 1) : LOOP(0, 1);
    return zig ? LOOP(1, 0) : LOOP(0, 0);
#undef LOOP
}
