"""Adherence score: how well a take follows its shot, against the shot's exact geometry (OpenCV + NumPy only).

``score_take(frames, shot, shot_frames)`` → JSON-able dict; ``calibrate(shot, shot_frames)`` scores the
oracle and the frozen take so results can be normalised. Method and fields: ``docs/adherence.md``.
"""

from .calibration import calibrate
from .report import format_table
from .take import score_take
from .truth import ScoreInputError

__all__ = ["ScoreInputError", "calibrate", "format_table", "score_take"]
