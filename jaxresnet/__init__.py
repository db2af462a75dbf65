"""jaxresnet: the reference PyTorch ResNet34-on-CIFAR-10 experiment, re-implemented in JAX/Flax.

The tree, by job (each subpackage's docstring says what goes where):

- `config`: a run's configuration (the reference experiment's defaults), validation, resume rules.
- `models/`: the networks and their torch-semantics layers, and which formulation runs where.
- `data/`: data sources (CIFAR-10 through tfds), the run's subsets, on-device preprocessing.
- `training/`: the JAX core: train state, jitted steps and epoch loop, data parallelism,
  checkpoints, whole runs.
- `native/`: the optional native CPU backend (oneDNN convolutions, fused BatchNorm, huge pages),
  reached only through its package door.
- `pytorch/`: everything that imports torch: the reference network, the baseline, converters.
- `cli/`: the scripts' flag parsing and exit statuses; `tools/`: evaluate, compare, benchmark.
- `plots`: the figures (accuracy curves, confusion matrix, comparisons); `checksums`: file CRC32s.

The core (config, models, data, training) imports neither torch nor native code of its own: the
models ask `jaxresnet.native` whether its kernels can run and use XLA's own ops otherwise.
"""

__version__ = "0.1.0"
