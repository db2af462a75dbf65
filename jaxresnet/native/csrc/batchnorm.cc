// Training-mode BatchNorm for XLA:CPU, fused with the ReLU and residual add that follow it,
// called through the XLA FFI.
//
// In a ResNet34 step at --resize 128 (batch 32) XLA:CPU's fusions of BatchNorm, ReLU, the residual
// adds and their gradients took about 250 ms (profiled); torch's loops for the same take about
// 80 ms. Each is a few passes over memory-bound activations. These two handlers do all of it in
// two passes each way (about 105 ms in the same profile):
//   forward:  y = act((x - mean) * scale / sqrt(var + eps) + bias [+ residual])
//             with act = ReLU or identity, mean/var the biased batch statistics (returned too);
//   backward: from dL/dy, the output y (its sign is the ReLU's mask) and x: dL/dx, dL/dscale,
//             dL/dbias and, with a residual, dL/dresidual.
// Layout: x is (rows, C), channels last, float32. Sums are accumulated in double, so the
// statistics are at least as exact as a float32 two-pass reduction.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <omp.h>

#include "huge_pages.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// The kernels below are memory-bound loops over rows with an inner loop over channels; built
// for AVX-512 and AVX2 too, picked at load time, so the cached library runs on any x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define JAXRESNET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define JAXRESNET_CLONES
#endif

// Per-channel sums over a block of rows: s += a, q += a * b (both in double).
JAXRESNET_CLONES
void SumsForward(const float* x, int64_t begin, int64_t end, int64_t c, double* s, double* q) {
  for (int64_t i = begin; i < end; ++i) {
    const float* row = x + i * c;
    for (int64_t k = 0; k < c; ++k) {
      double v = row[k];
      s[k] += v;
      q[k] += v * v;
    }
  }
}

JAXRESNET_CLONES
void NormalizeRows(const float* x, const float* residual, float* y, int64_t begin, int64_t end,
                   int64_t c, const float* mean, const float* mul, const float* bias, bool relu) {
  for (int64_t i = begin; i < end; ++i) {
    const float* xr = x + i * c;
    float* yr = y + i * c;
    if (residual) {
      const float* rr = residual + i * c;
      if (relu) {
        for (int64_t k = 0; k < c; ++k) yr[k] = std::max((xr[k] - mean[k]) * mul[k] + bias[k] + rr[k], 0.0f);
      } else {
        for (int64_t k = 0; k < c; ++k) yr[k] = (xr[k] - mean[k]) * mul[k] + bias[k] + rr[k];
      }
    } else if (relu) {
      for (int64_t k = 0; k < c; ++k) yr[k] = std::max((xr[k] - mean[k]) * mul[k] + bias[k], 0.0f);
    } else {
      for (int64_t k = 0; k < c; ++k) yr[k] = (xr[k] - mean[k]) * mul[k] + bias[k];
    }
  }
}

// Gradient sums: with g = dy masked by y > 0 (ReLU) or dy, s += g and q += g * (x - mean).
JAXRESNET_CLONES
void SumsBackward(const float* dy, const float* y, const float* x, int64_t begin, int64_t end,
                  int64_t c, const float* mean, double* s, double* q) {
  for (int64_t i = begin; i < end; ++i) {
    const float* dr = dy + i * c;
    const float* xr = x + i * c;
    if (y) {
      const float* yr = y + i * c;
      for (int64_t k = 0; k < c; ++k) {
        const float d = dr[k];  // loaded unconditionally, so the select vectorizes
        const float g = yr[k] > 0.0f ? d : 0.0f;
        s[k] += g;
        q[k] += static_cast<double>(g) * (xr[k] - mean[k]);
      }
    } else {
      for (int64_t k = 0; k < c; ++k) {
        s[k] += dr[k];
        q[k] += static_cast<double>(dr[k]) * (xr[k] - mean[k]);
      }
    }
  }
}

// dx = k * (g - a - (x - mean) * b), and dres = g when there is a residual.
JAXRESNET_CLONES
void GradRows(const float* dy, const float* y, const float* x, float* dx, float* dres,
              int64_t begin, int64_t end, int64_t c, const float* mean, const float* k,
              const float* a, const float* b) {
  for (int64_t i = begin; i < end; ++i) {
    const float* dr = dy + i * c;
    const float* xr = x + i * c;
    float* out = dx + i * c;
    if (y && dres) {
      const float* yr = y + i * c;
      float* rr = dres + i * c;
      for (int64_t j = 0; j < c; ++j) {
        const float d = dr[j];
        const float g = yr[j] > 0.0f ? d : 0.0f;
        out[j] = k[j] * (g - a[j] - (xr[j] - mean[j]) * b[j]);
        rr[j] = g;
      }
    } else if (y) {
      const float* yr = y + i * c;
      for (int64_t j = 0; j < c; ++j) {
        const float d = dr[j];
        const float g = yr[j] > 0.0f ? d : 0.0f;
        out[j] = k[j] * (g - a[j] - (xr[j] - mean[j]) * b[j]);
      }
    } else {
      for (int64_t j = 0; j < c; ++j) out[j] = k[j] * (dr[j] - a[j] - (xr[j] - mean[j]) * b[j]);
      if (dres) std::copy(dr, dr + c, dres + i * c);
    }
  }
}

