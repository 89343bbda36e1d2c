"""A busy year of rows for ``bench.scale``, generated in Postgres with ``generate_series`` (not via the ORM).

Written against the schema ``tryon migrate`` leaves, into the logical tables only (``uploads``, ``tryons``,
``tryon_results``, ``fal_requests``, ``audit_events``), so it keeps working when a migration partitions a
table or adds indexes (and, if ``audit_events`` is partitioned, makes the monthly partitions its history
needs). The rows are what a year of production leaves behind, with **nothing the sweeper can delete**:
uploads mostly purged (deleted an hour after their last try-on, expired unfinished, rejected); the selfies a
favourite result or a running try-on holds kept verified, past their deadline (retention starts again when a
favourite goes; those a favourite holds are marked ``source_kept``, as their expiry left them, and the sweep
does not list them); a few hundred
uploads live (issued in the last two minutes); try-ons mostly settled (89 % succeeded, the rest failed
with fal's codes), a few running; results older than 30 days only as favourites (about one in ten); every
try-on its fal request, a retried one two. The audit trail is its own stream, in time order (ids grow with
``occurred_at``, as appending does), with the mix of events the service writes. Then VACUUM ANALYZE.

A few bench users (``bench_user(k)``) have a normal history in both databases (so the empty database is not
empty of them): ``BENCH_USER_EVENTS`` audit events each, a few uploads and recent succeeded try-ons with
results. ``bench.scale`` polls, exports and erases them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2

SPAN_SECONDS = 395 * 86400
"""About thirteen months."""
USER_PREFIX = "scale-user-"
BENCH_USER_PREFIX = "scale-bench-user-"
BENCH_USER_EVENTS = 200
BENCH_USER_UPLOADS = 20
BENCH_USER_TRYONS = 12
STATEMENT_TIMEOUT_MS = 900_000


@dataclass(frozen=True)
class Volumes:
    audit_events: int
    uploads: int
    tryons: int
    users: int


def user_id(n: int) -> str:
    """The n-th seeded user's id (what a token's ``sub`` must say to act as them)."""
    return f"{USER_PREFIX}{n:05d}"


def bench_user(k: int) -> str:
    """The k-th bench user's id."""
    return f"{BENCH_USER_PREFIX}{k}"


def bench_user_tryon(k: int) -> str:
    """The k-th bench user's newest try-on (succeeded, with a result): what the status polls read."""
    return hashlib.md5(f"bench-tryon-{k}-1".encode(), usedforsecurity=False).hexdigest()


# Uploads: the status by ``g % 100`` ("bucket"); every thousandth is live instead. 0-49 and 82-97 verified,
# then deleted an hour after their last try-on (``_KEPT`` turns those a favourite or a running try-on holds
# back to verified), 50-74 and 98-99 expired unfinished, 75-81 rejected.
_UPLOADS = """
INSERT INTO uploads (upload_id, user_id, object_key, content_type, content_length, checksum_sha256, status,
    created_at, expires_at, updated_at, stored_key, stored_content_type, stored_size, width, height,
    stored_checksum_sha256, rejection_reason, purged_at, version, verification_attempts, source_expires_at)
SELECT id, usr, 'uploads/' || usr || '/' || id, 'image/jpeg', 1500000 + (g * 7919) %% 2000000,
    encode(sha256(convert_to(id, 'UTF8')), 'base64'), status, created, created + interval '300 seconds',
    CASE WHEN live THEN NULL ELSE purged END,
    CASE WHEN kept_source THEN 'sources/' || usr || '/' || id || '.jpg' END,
    CASE WHEN kept_source THEN 'image/jpeg' END,
    CASE WHEN kept_source THEN 250000 + (g * 104729) %% 400000 END,
    CASE WHEN kept_source THEN 1536 END,
    CASE WHEN kept_source THEN 2048 END,
    CASE WHEN kept_source THEN md5(id) || md5(usr || id) END,
    CASE WHEN status = 'rejected'
        THEN (ARRAY['no_face', 'multiple_faces', 'not_an_image', 'too_small'])[1 + g %% 4] END,
    CASE WHEN live THEN NULL ELSE purged END,
    CASE WHEN live THEN 0 WHEN status = 'expired' THEN 1 ELSE 3 END,
    CASE WHEN kept_source OR status = 'rejected' THEN 1 ELSE 0 END,
    CASE WHEN status = 'deleted' THEN created + interval '1 hour' END
FROM (
    SELECT g, id, usr, live, created, kept_source, status,
        least(created + interval '65 minutes', %(now)s - interval '1 minute') AS purged
    FROM (
        SELECT g, id, usr, live, created,
            NOT live AND (bucket < 50 OR bucket BETWEEN 82 AND 97) AS kept_source,
            CASE WHEN live THEN 'issued' WHEN bucket < 50 OR bucket BETWEEN 82 AND 97 THEN 'deleted'
                WHEN bucket BETWEEN 75 AND 81 THEN 'rejected' ELSE 'expired' END AS status
        FROM (
            SELECT g, md5('upload-' || g) AS id, %(prefix)s || lpad((g %% %(users)s)::text, 5, '0') AS usr,
                g %% 100 AS bucket, g %% 1000 = 999 AS live,
                CASE WHEN g %% 1000 = 999 THEN %(now)s - make_interval(secs => (g %% 120))
                    ELSE %(now)s - make_interval(secs => 7200 + random() * %(span)s) END AS created
            FROM generate_series(1::bigint, %(uploads)s) AS g
        ) numbered
    ) classified
) dated
"""

