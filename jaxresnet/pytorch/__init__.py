"""Everything that needs PyTorch: the reference network, the torch baseline trainer, and the weight
converters between the two frameworks. The JAX core never imports this package.

- `reference`: the reference PyTorch network with its printout's module names.
- `convert`: state_dict <-> flax variables, exact both ways.
- `train`: the baseline trainer behind scripts/train_torch.py (same subset, order, lines, outputs).
- `ingredients`: the recipe flags in torch (optimizer, schedulers, augmentation), as the JAX run means them.

Importing it without torch installed fails with one line that says how to install it.
"""

try:
    import torch  # noqa: F401
except ImportError:
    raise ImportError(
        "jaxresnet.pytorch needs PyTorch, which is not installed: pip install torch==2.13.0 "
        "(the CPU build) or pip install -e '.[torch]'"
    ) from None
