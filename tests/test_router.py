"""The router: kinds and transforms from the task table (DyBench items), from conservative rules or
an LLM through an eval backend (user data), the null option and the counterfactual label."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dybench.schema import Item
from dybench.train.questions import prepare_question, with_null_option
from dybench.train.router import TaskTableRouter, classify_question, stable_choice

NULL = "None of the above"


def item(**fields) -> Item:
    base = dict(id="q1", pair_id="p1", task="user", category="user", video="v.mp4", question="?", options=["x", "y"], answer="A")
    base.update(fields)
    return Item(**base)


def moving(answer_key: str, options=("left", "right", "up", "down"), id_="m1") -> Item:
    return item(
        id=id_,
        task="moving_direction",
        category="moving_direction",
        question="In which direction does the red square move?",
        options=list(options),
        option_keys=list(options),
        variant="object_motion",
        answer="ABCD"[list(options).index(answer_key)],
    )


@pytest.mark.parametrize(
    "question, options, kind",
    [
        ("What colour is the ball?", [], "static"),
        ("What color is the car that moves?", [], "static"),
        ("How many objects in the video never move?", ["1", "2"], "static"),
        ("Is there a dog in the video?", ["yes", "no"], "static"),
        ("In which direction does the car move?", ["left", "right"], "spatiotemporal"),
        ("Which way is the ball rolling?", ["to the left", "to the right"], "spatiotemporal"),
        ("Does the wheel turn clockwise or counterclockwise?", [], "spatiotemporal"),
        ("Is the cup on the left or the right of the plate?", [], "spatial"),
        ("Which hand holds the knife?", ["left hand", "right hand"], "spatial"),
        ("Which event happens first?", ["the man sits", "the man waves"], "temporal"),
        ("What does the door do?", ["It opens", "It closes"], "temporal"),
        ("Does the flower bloom or close over time?", [], "temporal"),
        ("Is the ball going up or down?", [], "temporal"),
        ("Does the ball bounce before or after the bell rings?", ["before", "after"], "temporal"),
        ("Which man is holding a cup?", ["the man on the left", "the man on the right"], "spatial"),
        # Conservative: a dynamic kind only where the answer names what a transform flips.
        ("What is the person holding?", ["a cup", "a pen"], "unknown"),
        ("What is the man holding before he sits down?", ["a cup", "a phone"], "unknown"),
        ("What does the woman pick up?", ["a cup", "a book"], "unknown"),
        ("What colour is the car on the left?", ["red", "blue"], "unknown"),
        ("Is the man on the left holding a cup?", ["yes", "no"], "unknown"),
        ("Does the woman pick up the cup?", ["Yes", "No"], "unknown"),
    ],
)
def test_rules_classify_questions_by_their_text(question, options, kind):
    assert classify_question(question, options) == kind


def test_a_question_the_rules_cannot_tell_gets_no_counterfactual_label():
    question = prepare_question(item(question="What does the woman pick up?", options=["a cup", "a book"]),
                                Path("v"), TaskTableRouter(), NULL)
    assert question.route.kind == "unknown" and question.route.transform is None
    assert question.route.answer_changes is None and question.counterfactual_answer is None


def test_rules_pick_the_transform_that_tests_the_kind():
    router = TaskTableRouter()
    assert router(item(question="Where is the cup?", options=["left of the plate", "right of it"])).transform == "hflip"
    assert router(item(question="Which event happens first?")).transform == "reverse"
    segmented = item(question="Which event happens first?", meta={"segment_boundary": 12})
    assert router(segmented).transform == "swap_segments"
    static = router(item(question="What colour is the ball?"))
    assert static.kind == "static" and not static.answer_changes and static.transform in ("hflip", "reverse")
    assert router(item(question="Which event happens first?")).source == "rules"


def test_task_table_routes_dybench_items_by_what_changes_their_answer():
    router = TaskTableRouter()
    # left: mirroring and reversing both change it
    left = router(moving("left"))
    assert left.source == "task" and left.kind == "spatiotemporal" and left.answer_changes
    # up: mirroring keeps it, only reversing changes it
    up = router(moving("up", id_="m2"))
    assert up.kind == "temporal" and up.transform == "reverse" and up.answer_changes


def test_task_table_routes_static_and_unchanging_dynamic_items():
    router = TaskTableRouter(static_transforms=("hflip",))
    colour = item(task="static_color", category="static", kind="static", question="What colour is the square?",
                  options=["red", "blue"], option_keys=["red", "blue"], variant="color")
    route = router(colour)
    assert (route.kind, route.transform, route.answer_changes) == ("static", "hflip", False)
    same = item(task="reversible_dynamics", category="reversible_dynamics", question="What happens to the ball?",
                options=["It grows larger", "It shrinks", "It keeps the same size"],
                option_keys=["grows", "shrinks", "same"], variant="grow", answer="C")
    route = router(same)
    assert (route.kind, route.transform, route.answer_changes) == ("temporal", "reverse", False)


# Pinned: a resumed run, another process or another release must pick the same transform.
PINNED_CHOICES = {"item-0": "reverse", "item-1": "reverse", "item-2": "reverse", "item-3": "hflip", "q-17": "reverse"}


def test_transform_choice_is_pinned_per_question_id_in_every_process():
    import json
    import os
    import subprocess
    import sys

    assert {key: stable_choice(key, ("hflip", "reverse")) for key in PINNED_CHOICES} == PINNED_CHOICES
    script = ("import json; from dybench.train.router import stable_choice; "
              f"print(json.dumps({{k: stable_choice(k, ('hflip', 'reverse')) for k in {sorted(PINNED_CHOICES)!r}}}))")
    for hash_seed in ("1", "2"):  # Python's own str hash differs between these processes
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
        assert json.loads(result.stdout) == PINNED_CHOICES
    assert {stable_choice(f"item-{i}", ("hflip", "reverse")) for i in range(40)} == {"hflip", "reverse"}


def test_null_option_is_appended_once():
    assert with_null_option(["left", "right"], NULL) == (["left", "right", NULL], "C")
    assert with_null_option(["left", "none of the above"], NULL) == (["left", "none of the above"], "B")


def test_counterfactual_label_comes_from_the_task_table():
    question = prepare_question(moving("left"), Path("v.mp4"), TaskTableRouter(), NULL)
    assert question.options[-1] == NULL and question.answer == "A"
    assert question.counterfactual_answer == "B"  # left -> right under hflip and under reverse


def test_counterfactual_label_is_null_when_the_new_answer_is_not_shown():
    # Only left/up shown: mirroring "left" gives "right", which is not an option.
    shown = moving("left", options=("left", "up"))
    question = prepare_question(shown, Path("v.mp4"), TaskTableRouter(), NULL)
    assert question.route.answer_changes
    assert question.counterfactual_answer == "C"  # the appended "None of the above"


def test_user_questions_get_null_for_dynamic_and_the_same_answer_for_static():
    dynamic = prepare_question(item(question="Which event happens first?", answer="B"), Path("v"), TaskTableRouter(), NULL)
    assert dynamic.counterfactual_answer == "C"
    static = prepare_question(item(question="What colour is the ball?", answer="B"), Path("v"), TaskTableRouter(), NULL)
    assert static.counterfactual_answer == "B"


def test_training_prompt_is_the_evaluation_prompt_with_the_null_option():
    from dybench.prompts import LETTERED, render_prompt
    from dybench.train.questions import TAG_INSTRUCTION, target_text, training_template

    question = prepare_question(moving("left"), Path("v.mp4"), TaskTableRouter(), NULL)
    shown = question.shown_item()
    assert render_prompt(shown, training_template("letter")) == render_prompt(shown, LETTERED)
    tagged = render_prompt(shown, training_template("tag"))
    assert tagged.endswith(TAG_INSTRUCTION) and "E. None of the above" in tagged
    assert (target_text("B", "tag"), target_text("B", "letter")) == ("<answer>B</answer>", "B")


# --- the LLM router -----------------------------------------------------------------------------


def user_dataset(root: Path, questions: list[tuple[str, list[str]]]) -> Path:
    """A dataset of user questions (no task-table keys), all about one real video file."""
    import json

    import numpy as np

    from dybench.video import write_video

    (root / "videos").mkdir(parents=True)
    frames = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    write_video(root / "videos" / "v.mp4", frames, fps=8.0)
    rows = [dict(id=f"u{i}", pair_id=f"p{i}", task="user", category="user", video="videos/v.mp4", question=q,
                 options=options, answer="A") for i, (q, options) in enumerate(questions)]
    (root / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


class ScriptedRouterEndpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible server whose "model" routes by a keyword of the question it is shown."""

    replies = {"pick up": "Answer: B", "colour": "Answer: D", "mirror": "I would rather not say"}
    seen: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send({"object": "list", "data": [{"id": "router-model", "owned_by": "someone"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = " ".join(part.get("text", "") for message in body["messages"] for part in
                        (message["content"] if isinstance(message["content"], list) else [{"text": message["content"]}]))
        type(self).seen.append(text)
        asked = re.search(r"Question: (.*)", text).group(1)
        reply = next((answer for key, answer in self.replies.items() if key in asked), "Answer: E")
        self._send({"choices": [{"message": {"role": "assistant", "content": reply}}]})


@pytest.fixture
def router_endpoint():
    ScriptedRouterEndpoint.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedRouterEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


QUESTIONS = [
    ("What does the woman pick up?", ["a cup", "a book"]),
    ("What colour is the car?", ["red", "blue"]),
    ("Would a mirror show it?", ["yes", "no"]),
    ("What happens next?", ["she sits", "she waves"]),
]


def test_the_llm_router_asks_a_real_backend_once_and_caches_its_answers(router_endpoint, tmp_path: Path) -> None:
    from dybench.families import load_data
    from dybench.train.config import RouterSettings
    from dybench.train.llm_router import llm_kinds

    dataset = load_data(str(user_dataset(tmp_path / "data", QUESTIONS)))
    settings = RouterSettings(kind="llm", model="qwen3-vl-8b", backend="openai",
                              options={"base_url": router_endpoint, "backoff_s": 0.01})
    cache = tmp_path / "out" / "router"
    kinds = llm_kinds(settings, dataset, dataset.items, cache)
    # B = temporal, D = static, a reply naming no option and E ("cannot be told") = unknown
    assert kinds == {"u0": "temporal", "u1": "static", "u2": "unknown", "u3": "unknown"}
    asked = list(ScriptedRouterEndpoint.seen)
    assert len(asked) == 4 and any("Question: What does the woman pick up?\nOptions: a cup | a book" in a for a in asked)
    assert llm_kinds(settings, dataset, dataset.items, cache) == kinds  # a rerun asks nothing
    assert ScriptedRouterEndpoint.seen == asked
    other = settings.model_copy(update={"model": "qwen3-vl-4b"})  # another router never reuses these answers
    llm_kinds(other, dataset, dataset.items[:1], cache)
    assert len(ScriptedRouterEndpoint.seen) == 5


def test_the_llm_router_runs_through_a_baseline_backend_and_the_task_table_still_wins(tmp_path: Path) -> None:
    from dybench.families import load_data
    from dybench.train.config import RouterSettings
    from dybench.train.llm_router import build_router

    dataset = load_data(str(user_dataset(tmp_path / "data", QUESTIONS)))
    router = build_router(RouterSettings(kind="llm", model="baseline:constant"), ("hflip", "reverse"), dataset,
                          tmp_path / "out" / "router")
    routes = [router(item) for item in dataset.items]
    assert {(r.kind, r.transform, r.answer_changes, r.source) for r in routes} == {("spatial", "hflip", True, "llm")}
    assert router(moving("left")).source == "task"  # DyBench's own items keep the task table's route


def test_the_router_is_part_of_the_training_config() -> None:
    from dybench.errors import DyBenchError
    from dybench.train.config import load_config

    base = dict(model="m", data="d", out="o")
    assert load_config(**base).router.kind == "rules"
    chosen = load_config(**base, router={"kind": "llm", "model": "baseline:random"})
    assert "router" in chosen.to_yaml() and "baseline:random" in chosen.to_yaml()
    with pytest.raises(DyBenchError, match="router.*model"):
        load_config(**base, router={"kind": "llm"})
