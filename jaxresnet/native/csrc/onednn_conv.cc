// oneDNN convolutions for XLA:CPU, called through the XLA FFI.
//
// XLA:CPU's convolution runs the ResNet's 3x3 layers at 60-110 GFLOP/s on
// the machines we measured; oneDNN (what torch uses on CPU) runs them near the
// matmul peak. Three handlers: forward, gradient of the input, gradient of the
// weights. Layouts are JAX's: activations NHWC, weights HWIO; float32 or
// bfloat16 (accumulated in float32 by oneDNN). Primitives are built once per
// geometry and cached, since building one costs about as much as running it.
//
// Scratch memory is ours, not oneDNN's ("user" scratchpad mode). oneDNN's default
// ("library") scratchpad is a thread-local buffer of the thread that *creates* a
// primitive, looked up again on the thread that *executes* it. XLA:CPU runs a
// custom call on whichever of its threads is free, so a primitive built on one
// thread and run on another found that thread's buffer: absent (null) or sized
// for other primitives. The gemm-based convolutions that AVX2 and SSE4.1 CPUs
// get keep their im2col columns there and crashed (SIGSEGV in im2col_dt); the
// AVX-512 kernels use little scratch and returned wrong results instead when two
// ran at once. Now every execution gets a buffer of its own thread, sized from
// the primitive's own scratchpad descriptor.
//
// JaxresnetConvProbe (plain C) builds one pass's primitive the way the handlers
// do, runs it on a thread other than the one that built it, and checks two images
// against a direct double-precision convolution: jaxresnet.native.probe runs it in
// a child process before a layer is given to oneDNN, so a kernel that crashes or
// miscomputes on some CPU costs that layer its speed (it runs on XLA), never the run.
#include <array>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

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

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// The three passes of a convolution, by the letter the cache keys and the probe use.
const char* PassName(char kind) {
  return kind == 'f' ? "forward" : kind == 'd' ? "input gradient" : "weight gradient";
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
  // How the probe's warnings and JAXRESNET_ONEDNN_FAULT name one pass of a layer.
  std::string Label(char kind) const {
    char text[200];
    std::snprintf(text, sizeof(text), "%s of conv %ldx%ld %ld->%ld stride %ld on %ldx%ldx%ld %s",
                  PassName(kind), long(kh), long(kw), long(c), long(o), long(sh), long(n), long(h),
                  long(w), type == memory::data_type::bf16 ? "bfloat16" : "float32");
    return text;
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
        Weights(tag::any), Dst(tag::nhwc), Strides(), PadL(), PadR(), UserScratchpad());
  }
};

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// This thread's scratch memory, at least `bytes` long. One execution at a time per thread, so a
// buffer per thread is enough; it only grows.
void* ThreadScratch(size_t bytes) {
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<void, Free> buffer;
  thread_local size_t size = 0;
  if (bytes > size) {
    size_t rounded = (bytes + 4095) / 4096 * 4096;
    buffer.reset(std::aligned_alloc(4096, rounded));
    if (!buffer) throw std::bad_alloc();
    size = rounded;
  }
  return buffer.get();
}

// The arguments of one execution, plus its scratchpad when the primitive has one.
void Execute(const dnnl::primitive& p, const memory::desc& scratch,
             std::unordered_map<int, memory> args) {
  if (scratch.get_size() > 0)
    args.insert({DNNL_ARG_SCRATCHPAD, memory(scratch, Engine(), ThreadScratch(scratch.get_size()))});
  p.execute(Stream(), args);
}

// One argument of a primitive: its layout in the caller's buffer (NHWC or HWIO) and the layout
// the primitive uses, with the reorder between them when the two differ.
struct Operand {
  memory::desc user, used, scratch;
  bool same = true;
  dnnl::reorder reorder;

  void Init(const memory::desc& user_desc, const memory::desc& used_desc, bool is_input) {
    user = user_desc;
    used = used_desc;
    same = user == used;
    if (same) return;
    auto pd = is_input
        ? dnnl::reorder::primitive_desc(Engine(), user, Engine(), used, UserScratchpad())
        : dnnl::reorder::primitive_desc(Engine(), used, Engine(), user, UserScratchpad());
    scratch = pd.scratchpad_desc();
    reorder = dnnl::reorder(pd);
  }
  // The memory to pass the primitive for an input, reordered into a temporary if need be.
  memory In(void* data) const {
    memory m(user, Engine(), data);
    if (same) return m;
    memory t(used, Engine());
    Execute(reorder, scratch, {{DNNL_ARG_FROM, m}, {DNNL_ARG_TO, t}});
    return t;
  }
  // The memory the primitive writes an output to; Out() copies it back into `data`.
  memory Scratch(void* data) const {
    return same ? memory(user, Engine(), data) : memory(used, Engine());
  }
  void Out(memory& written, void* data) const {
    if (same) return;
    memory m(user, Engine(), data);
    Execute(reorder, scratch, {{DNNL_ARG_FROM, written}, {DNNL_ARG_TO, m}});
  }
};

