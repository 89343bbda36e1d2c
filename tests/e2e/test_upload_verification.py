"""US2 end to end: real PUTs to ministack, real Pillow sanitising, the real MTCNN face gate."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from flask.testing import FlaskClient

from adapters.mtcnn_faces import MtcnnFaceDetector
from adapters.peewee_db import AuditRow, UploadRow
from adapters.s3_storage import make_s3_client
from entrypoints.settings import Settings
from tests import hostile
from tests.builders.stack import put
from tests.inline import inline_client

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(settings: Settings, detector: MtcnnFaceDetector) -> FlaskClient:
    return inline_client(settings, detector=detector)


def uploaded(
    client: FlaskClient, auth: dict[str, str], data: bytes, content_type: str = "image/jpeg"
) -> dict[str, Any]:
    response = client.post(
        "/v1/uploads", json={"content_type": content_type, "content_length": len(data)}, headers=auth
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    ticket: dict[str, Any] = response.get_json()
    assert put(ticket, data).status_code == 200
    return ticket


def complete(client: FlaskClient, auth: dict[str, str], ticket: dict[str, Any], key: str | None = None):
    return client.post(
        f"/v1/uploads/{ticket['upload_id']}/complete",
        json={"object_key": key or ticket["object_key"]},
        headers=auth,
    )


def bucket_keys(settings: Settings) -> list[str]:
    s3 = make_s3_client(region=settings.aws_region, endpoint_url=settings.s3_endpoint_url)
    return sorted(
        item["Key"] for item in s3.list_objects_v2(Bucket=settings.uploads_bucket).get("Contents", [])
    )


def stored_bytes(settings: Settings, key: str) -> tuple[bytes, dict[str, Any]]:
    s3 = make_s3_client(region=settings.aws_region, endpoint_url=settings.s3_endpoint_url)
    got = s3.get_object(Bucket=settings.uploads_bucket, Key=key)
    return got["Body"].read(), dict(got)


@pytest.mark.parametrize("fixture", ["one_face.jpg", "rotated_exif_gps.jpg"])
def test_a_real_selfie_is_verified_stored_sanitised_and_encrypted_and_the_original_is_gone(
    client, auth, settings, fixture
):
    original = (hostile.IMAGES / fixture).read_bytes()
    ticket = uploaded(client, auth, original)

    response = complete(client, auth, ticket)

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["status"], body["content_type"]) == ("verified", "image/jpeg")
    stored_key = f"sources/{ticket['object_key'].split('/')[1]}/{ticket['upload_id']}.jpg"
    assert bucket_keys(settings) == [stored_key]
    data, head = stored_bytes(settings, stored_key)
    assert head["ServerSideEncryption"] == "AES256"
    assert len(data) == body["size"]
    for marker in (b"Exif", b"GPS", b"FixtureCam", b"http://ns.adobe.com/xap"):
        assert marker not in data
    row = UploadRow.get_by_id(ticket["upload_id"])
    assert (row.status, row.stored_key, row.stored_checksum_sha256) == (
        "verified",
        stored_key,
        body["checksum_sha256"],
    )
    assert [e.event for e in AuditRow.select().where(AuditRow.subject_id == ticket["upload_id"])] == [
        "upload.issued",
        "upload.validated",
    ]
    assert complete(client, auth, ticket).get_json() == body


@pytest.mark.parametrize(
    ("data", "content_type", "code"),
    [
        ((hostile.IMAGES / "two_faces.jpg").read_bytes(), "image/jpeg", "multiple_faces"),
        ((hostile.IMAGES / "no_face.jpg").read_bytes(), "image/jpeg", "no_face_detected"),
        ((hostile.IMAGES / "cat.jpg").read_bytes(), "image/jpeg", "no_face_detected"),
        ((hostile.IMAGES / "tiny_face.jpg").read_bytes(), "image/jpeg", "face_too_small"),
        (hostile.SVG_WITH_SCRIPT, "image/jpeg", "not_an_image"),
        (hostile.HTML, "image/jpeg", "not_an_image"),
        (hostile.jpeg_header_on_random_bytes(), "image/jpeg", "not_an_image"),
        (hostile.truncated_jpeg(), "image/jpeg", "not_an_image"),
        (hostile.png_of(hostile.IMAGES / "one_face.jpg"), "image/jpeg", "content_type_mismatch"),
        (hostile.png_pixel_bomb(), "image/png", "image_too_large"),
    ],
    ids=[
        "two-faces",
        "rocket",
        "cat",
        "tiny-face",
        "svg",
        "html",
        "random",
        "truncated",
        "png-as-jpeg",
        "bomb",
    ],
)
def test_every_bad_upload_is_refused_with_its_code_and_nothing_is_left_behind(
    client, auth, settings, data, content_type, code
):
    ticket = uploaded(client, auth, data, content_type)

    response = complete(client, auth, ticket)

    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["code"] == code
    assert bucket_keys(settings) == []
    row = UploadRow.get_by_id(ticket["upload_id"])
    assert (row.status, row.rejection_reason, row.stored_key) == ("rejected", code, None)
    [event] = AuditRow.select().where(
        (AuditRow.subject_id == ticket["upload_id"]) & (AuditRow.event == "upload.rejected")
    )
    assert event.reason == code
    assert complete(client, auth, ticket).get_json()["code"] == code


def test_another_users_key_is_refused_and_their_object_is_not_touched(client, auth, settings, dev_issuer):
    victim_auth = {"Authorization": f"Bearer {dev_issuer.mint(f'victim{secrets.token_hex(4)}')}"}
    victim = uploaded(client, victim_auth, (hostile.IMAGES / "one_face.jpg").read_bytes())
    mine = uploaded(client, auth, (hostile.IMAGES / "one_face.jpg").read_bytes())

    assert complete(client, auth, mine, key=victim["object_key"]).get_json()["code"] == "key_not_owned"
    assert complete(client, auth, victim).get_json()["code"] == "upload_not_found"
    assert sorted(bucket_keys(settings)) == sorted([victim["object_key"], mine["object_key"]])


def test_completing_before_the_put_is_409_then_works_after_it(client, auth, settings):
    data = (hostile.IMAGES / "one_face.jpg").read_bytes()
    response = client.post(
        "/v1/uploads", json={"content_type": "image/jpeg", "content_length": len(data)}, headers=auth
    )
    ticket = response.get_json()

    early = complete(client, auth, ticket)
    assert (early.status_code, early.get_json()["code"]) == (409, "upload_missing")

    assert put(ticket, data).status_code == 200
    assert complete(client, auth, ticket).status_code == 200
