"""The endpoint's gunicorn worker class: gevent, so that a slow client costs a greenlet, not a worker.

gunicorn's `gevent` worker with these changes:
- a request's headers have --keep-alive seconds in all (gunicorn then closes the connection: a stalled client,
  a TLS hello); its body may pause READ_TIMEOUT_S seconds between packets and must arrive within BODY_TIMEOUT_S
  in all (then the app answers 408);
- a worker holds at most --worker-connections connections (its share of SAGEPIPE_MAX_CONNECTIONS). At the cap
  it still accepts, and closes the connection that has waited longest on its client (for its headers, its body
  or its next request; one whose request computes is never closed): without that, 2,200 slow-body connections
  filled both workers' pools and /ping waited in the listen backlog behind them, unanswered;
- a kept-alive connection stays with the worker that accepted it, however busy, and the kernel may well hand
  8 connections to one worker and none to the other (one trial in four at concurrency 8 here: half the
  throughput); so each worker publishes how many connections it holds (shared memory the arbiter made) and,
  while it holds more than its share, stops accepting and closes connections after their answer: clients
  reconnect to a worker with room. A paused worker looks again after 2 ms, then less and less often (looking
  every 0.1 s let a burst of connections in at 80 a second: 2,200 took 25 s to accept, /ping waiting behind);
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
from collections import OrderedDict
from functools import partial
from typing import Any

import gevent
import gevent.event
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.workers.ggevent import GeventWorker

from pipelines.serving.limits import BODY_TIMEOUT_S, MAX_CONNECTIONS, READ_TIMEOUT_S, SlowClient

_SLOTS = 256  # one per worker started (modulo), for its number of connections
PAUSED_TICK_S = 0.002  # how often a worker holding more than its share looks whether it may accept again
_CONNECTIONS = mmap.mmap(-1, 8 * _SLOTS)  # made in the arbiter, which imports this class: its workers share it


class _Address:
    """What a handler asks of its listener: the address, still there after the listener is closed."""

    def __init__(self, listener: Any):
        self.address = listener.getsockname()

    def getsockname(self) -> Any:
        return self.address


class EndpointWorker(GeventWorker):
    connections = 0
    paused = False  # holding more than its share: not accepting until the others' counts catch up
    tick = 0.1

    def init_process(self) -> None:
        self.slot = self.age % _SLOTS
        self.servers: list[Any] = []
        self.held: OrderedDict[_Connection, None] = OrderedDict()  # the longest waiting on its client first
        self.wake: Any = None
        self._count(0)  # a slot once another worker's
        super().init_process()

    def run(self) -> None:
        self.wake = gevent.event.Event()  # set when the worker pauses, so that it looks again soon
        for listener in self.sockets:
            listener.setblocking(True)
            server = StreamServer(listener, handle=partial(self.handle, _Address(listener)),
                                  spawn=Pool(self.worker_connections))
            server.max_accept = 1 if self.cfg.workers > 1 else server.max_accept  # share connections out
            server.start()
            self.servers.append(server)
        while self.alive:
            self.notify()
            deadline = time.monotonic() + 0.1
            while self.alive and (left := deadline - time.monotonic()) > 0:
                self._count(0)  # the other workers' counts change too
                if self.paused:  # look again soon, less often the longer the pause lasts
                    gevent.sleep(min(self.tick, left))
                    self.tick = min(2 * self.tick, 0.1)
                else:
                    self.wake.clear()
                    self.wake.wait(left)
        for server in self.servers:
            _accept_backlog(server)
            server.close()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        for server in self.servers:
            server.pool.join(timeout=max(deadline - time.monotonic(), 0))

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        self._count(1)
        connection = _Connection(client, self.held)
        self.held[connection] = None
        try:
            if len(self.held) >= self.worker_connections:
                self._make_room()
            super().handle(listener, connection, addr)
        finally:
            self.held.pop(connection, None)
            self._count(-1)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        if self._over_share():
            req.force_close()  # `Connection: close`: its client reconnects, to a worker with room
        sock.settimeout(READ_TIMEOUT_S)  # while the app reads the body and writes the answer
        sock.deadline = time.monotonic() + BODY_TIMEOUT_S
        held = _HeldWrites(sock)
        try:
            keep_alive = super().handle_request(listener_name, req, held, addr)
        finally:
            sock.deadline = None
            try:
                held.flush()
            finally:
                sock.settimeout(None)  # waiting for the next request on the connection: gunicorn's --keep-alive
        gevent.idle()  # requests waiting on other connections go first, see the module's docstring
        return keep_alive

    def _make_room(self) -> None:
        """Close the connection that has waited longest on its client (none: every one is computing)."""
        for connection in self.held:
            if connection.waiting and not connection.evicted:
                connection.evict(f"the endpoint holds its limit of {MAX_CONNECTIONS:,} connections "
                                 "(SAGEPIPE_MAX_CONNECTIONS) and closed this one, which waited longest on its client")
                return

    def _count(self, change: int) -> None:
        """Publish this worker's number of connections; accept more only while it holds no more than its share."""
        self.connections += change
        struct.pack_into("q", _CONNECTIONS, 8 * self.slot, self.connections)
        if self.alive:
            accept = not self._over_share()
            for server in self.servers:
                server.start_accepting() if accept else server.stop_accepting()
            if not accept and not self.paused and self.wake is not None:
                self.tick = PAUSED_TICK_S
                self.wake.set()
            self.paused = not accept

    def _over_share(self) -> bool:
        """More connections than the workers' average, rounded up (a worker that died uncounted only raises it)."""
        total = sum(struct.unpack_from(f"{_SLOTS}q", _CONNECTIONS))
        return self.connections > -(-total // self.cfg.workers)


class _Connection:
    """An accepted socket that knows whether it waits on its client (blocked reading) and since when (its place
    in the worker's `held`, moved to the end at each read), and can be closed from another greenlet to make room.
    While a request is read, `deadline` bounds its body in all."""

    __slots__ = ("sock", "held", "waiting", "evicted", "deadline")

    def __init__(self, sock: Any, held: OrderedDict):
        self.sock, self.held = sock, held
        self.waiting, self.evicted, self.deadline = False, "", None

    def recv(self, size: int) -> bytes:
        if self.evicted:
            return self._evicted()
        if self in self.held:
            self.held.move_to_end(self)
        left = None if self.deadline is None else self.deadline - time.monotonic()
        if left is not None and left <= 0:
            raise SlowClient(f"the body did not arrive within {BODY_TIMEOUT_S:g} s in all (SAGEPIPE_BODY_TIMEOUT_S)")
        shorter = left is not None and left < READ_TIMEOUT_S
        if shorter:
            self.sock.settimeout(left)
        self.waiting = True
        try:
            data = self.sock.recv(size)
        except TimeoutError:
            if shorter:
                raise SlowClient(f"the body did not arrive within {BODY_TIMEOUT_S:g} s in all "
                                 "(SAGEPIPE_BODY_TIMEOUT_S)") from None
            raise
        except OSError:  # gevent wakes a read that shutdown() cut short with EBADF
            if self.evicted:
                return self._evicted()
            raise
        finally:
            self.waiting = False
            if shorter:
                self.sock.settimeout(READ_TIMEOUT_S)
        return self._evicted() if self.evicted else data

    def evict(self, why: str) -> None:
        """Wake the greenlet reading this connection: its read ends as if the client had closed."""
        self.evicted = why
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:  # already closed by its client
            pass

    def _evicted(self) -> bytes:
        if self.deadline is not None:  # in the middle of a request: the app answers 408 with the reason
            raise SlowClient(self.evicted)
        return b""  # between requests or in the headers: gunicorn closes the connection quietly

    def __getattr__(self, name: str) -> Any:  # writes, fileno, settimeout, close: the socket itself
        return getattr(self.sock, name)


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
