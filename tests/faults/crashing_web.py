"""`gunicorn tests.faults.crashing_web:app`: the real web app, except that its process is killed (SIGKILL)
right after an object deletion while the file named by CRASH_AFTER_DELETE exists — the instant between
the S3 delete and the row update. The file is removed first, so a restarted process runs normally.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from adapters.s3_storage import S3PrivateObjects, make_s3_client
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.fakes import FakeFaceDetector
from tests.inline import bootstrap_verifying_inline


class DiesAfterDelete:
    def __init__(self, storage: S3PrivateObjects, trigger: Path) -> None:
        self._storage = storage
        self._trigger = trigger

    def __getattr__(self, name: str) -> object:
        return getattr(self._storage, name)

    def delete(self, object_key: str) -> None:
        self._storage.delete(object_key)
        if self._trigger.exists():
            self._trigger.unlink()
            os.kill(os.getpid(), signal.SIGKILL)


def build() -> object:
    settings = Settings.from_env()
    s3 = make_s3_client(region=settings.aws_region, endpoint_url=settings.s3_endpoint_url)
    uploads = S3PrivateObjects(
        s3, settings.uploads_bucket, sse=settings.s3_sse, kms_key_id=settings.s3_sse_kms_key_id
    )
    storage = DiesAfterDelete(uploads, Path(os.environ["CRASH_AFTER_DELETE"]))
    return create_app(bootstrap_verifying_inline(settings, storage=storage, detector=FakeFaceDetector()))


app = build()
