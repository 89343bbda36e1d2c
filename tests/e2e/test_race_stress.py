"""Issue 11, "Prove it": every race of issue 11 run RACE_ROUNDS times against real processes on Postgres,
then the invariants checked on what Postgres and both buckets hold afterwards.

One stack for the whole module: gunicorn (2 workers x 4 threads), a `tryon worker` process (and a
`tryon verifier` process where the CLI has one), ministack S3, a Redis of its own, the fal simulator and a
migrated Postgres schema of its own. Each round is a fresh user. Rounds run ROUNDS_AT_ONCE at a time; the
racing calls of a round leave from their own threads through a barrier, the second one offset by a random
fraction of how long the first one takes, so every interleaving (before, inside, after) comes up.

Any answer a race legitimately allows is accepted; the outcome distribution is printed (``pytest -s``) and
attached to every failure. What must hold whatever the interleaving (checked from the rows and the
buckets, never inferred from timing):

- no 5xx answer, and no answer outside what the contract allows for that call;
- no object without a row: every ``sources/`` object belongs to a verified, unpurged upload whose stored key
  it is, every ``processed/`` object to a result row, and an ``uploads/`` original only to an upload still
  issued or verifying;
- no row pointing at a missing object: a verified upload's stored selfie and every result's image exist;
- a deletion is final: an upload whose DELETE answered 204 stays deleted (and purged), no new try-on is
  accepted on it, no try-on of it succeeds after it, and nothing of a user whose erasure answered 202 is left;
- no result of a deleted upload unless it is a favourite (or was unfavourited after the deletion kept it);
- the same Idempotency-Key makes one try-on, answered to both callers;
- every try-on settles (succeeded or failed) within SETTLE_SECONDS.

Run: ``.venv/bin/pytest tests/e2e/test_race_stress.py -s`` (``STRESS_ROUNDS=20`` for a quick pass).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psycopg2
import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from adapters.s3_storage import make_s3_client
from devtools.fal_simulator import DEFAULT_KEY, FalSimulator
from devtools.local_stack import EMULATOR_CREDENTIALS, answers_ok, free_port, start_redis
from entrypoints.http.app import WORKER_WARM
from tests import hostile, leaks
from tests.builders.databases import migrated_postgres_schema
from tests.builders.stack import provisioned_buckets

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

RACE_ROUNDS = int(os.environ.get("STRESS_ROUNDS", "100"))
ROUNDS_AT_ONCE = int(os.environ.get("STRESS_PARALLEL", "10"))
WEB_WORKERS, WEB_THREADS = 2, 4
FAL_WORK_SECONDS = 3.0
"""How long the simulator works on a job in race (d): the upload is deleted while fal is at it."""
SETTLE_SECONDS = 90.0
UNLIMITED = "1000000/minute"
SELFIE = (hostile.IMAGES / "one_face.jpg").read_bytes()
PROMPT = "a sleek copper bob"
SETTLED = ("succeeded", "failed")
TRYON_ERROR_CODES = frozenset(
    {
        "content_policy_violation",
        "invalid_request",
        "upstream_unavailable",
        "upstream_timeout",
        "source_expired",
        "generation_failed",
    }
)
COMPLETE_ANSWERS = frozenset({200, 202, 404, 409, 410})
REFUSED_TRYON = frozenset({404, 409, 410})
TOGGLE_ANSWERS = frozenset({204, 404})

Violation = tuple[str, str]
"""(invariant broken, what and where)."""


class SetupFailed(Exception):
    """A round could not reach the state its race starts from (not a finding about the race)."""


# -- the stack ------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any
    sent: float
    answered: float
    sent_at: datetime

    @property
    def code(self) -> str:
        return str(self.body.get("code", "")) if isinstance(self.body, dict) else ""

    def short(self) -> str:
        return f"{self.status}{' ' + self.code if self.code and self.status >= 300 else ''}"


@dataclass
class Round:
    race: str
    number: int
    user_id: str
    auth: dict[str, str] = field(repr=False)
    outcome: str = "not played"
    upload_id: str | None = None
    deleted_upload: bool = False
    """DELETE /v1/uploads/{upload_id} answered 204."""
    erased: bool = False
    """DELETE /v1/me/data answered 202."""
    one_tryon: bool = False
    """Race (c): the user's only try-ons came from one Idempotency-Key."""
    at_fal: str | None = None
    """Race (d): the try-on that was at fal when the upload was deleted."""
    delete_sent_at: datetime | None = None
    toggled: dict[str, tuple[bool, Answer]] = field(default_factory=dict)
    """Race (e): result id -> (what its last toggle asked: favourite or not, its answer)."""
    violations: list[Violation] = field(default_factory=list)
    setup_error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.race} round {self.number} ({self.user_id})"

    def flag(self, invariant: str, detail: str) -> None:
        self.violations.append((invariant, f"{self.name}: {detail}"))

    def expect(self, label: str, answer: Answer, allowed: frozenset[int]) -> None:
        if answer.status < 500 and answer.status not in allowed:
            self.flag("answer the contract does not allow", f"{label} answered {answer.short()}")


