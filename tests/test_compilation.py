"""How many programs a run compiles: a reference-style run (a scan of full steps, a smaller last
batch, scoring) compiles four -- the fresh state, the two training calls and the scoring -- and
nothing else (once about thirty small eager operations besides). A second process with the same
compilation cache compiles nothing: it loads all four."""

import os
import re
import subprocess
import sys

from conftest import ROOT

# 50 images in batches of 20: one call of 2 steps (a scan), then the last batch of 10 alone.
ARGS = ["--arch", "resnet18", "--resize", "16", "--epochs", "2", "--batch-size", "20", "--train-per-class", "5",
        "--test-per-class", "2", "--no-download"]  # fmt: skip


def _run(data_dir, workdir, cache):
    env = dict(os.environ, JAX_LOG_COMPILES="1", JAX_COMPILATION_CACHE_DIR=str(cache))
    cmd = [
        sys.executable,
        os.path.join(ROOT, "scripts", "train.py"),
        *ARGS,
        "--data-dir",
        data_dir,
        "--workdir",
        workdir,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def test_a_run_compiles_the_state_two_training_calls_and_the_scoring_only(data_dir, tmp_path):
    cold = _run(data_dir, tmp_path / "a", tmp_path / "cache")
    compiled = sorted(re.findall(r"Compiling (\S+) with global shapes", cold))
    assert compiled == ["jit(_fresh)", "jit(predict_step)", "jit(train_steps)", "jit(train_steps)"], compiled
    assert not re.findall(r"Persistent compilation cache hit", cold)
    # the same command in a new process and workdir: every program from the persistent cache
    warm = _run(data_dir, tmp_path / "b", tmp_path / "cache")
    hits = sorted(re.findall(r"Persistent compilation cache hit for '(\w+)'", warm))
    assert hits == ["jit__fresh", "jit_predict_step", "jit_train_steps", "jit_train_steps"], warm[-3000:]


class _Program:
    """Stands for a jitted function: records when it is lowered and compiled."""

    def __init__(self, name, log, seconds):
        self.name, self.log, self.seconds = name, log, seconds

    def lower(self, *args):
        self.log.append(f"lower {self.name}")
        return self

    def compile(self):
        import time

        self.log.append(f"compile {self.name}")
        time.sleep(self.seconds)
        self.log.append(f"compiled {self.name}")
        return lambda *args: self.name


def _prepare_two(monkeypatch, cores):
    import numpy as np

    from jaxresnet.training import programs

    monkeypatch.setattr(programs, "_cores", lambda: cores)
    log = []
    first, later = _Program("first", log, 0.5), _Program("later", log, 0.1)
    programs.prepare((first, "spec", (np.zeros(2),)), (later, "spec", (np.zeros(3),)))
    assert log[0] == "lower first"  # in the calling thread, before prepare returns
    assert programs.call(first, "spec", np.zeros(2)) == "first"
    assert programs.call(later, "spec", np.zeros(3)) == "later"
    return log


def test_on_few_cores_the_later_programs_wait_for_the_first(monkeypatch):
    log = _prepare_two(monkeypatch, cores=2)
    assert log.index("compiled first") < log.index("lower later"), log


def test_on_many_cores_they_compile_side_by_side(monkeypatch):
    log = _prepare_two(monkeypatch, cores=16)
    assert log.index("compile later") < log.index("compiled first"), log
