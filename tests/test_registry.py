"""The registries every family of interchangeable things uses, and how plugins reach them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dybench.errors import DyBenchError
from dybench.plugins import load_plugin, plugin_specs
from dybench.registry import Registry


def test_an_unknown_name_is_one_error_that_lists_the_known_ones() -> None:
    colours = Registry[int]("colour")
    colours.register("red", 1)
    colours.register("blue", 2)
    with pytest.raises(DyBenchError, match=r"unknown colour 'green'; known: red, blue"):
        colours.get("green")
    assert colours.names() == ("red", "blue")
    assert "red" in colours and "green" not in colours


def test_two_entries_for_one_name_are_refused_but_registering_the_same_entry_again_is_harmless() -> None:
    colours = Registry[object]("colour")
    entry = object()
    colours.register("red", entry)
    colours.register("red", entry)  # a module imported twice (by path and by name) re-registers itself
    with pytest.raises(DyBenchError, match="registered twice"):
        colours.register("red", object())


def test_plugin_names_are_comma_separated_and_blank_parts_ignored() -> None:
    assert plugin_specs(" a.b , ,c.py,") == ["a.b", "c.py"]


def test_a_plugin_file_is_imported_once_and_a_missing_one_is_a_one_line_error(tmp_path: Path) -> None:
    plugin = tmp_path / "count_imports.py"
    plugin.write_text("import builtins\nbuiltins.dybench_plugin_imports = getattr(builtins, 'dybench_plugin_imports', 0) + 1\n")
    import builtins

    load_plugin(str(plugin))
    load_plugin(str(plugin))
    assert builtins.dybench_plugin_imports == 1
    with pytest.raises(DyBenchError, match="does not exist"):
        load_plugin(str(tmp_path / "absent.py"))
    with pytest.raises(DyBenchError, match="cannot import plugin 'no_such_module_here'"):
        load_plugin("no_such_module_here")


def test_the_command_line_reports_a_missing_plugin_in_one_line(tmp_path: Path) -> None:
    env = {"DYBENCH_PLUGINS": str(tmp_path / "absent.py"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "dybench.cli", "tasks"], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: DYBENCH_PLUGINS: plugin file {tmp_path / 'absent.py'} does not exist"]
