/* Hot loops of the lossless depth codecs, one pass each way, GIL released.
 *
 * grad_encode / grad_decode: the planar (gradient) predictor x - left - up + upleft, taken mod
 * 2^16, zigzagged and split into a low-byte plane and a high-byte plane (the planes compress far
 * better than interleaved bytes). Bit-identical to the numpy fallback in grad.py.
 *
 * rvl_encode / rvl_decode: Wilson's RVL (run-length of zeros and non-zeros, zigzagged deltas of
 * the non-zero values in 3-bit variable-length nibbles packed into little-endian 32-bit words),
 * extended to the full uint16 range. Every read is bounds-checked: garbage raises ValueError.
 *
 * qdepth_encode / qdepth_decode: the bounded-error codecs (bounded.py). Values go through a
 * table to a level (0 only for 0, no measurement); a pixel without one takes the level to its left, so
 * the image stays smooth; LOCO-I's median edge predictor (min or max of left and up at an edge,
 * else left + up - upleft, missing neighbours 0) gives a residual at each measured pixel only,
 * zigzagged and packed two 4-bit nibbles a byte (low nibble first); a nibble of 15 says that the
 * residual is 15 or more, and the rest (residual - 15, uint16) follows in a separate stream. The
 * measured pixels are a bit mask (most significant bit first, as numpy.packbits).
 * The encoder runs separate passes over each row (levels, prediction, compaction, escapes) that
 * vectorise or take 8 pixels at a time; tests/test_codecs.py pins its output to a
 * pixel-at-a-time reference.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int get_dims(Py_ssize_t w, Py_ssize_t h) {
    if (w <= 0 || h <= 0 || w > 65536 || h > 65536) {
        PyErr_SetString(PyExc_ValueError, "bad image size");
        return -1;
    }
    return 0;
}

static inline uint16_t zigzag(uint16_t r) {
    int16_t s = (int16_t)r;
    return (uint16_t)(((uint16_t)s << 1) ^ (uint16_t)(s >> 15));
}

static inline uint16_t unzigzag(uint16_t z) { return (uint16_t)((z >> 1) ^ (uint16_t)(-(int)(z & 1))); }

/* Edges use the same predictor with missing neighbours taken as 0; the inner loop has no
   branches so that the compiler can vectorise it. */
static void grad_fwd(const uint16_t *restrict d, uint8_t *restrict lo, uint8_t *restrict hi,
                     Py_ssize_t w, Py_ssize_t h) {
    uint16_t z = zigzag(d[0]);
    lo[0] = (uint8_t)z; hi[0] = (uint8_t)(z >> 8);
    for (Py_ssize_t x = 1; x < w; x++) {
        z = zigzag((uint16_t)(d[x] - d[x - 1]));
        lo[x] = (uint8_t)z; hi[x] = (uint8_t)(z >> 8);
    }
    for (Py_ssize_t y = 1; y < h; y++) {
        const uint16_t *restrict row = d + y * w, *restrict up = row - w;
        uint8_t *restrict l = lo + y * w, *restrict g = hi + y * w;
        z = zigzag((uint16_t)(row[0] - up[0]));
        l[0] = (uint8_t)z; g[0] = (uint8_t)(z >> 8);
        for (Py_ssize_t x = 1; x < w; x++) {
            uint16_t r = (uint16_t)(row[x] - row[x - 1] - up[x] + up[x - 1]);
            uint16_t zz = (uint16_t)((r << 1) ^ (uint16_t)(-(int)(r >> 15)));
            l[x] = (uint8_t)zz; g[x] = (uint8_t)(zz >> 8);
        }
    }
}