class Pace:
    """The recent durations of a kind of call: the racing call is offset by a random fraction of it."""

    def __init__(self, initial: float) -> None:
        self._seen: deque[float] = deque([initial], maxlen=30)
        self._lock = threading.Lock()

    def add(self, answer: Answer) -> None:
        with self._lock:
            self._seen.append(answer.answered - answer.sent)

    def offset(self) -> float:
        """Negative: the other call goes first by that much."""
        with self._lock:
            typical = statistics.median(self._seen)
        return random.uniform(-0.25 * typical, 1.25 * typical)


class Http:
    """Each thread its own session; every answer of 500 or more is a violation of the round."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._local = threading.local()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            # gthread workers keep connections alive and close idle ones after 2 s: a read sent on one the
            # server is closing at that instant never reaches the app. Retry reads (GET) then, as clients do;
            # mutations are never retried (a lost one still counts): ``call`` sends each on a new connection.
            retries = Retry(
                total=2, connect=2, read=2, status=0, allowed_methods={"GET"}, raise_on_status=False
            )
            session.mount("http://", HTTPAdapter(max_retries=retries))
        return session

    def call(self, r: Round, label: str, method: str, path: str, **kwargs: Any) -> Answer:
        headers = {**r.auth, **kwargs.pop("headers", {})}
        sent, sent_at = time.monotonic(), datetime.now(UTC)
        try:
            if method == "GET":
                response = self._session().request(
                    method, self.base_url + path, headers=headers, timeout=60, **kwargs
                )
            else:  # a fresh connection: a mutation can never meet one the server is closing as it is sent
                headers["Connection"] = "close"
                response = requests.request(
                    method, self.base_url + path, headers=headers, timeout=60, **kwargs
                )
        except requests.RequestException as error:
            r.flag("5xx or no answer", f"{label}: no answer ({type(error).__name__})")
            return Answer(0, None, sent, time.monotonic(), sent_at)
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = response.text[:200]
        answer = Answer(response.status_code, body, sent, time.monotonic(), sent_at)
        with self._lock:
            self.statuses[(label, answer.status)] += 1
        if answer.status >= 500:
            r.flag("5xx or no answer", f"{label} answered {answer.short()}")
        return answer


class Database:
    """The harness's own view of the rows (one autocommit connection, one query at a time)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        options = parse_qs(parts.query).get("options", [""])[0]
        self._connection = psycopg2.connect(
            urlunsplit(parts._replace(query="")), options=options, connect_timeout=5
        )
        self._connection.autocommit = True
        self._lock = threading.Lock()

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self._lock, self._connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def close(self) -> None:
        self._connection.close()


