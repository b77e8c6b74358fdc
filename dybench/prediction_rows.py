"""What a prediction row records about its sample besides the reply: the correct answer, whether
the answer counts as right, and which frames the model was shown (schema.RECORD_FIELDS).

These make `predictions.jsonl` readable on its own, like other harnesses' per-sample logs. They
are a record, never an input: scoring recomputes correctness from the answer (dybench.metrics),
so a hand-edited `correct` changes no score, and rows without them score the same.
"""

from __future__ import annotations

from typing import Any

from dybench.probes import shown_positions
from dybench.schema import Item, Prediction
from dybench.video import SampledClip


def sent_frames(clip: SampledClip | None, sends_video_file: bool = False) -> dict[str, Any]:
    """`frame_indices` and `frame_timestamps_s`: the stream position and presentation time of the
    frame in each slot sent to the model, in the order sent (a probe's shuffled or reversed order
    included). None where that is not known or no frame of the video was sent: a video that did
    not decode, a backend that sends the file itself (its server samples the frames), the
    `blank` probe (grey slots)."""
    positions = None if clip is None or sends_video_file else shown_positions(clip)
    if clip is None or positions is None:
        return {"frame_indices": None, "frame_timestamps_s": None}
    assert clip.stream_indices is not None and clip.stream_timestamps is not None
    return {
        "frame_indices": [int(clip.stream_indices[p]) for p in positions],
        "frame_timestamps_s": [float(clip.stream_timestamps[p]) for p in positions],
    }


def with_outcome(row: Prediction, item: Item, family: str) -> Prediction:
    """`row` with `target` (the item's answer for what was shown) and `correct`, by exactly the
    rule scores are computed with, applied to the row as stored."""
    from dybench.metrics import is_correct

    return row.model_copy(update={"target": item.answer, "correct": is_correct(item, row, family)})
