"""Data parallelism with jax.sharding: one mesh axis over every device, batches split along it, on
one process or several (`initialize_processes`)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

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
    """Put a pytree on every device of the mesh (or leave it where it is without one).

    Built from host copies, so it works across processes too: every process holds the same values
    (made from the same seed and data), and each fills its own devices' copies. PRNG keys travel as
    their key data.
    """
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P())

    def put(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda i: host[i])

    return jax.tree.map(put, tree)


def replicated(sharding: NamedSharding | None) -> NamedSharding | None:
    """The replicated sharding over the same mesh: results every process can read whole."""
    return None if sharding is None else NamedSharding(sharding.mesh, P())


def constrain(x, sharding):
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def initialize_processes(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Join a multi-process run (`jax.distributed.initialize`) before anything asks JAX for devices.

    Unset values come from the cluster's environment (SLURM, Open MPI, Kubernetes, cloud TPU);
    every process runs the same command. On CPU the collectives go over gloo (TCP), which needs
    no MPI: two processes on one machine, or CPU hosts, train data-parallel as GPUs would.
    """
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, KeyError, ValueError):  # a JAX without the option: its default stands
        pass
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
