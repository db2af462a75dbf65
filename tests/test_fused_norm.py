"""The fused C++ BatchNorm(+residual)(+ReLU) equals the jax.numpy one, in values, statistics and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxresnet.models.layers import BatchNorm, resolve_norm_impl
from jaxresnet.native import fused_norm
from tests.test_onednn import needs_onednn


def _inputs(shape, seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    # A channel mean far from zero against its spread: one-pass float32 statistics would fail here.
    x = jax.random.normal(k[0], shape) * 0.5 + jnp.linspace(-3.0, 40.0, shape[-1])
    return x, jax.random.normal(k[1], shape), jax.random.normal(k[2], shape)


def _reference(x, scale, bias, r, relu, w, eps=1e-5):
    """BatchNorm(+r)(+ReLU) and the gradients of sum(y * w), in float64 numpy."""
    x, r, w = (None if a is None else np.asarray(a, np.float64).reshape(-1, x.shape[-1]) for a in (x, r, w))
    scale, bias = np.asarray(scale, np.float64), np.asarray(bias, np.float64)
    mean, var = x.mean(0), x.var(0)
    xhat = (x - mean) / np.sqrt(var + eps)
    y = xhat * scale + bias + (0 if r is None else r)
    g = w * (y > 0) if relu else w
    y = np.maximum(y, 0) if relu else y
    dscale, dbias = (g * xhat).sum(0), g.sum(0)
    dx = scale / np.sqrt(var + eps) * (g - g.mean(0) - xhat * (g * xhat).mean(0))
    n = x.shape[0]
    return dict(y=y, mean=mean, var=var * n / (n - 1), scale=dscale, bias=dbias, x=dx, residual=g)


@needs_onednn
@pytest.mark.parametrize(
    "shape, residual, relu",
    [
        ((8, 9, 9, 16), False, True),  # conv -> BN -> ReLU
        ((8, 9, 9, 16), True, True),  # the block's second BN: + shortcut, then ReLU
        ((8, 5, 5, 32), False, False),  # the downsample BN
        ((3, 7, 24), True, False),  # any rank, rows not a multiple of the thread count
    ],
)
def test_fused_batch_norm_is_as_exact_as_the_xla_one(shape, residual, relu):
    x, r, w = _inputs(shape)
    c = shape[-1]
    params = {"scale": jnp.linspace(0.5, 2.0, c), "bias": jnp.linspace(-1, 1, c)}
    stats = {"mean": jnp.zeros(c), "var": jnp.ones(c)}

    def run(impl):
        def loss(params, x, r):
            y, upd = BatchNorm(impl=impl, momentum=0.0).apply(
                {"params": params, "batch_stats": stats}, x, r if residual else None, relu=relu, mutable=["batch_stats"]
            )
            return jnp.sum(y * w), (y, upd["batch_stats"])

        (_, (y, new)), (dp, dx, dr) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(params, x, r)
        return dict(y=y, mean=new["mean"], var=new["var"], scale=dp["scale"], bias=dp["bias"], x=dx, residual=dr)

    ref = _reference(x, params["scale"], params["bias"], r if residual else None, relu, w)
    xla, fused = run("xla"), run("fused")
    if relu:
        assert np.mean(ref["y"] == 0) > 0.1  # the ReLU really clips something
    if not residual:
        assert float(jnp.max(jnp.abs(fused["residual"]))) == 0.0  # no residual, no gradient into it
        del ref["residual"]
    for name, want in ref.items():
        size = np.max(np.abs(want))
        err_fused = np.max(np.abs(np.asarray(fused[name], np.float64).reshape(want.shape) - want)) / size
        err_xla = np.max(np.abs(np.asarray(xla[name], np.float64).reshape(want.shape) - want)) / size
        # float32 rounding of activations around 40 (the far-off channel mean) bounds both
        assert err_fused <= max(1.5 * err_xla, 2e-6), (name, err_fused, err_xla)


@needs_onednn
def test_fused_statistics_are_float64_exact_where_a_one_pass_float32_sum_would_cancel():
    x, _, _ = _inputs((16, 8, 8, 8), seed=3)
    _, mean, var = jax.jit(lambda x: fused_norm.batch_norm(x, jnp.ones(8), jnp.zeros(8), None, False, 1e-5))(x)
    x64 = np.asarray(x, np.float64).reshape(-1, 8)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-6)
    np.testing.assert_allclose(var, x64.var(0), rtol=1e-5)


@needs_onednn
def test_auto_fuses_float32_training_on_one_cpu_device_only():
    assert resolve_norm_impl("auto", (32, 33, 33, 64)) == "fused"
    assert resolve_norm_impl("auto", (32, 33, 33, 64), jnp.bfloat16, jnp.bfloat16) == "xla"
    assert resolve_norm_impl("auto", (32, 33, 33, 64), jnp.float32, jnp.bfloat16) == "xla"
    assert resolve_norm_impl("xla", (32, 33, 33, 64)) == "xla"
    with pytest.raises(ValueError, match="norm impl must be one of"):
        resolve_norm_impl("cudnn", (32, 33, 33, 64))
    with pytest.raises(ValueError, match="float32 only"):
        resolve_norm_impl("fused", (32, 33, 33, 64), jnp.bfloat16, jnp.bfloat16)


@needs_onednn
def test_evaluation_mode_uses_the_running_statistics_whatever_the_impl():
    x, r, _ = _inputs((4, 5, 5, 8))
    variables = BatchNorm().init(jax.random.key(0), x)
    variables = {"params": variables["params"], "batch_stats": {"mean": jnp.full(8, 2.0), "var": jnp.full(8, 4.0)}}
    y = BatchNorm(use_running_average=True, impl="fused").apply(variables, x, r, relu=True)
    np.testing.assert_allclose(y, jax.nn.relu((x - 2.0) / np.sqrt(4.0 + 1e-5) + r), rtol=1e-5, atol=1e-5)


def test_asking_for_fused_norm_where_it_cannot_build_is_one_line_exit_2(run_script, monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv("JAXRESNET_CACHE_DIR", str(tmp_path / "cache"))
    proc = run_script("train.py", "--norm-impl", "fused", "--conv-impl", "xla", "--workdir", tmp_path / "w")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: --norm-impl fused is unavailable here: "), (
        proc.stderr
    )
    assert not (tmp_path / "w").exists()