static void grad_inv(const uint8_t *restrict lo, const uint8_t *restrict hi, uint16_t *restrict d,
                     Py_ssize_t w, Py_ssize_t h) {
    uint16_t acc = 0;
    for (Py_ssize_t x = 0; x < w; x++) {
        acc = (uint16_t)(acc + unzigzag((uint16_t)(lo[x] | (hi[x] << 8))));
        d[x] = acc;
    }
    for (Py_ssize_t y = 1; y < h; y++) {
        uint16_t *restrict row = d + y * w;
        const uint16_t *restrict up = row - w;
        const uint8_t *restrict l = lo + y * w, *restrict g = hi + y * w;
        /* row[x] = row[x-1] + e[x], e[x] = r[x] + up[x] - up[x-1]: e first (vectorisable),
           then a running sum. */
        row[0] = (uint16_t)(unzigzag((uint16_t)(l[0] | (g[0] << 8))) + up[0]);
        for (Py_ssize_t x = 1; x < w; x++)
            row[x] = (uint16_t)(unzigzag((uint16_t)(l[x] | (g[x] << 8))) + up[x] - up[x - 1]);
        acc = row[0];
        for (Py_ssize_t x = 1; x < w; x++) {
            acc = (uint16_t)(acc + row[x]);
            row[x] = acc;
        }
    }
}

static PyObject *grad_encode(PyObject *self, PyObject *args) {
    Py_buffer in;
    Py_ssize_t w, h;
    if (!PyArg_ParseTuple(args, "y*nn", &in, &w, &h)) return NULL;
    if (get_dims(w, h) < 0 || in.len != w * h * 2) {
        PyBuffer_Release(&in);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "buffer size does not match w*h*2");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 2 * w * h);
    if (!out) { PyBuffer_Release(&in); return NULL; }
    uint8_t *lo = (uint8_t *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    grad_fwd((const uint16_t *)in.buf, lo, lo + w * h, w, h);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    return out;
}

static PyObject *grad_decode(PyObject *self, PyObject *args) {
    Py_buffer in;
    Py_ssize_t w, h;
    if (!PyArg_ParseTuple(args, "y*nn", &in, &w, &h)) return NULL;
    if (get_dims(w, h) < 0 || in.len != w * h * 2) {
        PyBuffer_Release(&in);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "plane size does not match w*h*2");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 2 * w * h);
    if (!out) { PyBuffer_Release(&in); return NULL; }
    const uint8_t *lo = (const uint8_t *)in.buf;
    Py_BEGIN_ALLOW_THREADS
    grad_inv(lo, lo + w * h, (uint16_t *)PyBytes_AS_STRING(out), w, h);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    return out;
}

typedef struct { uint32_t *buf, *p, *end; uint32_t word; int nibbles; } vle_writer;

static int vle_put(vle_writer *w, uint32_t value) {
    do {
        uint32_t nibble = value & 7;
        value >>= 3;
        if (value) nibble |= 8;
        w->word = (w->word << 4) | nibble;
        if (++w->nibbles == 8) {
            if (w->p == w->end) return -1;
            *w->p++ = w->word;
            w->word = 0;
            w->nibbles = 0;
        }
    } while (value);
    return 0;
}

static PyObject *rvl_encode(PyObject *self, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in)) return NULL;
    if (in.len % 2) { PyBuffer_Release(&in); PyErr_SetString(PyExc_ValueError, "odd buffer"); return NULL; }
    Py_ssize_t n = in.len / 2;
    /* worst case: 6 nibbles per value plus two run lengths per value */
    Py_ssize_t cap_words = (n * 14 + 64) / 8 + 2;
    uint32_t *buf = (uint32_t *)PyMem_Malloc((size_t)cap_words * 4);
    if (!buf) { PyBuffer_Release(&in); return PyErr_NoMemory(); }
    vle_writer w = {buf, buf, buf + cap_words, 0, 0};
    const uint16_t *src = (const uint16_t *)in.buf, *end = src + n;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    int32_t previous = 0;
    while (src != end && !err) {
        uint32_t zeros = 0, nonzeros = 0;
        for (; src != end && !*src; src++) zeros++;
        err |= vle_put(&w, zeros);
        for (const uint16_t *p = src; p != end && *p; p++) nonzeros++;
        err |= vle_put(&w, nonzeros);
        for (uint32_t i = 0; i < nonzeros; i++) {
            int32_t current = *src++;
            int32_t delta = current - previous;
            err |= vle_put(&w, (uint32_t)((delta << 1) ^ (delta >> 31)));
            previous = current;
        }
    }
    if (w.nibbles && !err) {
        if (w.p == w.end) err = 1; else *w.p++ = w.word << (4 * (8 - w.nibbles));
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    if (err) { PyMem_Free(buf); PyErr_SetString(PyExc_RuntimeError, "RVL buffer overflow"); return NULL; }
    PyObject *out = PyBytes_FromStringAndSize((const char *)buf, (w.p - buf) * 4);
    PyMem_Free(buf);
    return out;
}

