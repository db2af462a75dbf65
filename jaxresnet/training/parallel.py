"""Data parallelism with jax.sharding: one mesh axis over every device, batches split along it."""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

# One mesh axis, "data", over every device: the dataset and the train state are replicated, each
# batch is split along the batch axis. jit partitions the step (GSPMD): gradients are all-reduced,
# and BatchNorm's batch statistics, computed as means over the batch axis, are those of the global
# batch, exactly as on one device.
DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh | None, batch_size: int) -> NamedSharding | None:
    """How a batch is split, or None to leave it to XLA (one device, or a batch the mesh does not divide)."""
    if mesh is None or mesh.size == 1 or batch_size % mesh.size:
        return None
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh: Mesh | None):
    """Put a pytree on every device of the mesh (or leave it where it is without one)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda i: np.asarray(x)[i])
                        if isinstance(x, np.ndarray) else jax.device_put(x, sharding), tree)


def constrain(x, sharding):
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)
