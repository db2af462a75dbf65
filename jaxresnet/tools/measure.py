"""Everything measured in one go, for a machine lent for minutes: `scripts/measure.py OUTDIR`.

1. The benchmark matrix (`tools.benchmark`): --resize 32/64/128 x float32/bfloat16 x the reference
   batch and a large one, JAX against torch where torch is installed.
2. The whole reference run (10 epochs at --resize 128, every test image scored), its wall time split
   into compilation (XLA's own compile events), training and scoring, and peak memory (the device's
   where it reports it, else the process's peak RSS).
3. With --parity, the parity experiment at the full reference setting: 3 seeds per framework, the
   curves overlaid (`tools.compare`).

It degrades by itself: no torch (JAX alone), no TensorFlow (a data cache must hold the subsets), CPU
only. `--quick` shrinks every part and takes ResNet18 (a check of the machinery, not a measurement).
Writes OUTDIR/measure.json and OUTDIR/measure.md and prints the table.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import platform
import re
import time
from dataclasses import dataclass

import jax

from jaxresnet.config import TrainConfig


@dataclass(frozen=True)
class Plan:
    resizes: tuple[int, ...]
    dtypes: tuple[str, ...]
    batches: tuple[int, ...]
    steps: int
    reps: int
    warmup: int
    reference: TrainConfig
    parity_seeds: tuple[int, ...]
    # steps per jitted call compared at (resize, batch, steps per epoch): per-step dispatch against a scan
    dispatch: tuple[int, int, int] = (32, 32, 32)
    dispatch_chunks: tuple[int, ...] = (1, 16)
    warm_epochs: int | None = None  # the warm run's epochs (None: the reference run's)
    arch: str = "resnet34"  # of every part; --quick takes the smaller network, which compiles in half the time


def plan(quick: bool, on_gpu: bool, data_dir, data_cache) -> Plan:
    data = dict(data_dir=data_dir, download=False, data_cache=data_cache)
    if quick:
        return Plan(
            (32,),
            ("float32", "bfloat16"),
            (32,),
            steps=2,
            reps=1,
            warmup=1,
            reference=TrainConfig(arch="resnet18", resize=32, epochs=2, train_per_class=10, test_per_class=10, **data),
            parity_seeds=(0,),
            dispatch=(16, 8, 4),
            dispatch_chunks=(1, 4),
            arch="resnet18",
        )
    large = 256 if on_gpu else 128
    return Plan(
        (32, 64, 128),
        ("float32", "bfloat16"),
        (32, large),
        steps=10 if on_gpu else 3,
        reps=3 if on_gpu else 2,
        warmup=2 if on_gpu else 1,
        reference=TrainConfig(resize=128, epochs=10, **data),
        parity_seeds=(0, 1, 2),
        dispatch=(128, 32, 64) if on_gpu else (32, 32, 32),
        warm_epochs=None if on_gpu else 1,  # on a CPU the hour would show nothing its first epoch does not
    )


def environment() -> dict:
    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": _version("torch"),
        "tensorflow": _version("tensorflow"),
        "tensorflow_datasets": _version("tensorflow_datasets"),
    }


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return __import__(module).__version__
    except Exception as e:  # installed but broken: say so rather than fail the whole measurement
        return f"unusable ({type(e).__name__})"


def benchmark_matrix(p: Plan, torch_too: bool, log, rows: list) -> None:
    """Appends one row per setting to `rows`, the reference resolution first."""
    from jaxresnet.tools.benchmark import Setting, as_json, run

    for resize in sorted(p.resizes, reverse=True):
        for dtype in p.dtypes:
            for batch in p.batches:
                log(f"benchmark --resize {resize} --dtype {dtype} --batch-size {batch}")
                r = run(
                    Setting(p.arch, resize, batch, dtype, steps=p.steps, reps=p.reps, warmup=p.warmup, torch=torch_too),
                    log=log,
                )
                rows.append(as_json(r))


def steps_per_call(p: Plan, log) -> list[dict]:
    """Training images/s with one step per jitted call against several (`lax.scan`), on synthetic data:
    the median of alternating epochs after a compiling one."""
    import numpy as np

    from jaxresnet.data import Split
    from jaxresnet.training.loop import DeviceData, StepSpec, train_epoch
    from jaxresnet.training.state import new_state

    resize, batch, steps = p.dispatch
    log(f"steps per call {', '.join(map(str, p.dispatch_chunks))} at --resize {resize}, batch {batch}")
    rng = np.random.default_rng(0)
    n = batch * steps
    data = DeviceData.put(
        Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int32))
    )
    config = TrainConfig(arch=p.arch, resize=resize, batch_size=batch)
    states, rates = {}, {c: [] for c in p.dispatch_chunks}
    for rep in range(p.reps + 1):  # the first epoch compiles
        for c in p.dispatch_chunks:
            state = states.get(c) or new_state(config)
            states[c], r = train_epoch(state, data, jax.random.key(1), rep + 1, StepSpec(batch, resize, steps=c))
            if rep:
                rates[c].append(n / r.seconds)
    return [
        {
            "resize": resize,
            "batch_size": batch,
            "steps": steps,
            "steps_per_call": c,
            "images_per_s": round(sorted(v)[len(v) // 2], 2),
            "all": [round(x, 2) for x in v],
        }
        for c, v in rates.items()
    ]


def reference_run(config: TrainConfig, workdir: str, cache: str, framework: str = "jax") -> dict:
    """Train `config` in `workdir` as a user would, a new process of scripts/train.py (or
    train_torch.py) over the compilation cache folder `cache`, and time it: wall, to the first
    training step, compilation (summed over the programs, which compile side by side), training,
    scoring, and the process's peak memory."""
    import subprocess
    import sys

    from jaxresnet.config import config_flags
    from jaxresnet.training.steplog import ENV

    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts",
                          "train.py" if framework == "jax" else "train_torch.py")  # fmt: skip
    flags = config_flags(config) + ["--workdir", workdir] + (["--no-progress"] if framework == "jax" else [])
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache, JAX_LOG_COMPILES="1", **{ENV: workdir + ".steps"})
    os.makedirs(os.path.dirname(os.path.abspath(workdir)), exist_ok=True)
    with open(workdir + ".log", "w") as log:
        t0, started = time.perf_counter(), time.time()
        proc = subprocess.Popen([sys.executable, script, *flags], stdout=log, stderr=log, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    with open(workdir + ".log") as f:
        text = f.read()
    if os.waitstatus_to_exitcode(status) != 0:
        return {"error": (text.strip().splitlines() or ["no output"])[-1]}
    with open(os.path.join(workdir, "metrics.json")) as f:
        history = json.load(f)
    compile_s = sum(map(float, re.findall(r"Finished (?:tracing|jaxpr to MLIR module conversion|XLA compilation) "
                                          r".* in ([\d.e+-]+) sec", text)))  # fmt: skip
    return {
        **_timings(framework, workdir, config, history, wall, _first_step(workdir + ".steps", started)),
        "compile_s": round(compile_s, 2) if framework == "jax" else None,
        "compilations": len(re.findall(r"Compiling \S+ with global shapes", text)),
        "cache_hits": len(re.findall(r"Persistent compilation cache hit", text)),
        "host_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        **_device_peak(workdir + ".steps"),
    }


def _device_peak(log: str) -> dict:
    """The device's peak memory as the run logged it (accelerators that report it)."""
    try:
        with open(log) as f:
            peaks = [int(line.split()[3]) for line in f if line.split()[1] == "device-peak-bytes"]
    except OSError:
        peaks = []
    return {"device_peak_mb": round(max(peaks) / 2**20, 1)} if peaks else {}


def _first_step(log: str, started: float) -> float | None:
    """Seconds from `started` (a unix time) to the first training call in the step log."""
    try:
        with open(log) as f:
            for line in f:
                t, event, *_ = line.split()
                if event == "train":
                    return round(float(t) - started, 2)
    except OSError:
        pass
    return None


def _timings(framework, workdir, config, h, wall, first_step) -> dict:
    train_s = sum(e["train_seconds"] for e in h)
    score_s = sum(e["seconds"] - e["train_seconds"] for e in h)
    steady = sorted(e["seconds"] for e in h[1:]) or [h[0]["seconds"]]
    return {
        "framework": framework,
        "workdir": workdir,
        "config": config.to_dict(),
        "epochs": len(h),
        "wall_s": round(wall, 2),
        "first_step_s": first_step,  # from the start of the run to its first training step
        "train_s": round(train_s, 2),
        "score_s": round(score_s, 2),
        # loading the data, building the state, writing outputs and checkpoints
        "other_s": round(wall - train_s - score_s, 2),
        "steady_epoch_s": round(steady[len(steady) // 2], 3),
        "final_train_accuracy": h[-1]["train_accuracy"],
        "final_test_accuracy": h[-1]["test_accuracy"],
        "best_test_accuracy": max(e["test_accuracy"] for e in h if e["test_accuracy"] is not None),
    }


def parity(p: Plan, outdir: str, torch_too: bool, log) -> dict:
    from jaxresnet.tools.compare import compare_runs

    # Full float32 in both frameworks: JAX's GPU default (and torch's for convolutions) is TF32.
    jax.config.update("jax_default_matmul_precision", "highest")
    if torch_too:
        import torch

        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    runs = []
    for framework in ("jax", "torch") if torch_too else ("jax",):
        for seed in p.parity_seeds:
            log(f"parity: {framework} seed {seed}")
            workdir = os.path.join(outdir, "parity", f"{framework}-s{seed}")
            cache = os.path.join(outdir, "xla-cache")
            runs.append(reference_run(dataclasses.replace(p.reference, seed=seed), workdir, cache, framework))
    table = compare_runs([r["workdir"] for r in runs], os.path.join(outdir, "parity.png"), markdown=True)
    return {"runs": runs, "table": table, "figure": os.path.join(outdir, "parity.png")}


@dataclass(frozen=True)
class Options:
    """What to measure (scripts/measure.py's flags)."""

    quick: bool = False
    parity: bool = False  # also the parity experiment
    parity_only: bool = False  # the parity experiment alone (a second short machine loan after a first)
    data_dir: str | None = None
    data_cache: str | None = None
    torch: bool | None = None  # None: where torch is installed
    seeds: int | None = None  # parity seeds per framework (None: the plan's)


def measure(outdir: str, options: Options = Options(), log=print) -> dict:
    """Runs every part, the reference run first; measure.json and measure.md are rewritten after each
    part, so a machine taken back mid-way still leaves what was measured."""
    os.makedirs(outdir, exist_ok=True)
    env = environment()
    torch_too = env["torch"] is not None if options.torch is None else options.torch
    p = plan(options.quick, env["backend"] == "gpu", options.data_dir, options.data_cache)
    if options.seeds is not None:
        p = dataclasses.replace(p, parity_seeds=tuple(range(options.seeds)))
    result = {
        "environment": env,
        "quick": options.quick,
        "complete": False,
        "benchmarks": [],
        "plan": {k: v for k, v in dataclasses.asdict(p).items() if k != "reference"},
    }
    save = functools.partial(_save, outdir, result, time.perf_counter())
    if not options.parity_only:
        # Cold: a compilation cache of its own, empty; warm: the same command again over it.
        cache, run = os.path.join(outdir, "xla-cache"), os.path.join(outdir, "reference-run")
        log(f"reference run: {p.reference.epochs} epochs at --resize {p.reference.resize}")
        result["reference_run"] = reference_run(p.reference, run, cache)
        save()
        log("reference run again, warm: a new process over the compilation cache the first one filled")
        warm = dataclasses.replace(p.reference, epochs=p.warm_epochs or p.reference.epochs)
        result["reference_run_warm"] = reference_run(warm, run + "-warm", cache)
        save()
        benchmark_matrix(p, torch_too, log, result["benchmarks"])
        save()
        result["steps_per_call"] = steps_per_call(p, log)
        save()
    if options.parity or options.parity_only:
        result["parity"] = parity(p, outdir, torch_too, log)
    result["complete"] = True
    save()
    return result


def _save(outdir: str, result: dict, t0: float) -> None:
    result["total_s"] = round(time.perf_counter() - t0, 1)
    with open(os.path.join(outdir, "measure.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(outdir, "measure.md"), "w") as f:
        f.write(markdown(result) + "\n")


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        f"Device: {env['device']} ({env['backend']}, {env['device_count']} device(s)); jax {env['jax']}, "
        f"torch {env['torch'] or 'absent'}, TensorFlow {env['tensorflow'] or 'absent'}"
        + (" — quick settings" if result["quick"] else ""),
        "",
        "| resize | dtype | batch | JAX train img/s | torch train img/s | JAX/torch | JAX eval img/s | "
        "torch eval img/s | JAX compile s | GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x, fmt="{:.1f}"):
        return "-" if x is None else fmt.format(x)

    for b in result["benchmarks"]:  # rows are appended as they are measured
        lines.append(
            f"| {b['resize']} | {b['dtype']} | {b['batch_size']} | {f(b['jax_train_images_per_s'])} | "
            f"{f(b['torch_train_images_per_s'])} | {f(b['train_ratio'], '{:.2f}')} | "
            f"{f(b['jax_eval_images_per_s'])} | {f(b['torch_eval_images_per_s'])} | "
            f"{f(b['jax_compile_s'])} | {f(b['jax_train_gflops_per_s'], '{:.0f}')} |"
        )
    if result.get("steps_per_call"):
        lines += ["", "| steps per call | resize | batch | train img/s (median; each) |", "|---|---|---|---|"]
        lines += [
            f"| {d['steps_per_call']} | {d['resize']} | {d['batch_size']} | {d['images_per_s']} "
            f"({', '.join(map(str, d['all']))}) |"
            for d in result["steps_per_call"]
        ]
    r = result.get("reference_run")
    if r is not None:
        lines += _reference_lines(r, result.get("reference_run_warm"))
    if "parity" in result:
        lines += [
            "",
            "Parity experiment (test accuracy per epoch, mean ± std over seeds):",
            "",
            result["parity"]["table"],
        ]
    if "total_s" in result:
        lines += ["", f"Total: {result['total_s']} s" + ("" if result.get("complete", True) else " (incomplete)")]
    return "\n".join(lines)


def _reference_lines(r: dict, warm: dict | None = None) -> list[str]:
    c = r["config"]
    rows = [("cold", r)] + ([("warm", warm)] if warm and "error" not in warm else [])
    warm_epochs = f", {warm['epochs']} epoch(s)" if warm and "epochs" in warm else ""
    lines = [
        "",
        f"Reference run (--resize {c['resize']}, {r['epochs']} epochs, {c['train_per_class']} per class, "
        f"test per class {c['test_per_class'] or 'all'}; warm: a new process over the compilation cache the cold "
        f"run filled{warm_epochs}):",
        "",
        "| run | wall s | to the first step s | compile s | train s | score s | other s | steady epoch s "
        "| test acc % (final / best) | peak memory |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, x in rows:
        memory = (f"device {x['device_peak_mb']} MB, " if "device_peak_mb" in x else "") + (
            f"host RSS {x['host_peak_rss_mb']} MB" if "host_peak_rss_mb" in x else "-"
        )
        lines.append(f"| {name} | {x['wall_s']} | {x.get('first_step_s', '-')} | {x.get('compile_s', '-')} | "
                     f"{x['train_s']} | {x['score_s']} | {x.get('other_s', '-')} | {x['steady_epoch_s']} | "
                     f"{x['final_test_accuracy']} / {x['best_test_accuracy']} | {memory} |")  # fmt: skip
    return lines
