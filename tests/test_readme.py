"""Every command in the README's ```bash blocks runs as written on a fresh clone.

The blocks are read from README.md in order and run one command at a time with bash, in a copy of
the repository's tracked files (what a fresh clone holds), so later commands see what earlier ones
wrote (`runs/*` holds the runs made above it). Each must exit 0 without a traceback.

What is not run, and why, is decided by the rules in SKIP, each with its reason (`pytest -s` shows
what ran, how long it took, and what was skipped and why): set-up commands (this test already runs inside the
environment they make), commands that need model weights, a GPU, a server or a download, synopses
with placeholders, the half-hour lab experiment, and commands that read the output of a skipped
command. Nothing else is changed: no option, path or number is substituted.

The one precondition added is the user's own clips of "Pairs from your own videos" (my_clips/
walk_right.mp4 and party.mp4, which the README assumes exist): the test renders two small ones.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dybench.leaderboard import read_board

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

TEXT_TOOLS = {"dybench", "cat", "echo", "ls", "mkdir", "cp", "mv", "rm", "head", "tail", "wc", "export"}
"""Programs a README command may start with to be run here: DyBench itself and shell basics."""

SKIP: list[tuple[str, str]] = [
    (r"^(make|pip3?|python3? -m pip|(bash |sh )?(\./)?scripts/|sudo|apt(-get)?|git|cd|source|\.)\b",
     "set-up: this test runs inside the environment it makes"),
    (r"--model\s+(?!tiny-random)([Qq]wen|\S+/\S+-[0-9]+[Bb]\b)",
     "needs a real model's weights (a download) and, for vllm, a GPU"),
    (r"--backend\s+vllm|--rollout-engine\s+vllm|--device\s+cuda|--tensor-parallel-size", "needs a GPU"),
    (r"--base-url", "needs a running OpenAI-compatible server"),
    (r"timeblind:TimeBlind/", "needs TimeBlind's release (a download)"),
    (r"\[--|(?<![\w/.:$-])(DATA|RUN_DIR|NAME|PATH|FILE|MODEL|DIR)(?![\w/.=-])",
     "a synopsis with placeholders, not a command"),
    (r"^dybench lab shortcut\b", "11 min of CPU training (--quick: seconds); tests/test_lab.py runs the quick "
     "experiment end to end through the same command"),
]

TIMEOUT_S = 300


GPU_ONLY_MARK = "# GPU only"
"""A block whose first line is this comment shows a GPU machine's session: none of it runs here."""


@dataclass
class Command:
    text: str
    block: int
    gpu_only: bool = False

    @property
    def head(self) -> str:
        """The command line without a heredoc's body (what the skip rules read)."""
        return self.text.splitlines()[0]

    def tokens(self) -> list[str]:
        try:
            return shlex.split(self.head, comments=True)
        except ValueError:
            return self.head.split()

    def outputs(self) -> list[str]:
        tokens = self.tokens()
        return [tokens[i + 1].rstrip("/") for i, t in enumerate(tokens[:-1]) if t in ("--out", "-o")]


def bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M)


def commands_of(block: str, number: int) -> list[Command]:
    """One Command per shell command: `\\` continuations joined, a heredoc kept with its body."""
    gpu_only = block.lstrip().startswith(GPU_ONLY_MARK)
    commands: list[Command] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if heredoc:
            body = []
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            line = "\n".join([line, *body, heredoc.group(1)])
        commands.append(Command(line.strip(), number, gpu_only))
    return commands


def readme_commands() -> list[Command]:
    blocks = bash_blocks(README.read_text(encoding="utf-8"))
    return [command for number, block in enumerate(blocks, start=1) for command in commands_of(block, number)]


def skip_reason(command: Command, skipped_outputs: list[str] = ()) -> str | None:
    tokens = command.tokens()
    if not tokens:
        return "no command"
    if command.gpu_only:
        return f"in a block marked {GPU_ONLY_MARK!r}"
    for output in skipped_outputs:
        if any(t.rstrip("/") == output or t.startswith(output + "/") for t in tokens):
            return f"reads {output}, the output of a skipped command"
    for pattern, reason in SKIP:
        if re.search(pattern, command.head):
            return reason
    if tokens[0] not in TEXT_TOOLS:
        return f"`{tokens[0]}` is not part of this project"
    return None