# Try-on g orders on an upload whose selfie was verified (a bucket that kept a source): the j-th.
_TRYONS = """
INSERT INTO tryons (tryon_id, user_id, upload_id, style_prompt, num_images, output_format, status, attempts,
    created_at, completed_at, error_code, error_message, error_retryable, fal_request_id, status_url,
    response_url, cancel_url, submitted_at, next_action_at, lease_until, version)
SELECT id, u.user_id, u.upload_id, 'a sleek shoulder-length bob, ' || (ARRAY['copper', 'platinum', 'chestnut',
        'jet black', 'honey blonde'])[1 + g %% 5] || ', soft waves', 1, 'jpeg', t.status,
    CASE WHEN t.status = 'failed' AND g %% 3 = 0 THEN 2 ELSE 1 END, created,
    CASE WHEN settled THEN created + make_interval(secs => 6 + g %% 40) END,
    CASE WHEN t.status = 'failed' THEN code END,
    CASE WHEN t.status = 'failed' THEN 'fal answered ' || code END,
    CASE WHEN t.status = 'failed' THEN code IN ('upstream_timeout', 'upstream_unavailable') END,
    'req-' || md5('fal-' || g),
    'https://queue.fal.run/fal-ai/hair/requests/req-' || md5('fal-' || g) || '/status',
    'https://queue.fal.run/fal-ai/hair/requests/req-' || md5('fal-' || g),
    'https://queue.fal.run/fal-ai/hair/requests/req-' || md5('fal-' || g) || '/cancel',
    created + interval '200 milliseconds',
    CASE WHEN settled THEN NULL ELSE %(now)s + interval '2 seconds' END,
    NULL, CASE WHEN settled THEN 4 ELSE 2 END
FROM (
    SELECT g, id, upload_number, status, status IN ('succeeded', 'failed') AS settled, code,
        CASE WHEN status IN ('succeeded', 'failed') THEN NULL
            ELSE %(now)s - make_interval(secs => 5 + g %% 600) END AS fixed_created
    FROM (
        SELECT g, md5('tryon-' || g) AS id,
            greatest(100, (g %% greatest(1, %(uploads)s / 100)) * 100
                + CASE WHEN (g * 37) %% 66 < 50 THEN (g * 37) %% 66 ELSE (g * 37) %% 66 + 32 END)
                AS upload_number,
            CASE WHEN g %% 10000 = 0 THEN 'running' WHEN g %% 1000 < 890 THEN 'succeeded' ELSE 'failed' END
                AS status,
            (ARRAY['content_policy_violation', 'upstream_timeout', 'upstream_unavailable',
                'generation_failed', 'source_expired'])[1 + g %% 5] AS code
        FROM generate_series(1::bigint, %(tryons)s) AS g
    ) numbered
) t
JOIN uploads u ON u.upload_id = md5('upload-' || t.upload_number)
CROSS JOIN LATERAL (
    SELECT coalesce(t.fixed_created,
        least(u.created_at + make_interval(secs => 60 + t.g %% 3000), %(now)s - interval '10 minutes'))
        AS created
) c
"""