// Splits rows among the OpenMP threads (the pool oneDNN uses too) and sums each thread's
// per-channel partial sums, in thread order so results do not depend on timing.
template <typename Body>
void ParallelSums(int64_t rows, int64_t c, std::vector<double>& s, std::vector<double>& q, Body body) {
  int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(rows / 64 + 1)));
  std::vector<double> partial(static_cast<size_t>(threads) * 2 * c, 0.0);
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads();
    int64_t begin = rows * t / n, end = rows * (t + 1) / n;
    double* ps = partial.data() + static_cast<size_t>(t) * 2 * c;
    body(begin, end, ps, ps + c);
  }
  s.assign(c, 0.0);
  q.assign(c, 0.0);
  for (int t = 0; t < threads; ++t) {
    const double* ps = partial.data() + static_cast<size_t>(t) * 2 * c;
    for (int64_t k = 0; k < c; ++k) {
      s[k] += ps[k];
      q[k] += ps[c + k];
    }
  }
}

template <typename Body>
void ParallelRows(int64_t rows, Body body) {
#pragma omp parallel
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads();
    body(rows * t / n, rows * (t + 1) / n);
  }
}

ffi::Error Shapes(ffi::Buffer<ffi::F32>& x, int64_t& rows, int64_t& c) {
  auto d = x.dimensions();
  if (d.size() < 1) return ffi::Error(ffi::ErrorCode::kInvalidArgument, "BatchNorm: x has no axes");
  c = d.back();
  rows = c ? static_cast<int64_t>(x.element_count()) / c : 0;
  return ffi::Error::Success();
}

// The kernels on plain pointers (the FFI handlers below unwrap their buffers into these; the
// benchmark in scripts/bench_batchnorm.py calls them directly). x, y, residual: (rows, c).
// residual may be null; mean/var (biased) are written for the caller's running statistics.
void BatchNormForward(const float* xd, const float* scale, const float* bd, const float* rd, float* yd,
                      float* mean_out, float* var_out, int64_t rows, int64_t c, float eps, bool relu) {
  std::vector<double> s, q;
  ParallelSums(rows, c, s, q, [&](int64_t b, int64_t e, double* ps, double* pq) {
    SumsForward(xd, b, e, c, ps, pq);
  });
  std::vector<float> mean(c), mul(c);
  for (int64_t k = 0; k < c; ++k) {
    double m = s[k] / rows;
    double v = std::max(q[k] / rows - m * m, 0.0);
    mean[k] = static_cast<float>(m);
    mean_out[k] = mean[k];
    var_out[k] = static_cast<float>(v);
    mul[k] = static_cast<float>(scale[k] / std::sqrt(v + eps));
  }
  ParallelRows(rows, [&](int64_t b, int64_t e) {
    NormalizeRows(xd, rd, yd, b, e, c, mean.data(), mul.data(), bd, relu);
  });
}

// From dy, y (null when there was no ReLU) and x: dx, dscale, dbias and dres (null when there was
// no residual).
void BatchNormBackward(const float* dyd, const float* yd, const float* xd, const float* md,
                       const float* var, const float* scale, float* dxd, float* dscale, float* dbias,
                       float* dresd, int64_t rows, int64_t c, float eps) {
  std::vector<double> s, q;
  ParallelSums(rows, c, s, q, [&](int64_t b, int64_t e, double* ps, double* pq) {
    SumsBackward(dyd, yd, xd, b, e, c, md, ps, pq);
  });
  std::vector<float> k(c), a(c), bcoef(c);
  for (int64_t i = 0; i < c; ++i) {
    double invstd = 1.0 / std::sqrt(static_cast<double>(var[i]) + eps);
    dbias[i] = static_cast<float>(s[i]);
    dscale[i] = static_cast<float>(q[i] * invstd);
    k[i] = static_cast<float>(scale[i] * invstd);
    a[i] = static_cast<float>(s[i] / rows);
    bcoef[i] = static_cast<float>(q[i] / rows * invstd * invstd);
  }
  ParallelRows(rows, [&](int64_t b, int64_t e) {
    GradRows(dyd, yd, xd, dxd, dresd, b, e, c, md, k.data(), a.data(), bcoef.data());
  });
}

// Inputs: x, scale, bias, residual (empty when none). Outputs: y, mean, var (biased).
ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> scale,
                       ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> residual,
                       ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::F32> mean_out,
                       ffi::ResultBuffer<ffi::F32> var_out, float eps, bool relu) {
  int64_t rows, c;
  if (auto e = Shapes(x, rows, c); e.failure()) return e;
  jaxresnet::AdviseHugePages(y->typed_data(), y->size_bytes());
  BatchNormForward(x.typed_data(), scale.typed_data(), bias.typed_data(),
                   residual.element_count() ? residual.typed_data() : nullptr, y->typed_data(),
                   mean_out->typed_data(), var_out->typed_data(), rows, c, eps, relu);
  return ffi::Error::Success();
}

// Inputs: dy, y (empty when there was no ReLU), x, mean, var, scale.
// Outputs: dx, dscale, dbias, dresidual (empty when there was no residual).
ffi::Error BackwardImpl(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> y,
                        ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> mean,
                        ffi::Buffer<ffi::F32> var, ffi::Buffer<ffi::F32> scale,
                        ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dscale,
                        ffi::ResultBuffer<ffi::F32> dbias, ffi::ResultBuffer<ffi::F32> dres,
                        float eps) {
  int64_t rows, c;
  if (auto e = Shapes(x, rows, c); e.failure()) return e;
  float* dresd = dres->element_count() ? dres->typed_data() : nullptr;
  jaxresnet::AdviseHugePages(dx->typed_data(), dx->size_bytes());
  if (dresd) jaxresnet::AdviseHugePages(dresd, dres->size_bytes());
  BatchNormBackward(dy.typed_data(), y.element_count() ? y.typed_data() : nullptr, x.typed_data(),
                    mean.typed_data(), var.typed_data(), scale.typed_data(), dx->typed_data(),
                    dscale->typed_data(), dbias->typed_data(), dresd, rows, c, eps);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxresnetBatchNormForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Attr<bool>("relu"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxresnetBatchNormBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps"));
