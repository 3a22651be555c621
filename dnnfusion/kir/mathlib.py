"""Vectorizable float32 math for the generated C: libm's expf/tanhf are calls that stop a loop from being
vectorized (and glibc's vector variants need -ffast-math), so the prelude defines branch-free versions made
of arithmetic and selects that gcc inlines (always: in a large model's translation unit gcc's growth limits
stopped inlining them, leaving calls that kept loops scalar) and vectorizes under `#pragma omp simd`. Accuracy: exp, log and log1p
within 1 ulp over the float range (subnormal results included), tanh within 2 ulp; NaN and infinities as libm, and
saturated tails exact wherever the correctly rounded result is: exp is 0 from -103.972084 down and +inf from
88.72284 up, tanh is exactly +-1 for |x| > 9.0109129 (an explicit select) and erf for |x| > 3.9192057.

The polynomial coefficients were fitted here (weighted least squares on Chebyshev nodes, numpy float64):
e^r = 1 + r + r^2 q(r) on |r| <= ln2/2, tanh(x) = x + x^3 t(x^2) on |x| < 0.625, erf(x) = x p(x^2) on
|x| < 0.9 and erfc(x) = e^(-x^2) c(1 / (1 + x/2)) on 0.9 <= x <= 4 (relative weights); erf within 3 ulp;
log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f / (2 + f), on -0.34 <= f <= 1 (log and log1p within
1 ulp: log from the exact mantissa less one, log1p from x itself on that range and with the rounding of 1 + x
added back elsewhere)."""

from __future__ import annotations

# generic function name -> the float32 helper below that replaces libm's
FLOAT_HELPERS = {"exp": "df_expf", "tanh": "df_tanhf", "erf": "df_erff", "log": "df_logf", "log1p": "df_log1pf",
                 "sigmoid": "df_sigmoidf"}

