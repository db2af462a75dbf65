"""Two real processes on localhost (`jax.distributed`, gloo collectives over TCP, one CPU device each)
train data-parallel with scripts/train.py, checkpoint, restore across both, and match one process.

The comparison is in float64 (`--dtype float64`), where the order of a few sums moves values by
about 1e-16 relative and a sharding or multi-process bug (a batch statistic of half the batch, a
gradient not all-reduced, a process restoring another's state) by 1e-3 or more: the bound of 1e-9
holds on any CPU. The single-process run has two devices too (virtual CPU devices): a batch split in
two takes max-pool ties by torch's rule, one device by jnp.max's (`jaxresnet.models.layers.max_pool`),
so a one-device run differs by design, not by a bug.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

from conftest import ROOT

SETTING = [
    "--arch",
    "resnet18",
    "--resize",
    "16",
    "--train-per-class",
    "2",
    "--test-per-class",
    "2",
    "--batch-size",
    "10",
    "--dtype",
    "float64",
    "--no-download",
    "--no-progress",
]  # 2 steps an epoch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(xla_cache, **extra):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return dict(env, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=xla_cache, PYTHONUNBUFFERED="1", **extra)


def _two_processes(workdir, data_dir, xla_cache, *extra):
    """Run train.py as processes 0 and 1 of one job; their (returncode, stdout, stderr)."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                os.path.join(ROOT, "scripts", "train.py"),
                *SETTING,
                "--data-dir",
                data_dir,
                "--workdir",
                str(workdir),
                *extra,
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=_env(xla_cache),
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


# Runs the same experiment in one process over two virtual devices, then compares its final state
# with the two-process run's checkpoint, in float64.
ONE_PROCESS = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jaxresnet.config import TrainConfig
    from jaxresnet.training.checkpoint import load_checkpoint
    from jaxresnet.training.run import train_run

    two_dir, one_dir, data_dir = sys.argv[1:4]
    assert jax.process_count() == 1 and jax.device_count() == 2
    config = TrainConfig.from_dict(json.load(open(two_dir + "/config.json")))  # the very same experiment
    train_run(config, one_dir, progress=False)
    two, one = load_checkpoint(two_dir), load_checkpoint(one_dir)

    def rel(a, b):  # against each tree's largest value (some leaves are exactly zero but for rounding)
        a, b = jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))
        assert [x.dtype for x in a] == [y.dtype for y in b]
        return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)) / max(float(np.max(np.abs(y))) for y in b)

    fresh = load_checkpoint(two_dir, 1)  # after the first run: training went on from it
    print(json.dumps({
        "dtypes": sorted({str(x.dtype) for x in jax.tree.leaves(two.state.params)}),
        "params": rel(two.state.params, one.state.params),
        "batch_stats": rel(two.state.batch_stats, one.state.batch_stats),
        "opt_state": rel(two.state.opt_state, one.state.opt_state),
        "moved": rel(fresh.state.params, two.state.params),
        "steps": [int(two.state.step), int(one.state.step)],
        "keys_equal": bool((jax.random.key_data(two.shuffle_key) == jax.random.key_data(one.shuffle_key)).all()),
    }))
""")


def test_two_processes_train_checkpoint_restore_and_match_one_process(tmp_path, data_dir, xla_cache):
    two_dir, one_dir = tmp_path / "two", tmp_path / "one"
    first = _two_processes(two_dir, data_dir, xla_cache, "--epochs", "1")
    for rc, _out, err in first:
        assert rc == 0, err[-3000:]
    # Process 0 reports; process 1 trains in step but prints none of the run's lines.
    assert "Epoch 1/1" in first[0][1] and "Test Accuracy" in first[0][1]
    assert "Epoch" not in first[1][1] and "Outputs in" not in first[1][2]
    # The second command restores epoch 1 in both processes and trains epoch 2.
    second = _two_processes(two_dir, data_dir, xla_cache, "--epochs", "2")
    for rc, _out, err in second:
        assert rc == 0, err[-3000:]
    assert "Resuming" in second[0][2] and "after epoch 1 of 2" in second[0][2]
    assert "Epoch 2/2" in second[0][1] and "Epoch" not in second[1][1]

    proc = subprocess.run(
        [sys.executable, "-c", ONE_PROCESS, str(two_dir), str(one_dir), data_dir],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env=_env(xla_cache, XLA_FLAGS="--xla_force_host_platform_device_count=2"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print("two processes against one (relative, float64):", r)
    assert r["dtypes"] == ["float64"]
    assert r["steps"] == [4, 4] and r["keys_equal"]
    assert r["params"] < 1e-9 and r["batch_stats"] < 1e-9 and r["opt_state"] < 1e-9, r
    assert r["moved"] > 1e-4, r  # epoch 2 changed the parameters: the comparison is not of two copies

    def without_timing(path):
        return [
            {k: v for k, v in h.items() if "seconds" not in k and "per_s" not in k}
            for h in json.load(open(path / "metrics.json"))
        ]

    two_m, one_m = without_timing(two_dir), without_timing(one_dir)
    assert [h["test_accuracy"] for h in two_m] == [h["test_accuracy"] for h in one_m]
    assert [h["train_accuracy"] for h in two_m] == [h["train_accuracy"] for h in one_m]
    for a, b in zip(two_m, one_m):
        assert abs(a["train_loss"] - b["train_loss"]) <= 2e-6  # metrics.json rounds to 6 decimals
    # Only process 0 wrote the run's files: the same set as the one-process run's.
    assert sorted(os.listdir(two_dir)) == sorted(os.listdir(one_dir))
