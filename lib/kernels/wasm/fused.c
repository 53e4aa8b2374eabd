// Fused element-wise ops of the transformer block for the tfjs-wasm backend, WebAssembly SIMD
// (128-bit), one thread: RMSNorm and SwiGLU in one pass each instead of tfjs's five and three ops
// (each a full pass over the activations, and an op's fixed cost). Built by
// scripts/build-wasm-kernels.sh into fused.wasm.ts; lib/kernels/wasm-simd.ts runs them in place on
// tfjs-wasm's memory. Same constraints as attention.c: no data, no shadow stack, no libc.
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(name)))

// exp(x) for x in [−87.3, 88.3] (clamped outside), four lanes: n = round(x·log2 e) from adding
// 1.5·2^23 + 127 (the low mantissa bits then hold n + 127, shifted into the exponent field: 2^n),
// exp(r) for |r| ≤ ln2/2 by Cephes' expf polynomial.
static inline v128_t exp4(v128_t x) {
  const v128_t magic = wasm_f32x4_splat(12583039.0f); // 0x1.8000FEp23: 1.5·2^23 + 127
  x = wasm_f32x4_pmin(wasm_f32x4_pmax(x, wasm_f32x4_splat(-87.3f)), wasm_f32x4_splat(88.3f));
  v128_t n = wasm_f32x4_add(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)), magic);
  const v128_t scale = wasm_i32x4_shl(n, 23);
  n = wasm_f32x4_sub(n, magic);
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  const v128_t z = wasm_f32x4_mul(r, r);
  v128_t y = wasm_f32x4_splat(1.9875691500e-4f);
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(1.3981999507e-3f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(8.3334519073e-3f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(4.1665795894e-2f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(1.6666665459e-1f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(5.0000001201e-1f));
  y = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(y, z), r), wasm_f32x4_splat(1.0f));
  return wasm_f32x4_mul(y, scale);
}

// out = g · sigmoid(g) · u over n floats (SiLU-gated linear unit); sigmoid(g) = 1 / (1 + e^−g).
EXPORT("swiglu_f32")
void swiglu_f32(const float* g, const float* u, float* out, int n) {
  const v128_t one = wasm_f32x4_splat(1.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t x = wasm_v128_load(g + i);
    const v128_t sig = wasm_f32x4_div(one, wasm_f32x4_add(one, exp4(wasm_f32x4_neg(x))));
    wasm_v128_store(out + i, wasm_f32x4_mul(wasm_f32x4_mul(x, sig), wasm_v128_load(u + i)));
  }
  for (; i < n; i++) {
    const v128_t x = wasm_f32x4_splat(g[i]);
    const v128_t sig = wasm_f32x4_div(one, wasm_f32x4_add(one, exp4(wasm_f32x4_neg(x))));
    out[i] = wasm_f32x4_extract_lane(wasm_f32x4_mul(x, sig), 0) * u[i];
  }
}

// out[r] = x[r] · w / sqrt(mean(x[r]²) + eps) for rows × cols (RMSNorm over the last axis).
EXPORT("rmsnorm_f32")
void rmsnorm_f32(const float* x, const float* w, float* out, int rows, int cols, float eps) {
  for (int r = 0; r < rows; r++) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    v128_t s4 = wasm_f32x4_splat(0.0f);
    int c = 0;
    for (; c + 4 <= cols; c += 4) {
      const v128_t v = wasm_v128_load(xr + c);
      s4 = wasm_f32x4_add(s4, wasm_f32x4_mul(v, v));
    }
    float s = wasm_f32x4_extract_lane(s4, 0) + wasm_f32x4_extract_lane(s4, 1) + wasm_f32x4_extract_lane(s4, 2) + wasm_f32x4_extract_lane(s4, 3);
    for (; c < cols; c++) s += xr[c] * xr[c];
    const float inv = 1.0f / wasm_f32x4_extract_lane(wasm_f32x4_sqrt(wasm_f32x4_splat(s / (float)cols + eps)), 0);
    const v128_t iv = wasm_f32x4_splat(inv);
    c = 0;
    for (; c + 4 <= cols; c += 4) wasm_v128_store(o + c, wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(xr + c), iv), wasm_v128_load(w + c)));
    for (; c < cols; c++) o[c] = xr[c] * inv * w[c];
  }
}