SOURCE = """\
static inline __attribute__((always_inline)) float df_exp_reduced(float c, float* kf) {
  /* e^c = 2^kf e^r with r = c - kf ln2 (ln2 split in two for exactness), for c in the callers' clamped range:
     returns e^r (within 1 ulp on |r| <= ln2/2) and sets the integral kf. */
  *kf = floorf(c * 1.44269504088896341f + 0.5f);
  const float r = (c - *kf * 0.693359375f) - *kf * -2.12194440e-4f;
  float q = 1.9826495554298162e-4f;
  q = q * r + 1.3946021208539605e-3f;
  q = q * r + 8.33342969417572e-3f;
  q = q * r + 4.1666269302368164e-2f;
  q = q * r + 0.1666666567325592f;
  q = q * r + 0.5f;
  return q * (r * r) + r + 1.0f;
}

static inline __attribute__((always_inline)) float df_expf(float x) {
  /* e^x from df_exp_reduced, 2^k applied as two halves so that subnormal results keep their exponent;
     selects give +inf above the range and pass NaN through. */
  const float hi = 88.72283935546875f, lo = -103.972084045410156f;
  const float c0 = x > hi ? hi : x;
  const float c = c0 < lo ? lo : c0;
  float kf;
  const float y = df_exp_reduced(c, &kf);
  const int32_t k = (int32_t)kf, k1 = k / 2, k2 = k - k1;
  const int32_t b1 = (k1 + 127) << 23, b2 = (k2 + 127) << 23;
  float s1, s2;
  memcpy(&s1, &b1, 4);
  memcpy(&s2, &b2, 4);
  const float scaled = y * s1 * s2;
  const float finite = x > hi ? INFINITY : scaled;
  return x != x ? x : finite;
}

static inline __attribute__((always_inline)) float df_sigmoidf(float x) {
  /* 1 / (1 + e^-x), e^-x from df_exp_reduced with one exponent scale: -x is clamped to [-87.5, 88.75], where
     the scale 2^k stays a float (2^-126 .. 2^128 = +inf, giving 0 where e^-x overflows); below -87.5 the sum
     rounds to 1. NaN passes through the polynomial. */
  const float n = -x;
  const float c0 = n > 88.75f ? 88.75f : n;
  const float c = c0 < -87.5f ? -87.5f : c0;
  float kf;
  const float y = df_exp_reduced(c, &kf);
  const uint32_t bits = (uint32_t)((int32_t)kf + 127) << 23;
  float scale;
  memcpy(&scale, &bits, 4);
  return 1.0f / (1.0f + y * scale);
}

static inline double df_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static inline __attribute__((always_inline)) float df_log_reduced(float f) {
  /* log(1 + f) for f in [-0.34, 1]: f - (f^2/2 - s (f^2/2 + R(s^2))), s = f / (2 + f), the exact f
     carrying the leading term. */
  const float s = f / (2.0f + f);
  const float z = s * s;
  const float hf = 0.5f * f * f;
  float r = 0.24202801287174225f;
  r = r * z + 0.21454544365406036f;
  r = r * z + 0.2861436605453491f;
  r = r * z + 0.39998969435691833f;
  r = r * z + 0.6666667461395264f;
  return f - (hf - s * (hf + r * z));
}

static inline __attribute__((always_inline)) int32_t df_log_split(float w, float* m) {
  /* w (positive, normal) = m 2^k with m in [sqrt(1/2), sqrt(2)); returns k. */
  int32_t bits;
  memcpy(&bits, &w, 4);
  const int32_t k = ((bits >> 23) & 0xff) - 127;
  const int32_t mb = (bits & 0x7fffff) | 0x3f800000;
  float mm;
  memcpy(&mm, &mb, 4);
  const int big = mm > 1.41421353816986083984375f;
  *m = big ? 0.5f * mm : mm;
  return big ? k + 1 : k;
}

static inline __attribute__((always_inline)) float df_logf(float x) {
  /* log x = k ln2 + log(1 + (m - 1)) with x = m 2^k (subnormals scaled by 2^25 first), m - 1 exact and ln2
     split so that k ln2_hi is exact; -inf at 0, NaN below 0 and for NaN, +inf for +inf. */
  const int tiny = x < 1.17549435082228750797e-38f;
  float m;
  const int32_t k = df_log_split(tiny ? x * 33554432.0f : x, &m) - (tiny ? 25 : 0);
  const float kf = (float)k;
  const float y = kf * 0.693145751953125f + (df_log_reduced(m - 1.0f) + kf * 1.428606765330187e-06f);
  const float finite = x == INFINITY ? x : y;
  return x > 0.0f ? finite : (x == 0.0f ? -INFINITY : NAN);
}

static inline __attribute__((always_inline)) float df_log1pf(float x) {
  /* x in [-0.33984375, 1]: log(1 + x) from x itself (exact). Otherwise w = 1 + x rounded = m 2^k, and log1p x
     is log w plus (x - (w - 1)) / w (or (1 - (w - x)) / w above), the part of 1 + x that w rounded away.
     -inf at -1, NaN below and for NaN, +inf for +inf, x for zeros (their sign kept). */
  const int direct = x >= -0.33984375f && x <= 1.0f;
  const float w = 1.0f + x;
  float m;
  const int32_t k = df_log_split(w > 1.17549435082228750797e-38f ? w : 1.0f, &m);
  const float kf = direct ? 0.0f : (float)k;
  const float f = direct ? x : m - 1.0f;
  const float lost = (k > 0 ? 1.0f - (w - x) : x - (w - 1.0f)) / w;   /* computed always: no branch to vectorize */
  const float c = direct ? 0.0f : lost;
  const float y = kf * 0.693145751953125f + (df_log_reduced(f) + (kf * 1.428606765330187e-06f + c));
  const float finite = x == INFINITY ? x : (x == 0.0f ? x : y);
  return x > -1.0f ? finite : (x == -1.0f ? -INFINITY : NAN);
}

static inline __attribute__((always_inline)) float df_tanhf(float x) {
  /* |x| < 0.625: x + x^3 t(x^2); otherwise sign(x) (1 - 2 / (e^{2|x|} + 1)) with |x| capped at 9 (the
     formula gives 1 - 2^-24 from there, as the rounded tanh does up to 9.0109129f, the largest float whose
     tanh rounds below 1: 1 - tanh crosses 2^-25 at 13 ln2 = 9.01091335); beyond that exactly sign(x). */
  const float a = x < 0.0f ? -x : x;
  const float s = x * x;
  float t = -5.691985599696636e-3f;
  t = t * s + 2.0626291632652283e-2f;
  t = t * s - 5.373531952500343e-2f;
  t = t * s + 0.13331381976604462f;
  t = t * s - 0.3333328068256378f;
  const float small = x * (1.0f + s * t);      /* keeps the sign of zero */
  const float e = df_expf(2.0f * (a > 9.0f ? 9.0f : a));
  const float big = a > 9.010912895202637f ? 1.0f : 1.0f - 2.0f / (e + 1.0f);
  return a < 0.625f ? small : (x < 0.0f ? -big : big);
}

static inline __attribute__((always_inline)) float df_erff(float x) {
  /* |x| < 0.9: x p(x^2); up to 4: sign(x) (1 - e^(-x^2) c(t)), t = 1 / (1 + |x|/2); beyond: sign(x). */
  const float a = x < 0.0f ? -x : x;
  const float s = x * x;
  float p = 8.534120570402592e-05f;
  p = p * s - 8.180781151168048e-04f;
  p = p * s + 5.20433159545064e-03f;
  p = p * s - 2.6860708370804787e-02f;
  p = p * s + 0.11283718794584274f;
  p = p * s - 0.37612634897232056f;
  p = p * s + 1.128379225730896f;
  const float small = x * p;
  const float b = a > 4.0f ? 4.0f : a;
  const float t = 1.0f / (1.0f + 0.5f * b);
  float c = 2.611747570335865e-02f;
  c = c * t - 0.2151198834180832f;
  c = c * t + 0.685360848903656f;
  c = c * t - 1.0715808868408203f;
  c = c * t + 0.8147576451301575f;
  c = c * t - 0.35152196884155273f;
  c = c * t + 0.3342393636703491f;
  c = c * t + 0.20782223343849182f;
  c = c * t + 0.2883986830711365f;
  c = c * t + 0.2814920246601105f;
  c = c * t + 2.5912051569321193e-05f;
  const float tail = 1.0f - df_expf(-(b * b)) * c;
  const float big = a > 4.0f ? 1.0f : tail;
  const float large = x < 0.0f ? -big : big;
  return (a < 0.9f || x != x) ? small : large;
}
"""
