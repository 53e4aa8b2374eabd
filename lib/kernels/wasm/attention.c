// Causal self-attention for the tfjs-wasm backend, WebAssembly SIMD (128-bit), one thread.
// Built by scripts/build-wasm-kernels.sh into attention.wasm.ts; lib/kernels/wasm-attention.ts runs
// it on tensors in place: the module imports tfjs-wasm's own linear memory, so q, k, v and the
// output are read and written where tfjs keeps them (no copies).
//
// Why: tfjs-wasm runs a batched matmul ([B·heads, T, hd] × [B·heads, hd, S]) on a scalar loop
// (about 1.5 GFLOP/s on one core) and only 2-D untransposed matmuls on XNNPACK; with head dim 8
// the attention of a 512-token window cost more than the rest of the model. Here each (sequence,
// KV head) copies its keys and values once into key-major rows, then every query row takes its
// scores over the visible keys only (causal: the masked upper triangle is never computed), their
// max, exp(s − max) with a Cephes-style polynomial (relative error about 2e-7), and the weighted
// sum of values, four keys per SIMD lane group.
//
// Constraints of running inside another module's memory: no data segments, no shadow stack (every
// array lives in the caller's scratch buffer, every scalar in a wasm local), no libc.
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(name)))

// 2^x for x ≤ 0 (scores in log2 units minus their row max: the kernel folds log2 e into q's scale,
// so no range-reduction multiply is needed), four lanes; exactly 0 below −92 (e^−64 ≈ 1.6e−28 of
// the row's largest term). The cut keeps every p and every p·v product far from fp32 subnormals,
// which x86 handles ~100× slower (a real model's attention rows have many such keys: they cost
// twice the whole kernel before the cut). n = round(x) comes from adding 1.5·2^23 + 127 (the low
// mantissa bits then hold n + 127, which shifted into the exponent field give 2^n); 2^f for
// |f| ≤ 1/2 is the degree-6 Taylor polynomial of e^(f·ln 2) (relative error below 2e-7).
static inline v128_t exp2_neg(v128_t x) {
  const v128_t magic = wasm_f32x4_splat(12583039.0f); // 0x1.8000FEp23: 1.5·2^23 + 127
  const v128_t keep = wasm_f32x4_ge(x, wasm_f32x4_splat(-92.0f));
  x = wasm_f32x4_pmax(x, wasm_f32x4_splat(-92.0f));
  v128_t n = wasm_f32x4_add(x, magic);
  const v128_t scale = wasm_i32x4_shl(n, 23);
  n = wasm_f32x4_sub(n, magic);
  const v128_t f = wasm_f32x4_sub(x, n);
  // (ln 2)^k / k!, k = 6 .. 0
  v128_t y = wasm_f32x4_splat(1.5403530393381608e-4f);
  y = wasm_f32x4_add(wasm_f32x4_mul(y, f), wasm_f32x4_splat(1.3333558146428443e-3f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, f), wasm_f32x4_splat(9.618129107628477e-3f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, f), wasm_f32x4_splat(5.550410866482158e-2f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, f), wasm_f32x4_splat(2.402265069591007e-1f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, f), wasm_f32x4_splat(6.931471805599453e-1f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, f), wasm_f32x4_splat(1.0f));
  return wasm_v128_and(wasm_f32x4_mul(y, scale), keep);
}

static inline float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3);
}

static inline float hmax(v128_t v) {
  float a = wasm_f32x4_extract_lane(v, 0), b = wasm_f32x4_extract_lane(v, 1);
  float c = wasm_f32x4_extract_lane(v, 2), d = wasm_f32x4_extract_lane(v, 3);
  float ab = a > b ? a : b, cd = c > d ? c : d;
  return ab > cd ? ab : cd;
}

// Lanes j0+i < n keep their value, the others become `fill`.
static inline v128_t keep_below(v128_t x, int j0, int n, v128_t fill) {
  v128_t idx = wasm_i32x4_add(wasm_i32x4_splat(j0), wasm_i32x4_make(0, 1, 2, 3));
  return wasm_v128_bitselect(x, fill, wasm_i32x4_lt(idx, wasm_i32x4_splat(n)));
}

// q·k for four keys j..j+3 of key-major rows kt (row stride S4), head dim 8; a tree of adds keeps
// the dependency chain short.
static inline v128_t dot8(const v128_t* qs, const float* kt, int S4, int j) {
  const v128_t a = wasm_f32x4_add(wasm_f32x4_mul(qs[0], wasm_v128_load(kt + j)), wasm_f32x4_mul(qs[1], wasm_v128_load(kt + S4 + j)));
  const v128_t b = wasm_f32x4_add(wasm_f32x4_mul(qs[2], wasm_v128_load(kt + 2 * S4 + j)), wasm_f32x4_mul(qs[3], wasm_v128_load(kt + 3 * S4 + j)));
  const v128_t c = wasm_f32x4_add(wasm_f32x4_mul(qs[4], wasm_v128_load(kt + 4 * S4 + j)), wasm_f32x4_mul(qs[5], wasm_v128_load(kt + 5 * S4 + j)));
  const v128_t d = wasm_f32x4_add(wasm_f32x4_mul(qs[6], wasm_v128_load(kt + 6 * S4 + j)), wasm_f32x4_mul(qs[7], wasm_v128_load(kt + 7 * S4 + j)));
  return wasm_f32x4_add(wasm_f32x4_add(a, b), wasm_f32x4_add(c, d));
}

