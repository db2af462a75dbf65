// oneDNN convolutions for XLA:CPU, called through the XLA FFI.
//
// XLA:CPU's convolution runs the ResNet's 3x3 layers at 60-110 GFLOP/s on
// the machines we measured; oneDNN (what torch uses on CPU) runs them near the
// matmul peak. Three handlers: forward, gradient of the input, gradient of the
// weights. Layouts are JAX's: activations NHWC, weights HWIO; float32 or
// bfloat16 (accumulated in float32 by oneDNN). Primitives are built once per
// geometry and cached, since building one costs about as much as running it.
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "huge_pages.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// What fixes a convolution: shapes, strides, padding and the element type. Activations stay
// NHWC: letting oneDNN pick a blocked layout and reordering to and from it gained under 1 % of
// a training step at --resize 128 (the reorders eat most of what the blocked kernels save).
struct Geometry {
  int64_t n, h, w, c;     // input, NHWC
  int64_t oh, ow, o;      // output, NHWC
  int64_t kh, kw;         // kernel
  int64_t sh, sw;         // strides
  int64_t pt, pb, pl, pr; // padding (top, bottom, left, right)
  memory::data_type type;

  std::string Key(char kind) const {
    std::array<int64_t, 15> v{n, h, w, c, oh, ow, o, kh, kw, sh, sw, pt, pb, pl, pr};
    std::string key(1, kind);
    key += static_cast<char>(type);
    key.append(reinterpret_cast<const char*>(v.data()), sizeof(v));
    return key;
  }
  memory::desc Src(tag t) const { return memory::desc({n, c, h, w}, type, t); }
  memory::desc Dst(tag t) const { return memory::desc({n, o, oh, ow}, type, t); }
  memory::desc Weights(tag t) const { return memory::desc({o, c, kh, kw}, type, t); }
  memory::dims Strides() const { return {sh, sw}; }
  memory::dims PadL() const { return {pt, pl}; }
  memory::dims PadR() const { return {pb, pr}; }

  dnnl::convolution_forward::primitive_desc Forward() const {
    return dnnl::convolution_forward::primitive_desc(
        Engine(), dnnl::prop_kind::forward_training,
        dnnl::algorithm::convolution_direct, Src(tag::nhwc),
        Weights(tag::any), Dst(tag::nhwc), Strides(), PadL(), PadR());
  }
};

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// One argument of a primitive: its layout in the caller's buffer (NHWC or HWIO) and the layout
// the primitive uses, with the reorder between them when the two differ.
struct Operand {
  memory::desc user, used;
  bool same = true;
  dnnl::reorder reorder;

  void Init(const memory::desc& user_desc, const memory::desc& used_desc, bool is_input) {
    user = user_desc;
    used = used_desc;
    same = user == used;
    if (same) return;
    reorder = is_input
        ? dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), user, Engine(), used))
        : dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), used, Engine(), user));
  }
  // The memory to pass the primitive for an input, reordered into a temporary if need be.
  memory In(void* data) const {
    memory m(user, Engine(), data);
    if (same) return m;
    memory t(used, Engine());
    reorder.execute(Stream(), m, t);
    return t;
  }
  // The memory the primitive writes an output to; Out() copies it back into `data`.
  memory Scratch(void* data) const {
    return same ? memory(user, Engine(), data) : memory(used, Engine());
  }
  void Out(memory& written, void* data) const {
    if (same) return;
    memory m(user, Engine(), data);
    reorder.execute(Stream(), written, m);
  }
};

// A built primitive with its two inputs and its output.
struct Plan {
  dnnl::primitive primitive;
  Operand a, b, out;
};

template <typename Build>
std::shared_ptr<Plan> Cached(const std::string& key, Build build) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::shared_ptr<Plan>> plans;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
  }
  auto plan = build();
  std::lock_guard<std::mutex> lock(mutex);
  return plans.emplace(key, plan).first->second;
}

memory::data_type Type(ffi::DataType t) {
  return t == ffi::DataType::BF16 ? memory::data_type::bf16 : memory::data_type::f32;
}

Geometry Make(ffi::AnyBuffer x_like, ffi::AnyBuffer y_like, int64_t kh,
              int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
              int64_t pl, int64_t pr) {
  auto x = x_like.dimensions();
  auto y = y_like.dimensions();
  return Geometry{x[0], x[1], x[2], x[3], y[1], y[2], y[3], kh, kw, sh, sw,
                  pt, pb, pl, pr, Type(x_like.element_type())};
}

ffi::Error Checked(const std::function<void()>& body) {
  try {
    body();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal,
                      std::string("oneDNN convolution: ") + e.what());
  }
  return ffi::Error::Success();
}

// Runs `plan` on (a, b) -> out: inputs reordered in, the output reordered back.
//
// One convolution at a time in the process. XLA:CPU runs independent operations of a program
// concurrently (the two network passes of a flip-TTA eval, a layer's two gradients), and oneDNN's
// default scratchpad is shared between primitives: two convolutions running at once overwrote
// each other's scratch and returned wrong results (TTA logits off by up to 4.6 at --resize 48,
// test accuracy 67.67 % instead of 76.93 %). Each convolution already spreads over every core
// (oneDNN's OpenMP threads), so little is lost by running them one after another: at --resize 48
// (scripts/benchmark.py --no-torch --steps 10 --reps 3) training ran 104.4 images/s with the lock
// against 102.3 without, evaluation 357.7 against 378.8.
std::mutex& RunMutex() {
  static std::mutex mutex;
  return mutex;
}

