"""The JAX training core: state, steps, the epoch loop, data parallelism, checkpoints and whole runs.

- `state`: TrainState (params, batch_stats, optimizer state), the loss, and `new_state`, the one
  factory of a config's model and fresh state.
- `optimizer`: torch's SGD, weight decay, Nesterov and schedules, from optax's own pieces; a
  config's optimizer and learning rate. A new optimizer setting or schedule goes here.
- `loop`: `StepSpec` (what a step is compiled for), the jitted train/eval steps and the epoch loop
  over a dataset resident on the device.
- `parallel`: the device mesh and batch sharding (jax.sharding; one axis, "data"), on one process or
  several (`initialize_processes`).
- `checkpoint`: orbax checkpoints with manifests and damage handling: `EpochCheckpoints` (keep the
  latest and the best), `StepCheckpoint` (inside an epoch), where a run continues, `load_checkpoint`.
- `run`: `train_run(config, workdir)`, a whole experiment as a `Trainer` (open the workdir,
  restore or initialise, per epoch train, evaluate, save) and its `StepSaver`.
- `outputs`: the printed lines, metrics.json, config.json and the plot, shared with the torch baseline.
- `lock` (one run per workdir, and the workdir's life), `preemption` (SIGTERM/SIGINT stop at a
  step with a checkpoint), `memory` (will a step fit).
- `progress`, `compile_cache`, `events`: the progress bar, XLA's persistent compilation cache, and
  TensorBoard events.

Nothing here imports torch or compiles native code; import the submodule you need (this package
imports none of them, so `training.loop` does not pull in orbax or matplotlib).
"""
