"""The task table: every task's answer under every transform, validated definitions, and
`transformed_answer` agreeing with the table whatever the option order."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from dybench.errors import DyBenchError
from dybench.schema import Item, letter
from dybench.tasks import (
    TRANSFORMS,
    answer_changes,
    answer_key_after,
    get_task,
    load_task_file,
    load_tasks,
    pair_transforms_that_change,
    transformed_answer,
)

# The expected permutation of every dynamic answer under every transform, written out by hand
# from the meaning of the options (not read back from the YAML).
EXPECTED = {
    ("moving_direction", "object_motion"): {
        "hflip": {"left": "right", "right": "left", "up": "up", "down": "down"},
        "reverse": {"left": "right", "right": "left", "up": "down", "down": "up"},
        "swap_segments": {"left": "left", "right": "right", "up": "up", "down": "down"},
    },
    ("reversible_dynamics", "grow"): {"reverse": {"grows": "shrinks", "shrinks": "grows", "same": "same"}},
    ("reversible_dynamics", "fill"): {"reverse": {"fills": "drains", "drains": "fills", "same": "same"}},
    ("reversible_dynamics", "door"): {"reverse": {"opens": "closes", "closes": "opens", "same": "same"}},
    ("reversible_dynamics", "stack"): {"reverse": {"stacked": "unstacked", "unstacked": "stacked", "same": "same"}},
    ("reversible_dynamics", "bounce"): {"reverse": {"lower": "higher", "higher": "lower", "same": "same"}},
    ("event_sequence", "two_events"): {
        "swap_segments": {"a": "b", "b": "a"},
        "hflip": {"a": "a", "b": "b"},
    },
}


def expected_after(task_name: str, variant: str, key: str, transform: str) -> str:
    """The answer after `transform` (composites applied part by part) read from EXPECTED alone."""
    for part in transform.split("+"):
        key = EXPECTED[(task_name, variant)].get(part, {}).get(key, key)
    return key


def all_cases():
    for name, task in load_tasks().items():
        for variant in task.variants:
            for transform in TRANSFORMS:
                for key in variant.options:
                    yield name, variant.name, transform, key


@pytest.mark.parametrize("task_name, variant, transform, key", list(all_cases()))
def test_every_answer_under_every_transform_matches_its_meaning(task_name, variant, transform, key):
    task = get_task(task_name)
    after = answer_key_after(task, variant, key, transform)
    if task.kind == "static":
        assert after == key, "a static answer must never change"
        return
    expected = expected_after(task_name, variant, key, transform)
    assert after == expected
    assert answer_changes(task, variant, key, transform) == (expected != key)


def test_every_dynamic_variant_is_covered_by_the_expectations():
    dynamic = {(n, v.name) for n, t in load_tasks().items() if t.kind == "dynamic" for v in t.variants}
    assert dynamic == set(EXPECTED)
    static = {n for n, t in load_tasks().items() if t.kind == "static"}
    assert static == {"static_color", "static_shape", "static_count"}


def test_composite_transform_applies_both_permutations():
    task = get_task("moving_direction")
    assert answer_key_after(task, "object_motion", "left", "hflip+reverse") == "left"
    assert answer_key_after(task, "object_motion", "up", "hflip+reverse") == "down"
    assert answer_key_after(task, "object_motion", "up", "original") == "up"


@pytest.mark.parametrize("transform", ["hflip+reverse", "reverse+hflip", "hflip+swap_segments", "reverse+reverse"])
def test_composite_transforms_match_the_hand_written_table(transform):
    for (name, variant), _ in EXPECTED.items():
        task = get_task(name)
        for key in task.variant(variant).options:
            expected = expected_after(name, variant, key, transform)
            assert answer_key_after(task, variant, key, transform) == expected, (name, variant, key)
            assert answer_changes(task, variant, key, transform) == (expected != key), (name, variant, key)


def test_pair_transforms_are_the_ones_that_change_the_answer():
    direction = get_task("moving_direction")
    assert pair_transforms_that_change(direction, "object_motion", "left") == ["hflip", "reverse"]
    assert pair_transforms_that_change(direction, "object_motion", "up") == ["reverse"]
    assert pair_transforms_that_change(get_task("reversible_dynamics"), "grow", "same") == []
    assert pair_transforms_that_change(get_task("event_sequence"), "two_events", "b") == ["swap_segments"]


@pytest.mark.parametrize("order", list(itertools.permutations(["left", "right", "up", "down"]))[::5])
def test_transformed_answer_follows_the_option_order_of_the_item(order):
    keys = list(order)
    item = Item(id="x", pair_id="p", task="moving_direction", category="moving_direction", video="v.mp4",
                question="?", options=keys, option_keys=keys, variant="object_motion",
                answer=letter(keys.index("up")))
    assert transformed_answer(item, "reverse") == letter(keys.index("down"))
    assert transformed_answer(item, "hflip") == item.answer


def test_item_without_option_keys_has_no_known_transformed_answer():
    item = Item(id="x", pair_id="p", task="moving_direction", category="moving_direction", video="v.mp4",
                question="?", options=["l", "r"], answer="A")
    with pytest.raises(DyBenchError, match="no option keys"):
        transformed_answer(item, "hflip")


def test_unknown_task_names_the_known_ones():
    with pytest.raises(DyBenchError, match="unknown task 'spinning'.*moving_direction"):
        get_task("spinning")


@pytest.mark.parametrize(
    "body, message",
    [
        ("name: t\ncategory: c\nkind: static\nvariants:\n - name: v\n   question: q\n   options: {a: a, b: b}\n"
         "   transforms: {hflip: [[a, b]]}\n", "static task must not change"),
        ("name: t\ncategory: c\nkind: dynamic\npair_transforms: [reverse]\nvariants:\n - name: v\n   question: q\n"
         "   options: {a: a, b: b}\n", "changes no answer"),
        ("name: t\ncategory: c\nkind: dynamic\nvariants:\n - name: v\n   question: q\n   options: {a: a, b: b}\n"
         "   transforms: {hflip: [[a, z]]}\n", "unknown option 'z'"),
        # a chain of swaps would make a transform that is not its own inverse (a -> b -> c -> a)
        ("name: t\ncategory: c\nkind: dynamic\nvariants:\n - name: v\n   question: q\n   options: {a: a, b: b, c: c}\n"
         "   transforms: {hflip: [[a, b], [b, c]]}\n", "moves option 'b' twice"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_task_file_fails_naming_the_file(tmp_path: Path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(DyBenchError, match=message) as info:
        load_task_file(path)
    assert str(path) in str(info.value)


def test_a_task_file_that_is_not_yaml_is_named_in_one_line_without_its_content(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\nvariants: [SECRET_LINE\n")
    with pytest.raises(DyBenchError) as info:
        load_task_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3:1: not valid YAML") and "SECRET" not in message
    assert len(message.splitlines()) == 1