class Processes:
    """The Procfile's processes, each in a process group of its own, logging under the test's basetemp."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", *command],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever of its group is left
            process.wait(timeout=10)


def has_verifier_process(env: dict[str, str]) -> bool:
    """Whether `tryon verifier` exists (the contract's verifier process); then `complete` may answer 202."""
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "verifier", "--help"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode == 0


def wait_for(ready: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"{what} exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{what} not ready within {timeout:.0f} s"
        time.sleep(0.2)


@dataclass
class Stack:
    http: Http
    db: Database
    simulator: FalSimulator
    issuer: Any
    s3: Any
    uploads_bucket: str
    processed_bucket: str
    complete_pace: Pace = field(default_factory=lambda: Pace(1.0))
    toggle_pace: Pace = field(default_factory=lambda: Pace(0.3))

    def new_round(self, race: str, number: int) -> Round:
        user_id = f"race{race}{number}x{secrets.token_hex(4)}"
        return Round(race, number, user_id, {"Authorization": f"Bearer {self.issuer.mint(user_id)}"})

    def keys(self, bucket: str) -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}


@pytest.fixture(scope="module")
def stack(ministack_url, dev_issuer, tmp_path_factory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("race-stress")
    uploads_bucket, processed_bucket = provisioned_buckets(ministack_url)
    with contextlib.ExitStack() as stop:
        database_url = stop.enter_context(migrated_postgres_schema("tryon_race"))
        redis = stop.enter_context(start_redis())  # of its own: the suite's shared one gets flushed
        stop.callback(leaks.keep_redis, redis.url, "before its server stops", in_test=False)
        simulator = stop.enter_context(FalSimulator())
        env = {
            **os.environ,
            **EMULATOR_CREDENTIALS,
            "UPLOADS_BUCKET": uploads_bucket,
            "PROCESSED_BUCKET": processed_bucket,
            "BETTER_AUTH_URL": dev_issuer.base_url,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis.url,
            "S3_ENDPOINT_URL": ministack_url,
            "FAL_API_KEY": DEFAULT_KEY,
            "FAL_QUEUE_URL": simulator.base_url,
            "FAL_RESULT_HOSTS": simulator.base_url,
            "RATE_LIMIT_UPLOADS": UNLIMITED,
            "RATE_LIMIT_TRYONS": UNLIMITED,
            "RATE_LIMIT_MUTATIONS": UNLIMITED,
            "MAX_ACTIVE_TRYONS": "100000",
            "DAILY_IMAGE_QUOTA": "1000000",
            "WEB_CONCURRENCY": str(WEB_WORKERS),
            "WEB_THREADS": str(WEB_THREADS),
        }
        processes = Processes(env, log_dir)
        stop.callback(processes.stop_all)
        port = free_port()
        web = processes.start(
            "web",
            *("gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}"),
            *("--workers", str(WEB_WORKERS), "--threads", str(WEB_THREADS)),
        )
        processes.start("worker", "entrypoints.cli", "worker")
        verifier = has_verifier_process(env)
        if verifier:
            processes.start("verifier", "entrypoints.cli", "verifier")
        base_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers_ok(f"{base_url}/readyz"), 120, "gunicorn", web)
        if not verifier:  # the web workers load the face model before they take traffic
            wait_for(lambda: processes.log("web").count(WORKER_WARM) >= WEB_WORKERS, 120, "warm-up", web)
        database = Database(database_url)
        stop.callback(database.close)
        yield Stack(
            http=Http(base_url),
            db=database,
            simulator=simulator,
            issuer=dev_issuer,
            s3=make_s3_client(region="us-east-1", endpoint_url=ministack_url),
            uploads_bucket=uploads_bucket,
            processed_bucket=processed_bucket,
        )


# -- steps every race uses ------------------------------------------------------------------------------


def together(*calls: Callable[[], Answer]) -> list[Answer]:
    """Each call from its own thread, all released at once by a barrier."""
    barrier = threading.Barrier(len(calls))
    answers: list[Answer | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Answer]) -> None:
        try:
            barrier.wait(timeout=30)
            answers[index] = call()
        except BaseException as error:  # handed to the round below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    if errors:
        raise errors[0]
    assert all(answer is not None for answer in answers), "a racing call never returned"
    return [answer for answer in answers if answer is not None]


def offset_pair(
    first: Callable[[], Answer], second: Callable[[], Answer], offset: float
) -> tuple[Callable[[], Answer], Callable[[], Answer]]:
    """``second`` starts ``offset`` s after ``first`` (before it, when negative)."""

    def later(call: Callable[[], Answer], seconds: float) -> Callable[[], Answer]:
        def run() -> Answer:
            time.sleep(max(seconds, 0.0))
            return call()

        return run

    return later(first, -offset), later(second, offset)


def interleaving(first: str, a: Answer, second: str, b: Answer) -> str:
    if a.answered < b.sent:
        return f"{first} done before {second} began"
    if b.answered < a.sent:
        return f"{second} done before {first} began"
    return f"overlapping, {first if a.answered < b.answered else second} answered first"


