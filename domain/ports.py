"""Ports: what the domain needs from the world, as Protocols. Adapters subclass them explicitly."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Protocol

from domain.model import (
    AuditEvent,
    Credentials,
    DetectedFace,
    DownloadedImage,
    FalDelivery,
    GeneratedImage,
    GenerationRequest,
    JobState,
    ObjectInfo,
    Pixels,
    PresignedPut,
    SanitizedImage,
    SignedUrl,
    Submission,
    TryOn,
    TryOnResult,
    Upload,
    UploadRequest,
    UploadStatus,
)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str:
        """A fresh, unguessable, URL- and key-safe identifier."""
        ...


class UploadUrlSigner(Protocol):
    def presign_put(self, object_key: str, request: UploadRequest, ttl_seconds: int) -> PresignedPut:
        """Sign a single-use PUT that S3 accepts only with exactly the returned headers."""
        ...


class UploadStorage(Protocol):
    """The private uploads bucket, as verification needs it."""

    def head(self, object_key: str) -> ObjectInfo | None:
        """Metadata of the object, or None when there is none."""
        ...

    def read(self, object_key: str, max_bytes: int) -> bytes:
        """The object's bytes; refuses (ContentRejected ``too_large``) to read more than ``max_bytes``."""
        ...

    def put_new(self, object_key: str, data: bytes, content_type: str) -> None:
        """Store encrypted; never overwrites an existing object."""
        ...

    def delete(self, object_key: str) -> None:
        """Remove the object; deleting what is not there is not an error."""
        ...

    def hold_source(self, object_key: str, held: bool) -> None:
        """Tag the sanitised selfie so the bucket's lifecycle backstop keeps it (held: a favourite needs it)
        or expires it again; a selfie that is not there is nothing to do."""
        ...


class ImageSanitizer(Protocol):
    def sanitize(self, data: bytes, declared_type: str) -> SanitizedImage:
        """Decode within safe limits, upright by EXIF, re-encode without metadata.

        Raises ContentRejected with ``content_type_mismatch``, ``not_an_image`` or ``image_too_large``.
        """
        ...


class FaceDetector(Protocol):
    def detect(self, image: Pixels) -> list[DetectedFace]: ...

    def warm_up(self) -> None:
        """Load whatever is slow to load, so that the first real detection is fast."""
        ...