typedef struct { const uint32_t *p, *end; uint32_t word; int nibbles; } vle_reader;

static int vle_get(vle_reader *r, uint32_t *value) {
    uint32_t v = 0;
    int shift = 0;
    for (;;) {
        if (!r->nibbles) {
            if (r->p == r->end) return -1;
            r->word = *r->p++;
            r->nibbles = 8;
        }
        uint32_t nibble = r->word >> 28;
        r->word <<= 4;
        r->nibbles--;
        if (shift > 30) return -1;
        v |= (nibble & 7) << shift;
        shift += 3;
        if (!(nibble & 8)) break;
    }
    *value = v;
    return 0;
}

static PyObject *rvl_decode(PyObject *self, PyObject *args) {
    Py_buffer in;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*n", &in, &n)) return NULL;
    if (n < 0 || n > (Py_ssize_t)1 << 28 || in.len % 4) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "bad RVL size");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 2 * n);
    if (!out) { PyBuffer_Release(&in); return NULL; }
    uint16_t *dst = (uint16_t *)PyBytes_AS_STRING(out);
    vle_reader r = {(const uint32_t *)in.buf, (const uint32_t *)in.buf + in.len / 4, 0, 0};
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    int32_t previous = 0;
    while (i < n && !err) {
        uint32_t zeros, nonzeros;
        if (vle_get(&r, &zeros) || vle_get(&r, &nonzeros) || zeros > (uint32_t)(n - i) ||
            nonzeros > (uint32_t)(n - i - zeros)) { err = 1; break; }
        memset(dst + i, 0, zeros * 2);
        i += zeros;
        for (uint32_t k = 0; k < nonzeros; k++) {
            uint32_t positive;
            if (vle_get(&r, &positive)) { err = 1; break; }
            int32_t delta = (int32_t)(positive >> 1) ^ -(int32_t)(positive & 1);
            int32_t current = previous + delta;
            if (current <= 0 || current > 65535) { err = 1; break; }
            dst[i++] = (uint16_t)current;
            previous = current;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    if (err) { Py_DECREF(out); PyErr_SetString(PyExc_ValueError, "corrupt RVL data"); return NULL; }
    return out;
}

static inline int32_t med(int32_t a, int32_t b, int32_t c) {
    int32_t mx = a > b ? a : b, mn = a < b ? a : b;
    return c >= mx ? mn : (c <= mn ? mx : a + b - c);
}

#define ALL8 0x0101010101010101ULL

/* One row of levels: the table, which pixels are measured (1/0 bytes), and each unmeasured
   pixel given the level to its left. Separate passes: the first two vectorise, and the serial
   fill skips runs of 8 measured pixels. */
static void qd_levels(const uint16_t *restrict row, const uint16_t *restrict table,
                      uint8_t *restrict ok, uint16_t *restrict lv, Py_ssize_t w) {
    for (Py_ssize_t x = 0; x < w; x++) lv[x] = table[row[x]];
    for (Py_ssize_t x = 0; x < w; x++) ok[x] = lv[x] != 0;
    uint16_t left = 0;
    Py_ssize_t x = 0;
    for (; x + 8 <= w; x += 8) {
        uint64_t b;
        memcpy(&b, ok + x, 8);
        if (b == ALL8) { left = lv[x + 7]; continue; }
        for (Py_ssize_t j = x; j < x + 8; j++) { left = lv[j] ? lv[j] : left; lv[j] = left; }
    }
    for (; x < w; x++) { left = lv[x] ? lv[x] : left; lv[x] = left; }
}

/* Median edge prediction in 16-bit lanes (levels < 2^15, so no lane overflows): zigzagged
   residuals, and their nibbles (15 for 15 or more). Returns whether any residual needs an
   escape. cur and up are rows stored from index 1 with a 0 at index 0. */
static int qd_predict(const uint16_t *restrict cur, const uint16_t *restrict up,
                      uint16_t *restrict zz, uint8_t *restrict v, Py_ssize_t w) {
    uint16_t big = 0;
    for (Py_ssize_t x = 0; x < w; x++) {
        int16_t a = (int16_t)cur[x], b = (int16_t)up[x + 1], c = (int16_t)up[x];
        int16_t mx = a > b ? a : b, mn = a < b ? a : b;
        int16_t p = c >= mx ? mn : (c <= mn ? mx : (int16_t)(a + b - c));
        int16_t r = (int16_t)(cur[x + 1] - p);
        uint16_t z = (uint16_t)(((uint16_t)r << 1) ^ (uint16_t)(r >> 15));
        zz[x] = z;
        v[x] = (uint8_t)(z < 15 ? z : 15);
        big |= z >= 15;
    }
    return big != 0;
}

/* The measured pixels' nibbles, in order, to out; 8 at a time where all or none are measured
   (the common case: unmeasured pixels come in patches). Returns how many were kept. */
static Py_ssize_t qd_compact(const uint8_t *restrict ok, const uint8_t *restrict v,
                             uint8_t *restrict out, Py_ssize_t w) {
    Py_ssize_t kept = 0, x = 0;
    for (; x + 8 <= w; x += 8) {
        uint64_t b;
        memcpy(&b, ok + x, 8);
        if (b == ALL8) { memcpy(out + kept, v + x, 8); kept += 8; continue; }
        if (b == 0) continue;
        for (Py_ssize_t j = x; j < x + 8; j++) { out[kept] = v[j]; kept += ok[j]; }
    }
    for (; x < w; x++) { out[kept] = v[x]; kept += ok[x]; }
    return kept;
}

/* Appends the escapes (residual - 15) of the row's measured pixels whose nibble is 15, in
   order, growing *esc when full. Looks at 8 pixels at a time: most have no escape. */
static int qd_escapes(const uint8_t *restrict ok, const uint8_t *restrict v,
                      const uint16_t *restrict zz, Py_ssize_t w, uint16_t **esc, Py_ssize_t *e,
                      Py_ssize_t *cap) {
    for (Py_ssize_t x = 0; x < w; x += 8) {
        uint64_t hit = 0, a, b;
        if (x + 8 <= w) {  /* a byte's bit 0 stays set iff its low 4 bits are 1 (v == 15) */
            memcpy(&a, ok + x, 8);
            memcpy(&b, v + x, 8);
            hit = a & b & (b >> 1) & (b >> 2) & (b >> 3);
        } else {
            for (Py_ssize_t j = x; j < w; j++) hit |= (uint64_t)(ok[j] & (v[j] == 15)) << (8 * (j - x));
        }
        for (int j = 0; hit; j++, hit >>= 8) {
            if (!(hit & 1)) continue;
            if (*e == *cap) {  /* escapes are rare: start small, grow when needed */
                uint16_t *more = realloc(*esc, (size_t)*cap * 4);
                if (!more) return -1;
                *esc = more;
                *cap *= 2;
            }
            (*esc)[(*e)++] = (uint16_t)(zz[x + j] - 15);
        }
    }
    return 0;
}

static PyObject *qdepth_encode(PyObject *self, PyObject *args) {
    Py_buffer in, lut;
    Py_ssize_t w, h;
    if (!PyArg_ParseTuple(args, "y*y*nn", &in, &lut, &w, &h)) return NULL;
    if (get_dims(w, h) < 0 || in.len != w * h * 2 || lut.len != 65536 * 2) {
        PyBuffer_Release(&in); PyBuffer_Release(&lut);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad image or table size");
        return NULL;
    }
    Py_ssize_t n = w * h, cap = n / 16 + 64, k = 0, e = 0;
    int failed = 0;
    /* valid and vals span the image, so that the mask and the nibbles are packed in one
       vectorised pass each at the end; vals has room for the compaction's overshoot */
    uint8_t *valid = malloc((size_t)n), *vals = malloc((size_t)n + 8), *v = malloc((size_t)w);
    uint8_t *mask = malloc((size_t)(n + 7) / 8), *nib = malloc((size_t)(n + 1) / 2);
    uint16_t *esc = malloc((size_t)cap * 2), *rows = malloc((size_t)(w + 1) * 4);
    uint16_t *zz = malloc((size_t)w * 2);
    if (!mask || !nib || !esc || !rows || !zz || !valid || !vals || !v) {
        free(mask); free(nib); free(esc); free(rows); free(zz); free(valid); free(vals); free(v);
        PyBuffer_Release(&in); PyBuffer_Release(&lut);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    const uint16_t *d = (const uint16_t *)in.buf, *table = (const uint16_t *)lut.buf;
    uint16_t *up = rows, *cur = rows + w + 1;
    memset(rows, 0, (size_t)(w + 1) * 4);
    for (Py_ssize_t y = 0; y < h && !failed; y++) {
        uint8_t *ok = valid + y * w;
        qd_levels(d + y * w, table, ok, cur + 1, w);
        int big = qd_predict(cur, up, zz, v, w);
        k += qd_compact(ok, v, vals + k, w);
        if (big && qd_escapes(ok, v, zz, w, &esc, &e, &cap) < 0) failed = 1;
        uint16_t *t = up; up = cur; cur = t;
    }
    if (!failed) {
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) {  /* 8 bytes of 0/1 to 8 bits, the first the highest */
            uint64_t b;
            memcpy(&b, valid + i, 8);
            mask[i >> 3] = (uint8_t)((b * 0x8040201008040201ULL) >> 56);
        }
        if (i < n) {
            uint8_t bits = 0;
            for (Py_ssize_t j = i; j < n; j++) bits |= (uint8_t)(valid[j] << (7 - (j - i)));
            mask[i >> 3] = bits;
        }
        vals[k] = 0;
        for (Py_ssize_t j = 0; j < (k + 1) / 2; j++)
            nib[j] = (uint8_t)(vals[2 * j] | (vals[2 * j + 1] << 4));
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in); PyBuffer_Release(&lut);
    PyObject *out = failed ? PyErr_NoMemory() : Py_BuildValue("(y#y#y#)", (const char *)mask, (n + 7) / 8, (const char *)nib,
                                  (k + 1) / 2, (const char *)esc, e * 2);
    free(mask); free(nib); free(esc); free(rows); free(zz); free(valid); free(vals); free(v);
    return out;
}

static PyObject *qdepth_decode(PyObject *self, PyObject *args) {
    Py_buffer mb, nb, eb, rb;
    Py_ssize_t w, h;
    if (!PyArg_ParseTuple(args, "y*y*y*y*nn", &mb, &nb, &eb, &rb, &w, &h)) return NULL;
    Py_ssize_t n = w * h, levels = rb.len / 2;
    int err = get_dims(w, h) < 0 || mb.len != (n + 7) / 8 || eb.len % 2 || levels < 1;
    PyObject *out = err ? NULL : PyBytes_FromStringAndSize(NULL, 2 * n);
    uint16_t *rows = err ? NULL : malloc((size_t)w * 4);
    if (!out || !rows) {
        PyBuffer_Release(&mb); PyBuffer_Release(&nb); PyBuffer_Release(&eb); PyBuffer_Release(&rb);
        Py_XDECREF(out); free(rows);
        if (!PyErr_Occurred()) {
            if (err) PyErr_SetString(PyExc_ValueError, "corrupt qdepth data");
            else PyErr_NoMemory();
        }
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *mask = mb.buf, *nib = nb.buf;
    const uint16_t *esc = eb.buf, *rec = rb.buf;
    Py_ssize_t nibbles = nb.len * 2, escapes = eb.len / 2, k = 0, e = 0;
    uint16_t *dst = (uint16_t *)PyBytes_AS_STRING(out), *up = rows, *cur = rows + w;
    memset(up, 0, (size_t)w * 2);
    for (Py_ssize_t y = 0; y < h && !err; y++) {
        for (Py_ssize_t x = 0; x < w; x++) {
            Py_ssize_t i = y * w + x;
            int32_t a = x ? cur[x - 1] : 0;
            if (!(mask[i >> 3] & (0x80 >> (i & 7)))) { cur[x] = (uint16_t)a; dst[i] = 0; continue; }
            if (k >= nibbles) { err = 1; break; }
            uint32_t z = k & 1 ? nib[k >> 1] >> 4 : nib[k >> 1] & 15;
            k++;
            if (z == 15) {
                if (e >= escapes) { err = 1; break; }
                z = 15 + (uint32_t)esc[e++];
            }
            int32_t q = med(a, up[x], x ? up[x - 1] : 0) + (int32_t)((z >> 1) ^ -(z & 1));
            if (q <= 0 || q >= levels) { err = 1; break; }
            cur[x] = (uint16_t)q;
            dst[i] = rec[q];
        }
        uint16_t *t = up; up = cur; cur = t;
    }
    if ((k + 1) / 2 != nb.len || e != escapes) err = 1;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&mb); PyBuffer_Release(&nb); PyBuffer_Release(&eb); PyBuffer_Release(&rb);
    free(rows);
    if (err) { Py_DECREF(out); PyErr_SetString(PyExc_ValueError, "corrupt qdepth data"); return NULL; }
    return out;
}

/* YUY2 (Y0 U Y1 V per pixel pair, BT.601 video range) -> JFIF planes (full range): Y (w*h),
 * then U and V (w/2 * h/vsub each; vsub 2 averages each pair of rows). One pass, no BGR. */
/* video range to full range in 16-bit lanes (SSE2 and NEON multiply those natively):
 * Y' = (Y - 16) * 149 / 128 (~255/219), C' = (C - 128) * 146 / 128 + 128 (~255/224) */
static inline uint8_t full_y(uint16_t v) {
    uint16_t t = (uint16_t)(v > 16 ? v - 16 : 0);
    t = (uint16_t)((uint16_t)(t * 149 + 64) >> 7);
    return (uint8_t)(t > 255 ? 255 : t);
}

static inline uint8_t full_c(uint16_t v) { /* ((v - 128) * 146 + 64 >> 7) + 128, unsigned */
    uint16_t t = (uint16_t)((uint16_t)(v * 146 + 64) >> 7);
    t = (uint16_t)(t > 18 ? t - 18 : 0);
    return (uint8_t)(t > 255 ? 255 : t);
}

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define YUY2_SSE2 1
/* (x * mul + 64) >> 7 in 16-bit lanes: the stretch of full_y and full_c */
static inline __m128i stretch16(__m128i x, __m128i mul) {
    return _mm_srli_epi16(_mm_add_epi16(_mm_mullo_epi16(x, mul), _mm_set1_epi16(64)), 7);
}
#endif

/* one row of luma: the low byte of each word, stretched (packus clamps to 255) */
static void yuy2_luma(const uint8_t *restrict src, uint8_t *restrict py, Py_ssize_t w) {
    Py_ssize_t i = 0;
#ifdef YUY2_SSE2
    const __m128i lo = _mm_set1_epi16(0xff), k16 = _mm_set1_epi16(16), mul = _mm_set1_epi16(149);
    for (; i + 16 <= w; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + 2 * i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + 2 * i + 16));
        a = stretch16(_mm_subs_epu16(_mm_and_si128(a, lo), k16), mul);
        b = stretch16(_mm_subs_epu16(_mm_and_si128(b, lo), k16), mul);
        _mm_storeu_si128((__m128i *)(py + i), _mm_packus_epi16(a, b));
    }