def issue_and_put(s: Stack, r: Round) -> dict[str, Any]:
    body = {"content_type": "image/jpeg", "content_length": len(SELFIE)}
    issued = s.http.call(r, "POST /v1/uploads", "POST", "/v1/uploads", json=body)
    if issued.status != 201:
        raise SetupFailed(f"POST /v1/uploads answered {issued.short()}")
    ticket: dict[str, Any] = issued.body
    stored = requests.put(ticket["url"], data=SELFIE, headers=ticket["headers"], timeout=30)
    if stored.status_code != 200:
        raise SetupFailed(f"the PUT to S3 answered {stored.status_code}")
    r.upload_id = str(ticket["upload_id"])
    return ticket


def complete(s: Stack, r: Round, ticket: dict[str, Any]) -> Answer:
    answer = s.http.call(
        r,
        "POST /v1/uploads/{id}/complete",
        "POST",
        f"/v1/uploads/{ticket['upload_id']}/complete",
        json={"object_key": ticket["object_key"]},
    )
    if answer.status == 200:
        s.complete_pace.add(answer)
    return answer


def verified_upload(s: Stack, r: Round) -> str:
    ticket = issue_and_put(s, r)
    done = complete(s, r, ticket)
    deadline = time.monotonic() + 60
    while done.status == 202 or (done.status == 200 and done.body.get("status") == "verifying"):
        if time.monotonic() > deadline:
            raise SetupFailed("the upload was still verifying after 60 s")
        done = s.http.call(r, "GET /v1/uploads/{id}", "GET", f"/v1/uploads/{ticket['upload_id']}?wait=5")
    if done.status != 200 or done.body.get("status") != "verified":
        raise SetupFailed(f"completing the upload answered {done.short()} {done.body}")
    return str(ticket["upload_id"])


def order(s: Stack, r: Round, upload_id: str, *, num_images: int = 1, key: str | None = None) -> Answer:
    headers = {"Idempotency-Key": key} if key else {}
    body = {"upload_id": upload_id, "style_prompt": PROMPT, "num_images": num_images}
    return s.http.call(r, "POST /v1/tryons", "POST", "/v1/tryons", json=body, headers=headers)


def delete_upload(s: Stack, r: Round, upload_id: str) -> Answer:
    return s.http.call(r, "DELETE /v1/uploads/{id}", "DELETE", f"/v1/uploads/{upload_id}")


def erase_data(s: Stack, r: Round) -> Answer:
    return s.http.call(r, "DELETE /v1/me/data", "DELETE", "/v1/me/data")


def probe_tryon(s: Stack, r: Round, upload_id: str) -> Answer:
    """A deleted upload must never be usable again: a new try-on on it is refused."""
    probe = order(s, r, upload_id)
    if probe.status == 202:
        r.flag("deleted upload usable again", f"a new try-on on it was accepted ({probe.body['tryon_id']})")
    else:
        r.expect("a new try-on on the deleted upload", probe, REFUSED_TRYON)
    return probe


def wait_for_row(s: Stack, sql: str, *params: Any, timeout: float = 60) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + timeout
    while not (rows := s.db.rows(sql, *params)):
        if time.monotonic() > deadline:
            raise SetupFailed(f"no row for {sql!r} {params} within {timeout:.0f} s")
        time.sleep(0.1)
    return rows


# -- the races ------------------------------------------------------------------------------------------


def race_delete_upload_vs_complete(s: Stack, r: Round) -> None:
    r.deleted_upload = complete_racing(
        s, r, "delete", "DELETE /v1/uploads/{id}", lambda upload_id: delete_upload(s, r, upload_id), 204
    )


def race_erase_vs_complete(s: Stack, r: Round) -> None:
    r.erased = complete_racing(s, r, "erase", "DELETE /v1/me/data", lambda _: erase_data(s, r), 202)


def complete_racing(
    s: Stack, r: Round, name: str, label: str, other: Callable[[str], Answer], success: int
) -> bool:
    """``complete`` an upload while ``other`` (given the upload's id) deletes it; True if ``other`` answered
    ``success``, and then a new try-on on the upload must be refused."""
    ticket = issue_and_put(s, r)
    upload_id = str(ticket["upload_id"])
    completing, deleting = offset_pair(
        lambda: complete(s, r, ticket), lambda: other(upload_id), s.complete_pace.offset()
    )
    completed, deleted = together(completing, deleting)
    r.expect("complete", completed, COMPLETE_ANSWERS)
    r.expect(label, deleted, frozenset({success}))
    probe = probe_tryon(s, r, upload_id) if deleted.status == success else None
    r.outcome = (
        f"complete {completed.short()}, {name} {deleted.short()}, "
        f"{interleaving('complete', completed, name, deleted)}"
        + (f"; new try-on {probe.short()}" if probe else "")
    )
    return deleted.status == success


