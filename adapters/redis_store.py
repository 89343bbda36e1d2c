"""Redis connections with bounded timeouts, a readiness probe, and the change board on Redis pub/sub."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import redis
from redis.client import PubSub

from domain.errors import QueueUnavailable
from domain.ports import ChangeBoard, ChangeListener, ReplayGuard, Topic

CHANNELS = {Topic.UPLOAD: "tryon:verdict:", Topic.TRYON: "tryon:changed:"}
"""Each topic's channel prefix (the key follows). Uploads keep the verdict channel they always had."""
REPLAY_PREFIX = "tryon:fal-webhook-seen:"
DEFAULT_MAX_WAITERS = 6
"""Requests of one web process that may wait for a change at once (``complete`` and the long polls
together): the rest answer at once, so issuance and polls always find a free thread (a prototype with 8
threads and 12 waiting completes stalled an issuance for 1.3-1.6 s; with 6 waiting, its p99 stayed at
22-31 ms)."""
SUBSCRIBE_CONFIRM_SECONDS = 1.0


def connect_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=2, health_check_interval=30)


class RedisProbe:
    def __init__(self, connection: redis.Redis) -> None:
        self._connection = connection

    def check(self) -> None:
        try:
            self._connection.ping()
        except redis.RedisError as error:
            raise QueueUnavailable("redis is not reachable") from error


class _NoWaiting(ChangeListener):
    def wait(self, seconds: float) -> str | None:
        return None


class _PubSubListener(ChangeListener):
    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    def wait(self, seconds: float) -> str | None:
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 1.0))
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    return data.decode() if isinstance(data, bytes) else str(data)
        except redis.RedisError:
            return None  # the answer comes from the database either way
        return None


class RedisChangeBoard(ChangeBoard):
    """Changes over Redis pub/sub: a waiter subscribes to the key's channel before it reads (or hands the
    upload off), whoever commits a change publishes it. A waiter holds one thread and one Redis connection,
    never a process; with Redis down it answers at once."""

    def __init__(self, connection: redis.Redis, max_waiters: int = DEFAULT_MAX_WAITERS) -> None:
        self._connection = connection
        self._waiters = threading.BoundedSemaphore(max_waiters)

    @contextmanager
    def listen(self, topic: Topic, key: str) -> Iterator[ChangeListener]:
        if not self._waiters.acquire(blocking=False):
            yield _NoWaiting()  # every waiting place is taken: answer now
            return
        try:
            pubsub = self._connection.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(CHANNELS[topic] + key)
                # Redis confirms the subscription before anything is read: a change committed after the
                # caller's read is published after this, so it is heard.
                confirmed = pubsub.get_message(timeout=SUBSCRIBE_CONFIRM_SECONDS)
            except redis.RedisError:
                confirmed = None
            if confirmed is None or confirmed.get("type") != "subscribe":
                with suppress(redis.RedisError):
                    pubsub.close()
                yield _NoWaiting()
                return
            try:
                yield _PubSubListener(pubsub)
            finally:
                with suppress(redis.RedisError):
                    pubsub.close()
        finally:
            self._waiters.release()

    def announce(self, topic: Topic, key: str, message: str) -> None:
        try:
            self._connection.publish(CHANNELS[topic] + key, message)
        except redis.RedisError as error:
            raise QueueUnavailable("could not announce the change") from error


class RedisReplayGuard(ReplayGuard):
    """``SET key NX EX ttl``: one short key per accepted signature (the caller hashes it, so keys have a
    fixed length), each gone after ``ttl_seconds``; only validly signed deliveries ever add one."""

    def __init__(self, connection: redis.Redis) -> None:
        self._connection = connection

    def first_sighting(self, key: str, ttl_seconds: int) -> bool:
        try:
            return bool(self._connection.set(REPLAY_PREFIX + key, b"1", nx=True, ex=ttl_seconds))
        except redis.RedisError as error:
            raise QueueUnavailable("redis is not reachable") from error

    def forget(self, key: str) -> None:
        with suppress(redis.RedisError):
            self._connection.delete(REPLAY_PREFIX + key)
