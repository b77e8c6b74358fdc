"""`dybench eval --data-parallel N`: N shard workers, one engine each, merged into one run folder.

Worker i evaluates shard i/N (whole pairs, `dybench.store.shard_items`) into `OUT/shards/i-of-N`, a
run folder of its own that resumes like any other. Each worker is a separate process (spawned, so
no engine state is inherited), pinned to its own accelerator(s) through CUDA_VISIBLE_DEVICES when
there are enough, and to its share of the CPU threads otherwise. When every shard is finished they
are merged into OUT (`dybench.store.merge_runs`), so OUT reads like a single-process run: same
item ids, same answers, same fingerprint.

Rerunning the same command resumes: finished shards are not started again, a shard whose worker
was killed continues from its own predictions.jsonl. Ctrl-C or SIGTERM reaches every worker; each
saves what it finished and the command exits 130/143.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dybench.errors import DyBenchError
from dybench.store import PREDICTIONS

SHARDS_DIR = "shards"
WORKER_STOP_GRACE_S = 60.0
"""How long an interrupted worker gets to save its batch before it is killed."""


@dataclass
class Worker:
    """One shard's process, its run folder and the devices it is pinned to."""

    index: int
    count: int
    run_dir: Path
    env: dict[str, str]
    process: Any = None
    reply: Any = None
    outcome: tuple[str, str] | None = None
    done_items: int = 0
    total_items: int = 0
    _counted_bytes: int = 0
    _counted_lines: int = 0

    @property
    def label(self) -> str:
        return f"shard {self.index}/{self.count}"

    def stored(self) -> int:
        """Rows in the shard's predictions.jsonl, counted incrementally: each call reads only what
        was appended since the last one (the progress bar asks twice a second)."""
        try:
            with (self.run_dir / PREDICTIONS).open("rb") as handle:
                if os.fstat(handle.fileno()).st_size < self._counted_bytes:  # a repaired tail: count afresh
                    self._counted_bytes = self._counted_lines = 0
                handle.seek(self._counted_bytes)
                appended = handle.read()
        except FileNotFoundError:
            return 0
        self._counted_bytes += len(appended)
        self._counted_lines += appended.count(b"\n")
        return self._counted_lines


def shard_dir(out: Path, index: int, count: int) -> Path:
    return Path(out) / SHARDS_DIR / f"{index}-of-{count}"


def visible_accelerators() -> list[str]:
    """The GPU ids a worker may be pinned to: CUDA_VISIBLE_DEVICES if set, else those the NVIDIA
    driver lists (`dybench.doctor.nvidia_gpus`), else none (a CPU machine)."""
    from dybench.doctor import nvidia_gpus

    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    if preset is not None:
        return [d.strip() for d in preset.split(",") if d.strip() and d.strip() != "-1"]
    return [str(number) for number in range(len(nvidia_gpus()))]


