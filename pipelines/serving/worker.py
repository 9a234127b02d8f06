"""The endpoint's gunicorn worker class: gevent, so that a slow client costs a greenlet, not a worker.

gunicorn's `gevent` worker with these changes:
- a request's headers have --keep-alive seconds in all (gunicorn then closes the connection: a stalled client,
  a TLS hello); its body may pause READ_TIMEOUT_S seconds between packets (then the app answers 408);
- a kept-alive connection stays with the worker that accepted it, however busy, and the kernel may well hand
  8 connections to one worker and none to the other (one trial in four at concurrency 8 here: half the
  throughput); so each worker publishes how many connections it holds (shared memory the arbiter made) and,
  while it holds more than its share, stops accepting and closes connections after their answer: clients
  reconnect to a worker with room;
- a response goes out in one write (headers and body together), not gunicorn's two;
- requests are served in turn: after answering one, a connection waits until the loop is idle before it
  reads its next request. Without that the worker served one busy connection again and again while another
  connection's request waited (1,000-row batches at concurrency 4: p99 190 ms, against 50 ms with turns, as
  with sync workers);
- on SIGTERM, connections the kernel has accepted but the worker has not (its listen backlog, which grows
  while a request computes) are accepted and served before the listener closes, instead of being reset;
- handlers keep their listener's address, so one accepted just before the listener closes still runs.
"""

from __future__ import annotations

import mmap
import socket
import struct
import time
from functools import partial
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.workers.ggevent import GeventWorker

from pipelines.serving.limits import READ_TIMEOUT_S

_SLOTS = 256  # one per worker started (modulo), for its number of connections
_CONNECTIONS = mmap.mmap(-1, 8 * _SLOTS)  # made in the arbiter, which imports this class: its workers share it


class _Address:
    """What a handler asks of its listener: the address, still there after the listener is closed."""

    def __init__(self, listener: Any):
        self.address = listener.getsockname()

    def getsockname(self) -> Any:
        return self.address


class EndpointWorker(GeventWorker):
    connections = 0

    def init_process(self) -> None:
        self.slot = self.age % _SLOTS
        self.servers: list[Any] = []
        self._count(0)  # a slot once another worker's
        super().init_process()

    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(True)
            server = StreamServer(listener, handle=partial(self.handle, _Address(listener)),
                                  spawn=Pool(self.worker_connections))
            server.max_accept = 1 if self.cfg.workers > 1 else server.max_accept  # share connections out
            server.start()
            self.servers.append(server)
        while self.alive:
            self.notify()
            self._count(0)  # the other workers' counts change too
            gevent.sleep(0.1)
        for server in self.servers:
            _accept_backlog(server)
            server.close()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        for server in self.servers:
            server.pool.join(timeout=max(deadline - time.monotonic(), 0))

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        self._count(1)
        try:
            super().handle(listener, client, addr)
        finally:
            self._count(-1)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        if self._over_share():
            req.force_close()  # `Connection: close`: its client reconnects, to a worker with room
        sock.settimeout(READ_TIMEOUT_S)  # while the app reads the body and writes the answer
        held = _HeldWrites(sock)
        try:
            keep_alive = super().handle_request(listener_name, req, held, addr)
        finally:
            try:
                held.flush()
            finally:
                sock.settimeout(None)  # waiting for the next request on the connection: gunicorn's --keep-alive
        gevent.idle()  # requests waiting on other connections go first, see the module's docstring
        return keep_alive

    def _count(self, change: int) -> None:
        """Publish this worker's number of connections; accept more only while it holds no more than its share."""
        self.connections += change
        struct.pack_into("q", _CONNECTIONS, 8 * self.slot, self.connections)
        if self.alive:
            accept = not self._over_share()
            for server in self.servers:
                server.start_accepting() if accept else server.stop_accepting()

    def _over_share(self) -> bool:
        """More connections than the workers' average, rounded up (a worker that died uncounted only raises it)."""
        total = sum(struct.unpack_from(f"{_SLOTS}q", _CONNECTIONS))
        return self.connections > -(-total // self.cfg.workers)


class _HeldWrites:
    """A connection whose writes wait for the end of the request: gunicorn sends the headers and the body
    separately, two trips through the TCP stack and two wake-ups of the client for one small answer."""

    def __init__(self, sock: Any):
        self.sock, self.held = sock, bytearray()

    def sendall(self, data: bytes) -> None:
        self.held += data

    def flush(self) -> None:
        if self.held:
            data, self.held = bytes(self.held), bytearray()
            self.sock.sendall(data)

    def send(self, data: bytes) -> int:  # `100 Continue`: now, before anything held
        self.flush()
        return self.sock.send(data)

    def sendfile(self, *args: Any, **kwargs: Any) -> int:
        self.flush()
        return self.sock.sendfile(*args, **kwargs)

    def shutdown(self, how: int) -> None:  # after a failed answer gunicorn cuts the connection: drop what is held
        if how != socket.SHUT_RD:
            self.held.clear()
        self.sock.shutdown(how)

    def close(self) -> None:
        self.held.clear()
        self.sock.close()

    def __getattr__(self, name: str) -> Any:  # reads, fileno, settimeout: the connection itself
        return getattr(self.sock, name)


def _accept_backlog(server: StreamServer) -> None:
    """Hand every connection already waiting on the listener to a handler, without waiting for more."""
    server.stop_accepting()
    server.socket.setblocking(False)
    while True:
        try:
            accepted = server.do_read()
        except OSError:
            return
        if not accepted:
            return
        server.do_handle(*accepted)
