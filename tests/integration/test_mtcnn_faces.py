"""The MTCNN detector on real photographs, judged by the real face policy."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import pytest
from PIL import Image, ImageOps

from adapters import mtcnn_faces
from adapters.mtcnn_faces import MtcnnFaceDetector
from domain.faces import FacePolicy
from domain.model import DetectedFace, Pixels

pytestmark = pytest.mark.integration

IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
ROOT = Path(__file__).resolve().parents[2]
PREVIEW_SIDE = 512
ASTRONAUT_FACE = DetectedFace(x=167, y=57, width=116, height=116, confidence=1.0)  # in one_face.jpg at 512 px


@pytest.fixture(scope="module")
def detector() -> MtcnnFaceDetector:
    faces = MtcnnFaceDetector()
    faces.warm_up()
    return faces


def pixels(name: str, *, upright: bool = True) -> Pixels:
    """The fixture as the sanitizer previews it: upright by EXIF (unless told not to), RGB, 512 px."""
    with Image.open(IMAGES / name) as opened:
        image = (ImageOps.exif_transpose(opened) if upright else opened).convert("RGB")
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return Pixels(width=image.width, height=image.height, rgb=image.tobytes())


def refusal(detector: MtcnnFaceDetector, image: Pixels) -> str | None:
    return FacePolicy().refusal(detector.detect(image), image.width, image.height)


def overlap(a: DetectedFace, b: DetectedFace) -> float:
    """Intersection over union of two boxes."""
    width = max(0.0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    height = max(0.0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    shared = width * height
    return shared / (a.width * a.height + b.width * b.height - shared)


def test_one_clear_face_passes_and_is_found_where_the_face_is(detector):
    image = pixels("one_face.jpg")

    faces = detector.detect(image)

    assert FacePolicy().refusal(faces, image.width, image.height) is None
    largest = max(faces, key=lambda face: face.width * face.height)
    assert largest.confidence >= 0.95
    assert overlap(largest, ASTRONAUT_FACE) >= 0.6, largest
    assert all(type(value) is float for face in faces for value in vars(face).values())


def test_two_faces_are_refused_as_multiple_faces(detector):
    assert refusal(detector, pixels("two_faces.jpg")) == "multiple_faces"


@pytest.mark.parametrize("name", ["no_face.jpg", "cat.jpg"], ids=["a rocket", "a cat"])
def test_a_picture_without_a_human_face_is_refused_as_no_face(detector, name):
    assert refusal(detector, pixels(name)) == "no_face_detected"


def test_a_face_far_too_small_to_restyle_is_refused_as_too_small(detector):
    assert refusal(detector, pixels("tiny_face.jpg")) == "face_too_small"


def test_orientation_must_be_applied_before_detection(detector):
    assert refusal(detector, pixels("rotated_exif_gps.jpg", upright=False)) == "no_face_detected"
    assert refusal(detector, pixels("rotated_exif_gps.jpg", upright=True)) is None


def test_threads_sharing_one_detector_get_identical_results(detector):
    image = pixels("one_face.jpg")
    expected = detector.detect(image)
    start = Barrier(4)

    def two_detections() -> list[list[DetectedFace]]:
        start.wait()
        return [detector.detect(image), detector.detect(image)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [result for batch in pool.map(lambda _: two_detections(), range(4)) for result in batch]

    assert len(results) == 8
    assert all(result == expected for result in results)


def test_an_image_without_pixels_has_no_faces(detector):
    assert detector.detect(Pixels(width=0, height=0, rgb=b"")) == []
    assert detector.detect(Pixels(width=640, height=0, rgb=b"")) == []


def test_pixels_that_do_not_match_their_size_are_a_caller_error(detector):
    with pytest.raises(ValueError, match="width x height x 3"):
        detector.detect(Pixels(width=4, height=4, rgb=bytes(47)))


def test_a_failing_model_is_a_runtime_error_without_the_library_type(detector, monkeypatch):
    class BrokenModel:
        def detect_faces(self, image: object) -> object:
            raise OSError("kernel exploded")

    monkeypatch.setattr(MtcnnFaceDetector, "_model", BrokenModel())

    with pytest.raises(RuntimeError, match=r"^face detector failed$") as raised:
        detector.detect(pixels("one_face.jpg"))
    assert type(raised.value) is RuntimeError
    assert isinstance(raised.value.__cause__, OSError)


def test_the_model_is_loaded_once_however_many_threads_and_detectors_ask(monkeypatch):
    loads: list[object] = []
    start = Barrier(4)

    def slow_load() -> object:
        time.sleep(0.2)
        loads.append(object())
        return loads[-1]

    monkeypatch.setattr(MtcnnFaceDetector, "_model", None)
    monkeypatch.setattr(mtcnn_faces, "_load_model", slow_load)

    def first_use() -> object:
        start.wait()
        return MtcnnFaceDetector()._loaded_model()

    with ThreadPoolExecutor(max_workers=4) as pool:
        models = list(pool.map(lambda _: first_use(), range(4)))

    assert len(loads) == 1
    assert all(model is loads[0] for model in models)


def test_importing_the_adapter_loads_neither_tensorflow_nor_mtcnn():
    heavy = "{'tensorflow', 'keras', 'mtcnn', 'numpy'}"
    probe = f"import sys, adapters.mtcnn_faces; print(sorted({heavy} & set(sys.modules)))"

    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )

    assert completed.stdout.strip() == "[]"