#endif
    for (; i < w; i++) py[i] = full_y(src[2 * i]);
}

/* one row of chroma from rows a and b (the same row for 4:2:2): the high bytes averaged,
 * stretched and split into U and V */
static void yuy2_chroma(const uint8_t *restrict a, const uint8_t *restrict b, uint8_t *restrict u,
                        uint8_t *restrict v, Py_ssize_t w) {
    Py_ssize_t x = 0;
#ifdef YUY2_SSE2
    const __m128i mul = _mm_set1_epi16(146), k18 = _mm_set1_epi16(18), lo = _mm_set1_epi16(0xff);
    for (; x + 16 <= w; x += 16) {
        __m128i a0 = _mm_loadu_si128((const __m128i *)(a + 2 * x));
        __m128i a1 = _mm_loadu_si128((const __m128i *)(a + 2 * x + 16));
        __m128i b0 = _mm_loadu_si128((const __m128i *)(b + 2 * x));
        __m128i b1 = _mm_loadu_si128((const __m128i *)(b + 2 * x + 16));
        /* rounded averages of the bytes; the high byte of each word is the chroma */
        __m128i c0 = _mm_srli_epi16(_mm_avg_epu8(a0, b0), 8);
        __m128i c1 = _mm_srli_epi16(_mm_avg_epu8(a1, b1), 8);
        c0 = _mm_subs_epu16(stretch16(c0, mul), k18);
        c1 = _mm_subs_epu16(stretch16(c1, mul), k18);
        __m128i uv = _mm_packus_epi16(c0, c1); /* U V U V ... */
        uv = _mm_packus_epi16(_mm_and_si128(uv, lo), _mm_srli_epi16(uv, 8)); /* 8 U, 8 V */
        _mm_storel_epi64((__m128i *)(u + x / 2), uv);
        _mm_storel_epi64((__m128i *)(v + x / 2), _mm_srli_si128(uv, 8));
    }
#endif
    for (; x < w; x += 2) {
        u[x / 2] = full_c((uint16_t)((a[2 * x + 1] + b[2 * x + 1] + 1) >> 1));
        v[x / 2] = full_c((uint16_t)((a[2 * x + 3] + b[2 * x + 3] + 1) >> 1));
    }
}

