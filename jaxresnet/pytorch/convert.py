"""Weights between the PyTorch reference (`jaxresnet.pytorch.reference`) and the flax model.

    variables = torch_to_flax(torch_model.state_dict())
    logits = ResNet34(num_classes=10).apply(variables, x_nhwc, train=False)
    state_dict = flax_to_torch(variables)          # loads with strict=True; the round trip is exact

Layouts: torch conv weights are OIHW, flax kernels HWIO (transpose 2,3,1,0); Linear weights are
(out, in), flax Dense kernels (in, out). BatchNorm: weight/bias -> scale/bias (params),
running_mean/running_var -> mean/var (batch_stats). torch's `num_batches_tracked` has no flax
counterpart: `flax_to_torch` writes the `num_batches_tracked` it is given (default 0).
Works on any basic-block ResNet with the reference's layout (ResNet18, ResNet34). The code itself
calls no torch: values may be torch tensors or numpy arrays.
"""

from __future__ import annotations

import re

import numpy as np

# torch child index inside a block's Sequentials -> flax module name
_BLOCK = {
    "basicblock.0": "conv1",
    "basicblock.1": "bn1",
    "basicblock.3": "conv2",
    "basicblock.4": "bn2",
    "downsample.0": "downsample_conv",
    "downsample.1": "downsample_bn",
}
_STEM = {"conv1.0": "conv1", "conv1.1": "bn1"}
_BN_PARAM = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}


def _module_path(torch_module: str) -> tuple[str, ...]:
    """'layer2.0.basicblock.3' -> ('layer2_0', 'conv2'); 'conv1.1' -> ('bn1',); 'fc1' -> ('fc1',)."""
    if torch_module in _STEM:
        return (_STEM[torch_module],)
    if torch_module in ("fc1", "fc2"):
        return (torch_module,)
    m = re.fullmatch(r"layer(\d+)\.(\d+)\.(basicblock\.\d|downsample\.\d)", torch_module)
    if not m or m.group(3) not in _BLOCK:
        raise KeyError(f"unexpected module in the state_dict: {torch_module!r}")
    return (f"layer{m.group(1)}_{m.group(2)}", _BLOCK[m.group(3)])


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def torch_to_flax(state_dict) -> dict:
    """A reference state_dict -> {"params": ..., "batch_stats": ...} for `ResNet34(...).apply`."""
    out: dict = {"params": {}, "batch_stats": {}}
    for key, value in state_dict.items():
        module, leaf = key.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            continue
        path = _module_path(module)
        v = _numpy(value).astype(np.float32)
        is_bn = path[-1].startswith("bn") or path[-1] == "downsample_bn"
        if is_bn:
            collection, name = _BN_PARAM[leaf]
        elif leaf == "weight":
            collection, name = "params", "kernel"
            v = v.transpose(2, 3, 1, 0) if v.ndim == 4 else v.T
        elif leaf == "bias":
            collection, name = "params", "bias"
        else:
            raise KeyError(f"unexpected entry in the state_dict: {key!r}")
        node = out[collection]
        for p in path:
            node = node.setdefault(p, {})
        node[name] = np.ascontiguousarray(v)
    return out


def flax_to_torch(variables, num_batches_tracked: int = 0) -> dict:
    """{"params", "batch_stats"} of the flax model -> a state_dict for `TorchResNet34` (strict=True)."""
    import torch

    inverse = {v: k for k, v in {**_BLOCK}.items()}
    sd = {}

    def torch_module(path: tuple[str, ...]) -> str:
        if len(path) == 1:
            return {"conv1": "conv1.0", "bn1": "conv1.1"}.get(path[0], path[0])
        m = re.fullmatch(r"layer(\d+)_(\d+)", path[0])
        return f"layer{m.group(1)}.{m.group(2)}.{inverse[path[1]]}"

    def visit(node, path):
        if all(not isinstance(v, dict) for v in node.values()):
            yield path, node
            return
        for k, v in node.items():
            yield from visit(v, path + (k,))

    params, stats = variables["params"], variables.get("batch_stats", {})
    for path, leaves in visit(params, ()):
        mod = torch_module(path)
        if "scale" in leaves:  # BatchNorm
            st = stats
            for p in path:
                st = st[p]
            sd[f"{mod}.weight"] = np.asarray(leaves["scale"])
            sd[f"{mod}.bias"] = np.asarray(leaves["bias"])
            sd[f"{mod}.running_mean"] = np.asarray(st["mean"])
            sd[f"{mod}.running_var"] = np.asarray(st["var"])
            sd[f"{mod}.num_batches_tracked"] = np.asarray(num_batches_tracked, np.int64)
        else:
            k = np.asarray(leaves["kernel"])
            sd[f"{mod}.weight"] = k.transpose(3, 2, 0, 1) if k.ndim == 4 else k.T
            if "bias" in leaves:
                sd[f"{mod}.bias"] = np.asarray(leaves["bias"])
    # A copy: numpy views of jax arrays are read-only, and torch tensors must own writable memory.
    return {k: torch.from_numpy(np.array(v, order="C")) for k, v in sd.items()}
