"""jaxresnet: the reference PyTorch ResNet34-on-CIFAR-10 experiment, re-implemented in JAX/Flax."""

__version__ = "0.1.0"
