"""Run an exported DyBench task through the real lmms-eval, with a model that replays known replies.

Runs inside the lmms-eval virtual environment (tests/lmms_eval_venv.py), where dybench is not
importable: the task folder must stand on its own. Usage:

    python lmms_eval_replay.py TASK_DIR TASK OUT.json REPLIES.json:LOG_DIR [REPLIES.json:LOG_DIR ...]

REPLIES.json maps item id -> reply text. For each, lmms-eval's own `simple_evaluate` runs the task
(`doc_to_text`, `process_results`, the aggregations) and its EvaluationTracker writes the
`samples_TASK.jsonl` sample log under LOG_DIR, as `lmms-eval --log_samples` does. OUT.json gets
whether TaskManager lists the task, each doc's `doc_to_text` and each run's metrics.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(task_dir: str, task: str, out: str, *runs: str) -> None:
    import lmms_eval
    from lmms_eval.api.model import lmms
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker
    from lmms_eval.tasks import TaskManager, get_task_dict

    class ReplayModel(lmms):
        """Answers each request with the reply recorded for its doc's item id."""

        def __init__(self, replies: dict[str, str]):
            super().__init__()
            self.replies = replies

        def generate_until(self, requests):
            texts = []
            for request in requests:
                _context, _kwargs, _visual, doc_id, task_name, split = request.args
                doc = self.task_dict[task_name][split][doc_id]
                texts.append(self.replies.get(doc["id"], ""))
            return texts

        def loglikelihood(self, requests):
            raise NotImplementedError

        def generate_until_multi_round(self, requests):
            raise NotImplementedError

    manager = TaskManager(include_path=task_dir)
    task_obj = get_task_dict([task], manager)[task]
    docs = list(task_obj.test_docs())
    report = {
        "lmms_eval_version": getattr(lmms_eval, "__version__", None),
        "listed": task in manager.all_tasks,
        "prompts": {doc["id"]: task_obj.doc_to_text(doc) for doc in docs},
        "visuals": {doc["id"]: task_obj.doc_to_visual(doc) for doc in docs},
        "runs": [],
    }
    for run in runs:
        replies_path, log_dir = run.rsplit(":", 1)
        replies = json.loads(Path(replies_path).read_text())
        tracker = EvaluationTracker(output_path=log_dir)
        results = simple_evaluate(model=ReplayModel(replies), model_args="model_name=replay", tasks=[task],
                                  task_manager=manager, log_samples=True, evaluation_tracker=tracker, batch_size=1)
        # What lmms_eval/__main__.py does after a run with --log_samples --output_path LOG_DIR.
        samples = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=samples, datetime_str="replay")
        tracker.save_results_samples(task_name=task, samples=samples[task])
        report["runs"].append({"metrics": results["results"][task],
                               "sample_logs": [str(p) for p in sorted(Path(log_dir).rglob(f"*samples_{task}.jsonl"))]})
    Path(out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
