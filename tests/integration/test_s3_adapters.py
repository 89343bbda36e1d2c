"""The S3 adapters against ministack: what they sign, what they provision, what readiness sees."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from adapters.s3_provisioning import S3BucketProvisioner
from adapters.s3_storage import S3BucketProbe, S3UploadUrlSigner, make_s3_client
from domain.errors import StorageUnavailable
from domain.model import UploadRequest
from tests.builders.stack import new_bucket_name

pytestmark = pytest.mark.integration

CHECKSUM = "XSOlxSjEgHFCa5wJmCkaqlkQX55Tq5N5+WDgRfGsUqw="


def signed_headers(url: str) -> list[str]:
    return sorted(parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0].split(";"))


@pytest.mark.parametrize("checksum", [None, CHECKSUM])
def test_the_signature_covers_every_returned_header_and_nothing_else(ministack_url, checksum):
    signer = S3UploadUrlSigner(make_s3_client(region="us-east-1", endpoint_url=ministack_url), "hf-bucket")

    put = signer.presign_put("uploads/u1/a1", UploadRequest("image/png", 123, checksum), 60)

    assert signed_headers(put.url) == sorted([*(name.lower() for name in put.headers), "host"])
    assert put.headers["Content-Length"] == "123"
    assert ("x-amz-checksum-sha256" in put.headers) == (checksum is not None)
    assert parse_qs(urlsplit(put.url).query)["X-Amz-Expires"] == ["60"]
    assert put.url not in repr(put)
    assert repr(put.url) == "SignedUrl('<redacted>')"


def test_kms_encryption_signs_the_key_id_too(ministack_url):
    signer = S3UploadUrlSigner(
        make_s3_client(region="us-east-1", endpoint_url=ministack_url),
        "hf-bucket",
        sse="aws:kms",
        kms_key_id="arn:aws:kms:us-east-1:111122223333:key/demo",
    )

    put = signer.presign_put("uploads/u1/a1", UploadRequest("image/jpeg", 10), 300)

    assert put.headers["x-amz-server-side-encryption"] == "aws:kms"
    assert put.headers["x-amz-server-side-encryption-aws-kms-key-id"].endswith("key/demo")
    assert "x-amz-server-side-encryption-aws-kms-key-id" in signed_headers(put.url)


def test_provisioning_twice_creates_once_and_leaves_the_bucket_private_and_encrypted(ministack_url):
    client = make_s3_client(region="us-east-1", endpoint_url=ministack_url)
    provisioner = S3BucketProvisioner(client, region="us-east-1")
    bucket = new_bucket_name("prov")

    assert provisioner.ensure_private_bucket(bucket).outcome == "created"
    assert provisioner.ensure_private_bucket(bucket).outcome == "existing"

    encryption = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }


def test_readiness_passes_for_existing_buckets_and_fails_for_a_missing_one(ministack_url, buckets):
    client = make_s3_client(region="us-east-1", endpoint_url=ministack_url)

    S3BucketProbe(client, buckets).check()
    with pytest.raises(StorageUnavailable):
        S3BucketProbe(client, (*buckets, new_bucket_name("missing"))).check()


def test_an_unreachable_endpoint_is_storage_unavailable():
    client = make_s3_client(region="us-east-1", endpoint_url="http://127.0.0.1:9")

    with pytest.raises(StorageUnavailable):
        S3BucketProvisioner(client, region="us-east-1").ensure_private_bucket("hf-anything")
