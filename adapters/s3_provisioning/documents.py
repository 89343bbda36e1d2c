"""What a hardened bucket should look like (pure data), and how to compare it with what S3 reports.

S3 echoes configurations back in its own shape (lists for single values, empty prefixes, rules in
any order), so each ``normalize_*`` turns both sides into one canonical form before comparing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from domain.objects import SOURCES_PREFIX, UPLOADS_PREFIX

BucketRole = Literal["uploads", "processed"]

RETENTION_TAG = "retention"
EXPIRING = "expiring"
FAVORITE = "favorite"
EXPIRING_TAGGING = f"{RETENTION_TAG}={EXPIRING}"
"""The URL-encoded tag set results and source selfies are written with; lifecycle rules expire them."""

UPLOADS_EXPIRE_DAYS = 1
SOURCES_BACKSTOP_DAYS = 2
"""The sweeper deletes a source selfie SOURCE_RETENTION_SECONDS (1 h) after its last try-on, or an unused one
UNUSED_UPLOAD_TTL_SECONDS (1 day) after verification: the longest honest life is about a day. Lifecycle runs
about daily, so 2 days leaves the sweeper room to do its job first and catches only what a bug (or a race such
as a verification storing its copy after the upload was erased) left behind. Favourites' selfies are re-tagged
retention=favorite, which the rule does not match."""

CORS_ALLOWED_HEADERS = (
    # What S3UploadUrlSigner tells the client to send (Content-Length is set by the browser itself).
    "content-type",
    "if-none-match",
    "x-amz-checksum-sha256",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
)
CORS_MAX_AGE_SECONDS = 600


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def bucket_policy(bucket: str, role: BucketRole, *, region: str) -> dict[str, Any]:
    """Deny anything over plain HTTP; on the uploads bucket also deny a PutObject that could overwrite."""
    bucket_arn = f"arn:{partition(region)}:s3:::{bucket}"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    if role == "uploads":
        statements.append(
            {
                "Sid": "DenyPutObjectWithoutIfNoneMatch",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/*",
                "Condition": {"Null": {"s3:if-none-match": "true"}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def lifecycle_rules(role: BucketRole, *, processed_retention_days: int) -> list[dict[str, Any]]:
    """Backstops behind the service's own deletions (lifecycle runs about daily; the minimum is 1 day)."""
    abort_multipart = {"DaysAfterInitiation": 1}
    if role == "uploads":
        return [
            {
                # What clients PUT: verification deletes it (or a refusal does) within minutes.
                "ID": "expire-uploads",
                "Status": "Enabled",
                "Filter": {"Prefix": UPLOADS_PREFIX},
                "Expiration": {"Days": UPLOADS_EXPIRE_DAYS},
                "AbortIncompleteMultipartUpload": abort_multipart,
            },
            {
                # Sanitised selfies are written tagged retention=expiring; while a favourite holds one it is
                # re-tagged retention=favorite, which this rule does not match. (A rule filtering on tags
                # cannot also abort multipart uploads; sources are written in one PutObject anyway.)
                "ID": "expire-sources-not-held",
                "Status": "Enabled",
                "Filter": {
                    "And": {
                        "Prefix": SOURCES_PREFIX,
                        "Tags": [{"Key": RETENTION_TAG, "Value": EXPIRING}],
                    }
                },
                "Expiration": {"Days": SOURCES_BACKSTOP_DAYS},
            },
        ]
    if processed_retention_days < 1:
        raise ValueError("PROCESSED_RETENTION_DAYS must be at least 1 (the lifecycle minimum)")
    return [
        {
            # Filters can only include by tag: results are written tagged retention=expiring and
            # favouriting re-tags them retention=favorite, which no rule matches.
            "ID": "expire-results-not-favorite",
            "Status": "Enabled",
            "Filter": {"Tag": {"Key": RETENTION_TAG, "Value": EXPIRING}},
            "Expiration": {"Days": processed_retention_days},
        },
        {
            "ID": "abort-incomplete-multipart-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": abort_multipart,
        },
    ]


def cors_rules(origins: Sequence[str]) -> list[dict[str, Any]]:
    """Browser PUTs of a signed upload URL from the configured web origins, nothing else."""
    for origin in origins:
        if "*" in origin or not origin.startswith(("https://", "http://")) or origin.endswith("/"):
            raise ValueError("CORS origins must be exact origins such as https://app.example.com")
    if not origins:
        return []
    return [
        {
            "ID": "browser-upload",
            "AllowedMethods": ["PUT"],
            "AllowedOrigins": sorted(origins),
            "AllowedHeaders": list(CORS_ALLOWED_HEADERS),
            "MaxAgeSeconds": CORS_MAX_AGE_SECONDS,
        }
    ]


def normalize_policy(policy: Mapping[str, Any] | str) -> Any:
    parsed = json.loads(policy) if isinstance(policy, str) else policy
    return _canonical(parsed)


def normalize_lifecycle(rules: Sequence[Mapping[str, Any]]) -> list[Any]:
    canonical = []
    for rule in rules:
        clean = {key: value for key, value in rule.items() if not (key == "Prefix" and value == "")}
        filt = dict(clean.get("Filter") or {})
        if filt.get("Prefix") == "":
            del filt["Prefix"]
        if "And" in filt:
            filt["And"] = {
                key: value
                for key, value in filt["And"].items()
                if (key, value) not in (("Prefix", ""), ("ObjectSizeGreaterThan", 0))
            }
        clean["Filter"] = filt
        canonical.append(_canonical(clean))
    return sorted(canonical, key=lambda rule: json.dumps(rule, sort_keys=True))


def normalize_cors(rules: Sequence[Mapping[str, Any]]) -> list[Any]:
    canonical = []
    for rule in rules:
        clean = dict(rule)
        clean["AllowedHeaders"] = [header.lower() for header in clean.get("AllowedHeaders", [])]
        canonical.append(_canonical(clean))
    return sorted(canonical, key=lambda rule: json.dumps(rule, sort_keys=True))


def _canonical(value: Any) -> Any:
    """Dicts with canonical values; lists sorted, and a one-element list the same as its element."""
    if isinstance(value, Mapping):
        return {key: _canonical(item) for key, item in sorted(value.items())}
    if isinstance(value, list | tuple):
        items = [_canonical(item) for item in value]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return value
