/* A colored, registered, occlusion-tested point cloud in two passes over the depth image, with
 * the GIL released. The same algorithm as geometry/register.py + pointcloud.py (the numpy
 * reference the tests compare it with):
 *
 *   pass 1: every depth pixel -> ray * z -> R p + t -> distorted projection (u, v) in the color
 *           camera; the point's camera depth goes into a z-buffer of cells of about one depth
 *           pixel's footprint, into the 2x2 cells around it.
 *   pass 2: a point is visible if it is inside the color image, within the tolerance of its
 *           cell's nearest surface, and not on the near side of a depth edge (a rim); visible
 *           points take the color at the rounded (u, v), converted BGR -> RGB.
 *
 * cloud(depth, w, h, rays, params, color, points_out, colors_out, mask_out, scratch) -> n
 *   depth: uint16 h*w (already decimated by the caller's strides: see pointcloud.py), rays:
 *   float32 h*w*2, params: float64[PARAMS] (layout below), color: uint8 ch*cw*3 BGR,
 *   points_out: float32 (h*w*3), colors_out: uint8 (h*w*3), mask_out: uint8 h*w, scratch:
 *   5*h*w + w + h*w/4 + the z-buffer's cells + 1 float32s (the caller keeps it: fresh pages cost page faults).
 *   Unorganised: the first n rows of points_out/colors_out are written. Organised: every pixel
 *   is written (NaN / 0 where no point), mask_out says which are points.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum {
    P_R = 0,        /* 9: rotation, row-major */
    P_T = 9,        /* 3: translation (m) */
    P_FX = 12, P_FY, P_CX, P_CY,
    P_K = 16,       /* 8: k1 k2 p1 p2 k3 k4 k5 k6 */
    P_CW = 24, P_CH, P_UNITS, P_CELL,
    P_ZLO = 28, P_ZHI,
    P_BOX = 30,     /* 6: xmin ymin zmin xmax ymax zmax */
    P_FLAGS = 36,
    PARAMS = 37
};
enum { F_ORGANIZED = 1, F_KEEP_UNCOLORED = 2, F_ZRANGE = 4, F_BOX = 8, F_DISTORT = 16 };

static inline float tol(float z) { return 0.02f * z + 0.01f; }


#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* one build, two versions: AVX2 where the CPU has it (chosen at load), SSE2 elsewhere */
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

typedef struct {
    float r[9], t[3], fx, fy, cx, cy, k[8], units, umax, vmax, icell;
    int32_t gw, cw, sentinel;
} Geo;

/* pass 1, no branches so that it vectorises. For each pixel: its depth in the color camera (sz);
   the first of the 2x2 z-buffer cells it splats into (splat; -1: no depth or outside the color
   image); the cell it is tested against (own; the sentinel cell, which is -inf, when none); the
   color pixel it takes (cidx); and how far behind itself a neighbour may be before this pixel
   is a rim (far = z - tolerance; -inf without depth). */
