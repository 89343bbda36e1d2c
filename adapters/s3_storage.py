"""Amazon S3 (or an S3-compatible emulator) behind the storage ports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import ContentRejected, StorageUnavailable
from domain.model import ObjectInfo, PresignedPut, SignedUrl, UploadRequest
from domain.ports import ResultStorage, SourceUrlSigner, UploadStorage, UploadUrlSigner

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


class S3PrivateObjects(UploadStorage, ResultStorage, SourceUrlSigner):
    """One private bucket (uploads or processed). Every write is encrypted and write-once; with ``tags``
    (a URL-encoded tag set such as ``retention=expiring``) every write is tagged too, in the same PutObject,
    so no object is ever there untagged for the bucket's lifecycle to miss."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        sse: str = "AES256",
        kms_key_id: str | None = None,
        tags: str | None = None,
        favorite_tags: dict[str, str] | None = None,
        expiring_tags: dict[str, str] | None = None,
    ) -> None:
        """``tags`` go on every new object; ``favorite_tags`` / ``expiring_tags`` replace them when a
        result is (un)favourited or a source selfie (un)held, so the bucket's lifecycle keeps or expires
        it."""
        self._client = client
        self._bucket = bucket
        self._tagging: dict[str, Any] = {"Tagging": tags} if tags else {}
        self._favorite_tags = favorite_tags or {}
        self._expiring_tags = expiring_tags or {}
        self._encryption: dict[str, Any] = {"ServerSideEncryption": sse}
        if sse == "aws:kms" and kms_key_id:
            self._encryption["SSEKMSKeyId"] = kms_key_id

    def head(self, object_key: str) -> ObjectInfo | None:
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=object_key)
        except ClientError as error:
            if _status(error) == 404:
                return None
            raise StorageUnavailable("could not inspect the uploaded object") from error
        except BotoCoreError as error:
            raise StorageUnavailable("could not inspect the uploaded object") from error
        return ObjectInfo(
            size=head["ContentLength"],
            content_type=head.get("ContentType"),
            encrypted=bool(head.get("ServerSideEncryption")),
        )

    def read(self, object_key: str, max_bytes: int) -> bytes:
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=object_key)["Body"]
            data = body.read(max_bytes + 1)
            body.close()
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable("could not read the uploaded object") from error
        if len(data) > max_bytes:
            raise ContentRejected("the object is larger than declared", code="too_large")
        return data

    def put_new(self, object_key: str, data: bytes, content_type: str) -> None:
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=object_key,
                Body=data,
                ContentType=content_type,
                IfNoneMatch="*",
                **self._encryption,
                **self._tagging,
            )
        except ClientError as error:
            if _status(error) == 412:
                return  # already stored by an earlier attempt: the key is derived from the upload id
            raise StorageUnavailable("could not store the image") from error
        except BotoCoreError as error:
            raise StorageUnavailable("could not store the image") from error

    def presign_get(self, object_key: str, ttl_seconds: int) -> SignedUrl:
        try:
            url = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": object_key}, ExpiresIn=ttl_seconds
            )
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable("could not sign a download URL") from error
        return SignedUrl(url)

    def delete(self, object_key: str) -> None:
        try:
            self._client.delete_object(Bucket=self._bucket, Key=object_key)
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable("could not delete the object") from error

    def mark_favorite(self, object_key: str, favorite: bool) -> None:
        """A result a deletion removed meanwhile is nothing to tag: the caller's record decides."""
        self._retag(object_key, favorite)

    def hold_source(self, object_key: str, held: bool) -> None:
        self._retag(object_key, held)

    def _retag(self, object_key: str, kept: bool) -> None:
        tags = self._favorite_tags if kept else self._expiring_tags
        if not tags:
            # An empty tag set would strip retention=expiring: the lifecycle backstop would never see it.
            raise ValueError("this bucket has no retention tags to keep or release an object with")
        try:
            self._put_tags(object_key, tags)
        except ClientError as error:
            if _code(error) == "NoSuchKey":
                return  # already deleted (or never stored): nothing is left to keep or expire
            raise StorageUnavailable("could not tag the object") from error
        except BotoCoreError as error:
            raise StorageUnavailable("could not tag the object") from error

    def set_tags(self, object_key: str, tags: dict[str, str]) -> None:
        """Replace the object's tag set (the processed bucket's lifecycle expires by tag)."""
        try:
            self._put_tags(object_key, tags)
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable("could not tag the object") from error

    def _put_tags(self, object_key: str, tags: dict[str, str]) -> None:
        tag_set: Any = [{"Key": key, "Value": value} for key, value in tags.items()]
        self._client.put_object_tagging(Bucket=self._bucket, Key=object_key, Tagging={"TagSet": tag_set})


def _code(error: ClientError) -> str | None:
    return error.response.get("Error", {}).get("Code")


def _status(error: ClientError) -> int | None:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


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