// out[i] = table[ids[i]] for n int32 ids, rows of `cols` floats (an embedding lookup); returns how
// many ids fall outside [0, rows) (their rows are left as zeros; the caller throws).
EXPORT("gather_rows_f32")
int gather_rows_f32(const float* table, int rows, int cols, const int* ids, int n, float* out) {
  int bad = 0;
  for (int i = 0; i < n; i++) {
    const int id = ids[i];
    float* o = out + i * cols;
    if (id < 0 || id >= rows) {
      bad++;
      for (int c = 0; c < cols; c++) o[c] = 0.0f;
      continue;
    }
    const float* src = table + id * cols;
    int c = 0;
    for (; c + 4 <= cols; c += 4) wasm_v128_store(o + c, wasm_v128_load(src + c));
    for (; c < cols; c++) o[c] = src[c];
  }
  return bad;
}

// For m < M: row r = rows[m] of logits x [*, V] and token tok[m]: out[2m] = x[r, tok] − max_j x[r, j]
// (≤ 0; 0 iff the token is an argmax) and out[2m + 1] = Σ_j exp(x[r, j] − max) (≥ 1), so that
// log p(tok) = out[2m] − log(out[2m + 1]) (the caller takes the log in float64). Terms below
// e^−87 are dropped (no subnormals; they are below 1e−37 of the sum). Returns how many tok fall
// outside [0, V) (their entries are NaN; the caller throws).
EXPORT("token_logprob_stats_f32")
int token_logprob_stats_f32(const float* x, int V, const int* rows, const int* tok, int M, float* out) {
  int bad = 0;
  for (int m = 0; m < M; m++) {
    const float* xr = x + rows[m] * V;
    if (tok[m] < 0 || tok[m] >= V) {
      bad++;
      out[2 * m] = out[2 * m + 1] = __builtin_nanf("");
      continue;
    }
    v128_t m4 = wasm_f32x4_splat(-__builtin_inff());
    int j = 0;
    for (; j + 4 <= V; j += 4) m4 = wasm_f32x4_pmax(m4, wasm_v128_load(xr + j));
    m4 = wasm_f32x4_pmax(m4, wasm_i32x4_shuffle(m4, m4, 2, 3, 0, 1));
    m4 = wasm_f32x4_pmax(m4, wasm_i32x4_shuffle(m4, m4, 1, 0, 3, 2));
    float mx = wasm_f32x4_extract_lane(m4, 0);
    for (; j < V; j++) mx = mx < xr[j] ? xr[j] : mx;
    const v128_t mv = wasm_f32x4_splat(mx);
    v128_t s4 = wasm_f32x4_splat(0.0f);
    j = 0;
    for (; j + 4 <= V; j += 4) {
      const v128_t d = wasm_f32x4_sub(wasm_v128_load(xr + j), mv);
      const v128_t keep = wasm_f32x4_ge(d, wasm_f32x4_splat(-87.0f));
      s4 = wasm_f32x4_add(s4, wasm_v128_and(exp4(d), keep));
    }
    float s = wasm_f32x4_extract_lane(s4, 0) + wasm_f32x4_extract_lane(s4, 1) + wasm_f32x4_extract_lane(s4, 2) + wasm_f32x4_extract_lane(s4, 3);
    for (; j < V; j++) {
      const float d = xr[j] - mx;
      if (d >= -87.0f) s += wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(d)), 0);
    }
    out[2 * m] = xr[tok[m]] - mx;
    out[2 * m + 1] = s;
  }
  return bad;
}
