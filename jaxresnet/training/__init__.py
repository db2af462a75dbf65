"""The JAX training core: state, steps, the epoch loop, data parallelism, checkpoints and whole runs.

- `state`: TrainState (params, batch_stats, optimizer), a fresh one for a model; the loss.
- `optimizer`: torch's SGD, weight decay, Nesterov and schedules, from optax's own pieces. A new
  optimizer setting or schedule goes here.
- `loop`: the jitted train/eval steps and the epoch loop over a dataset resident on the device.
- `parallel`: the device mesh and batch sharding (jax.sharding; one axis, "data"), on one process or
  several (`initialize_processes`).
- `checkpoint`: orbax checkpoints with manifests, keep/best policy, damage handling; step
  checkpoints inside an epoch.
- `run`: `train_run(config, workdir)`, a whole experiment: data, epochs, outputs, resume.
- `lock` (one run per workdir), `preemption` (SIGTERM/SIGINT stop at a step with a checkpoint),
  `memory` (will a step fit).
- `progress`, `compile_cache`, `events`: the progress bar, XLA's persistent compilation cache, and
  TensorBoard events.

Nothing here imports torch or compiles native code; import the submodule you need (this package
imports none of them, so `training.loop` does not pull in orbax or matplotlib).
"""