// A built primitive with its two inputs and its output.
struct Plan {
  char kind;
  std::string label, impl;
  dnnl::primitive primitive;
  memory::desc scratch;
  Operand a, b, out;
  int arg_a, arg_b, arg_out;
};

template <typename PrimitiveDesc, typename Primitive>
void Finish(Plan& p, const PrimitiveDesc& pd) {
  p.primitive = Primitive(pd);
  p.scratch = pd.scratchpad_desc();
  p.impl = pd.impl_info_str();
}

std::shared_ptr<Plan> Build(char kind, const Geometry& g) {
  auto p = std::make_shared<Plan>();
  p->kind = kind;
  p->label = g.Label(kind);
  if (kind == 'f') {  // y = conv(x, w)
    auto pd = g.Forward();
    Finish<decltype(pd), dnnl::convolution_forward>(*p, pd);
    p->a.Init(g.Src(tag::nhwc), pd.src_desc(), true);
    p->b.Init(g.Weights(tag::hwio), pd.weights_desc(), true);
    p->out.Init(g.Dst(tag::nhwc), pd.dst_desc(), false);
    p->arg_a = DNNL_ARG_SRC, p->arg_b = DNNL_ARG_WEIGHTS, p->arg_out = DNNL_ARG_DST;
  } else if (kind == 'd') {  // dx = conv_transpose(dy, w)
    auto pd = dnnl::convolution_backward_data::primitive_desc(
        Engine(), dnnl::algorithm::convolution_direct, g.Src(tag::nhwc), g.Weights(tag::any),
        g.Dst(tag::nhwc), g.Strides(), g.PadL(), g.PadR(), g.Forward(), UserScratchpad());
    Finish<decltype(pd), dnnl::convolution_backward_data>(*p, pd);
    p->a.Init(g.Dst(tag::nhwc), pd.diff_dst_desc(), true);
    p->b.Init(g.Weights(tag::hwio), pd.weights_desc(), true);
    p->out.Init(g.Src(tag::nhwc), pd.diff_src_desc(), false);
    p->arg_a = DNNL_ARG_DIFF_DST, p->arg_b = DNNL_ARG_WEIGHTS, p->arg_out = DNNL_ARG_DIFF_SRC;
  } else {  // dw = correlation of x with dy
    auto pd = dnnl::convolution_backward_weights::primitive_desc(
        Engine(), dnnl::algorithm::convolution_direct, g.Src(tag::nhwc), g.Weights(tag::any),
        g.Dst(tag::nhwc), g.Strides(), g.PadL(), g.PadR(), g.Forward(), UserScratchpad());
    Finish<decltype(pd), dnnl::convolution_backward_weights>(*p, pd);
    p->a.Init(g.Src(tag::nhwc), pd.src_desc(), true);
    p->b.Init(g.Dst(tag::nhwc), pd.diff_dst_desc(), true);
    p->out.Init(g.Weights(tag::hwio), pd.diff_weights_desc(), false);
    p->arg_a = DNNL_ARG_SRC, p->arg_b = DNNL_ARG_DIFF_DST, p->arg_out = DNNL_ARG_DIFF_WEIGHTS;
  }
  return p;
}

std::shared_ptr<Plan> Cached(char kind, const Geometry& g) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::shared_ptr<Plan>> plans;
  const std::string key = g.Key(kind);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
  }
  auto plan = Build(kind, g);
  std::lock_guard<std::mutex> lock(mutex);
  return plans.emplace(key, plan).first->second;
}

// A failure injected for tests: JAXRESNET_ONEDNN_FAULT="crash:TEXT" kills the process with
// SIGSEGV, "wrong:TEXT" corrupts the output, in every pass whose label contains TEXT -- what a
// faulty kernel on an untested CPU would do, to show that such a layer is kept off oneDNN.
void InjectedFault(const Plan& plan, void* out) {
  static const std::string fault = [] {
    const char* v = std::getenv("JAXRESNET_ONEDNN_FAULT");
    return std::string(v ? v : "");
  }();
  if (fault.empty()) return;
  auto colon = fault.find(':');
  if (colon == std::string::npos || plan.label.find(fault.substr(colon + 1)) == std::string::npos) return;
  if (fault.compare(0, colon, "crash") == 0) std::raise(SIGSEGV);
  if (fault.compare(0, colon, "wrong") == 0) std::memset(out, 0x7f, 4);
}

