import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.abspath(os.path.join(ROOT, "..", "shared", "data", "tensorflow_datasets"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The tests' runs cache decoded data in a folder of their own (and the scripts they start inherit it).
if "JAXRESNET_DATA_CACHE" not in os.environ:
    os.environ["JAXRESNET_DATA_CACHE"] = tempfile.mkdtemp(prefix="jaxresnet-test-data-")
    atexit.register(shutil.rmtree, os.environ["JAXRESNET_DATA_CACHE"], True)


@pytest.fixture(scope="session")
def data_dir():
    if not os.path.isdir(os.path.join(DATA_DIR, "cifar10")):
        pytest.fail(f"the offline CIFAR-10 copy is missing at {DATA_DIR} (see ../shared/README.md)")
    return DATA_DIR


@pytest.fixture(scope="session")
def cifar(data_dir):
    """(train, test) Splits of the offline copy, loaded once per session."""
    from jaxresnet.data import load_cifar10

    return load_cifar10("train", data_dir, download=False), load_cifar10("test", data_dir, download=False)


@pytest.fixture(scope="session")
def xla_cache(tmp_path_factory):
    """A compilation cache shared by the subprocesses of one test session (they compile the same steps)."""
    return str(tmp_path_factory.mktemp("xla-cache"))


@pytest.fixture
def run_script(xla_cache):
    def run(script, *args, timeout=600, check=False):
        env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=xla_cache, PYTHONUNBUFFERED="1")
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, "scripts", script), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        return proc

    return run


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(xla_cache):
    """In-process runs share the subprocesses' compilation cache."""
    from jaxresnet.training.compile_cache import enable_compilation_cache

    enable_compilation_cache(xla_cache)


@pytest.fixture
def refused(capsys):
    """`refused(args, message)`: train.py refuses `args` with exit status 2 and one line on stderr
    that holds `message`, before any work."""
    from jaxresnet.cli.train import main

    def check(args, message):
        with pytest.raises(SystemExit) as e:
            main(args)
        lines = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(lines) == 1 and message in lines[0], lines

    return check
