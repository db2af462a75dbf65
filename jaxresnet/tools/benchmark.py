"""Side-by-side throughput of the JAX model and the PyTorch reference, in one process.

Steady-state training and eval images/s for both frameworks on the same device, batch size,
resolution and precision; repetitions alternate between the frameworks so machine drift hits both.
Compilation is timed separately. Achieved GFLOP/s come from XLA's cost analysis of the compiled
step, set against a float32 (or bf16) matmul measured on the same device.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from jaxresnet.config import TrainConfig
from jaxresnet.data import Split
from jaxresnet.models.layers import native_fallback_report
from jaxresnet.training.loop import DeviceData, StepSpec, predict_step, train_steps, zero_metrics
from jaxresnet.training.state import compute_dtype, new_state


@dataclass
class Result:
    device: str
    resize: int
    batch_size: int
    dtype: str
    conv_impl: str
    norm_impl: str = "auto"
    warmup_steps: int = 0
    jax_compile_s: float = 0.0
    jax_train_images_per_s: float = 0.0
    torch_train_images_per_s: float | None = None
    jax_eval_images_per_s: float = 0.0
    torch_eval_images_per_s: float | None = None
    train_ratio: float | None = None
    eval_ratio: float | None = None
    jax_train_gflop_per_step: float = 0.0
    jax_train_gflops_per_s: float = 0.0
    matmul_peak_gflops_per_s: float = 0.0
    jax_fraction_of_matmul_peak: float = 0.0
    torch_version: str | None = None
    jax_version: str = jax.__version__
    samples: dict = field(default_factory=dict)


def matmul_peak(dtype, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of a square matmul on the default device: the yardstick for 'fraction of peak'."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


@dataclass(frozen=True)
class Setting:
    """One measurement: the network, the step and how long to time it."""

    arch: str = "resnet34"
    resize: int = 128
    batch_size: int = 32
    dtype: str = "float32"
    conv_impl: str = "auto"
    norm_impl: str = "auto"
    steps: int = 5  # timed steps per repetition
    reps: int = 3  # alternating repetitions (median reported)
    warmup: int = 2  # untimed steps before each repetition's timed ones
    torch: bool = True  # PyTorch beside JAX

    @property
    def config(self) -> TrainConfig:
        return TrainConfig(
            arch=self.arch,
            resize=self.resize,
            batch_size=self.batch_size,
            dtype=self.dtype,
            conv_impl=self.conv_impl,
            norm_impl=self.norm_impl,
        )


def _jax_setup(setting: Setting):
    """Random uint8 images for `steps` batches on the device, the config's fresh state, an identity order."""
    rng = np.random.default_rng(0)
    n = setting.batch_size * setting.steps
    data = DeviceData.put(
        Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int32))
    )
    return data, new_state(setting.config), jax.random.key(0)


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


def train_step_gflop(arch, resize, batch, dtype, steps=1) -> float:
    """The model's GFLOP per training step, from XLA's cost analysis of the step with XLA's own
    convolutions and BatchNorm: custom calls (oneDNN, the fused BatchNorm, and on GPUs cuDNN's
    convolutions) are invisible to it, so it is always counted on the CPU backend."""
    if jax.default_backend() == "cpu":
        return _step_gflop_on_cpu(arch, resize, batch, jnp.dtype(dtype).name)
    # The count is linear in the batch; one compilation per resolution on the host serves all.
    return _step_gflop_on_cpu(arch, resize, 2, jnp.dtype(dtype).name) * batch / 2


@functools.cache
def _step_gflop_on_cpu(arch, resize, batch, dtype) -> float:
    with jax.default_device(jax.devices("cpu")[0]):
        setting = Setting(arch, resize, batch, dtype, conv_impl="xla", norm_impl="xla", steps=1)
        data, state, key = _jax_setup(setting)
        lowered = train_steps.lower(state, zero_metrics(), data.images, data.labels, key, 1, 0, _spec(setting))
        return _flops(lowered.compile()) / 1e9


def _spec(setting: Setting) -> StepSpec:
    return StepSpec(setting.batch_size, setting.resize, compute_dtype(setting.config))