// One convolution at a time in the process, unless JAXRESNET_ONEDNN_CONCURRENT=1 (or
// JaxresnetConvSetConcurrent) lets XLA run independent ones at once. Both are correct, all
// scratch being the executing thread's; one at a time was no slower where XLA overlaps them
// (BENCHMARKS.md), each convolution already spreading over every core on oneDNN's OpenMP threads.
std::atomic<bool>& Concurrent() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("JAXRESNET_ONEDNN_CONCURRENT");
    return v != nullptr && std::string(v) == "1";
  }()};
  return on;
}

// Runs `plan` on (a, b) -> out: inputs reordered in, the output reordered back.
void Run(const Plan& plan, void* a, void* b, void* out, size_t out_bytes) {
  static std::mutex mutex;
  std::unique_lock<std::mutex> lock(mutex, std::defer_lock);
  if (!Concurrent()) lock.lock();
  jaxresnet::AdviseHugePages(out, out_bytes);
  memory ma = plan.a.In(a), mb = plan.b.In(b), mo = plan.out.Scratch(out);
  Execute(plan.primitive, plan.scratch, {{plan.arg_a, ma}, {plan.arg_b, mb}, {plan.arg_out, mo}});
  plan.out.Out(mo, out);
  Stream().wait();
  InjectedFault(plan, out);
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
  } catch (const std::bad_alloc&) {
    return ffi::Error(ffi::ErrorCode::kResourceExhausted, "oneDNN convolution: out of memory");
  }
  return ffi::Error::Success();
}

// y = conv(x, w)
ffi::Error ConvForwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer w,
                           ffi::Result<ffi::AnyBuffer> y, int64_t sh,
                           int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                           int64_t pr) {
  return Checked([&] {
    auto wd = w.dimensions();
    Geometry g = Make(x, *y, wd[0], wd[1], sh, sw, pt, pb, pl, pr);
    Run(*Cached('f', g), x.untyped_data(), w.untyped_data(), y->untyped_data(), y->size_bytes());
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
    Run(*Cached('d', g), dy.untyped_data(), w.untyped_data(), dx->untyped_data(), dx->size_bytes());
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
    Run(*Cached('w', g), x.untyped_data(), dy.untyped_data(), dw->untyped_data(), dw->size_bytes());
  });
}

// --- the probe ---------------------------------------------------------------------------------

uint16_t ToBf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

float FromBf16(uint16_t h) {
  uint32_t u = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// A buffer of `count` elements of the probe's type, with the float values it holds.
struct Tensor {
  bool bf16;
  std::vector<float> values;
  std::vector<uint16_t> half;
  Tensor(int64_t count, bool bf16) : bf16(bf16), values(count, 0.0f), half(bf16 ? count : 0, 0) {}
  // Deterministic values in [-1, 1], rounded to the element type; `keep(i)` false leaves zeros.
  template <typename Keep>
  void Fill(uint64_t seed, Keep keep) {
    for (size_t i = 0; i < values.size(); ++i) {
      if (!keep(i)) continue;
      uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull + seed;
      z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
      float v = static_cast<float>((z >> 40) % 2001) / 1000.0f - 1.0f;
      if (bf16) half[i] = ToBf16(v), v = FromBf16(half[i]);
      values[i] = v;
    }
  }
  void* data() { return bf16 ? static_cast<void*>(half.data()) : static_cast<void*>(values.data()); }
  float at(size_t i) const { return bf16 ? FromBf16(half[i]) : values[i]; }
  size_t bytes() const { return values.size() * (bf16 ? 2 : 4); }
};

// The largest |oneDNN - direct| over images 0 and n-1 (the weight gradient: from those two
// images alone, the others' dy being zero), relative to the largest |direct| value.
double Compare(char kind, const Geometry& g, const Tensor& x, const Tensor& w, const Tensor& y) {
  // x, w, y are the pass's (input, weights, output) in forward terms; for 'd' the computed one is
  // x, for 'w' it is w, for 'f' it is y.
  std::vector<int64_t> images{0};
  if (g.n > 1) images.push_back(g.n - 1);
  std::vector<double> ref(kind == 'w' ? w.values.size() : (kind == 'd' ? g.h * g.w * g.c : g.oh * g.ow * g.o));
  double worst = 0.0, scale = 0.0;
  for (int64_t img : images) {
    if (kind != 'w') std::fill(ref.begin(), ref.end(), 0.0);
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox)
        for (int64_t ky = 0; ky < g.kh; ++ky)
          for (int64_t kx = 0; kx < g.kw; ++kx) {
            int64_t iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx;
            if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
            size_t xi = ((img * g.h + iy) * g.w + ix) * g.c, yi = ((img * g.oh + oy) * g.ow + ox) * g.o;
            size_t wi = (ky * g.kw + kx) * g.c * g.o;
            for (int64_t c = 0; c < g.c; ++c)
              for (int64_t o = 0; o < g.o; ++o) {
                if (kind == 'f') ref[(oy * g.ow + ox) * g.o + o] += double(x.values[xi + c]) * w.values[wi + c * g.o + o];
                if (kind == 'd') ref[(iy * g.w + ix) * g.c + c] += double(y.values[yi + o]) * w.values[wi + c * g.o + o];
                if (kind == 'w') ref[wi + c * g.o + o] += double(x.values[xi + c]) * y.values[yi + o];
              }
          }
    if (kind == 'w') continue;
    const Tensor& got = kind == 'f' ? y : x;
    size_t base = img * ref.size();
    for (size_t i = 0; i < ref.size(); ++i) {
      scale = std::max(scale, std::fabs(ref[i]));
      double d = std::fabs(got.at(base + i) - ref[i]);
      worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    }
  }
  if (kind == 'w')
    for (size_t i = 0; i < ref.size(); ++i) {
      scale = std::max(scale, std::fabs(ref[i]));
      double d = std::fabs(w.at(i) - ref[i]);
      worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    }
  return worst / std::max(scale, 1e-30);
}

