"""Amazon S3 (or an S3-compatible emulator) behind the storage ports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import StorageUnavailable
from domain.model import PresignedPut, SignedUrl, UploadRequest
from domain.ports import UploadUrlSigner

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def make_s3_client(*, region: str, endpoint_url: str | None = None) -> S3Client:
    """A client with SigV4, bounded timeouts and retries; path-style addressing for emulators."""
    config = Config(
        signature_version="s3v4",
        connect_timeout=3,
        read_timeout=10,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint_url else "virtual"},
    )
    client: S3Client = boto3.session.Session().client(
        "s3", region_name=region, endpoint_url=endpoint_url, config=config
    )
    return client


class S3UploadUrlSigner(UploadUrlSigner):
    """Signs write-once PUTs: S3 itself then enforces type, length, checksum, encryption and expiry."""

    def __init__(
        self, client: S3Client, bucket: str, *, sse: str = "AES256", kms_key_id: str | None = None
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._sse = sse
        self._kms_key_id = kms_key_id

    def presign_put(self, object_key: str, request: UploadRequest, ttl_seconds: int) -> PresignedPut:
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": object_key,
            "ContentType": request.content_type,
            "ContentLength": request.content_length,
            "IfNoneMatch": "*",
            "ServerSideEncryption": self._sse,
        }
        headers = {
            "Content-Type": request.content_type,
            "Content-Length": str(request.content_length),
            "If-None-Match": "*",
            "x-amz-server-side-encryption": self._sse,
        }
        if self._sse == "aws:kms" and self._kms_key_id:
            params["SSEKMSKeyId"] = self._kms_key_id
            headers["x-amz-server-side-encryption-aws-kms-key-id"] = self._kms_key_id
        if request.checksum_sha256 is not None:
            params["ChecksumSHA256"] = request.checksum_sha256
            headers["x-amz-checksum-sha256"] = request.checksum_sha256
        try:
            url = self._client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=ttl_seconds, HttpMethod="PUT"
            )
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable("could not sign an upload URL") from error
        return PresignedPut(url=SignedUrl(url), headers=headers)


class S3BucketProbe:
    """Readiness: the buckets answer a HEAD with our credentials."""

    def __init__(self, client: S3Client, buckets: tuple[str, ...]) -> None:
        self._client = client
        self._buckets = buckets

    def check(self) -> None:
        for bucket in self._buckets:
            try:
                self._client.head_bucket(Bucket=bucket)
            except (BotoCoreError, ClientError) as error:
                raise StorageUnavailable("object storage is not reachable") from error
