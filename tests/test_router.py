"""The router: kinds and transforms from the task table (DyBench items) and from rules (user data),
the null option and the counterfactual label."""

from __future__ import annotations

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
        ("What is the person holding?", ["a cup", "a pen"], "static"),
    ],
)
def test_rules_classify_questions_by_their_text(question, options, kind):
    assert classify_question(question, options) == kind


def test_rules_pick_the_transform_that_tests_the_kind():
    router = TaskTableRouter()
    assert router(item(question="Is the cup on the left of the plate?")).transform == "hflip"
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


def test_transform_choice_is_fixed_by_the_question_id():
    choices = [stable_choice(f"item-{i}", ("hflip", "reverse")) for i in range(40)]
    assert choices == [stable_choice(f"item-{i}", ("hflip", "reverse")) for i in range(40)]
    assert set(choices) == {"hflip", "reverse"}


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
