"""The IAM documents in deploy/iam grant each role exactly what its code calls, and nothing broad."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from domain.objects import PROCESSED_PREFIX, SOURCES_PREFIX, UPLOADS_PREFIX

ROOT = Path(__file__).resolve().parents[2]
IAM = ROOT / "deploy" / "iam"
ROLES = ("web-api", "worker", "cleanup")

U = "arn:aws:s3:::${UPLOADS_BUCKET}"
P = "arn:aws:s3:::${PROCESSED_BUCKET}"
UPLOAD_OBJECTS = f"{U}/{UPLOADS_PREFIX}*"  # the object-key layout is domain/objects.py's
SOURCE_OBJECTS = f"{U}/{SOURCES_PREFIX}*"
RESULT_OBJECTS = f"{P}/{PROCESSED_PREFIX}*"
KMS = "${KMS_KEY_ARN}"
KMS_SID = "SseKmsKeyOnlyWithAwsKms"

# Derived by grepping adapters/ for boto3 calls and following who calls each adapter method.
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "web-api": {
        # adapters/s3_storage.py: S3BucketProbe.check -> head_bucket (GET /readyz), both buckets;
        # also turns S3PrivateObjects.head's missing object into 404 rather than 403.
        ("s3:ListBucket", U),
        ("s3:ListBucket", P),
        # adapters/s3_storage.py: S3UploadUrlSigner.presign_put -> generate_presigned_url("put_object")
        # (POST /v1/uploads; the client's PUT runs as this role) and S3PrivateObjects.put_new -> put_object
        ("s3:PutObject", UPLOAD_OBJECTS),
        # adapters/s3_storage.py: S3PrivateObjects.head -> head_object, S3PrivateObjects.read -> get_object
        # (POST /v1/uploads/{id}/complete, domain/verification.py)
        ("s3:GetObject", UPLOAD_OBJECTS),
        # adapters/s3_storage.py: S3PrivateObjects.delete -> delete_object (domain/verification.py rejects
        # and replaces originals; domain/user_data.py: DELETE /v1/uploads/{id}, DELETE /v1/me/data)
        ("s3:DeleteObject", UPLOAD_OBJECTS),
        # domain/verification.py stores the sanitised copy at sources/<user>/<id>.jpg (put_new, with
        # Tagging=retention=expiring for the lifecycle backstop: a tagged PutObject also needs
        # PutObjectTagging), and domain/user_data.py deletes it with its upload and on erasure
        ("s3:PutObject", SOURCE_OBJECTS),
        ("s3:DeleteObject", SOURCE_OBJECTS),
        # adapters/s3_storage.py: S3PrivateObjects.hold_source -> put_object_tagging (domain/user_data.py:
        # a favourite holds its selfie retention=favorite, unfavouriting releases it retention=expiring)
        ("s3:PutObjectTagging", SOURCE_OBJECTS),
        # adapters/s3_storage.py: S3PrivateObjects.read -> get_object (domain/tryons.py: result image)
        ("s3:GetObject", RESULT_OBJECTS),
        # adapters/s3_storage.py: S3PrivateObjects.delete -> delete_object (domain/user_data.py deletes
        # results with their upload and on erasure)
        ("s3:DeleteObject", RESULT_OBJECTS),
        # adapters/s3_storage.py: S3PrivateObjects.set_tags -> put_object_tagging (favourite on/off)
        ("s3:PutObjectTagging", RESULT_OBJECTS),
        # SSE-KMS only: PutObject above needs GenerateDataKey, GetObject needs Decrypt
        ("kms:GenerateDataKey", KMS),
        ("kms:Decrypt", KMS),
    },
    "worker": {
        # adapters/s3_storage.py: S3PrivateObjects.presign_get -> generate_presigned_url("get_object")
        # (domain/tryon_runner.py: TryOnRunner._submit hands the sanitised copy to fal)
        ("s3:GetObject", SOURCE_OBJECTS),
        # adapters/s3_storage.py: S3PrivateObjects.delete -> delete_object (domain/retention.py:
        # SourceExpiry.expire, the expire_upload job: the original and the sanitised copy)
        ("s3:DeleteObject", UPLOAD_OBJECTS),
        ("s3:DeleteObject", SOURCE_OBJECTS),
        # adapters/s3_storage.py: S3PrivateObjects.put_new -> put_object with Tagging=retention=expiring
        # (domain/tryon_runner.py: TryOnRunner._store); a tagged PutObject also needs PutObjectTagging
        ("s3:PutObject", RESULT_OBJECTS),
        ("s3:PutObjectTagging", RESULT_OBJECTS),
        # SSE-KMS only: results are encrypted on put, fal's signed GET is decrypted
        ("kms:GenerateDataKey", KMS),
        ("kms:Decrypt", KMS),
    },
    "cleanup": {
        # adapters/s3_storage.py: S3PrivateObjects.delete -> delete_object (domain/sweeper.py:
        # Sweeper._purge and SourceExpiry.expire)
        ("s3:DeleteObject", UPLOAD_OBJECTS),
        ("s3:DeleteObject", SOURCE_OBJECTS),
        # adapters/s3_storage.py: S3PrivateObjects.delete -> delete_object (domain/sweeper.py: old results)
        ("s3:DeleteObject", RESULT_OBJECTS),
    },
}

# The IAM action each boto3 S3 client method (or pre-signed operation) is authorised as.
METHOD_ACTIONS = {
    "head_bucket": "s3:ListBucket",
    "head_object": "s3:GetObject",
    "get_object": "s3:GetObject",
    "put_object": "s3:PutObject",
    "delete_object": "s3:DeleteObject",
    "put_object_tagging": "s3:PutObjectTagging",
}
# Called only by `tryon provision` (adapters/s3_provisioning/), which runs with operator credentials;
# no runtime role may change bucket configuration.
PROVISIONING_ONLY = {
    "create_bucket",
    "get_public_access_block",
    "put_public_access_block",
    "get_bucket_encryption",
    "put_bucket_encryption",
    "get_bucket_policy",
    "put_bucket_policy",
    "get_bucket_lifecycle_configuration",
    "put_bucket_lifecycle_configuration",
    "get_bucket_cors",
    "put_bucket_cors",
    "delete_bucket_cors",
}
BUCKET_ACTIONS = {"s3:ListBucket"}


def load(role: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((IAM / f"{role}.json").read_text())
    return document


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(role: str) -> list[dict[str, Any]]:
    return as_list(load(role)["Statement"])


def granted(role: str) -> set[tuple[str, str]]:
    return {
        (action, resource)
        for statement in statements(role)
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }


def s3_calls_in_adapters() -> dict[str, set[str]]:
    """boto3 S3 client method -> the adapter files calling it (pre-signed operations count as calls)."""
    calls: dict[str, set[str]] = {}
    for path in sorted((ROOT / "adapters").rglob("*.py")):
        source = path.read_text()
        if "mypy_boto3_s3" not in source:
            continue
        methods = set(re.findall(r"self\._client\.(\w+)\(", source))
        if "generate_presigned_url" in methods:
            methods.discard("generate_presigned_url")
            methods |= set(re.findall(r"generate_presigned_url\(\s*\"(\w+)\"", source))
        for method in methods:
            calls.setdefault(method, set()).add(str(path.relative_to(ROOT)))
    return calls


@pytest.mark.parametrize("role", ROLES)
def test_each_role_grants_exactly_what_its_code_calls(role):
    assert granted(role) == EXPECTED[role]


@pytest.mark.parametrize("role", ROLES)
def test_only_narrow_allows(role):
    document = load(role)
    assert document["Version"] == "2012-10-17"
    for statement in statements(role):
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
        assert statement["Sid"]
        for action in as_list(statement["Action"]):
            assert "*" not in action, action
            assert action.startswith(("s3:", "kms:")), action


@pytest.mark.parametrize("role", ROLES)
def test_every_resource_is_a_bucket_or_a_prefix_of_it(role):
    for action, resource in granted(role):
        if action.startswith("kms:"):
            assert resource == KMS
        elif action in BUCKET_ACTIONS:
            assert resource in (U, P)
        else:
            assert resource in (UPLOAD_OBJECTS, SOURCE_OBJECTS, RESULT_OBJECTS), (action, resource)


@pytest.mark.parametrize("role", ROLES)
def test_kms_is_one_separate_optional_statement_used_only_through_s3(role):
    with_kms = [s for s in statements(role) if any(a.startswith("kms:") for a in as_list(s["Action"]))]
    if role == "cleanup":
        assert with_kms == []
        return
    assert len(with_kms) == 1
    (statement,) = with_kms
    assert statement["Sid"] == KMS_SID
    assert sorted(as_list(statement["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert statement["Condition"] == {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}


@pytest.mark.parametrize("role", ROLES)
def test_only_the_documented_placeholders_and_sids(role):
    text = (IAM / f"{role}.json").read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) <= {"UPLOADS_BUCKET", "PROCESSED_BUCKET", "KMS_KEY_ARN"}
    readme = (IAM / "README.md").read_text()
    assert f"`{role}.json`" in readme
    for statement in statements(role):
        assert f"`{statement['Sid']}`" in readme


def test_every_s3_call_in_the_adapters_is_granted_to_some_role_or_is_provisioning():
    calls = s3_calls_in_adapters()
    all_granted = {action for role in ROLES for action, _ in granted(role)}

    unknown = set(calls) - set(METHOD_ACTIONS) - PROVISIONING_ONLY
    assert not unknown, f"new S3 calls {unknown}: add them to METHOD_ACTIONS and to the role that makes them"
    for method, files in calls.items():
        if method in PROVISIONING_ONLY:
            assert all(f.startswith("adapters/s3_provisioning/") for f in files), (method, files)
        else:
            assert METHOD_ACTIONS[method] in all_granted, (method, files)


def test_no_role_grants_an_action_no_code_needs():
    needed = {METHOD_ACTIONS[m] for m in s3_calls_in_adapters() if m in METHOD_ACTIONS}
    storage = (ROOT / "adapters" / "s3_storage.py").read_text()
    if "Tagging" in storage:
        needed.add("s3:PutObjectTagging")  # a PutObject carrying tags is authorised as both
    if "SSEKMSKeyId" in storage:
        needed |= {"kms:GenerateDataKey", "kms:Decrypt"}
    for role in ROLES:
        assert {action for action, _ in granted(role)} <= needed, role


def test_whoever_writes_tagged_results_may_tag_them():
    for role in ROLES:
        pairs = granted(role)
        if ("s3:PutObject", RESULT_OBJECTS) in pairs:
            assert ("s3:PutObjectTagging", RESULT_OBJECTS) in pairs, role


def test_whoever_writes_sources_may_tag_them_and_nobody_may_tag_what_clients_put():
    """Sources are written tagged retention=expiring (the lifecycle backstop); client PUTs under uploads/
    carry no tags, so no role may tag there."""
    for role in ROLES:
        pairs = granted(role)
        if ("s3:PutObject", SOURCE_OBJECTS) in pairs:
            assert ("s3:PutObjectTagging", SOURCE_OBJECTS) in pairs, role
        assert ("s3:PutObjectTagging", UPLOAD_OBJECTS) not in pairs, role