static inline __attribute__((always_inline)) void
project_loop(const uint16_t *restrict depth, const float *restrict rays, const Geo *g, Py_ssize_t n,
             float *restrict sz, float *restrict far, int32_t *restrict splat, int32_t *restrict own,
             int32_t *restrict cidx, const int distort) {
    const float r0 = g->r[0], r1 = g->r[1], r2 = g->r[2], r3 = g->r[3], r4 = g->r[4];
    const float r5 = g->r[5], r6 = g->r[6], r7 = g->r[7], r8 = g->r[8];
    const float tx = g->t[0], ty = g->t[1], tz = g->t[2], units = g->units, icell = g->icell;
    const float fx = g->fx, fy = g->fy, cx = g->cx, cy = g->cy, umax = g->umax, vmax = g->vmax;
    const float k1 = g->k[0], k2 = g->k[1], p1 = g->k[2], p2 = g->k[3], k3 = g->k[4];
    const float k4 = g->k[5], k5 = g->k[6], k6 = g->k[7];
    const int32_t gw = g->gw, cw = g->cw, sentinel = g->sentinel;
    for (Py_ssize_t i = 0; i < n; i++) {
        const float z = (float)depth[i] * units;
        const float px = rays[2 * i] * z, py = rays[2 * i + 1] * z;
        const float qx = r0 * px + r1 * py + r2 * z + tx;
        const float qy = r3 * px + r4 * py + r5 * z + ty;
        const float qz = r6 * px + r7 * py + r8 * z + tz;
        const float inv = 1.0f / (qz > 1e-6f ? qz : 1e-6f);
        float x = qx * inv, y = qy * inv;
        if (distort) {
            const float rr = x * x + y * y;
            const float radial = (1 + rr * (k1 + rr * (k2 + rr * k3))) / (1 + rr * (k4 + rr * (k5 + rr * k6)));
            const float xy = x * y;
            const float xd = x * radial + 2 * p1 * xy + p2 * (rr + 2 * x * x);
            const float yd = y * radial + p1 * (rr + 2 * y * y) + 2 * p2 * xy;
            x = xd;
            y = yd;
        }
        const float u = x * fx + cx, v = y * fy + cy;
        const int ok = (z > 0) & (qz > 1e-6f) & (u >= -0.5f) & (u < umax) & (v >= -0.5f) & (v < vmax);
        /* inside the image, u/icell - 0.5 > -1: (int)(x + 1) - 1 is its floor */
        const float uc = ok ? u * icell : 0.0f, vc = ok ? v * icell : 0.0f;
        const int32_t s0 = ((int32_t)(vc + 0.5f)) * gw + (int32_t)(uc + 0.5f);
        const int32_t o0 = ((int32_t)(vc + 1.0f)) * gw + (int32_t)(uc + 1.0f);
        splat[i] = ok ? s0 : -1;
        own[i] = ok ? o0 : sentinel;
        cidx[i] = ok ? ((int32_t)(v + 0.5f)) * cw + (int32_t)(u + 0.5f) : 0;
        sz[i] = qz;
        far[i] = z > 0 ? z - tol(z) : -INFINITY;
    }
}

VECTOR_CLONES
static void project_all(const uint16_t *restrict depth, const float *restrict rays, const Geo *g,
                        int distort, Py_ssize_t n, float *restrict sz, float *restrict far,
                        int32_t *restrict splat, int32_t *restrict own, int32_t *restrict cidx) {
    if (distort)
        project_loop(depth, rays, g, n, sz, far, splat, own, cidx, 1);
    else
        project_loop(depth, rays, g, n, sz, far, splat, own, cidx, 0);
}

/* visible: tested against its cell's nearest surface, and not a rim (the near side of a depth
   edge: a 4-neighbour reaches farther than this point). One row; vectorises except the ends. */
VECTOR_CLONES
static void visible_row(const float *restrict zbuf, const int32_t *restrict own,
                        const float *restrict sz, const float *restrict up, const float *restrict fr,
                        const float *restrict down, const uint16_t *restrict depth, float units,
                        Py_ssize_t w, uint8_t *restrict vis) {
    for (Py_ssize_t x = 0; x < w; x++) {
        const float zb = zbuf[own[x]];
        const float left = x > 0 ? fr[x - 1] : -INFINITY;
        const float right = x + 1 < w ? fr[x + 1] : -INFINITY;
        float nb = left > right ? left : right;
        nb = up[x] > nb ? up[x] : nb;
        nb = down[x] > nb ? down[x] : nb;
        const float z = (float)depth[x] * units;
        vis[x] = (uint8_t)((sz[x] <= zb + tol(zb)) & !(nb > z));
    }
}

/* The last pass, without branches on the data (a kept point is written, and the next one goes
   to the same place when this one was not kept): crop, compact or keep the layout, colors BGR to
   RGB and black where the color camera does not see the point. */
