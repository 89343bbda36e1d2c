"""S3PrivateObjects's request shapes and error mapping, on moto's in-process S3 (fast, no server).

moto does not enforce signatures or signed headers, so nothing security-related is proven here;
those properties are tested against ministack in tests/e2e.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from adapters.s3_storage import S3PrivateObjects, make_s3_client
from domain.errors import ContentRejected, StorageUnavailable
from domain.model import ObjectInfo

pytestmark = pytest.mark.integration

BUCKET = "hf-uploads-moto"


@pytest.fixture
def storage(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3PrivateObjects]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        client = make_s3_client(region="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield S3PrivateObjects(client, BUCKET)


def test_head_reports_size_type_and_encryption_and_none_when_absent(storage):
    storage.put_new("uploads/u/a.jpg", b"12345", "image/jpeg")

    assert storage.head("uploads/u/a.jpg") == ObjectInfo(size=5, content_type="image/jpeg", encrypted=True)
    assert storage.head("uploads/u/missing") is None


def test_put_new_never_overwrites(storage):
    storage.put_new("uploads/u/a.jpg", b"first", "image/jpeg")
    storage.put_new("uploads/u/a.jpg", b"second", "image/jpeg")

    assert storage.read("uploads/u/a.jpg", 100) == b"first"


def test_read_refuses_more_than_the_cap(storage):
    storage.put_new("uploads/u/a.jpg", b"x" * 11, "image/jpeg")

    assert storage.read("uploads/u/a.jpg", 11) == b"x" * 11
    with pytest.raises(ContentRejected) as refused:
        storage.read("uploads/u/a.jpg", 10)
    assert refused.value.code == "too_large"


def test_delete_is_idempotent(storage):
    storage.put_new("uploads/u/a.jpg", b"x", "image/jpeg")

    storage.delete("uploads/u/a.jpg")
    storage.delete("uploads/u/a.jpg")

    assert storage.head("uploads/u/a.jpg") is None


def test_a_missing_bucket_is_storage_unavailable_not_a_missing_object(storage):
    client = make_s3_client(region="us-east-1")
    elsewhere = S3PrivateObjects(client, "hf-no-such-bucket")

    with pytest.raises(StorageUnavailable):
        elsewhere.read("uploads/u/a.jpg", 10)
    with pytest.raises(StorageUnavailable):
        elsewhere.put_new("uploads/u/a.jpg", b"x", "image/jpeg")