# A succeeded try-on's one result, if retention has not taken it: younger than 30 days, or a favourite.
_RESULTS = """
INSERT INTO tryon_results (result_id, tryon_id, user_id, position, object_key, content_type, size, width,
    height, created_at, favorite)
SELECT tryon_id || '-0', tryon_id, user_id, 0, 'processed/' || user_id || '/' || tryon_id || '/0.jpg',
    'image/jpeg', 300000 + abs(hashtext(tryon_id)) %% 200000, 1024, 1536, completed_at, favorite
FROM (
    SELECT tryon_id, user_id, completed_at, abs(hashtext(tryon_id)) %% 10 = 0 AS favorite
    FROM tryons WHERE status = 'succeeded' AND user_id LIKE %(like)s
) succeeded
WHERE favorite OR completed_at > %(now)s - interval '29 days'
"""

# A selfie whose try-on is still running, or one of whose results is a favourite, is kept: verified, its PUT
# object purged 20 minutes after upload, its deadline an hour after its last try-on (long past, for the
# favourites: retention starts again only when a favourite goes). One a favourite holds is marked
# ``source_kept``, as the expiry that ran at its deadline left it (``UploadRepository.keep_if_held``), and
# confirmed since as a running deployment's sweeps leave it (``source_kept_at``, re-stamped every
# ``SweepPolicy.kept_recheck_seconds``, a week): the stamps spread over the last week and one sweep
# interval, so a pass finds its steady-state share due for a re-check (17,000 kept / 1,009 passes a week:
# ~17), as it will once the first week after migration 9 (whose backfilled marks are all due at once) is over.
_KEPT = """
UPDATE uploads u SET status = 'verified', source_expires_at = k.deadline, source_kept = k.favourite,
    source_kept_at = CASE WHEN k.favourite THEN greatest(
        k.deadline, %(now)s - (abs(hashtext(u.upload_id)) %% (7 * 86400 + 600)) * interval '1 second') END,
    updated_at = least(u.created_at + interval '20 minutes', %(now)s - interval '1 minute'),
    purged_at = least(u.created_at + interval '20 minutes', %(now)s - interval '1 minute')
FROM (
    SELECT t.upload_id, max(coalesce(t.completed_at, t.created_at)) + interval '1 hour' AS deadline,
        coalesce(bool_or(r.favorite), FALSE) AS favourite
    FROM tryons t LEFT JOIN tryon_results r ON r.tryon_id = t.tryon_id AND r.favorite
    WHERE t.user_id LIKE %(like)s AND (r.favorite OR t.status NOT IN ('succeeded', 'failed'))
    GROUP BY t.upload_id
) k
WHERE u.upload_id = k.upload_id
"""

_FAL_REQUESTS = """
INSERT INTO fal_requests (request_id, tryon_id)
SELECT fal_request_id, tryon_id FROM tryons WHERE fal_request_id IS NOT NULL AND user_id LIKE %(like)s
UNION ALL
SELECT 'req-' || md5('fal-retry-' || tryon_id), tryon_id FROM tryons
WHERE attempts > 1 AND user_id LIKE %(like)s
"""

