"""What the command-line tools do beyond training: score a checkpoint (`evaluate`), overlay runs'
accuracy curves (`compare`), and measure JAX against PyTorch throughput (`benchmark`).

These read runs and checkpoints that `jaxresnet.training` writes; they add no training code.
"""
