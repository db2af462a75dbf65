"""scripts/measure.py --quick: every figure the full measurement reports, at small settings."""

import json

from jaxresnet.tools.measure import markdown


def test_quick_measure_reports_every_figure(run_script, data_dir, tmp_path):
    out = tmp_path / "measured"
    proc = run_script(
        "measure.py",
        out,
        "--quick",
        "--data-dir",
        data_dir,
        "--data-cache",
        tmp_path / "cache",
        check=True,
        timeout=900,
    )
    result = json.loads((out / "measure.json").read_text())
    env = result["environment"]
    assert env["backend"] == "cpu" and env["torch"] and env["jax"]
    bench = result["benchmarks"]
    assert [(b["resize"], b["dtype"], b["batch_size"]) for b in bench] == [(32, "float32", 32), (32, "bfloat16", 32)]
    assert result["complete"] is True
    for b in bench:
        assert b["jax_train_images_per_s"] > 0 and b["torch_train_images_per_s"] > 0 and b["train_ratio"] > 0
        assert b["jax_eval_images_per_s"] > 0 and b["jax_compile_s"] > 0 and b["jax_train_gflops_per_s"] > 0
    ref = result["reference_run"]
    assert ref["epochs"] == 2 and ref["config"]["resize"] == 32
    assert 0 < ref["compile_s"] < ref["wall_s"] and ref["train_s"] > 0 and ref["score_s"] > 0
    assert ref["train_s"] + ref["score_s"] <= ref["wall_s"]
    assert 0 <= ref["final_test_accuracy"] <= 100 and ref["host_peak_rss_mb"] > 100
    assert json.loads((out / "reference-run" / "metrics.json").read_text())[-1]["epoch"] == 2
    # the same command again in a new process, over the compilation cache the first one filled
    warm = result["reference_run_warm"]
    assert warm["epochs"] == 2 and warm["config"] == ref["config"]
    assert ref["cache_hits"] == 0 and warm["cache_hits"] == warm["compilations"] == ref["compilations"] >= 3
    assert 0 < warm["first_step_s"] < ref["first_step_s"] < ref["wall_s"]
    calls = result["steps_per_call"]
    assert [(d["steps_per_call"], d["resize"], d["batch_size"]) for d in calls] == [(1, 16, 8), (4, 16, 8)]
    assert all(d["images_per_s"] > 0 and len(d["all"]) == result["plan"]["reps"] for d in calls)
    table = (out / "measure.md").read_text()
    assert "| 4 | 16 | 8 |" in table
    assert table in proc.stdout and "| 32 | bfloat16 | 32 |" in table and "Reference run" in table


def test_the_table_says_what_is_absent():
    result = {
        "environment": {
            "device": "cpu",
            "backend": "cpu",
            "device_count": 1,
            "jax": "0.x",
            "torch": None,
            "tensorflow": None,
        },
        "quick": False,
        "total_s": 1.0,
        "benchmarks": [
            {
                "resize": 128,
                "dtype": "float32",
                "batch_size": 32,
                "jax_train_images_per_s": 20.0,
                "torch_train_images_per_s": None,
                "train_ratio": None,
                "jax_eval_images_per_s": 60.0,
                "torch_eval_images_per_s": None,
                "jax_compile_s": 3.0,
                "jax_train_gflops_per_s": 150.0,
            }
        ],
        "reference_run": {
            "config": {"resize": 128, "train_per_class": 500, "test_per_class": None},
            "epochs": 10,
            "wall_s": 9.0,
            "compile_s": 2.0,
            "train_s": 5.0,
            "score_s": 2.0,
            "steady_epoch_s": 0.7,
            "final_test_accuracy": 43.0,
            "best_test_accuracy": 45.0,
            "device_peak_mb": 4000.0,
            "host_peak_rss_mb": 2000.0,
        },
    }
    table = markdown(result)
    assert "torch absent, TensorFlow absent" in table
    assert "| 128 | float32 | 32 | 20.0 | - | - | 60.0 | - | 3.0 | 150 |" in table
    # a run without a first-step time, without "other" seconds, and no warm run: dashes, one row
    row = "| cold | 9.0 | - | 2.0 | 5.0 | 2.0 | - | 0.7 | 43.0 / 45.0 | device 4000.0 MB, host RSS 2000.0 MB |"
    assert row in table
    assert "| warm |" not in table
    assert "test per class all" in table
