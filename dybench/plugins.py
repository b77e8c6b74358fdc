"""Entries from outside the package: a new backend, RL algorithm, dataset family or metric lives in
a module of its own that registers itself when imported (see dybench/registry.py).

Two ways to name such modules, both read before any command runs:
- the `DYBENCH_PLUGINS` environment variable: comma-separated module names (`mylab.backends`) or
  paths to `.py` files (`./my_metric.py`); child processes (data-parallel shards, distributed
  training ranks) inherit it, so they see the same entries;
- installed packages that declare an entry point in the `dybench.plugins` group.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from dybench.errors import DyBenchError

ENV_VAR = "DYBENCH_PLUGINS"
ENTRY_POINT_GROUP = "dybench.plugins"

_loaded: dict[str, ModuleType] = {}


def load_plugins() -> list[ModuleType]:
    """Import every plugin named by `DYBENCH_PLUGINS` and the `dybench.plugins` entry points, once each."""
    modules = [load_plugin(spec) for spec in plugin_specs()]
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        modules.append(_import_once(f"entry point {point.name}", lambda point=point: _load_entry_point(point)))
    return modules


def plugin_specs(value: str | None = None) -> list[str]:
    raw = os.environ.get(ENV_VAR, "") if value is None else value
    return [part.strip() for part in raw.split(",") if part.strip()]


def load_plugin(spec: str) -> ModuleType:
    """Import one plugin: a module name or a path to a .py file."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise DyBenchError(f"{ENV_VAR}: plugin file {spec} does not exist")
        return _import_once(str(path), lambda: _import_file(path))
    return _import_once(spec, lambda: _import_module(spec))


def _import_once(key: str, load) -> ModuleType:  # noqa: ANN001 - a zero-argument loader
    if key not in _loaded:
        _loaded[key] = load()
    return _loaded[key]


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise DyBenchError(f"{ENV_VAR}: cannot import plugin {name!r} ({exc}); check the name and PYTHONPATH") from None


def _import_file(path: Path) -> ModuleType:
    name = f"dybench_plugin_{path.stem}_{abs(hash(str(path))) % 10**8}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DyBenchError(f"{ENV_VAR}: {path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pydantic look the module up while it runs
    spec.loader.exec_module(module)
    return module


def _load_entry_point(point: importlib.metadata.EntryPoint) -> ModuleType:
    loaded = point.load()
    return loaded if isinstance(loaded, ModuleType) else sys.modules[loaded.__module__]


def load_plugins_or_exit() -> None:
    """For the command line, before it builds its commands: a broken plugin is one line and exit 2."""
    try:
        load_plugins()
    except DyBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