// Two query rows qa (8 floats) and qa + 8 over the same n visible keys (two query heads of one KV
// head), head dim 8: scores (pass 1), probabilities in place of the scores (pass 2), then the
// p-weighted values four dimensions at a time (pass 3: eight accumulators stay in registers).
// sc holds 2·S4 floats.
static void attend2_hd8(const float* qa, float* o, const float* kt, const float* vt, float* sc, int S4, int n, float scale) {
  // scale includes log2 e: scores come out in log2 units for exp2_neg
  const v128_t ninf = wasm_f32x4_splat(-__builtin_inff());
  const v128_t zero = wasm_f32x4_splat(0.0f);
  float* sb = sc + S4;
  v128_t qsa[8], qsb[8];
  for (int d = 0; d < 8; d++) qsa[d] = wasm_f32x4_splat(qa[d] * scale), qsb[d] = wasm_f32x4_splat(qa[8 + d] * scale);
  v128_t ma = ninf, mb = ninf;
  for (int j = 0; j < n; j += 4) {
    v128_t x = dot8(qsa, kt, S4, j), y = dot8(qsb, kt, S4, j);
    if (j + 4 > n) x = keep_below(x, j, n, ninf), y = keep_below(y, j, n, ninf);
    wasm_v128_store(sc + j, x);
    wasm_v128_store(sb + j, y);
    ma = wasm_f32x4_pmax(ma, x);
    mb = wasm_f32x4_pmax(mb, y);
  }
  const v128_t mA = wasm_f32x4_splat(hmax(ma)), mB = wasm_f32x4_splat(hmax(mb));
  v128_t la = zero, lb = zero;
  for (int j = 0; j < n; j += 4) {
    v128_t x = exp2_neg(wasm_f32x4_sub(wasm_v128_load(sc + j), mA)), y = exp2_neg(wasm_f32x4_sub(wasm_v128_load(sb + j), mB));
    if (j + 4 > n) x = keep_below(x, j, n, zero), y = keep_below(y, j, n, zero);
    wasm_v128_store(sc + j, x);
    wasm_v128_store(sb + j, y);
    la = wasm_f32x4_add(la, x);
    lb = wasm_f32x4_add(lb, y);
  }
  const float ia = 1.0f / hsum(la), ib = 1.0f / hsum(lb);
  const int n4 = (n + 3) & ~3; // lanes past n hold p = 0
  for (int d0 = 0; d0 < 8; d0 += 4) {
    const float* v0 = vt + d0 * S4;
    v128_t a0 = zero, a1 = zero, a2 = zero, a3 = zero, b0 = zero, b1 = zero, b2 = zero, b3 = zero;
    for (int j = 0; j < n4; j += 4) {
      const v128_t x = wasm_v128_load(sc + j), y = wasm_v128_load(sb + j);
      const v128_t w0 = wasm_v128_load(v0 + j), w1 = wasm_v128_load(v0 + S4 + j);
      const v128_t w2 = wasm_v128_load(v0 + 2 * S4 + j), w3 = wasm_v128_load(v0 + 3 * S4 + j);
      a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(x, w0)), b0 = wasm_f32x4_add(b0, wasm_f32x4_mul(y, w0));
      a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(x, w1)), b1 = wasm_f32x4_add(b1, wasm_f32x4_mul(y, w1));
      a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(x, w2)), b2 = wasm_f32x4_add(b2, wasm_f32x4_mul(y, w2));
      a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(x, w3)), b3 = wasm_f32x4_add(b3, wasm_f32x4_mul(y, w3));
    }
    o[d0] = hsum(a0) * ia, o[d0 + 1] = hsum(a1) * ia, o[d0 + 2] = hsum(a2) * ia, o[d0 + 3] = hsum(a3) * ia;
    o[8 + d0] = hsum(b0) * ib, o[8 + d0 + 1] = hsum(b1) * ib, o[8 + d0 + 2] = hsum(b2) * ib, o[8 + d0 + 3] = hsum(b3) * ib;
  }
}

// Row x (hd floats) at position pos rotated by RoPE (HF's half-split layout: x·cos + rotate_half(x)·sin
// with rotate_half(x) = [−x2, x1], the tables [positions, hd]) when cos is not null, into dst.
// Same roundings as the tfjs ops (product, product, sum).
static inline void rope_row(const float* x, const float* cos, const float* sin, int pos, int hd, float* dst) {
  if (!cos) {
    for (int d = 0; d < hd; d++) dst[d] = x[d];
    return;
  }
  const int half = hd / 2;
  const float* c = cos + pos * hd;
  const float* s = sin + pos * hd;
  for (int d = 0; d < hd; d++) {
    const float rot = d < half ? -x[d + half] : x[d - half];
    const float a = x[d] * c[d];
    const float b = rot * s[d];
    dst[d] = a + b;
  }
}

