"""Prompt rendering per dataset family, and strict answer extraction (never a guess)."""

from __future__ import annotations

import pytest

from dybench.errors import DyBenchError
from dybench.families import template_for
from dybench.prompts import extract_choice, extract_for_item, render_prompt, strip_thinking
from dybench.schema import Item

DIRECTIONS = ["left", "right", "up", "down"]
GROWTH = ["It grows larger", "It shrinks", "It keeps the same size"]


def make_item(**overrides) -> Item:
    row = dict(
        id="x0", pair_id="p0", task="moving_direction", category="moving_direction", video="videos/x0.mp4",
        question="In which direction does the red circle move?", options=DIRECTIONS, answer="B",
    )
    row.update(overrides)
    return Item.model_validate(row)


def test_lettered_prompt_shows_question_lettered_options_and_instruction():
    prompt = render_prompt(make_item(), template_for("synthetic"))
    assert prompt == (
        "In which direction does the red circle move?\nA. left\nB. right\nC. up\nD. down\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_official_dybench_uses_the_lettered_template_too():
    assert template_for("dybench") == template_for("synthetic")


@pytest.mark.parametrize(
    ("kind", "suffix"),
    [("yes_no", " Please output Yes or No."), ("multiple_choice", " Please output A or B.")],
)
def test_timeblind_prompt_is_the_question_plus_its_type_suffix(kind, suffix):
    item = make_item(question="Does the ball move left?", options=["Yes", "No"], answer="A", meta={"type": kind})
    assert render_prompt(item, template_for("timeblind")) == "Does the ball move left?" + suffix


def test_timeblind_item_without_a_type_is_refused_with_its_id():
    item = make_item(options=["Yes", "No"], answer="A")
    with pytest.raises(DyBenchError, match="item x0: meta.type"):
        render_prompt(item, template_for("timeblind"))


def test_unknown_family_is_refused():
    with pytest.raises(DyBenchError, match="no prompt template"):
        template_for("mvbench")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        # explicit answers win
        ("Answer: B", "B"),
        ("answer: (c)", None),  # lower-case letter after 'answer:' that is not an option text
        ("The answer is (D).", "D"),
        ("<answer>C</answer>", "C"),
        ("<think>It might be A... no, the ball goes right.</think><answer>B</answer>", "B"),
        ("<think>A? B?</think>\nAnswer: right", "B"),
        ("reasoning the template opened</think> D", "D"),
        ("Answer: A. Answer: B.", None),  # two explicit answers that disagree
        ("<answer>B</answer> ... Answer: C", "B"),  # the tag is the most explicit form
        ("Answer: E", None),  # out of range
        ("Answer: B or C", None),
        # lone letters
        ("B", "B"),
        ("b", "B"),
        ("(C)", "C"),
        ("D.", "D"),
        ('"A"', "A"),
        ("**B**", "B"),
        ("B. right", "B"),
        ("(B) right", "B"),
        ("I pick option C.", "C"),
        ("(A) or (B)", None),
        ("E", None),
        ("Z.", None),
        # option texts
        ("right", "B"),
        ("The circle moves up.", "C"),
        ("It moves to the LEFT!", "A"),
        ("left or right", None),
        ("It does not move left.", None),  # negated mention: never read as 'left'
        # nothing usable
        ("", None),
        ("I cannot tell.", None),
        ("A ball is visible.", None),  # the article 'A' is not a choice
        ("<think>unfinished reasoning, B maybe", None),
        (None, None),
    ],
)
def test_extract_choice_on_direction_options(reply, expected):
    assert extract_choice(reply, DIRECTIONS) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("It shrinks", "B"),
        ("it grows larger.", "A"),
        ("The object keeps the same size throughout.", None),  # not the option's exact words
        ("It keeps the same size", "C"),
        ("Answer: It shrinks", "B"),
    ],
)
def test_extract_choice_on_sentence_options(reply, expected):
    assert extract_choice(reply, GROWTH) == expected


def test_longer_option_containing_a_shorter_one_is_not_ambiguous():
    options = ["left", "upper left", "right"]
    assert extract_choice("It moves to the upper left.", options) == "B"


@pytest.mark.parametrize(
    ("reply", "kind", "expected"),
    [
        ("Yes", "yes_no", "A"),
        ("no.", "yes_no", "B"),
        ("Answer: No", "yes_no", "B"),
        ("Maybe", "yes_no", None),
        ("A", "yes_no", None),  # no letters were offered for a yes/no question
        ("(B)", "multiple_choice", "B"),
        ("Answer: A", "multiple_choice", "A"),
        ("", "multiple_choice", None),
    ],
)
def test_timeblind_items_are_read_as_timeblinds_reference_scorer_reads_them(reply, kind, expected):
    options = ["Yes", "No"] if kind == "yes_no" else ["A", "B"]
    item = make_item(question="Does the ball move left?", options=options, answer="A", meta={"type": kind})
    assert extract_for_item(reply, item, template_for("timeblind")) == expected


def test_strip_thinking_removes_closed_blocks_and_drops_unclosed_reasoning():
    assert strip_thinking("<think>x</think> A <THINK>y</THINK>") == "A"
    assert strip_thinking("<think>never closed") == ""


# --- the option limit: A to Z, decided once in dybench.schema ----------------------------------

ALPHABET_OPTIONS = [f"colour {n}" for n in range(26)]


def test_an_item_with_26_options_is_shown_a_to_z_and_its_last_letter_is_read():
    item = make_item(options=ALPHABET_OPTIONS, answer="Z")
    prompt = render_prompt(item, template_for("synthetic"))
    assert "\nA. colour 0\n" in prompt and "\nZ. colour 25\n" in prompt
    assert extract_choice("Answer: Z", ALPHABET_OPTIONS) == "Z"
    assert extract_choice("Y", ALPHABET_OPTIONS) == "Y"
    assert extract_choice("colour 25", ALPHABET_OPTIONS) == "Z"


def test_a_27th_option_is_refused_when_the_row_is_read():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at most 26"):
        make_item(options=[*ALPHABET_OPTIONS, "one too many"])


@pytest.mark.parametrize("reply", [["Answer: B"], 42, {"text": "B"}, 3.5])
def test_a_reply_that_is_not_text_is_invalid_not_a_crash(reply):
    assert extract_choice(reply, DIRECTIONS) is None
    item = make_item(options=["Yes", "No"], answer="A", meta={"type": "yes_no"})
    assert extract_for_item(reply, item, template_for("timeblind")) is None