# The audit trail: event k of every 20, in time order; actor the g-th user, subject an id of theirs.
_EVENTS = """
INSERT INTO audit_events (occurred_at, event, actor_id, subject_id, outcome, reason, details)
SELECT %(now)s - make_interval(secs => %(span)s * (1 - g::float8 / %(events)s) + 60), (kinds[k]).event,
    actor, md5('subject-' || g), (kinds[k]).outcome, (kinds[k]).reason, (kinds[k]).details
FROM (
    SELECT g, 1 + g %% 20 AS k,
        CASE WHEN %(single)s THEN %(prefix)s
            ELSE %(prefix)s || lpad((g %% greatest(1, %(users)s))::text, 5, '0') END AS actor
    FROM generate_series(1::bigint, %(events)s) AS g
) numbered
CROSS JOIN (
    SELECT array_agg(ROW(event, outcome, reason, details)::bench_audit_kind ORDER BY n) AS kinds
    FROM (VALUES
        (1, 'upload.issued', 'success', NULL,
            '{"checksum": true, "content_length": 2481733, "content_type": "image/jpeg"}'),
        (2, 'upload.issued', 'success', NULL,
            '{"checksum": true, "content_length": 1934410, "content_type": "image/jpeg"}'),
        (3, 'upload.issued', 'success', NULL,
            '{"checksum": false, "content_length": 3120044, "content_type": "image/png"}'),
        (4, 'upload.validated', 'success', NULL,
            '{"content_type": "image/jpeg", "height": 2048, "size": 412333, "width": 1536}'),
        (5, 'upload.validated', 'success', NULL,
            '{"content_type": "image/jpeg", "height": 2048, "size": 388120, "width": 1536}'),
        (6, 'upload.rejected', 'failure', 'no_face', '{"faces": 0}'),
        (7, 'upload.expired', 'success', 'never_completed', '{}'),
        (8, 'upload.expired', 'success', 'never_completed', '{}'),
        (9, 'upload.deleted', 'success', 'source_expired', '{}'),
        (10, 'upload.deleted', 'success', 'source_expired', '{}'),
        (11, 'tryon.requested', 'success', NULL,
            '{"num_images": 1, "output_format": "jpeg", "upload_id": "x"}'),
        (12, 'tryon.requested', 'success', NULL,
            '{"num_images": 1, "output_format": "jpeg", "upload_id": "y"}'),
        (13, 'falai.invoked', 'submitted', NULL, '{"attempt": 1, "request_id": "req-0b8f"}'),
        (14, 'falai.invoked', 'submitted', NULL, '{"attempt": 1, "request_id": "req-77ac"}'),
        (15, 'falai.succeeded', 'success', NULL, '{"attempt": 1, "images": 1, "seconds": 7.4}'),
        (16, 'falai.succeeded', 'success', NULL, '{"attempt": 1, "images": 1, "seconds": 11.9}'),
        (17, 'result.stored', 'success', NULL, '{"results": 1}'),
        (18, 'falai.failed', 'failed', 'content_policy_violation',
            '{"attempt": 1, "code": "content_policy_violation", "retryable": false}'),
        (19, 'result.deleted', 'success', 'retention', '{}'),
        (20, 'result.favorited', 'success', NULL, '{}')
    ) AS kinds(n, event, outcome, reason, details)
) mix
"""

_KIND_TYPE = "CREATE TYPE bench_audit_kind AS (event TEXT, outcome TEXT, reason TEXT, details TEXT)"

# The bench user: uploads verified (PUT object purged, source ahead) or deleted, recent succeeded try-ons.
_BENCH_USER = """
INSERT INTO uploads (upload_id, user_id, object_key, content_type, content_length, status, created_at,
    expires_at, updated_at, stored_key, stored_content_type, stored_size, width, height, purged_at, version,
    verification_attempts, source_expires_at)
SELECT id, %(user)s, 'uploads/' || %(user)s || '/' || id, 'image/jpeg', 2481733,
    CASE WHEN g %% 4 = 0 THEN 'deleted' ELSE 'verified' END, created, created + interval '300 seconds',
    created + interval '20 minutes', 'sources/' || %(user)s || '/' || id || '.jpg', 'image/jpeg', 412333,
    1536, 2048, created + interval '20 minutes', 3, 1,
    CASE WHEN g %% 4 = 0 THEN created + interval '1 hour' ELSE %(now)s + interval '1 day' END
FROM (SELECT g, md5('bench-upload-' || %(k)s || '-' || g) AS id,
          %(now)s - make_interval(days => g) - interval '2 hours' AS created
      FROM generate_series(1, %(uploads)s) AS g) numbered;
INSERT INTO tryons (tryon_id, user_id, upload_id, style_prompt, num_images, output_format, status, attempts,
    created_at, completed_at, fal_request_id, submitted_at, version)
SELECT md5('bench-tryon-' || %(k)s || '-' || g), %(user)s,
    md5('bench-upload-' || %(k)s || '-' || (1 + g %% %(uploads)s)), 'a pixie cut, platinum', 1, 'jpeg',
    'succeeded', 1, created, created + interval '9 seconds', 'req-' || md5('bench-fal-' || %(k)s || '-' || g),
    created + interval '200 milliseconds', 4
FROM (SELECT g, %(now)s - make_interval(hours => 2 * g) AS created
      FROM generate_series(1, %(tryons)s) AS g) numbered;
INSERT INTO tryon_results (result_id, tryon_id, user_id, position, object_key, content_type, size, width,
    height, created_at, favorite)
SELECT tryon_id || '-0', tryon_id, user_id, 0, 'processed/' || user_id || '/' || tryon_id || '/0.jpg',
    'image/jpeg', 351200, 1024, 1536, completed_at, row_number() OVER (ORDER BY tryon_id) <= 3
FROM tryons WHERE user_id = %(user)s;
INSERT INTO fal_requests (request_id, tryon_id)
SELECT fal_request_id, tryon_id FROM tryons WHERE user_id = %(user)s
"""


