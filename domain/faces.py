"""The face gate: exactly one clear face, big enough to restyle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domain.model import DetectedFace


@dataclass(frozen=True)
class FacePolicy:
    """``min_confidence`` filters detector noise; ``min_face_ratio`` is the face box's longer side over
    the image's shorter side (a selfie's face is rarely under a tenth of the frame)."""

    min_confidence: float = 0.95
    min_face_ratio: float = 0.10

    def refusal(self, faces: Sequence[DetectedFace], width: int, height: int) -> str | None:
        """None when the image passes, else the reason code."""
        confident = [face for face in faces if face.confidence >= self.min_confidence]
        if not confident:
            return "no_face_detected"
        shorter_side = min(width, height)
        big_enough = [f for f in confident if max(f.width, f.height) >= self.min_face_ratio * shorter_side]
        if len(big_enough) > 1:
            return "multiple_faces"
        if not big_enough:
            return "face_too_small"
        return None