def worker_environments(count: int, devices_per_worker: int, accelerators: list[str],
                        cpu_count: int) -> list[dict[str, str]]:
    """Per worker: the environment that pins it. With GPUs, worker i gets its own
    `devices_per_worker` of them; without, each worker gets cpu_count/count threads so N workers do
    not oversubscribe the cores."""
    if accelerators:
        needed = count * devices_per_worker
        if len(accelerators) < needed:
            raise DyBenchError(
                f"--data-parallel {count} with {devices_per_worker} GPU(s) per worker needs {needed} GPUs; "
                f"{len(accelerators)} visible ({','.join(accelerators)}): lower --data-parallel"
            )
        return [
            {"CUDA_VISIBLE_DEVICES": ",".join(accelerators[i * devices_per_worker : (i + 1) * devices_per_worker])}
            for i in range(count)
        ]
    threads = str(max(1, cpu_count // count))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""}
            for _ in range(count)]


def _first_signal_only(signum: int, frame: Any) -> None:
    """In a worker: the first Ctrl-C/SIGTERM interrupts the run (which then saves); later ones
    (the parent forwarding the same signal) must not interrupt the saving."""
    from dybench.signals import note_signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    note_signal(signum)
    raise KeyboardInterrupt


def _run_worker(eval_kwargs: dict[str, Any], env: dict[str, str], reply: Any) -> None:
    """A worker process: pin, then one ordinary `run_eval` of its shard."""
    os.environ.update(env)
    signal.signal(signal.SIGINT, _first_signal_only)
    signal.signal(signal.SIGTERM, _first_signal_only)
    try:
        threads = env.get("OMP_NUM_THREADS")
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        from dybench.evaluate import EvalInterrupted, run_eval

        run_eval(**eval_kwargs, progress=False)
        reply.send(("ok", ""))
    except EvalInterrupted as exc:
        reply.send(("interrupted", str(exc)))
    except KeyboardInterrupt:
        reply.send(("interrupted", "interrupted before any item was evaluated"))
    except DyBenchError as exc:
        reply.send(("error", str(exc)))
    except Exception as exc:  # reported by the parent as one line; the shard's saved work stays
        reply.send(("error", f"{type(exc).__name__}: {exc}"))


def _planned_shards(count: int, out: Path, eval_kwargs: dict[str, Any]) -> list[Worker]:
    """Validate every shard before any worker starts (a bad dataset, model or a conflicting
    folder fails in seconds) and note how much of each is already done."""
    from dybench.families import load_data
    from dybench.evaluate import plan_run
    from dybench.store import RUN_JSON, read_predictions

    planning = {k: v for k, v in eval_kwargs.items() if k not in ("backend_options", "decode_workers", "console")}
    dataset = load_data(eval_kwargs["data"])  # read and validated once for all the shards' plans
    workers = []
    for index in range(count):
        run_dir = shard_dir(out, index, count)
        plan = plan_run(**{**planning, "out": run_dir, "shard": f"{index}/{count}", "dataset": dataset})
        wanted = {item.id for item in plan.dataset.items}
        done = 0
        if (run_dir / RUN_JSON).is_file():
            _, rows = read_predictions(run_dir)
            done = len(wanted & set(rows))
        workers.append(Worker(index, count, run_dir, env={}, done_items=done, total_items=len(wanted)))
    return workers


def _stop(workers: list[Worker], signum: int) -> None:
    for worker in workers:
        if worker.process is not None and worker.process.is_alive():
            os.kill(worker.process.pid, signum)
    deadline = time.monotonic() + WORKER_STOP_GRACE_S
    for worker in workers:
        if worker.process is not None:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()


@dataclass
class DataParallelPlan:
    """Every shard validated and its worker's pinning decided; nothing started yet."""

    out: Path
    workers: list[Worker]
    eval_kwargs: dict[str, Any]


def plan_data_parallel(count: int, out: str | Path, eval_kwargs: dict[str, Any],
                       devices_per_worker: int = 1) -> DataParallelPlan:
    """Check a `count`-worker run before any process starts. `eval_kwargs` are
    `dybench.evaluate.run_eval`'s arguments except `out`, `shard` and `progress`."""
    if count < 1:
        raise DyBenchError("--data-parallel must be at least 1")
    if eval_kwargs.get("shard") is not None:
        raise DyBenchError("--data-parallel splits the data itself: drop --shard")
    out = Path(out)
    workers = _planned_shards(count, out, eval_kwargs)
    environments = worker_environments(count, devices_per_worker, visible_accelerators(), os.cpu_count() or 1)
    for worker, env in zip(workers, environments):
        worker.env = env
    return DataParallelPlan(out, workers, eval_kwargs)


def execute_data_parallel(plan: DataParallelPlan,
                          on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the unfinished shards' workers, then merge into `plan.out` and score it (returns the
    scores). `on_progress(done, total)` is called about twice a second while the workers run."""
    from dybench.evaluate import score_run
    from dybench.store import merge_runs

    out, workers = plan.out, plan.workers
    context = multiprocessing.get_context("spawn")
    pending = [w for w in workers if w.done_items < w.total_items]
    try:
        for worker in pending:
            receive, send = context.Pipe(duplex=False)
            kwargs = {**plan.eval_kwargs, "out": worker.run_dir, "shard": f"{worker.index}/{worker.count}"}
            worker.process = context.Process(target=_run_worker, args=(kwargs, worker.env, send),
                                             name=f"dybench-eval-{worker.label}")
            worker.process.start()
            send.close()
            worker.reply = receive
        _wait(pending, on_progress, workers)
    except KeyboardInterrupt:
        _stop(pending, signal.SIGTERM)
        done = sum(w.stored() for w in workers)
        total = sum(w.total_items for w in workers)
        raise DataParallelInterrupted(
            f"interrupted: about {done} of {total} items are saved in {out / SHARDS_DIR}; "
            "rerun the same command to resume"
        ) from None
    failures = [f"{w.label}: {w.outcome[1] if w.outcome else 'worker exited without a result'}"
                for w in pending if not w.outcome or w.outcome[0] != "ok"]
    if failures:
        raise DyBenchError(
            "; ".join(failures) + f" (finished items are kept in {out / SHARDS_DIR}; rerun the same command to resume)"
        )
    merge_runs([w.run_dir for w in workers], out)
    scores, _missing = score_run(out)
    return scores


def run_data_parallel(count: int, out: str | Path, eval_kwargs: dict[str, Any], devices_per_worker: int = 1,
                      on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """`plan_data_parallel` then `execute_data_parallel`: the library form of `eval --data-parallel`."""
    return execute_data_parallel(plan_data_parallel(count, out, eval_kwargs, devices_per_worker), on_progress)


class DataParallelInterrupted(DyBenchError):
    """Ctrl-C or SIGTERM during a data-parallel run: every worker saved what it finished."""


def _collect(worker: Worker) -> None:
    """The worker's result, if it has sent one."""
    if worker.outcome is None and worker.reply.poll():
        try:
            worker.outcome = worker.reply.recv()
        except EOFError:  # the pipe closed without a result: the process died
            pass


def _wait(pending: list[Worker], on_progress: Callable[[int, int], None] | None, workers: list[Worker]) -> None:
    total = sum(w.total_items for w in workers)
    while True:
        alive = [w for w in pending if w.process.is_alive()]
        for worker in pending:
            _collect(worker)
        if on_progress is not None:
            on_progress(min(total, sum(w.stored() for w in workers)), total)
        if not alive:
            break
        time.sleep(0.5)
    for worker in pending:
        worker.process.join()
        _collect(worker)
        if worker.outcome is None:
            code = worker.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            worker.outcome = ("error", f"worker died ({how})")


__all__ = ["run_data_parallel", "plan_data_parallel", "execute_data_parallel", "DataParallelInterrupted", "worker_environments", "visible_accelerators", "shard_dir"]
