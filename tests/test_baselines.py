"""Reference baselines: a reproducible random floor, the constant shortcut, a pixel-level ceiling."""

from __future__ import annotations

import numpy as np
import pytest

from dybench.backends.base import Request, Sampling
from dybench.backends.baselines import create_baseline
from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.evaluate import decode_item, run_eval
from dybench.store import VideoSettings


@pytest.fixture(scope="module")
def motion_set(tmp_path_factory):
    """Enough synthetic moving-direction pairs for a P-Acc that means something."""
    from dybench.build import build_synthetic

    folder = tmp_path_factory.mktemp("motion") / "data"
    build_synthetic(folder, tasks=["moving_direction"], pairs_per_task=12, seed=11, progress=False)
    return folder


def requests_for(folder, n: int | None = None) -> list[Request]:
    dataset = load_data(str(folder))
    requests = []
    for item in dataset.items[:n]:
        decoded = decode_item(dataset, item, VideoSettings(num_frames=16))
        requests.append(Request(item=item, prompt="", clip=decoded.clip, video_path=decoded.video_path))
    return requests


def test_random_baseline_is_reproducible_per_item_whatever_the_batching(synthetic_test_set):
    requests = requests_for(synthetic_test_set)
    backend = create_baseline("baseline:random")
    together = [r.text for r in backend.generate(requests, Sampling(seed=3))]
    one_by_one = [backend.generate([r], Sampling(seed=3))[0].text for r in reversed(requests)][::-1]
    assert together == one_by_one
    other_seed = [r.text for r in backend.generate(requests, Sampling(seed=4))]
    assert other_seed != together
    assert {text.removeprefix("Answer: ") for text in together} <= set("ABCD")


def test_constant_baseline_always_answers_the_first_option(synthetic_test_set):
    responses = create_baseline("constant").generate(requests_for(synthetic_test_set, 4), Sampling())
    assert [r.text for r in responses] == ["Answer: A"] * 4


def test_motion_baseline_solves_moving_direction_from_pixels(motion_set, tmp_path):
    scores = run_eval("baseline:motion", str(motion_set), tmp_path / "run", progress=False)
    assert scores["n_pairs"] >= 12
    assert scores["p_acc"] >= 0.9


def test_motion_baseline_never_reads_the_answer(motion_set):
    backend = create_baseline("baseline:motion")
    requests = requests_for(motion_set, 6)
    honest = [r.text for r in backend.generate(requests, Sampling())]
    for request in requests:
        wrong = "A" if request.item.answer != "A" else "B"
        request.item = request.item.model_copy(update={"answer": wrong})
    assert [r.text for r in backend.generate(requests, Sampling())] == honest


def test_motion_baseline_declines_what_it_cannot_see_and_says_why(synthetic_train_set):
    static = [r for r in requests_for(synthetic_train_set) if r.item.kind == "static"]
    assert static, "the synthetic train set has static control items"
    responses = create_baseline("baseline:motion").generate(static[:2], Sampling())
    for response in responses:
        assert response.text == "cannot tell"
        assert response.extra["fallback"]


def test_motion_baseline_declines_a_clip_with_no_motion(motion_set):
    request = requests_for(motion_set, 1)[0]
    request.clip.frames = np.repeat(request.clip.frames[:1], len(request.clip.frames), axis=0)
    response = create_baseline("baseline:motion").generate([request], Sampling())[0]
    assert response.text == "cannot tell" and "mov" in response.extra["fallback"]


def test_unknown_baseline_names_the_known_ones():
    with pytest.raises(DyBenchError, match="baseline:motion"):
        create_baseline("baseline:oracle")


def timeblind_folder(built, root, n_instances: int = 8):
    """TimeBlind rows (yes/no and A/B instances alternating) over clips of a built synthetic set."""
    import json
    import shutil

    clips = sorted((built / "videos").rglob("*.mp4"))[:2]
    (root / "videos").mkdir(parents=True)
    for clip in clips:
        shutil.copyfile(clip, root / "videos" / clip.name)
    expected = {"yes_no": ["Yes", "No", "No", "Yes"], "multiple_choice": ["A", "B", "B", "A"]}
    rows = []
    for instance in range(n_instances):
        kind = ("yes_no", "multiple_choice")[instance % 2]
        for role in range(4):
            rows.append({"index": instance * 4 + role, "video_path": f"videos/{clips[role % 2].name}",
                         "question": f"Question {role // 2} of instance {instance}?",
                         "answer": expected[kind][role], "type": kind})
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "data.jsonl"


@pytest.mark.parametrize("kind", ["random", "constant"])
def test_baselines_answer_timeblind_items_in_their_own_words(synthetic_test_set, tmp_path, kind):
    """A yes/no item is answered Yes or No, an A/B item A or B: the random baseline is a chance
    floor on TimeBlind (no invalid answers), not 100% invalid."""
    import json

    data = timeblind_folder(synthetic_test_set, tmp_path / "TimeBlind")
    scores = run_eval(f"baseline:{kind}", f"timeblind:{data}", tmp_path / "run", num_frames=4, progress=False)
    assert scores["n_invalid"] == 0 and scores["invalid_rate"] == 0.0
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    by_type = {"yes_no": {"Answer: Yes", "Answer: No"}, "multiple_choice": {"Answer: A", "Answer: B"}}
    types = {f"tb-{json.loads(line)['index']:05d}": json.loads(line)["type"] for line in data.read_text().splitlines()}
    for row in rows:
        assert row["output"] in by_type[types[row["id"]]]
    if kind == "random":
        assert 0.2 < scores["acc"] < 0.8  # a coin flip per item
        assert len({row["output"] for row in rows}) == 4


def test_baseline_replies_on_lettered_items_are_unchanged(synthetic_test_set):
    """The demo's stored outputs stay what they were: a letter after 'Answer:'."""
    responses = create_baseline("random").generate(requests_for(synthetic_test_set, 6), Sampling(seed=0))
    assert all(r.text in {"Answer: A", "Answer: B", "Answer: C", "Answer: D"} for r in responses)
