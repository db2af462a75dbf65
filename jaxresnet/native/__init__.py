"""The optional native CPU backend: oneDNN convolutions and a fused BatchNorm(+add)(+ReLU) as XLA
custom calls (C++ in csrc/, compiled on first use), and the restart on huge pages.

This package is the only place native code enters the project, and this module is its only door:
the models ask it whether the kernels can run here and call them; nothing else of it is public.
JAX, flax and the models work without it (JAXRESNET_NATIVE=0 turns it off; other backends never
use it). A new accelerator formulation of a layer that needs compiled code goes here, with its
choice made in `jaxresnet.models.layers`.

- `build`: compiling and registering the library; `available()`, `reason()`, `check()`.
- `onednn_conv`: the oneDNN convolution and its gradients.
- `probe`: whether oneDNN may run a pass of a convolution here, checked once in a child process;
  `fallback_report()` is the warning naming the passes that run on XLA instead.
- `fused_norm`: the fused training-mode BatchNorm and its gradient.
- `huge_pages`: the process restart on transparent huge pages (imports nothing heavy).

The names below load their module on first use, so that `huge_pages` can restart the process
before JAX is imported.
"""

from __future__ import annotations

import importlib

# door name -> (module, name in it). No door name may be a submodule's: importing the submodule
# would set that attribute on this package, shadowing the door.
_DOOR = {
    "available": ("build", "available"),
    "reason": ("build", "reason"),
    "check": ("build", "check"),
    "BuildError": ("build", "BuildError"),
    "conv": ("onednn_conv", "conv"),
    "conv_supports": ("onednn_conv", "supports"),
    "batch_norm": ("fused_norm", "batch_norm"),
    "norm_supports": ("fused_norm", "supports"),
    "fallback_report": ("probe", "report"),
}
__all__ = sorted(_DOOR)


def __getattr__(name: str):
    if name not in _DOOR:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _DOOR[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