def race_same_idempotency_key(s: Stack, r: Round) -> None:
    upload_id = verified_upload(s, r)
    key = secrets.token_hex(8)
    first, second = together(lambda: order(s, r, upload_id, key=key), lambda: order(s, r, upload_id, key=key))
    r.one_tryon = True
    for answer in (first, second):
        r.expect("POST /v1/tryons with the key", answer, frozenset({202}))
    ids = {a.body["tryon_id"] for a in (first, second) if a.status == 202}
    if len(ids) > 1:
        r.flag("one Idempotency-Key, one try-on", f"answered two try-ons {sorted(ids)}")
    same = "same try-on" if len(ids) == 1 and first.status == second.status == 202 else "not both 202"
    r.outcome = f"{first.short()} / {second.short()}, {same}"


def race_delete_upload_while_at_fal(s: Stack, r: Round) -> None:
    upload_id = verified_upload(s, r)
    ordered = order(s, r, upload_id)
    if ordered.status != 202:
        raise SetupFailed(f"POST /v1/tryons answered {ordered.short()}")
    tryon_id = str(ordered.body["tryon_id"])
    r.at_fal = tryon_id
    wait_for_row(  # submitted: fal has the job and works on it for FAL_WORK_SECONDS
        s, "SELECT 1 FROM tryons WHERE tryon_id = %s AND status <> 'queued'", tryon_id
    )
    time.sleep(random.uniform(0, FAL_WORK_SECONDS / 3))
    deleted = delete_upload(s, r, upload_id)
    r.delete_sent_at = deleted.sent_at
    r.expect("DELETE /v1/uploads/{id}", deleted, frozenset({204}))
    r.deleted_upload = deleted.status == 204
    r.outcome = f"delete {deleted.short()}"


def race_favourites_vs_delete_upload(s: Stack, r: Round) -> None:
    upload_id = verified_upload(s, r)
    ordered = order(s, r, upload_id, num_images=2)
    if ordered.status != 202:
        raise SetupFailed(f"POST /v1/tryons answered {ordered.short()}")
    tryon_id = str(ordered.body["tryon_id"])
    wait_for_row(s, "SELECT 1 FROM tryons WHERE tryon_id = %s AND status IN %s", tryon_id, SETTLED)
    looked = s.http.call(r, "GET /v1/tryons/{id}", "GET", f"/v1/tryons/{tryon_id}")
    if looked.status != 200 or looked.body["status"] != "succeeded" or len(looked.body["results"]) != 2:
        raise SetupFailed(f"the try-on did not succeed with two results: {looked.body}")
    kept, dropped = (str(result["result_id"]) for result in looked.body["results"])
    if (held := toggle(s, r, dropped, True)).status != 204:
        raise SetupFailed(f"favouriting answered {held.short()}")

    def toggles(result_id: str, wishes: tuple[bool, ...]) -> Callable[[], Answer]:
        def run() -> Answer:
            answers = [toggle(s, r, result_id, wish) for wish in wishes]
            r.toggled[result_id] = (wishes[-1], answers[-1])
            return answers[-1]

        return run

    favouriting, deleting = offset_pair(
        toggles(kept, (True, False, True)), lambda: delete_upload(s, r, upload_id), s.toggle_pace.offset()
    )
    last_kept, deleted, last_dropped = together(favouriting, deleting, toggles(dropped, (False, True, False)))
    r.expect("DELETE /v1/uploads/{id}", deleted, frozenset({204}))
    r.deleted_upload = deleted.status == 204
    r.outcome = (
        f"favourite on/off/on {last_kept.short()}, off/on/off {last_dropped.short()}, "
        f"delete {deleted.short()}"
    )


def toggle(s: Stack, r: Round, result_id: str, favourite: bool) -> Answer:
    method = "PUT" if favourite else "DELETE"
    answer = s.http.call(
        r, f"{method} /v1/results/{{id}}/favorite", method, f"/v1/results/{result_id}/favorite"
    )
    r.expect(f"{method} favourite", answer, TOGGLE_ANSWERS)
    s.toggle_pace.add(answer)
    return answer


# -- what must hold afterwards --------------------------------------------------------------------------