def run(setting: Setting, log=print) -> Result:
    """Median images/s over `reps` alternating repetitions of `steps` timed steps each. Each
    repetition first runs `warmup` untimed steps: the first steps after the other framework ran
    are slower (JAX: 21-22 against 23.5-24.5 images/s at --resize 128), which a training run,
    doing nothing else, does not see."""
    res = Result(
        device=str(jax.devices()[0].device_kind),
        resize=setting.resize,
        batch_size=setting.batch_size,
        dtype=setting.dtype,
        conv_impl=setting.conv_impl,
        norm_impl=setting.norm_impl,
        warmup_steps=setting.warmup,
    )
    fns = {}
    fns["jax_train"], fns["jax_eval"], res.jax_compile_s = _jax_fns(setting)
    res.jax_train_gflop_per_step = train_step_gflop(
        setting.arch, setting.resize, setting.batch_size, _spec(setting).dtype, setting.steps
    )
    fns["jax_train"](), fns["jax_eval"]()  # warm-up (eval compiles here)
    if line := native_fallback_report():
        log(f"warning: {line}")
    if setting.torch:
        fns["torch_train"], fns["torch_eval"], res.torch_version = _torch_fns(
            setting.arch, setting.resize, setting.batch_size, setting.dtype, setting.steps, setting.warmup
        )
        fns["torch_train"](), fns["torch_eval"]()
    samples = {k: [] for k in ("jax_train", "jax_eval", "torch_train", "torch_eval")}
    for r in range(setting.reps):  # alternate, so drift in the machine's speed hits both frameworks
        for name in ("jax_train", "torch_train", "jax_eval", "torch_eval"):
            if name in fns:
                samples[name].append(fns[name]())
        log(f"  rep {r + 1}/{setting.reps}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in samples.items() if v))
    _fill(res, samples, setting)
    return res


def _jax_fns(setting: Setting):
    """(train, eval, compile seconds): each call times `steps` steps and returns images/s."""
    data, state, key = _jax_setup(setting)
    spec, batch = _spec(setting), setting.batch_size
    t = time.perf_counter()
    # The timed steps run this executable: jitting train_steps again would compile it a second time.
    step = train_steps.lower(state, zero_metrics(), data.images, data.labels, key, 1, 0, spec).compile()
    compile_s = time.perf_counter() - t
    held = {"state": state, "metrics": zero_metrics()}

    def train():
        for s in range(setting.warmup):
            held["state"], held["metrics"] = step(
                held["state"], held["metrics"], data.images, data.labels, key, 1, s % setting.steps
            )
        jax.block_until_ready(held["metrics"])
        t = time.perf_counter()
        for s in range(setting.steps):
            held["state"], held["metrics"] = step(held["state"], held["metrics"], data.images, data.labels, key, 1, s)
        jax.block_until_ready(held["metrics"])
        return setting.steps * batch / (time.perf_counter() - t)

    def evaluate():
        t = time.perf_counter()
        outs = [
            predict_step(held["state"], data.images, jnp.arange(s * batch, (s + 1) * batch), spec.for_eval(batch))
            for s in range(setting.steps)
        ]
        jax.block_until_ready(outs)
        return setting.steps * batch / (time.perf_counter() - t)

    return train, evaluate, compile_s


def _fill(res: Result, samples: dict, setting: Setting) -> None:
    med = {k: float(np.median(v)) if v else None for k, v in samples.items()}
    res.samples = samples
    res.jax_train_images_per_s, res.jax_eval_images_per_s = med["jax_train"], med["jax_eval"]
    res.torch_train_images_per_s, res.torch_eval_images_per_s = med["torch_train"], med["torch_eval"]
    if setting.torch:
        res.train_ratio = res.jax_train_images_per_s / res.torch_train_images_per_s
        res.eval_ratio = res.jax_eval_images_per_s / res.torch_eval_images_per_s
    res.jax_train_gflops_per_s = res.jax_train_gflop_per_step * res.jax_train_images_per_s / setting.batch_size
    res.matmul_peak_gflops_per_s = matmul_peak(_spec(setting).dtype)
    res.jax_fraction_of_matmul_peak = res.jax_train_gflops_per_s / res.matmul_peak_gflops_per_s


def _torch_fns(arch, resize, batch, dtype, steps, warmup=0):
    import torch
    import torch.nn.functional as F

    from jaxresnet.pytorch.reference import TORCH_ARCHS, torch_preprocess

    # On a GPU torch gets what a user tuning it would use: cuDNN's autotuner and channels-last.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fmt = torch.channels_last if device == "cuda" else torch.contiguous_format
    torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (batch * steps, 32, 32, 3), dtype=np.uint8)).to(device)
    labels = torch.from_numpy(rng.integers(0, 10, batch * steps)).long().to(device)
    model = TORCH_ARCHS[arch](num_classes=10).to(device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step(s):
        x = torch_preprocess(images[s * batch : (s + 1) * batch], resize).contiguous(memory_format=fmt)
        with autocast:
            loss = F.cross_entropy(model(x), labels[s * batch : (s + 1) * batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def train():
        model.train()
        for s in range(warmup):
            step(s % steps)
        sync()
        t = time.perf_counter()
        for s in range(steps):
            step(s)
        sync()
        return steps * batch / (time.perf_counter() - t)

    def evaluate():
        model.eval()
        sync()
        t = time.perf_counter()
        with torch.no_grad(), autocast:
            for s in range(steps):
                model(
                    torch_preprocess(images[s * batch : (s + 1) * batch], resize).contiguous(memory_format=fmt)
                ).argmax(1)
        sync()
        return steps * batch / (time.perf_counter() - t)

    return train, evaluate, torch.__version__


def format_result(r: Result) -> str:
    def f(x, spec=".1f"):
        return "-" if x is None else format(x, spec)

    rows = [
        ("", "JAX", "torch", "JAX/torch"),
        ("train images/s", f(r.jax_train_images_per_s), f(r.torch_train_images_per_s), f(r.train_ratio, ".2f")),
        ("eval images/s", f(r.jax_eval_images_per_s), f(r.torch_eval_images_per_s), f(r.eval_ratio, ".2f")),
    ]
    w = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"{r.device}, resize {r.resize}, batch {r.batch_size}, {r.dtype}, conv {r.conv_impl}, norm {r.norm_impl}, "
        f"jax {r.jax_version}, torch {r.torch_version or '-'}"
    ]
    lines += ["  ".join(c.rjust(wi) for c, wi in zip(row, w)) for row in rows]
    lines.append(
        f"JAX compile: {r.jax_compile_s:.1f} s; train step {r.jax_train_gflop_per_step:.1f} GFLOP "
        f"(XLA cost analysis) -> {r.jax_train_gflops_per_s:.1f} GFLOP/s = "
        f"{100 * r.jax_fraction_of_matmul_peak:.0f} % of a {r.matmul_peak_gflops_per_s:.0f} GFLOP/s "
        f"{r.dtype} matmul on this device"
    )
    return "\n".join(lines)


def as_json(r: Result) -> dict:
    return asdict(r)
