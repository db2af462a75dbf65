"""The command-line tools behind scripts/: one module per script, each `main(argv) -> exit status`.

Each parses and checks its flags (bad input: one line on stderr, exit 2, before any heavy work),
then calls the library: `training.run` (train), `tools.*` (evaluate, compare, benchmark, measure),
`pytorch.train` (the torch baseline). `args` holds what they share: the one-line-error parser and
the experiment flags train.py and train_torch.py both take. A new flag goes into the script's
module here and, if it defines the experiment, into `jaxresnet.config.TrainConfig`.
"""