Geometry FromDims(const int64_t* d, int bf16) {
  return Geometry{d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12],
                  d[13], d[14], bf16 ? memory::data_type::bf16 : memory::data_type::f32};
}

}  // namespace

extern "C" void JaxresnetConvSetConcurrent(int on) { Concurrent() = on != 0; }

// The label of pass `kind` of the convolution `dims` (as JaxresnetConvProbe takes them): written
// before a probe runs, so that a probe which kills its process still names what it ran.
extern "C" void JaxresnetConvLabel(int kind, int bf16, const int64_t* dims, char* info, int info_size) {
  Geometry g = FromDims(dims, bf16);
  std::snprintf(info, info_size, "%s", g.Label(static_cast<char>(kind)).c_str());
}

// Builds pass `kind` ('f', 'd', 'w') of the convolution `dims` (n h w c oh ow o kh kw sh sw pt pb
// pl pr; bf16 != 0 for bfloat16), runs it once on the calling thread and once on another (as XLA
// does), and writes "label\timplementation" or the error to `info`. Returns 0 when it ran, with
// `error` the worse relative difference from the direct convolution of the two runs; 1 when
// oneDNN has no primitive for it; 2 on any other failure.
extern "C" int JaxresnetConvProbe(int kind, int bf16, const int64_t* dims, char* info, int info_size,
                                  double* error) {
  Geometry g = FromDims(dims, bf16);
  char k = static_cast<char>(kind);
  std::string label = g.Label(k);
  try {
    auto plan = Cached(k, g);
    std::snprintf(info, info_size, "%s\t%s", label.c_str(), plan->impl.c_str());
    Tensor x(g.n * g.h * g.w * g.c, bf16), w(g.kh * g.kw * g.c * g.o, bf16), y(g.n * g.oh * g.ow * g.o, bf16);
    const int64_t image_y = g.oh * g.ow * g.o;
    auto all = [](size_t) { return true; };
    // The weight gradient sums over the batch: dy is zero but on the two images checked.
    auto ends = [&](size_t i) { return i < size_t(image_y) || i >= size_t((g.n - 1) * image_y); };
    if (k != 'd') x.Fill(1, all);
    if (k != 'w') w.Fill(2, all);
    if (k == 'd') y.Fill(3, all);
    if (k == 'w') y.Fill(3, ends);
    Tensor& out = k == 'f' ? y : k == 'd' ? x : w;
    void* a = k == 'w' ? x.data() : (k == 'f' ? x.data() : y.data());
    void* b = k == 'w' ? y.data() : w.data();
    double worst = 0.0;
    for (int round = 0; round < 2; ++round) {
      std::memset(out.data(), 0, out.bytes());
      auto body = [&] { Run(*plan, a, b, out.data(), out.bytes()); };
      if (round == 0) {
        body();
      } else {
        std::thread other(body);  // not the thread that built the primitive
        other.join();
      }
      if (out.bf16)
        for (size_t i = 0; i < out.values.size(); ++i) out.values[i] = FromBf16(out.half[i]);
      worst = std::max(worst, Compare(k, g, x, w, y));
    }
    *error = worst;
    return 0;
  } catch (const dnnl::error& e) {
    std::snprintf(info, info_size, "%s\t%s", label.c_str(), e.what());
    return e.status == dnnl_unimplemented ? 1 : 2;
  } catch (const std::exception& e) {
    std::snprintf(info, info_size, "%s\t%s", label.c_str(), e.what());
    return 2;
  }
}

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
