"""scripts/train.py and scripts/evaluate.py end to end, on the offline CIFAR-10 copy."""

import contextlib
import io
import json
import os
import re

import pytest

LINES = re.compile(r"^Epoch (\d+)/(\d+)\nTrain Accuracy: (\d+(\.\d+)?) %\nTest Accuracy: (\d+(\.\d+)?) %$", re.M)


@pytest.fixture(scope="module")
def cli_run(data_dir, tmp_path_factory, xla_cache):
    import subprocess
    import sys

    from conftest import ROOT

    workdir = str(tmp_path_factory.mktemp("cli") / "run")
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=xla_cache)
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "train.py"),
            "--resize",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "20",
            "--train-per-class",
            "4",
            "--test-per-class",
            "3",
            "--data-dir",
            data_dir,
            "--no-download",
            "--workdir",
            workdir,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return proc, workdir


def test_train_prints_the_reference_lines(cli_run):
    proc, _ = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = LINES.findall(proc.stdout)
    assert [(b[0], b[1]) for b in blocks] == [("1", "2"), ("2", "2")], proc.stdout
    assert "Traceback" not in proc.stderr
    assert "\r" not in proc.stderr  # no progress bar in a non-interactive log


def test_train_writes_metrics_config_and_plot(cli_run):
    proc, workdir = cli_run
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    assert [m["epoch"] for m in metrics] == [1, 2]
    for m in metrics:
        assert 0 <= m["train_accuracy"] <= 100 and 0 <= m["test_accuracy"] <= 100
        assert m["train_loss"] > 0 and m["seconds"] > 0
        # The printed figures are the saved ones: 40 train images, 30 test images.
        assert round(m["train_accuracy"] * 40 / 100) * 100 / 40 == pytest.approx(m["train_accuracy"], abs=0.01)
    printed = LINES.findall(proc.stdout)
    assert [float(b[4]) for b in printed] == [m["test_accuracy"] for m in metrics]
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert config["resize"] == 32 and config["arch"] == "resnet34" and config["lr"] == 0.01
    png = open(os.path.join(workdir, "accuracy.png"), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_evaluate_scores_a_checkpoint(cli_run, run_script, data_dir):
    _, workdir = cli_run
    proc = run_script("evaluate.py", "--workdir", workdir, "--checkpoint", "latest")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Checkpoint: epoch 2 (latest)" in proc.stdout
    assert re.search(r"^Test Accuracy: [\d.]+ % \(\d+/30\)$", proc.stdout, re.M)
    assert len(re.findall(r"^  \w+ +[\d.]+ %$", proc.stdout, re.M)) == 10  # one line per class
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    acc = float(re.search(r"^Test Accuracy: ([\d.]+)", proc.stdout, re.M).group(1))
    assert acc == metrics[-1]["test_accuracy"]  # the same checkpoint scores the same
    assert os.path.getsize(os.path.join(workdir, "confusion-epoch2.png")) > 5000


# Refused while the flags are parsed and checked, before JAX does anything: run in this process.
FLAG_ERRORS = [
    (["--resize", "4"], "--resize must be an integer >= 8, got 4"),
    (["--resize", "12.5"], "argument --resize: invalid int value: '12.5'"),
    (["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--resume"], "--resume needs --workdir"),
    (["--norm-impl", "fused", "--dtype", "bfloat16"], "--norm-impl fused is float32 only"),
    (["--seed", "-5"], "--seed must be an integer >= 0, got -5"),
    (["--seed", str(2**40)], "--seed must be below 2**31"),
    (["--num-processes", "2", "--process-id", "2"], "--process-id must be below --num-processes (2), got 2"),
    (["--num-processes", "0"], "--num-processes must be an integer >= 1, got 0"),
    (["--coordinator", "node0"], "--coordinator must be HOST:PORT (process 0's address), got 'node0'"),
    (["--dtype", "float64", "--norm-impl", "fused"], "--norm-impl fused is float32 only"),
    (
        ["--augment", "crop,bogus"],
        "--augment must be none or a comma-separated list of crop, flip, trivialaugment, randaugment, cutout, "
        "got 'crop,bogus'",
    ),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1), got 1.0"),
    (["--weight-decay", "-1"], "--weight-decay must be a number >= 0, got -1.0"),
    (["--schedule", "linear"], "argument --schedule: invalid choice: 'linear'"),
    (["--eval-every", "0"], "--eval-every must be an integer >= 1, got 0"),
    (["--nesterov", "--momentum", "0"], "--nesterov needs a momentum > 0"),
    (["--warmup-epochs", "10"], "--warmup-epochs (10.0) must be fewer than --epochs (10)"),
    (["--train-per-class", "some"], "argument --train-per-class: expected an integer or all, got 'some'"),
]