static void yuy2_split(const uint8_t *restrict src, uint8_t *restrict py, uint8_t *restrict pu,
                       uint8_t *restrict pv, Py_ssize_t w, Py_ssize_t h, int vsub) {
    /* Y is each word's low byte; a row's chroma (U V U V ...) its high bytes, averaged with
     * the next row's for 4:2:0, stretched, then split. One pass over the frame: a group of
     * vsub rows gives its luma and then, while those rows are still in cache, its chroma */
    Py_ssize_t half = w / 2;
    for (Py_ssize_t y = 0; y < h; y += vsub) {
        const uint8_t *a = src + y * w * 2, *b = (vsub == 2) ? a + w * 2 : a;
        yuy2_luma(a, py + y * w, w);
        if (vsub == 2) yuy2_luma(b, py + (y + 1) * w, w);
        yuy2_chroma(a, b, pu + (y / vsub) * half, pv + (y / vsub) * half, w);
    }
}

static PyObject *yuy2_planes(PyObject *self, PyObject *args) {
    Py_buffer in, out;
    Py_ssize_t w, h;
    int vsub;
    if (!PyArg_ParseTuple(args, "y*nniw*", &in, &w, &h, &vsub, &out)) return NULL;
    Py_ssize_t chroma = (w / 2) * (h / (vsub == 2 ? 2 : 1));
    if (get_dims(w, h) < 0 || w % 2 || (vsub != 1 && vsub != 2) || h % vsub
        || in.len != w * h * 2 || out.len < w * h + 2 * chroma) {
        PyBuffer_Release(&in);
        PyBuffer_Release(&out);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "YUY2 needs an even width (and height for 4:2:0), "
                                              "w*h*2 bytes in and room for the planes out");
        return NULL;
    }
    uint8_t *py = (uint8_t *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    yuy2_split((const uint8_t *)in.buf, py, py + w * h, py + w * h + chroma, w, h, vsub);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return PyLong_FromSsize_t(w * h + 2 * chroma);
}

static PyMethodDef methods[] = {
    {"grad_encode", grad_encode, METH_VARARGS, "uint16 image -> residual byte planes"},
    {"grad_decode", grad_decode, METH_VARARGS, "residual byte planes -> uint16 image"},
    {"rvl_encode", rvl_encode, METH_VARARGS, "uint16 pixels -> RVL bytes"},
    {"rvl_decode", rvl_decode, METH_VARARGS, "RVL bytes, pixel count -> uint16 pixels"},
    {"qdepth_encode", qdepth_encode, METH_VARARGS, "depth, level table -> mask, nibbles, escapes"},
    {"qdepth_decode", qdepth_decode, METH_VARARGS, "mask, nibbles, escapes, levels -> depth"},
    {"yuy2_planes", yuy2_planes, METH_VARARGS, "YUY2 (video range) -> JFIF Y, U, V planes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