Say = Callable[[str], None]


def _month_partitions(cursor: Any, now: datetime) -> int:
    """If ``audit_events`` is partitioned (migration 10 on Postgres), the monthly partitions a year of rows
    would have had made for them (``audit_events_YYYY_MM``, UTC months, as that migration names them), so the
    history lands in its months and not in the default partition; how many were made."""
    cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('audit_events')")
    found = cursor.fetchone()
    if found is None or found[0] != "p":
        return 0
    first = (now - timedelta(seconds=SPAN_SECONDS + 86400)).astimezone(UTC)
    month = datetime(first.year, first.month, 1, tzinfo=UTC)
    made = 0
    while month <= now:
        following = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
        name = f"audit_events_{month:%Y_%m}"
        cursor.execute("SELECT to_regclass(%s)", (name,))
        if cursor.fetchone()[0] is None:
            bounds = "FOR VALUES FROM (%s) TO (%s)"
            cursor.execute(f"CREATE TABLE {name} PARTITION OF audit_events {bounds}", (month, following))
            made += 1
        month = following
    return made


def _timed(cursor: Any, say: Say, what: str, sql: str, params: dict[str, Any]) -> None:
    started = time.monotonic()
    cursor.execute(sql, params)
    say(f"  {what}: {cursor.rowcount:,} rows in {time.monotonic() - started:.1f} s")


def seed(database_url: str, volumes: Volumes | None, bench_users: int, now: datetime, say: Say) -> float:
    """``bench_users`` bench users' history, and (unless ``volumes`` is None) a busy year of everyone
    else's; then VACUUM ANALYZE. Seconds taken."""
    started = time.monotonic()
    connection = psycopg2.connect(database_url, connect_timeout=10)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            if volumes is not None:
                year = {
                    "now": now,
                    "span": SPAN_SECONDS,
                    "prefix": USER_PREFIX,
                    "like": USER_PREFIX + "%",
                    "users": volumes.users,
                    "uploads": volumes.uploads,
                    "tryons": volumes.tryons,
                    "events": volumes.audit_events,
                    "single": False,
                }
                _timed(cursor, say, "uploads", _UPLOADS, year)
                _timed(cursor, say, "tryons", _TRYONS, year)
                _timed(cursor, say, "tryon_results", _RESULTS, year)
                _timed(cursor, say, "uploads kept verified (a favourite or a running try-on)", _KEPT, year)
                _timed(cursor, say, "fal_requests", _FAL_REQUESTS, year)
            cursor.execute(_KIND_TYPE)
            if made := _month_partitions(cursor, now):
                say(f"  audit_events is partitioned: made {made} monthly partitions for the history")
            if volumes is not None:
                _timed(cursor, say, "audit_events", _EVENTS, year)
            for k in range(bench_users):
                user = bench_user(k)
                mine = {"now": now, "span": SPAN_SECONDS, "prefix": user, "users": 1, "single": True}
                cursor.execute(_EVENTS, {**mine, "events": BENCH_USER_EVENTS})
                uploads, tryons = BENCH_USER_UPLOADS, BENCH_USER_TRYONS
                cursor.execute(
                    _BENCH_USER, {"now": now, "user": user, "k": k, "uploads": uploads, "tryons": tryons}
                )
            say(
                f"  {bench_users} bench users, each {BENCH_USER_EVENTS} audit events, {BENCH_USER_UPLOADS}"
                f" uploads, {BENCH_USER_TRYONS} try-ons with results"
            )
            cursor.execute("DROP TYPE bench_audit_kind")
        connection.autocommit = True
        with connection.cursor() as cursor:
            analyzed = time.monotonic()
            cursor.execute("VACUUM (ANALYZE)")
            say(f"  VACUUM ANALYZE: {time.monotonic() - analyzed:.1f} s")
    finally:
        connection.close()
    return time.monotonic() - started
