"""Fault suite, the annotation session's API (what the Slicer module calls): a segment, slice or axis
that is not usable is a :class:`PromptError`, never a ValueError/TypeError or a silently truncated number."""

from __future__ import annotations

import numpy as np
import pytest

from SAMSegSlicerLib.errors import PromptError
from SAMSegSlicerLib.session import AnnotationSession

BOX_RC = np.array([20.0, 20.0, 60.0, 60.0], np.float32)


@pytest.mark.parametrize("segment, axis, index", [
    ("1", "axial", 106), (None, "axial", 106), (1.7, "axial", 106), (True, "axial", 106), (0, "axial", 106),
    (70000, "axial", 106), (1, "axial", "106"), (1, "axial", None), (1, "axial", 106.5), (1, "axial", 500),
    (1, "diagonal", 106), (1, None, 106),
])
def test_unusable_segment_slice_or_axis_is_a_prompt_error(engine_ct3mm, segment, axis, index):
    session = AnnotationSession(engine_ct3mm)
    for action in (lambda: session.set_box(segment, axis, index, BOX_RC),
                   lambda: session.accept(segment, axis, index),
                   lambda: session.clear_slice(segment, axis, index)):
        with pytest.raises(PromptError):
            action()
    assert not session.labels_kji.any() and not session.can_undo


def test_numpy_integers_are_whole_numbers(engine_ct3mm):
    session = AnnotationSession(engine_ct3mm)
    mask_rc, _ = session.set_box(np.int64(5), "axial", np.int32(106), BOX_RC)
    assert mask_rc.any() and session.slices_with_candidates(5) == [("axial", 106)]
