"""Redis connections with bounded timeouts, and a readiness probe."""

from __future__ import annotations

import redis

from domain.errors import QueueUnavailable


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
