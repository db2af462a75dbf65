"""What the command-line tools do beyond training: score a checkpoint (`evaluate`), classify new
images (`predict`), overlay runs'
accuracy curves (`compare`), measure JAX against PyTorch throughput (`benchmark`), and measure
everything in one command (`measure`: the benchmark matrix, the reference run, the parity experiment).

These read runs and checkpoints that `jaxresnet.training` writes; they add no training code.
"""