class UploadRepository(Protocol):
    """Every change of an upload is conditional on the state it expects; the answer says who won."""

    def add(self, upload: Upload) -> None: ...

    def get(self, upload_id: str) -> Upload | None: ...

    def update(self, upload: Upload) -> bool:
        """Write ``upload``'s state if the row is still at ``upload.version`` (and bump the version);
        False when another change got there first: re-read and decide again."""
        ...

    def claim_for_verification(self, upload_id: str, now: datetime, stale_before: datetime) -> Upload | None:
        """Atomically move an issued upload (or one whose verification stalled before ``stale_before``)
        to ``verifying``; the claimed upload, or None when another request holds it or it is settled."""
        ...

    def begin_verification(self, upload_id: str, now: datetime) -> Upload | None:
        """A verifier starts on a claimed upload: count the attempt and renew the claim; None when the
        upload is not being verified (settled, deleted)."""
        ...

    def stalled_verifications(self, before: datetime, limit: int) -> list[str]:
        """Uploads claimed for verification whose claim was last renewed before ``before``."""
        ...

    def lock_verified(self, upload_id: str) -> Upload | None:
        """Hold a verified upload until this transaction ends, so it cannot be deleted meanwhile (bumps its
        version); None when it is no longer verified."""
        ...

    def set_deadline(self, upload_id: str, when: datetime) -> bool:
        """Move a verified upload's ``source_expires_at`` and clear ``source_kept`` (its retention starts
        again: its holds are looked at anew when the new deadline comes); False when it is no longer
        verified."""
        ...

    def mark_deleted(self, upload_id: str, now: datetime) -> None:
        """Deleted is reachable from every state and never left: no longer usable, whatever raced it."""
        ...

    def mark_user_deleted(self, user_id: str, now: datetime) -> int: ...

    def expire_if_due(self, upload_id: str, now: datetime) -> Upload | None:
        """Mark a verified upload deleted if its ``source_expires_at`` has passed, no try-on on it is
        unsettled and none of its results is a favourite, all in one conditional update; the upload now
        deleted, or None. It is marked purged at once: its results stay (they have their own retention), so
        the sweep must not finish it as a user's deletion; its source object goes right after (the tag
        backstop covers a process that dies in between)."""
        ...

    def keep_if_held(self, upload_id: str, now: datetime) -> bool:
        """Mark a verified upload ``source_kept`` if its ``source_expires_at`` has passed and one of its
        results is a favourite, in one conditional update (``overdue_sources`` then leaves it out until
        ``set_deadline`` clears the mark); True when this marked it."""
        ...

    def recheck_kept(self, confirmed_before: datetime, now: datetime, limit: int) -> list[str]:
        """Look again at the verified selfies marked ``source_kept`` whose mark was last set or confirmed
        before ``confirmed_before``, at most ``limit`` of them, longest unconfirmed first: clear each mark no
        favourite justifies any more (``overdue_sources`` then lists the selfie once it is due, and its
        expiry decides), confirm the others at ``now``. The uploads whose marks it cleared."""
        ...

    def for_user(self, user_id: str) -> list[Upload]: ...

    def delete(self, upload_id: str) -> None:
        """Remove the row of a deleted upload (rows in any other state stay)."""
        ...

    def to_purge(self, settled_before: datetime, limit: int) -> list[Upload]:
        """Uploads whose objects may still exist but must not: originals of verified uploads, intents never
        completed or rejected (``url_expires_at`` long past), deleted uploads; all unpurged and settled
        before."""
        ...

    def overdue_sources(self, now: datetime, limit: int) -> list[str]:
        """Verified uploads whose ``source_expires_at`` has passed, not marked ``source_kept`` and with no
        unsettled try-on (settling it restarts the selfie's retention and schedules it anew). One a
        favourite holds but not yet marked is listed: its expiry marks it."""
        ...

    def claim_sweep(self, upload_id: str, now: datetime, lease_until: datetime) -> bool: ...

    def release_sweep(self, upload_id: str) -> None:
        """End a sweep lease early: the sweep looked and declined, so the next pass may try at once."""
        ...

    def mark_purged(self, upload: Upload, now: datetime, status: UploadStatus) -> bool:
        """The upload's objects are gone; record it (and its new status) and end the sweep lease, if the
        row is still at ``upload.version``."""
        ...


class VerificationQueue(Protocol):
    def verify_soon(self, upload_id: str) -> None:
        """Hand the upload to a verifier: one pending job per upload however often asked (a stable id).
        Raises QueueUnavailable."""
        ...


class Topic(enum.StrEnum):
    """What a change is announced about: an upload (its verdict, deletion or expiry) or a try-on."""

    UPLOAD = "upload"
    TRYON = "tryon"


class ChangeListener(Protocol):
    def wait(self, seconds: float) -> str | None:
        """The first message announced on the listened-to key since listening began, or None when none
        came in time, at once when nobody may wait now (every waiting place taken, or the board down)."""
        ...


class ChangeBoard(Protocol):
    """Where a change is announced once it is committed, and where a waiting request hears it: the web's
    ``complete`` (an upload's verdict) and the long polls (``GET ...?wait=N``). One per process, with a
    bounded number of waiting places shared by every waiter, so a waiter never starves other requests."""

    def listen(self, topic: Topic, key: str) -> AbstractContextManager[ChangeListener]:
        """Start listening for the key's changes (before reading or handing off, so none is missed)."""
        ...

    def announce(self, topic: Topic, key: str, message: str) -> None:
        """Raises QueueUnavailable; announcing is best effort (the database holds the state)."""
        ...


class AuditLog(Protocol):
    def append(self, event: AuditEvent) -> None: ...