static inline __attribute__((always_inline)) Py_ssize_t
write_points(const uint16_t *restrict depth, const float *restrict rays, const uint8_t *restrict vis,
             const int32_t *restrict cidx, const uint8_t *restrict color, const double *prm,
             float units, Py_ssize_t n, float *restrict pts, uint8_t *restrict cols,
             uint8_t *restrict mask, const int organized) {
    const int flags = (int)prm[P_FLAGS];
    const int keep_unc = (flags & F_KEEP_UNCOLORED) != 0;
    const int zrange = (flags & F_ZRANGE) != 0, crop = (flags & F_BOX) != 0;
    const float zlo = (float)prm[P_ZLO], zhi = (float)prm[P_ZHI];
    const float b0 = (float)prm[P_BOX], b1 = (float)prm[P_BOX + 1], b2 = (float)prm[P_BOX + 2];
    const float b3 = (float)prm[P_BOX + 3], b4 = (float)prm[P_BOX + 4], b5 = (float)prm[P_BOX + 5];
    Py_ssize_t out = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
#if defined(__GNUC__)
        if (i + 64 < n) __builtin_prefetch(color + 3 * (Py_ssize_t)cidx[i + 64]); /* a miss per row */
#endif
        const float z = (float)depth[i] * units;
        const float px = rays[2 * i] * z, py = rays[2 * i + 1] * z;
        int keep = (depth[i] != 0) & (keep_unc | vis[i]);
        if (zrange) keep &= (z >= zlo) & (z <= zhi);
        if (crop) keep &= (px >= b0) & (py >= b1) & (z >= b2) & (px <= b3) & (py <= b4) & (z <= b5);
        const Py_ssize_t o = organized ? i : out;
        float *pp = pts + 3 * o;
        uint8_t *cc = cols + 3 * o;
        const uint8_t *c = color + 3 * (Py_ssize_t)cidx[i];
        const uint8_t m = (uint8_t)(0 - (vis[i] & keep));
        if (organized) {
            pp[0] = keep ? px : NAN;
            pp[1] = keep ? py : NAN;
            pp[2] = keep ? z : NAN;
        } else {
            pp[0] = px;
            pp[1] = py;
            pp[2] = z;
        }
        cc[0] = c[2] & m;
        cc[1] = c[1] & m;
        cc[2] = c[0] & m;
        mask[i] = (uint8_t)keep;
        out += keep;
    }
    return out;
}

static Py_ssize_t run(const uint16_t *restrict depth, Py_ssize_t w, Py_ssize_t h,
                      const float *restrict rays, const double *prm, const uint8_t *restrict color,
                      float *restrict pts, uint8_t *restrict cols, uint8_t *restrict mask,
                      float *restrict scratch, float *restrict zbuf, Py_ssize_t gw, Py_ssize_t gh) {
    Geo g;
    for (int k = 0; k < 9; k++) g.r[k] = (float)prm[P_R + k];
    for (int k = 0; k < 3; k++) g.t[k] = (float)prm[P_T + k];
    for (int k = 0; k < 8; k++) g.k[k] = (float)prm[P_K + k];
    g.fx = (float)prm[P_FX]; g.fy = (float)prm[P_FY]; g.cx = (float)prm[P_CX]; g.cy = (float)prm[P_CY];
    g.units = (float)prm[P_UNITS];
    g.cw = (int32_t)prm[P_CW];
    g.umax = (float)prm[P_CW] - 0.5f;
    g.vmax = (float)prm[P_CH] - 0.5f;
    g.icell = 1.0f / (float)prm[P_CELL];
    g.gw = (int32_t)gw;
    g.sentinel = (int32_t)(gw * gh);
    const int flags = (int)prm[P_FLAGS];
    const float units = g.units;
    const Py_ssize_t n = w * h;
    float *sz = scratch, *far = scratch + n, *ninf = scratch + 2 * n; /* ninf: a row of -inf */
    int32_t *splat = (int32_t *)(scratch + 2 * n + w), *own = splat + n, *cidx = own + n;
    uint8_t *vis = (uint8_t *)(cidx + n);

    project_all(depth, rays, &g, (flags & F_DISTORT) != 0, n, sz, far, splat, own, cidx);
    /* splat into the 2x2 cells around each point; stores without branches (which point is
       nearer is noise to a branch predictor) */
    for (Py_ssize_t i = 0; i < gw * gh; i++) zbuf[i] = INFINITY;
    zbuf[gw * gh] = -INFINITY; /* the sentinel: nothing is visible against it */
    for (Py_ssize_t i = 0; i < n; i++) {
        const int32_t s = splat[i];
        if (s < 0) continue;
        const float qz = sz[i];
        float *b = zbuf + s;
        b[0] = qz < b[0] ? qz : b[0];
        b[1] = qz < b[1] ? qz : b[1];
        b[gw] = qz < b[gw] ? qz : b[gw];
        b[gw + 1] = qz < b[gw + 1] ? qz : b[gw + 1];
    }
    for (Py_ssize_t x = 0; x < w; x++) ninf[x] = -INFINITY;
    for (Py_ssize_t y = 0; y < h; y++) {
        const Py_ssize_t r = y * w;
        visible_row(zbuf, own + r, sz + r, y > 0 ? far + r - w : ninf, far + r,
                    y + 1 < h ? far + r + w : ninf, depth + r, units, w, vis + r);
    }
    /* write: crop, compact (or keep the layout), colors BGR -> RGB */
    if (flags & F_ORGANIZED)
        return write_points(depth, rays, vis, cidx, color, prm, units, n, pts, cols, mask, 1);
    return write_points(depth, rays, vis, cidx, color, prm, units, n, pts, cols, mask, 0);
}

