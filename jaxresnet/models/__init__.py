"""The networks and the layers they are built from (JAX/Flax, no torch, no native code of their own).

- `resnet`: ResNet18/34/50 with the reference's stem and head, `ARCHS` by name. A new architecture
  goes here and into `ARCHS`.
- `layers`: Conv, BatchNorm, Dense and max-pool with torch's semantics, and the choice of how each
  is computed on each backend (`resolve_conv_impl`, `resolve_norm_impl`). A new formulation of a
  layer is chosen there; native CPU kernels come through `jaxresnet.native`'s door only.
"""

from jaxresnet.models.resnet import ARCHS, BasicBlock, BottleneckBlock, ResNet, ResNet18, ResNet34, ResNet50

__all__ = ["ARCHS", "BasicBlock", "BottleneckBlock", "ResNet", "ResNet18", "ResNet34", "ResNet50"]