@dataclass
class Snapshot:
    uploads: dict[str, dict[str, Any]]
    tryons: dict[str, dict[str, Any]]
    results: dict[str, dict[str, Any]]
    source_keys: set[str]
    processed_keys: set[str]


def settle(s: Stack, users: list[str]) -> list[Violation]:
    """Wait (bounded) until no try-on of these users is unsettled and no upload is mid-verification."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        busy = s.db.rows(
            "SELECT 'try-on', tryon_id, status FROM tryons WHERE user_id = ANY(%s) AND status NOT IN %s "
            "UNION ALL SELECT 'upload', upload_id, status FROM uploads "
            "WHERE user_id = ANY(%s) AND status = 'verifying'",
            users,
            SETTLED,
            users,
        )
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return [
        ("every try-on settled", f"{kind} {ident} still {status} after {SETTLE_SECONDS:.0f} s")
        for kind, ident, status in busy
    ]


def snapshot(s: Stack, users: list[str]) -> Snapshot:
    def table(sql: str, names: str) -> dict[str, dict[str, Any]]:
        columns = names.split()
        return {row[0]: dict(zip(columns, row, strict=True)) for row in s.db.rows(sql, users)}

    mine = set(users)
    return Snapshot(
        uploads=table(
            "SELECT upload_id, user_id, status, stored_key, purged_at, updated_at FROM uploads "
            "WHERE user_id = ANY(%s)",
            "upload_id user_id status stored_key purged_at updated_at",
        ),
        tryons=table(
            "SELECT tryon_id, user_id, upload_id, status, completed_at, error_code FROM tryons "
            "WHERE user_id = ANY(%s)",
            "tryon_id user_id upload_id status completed_at error_code",
        ),
        results=table(
            "SELECT result_id, tryon_id, user_id, object_key, favorite FROM tryon_results "
            "WHERE user_id = ANY(%s)",
            "result_id tryon_id user_id object_key favorite",
        ),
        source_keys={k for k in s.keys(s.uploads_bucket) if k.split("/")[1] in mine},
        processed_keys={k for k in s.keys(s.processed_bucket) if k.split("/")[1] in mine},
    )


def objects_and_rows(snap: Snapshot, exempt: set[str]) -> list[Violation]:
    """``exempt``: results a 204 unfavourite may have left non-favourite after their upload's deletion."""
    found: list[Violation] = []
    uploads, tryons, results = snap.uploads, snap.tryons, snap.results
    for key in sorted(snap.source_keys):
        prefix, _user, name = key.split("/", 2)
        upload_id = name.rsplit(".", 1)[0] if prefix == "sources" else name
        row = uploads.get(upload_id)
        state = "no upload row" if row is None else f"its upload is {row['status']}"
        if row is not None and row["purged_at"]:
            state += " (and purged)"
        if prefix == "sources" and (
            row is None or row["status"] != "verified" or row["purged_at"] or row["stored_key"] != key
        ):
            found.append(("no object without a row", f"selfie {key} kept: {state}"))
        elif prefix == "uploads" and (row is None or row["status"] not in ("issued", "verifying")):
            found.append(("no object without a row", f"original {key} kept: {state}"))
        elif prefix not in ("sources", "uploads"):
            found.append(("no object without a row", f"{key} is not where anything is stored"))
    result_keys = {row["object_key"] for row in results.values()}
    found += [
        ("no object without a row", f"result image {key} has no result row")
        for key in sorted(snap.processed_keys - result_keys)
    ]
    found += [
        ("no row pointing at a missing object", f"result {row['result_id']} has no image {row['object_key']}")
        for row in results.values()
        if row["object_key"] not in snap.processed_keys
    ]
    for row in uploads.values():
        if row["status"] == "verified" and not row["purged_at"] and row["stored_key"] not in snap.source_keys:
            found.append(("no row pointing at a missing object", f"verified upload {row['upload_id']}"))
        if row["status"] == "deleted" and row["purged_at"] is None:
            found.append(("a deletion is final", f"upload {row['upload_id']}: deleted, purge never finished"))
    for row in results.values():
        tryon = tryons.get(row["tryon_id"])
        upload = uploads.get(tryon["upload_id"]) if tryon else None
        if tryon is None:
            found.append(("no row pointing at a missing object", f"result {row['result_id']} has no try-on"))
        elif (upload is None or upload["status"] == "deleted") and not (
            row["favorite"] or row["result_id"] in exempt
        ):
            found.append(
                ("no result of a deleted upload", f"result {row['result_id']} of {tryon['upload_id']}")
            )
    for tryon in tryons.values():
        upload = uploads.get(tryon["upload_id"])
        if (
            upload is not None
            and upload["status"] == "deleted"
            and tryon["status"] == "succeeded"
            and tryon["completed_at"] > upload["updated_at"]
        ):
            found.append(
                (
                    "no try-on succeeds after its upload was deleted",
                    f"try-on {tryon['tryon_id']} succeeded {tryon['completed_at']:%H:%M:%S.%f}, "
                    f"upload deleted {upload['updated_at']:%H:%M:%S.%f}",
                )
            )
    return found