static int need(Py_buffer *b, Py_ssize_t size, const char *what) {
    if (b->len < size) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, needs %zd", what, b->len, size);
        return -1;
    }
    return 0;
}

static PyObject *cloud(PyObject *self, PyObject *args) {
    Py_buffer dep, rays, prm, col, pts, cols, mask, scr;
    Py_ssize_t w, h;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nny*y*y*w*w*w*w*", &dep, &w, &h, &rays, &prm, &col, &pts, &cols, &mask, &scr))
        return NULL;
    PyObject *result = NULL;
    if (w <= 0 || h <= 0 || w > 16384 || h > 16384) {
        PyErr_SetString(PyExc_ValueError, "bad depth size");
        goto done;
    }
    if (need(&prm, PARAMS * 8, "params") < 0) goto done;
    const double *p = (const double *)prm.buf;
    const double cwd = p[P_CW], chd = p[P_CH], cell = p[P_CELL];
    if (!(cwd >= 1 && cwd <= 16384 && chd >= 1 && chd <= 16384 && cell >= 1 && cell <= 64)) {
        PyErr_SetString(PyExc_ValueError, "bad color size or cell");
        goto done;
    }
    const Py_ssize_t cw = (Py_ssize_t)cwd, ch = (Py_ssize_t)chd, n = w * h;
    if (need(&dep, n * 2, "depth") < 0 || need(&rays, n * 8, "rays") < 0 ||
        need(&col, cw * ch * 3, "color") < 0 || need(&pts, n * 12, "points") < 0 ||
        need(&cols, n * 3, "colors") < 0 || need(&mask, n, "mask") < 0)
        goto done;
    const Py_ssize_t gw = (Py_ssize_t)ceil(cwd / cell) + 2, gh = (Py_ssize_t)ceil(chd / cell) + 2;
    /* sz, far, a row, splat, own, cidx (4 bytes each), vis (1 byte), then the cells + sentinel */
    const Py_ssize_t words = 5 * n + w + (n + 3) / 4;
    if (need(&scr, (Py_ssize_t)sizeof(float) * (words + gw * gh + 1), "scratch") < 0) goto done;
    float *scratch = scr.buf, *zbuf = scratch + words;
    Py_ssize_t got;
    Py_BEGIN_ALLOW_THREADS
    got = run(dep.buf, w, h, rays.buf, p, col.buf, pts.buf, cols.buf, mask.buf, scratch, zbuf, gw, gh);
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(got);
done:
    PyBuffer_Release(&dep); PyBuffer_Release(&rays); PyBuffer_Release(&prm); PyBuffer_Release(&col);
    PyBuffer_Release(&pts); PyBuffer_Release(&cols); PyBuffer_Release(&mask); PyBuffer_Release(&scr);
    return result;
}

static PyMethodDef methods[] = {
    {"cloud", cloud, METH_VARARGS, "A colored, registered, occlusion-tested point cloud."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
