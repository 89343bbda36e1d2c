"""The lifecycle backstop for sanitised selfies (issue 11, item 3), against ministack.

Every object the service writes under sources/ is tagged retention=expiring in the same PutObject; a
favourite holds its selfie by re-tagging it retention=favorite; `tryon provision` installs the rule that
expires sources/ tagged retention=expiring after SOURCES_BACKSTOP_DAYS. So no code bug (nor a verification
that stores its copy after the upload was erased) can keep a face forever. Lifecycle itself runs about
daily and no emulator runs it, so what is checked is the tags and the rule, not an expiry.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from adapters.s3_provisioning import (
    EXPIRING,
    EXPIRING_TAGGING,
    FAVORITE,
    RETENTION_TAG,
    ProvisionReport,
    S3BucketProvisioner,
)
from adapters.s3_provisioning.documents import SOURCES_BACKSTOP_DAYS
from adapters.s3_storage import S3PrivateObjects, make_s3_client
from domain.errors import StorageUnavailable
from domain.model import UploadRequest
from entrypoints.bootstrap.adapters import Adapters, build_s3
from entrypoints.settings import Settings
from tests.builders.stack import new_bucket_name

pytestmark = pytest.mark.integration

SOURCE = "sources/u1/a1.jpg"
EXPIRING_SET = [{"Key": "retention", "Value": "expiring"}]
FAVORITE_SET = [{"Key": "retention", "Value": "favorite"}]


@pytest.fixture
def s3(ministack_url: str) -> Any:
    return make_s3_client(region="us-east-1", endpoint_url=ministack_url)


@pytest.fixture
def uploads_bucket(s3: Any) -> str:
    bucket = new_bucket_name("uploads")
    S3BucketProvisioner(s3, region="us-east-1").ensure_private_bucket(bucket, role="uploads")
    return bucket


def retention_tagged(client: Any, bucket: str) -> S3PrivateObjects:
    """A bucket as bootstrap builds both: writes tagged expiring, (un)holding re-tags."""
    return S3PrivateObjects(
        client,
        bucket,
        tags=EXPIRING_TAGGING,
        favorite_tags={RETENTION_TAG: FAVORITE},
        expiring_tags={RETENTION_TAG: EXPIRING},
    )


@pytest.fixture
def sources(s3: Any, uploads_bucket: str) -> S3PrivateObjects:
    return retention_tagged(s3, uploads_bucket)


def tags_of(s3: Any, bucket: str, key: str) -> list[dict[str, str]]:
    tag_set: list[dict[str, str]] = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return tag_set


def test_a_source_is_written_tagged_expiring(s3, uploads_bucket, sources):
    sources.put_new(SOURCE, b"selfie", "image/jpeg")

    assert tags_of(s3, uploads_bucket, SOURCE) == EXPIRING_SET
    assert sources.read(SOURCE, 100) == b"selfie"


def test_a_second_write_of_a_held_source_does_not_release_it(s3, uploads_bucket, sources):
    sources.put_new(SOURCE, b"selfie", "image/jpeg")
    sources.hold_source(SOURCE, True)

    sources.put_new(SOURCE, b"retried", "image/jpeg")  # write-once: 412, nothing changes

    assert tags_of(s3, uploads_bucket, SOURCE) == FAVORITE_SET
    assert sources.read(SOURCE, 100) == b"selfie"


def test_holding_a_source_tags_it_favorite_and_releasing_it_tags_it_expiring_again(
    s3, uploads_bucket, sources
):
    sources.put_new(SOURCE, b"selfie", "image/jpeg")

    sources.hold_source(SOURCE, True)
    assert tags_of(s3, uploads_bucket, SOURCE) == FAVORITE_SET
    sources.hold_source(SOURCE, True)
    assert tags_of(s3, uploads_bucket, SOURCE) == FAVORITE_SET

    sources.hold_source(SOURCE, False)
    assert tags_of(s3, uploads_bucket, SOURCE) == EXPIRING_SET
    assert sources.read(SOURCE, 100) == b"selfie"


@pytest.mark.parametrize("held", [True, False])
def test_holding_or_releasing_a_source_that_is_gone_is_nothing_to_do(sources, held):
    sources.hold_source("sources/u1/never-stored.jpg", held)


def test_holding_a_source_in_a_missing_bucket_or_an_unreachable_store_is_storage_unavailable(s3):
    missing_bucket = retention_tagged(s3, new_bucket_name("gone"))
    unreachable = retention_tagged(
        make_s3_client(region="us-east-1", endpoint_url="http://127.0.0.1:9"), "hf-anything"
    )

    for storage in (missing_bucket, unreachable):
        with pytest.raises(StorageUnavailable):
            storage.hold_source(SOURCE, True)


def test_a_bucket_without_retention_tags_refuses_to_strip_a_source_of_its_tag(s3, uploads_bucket, sources):
    sources.put_new(SOURCE, b"selfie", "image/jpeg")

    with pytest.raises(ValueError, match="no retention tags"):
        S3PrivateObjects(s3, uploads_bucket).hold_source(SOURCE, False)

    assert tags_of(s3, uploads_bucket, SOURCE) == EXPIRING_SET


def test_bootstrap_tags_sources_but_not_what_clients_put_under_uploads(s3, uploads_bucket, ministack_url):
    settings = Settings(
        uploads_bucket=uploads_bucket,
        processed_bucket=new_bucket_name("processed"),
        better_auth_url="https://auth.example.com",
        s3_endpoint_url=ministack_url,
    )
    ports = Adapters()
    build_s3(settings, ports, {})
    assert ports.storage is not None and ports.signer is not None

    ports.storage.put_new(SOURCE, b"selfie", "image/jpeg")
    assert tags_of(s3, uploads_bucket, SOURCE) == EXPIRING_SET
    ports.storage.hold_source(SOURCE, True)
    assert tags_of(s3, uploads_bucket, SOURCE) == FAVORITE_SET

    put = ports.signer.presign_put("uploads/u1/a2", UploadRequest("image/jpeg", 6), 60)
    assert requests.put(put.url, data=b"selfie", headers=put.headers, timeout=5).status_code == 200
    assert tags_of(s3, uploads_bucket, "uploads/u1/a2") == []


def test_provisioning_installs_the_sources_backstop_next_to_the_uploads_rule(s3):
    bucket = new_bucket_name("uploads")
    provisioner = S3BucketProvisioner(s3, region="us-east-1")

    first = provisioner.ensure_private_bucket(bucket, role="uploads")
    second = provisioner.ensure_private_bucket(bucket, role="uploads")

    assert "lifecycle" in first.applied
    assert second == ProvisionReport(created=False, applied=())
    rules = {rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {"expire-uploads", "expire-sources-not-held"}
    backstop = rules["expire-sources-not-held"]
    assert set(backstop) == {"ID", "Status", "Filter", "Expiration"}
    assert backstop["Status"] == "Enabled"
    assert list(backstop["Filter"]) == ["And"]
    conditions = dict(backstop["Filter"]["And"])
    assert conditions.pop("ObjectSizeGreaterThan", 0) == 0  # ministack echoes the default
    assert conditions == {"Prefix": "sources/", "Tags": [{"Key": "retention", "Value": "expiring"}]}
    assert backstop["Expiration"] == {"Days": 2} == {"Days": SOURCES_BACKSTOP_DAYS}
    assert rules["expire-uploads"]["Filter"] == {"Prefix": "uploads/"}


def test_provisioning_adds_the_sources_backstop_to_a_bucket_provisioned_before_it(s3):
    bucket = new_bucket_name("uploads")
    provisioner = S3BucketProvisioner(s3, region="us-east-1")
    provisioner.ensure_private_bucket(bucket, role="uploads")
    old_rules = [
        rule
        for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        if rule["ID"] == "expire-uploads"
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": old_rules})

    assert provisioner.ensure_private_bucket(bucket, role="uploads").applied == ("lifecycle",)
    assert provisioner.ensure_private_bucket(bucket, role="uploads").unchanged
    ids = sorted(rule["ID"] for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])
    assert ids == ["expire-sources-not-held", "expire-uploads"]