void Run(const Plan& plan, int arg_a, void* a, int arg_b, void* b, int arg_out, void* out,
         size_t out_bytes) {
  std::lock_guard<std::mutex> lock(RunMutex());
  jaxresnet::AdviseHugePages(out, out_bytes);
  memory ma = plan.a.In(a), mb = plan.b.In(b), mo = plan.out.Scratch(out);
  plan.primitive.execute(Stream(), {{arg_a, ma}, {arg_b, mb}, {arg_out, mo}});
  plan.out.Out(mo, out);
  Stream().wait();
}

// y = conv(x, w)
ffi::Error ConvForwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer w,
                           ffi::Result<ffi::AnyBuffer> y, int64_t sh,
                           int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                           int64_t pr) {
  return Checked([&] {
    auto wd = w.dimensions();
    Geometry g = Make(x, *y, wd[0], wd[1], sh, sw, pt, pb, pl, pr);
    auto plan = Cached(g.Key('f'), [&] {
      auto pd = g.Forward();
      auto p = std::make_shared<Plan>();
      p->primitive = dnnl::convolution_forward(pd);
      p->a.Init(g.Src(tag::nhwc), pd.src_desc(), true);
      p->b.Init(g.Weights(tag::hwio), pd.weights_desc(), true);
      p->out.Init(g.Dst(tag::nhwc), pd.dst_desc(), false);
      return p;
    });
    Run(*plan, DNNL_ARG_SRC, x.untyped_data(), DNNL_ARG_WEIGHTS, w.untyped_data(),
        DNNL_ARG_DST, y->untyped_data(), y->size_bytes());
  });
}

// dx = conv_transpose(dy, w): the gradient of the input.
ffi::Error ConvBackwardDataImpl(ffi::AnyBuffer dy, ffi::AnyBuffer w,
                                ffi::Result<ffi::AnyBuffer> dx, int64_t sh,
                                int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                                int64_t pr) {
  return Checked([&] {
    auto wd = w.dimensions();
    Geometry g = Make(*dx, dy, wd[0], wd[1], sh, sw, pt, pb, pl, pr);
    auto plan = Cached(g.Key('d'), [&] {
      auto pd = dnnl::convolution_backward_data::primitive_desc(
          Engine(), dnnl::algorithm::convolution_direct, g.Src(tag::nhwc),
          g.Weights(tag::any), g.Dst(tag::nhwc), g.Strides(), g.PadL(),
          g.PadR(), g.Forward());
      auto p = std::make_shared<Plan>();
      p->primitive = dnnl::convolution_backward_data(pd);
      p->a.Init(g.Dst(tag::nhwc), pd.diff_dst_desc(), true);
      p->b.Init(g.Weights(tag::hwio), pd.weights_desc(), true);
      p->out.Init(g.Src(tag::nhwc), pd.diff_src_desc(), false);
      return p;
    });
    Run(*plan, DNNL_ARG_DIFF_DST, dy.untyped_data(), DNNL_ARG_WEIGHTS, w.untyped_data(),
        DNNL_ARG_DIFF_SRC, dx->untyped_data(), dx->size_bytes());
  });
}

// dw = correlation of x with dy: the gradient of the weights.
ffi::Error ConvBackwardWeightsImpl(ffi::AnyBuffer x, ffi::AnyBuffer dy,
                                   ffi::Result<ffi::AnyBuffer> dw, int64_t sh,
                                   int64_t sw, int64_t pt, int64_t pb,
                                   int64_t pl, int64_t pr) {
  return Checked([&] {
    auto wd = dw->dimensions();
    Geometry g = Make(x, dy, wd[0], wd[1], sh, sw, pt, pb, pl, pr);
    auto plan = Cached(g.Key('w'), [&] {
      auto pd = dnnl::convolution_backward_weights::primitive_desc(
          Engine(), dnnl::algorithm::convolution_direct, g.Src(tag::nhwc),
          g.Weights(tag::any), g.Dst(tag::nhwc), g.Strides(), g.PadL(),
          g.PadR(), g.Forward());
      auto p = std::make_shared<Plan>();
      p->primitive = dnnl::convolution_backward_weights(pd);
      p->a.Init(g.Src(tag::nhwc), pd.src_desc(), true);
      p->b.Init(g.Dst(tag::nhwc), pd.diff_dst_desc(), true);
      p->out.Init(g.Weights(tag::hwio), pd.diff_weights_desc(), false);
      return p;
    });
    Run(*plan, DNNL_ARG_SRC, x.untyped_data(), DNNL_ARG_DIFF_DST, dy.untyped_data(),
        DNNL_ARG_DIFF_WEIGHTS, dw->untyped_data(), dw->size_bytes());
  });
}

}  // namespace

#define JAXRESNET_CONV_ATTRS                                             \
  .Attr<int64_t>("sh").Attr<int64_t>("sw").Attr<int64_t>("pt")           \
      .Attr<int64_t>("pb").Attr<int64_t>("pl").Attr<int64_t>("pr")

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxresnetConvForward, ConvForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  JAXRESNET_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxresnetConvBackwardData, ConvBackwardDataImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  JAXRESNET_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxresnetConvBackwardWeights,
                              ConvBackwardWeightsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  JAXRESNET_CONV_ATTRS);