class TryOnRepository(Protocol):
    def add(self, tryon: TryOn) -> None: ...

    def get(self, tryon_id: str) -> TryOn | None: ...

    def by_idempotency_key(self, user_id: str, key: str) -> TryOn | None: ...

    def update(self, tryon: TryOn) -> bool:
        """Write the try-on's state if the row is still at ``tryon.version`` (bumping it) and end the
        current step's lease; False when another change got there first."""
        ...

    def claim(self, tryon_id: str, now: datetime, lease_until: datetime) -> TryOn | None:
        """Take the try-on for one step unless it is settled or another worker's lease is still running;
        the claimed try-on (its version bumped, so an older holder's writes lose), or None."""
        ...

    def unsettled_for_upload(self, upload_id: str) -> int: ...

    def unsettled_for_user(self, user_id: str) -> int: ...

    def unsettled_ids_for_user(self, user_id: str) -> list[str]:
        """The user's try-ons still queued or running: the ones a long poll may be waiting on."""
        ...

    def delete_for_user(self, user_id: str) -> int: ...

    def due(self, before: datetime, limit: int) -> list[str]:
        """Unsettled try-ons whose next step was due before ``before`` and that nobody holds."""
        ...

    def record_request(self, tryon_id: str, request_id: str) -> None:
        """Remember that the generator request ``request_id`` was submitted for the try-on (every attempt's,
        so a late callback for an earlier attempt is still recognised as ours)."""
        ...

    def by_request_id(self, request_id: str) -> TryOn | None:
        """The try-on a recorded generator request was submitted for (its current attempt or an earlier
        one), or None for a request that is not ours."""
        ...

    def note_finished(self, tryon_id: str, request_id: str, now: datetime) -> bool:
        """The generator says ``request_id`` has finished: if it is still the unsettled try-on's current
        request, mark it (``notified_request_id``) and make its next step due now, without taking a
        running step's lease or version; False when there is nothing to mark."""
        ...


class ResultRepository(Protocol):
    def add_if_absent(self, result: TryOnResult) -> None: ...

    def set_favorite(self, result_id: str, favorite: bool, now: datetime) -> bool:
        """Flip the flag if it is not already ``favorite`` and no sweep is deleting the result."""
        ...

    def for_upload(self, upload_id: str) -> list[TryOnResult]: ...

    def for_user(self, user_id: str) -> list[TryOnResult]: ...

    def delete(self, result_id: str) -> bool:
        """Remove the row; False when it was already gone (another finisher got there first)."""
        ...

    def expired(self, created_before: datetime, limit: int) -> list[TryOnResult]:
        """Results that are not favourites, created before the cut-off."""
        ...

    def claim_sweep(self, result_id: str, now: datetime, lease_until: datetime) -> bool:
        """Take a result for deletion: only if it is not a favourite and no other sweep holds it."""
        ...

    def claim_for_deletion(self, result_id: str, lease_until: datetime) -> bool:
        """Take a result of a deleted upload for deletion, even from a finisher that died half-way (a
        second finisher only repeats idempotent deletes): refused only for a favourite."""
        ...

    def for_tryon(self, tryon_id: str) -> list[TryOnResult]: ...

    def get(self, result_id: str) -> TryOnResult | None: ...


class UsageRepository(Protocol):
    """What each user has used of their limits."""

    def hold(self, user_id: str, today: str) -> int:
        """Lock the user's usage until this transaction ends (a user's orders run one at a time) and
        return the images ordered on ``today`` (an ISO date, UTC) so far."""
        ...

    def record_images(self, user_id: str, today: str, images: int) -> None:
        """Set the images ordered on ``today``; only inside the transaction that holds the usage."""
        ...


class UnitOfWork(Protocol):
    """One transaction. Nothing is kept unless ``commit`` is called before the block ends."""

    uploads: UploadRepository
    audit: AuditLog
    tryons: TryOnRepository
    results: ResultRepository
    usage: UsageRepository

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class TryOnQueue(Protocol):
    """Asks a worker to advance a try-on by one step, now or later. Raises DependencyUnavailable."""

    def advance_soon(self, tryon_id: str) -> None: ...

    def advance_in(self, tryon_id: str, seconds: float) -> None: ...

    def advance_once(self, tryon_id: str, key: str) -> None:
        """Advance now, at most once per ``key``: asking again with the same key while that step is
        pending or running adds nothing (a stable job id)."""
        ...

    def expire_upload_at(self, upload_id: str, when: datetime) -> None:
        """Schedule the upload's expiry check; scheduling again for the same upload replaces the earlier
        one, so an upload has at most one pending expiry however often its deadline moves."""
        ...


class SourceUrlSigner(Protocol):
    def presign_get(self, object_key: str, ttl_seconds: int) -> SignedUrl:
        """A short-lived GET URL for a stored source image, for the generator to fetch once."""
        ...


