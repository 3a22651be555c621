"""Vectorizable float32 math for the generated C: libm's expf/tanhf are calls that stop a loop from being
vectorized (and glibc's vector variants need -ffast-math), so the prelude defines branch-free versions made
of arithmetic and selects that gcc inlines and vectorizes under `#pragma omp simd`. Accuracy: exp within 1
ulp over the float range (subnormal results included), tanh within 2 ulp; NaN and infinities as libm, and
saturated tails exact wherever the correctly rounded result is: exp is 0 from -103.972084 down and +inf from
88.72284 up, tanh is exactly +-1 for |x| > 9.0109129 (an explicit select) and erf for |x| > 3.9192057.

The polynomial coefficients were fitted here (weighted least squares on Chebyshev nodes, numpy float64):
e^r = 1 + r + r^2 q(r) on |r| <= ln2/2, tanh(x) = x + x^3 t(x^2) on |x| < 0.625, erf(x) = x p(x^2) on
|x| < 0.9 and erfc(x) = e^(-x^2) c(1 / (1 + x/2)) on 0.9 <= x <= 4 (relative weights); erf within 3 ulp."""

from __future__ import annotations

# generic function name -> the float32 helper below that replaces libm's
FLOAT_HELPERS = {"exp": "df_expf", "tanh": "df_tanhf", "erf": "df_erff"}

SOURCE = """\
static inline float df_expf(float x) {
  /* e^x = 2^k e^r with r = x - k ln2 (ln2 split in two for exactness); 2^k applied as two halves so that
     subnormal results keep their exponent; selects give +inf above the range and pass NaN through. */
  const float hi = 88.72283935546875f, lo = -103.972084045410156f;
  const float c0 = x > hi ? hi : x;
  const float c = c0 < lo ? lo : c0;
  const float kf = floorf(c * 1.44269504088896341f + 0.5f);
  const float r = (c - kf * 0.693359375f) - kf * -2.12194440e-4f;
  float q = 1.9826495554298162e-4f;
  q = q * r + 1.3946021208539605e-3f;
  q = q * r + 8.33342969417572e-3f;
  q = q * r + 4.1666269302368164e-2f;
  q = q * r + 0.1666666567325592f;
  q = q * r + 0.5f;
  const float y = q * (r * r) + r + 1.0f;
  const int32_t k = (int32_t)kf, k1 = k / 2, k2 = k - k1;
  const int32_t b1 = (k1 + 127) << 23, b2 = (k2 + 127) << 23;
  float s1, s2;
  memcpy(&s1, &b1, 4);
  memcpy(&s2, &b2, 4);
  const float scaled = y * s1 * s2;
  const float finite = x > hi ? INFINITY : scaled;
  return x != x ? x : finite;
}

static inline float df_tanhf(float x) {
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

static inline float df_erff(float x) {
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
