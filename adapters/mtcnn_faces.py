"""Face detection with MTCNN on TensorFlow, loaded lazily.

Importing this module imports neither TensorFlow nor MTCNN (nor numpy): the model (about 8 s to load,
about 750 MB resident) is loaded once per process, on the first ``detect`` or on ``warm_up`` (from a
gunicorn ``post_worker_init`` hook), so the worker and the CLI that never detect stay light.
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar

from domain.model import DetectedFace, Pixels
from domain.ports import FaceDetector

# PNet + RNet: boxes and confidences, no landmarks (ONet), which the face gate does not need.
# The full cascade (PNet, RNet, ONet): ONet merges duplicate boxes that would read as "multiple_faces".
_STAGES = "face_and_landmarks_detection"
# The sanitizer's preview side: one inference at this size primes the kernels of a real request (measured:
# the first real detection takes ~0.4-0.55 s cold, ~0.2 s after a 64 px warm-up, ~0.14 s after 512 px).
_WARM_UP_SIDE = 512


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _load_model() -> Any:
    """Import TensorFlow quietly, size its thread pools for a small dyno, build MTCNN."""
    # Hide TF's INFO/WARNING start-up noise (TF 2.21 still prints its oneDNN notice); the operator's wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # type: ignore[import-untyped]  # noqa: PLC0415

    try:
        # One pool as wide as the CPUs this process may run on (affinity; a cgroup quota is not seen) and
        # no second pool for independent ops: measured as fast as TF's defaults on 2 cores, fewer threads.
        tf.config.threading.set_intra_op_parallelism_threads(_usable_cpus())
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TF already ran an op in this process: its pools are fixed, keep them
        pass
    from mtcnn import MTCNN  # type: ignore[import-untyped]  # noqa: PLC0415

    return MTCNN(stages=_STAGES)


class MtcnnFaceDetector(FaceDetector):
    """Detects faces in a ``Pixels`` preview; safe to share between threads.

    Inferences are serialised by a lock: with 2 request threads on 2 cores this is as fast as running
    them concurrently (TF already uses both cores), costs less CPU per image and bounds peak memory.
    Any failure of the library is a server fault and surfaces as ``RuntimeError``.
    """

    _model: ClassVar[Any] = None  # the process's one MTCNN, built on first use
    _load_lock: ClassVar[threading.Lock] = threading.Lock()
    _inference_lock: ClassVar[threading.Lock] = threading.Lock()

    def warm_up(self) -> None:
        """Load the model and run one inference at preview size, so the first request is not the slow one."""
        import numpy as np  # noqa: PLC0415

        noise = np.random.default_rng(0).integers(0, 256, (_WARM_UP_SIDE, _WARM_UP_SIDE, 3), dtype=np.uint8)
        self.detect(Pixels(width=_WARM_UP_SIDE, height=_WARM_UP_SIDE, rgb=noise.tobytes()))

    def detect(self, image: Pixels) -> list[DetectedFace]:
        if image.width <= 0 or image.height <= 0:
            return []
        if len(image.rgb) != image.width * image.height * 3:
            raise ValueError("pixels must be width x height x 3 bytes of RGB")
        model = self._loaded_model()
        import numpy as np  # noqa: PLC0415

        array = np.frombuffer(image.rgb, dtype=np.uint8).reshape(image.height, image.width, 3)
        try:
            with self._inference_lock:
                found = model.detect_faces(array)
            return [
                DetectedFace(
                    x=float(face["box"][0]),
                    y=float(face["box"][1]),
                    width=float(face["box"][2]),
                    height=float(face["box"][3]),
                    confidence=float(face["confidence"]),
                )
                for face in found
            ]
        except Exception as exc:
            raise RuntimeError("face detector failed") from exc

    @classmethod
    def _loaded_model(cls) -> Any:
        model = cls._model
        if model is None:
            with cls._load_lock:
                model = cls._model
                if model is None:
                    try:
                        model = _load_model()
                    except Exception as exc:
                        raise RuntimeError("face detector failed to load") from exc
                    cls._model = model
        return model
