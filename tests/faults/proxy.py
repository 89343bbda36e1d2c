"""A TCP proxy in front of a real dependency (S3, Redis, Postgres) that a test takes down and brings back.

``down()`` is a stopped server as a client sees it: new connections are refused and open ones are cut.
``hang()`` is a server that accepts and never answers (clients must time out). ``up()`` restores the
path to the very same server, with its data intact — which stopping an in-memory emulator would lose.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress

_CHUNK = 65536


class ChaosProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._mode = "up"
        self._listener: socket.socket | None = None
        self.port = self._listen(0)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        with self._lock:
            self._mode = "up"
        if self._listener is None:
            self._listen(self.port)

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        with self._lock:
            self._mode = "down"
            listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(
                    socket.SHUT_RDWR
                )  # wakes the thread blocked in accept(); close() alone may not
            listener.close()
        self._cut_all()

    def hang(self) -> None:
        """Accept connections and never answer; open ones stall too."""
        with self._lock:
            self._mode = "hang"
        self._cut_all()
        if self._listener is None:
            self._listen(self.port)

    def close(self) -> None:
        self.down()

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="chaos-accept").start()
        bound: int = listener.getsockname()[1]
        return bound

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            with self._lock:
                mode = self._mode
                self._open.add(client)
            if mode == "up":
                threading.Thread(target=self._connect, args=(client,), daemon=True).start()
            # "hang": the connection is held open and never read: the client waits for its timeout

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
        except OSError:
            self._drop(client)
            return
        upstream.settimeout(None)
        with self._lock:
            if self._mode != "up":
                upstream.close()
                return
            self._open.add(upstream)
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(_CHUNK):
                sink.sendall(chunk)
        except OSError:
            pass
        self._drop(source)
        self._drop(sink)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _cut_all(self) -> None:
        with self._lock:
            doomed = list(self._open)
        for sock in doomed:
            self._drop(sock)
