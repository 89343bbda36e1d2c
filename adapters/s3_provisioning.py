"""Creating and hardening the private buckets (idempotent): `tryon provision`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_ALREADY_THERE = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


class S3BucketProvisioner:
    def __init__(self, client: S3Client, *, region: str, sse: str = "AES256", kms_key_id: str | None = None):
        self._client = client
        self._region = region
        self._sse = sse
        self._kms_key_id = kms_key_id

    def ensure_private_bucket(self, bucket: str) -> str:
        """Create ``bucket`` if missing; turn on default encryption and Block Public Access. Returns
        ``created`` or ``existing``."""
        try:
            outcome = self._create_if_missing(bucket)
            self._client.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
            self._client.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": self._sse_rule()}]
                },
            )
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable("could not provision a bucket") from error
        return outcome

    def _create_if_missing(self, bucket: str) -> str:
        try:
            self._client.head_bucket(Bucket=bucket)
            return "existing"
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if self._region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _ALREADY_THERE:
                return "existing"
            raise
        return "created"

    def _sse_rule(self) -> Any:
        if self._sse == "aws:kms" and self._kms_key_id:
            return {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": self._kms_key_id}
        return {"SSEAlgorithm": self._sse}