@pytest.mark.parametrize("args, message", FLAG_ERRORS)
def test_bad_flag_values_exit_2_with_one_line(capsys, args, message):
    from jaxresnet.cli.train import main

    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert e.value.code == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith("train.py: error: ") and message in lines[0], err


@pytest.mark.parametrize("module", ["train", "train_torch", "evaluate", "predict", "measure", "compare", "benchmark"])
def test_help_prints_usage_and_exits_0(capsys, module):
    import importlib

    with pytest.raises(SystemExit) as e:  # argparse %-formats help text: an unescaped % raised here
        importlib.import_module(f"jaxresnet.cli.{module}").main(["--help"])
    out, err = capsys.readouterr()
    assert e.value.code == 0 and err == "" and out.startswith(f"usage: {module}.py")
    if module.startswith("train"):  # a help text with a literal percent sign comes through as written
        assert "SIDE:PERCENT% (of --epochs)" in " ".join(out.split())


# Refused later (the workdir, memory, JAX's processes, tensorflow-datasets): a real process each.
@pytest.mark.parametrize(
    "args, message",
    [
        (["--workdir", "/proc/jaxresnet-run"], "cannot create --workdir /proc/jaxresnet-run: "),
        (["--workdir", "/dev/null/run"], "cannot create --workdir /dev/null/run: Not a directory"),
        (["--resize", "100000"], "a step at --resize 100000 with --batch-size 32 / --eval-batch-size 500 needs about"),
        (["--resize", "4096", "--batch-size", "64"], "of memory, and"),
        (["--distributed"], "--distributed: cannot join the processes: "),
        (
            ["--dataset", "no_such_dataset_xyz", "--no-download"],
            "--dataset no_such_dataset_xyz: tensorflow-datasets has no dataset of that name",
        ),
        (["--dataset", "glue", "--no-download"], "--dataset glue is not image classification"),
    ],
)
def test_bad_flags_exit_2_with_one_line(run_script, args, message):
    proc = run_script("train.py", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == ""


def test_too_many_images_per_class_exits_2(run_script, data_dir, tmp_path):
    proc = run_script(
        "train.py", "--train-per-class", "5001", "--data-dir", data_dir, "--no-download", "--workdir", tmp_path / "w"
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "5001 images per class asked for, but the split holds only 5000" in proc.stderr.strip().splitlines()[-1]


def test_missing_dataset_without_download_exits_2(run_script, tmp_path):
    proc = run_script("train.py", "--data-dir", tmp_path / "nothing", "--no-download", "--workdir", tmp_path / "w")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no CIFAR-10 under" in proc.stderr and "downloading is off" in proc.stderr


def test_evaluate_bad_input_exits_2(run_script, tmp_path, cli_run):
    proc = run_script("evaluate.py", "--workdir", tmp_path)
    assert proc.returncode == 2 and "no checkpoints in" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_script("evaluate.py", "--workdir", cli_run[1], "--checkpoint", "9")
    assert proc.returncode == 2 and "no checkpoint for epoch 9" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_torch_baseline_and_compare(cli_run, run_script, data_dir, tmp_path):
    _, jax_dir = cli_run
    torch_dir = tmp_path / "torch"
    proc = run_script(
        "train_torch.py",
        "--resize",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--train-per-class",
        "4",
        "--test-per-class",
        "3",
        "--data-dir",
        data_dir,
        "--no-download",
        "--workdir",
        torch_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(b[0], b[1]) for b in LINES.findall(proc.stdout)] == [("1", "2"), ("2", "2")]
    jax_metrics = json.load(open(os.path.join(jax_dir, "metrics.json")))
    torch_metrics = json.load(open(torch_dir / "metrics.json"))
    assert [sorted(m) for m in torch_metrics] == [sorted(m) for m in jax_metrics]  # same record format
    assert json.load(open(torch_dir / "config.json"))["framework"] == "torch"

    out = tmp_path / "cmp.png"
    proc = run_script("compare.py", jax_dir, torch_dir, "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert "jax train (1 runs)" in lines[0] and "torch test" in lines[0] and "test gap" in lines[0]
    assert len(lines) == 3  # header + 2 epochs
    gap = float(lines[2].split()[-1])
    assert gap == pytest.approx(jax_metrics[1]["test_accuracy"] - torch_metrics[1]["test_accuracy"], abs=0.01)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_keeps_experiments_apart_and_skips_unscored_epochs(tmp_path):
    from jaxresnet.cli.compare import main
    from jaxresnet.recipes import RECIPES

    def run(name, config, test_accuracies):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "metrics.json").write_text(
            json.dumps(
                [
                    {"epoch": i + 1, "train_accuracy": 50.0 + i, "test_accuracy": acc}
                    for i, acc in enumerate(test_accuracies)
                ]
            )
        )
        return str(folder)

    improved = dict(RECIPES["improved"], recipe="improved")
    runs = [
        run("reference", {"resize": 128, "epochs": 3}, [30.0, 40.0, 45.0]),  # a config.json from before recipes
        run("improved", {**improved, "epochs": 4, "seed": 0}, [None, 60.0, None, 70.0]),
        run("improved-s1", {**improved, "epochs": 4, "seed": 1}, [None, 62.0, None, 74.0]),
        run("torch", {**improved, "epochs": 4, "framework": "torch"}, [None, 61.0, None, 71.0]),
        run("noaug", {**improved, "epochs": 4, "augment": "none"}, [None, 55.0, None, 65.0]),
        run("lowres", {**improved, "epochs": 4, "resize": 32}, [None, 50.0, None, 60.0]),
    ]
    out = tmp_path / "cmp.png"
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        assert main([*runs, "--output", str(out)]) == 0
    header, *rows = stdout.getvalue().strip().splitlines()
    for label in (
        "jax reference train (1 runs)",
        "jax improved train (2 runs)",
        "torch improved train (1 runs)",
        "jax improved augment=none train (1 runs)",
        "jax improved resize=32 train (1 runs)",
    ):
        assert label in header
    from jaxresnet.tools.compare import group_runs, plot_comparison

    plotted = plot_comparison(group_runs(runs), str(tmp_path / "all.png"))
    assert len(plotted) == 10 and "jax improved resize=32 test (n=1)" in plotted  # every experiment, none dropped
    assert len(rows) == 4 and "gap" not in header  # the longest run's epochs; a gap only between two curves
    cells = dict(zip(re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", rows[3].strip())))
    assert cells["jax improved test"] == "72.00 ± 2.00" and cells["jax reference test"] == "-"
    assert (
        dict(zip(re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", rows[0].strip())))["jax improved test"] == "-"
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "missing")])
    assert e.value.code == 2


def test_a_second_run_on_a_held_workdir_exits_2_naming_the_holder(run_script, data_dir, tmp_path):
    from jaxresnet.training.lock import WorkdirLock

    workdir = tmp_path / "w"
    workdir.mkdir()
    with WorkdirLock(str(workdir)):  # this test's process holds it, as a running train.py would
        proc = run_script(
            "train.py",
            "--resize",
            "32",
            "--epochs",
            "1",
            "--train-per-class",
            "2",
            "--test-per-class",
            "1",
            "--data-dir",
            data_dir,
            "--no-download",
            "--workdir",
            workdir,
        )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"is in use by another training run (process {os.getpid()})" in lines[0], proc.stderr
    assert sorted(os.listdir(workdir)) == [".lock"]  # nothing of the refused run was written
    # released (here by the context manager; a killed holder releases it too), the same command runs
    proc = run_script(
        "train.py",
        "--resize",
        "32",
        "--epochs",
        "1",
        "--train-per-class",
        "2",
        "--test-per-class",
        "1",
        "--data-dir",
        data_dir,
        "--no-download",
        "--workdir",
        workdir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.exists(workdir / "metrics.json")


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    import signal
    import subprocess
    import sys

    from conftest import ROOT

    from jaxresnet.training.lock import WorkdirBusy, WorkdirLock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from jaxresnet.training.lock import "
            f"WorkdirLock; WorkdirLock({str(tmp_path)!r}).acquire(); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkdirBusy, match=f"process {holder.pid}"):
        WorkdirLock(str(tmp_path)).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    WorkdirLock(str(tmp_path)).acquire().release()  # free again at once
