"""US1 security contract: real HTTP PUTs to the issued URL, against ministack, which enforces SigV4.

moto would accept every one of the forged requests below (see FACTS.md), so these run on ministack.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from botocore.exceptions import ClientError
from flask.testing import FlaskClient

from adapters.peewee_db import AuditRow, UploadRow
from adapters.s3_storage import make_s3_client
from devtools.dev_issuer import DevJwtIssuer
from entrypoints.settings import Settings
from tests.builders.stack import SELFIE, put
from tests.inline import inline_client

pytestmark = pytest.mark.e2e


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def client_for(settings: Settings) -> FlaskClient:
    return inline_client(settings)


@pytest.fixture
def user(dev_issuer: DevJwtIssuer) -> tuple[str, dict[str, str]]:
    user_id = f"user{secrets.token_hex(6)}"
    return user_id, {"Authorization": f"Bearer {dev_issuer.mint(user_id)}"}


def issue(
    client: FlaskClient, auth: dict[str, str], body: bytes = SELFIE, **overrides: object
) -> dict[str, Any]:
    request = {"content_type": "image/jpeg", "content_length": len(body), **overrides}
    response = client.post("/v1/uploads", json=request, headers=auth)
    assert response.status_code == 201, response.get_data(as_text=True)
    ticket: dict[str, Any] = response.get_json()
    return ticket


def head(settings: Settings, key: str) -> dict[str, Any] | None:
    s3 = make_s3_client(region=settings.aws_region, endpoint_url=settings.s3_endpoint_url)
    try:
        return dict(s3.head_object(Bucket=settings.uploads_bucket, Key=key))
    except ClientError as error:
        assert error.response["Error"]["Code"] in ("404", "NoSuchKey")
        return None


def test_a_put_within_the_ttl_is_stored_encrypted_under_the_callers_prefix(settings, user):
    user_id, auth = user
    ticket = issue(client_for(settings), auth)

    response = put(ticket)

    assert response.status_code == 200, response.text
    assert ticket["object_key"].startswith(f"uploads/{user_id}/")
    stored = head(settings, ticket["object_key"])
    assert stored is not None
    assert stored["ServerSideEncryption"] == "AES256"
    assert stored["ContentType"] == "image/jpeg"
    assert stored["ContentLength"] == len(SELFIE)


def test_the_issued_url_is_signed_over_exactly_the_headers_returned(settings, user):
    ticket = issue(client_for(settings), user[1], checksum_sha256=sha256_b64(SELFIE))

    signed = unquote(ticket["url"].split("X-Amz-SignedHeaders=")[1].split("&")[0]).split(";")
    assert sorted(signed) == sorted([*(name.lower() for name in ticket["headers"]), "host"])
    assert ticket["headers"]["If-None-Match"] == "*"
    assert ticket["headers"]["x-amz-server-side-encryption"] == "AES256"
    query = parse_qs(urlsplit(ticket["url"]).query)
    assert query["X-Amz-Expires"] == ["300"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert ticket["expires_at"] == (signed_at + timedelta(seconds=300)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_second_put_to_the_same_url_gets_412_and_the_first_object_stays(settings, user):
    ticket = issue(client_for(settings), user[1])
    assert put(ticket).status_code == 200

    replay = put(ticket, b"\xff\xd8\xff\xe0" + b"\x00" * (len(SELFIE) - 4))

    assert replay.status_code == 412
    s3 = make_s3_client(region=settings.aws_region, endpoint_url=settings.s3_endpoint_url)
    stored = s3.get_object(Bucket=settings.uploads_bucket, Key=ticket["object_key"])["Body"].read()
    assert stored == SELFIE


def test_an_expired_url_gets_403_and_nothing_is_stored(settings, user):
    ticket = issue(client_for(replace(settings, upload_url_ttl_seconds=1)), user[1])
    time.sleep(2.2)

    response = put(ticket)

    assert response.status_code == 403
    assert "expired" in response.text.lower()
    assert head(settings, ticket["object_key"]) is None


def test_a_tampered_signature_gets_403(settings, user):
    ticket = issue(client_for(settings), user[1])
    signature = ticket["url"].rsplit("X-Amz-Signature=", 1)[1]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    ticket["url"] = ticket["url"].replace(signature, flipped)

    assert put(ticket).status_code == 403
    assert head(settings, ticket["object_key"]) is None


def test_a_url_edited_to_point_at_another_users_prefix_gets_403(settings, user, dev_issuer):
    ticket = issue(client_for(settings), user[1])
    victim_key = f"uploads/victim{secrets.token_hex(4)}/{secrets.token_hex(16)}"
    ticket["url"] = ticket["url"].replace(ticket["object_key"], victim_key)

    assert put(ticket).status_code == 403
    assert head(settings, victim_key) is None


def test_another_content_type_than_signed_gets_403(settings, user):
    ticket = issue(client_for(settings), user[1])

    assert put(ticket, overrides={"Content-Type": "text/html"}).status_code == 403
    assert head(settings, ticket["object_key"]) is None


@pytest.mark.parametrize("delta", [-1, +1], ids=["shorter", "longer"])
def test_a_body_of_another_length_than_declared_is_rejected(settings, user, delta):
    ticket = issue(client_for(settings), user[1])
    body = SELFIE[:delta] if delta < 0 else SELFIE + b"!"

    response = put(ticket, body, {"Content-Length": str(len(body))})

    assert response.status_code == 403
    assert head(settings, ticket["object_key"]) is None


def test_omitting_the_signed_encryption_or_write_once_header_gets_403(settings, user):
    ticket = issue(client_for(settings), user[1])

    assert put(ticket, overrides={"x-amz-server-side-encryption": None}).status_code == 403
    assert put(ticket, overrides={"If-None-Match": None}).status_code == 403
    assert head(settings, ticket["object_key"]) is None


def test_a_body_that_does_not_match_the_declared_checksum_gets_400(settings, user):
    ticket = issue(client_for(settings), user[1], checksum_sha256=sha256_b64(SELFIE))
    forged = bytes(reversed(SELFIE))

    response = put(ticket, forged)

    assert response.status_code == 400
    assert "BadDigest" in response.text
    assert head(settings, ticket["object_key"]) is None
    assert put(ticket).status_code == 200


@pytest.mark.parametrize(
    ("content_type", "length", "code"),
    [
        ("image/svg+xml", 1000, "unsupported_content_type"),
        ("text/html", 1000, "unsupported_content_type"),
        ("image/jpeg", 16 * 1024 * 1024 + 1, "too_large"),
    ],
)
def test_refused_declarations_get_422_and_no_url_row_or_audit_event(
    settings, user, content_type, length, code
):
    response = client_for(settings).post(
        "/v1/uploads", json={"content_type": content_type, "content_length": length}, headers=user[1]
    )

    assert response.status_code == 422
    assert response.get_json()["code"] == code
    assert "X-Amz-Signature" not in response.get_data(as_text=True)
    assert UploadRow.select().count() == 0
    assert AuditRow.select().count() == 0


def test_issuance_is_persisted_with_its_audit_event(settings, user):
    user_id, auth = user
    ticket = issue(client_for(settings), auth, checksum_sha256=sha256_b64(SELFIE))

    row = UploadRow.get_by_id(ticket["upload_id"])
    assert (row.user_id, row.object_key, row.status, row.content_length) == (
        user_id,
        ticket["object_key"],
        "issued",
        len(SELFIE),
    )
    assert row.checksum_sha256 == sha256_b64(SELFIE)
    [event] = AuditRow.select().where(AuditRow.subject_id == ticket["upload_id"])
    assert (event.event, event.actor_id, event.outcome) == ("upload.issued", user_id, "success")
    assert "X-Amz" not in event.details and settings.uploads_bucket not in event.details


@pytest.mark.parametrize(
    "forge",
    [
        lambda issuer, sub: issuer.mint(sub, exp=int(time.time()) - 120),
        lambda issuer, sub: issuer.mint(sub, iss="https://evil.example"),
        lambda issuer, sub: issuer.mint(sub, aud="https://other.example"),
        lambda issuer, sub: issuer.mint("../escape"),
    ],
    ids=["expired", "wrong-issuer", "wrong-audience", "path-in-subject"],
)
def test_bad_tokens_get_401_and_no_url(settings, dev_issuer, forge):
    token = forge(dev_issuer, "mallory")
    response = client_for(settings).post(
        "/v1/uploads",
        json={"content_type": "image/jpeg", "content_length": 10},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert UploadRow.select().count() == 0
