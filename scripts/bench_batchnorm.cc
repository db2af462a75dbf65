// Times training-mode BatchNorm (+ReLU, +residual add and ReLU), forward and backward, two ways on
// the same buffers: the hand-written kernels of jaxresnet/native/csrc/batchnorm.cc, and oneDNN's
// batch-normalization primitive with its fused ReLU (fuse_norm_relu), NHWC; for BN + add + ReLU,
// the oneDNN primitives that compute it on CPU (see below).
// Built and driven by scripts/bench_batchnorm.py, which passes the network's layer shapes.
//
// Input on stdin, one layer a line: "n h w c mode" (mode 0 plain, 1 ReLU, 2 add + ReLU).
// Output, one line a layer: "n h w c mode ours_fwd_ms ours_bwd_ms onednn_fwd_ms onednn_bwd_ms max_rel_diff
// flipped_relu_mask_elements".
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <iostream>
#include <random>
#include <vector>

#include "batchnorm.cc"
#include "oneapi/dnnl/dnnl.hpp"

using dnnl::memory;
using Clock = std::chrono::steady_clock;

namespace {

template <typename F>
double MedianMs(int reps, F f) {
  f();  // warm-up: first touch, primitive caches
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto a = Clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 1e-30, diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, static_cast<double>(std::fabs(a[i])));
    diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
  }
  return diff / scale;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = argc > 1 ? std::atoi(argv[1]) : 20;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const float eps = 1e-5f;
  int64_t n, h, w, c, mode;
  while (std::cin >> n >> h >> w >> c >> mode) {
    const int64_t rows = n * h * w, size = rows * c;
    std::mt19937 gen(0);
    std::normal_distribution<float> normal(0.5f, 1.0f);
    std::vector<float> x(size), res(size), dy(size), scale(c), shift(c);
    for (auto& v : x) v = normal(gen);
    for (auto& v : res) v = normal(gen);
    for (auto& v : dy) v = normal(gen);
    for (auto& v : scale) v = 1.0f + 0.1f * normal(gen);
    for (auto& v : shift) v = 0.1f * normal(gen);
    const bool relu = mode >= 1, add = mode == 2;

    // Hand-written kernels.
    std::vector<float> y(size), mean(c), var(c), dx(size), dres(size), dscale(c), dshift(c);
    double ours_f = MedianMs(reps, [&] {
      BatchNormForward(x.data(), scale.data(), shift.data(), add ? res.data() : nullptr, y.data(),
                       mean.data(), var.data(), rows, c, eps, relu);
    });
    double ours_b = MedianMs(reps, [&] {
      BatchNormBackward(dy.data(), relu ? y.data() : nullptr, x.data(), mean.data(), var.data(),
                        scale.data(), dx.data(), dscale.data(), dshift.data(), add ? dres.data() : nullptr,
                        rows, c, eps);
    });

    // oneDNN's primitive, fused the same way where oneDNN can: fuse_norm_relu. Its
    // fuse_norm_add_relu has no CPU implementation in oneDNN 3.2 (no primitive descriptor for any
    // layout), so BN + add + ReLU is what oneDNN offers instead: the BN primitive, then a binary add
    // with a ReLU post-op; backward, ReLU's backward from y (which is dres) and BN's backward on it.
    auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    if (mode == 1) flags |= dnnl::normalization_flags::fuse_norm_relu;
    memory::desc data_md({n, c, h, w}, memory::data_type::f32, memory::format_tag::nhwc);
    memory::desc chan_md({c}, memory::data_type::f32, memory::format_tag::a);
    auto fwd_pd = dnnl::batch_normalization_forward::primitive_desc(
        engine, dnnl::prop_kind::forward_training, data_md, data_md, eps, flags);
    auto bwd_pd = dnnl::batch_normalization_backward::primitive_desc(
        engine, dnnl::prop_kind::backward, data_md, data_md, data_md, eps, flags, fwd_pd);
    std::vector<float> y2(size), t2(size), mean2(c), var2(c), dx2(size), dres2(size), dscale2(c), dshift2(c);
    memory src(data_md, engine, x.data()), src1(data_md, engine, res.data()), dst(data_md, engine, y2.data());
    memory bn_out = add ? memory(data_md, engine, t2.data()) : dst;
    memory m_mean(chan_md, engine, mean2.data()), m_var(chan_md, engine, var2.data());
    memory m_scale(chan_md, engine, scale.data()), m_shift(chan_md, engine, shift.data());
    memory ws = mode == 1 ? memory(fwd_pd.workspace_desc(), engine) : memory();
    memory ddst(data_md, engine, dy.data()), dsrc(data_md, engine, dx2.data()), g(data_md, engine, dres2.data());
    memory m_dscale(chan_md, engine, dscale2.data()), m_dshift(chan_md, engine, dshift2.data());
    dnnl::batch_normalization_forward fwd(fwd_pd);
    dnnl::batch_normalization_backward bwd(bwd_pd);
    std::unordered_map<int, memory> fargs{{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, bn_out}, {DNNL_ARG_MEAN, m_mean},
                                          {DNNL_ARG_VARIANCE, m_var}, {DNNL_ARG_SCALE, m_scale},
                                          {DNNL_ARG_SHIFT, m_shift}};
    std::unordered_map<int, memory> bargs{{DNNL_ARG_SRC, src}, {DNNL_ARG_MEAN, m_mean}, {DNNL_ARG_VARIANCE, m_var},
                                          {DNNL_ARG_DIFF_DST, add ? g : ddst}, {DNNL_ARG_SCALE, m_scale},
                                          {DNNL_ARG_DIFF_SRC, dsrc}, {DNNL_ARG_DIFF_SCALE, m_dscale},
                                          {DNNL_ARG_DIFF_SHIFT, m_dshift}};
    if (mode == 1) fargs[DNNL_ARG_WORKSPACE] = bargs[DNNL_ARG_WORKSPACE] = ws;
    std::function<void()> run_fwd = [&] { fwd.execute(stream, fargs); };
    std::function<void()> run_bwd = [&] { bwd.execute(stream, bargs); };
    if (add) {
      dnnl::post_ops ops;
      ops.append_eltwise(dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      dnnl::primitive_attr attr;
      attr.set_post_ops(ops);
      auto add_pd = dnnl::binary::primitive_desc(engine, dnnl::algorithm::binary_add, data_md, data_md, data_md, attr);
      auto relu_fwd_pd = dnnl::eltwise_forward::primitive_desc(
          engine, dnnl::prop_kind::forward_training, dnnl::algorithm::eltwise_relu_use_dst_for_bwd, data_md, data_md,
          0.f, 0.f);
      auto relu_bwd_pd = dnnl::eltwise_backward::primitive_desc(
          engine, dnnl::algorithm::eltwise_relu_use_dst_for_bwd, data_md, data_md, data_md, 0.f, 0.f, relu_fwd_pd);
      auto add_relu = std::make_shared<dnnl::binary>(add_pd);
      auto relu_bwd = std::make_shared<dnnl::eltwise_backward>(relu_bwd_pd);
      run_fwd = [&, add_relu] {
        fwd.execute(stream, fargs);
        add_relu->execute(stream, {{DNNL_ARG_SRC_0, bn_out}, {DNNL_ARG_SRC_1, src1}, {DNNL_ARG_DST, dst}});
      };
      run_bwd = [&, relu_bwd] {
        relu_bwd->execute(stream, {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DST, dst}, {DNNL_ARG_DIFF_SRC, g}});
        bwd.execute(stream, bargs);
      };
    }
    double dnn_f = MedianMs(reps, [&] { run_fwd(); stream.wait(); });
    double dnn_b = MedianMs(reps, [&] { run_bwd(); stream.wait(); });

    // A ReLU mask can differ where y rounds to either side of 0 (y and y2 agree to rounding only);
    // there dx and dres differ by a whole dy, so those elements are counted, not compared.
    std::vector<char> keep(size, 1);
    int64_t flipped = 0;
    if (relu)
      for (int64_t i = 0; i < size; ++i)
        if ((y[i] > 0) != (y2[i] > 0)) keep[i] = 0, ++flipped;
    auto masked = [&](const std::vector<float>& a, const std::vector<float>& b) {
      std::vector<float> ma(a), mb(b);
      for (int64_t i = 0; i < size; ++i)
        if (!keep[i]) ma[i] = mb[i] = 0;
      return MaxRelDiff(ma, mb);
    };
    double diff = std::max({MaxRelDiff(y, y2), masked(dx, dx2), MaxRelDiff(dscale, dscale2),
                            MaxRelDiff(dshift, dshift2), add ? masked(dres, dres2) : 0.0});
    std::printf("%ld %ld %ld %ld %ld %.4f %.4f %.4f %.4f %.2e %ld\n", n, h, w, c, mode, ours_f, ours_b, dnn_f,
                dnn_b, diff, flipped);
    std::fflush(stdout);
  }
  return 0;
}