def round_facts(s: Stack, r: Round, snap: Snapshot) -> None:
    """What this round's answers promised, held against the rows and objects left."""
    upload = snap.uploads.get(r.upload_id or "")
    if r.deleted_upload and upload is not None and upload["status"] != "deleted":
        r.flag("a deletion is final", f"DELETE answered 204, the upload is {upload['status']} again")
    if r.erased:
        left = [f"upload {u}" for u, row in snap.uploads.items() if row["user_id"] == r.user_id]
        left += [f"try-on {t}" for t, row in snap.tryons.items() if row["user_id"] == r.user_id]
        left += [f"result {x}" for x, row in snap.results.items() if row["user_id"] == r.user_id]
        left += [k for k in sorted(snap.source_keys | snap.processed_keys) if k.split("/")[1] == r.user_id]
        if left:
            r.flag("nothing of an erased user is left", ", ".join(left))
    if r.one_tryon:
        mine = [t for t, row in snap.tryons.items() if row["user_id"] == r.user_id]
        if len(mine) != 1:
            r.flag("one Idempotency-Key, one try-on", f"{len(mine)} try-on rows: {sorted(mine)}")
    if r.at_fal is not None:
        at_fal(s, r, snap)
    for result_id, (favourite, answer) in sorted(r.toggled.items(), key=lambda item: not item[1][0]):
        toggled_result(s, r, snap, result_id, favourite, answer)


def settled_before_deleted(s: Stack, tryon_id: str, upload_id: str) -> bool:
    """Whether the try-on's results were committed before its upload's deletion. Not by the clock (a try-on's
    ``completed_at`` is its step's start, and a DELETE sent first may reach the upload's row second): by the
    order of their audit events, which both transactions write while holding the upload's row."""
    stored = s.db.rows(
        "SELECT max(id) FROM audit_events WHERE event = 'result.stored' AND subject_id = %s", tryon_id
    )[0][0]
    deleted = s.db.rows(
        "SELECT min(id) FROM audit_events WHERE event = 'upload.deleted' AND subject_id = %s", upload_id
    )[0][0]
    return stored is not None and (deleted is None or stored < deleted)


def at_fal(s: Stack, r: Round, snap: Snapshot) -> None:
    tryon = snap.tryons.get(r.at_fal or "")
    if tryon is None:
        r.flag("every try-on settled", f"try-on {r.at_fal} vanished")
        return
    results = [x for x, row in snap.results.items() if row["tryon_id"] == r.at_fal]
    done_before = tryon["status"] == "succeeded" and settled_before_deleted(
        s, r.at_fal or "", tryon["upload_id"]
    )
    r.outcome += f"; try-on {tryon['status']} {tryon['error_code'] or ''}".rstrip()
    if done_before:
        r.outcome += " (done before the delete was sent)"
    elif tryon["status"] == "succeeded":
        r.flag("a try-on at fal fails once its upload is deleted", f"{r.at_fal} succeeded, results {results}")
    elif tryon["status"] == "failed" and tryon["error_code"] not in TRYON_ERROR_CODES:
        r.flag("answer the contract does not allow", f"try-on failed with {tryon['error_code']!r}")
    elif results:
        r.flag("a try-on at fal fails once its upload is deleted", f"{r.at_fal} failed, results {results}")


