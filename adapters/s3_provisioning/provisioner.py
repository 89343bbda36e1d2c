"""Creating and hardening the private buckets, idempotently: `tryon provision`.

Every setting is read back first and written only when it differs, so a second run changes nothing
and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.s3_provisioning import documents
from adapters.s3_provisioning.documents import BucketRole
from domain.errors import StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_ALREADY_THERE = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}
_NOT_THERE = {
    "NoSuchBucketPolicy",
    "NoSuchLifecycleConfiguration",
    "NoSuchCORSConfiguration",
    "NoSuchPublicAccessBlockConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError",
}
_BLOCK_ALL: Any = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


@dataclass(frozen=True)
class ProvisionReport:
    """What one run did to one bucket: ``applied`` names each setting it had to write."""

    created: bool
    applied: tuple[str, ...]

    @property
    def outcome(self) -> str:
        return "created" if self.created else "existing"

    @property
    def unchanged(self) -> bool:
        return not self.created and not self.applied

    def summary(self) -> str:
        if self.unchanged:
            return "unchanged"
        applied = f"applied {', '.join(self.applied)}" if self.applied else "nothing to apply"
        return f"created; {applied}" if self.created else applied


class S3BucketProvisioner:
    def __init__(self, client: S3Client, *, region: str, sse: str = "AES256", kms_key_id: str | None = None):
        self._client = client
        self._region = region
        self._sse = sse
        self._kms_key_id = kms_key_id

    def ensure_private_bucket(
        self,
        bucket: str,
        *,
        role: BucketRole | None = None,
        processed_retention_days: int = 30,
        cors_origins: tuple[str, ...] = (),
    ) -> ProvisionReport:
        """Create ``bucket`` if missing, then make sure it blocks public access and encrypts by default;
        with a ``role``, also its bucket policy, lifecycle backstops and CORS (none unless origins).
        ``tryon provision`` always names the role; without one (older test fixtures) only the first
        two are ensured."""
        steps: list[tuple[str, Any]] = [
            ("public access block", self._public_access_block),
            ("encryption", self._encryption),
        ]
        if role is not None:
            policy = documents.bucket_policy(bucket, role, region=self._region)
            rules = documents.lifecycle_rules(role, processed_retention_days=processed_retention_days)
            cors = documents.cors_rules(cors_origins)
            steps += [
                ("policy", lambda b: self._policy(b, policy)),
                ("lifecycle", lambda b: self._lifecycle(b, rules)),
                ("cors" if cors else "cors removed", lambda b: self._cors(b, cors)),
            ]
        step = "bucket"
        try:
            created = self._create_if_missing(bucket)
            applied = []
            for step, ensure in steps:
                if ensure(bucket):
                    applied.append(step)
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable(f"could not provision a bucket ({step})") from error
        return ProvisionReport(created=created, applied=tuple(applied))

    def _create_if_missing(self, bucket: str) -> bool:
        try:
            self._client.head_bucket(Bucket=bucket)
            return False
        except ClientError as error:
            if _code(error) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if self._region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as error:
            if _code(error) in _ALREADY_THERE:
                return False
            raise
        return True

    def _public_access_block(self, bucket: str) -> bool:
        current = _absent_as_none(
            lambda: self._client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        )
        if current == _BLOCK_ALL:
            return False
        self._client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=_BLOCK_ALL)
        return True

    def _encryption(self, bucket: str) -> bool:
        wanted: Any = {"SSEAlgorithm": self._sse}
        if self._sse == "aws:kms" and self._kms_key_id:
            wanted["KMSMasterKeyID"] = self._kms_key_id
        config = _absent_as_none(
            lambda: self._client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        )
        rules = (config or {}).get("Rules", [])
        if len(rules) == 1 and rules[0].get("ApplyServerSideEncryptionByDefault") == wanted:
            return False
        self._client.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": wanted}]},
        )
        return True

    def _policy(self, bucket: str, policy: dict[str, Any]) -> bool:
        current = _absent_as_none(lambda: self._client.get_bucket_policy(Bucket=bucket)["Policy"])
        if current is not None and documents.normalize_policy(current) == documents.normalize_policy(policy):
            return False
        self._client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        return True

    def _lifecycle(self, bucket: str, rules: Any) -> bool:
        current = _absent_as_none(
            lambda: self._client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        )
        if current is not None and documents.normalize_lifecycle(current) == documents.normalize_lifecycle(
            rules
        ):
            return False
        self._client.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={"Rules": rules},
        )
        return True

    def _cors(self, bucket: str, rules: Any) -> bool:
        current = _absent_as_none(lambda: self._client.get_bucket_cors(Bucket=bucket)["CORSRules"])
        if not rules:
            if current is None:
                return False
            self._client.delete_bucket_cors(Bucket=bucket)
            return True
        if current is not None and documents.normalize_cors(current) == documents.normalize_cors(rules):
            return False
        self._client.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={"CORSRules": rules},
        )
        return True


def _code(error: ClientError) -> str | None:
    return error.response.get("Error", {}).get("Code")


def _absent_as_none(read: Any) -> Any:
    """The configuration ``read()`` returns, or None where S3 says there is none."""
    try:
        return read()
    except ClientError as error:
        if _code(error) in _NOT_THERE:
            return None
        raise
