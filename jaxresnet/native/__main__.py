"""python -m jaxresnet.native: build the native CPU kernels now (scripts/setup.sh does)."""

from jaxresnet.native.build import BuildError, build

try:
    print(f"native CPU kernels (oneDNN convolutions, fused BatchNorm): {build()}")
except (BuildError, OSError) as e:  # OSError: an unwritable cache, a CXX that does not exist
    print(f"native CPU kernels unavailable, XLA's will be used: {e}".splitlines()[0])