def toggled_result(
    s: Stack, r: Round, snap: Snapshot, result_id: str, favourite: bool, answer: Answer
) -> None:
    row = snap.results.get(result_id)
    kept = "kept" if row else "gone"
    r.outcome += f"; {'favourite' if favourite else 'unfavourited'} result {kept}"
    if answer.status == 404 and row is not None:
        r.flag("a deletion is final", f"result {result_id} is still there but its last toggle got 404")
    if answer.status != 204 or not favourite:
        return  # an unfavourite (204) may come before the deletion (gone) or after it kept the result
    if row is None or not row["favorite"]:
        r.flag("favourites are kept", f"result {result_id}: favourite answered 204, the result is {kept}")
        return
    if row["object_key"] in snap.processed_keys:
        tags = s.s3.get_object_tagging(Bucket=s.processed_bucket, Key=row["object_key"])["TagSet"]
        if {tag["Key"]: tag["Value"] for tag in tags}.get("retention") != "favorite":
            r.flag("favourites are kept", f"result {result_id} is a favourite but not tagged one: {tags}")


def check(s: Stack, rounds: list[Round]) -> list[Violation]:
    users = [r.user_id for r in rounds]
    found = settle(s, users)
    snap = snapshot(s, users)
    exempt = {
        result_id for r in rounds for result_id, (fav, a) in r.toggled.items() if not fav and a.status == 204
    }
    found += objects_and_rows(snap, exempt)
    for r in rounds:
        round_facts(s, r, snap)
        found += r.violations
    return found


# -- running and reporting ------------------------------------------------------------------------------


def play(s: Stack, race: Callable[[Stack, Round], None], r: Round) -> None:
    try:
        race(s, r)
    except SetupFailed as failed:
        r.setup_error = str(failed)
        r.outcome = "setup failed"


def stress(s: Stack, name: str, race: Callable[[Stack, Round], None]) -> None:
    started = time.monotonic()
    rounds = [s.new_round(name, number) for number in range(RACE_ROUNDS)]
    with ThreadPoolExecutor(max_workers=ROUNDS_AT_ONCE, thread_name_prefix=f"race-{name}") as pool:
        for done in [pool.submit(play, s, race, r) for r in rounds]:
            done.result()
    played = time.monotonic() - started
    found = check(s, rounds)
    report = summary(name, rounds, found, played, time.monotonic() - started)
    print(report)
    setup_errors = [f"{r.name}: {r.setup_error}" for r in rounds if r.setup_error]
    assert not setup_errors, (
        f"{len(setup_errors)} round(s) never got to race:\n" + "\n".join(setup_errors[:10]) + f"\n{report}"
    )
    assert not found, report


def summary(name: str, rounds: list[Round], found: list[Violation], played: float, total: float) -> str:
    lines = [
        f"\n== race {name}: {len(rounds)} rounds, {ROUNDS_AT_ONCE} at once; played in {played:.1f} s, "
        f"checked after {total:.1f} s",
        "outcomes:",
    ]
    lines += [
        f"  {count:4d} x {outcome}" for outcome, count in Counter(r.outcome for r in rounds).most_common()
    ]
    by_invariant: dict[str, list[str]] = {}
    for invariant, detail in found:
        by_invariant.setdefault(invariant, []).append(detail)
    broken_rounds = sum(1 for r in rounds if r.violations)
    lines.append(f"violations: {len(found)} ({broken_rounds} of {len(rounds)} rounds flagged themselves)")
    for invariant, details in sorted(by_invariant.items(), key=lambda item: -len(item[1])):
        lines.append(f"  {len(details):4d} x {invariant}")
        lines += [f"         e.g. {detail}" for detail in details[:3]]
    return "\n".join(lines)


# -- the tests ------------------------------------------------------------------------------------------


def test_a_deleted_upload_stays_deleted_whatever_complete_does_meanwhile(stack):
    stress(stack, "a", race_delete_upload_vs_complete)


def test_an_erasure_leaves_nothing_whatever_complete_does_meanwhile(stack):
    stress(stack, "b", race_erase_vs_complete)


def test_one_idempotency_key_sent_twice_at_once_makes_one_tryon(stack):
    stress(stack, "c", race_same_idempotency_key)


def test_a_tryon_at_fal_when_its_upload_is_deleted_fails_and_stores_nothing(stack):
    stack.simulator.set_work_seconds(FAL_WORK_SECONDS)
    try:
        stress(stack, "d", race_delete_upload_while_at_fal)
    finally:
        stack.simulator.set_work_seconds(0)


def test_favourite_toggles_racing_a_deletion_keep_favourites_and_nothing_else(stack):
    stress(stack, "e", race_favourites_vs_delete_upload)