class ResultStorage(Protocol):
    """The private processed bucket."""

    def put_new(self, object_key: str, data: bytes, content_type: str) -> None: ...

    def read(self, object_key: str, max_bytes: int) -> bytes: ...

    def delete(self, object_key: str) -> None: ...

    def mark_favorite(self, object_key: str, favorite: bool) -> None:
        """Tag the object so the bucket's lifecycle backstop keeps (or again expires) it."""
        ...


class Authenticator(Protocol):
    def authenticate(self, credentials: Credentials) -> str:
        """Return the caller's user id, or raise Unauthenticated / AuthUnavailable."""
        ...


class ImageGenerator(Protocol):
    """Every method raises GenerationFailed (with ``retryable``) on a failure it understands."""

    def submit(self, request: GenerationRequest) -> Submission: ...

    def state(self, submission: Submission) -> JobState: ...

    def result(self, submission: Submission) -> list[GeneratedImage]: ...

    def cancel(self, submission: Submission) -> None: ...

    def download(self, image: GeneratedImage, max_bytes: int) -> DownloadedImage:
        """Fetch an output, only from the allowed result hosts, at most ``max_bytes``, type sniffed."""
        ...


class WebhookVerifier(Protocol):
    max_body_bytes: int

    def verify(self, headers: Mapping[str, str], body: bytes) -> FalDelivery:
        """The delivery, once its signature, timestamp and shape are good; else ``WebhookRejected``
        (or ``WebhookKeysUnavailable`` when fal's keys cannot be had). ``headers`` names are matched
        case-insensitively; ``body`` is the raw bytes exactly as received."""
        ...


class ReplayGuard(Protocol):
    """Remembers signatures already accepted, for as long as a replay of them could still pass."""

    def first_sighting(self, key: str, ttl_seconds: int) -> bool:
        """Record ``key``; True the first time, False when it was seen within ``ttl_seconds``.
        Raises DependencyUnavailable."""
        ...

    def forget(self, key: str) -> None:
        """Drop ``key`` again: the delivery was not processed (an outage), so fal's retry must pass."""
        ...


@dataclass(frozen=True)
class AuditRemoval:
    """What audit retention removed in one step, in one transaction with the event recording it: a whole
    month's partition (Postgres: ``month`` is ``YYYY-MM``) or one batch of rows (SQLite: ``month`` None)."""

    month: str | None
    rows: int
    before: datetime
    """The partition's upper bound (exclusive), or the cutoff the rows were older than."""


@dataclass
class AuditRetentionReport:
    partitioned: bool = False
    """False where the table is not partitioned (SQLite): the sweep then leaves it to `tryon audit prune`."""
    created: list[str] = field(default_factory=list)
    """Months (``YYYY-MM``) whose partition this run created."""
    removed: list[AuditRemoval] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Months not created because rows for them already sit in the default partition (logged)."""
    held: int = 0
    """Steps skipped because another run held the retention lock, or a table lock did not come in time."""
    default_has_rows: bool = False

    @property
    def rows_removed(self) -> int:
        return sum(removal.rows for removal in self.removed)

    @property
    def partitions_dropped(self) -> int:
        return sum(1 for removal in self.removed if removal.month is not None)


class AuditRetention(Protocol):
    """Removes whole stretches of the append-only audit table, never a row by a row's own update or delete."""

    def rotate(
        self,
        now: datetime,
        keep_from: datetime,
        months_ahead: int,
        record: Callable[[AuditRemoval], AuditEvent],
    ) -> AuditRetentionReport:
        """Postgres: make sure the monthly partitions for ``now``'s month and ``months_ahead`` more exist, and
        detach and drop every monthly partition whose upper bound is at or before ``keep_from``, appending
        ``record``'s event in the same transaction. Safe to run twice at once (the loser skips). Where the
        table is not partitioned (SQLite), nothing (``partitioned`` False)."""
        ...

    def prune(
        self,
        now: datetime,
        keep_from: datetime,
        months_ahead: int,
        record: Callable[[AuditRemoval], AuditEvent],
        progress: Callable[[int], None],
    ) -> AuditRetentionReport:
        """``rotate`` on Postgres. On SQLite, deletes the events older than ``keep_from`` in batches, each in
        one transaction that lifts the append-only delete trigger, deletes, puts the trigger back and appends
        ``record``'s event; ``progress`` hears the running total after each batch."""
        ...
