"""Creating and hardening the private buckets (idempotent): `tryon provision`."""

from adapters.s3_provisioning.documents import (
    EXPIRING,
    EXPIRING_TAGGING,
    FAVORITE,
    RETENTION_TAG,
    BucketRole,
)
from adapters.s3_provisioning.provisioner import ProvisionReport, S3BucketProvisioner

__all__ = [
    "EXPIRING",
    "EXPIRING_TAGGING",
    "FAVORITE",
    "RETENTION_TAG",
    "BucketRole",
    "ProvisionReport",
    "S3BucketProvisioner",
]