/*
 * q [B, T, H, hd] (positions past..past+T-1), k and v [B, S, KV, hd] with S = past + T, out
 * [B, T, H, hd]; query heads g·rep .. g·rep+rep−1 read KV head g (rep = H / KV). Query t sees keys
 * 0 .. past + t. q and k are RoPE'd here with cos/sin [S, hd] (positions 0..S-1) unless cos is null.
 * scale multiplies q·k (the kernel works in log2 units: scores · log2 e, then 2^x). scratch: (2·hd + 2)·S4 + 6·hd floats, S4 = S rounded up to 4.
 */
EXPORT("attention_f32")
void attention_f32(const float* q, const float* k, const float* v, float* out, int B, int T, int S, int H, int KV, int hd, int past,
                   float scale, const float* cos, const float* sin, float* scratch) {
  const int rep = H / KV;
  const int S4 = (S + 3) & ~3;
  scale *= 1.44269504088896341f; // log2 e: softmax(s) = 2^(s·log2 e − max) / Σ
  float* kt = scratch;                   // [hd, S4]: keys (RoPE'd), one row per head dimension
  float* vt = kt + hd * S4;              // [hd, S4]: values
  float* sc = vt + hd * S4;              // [2, S4]: one or two query rows' scores, then probabilities
  v128_t* acc = (v128_t*)(sc + 2 * S4);  // [hd]: weighted value sums, four keys per lane (generic hd)
  float* qb = (float*)(acc + hd);        // [2, hd]: query rows after RoPE
  const v128_t ninf = wasm_f32x4_splat(-__builtin_inff());
  const v128_t zero = wasm_f32x4_splat(0.0f);
  for (int b = 0; b < B; b++) {
    for (int g = 0; g < KV; g++) {
      for (int j = 0; j < S4; j++) {
        if (j < S) {
          const int src = ((b * S + j) * KV + g) * hd;
          rope_row(k + src, cos, sin, j, hd, qb);
          for (int d = 0; d < hd; d++) kt[d * S4 + j] = qb[d], vt[d * S4 + j] = v[src + d];
        } else {
          for (int d = 0; d < hd; d++) kt[d * S4 + j] = 0.0f, vt[d * S4 + j] = 0.0f;
        }
      }
      for (int t = 0; t < T; t++) {
        const int n = past + t + 1; // visible keys
        int r = 0;
        if (hd == 8) {
          // Two query heads of this KV head at a time: each key and value row loaded once for both.
          for (; r + 2 <= rep; r += 2) {
            const int h = g * rep + r;
            const float* qr = q + ((b * T + t) * H + h) * 8;
            rope_row(qr, cos, sin, past + t, 8, qb);
            rope_row(qr + 8, cos, sin, past + t, 8, qb + 8);
            attend2_hd8(qb, out + ((b * T + t) * H + h) * 8, kt, vt, sc, S4, n, scale);
          }
        }
        for (; r < rep; r++) {
          const int h = g * rep + r;
          rope_row(q + ((b * T + t) * H + h) * hd, cos, sin, past + t, hd, qb);
          const float* qr = qb;
          float* o = out + ((b * T + t) * H + h) * hd;
          // Pass 1: scores and their max.
          v128_t m4 = ninf;
          for (int j = 0; j < n; j += 4) {
            v128_t s = zero;
            for (int d = 0; d < hd; d++) s = wasm_f32x4_add(s, wasm_f32x4_mul(wasm_f32x4_splat(qr[d] * scale), wasm_v128_load(kt + d * S4 + j)));
            if (j + 4 > n) s = keep_below(s, j, n, ninf);
            wasm_v128_store(sc + j, s);
            m4 = wasm_f32x4_pmax(m4, s);
          }
          const v128_t m = wasm_f32x4_splat(hmax(m4));
          // Pass 2: p = exp(s − max), their sum and the p-weighted values.
          v128_t l4 = zero;
          for (int d = 0; d < hd; d++) acc[d] = zero;
          for (int j = 0; j < n; j += 4) {
            v128_t p = exp2_neg(wasm_f32x4_sub(wasm_v128_load(sc + j), m));
            if (j + 4 > n) p = keep_below(p, j, n, zero);
            l4 = wasm_f32x4_add(l4, p);
            for (int d = 0; d < hd; d++) acc[d] = wasm_f32x4_add(acc[d], wasm_f32x4_mul(p, wasm_v128_load(vt + d * S4 + j)));
          }
          const float inv = 1.0f / hsum(l4);
          for (int d = 0; d < hd; d++) o[d] = hsum(acc[d]) * inv;
        }
      }
    }
  }
}