def fresh_clone(target: Path) -> None:
    """The repository's tracked files as they are in the working tree (a clone of this state);
    without git (a source archive), every file but what set-up and earlier runs leave behind."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(REPO, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", ".pytest_cache", "runs", "data", "demo", "out"))
        return
    for name in listed.stdout.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def users_own_clips(folder: Path) -> None:
    """The clips "Pairs from your own videos" annotates: one object moving right, two events."""
    from dybench.synth import GENERATORS, SceneOptions
    from dybench.video import write_video

    def render(task: str, variant: str, key: str, seed: int):
        return GENERATORS[task].render(np.random.default_rng(seed), SceneOptions(), variant, key)

    write_video(folder / "walk_right.mp4", render("moving_direction", "object_motion", "right", 1).frames, 8)
    write_video(folder / "party.mp4", render("event_sequence", "two_events", "a", 4).frames, 8)  # 2 s


def dybench_on_path(bin_dir: Path) -> None:
    """`dybench` as installed beside this interpreter, or a shim running this interpreter."""
    installed = Path(sys.executable).with_name("dybench")
    shim = bin_dir / "dybench"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if installed.is_file():
        shim.symlink_to(installed)
    else:
        shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c 'from dybench.cli import main; main()' \"$@\"\n")
        shim.chmod(0o755)


def test_the_walker_reads_every_kind_of_block():
    sample = ("dybench tasks   # a comment\n# only a comment\ndybench build-pairs \\\n  --out data/x\n"
              "cat > a.jsonl <<'JSONL'\n{\"a\": 1}\nJSONL\nmake demo\n")
    commands = commands_of(sample, 1)
    assert [c.text for c in commands] == ["dybench tasks   # a comment", "dybench build-pairs  --out data/x",
                                          "cat > a.jsonl <<'JSONL'\n{\"a\": 1}\nJSONL", "make demo"]
    assert commands[1].outputs() == ["data/x"]
    assert skip_reason(commands[3], []) and skip_reason(commands[2], []) is None
    assert "output of a skipped command" in skip_reason(Command("dybench eval --model runs/x-8b --out y", 1), ["runs/x-8b"])
    assert skip_reason(Command("dybench score --data DATA --predictions p.jsonl", 1))  # placeholder
    assert skip_reason(Command("dybench eval --model tiny-random-qwen3-vl --data d --out r", 1), []) is None
    assert skip_reason(Command("dybench eval --model qwen3-vl-8b --data d --out r", 1), [])
    [gpu_block_command] = commands_of(f"{GPU_ONLY_MARK}: not run here\ndybench tasks\n", 2)
    assert "GPU only" in skip_reason(gpu_block_command, [])


def test_every_readme_command_runs_as_written(tmp_path):
    clone = tmp_path / "dybench"
    fresh_clone(clone)
    (clone / "my_clips").mkdir()
    users_own_clips(clone / "my_clips")
    bin_dir = tmp_path / "bin"
    dybench_on_path(bin_dir)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "DYBENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    ran, skipped, skipped_outputs, exports = [], [], [], []
    for command in readme_commands():
        reason = skip_reason(command, skipped_outputs)
        if reason:
            skipped.append((command.head, reason))
            if not command.gpu_only:  # a GPU machine's session: its folders are not this one's
                skipped_outputs.extend(command.outputs())
            continue
        if command.tokens()[0] == "export":  # later commands run in their own shells: carry it to them
            exports.append(command.text)
        started = time.monotonic()
        result = subprocess.run(["bash", "-c", "\n".join([*exports, command.text])], cwd=clone, env=env,
                                capture_output=True, text=True, timeout=TIMEOUT_S)
        ran.append((command.head, round(time.monotonic() - started, 1)))
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"README block {command.block}: `{command.head}` exited {result.returncode}:\n{output[-3000:]}"
        assert "Traceback" not in output, f"README block {command.block}: `{command.head}`:\n{output[-3000:]}"

    print("\nran:", *ran, "\nskipped:", *skipped, sep="\n  ")
    ran_commands = [head for head, _ in ran]
    assert len(ran_commands) >= 8, ran_commands  # the walker found the README's commands
    assert any("leaderboard publish" in head and "--include" in head for head in ran_commands)
    board = read_board(clone / "leaderboards" / "mine.csv")
    assert {"measured", "reported"} <= set(board["source"])
