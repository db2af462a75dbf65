"""The package's layering: no import cycles, a core without torch or native code, and a core that
trains with either made unavailable."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jaxresnet"
CORE = ("jaxresnet.config", "jaxresnet.models", "jaxresnet.data", "jaxresnet.training")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """Names of the modules `path` imports (absolute imports; `from a import b` counts a.b when a.b
    is a module, else a)."""
    modules = _modules()
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Try) and module_level_only:  # `try: import torch` at module level
            for inner in node.body:
                if isinstance(inner, ast.Import):
                    found |= {alias.name for alias in inner.names}
    return found


def _within(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_no_import_cycles_among_module_level_imports():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        deps = set()
        for imported in _imports(path, module_level_only=True):
            # Importing a.b.c runs a/__init__ and a/b/__init__ first; the packages that hold the
            # importer are already being imported then (their __init__ importing their submodules is
            # no cycle), unless the importer names one of them itself (`from a import x` inside a.b).
            parts = imported.split(".")
            ancestors = {".".join(parts[:i]) for i in range(1, len(parts))} - own_packages
            deps |= ({imported} | ancestors) & set(modules)
        graph[name] = deps - {name}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep) :] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert len(graph) >= 30  # the walk saw the whole package


def test_the_core_imports_no_torch_and_reaches_native_code_only_through_its_door():
    for name, path in _modules().items():
        imported = _imports(path, module_level_only=False)
        if _within(name, CORE):
            assert not {
                i for i in imported if _within(i, ("torch", "jaxresnet.pytorch", "jaxresnet.cli", "jaxresnet.tools"))
            }, name
        if not _within(name, ("jaxresnet.native",)):
            inside = {i for i in imported if i.startswith("jaxresnet.native.")}
            # the door is `from jaxresnet import native`; huge_pages is imported before JAX loads
            assert inside <= {"jaxresnet.native.huge_pages"}, (name, inside)
    # the models are the door's only user in the core
    users = {n for n, p in _modules().items() if "jaxresnet.native" in _imports(p, False) and _within(n, CORE)}
    assert users == {"jaxresnet.models.layers"}


# One SGD step of the core on random images, then what the process ended up loading.
ONE_STEP = """
import sys, jax, numpy as np
from jaxresnet.config import TrainConfig
from jaxresnet.data import Split
from jaxresnet.models.layers import resolve_conv_impl
from jaxresnet.training.loop import DeviceData, StepSpec, train_epoch
from jaxresnet.training.state import build_model, create_train_state, seed_keys
import jaxresnet.training.checkpoint, jaxresnet.training.run, jaxresnet.tools.evaluate, jaxresnet.cli.train
rng = np.random.default_rng(0)
data = Split(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), np.arange(8, dtype=np.int32) % 10)
config = TrainConfig(arch="resnet18", resize=32, batch_size=8)
init_key, shuffle_key = seed_keys(0)
state = create_train_state(build_model(config), init_key, 32, 0.01, 0.9)
state, result = train_epoch(state, DeviceData.put(data), shuffle_key, 1, StepSpec(8, 32))
import tempfile
from jaxresnet.training.events import EventLog
EventLog(tempfile.mkdtemp())  # tensorboardX imports torch where it can: not in a JAX run
loaded = [line for line in open("/proc/self/maps") if "libjaxresnet_onednn" in line]
print("step", int(state.step), "loss", round(result.train_loss, 3),
      "torch", sys.modules.get("torch") is not None, "native", bool(loaded),
      "conv", resolve_conv_impl("auto", (8, 16, 16, 64), (3, 3), (1, 1), ((1, 1), (1, 1))))
"""

# Makes torch look uninstalled: `import torch` raises ModuleNotFoundError, find_spec gives None.
NO_TORCH = """
import sys
sys.modules["torch"] = None
"""


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **env},
    )


def test_the_core_trains_a_step_with_torch_unimportable():
    done = _run(NO_TORCH + ONE_STEP)
    assert done.returncode == 0, done.stderr[-3000:]
    words = done.stdout.split()
    assert words[:2] == ["step", "1"] and words[4:6] == ["torch", "False"], done.stdout
    assert 1.0 < float(words[3]) < 4.0  # a real cross-entropy over 10 classes, near ln(10)
    # and the torch side says in one line what is missing
    done = _run(NO_TORCH + "import jaxresnet.pytorch.reference\n")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: jaxresnet.pytorch needs PyTorch, which is not installed: pip install "
        "torch==2.13.0 (the CPU build) or pip install -e '.[torch]'"
    ), done.stderr


def test_the_core_trains_a_step_with_the_native_backend_turned_off():
    done = _run(ONE_STEP, JAXRESNET_NATIVE="0")
    assert done.returncode == 0, done.stderr[-3000:]
    words = done.stdout.split()
    assert words[:2] == ["step", "1"], done.stdout
    assert words[4:6] == ["torch", "False"], done.stdout  # installed, and never loaded by the core
    assert words[6:] == ["native", "False", "conv", "xla"], done.stdout  # nothing native loaded or chosen
    assert 1.0 < float(words[3]) < 4.0
    done = _run("from jaxresnet import native\nprint(native.available(), '|', native.reason())\n", JAXRESNET_NATIVE="0")
    assert done.stdout.strip() == "False | turned off by JAXRESNET_NATIVE=0", done.stderr


def test_the_native_door_names_are_not_shadowed_by_its_submodules():
    import jaxresnet.native as native

    submodules = {p.stem for p in (PACKAGE / "native").glob("*.py")}
    assert not set(native.__all__) & submodules
    import jaxresnet.native.fused_norm  # noqa: E401,F401  (sets the attributes)

    assert callable(native.conv) and callable(native.batch_norm) and callable(native.conv_supports)


def test_no_function_is_longer_than_60_lines_or_takes_more_than_8_parameters():
    """What a reader can hold at once: long functions and long parameter lists forwarded by hand
    were where the trainer grew hard to follow."""
    too_big = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
            count = len(params) - (1 if params and params[0].arg in ("self", "cls") else 0)
            lines = node.end_lineno - node.lineno + 1
            if lines > 60 or count > 8:
                too_big.append(f"{name}.{node.name}: {lines} lines, {count} parameters")
    assert not too_big, too_big
    assert len(_modules()) >= 30  # the walk saw the whole package
