"""An HTTP/1.1 proxy that adds round-trip latency and injects faults, for tests and benchmarks.

Put in front of a real server (nginx, ``moto_server``) on 127.0.0.1, it forwards every request
and response byte for byte, keep-alive included, and per request:

- waits ``rtt_s`` (half before forwarding the request, half before returning the response;
  a new connection costs one more RTT, as a TCP handshake does) — latency without ``tc netem``,
  which this kernel does not offer (``Specified qdisc kind is unknown``);
- with probability ``fail_503`` answers ``503 Service Unavailable`` itself;
- with probability ``drop`` forwards the request, then cuts the connection halfway through the
  response body (a connection reset mid-transfer);
- with probability ``stall`` never answers (until the client gives up and closes): a timeout.

Decisions come from one seeded RNG, so a run's faults are reproducible for a given request
order. Counters (``requests``, ``injected_503``, ``dropped``, ``stalled``) let a test check
that faults really happened. ``start()`` runs the proxy on a background thread of the caller;
``python -m rhovid.benchmarks.netproxy UPSTREAM_PORT --rtt-ms 20`` runs it as its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import threading
from dataclasses import dataclass, field

_CHUNK = 1 << 16


@dataclass
class ProxyCounters:
    """What the proxy did so far (read them after ``stop()`` or between requests)."""

    requests: int = 0
    """Requests received (each answered, failed, dropped or stalled)."""
    injected_503: int = 0
    """Requests answered with 503 by the proxy itself."""
    dropped: int = 0
    """Responses cut halfway through their body."""
    stalled: int = 0
    """Requests never answered."""
    connections: int = 0
    """Client connections accepted."""
    inflight: int = 0
    """Requests being answered now."""
    max_inflight: int = 0
    """Most requests being answered at one moment (the client's concurrency)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class HttpProxy:
    """See the module docstring. ``port`` is known after ``start()``."""

    def __init__(self, upstream_port: int, rtt_s: float = 0.0, fail_503: float = 0.0, drop: float = 0.0,
                 seed: int = 0, host: str = "127.0.0.1", port: int = 0, stall: float = 0.0):
        self.upstream = (host, upstream_port)
        self.rtt_s, self.fail_503, self.drop, self.stall = rtt_s, fail_503, drop, stall
        self.host, self.port = host, port
        self.counters = ProxyCounters()
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HttpProxy:
        """Serve on a background thread; returns once the port is open."""
        self._thread = threading.Thread(target=self._run, name="rhovid-netproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> HttpProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, self.host, self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def serve_forever(self) -> None:
        """Serve in the running event loop (the ``python -m`` entry point)."""
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        print(f"proxy on {self.url} -> {self.upstream[1]} rtt {self.rtt_s * 1000:.0f} ms", flush=True)
        async with self._server:
            await self._server.serve_forever()

    def _decide(self) -> str:
        with self.counters.lock:
            self.counters.requests += 1
            r = self._rng.random()
            if r < self.fail_503:
                self.counters.injected_503 += 1
                return "503"
            if r < self.fail_503 + self.drop:
                self.counters.dropped += 1
                return "drop"
            if r < self.fail_503 + self.drop + self.stall:
                self.counters.stalled += 1
                return "stall"
        return "ok"

    async def _client(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        with self.counters.lock:
            self.counters.connections += 1
        uwriter = None
        try:
            if self.rtt_s:
                await asyncio.sleep(self.rtt_s)  # the handshake's round trip
            ureader, uwriter = await asyncio.open_connection(*self.upstream)
            while True:
                head = await _read_head(creader)
                if head is None:
                    return
                method = head.split(b" ", 1)[0].upper()
                headers = _headers(head)
                action = self._decide()
                self._enter()
                try:
                    if not await self._answer(action, method, head, headers, creader, cwriter, ureader, uwriter):
                        return
                finally:
                    with self.counters.lock:
                        self.counters.inflight -= 1
        except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            return
        finally:
            for w in (cwriter, uwriter):
                if w is not None:
                    w.close()

    def _enter(self) -> None:
        with self.counters.lock:
            self.counters.inflight += 1
            self.counters.max_inflight = max(self.counters.max_inflight, self.counters.inflight)

    async def _answer(self, action, method, head, headers, creader, cwriter, ureader, uwriter) -> bool:
        """Answer one request; False when the connection is to be closed."""
        if self.rtt_s:
            await asyncio.sleep(self.rtt_s / 2)
        if action == "stall":
            while await creader.read(_CHUNK):  # say nothing until the client hangs up
                pass
            return False
        if action == "503":
            if self.rtt_s:
                await asyncio.sleep(self.rtt_s / 2)
            # a request with a body (maybe waiting for 100-continue) is answered and closed
            has_body = int(headers.get(b"content-length", b"0")) or b"transfer-encoding" in headers
            cwriter.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                          + (b"Connection: close\r\n\r\n" if has_body else b"\r\n"))
            await cwriter.drain()
            return not has_body
        uwriter.write(head)
        pump = asyncio.ensure_future(_copy_body(creader, uwriter, headers))
        while True:  # interim 1xx answers (Expect: 100-continue) are forwarded as they come
            rhead = await _read_head(ureader)
            if rhead is None:
                return False
            status = int(rhead.split(b" ", 2)[1])
            if status >= 200:
                break
            cwriter.write(rhead)
            await cwriter.drain()
        await pump
        if self.rtt_s:
            await asyncio.sleep(self.rtt_s / 2)
        rheaders = _headers(rhead)
        body = method != b"HEAD" and status not in (204, 304)
        if action == "drop":
            cwriter.write(rhead)
            n = int(rheaders.get(b"content-length", b"0")) if body else 0
            if n > 1:
                cwriter.write(await ureader.readexactly(n // 2))
            await cwriter.drain()
            cwriter.transport.abort()  # reset, mid-body
            return False
        cwriter.write(rhead)
        if body:
            await _copy_body(ureader, cwriter, rheaders, until_close=True)
        await cwriter.drain()
        return rheaders.get(b"connection", b"").lower() != b"close"


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None


def _headers(head: bytes) -> dict[bytes, bytes]:
    out = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            k, _, v = line.partition(b":")
            out[k.strip().lower()] = v.strip()
    return out


async def _copy_body(reader, writer, headers: dict, until_close: bool = False) -> None:
    """Forward one message body: Content-Length, chunked, or (responses) until the peer closes."""
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            line = await reader.readuntil(b"\r\n")
            writer.write(line)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while True:  # trailers end with an empty line
                    t = await reader.readuntil(b"\r\n")
                    writer.write(t)
                    if t == b"\r\n":
                        return
            writer.write(await reader.readexactly(size + 2))
            await writer.drain()
    n = headers.get(b"content-length")
    if n is None:
        if until_close:
            while chunk := await reader.read(_CHUNK):
                writer.write(chunk)
                await writer.drain()
        return
    left = int(n)
    while left:
        chunk = await reader.read(min(left, _CHUNK))
        if not chunk:
            raise ConnectionError("peer closed mid-body")
        writer.write(chunk)
        left -= len(chunk)
        await writer.drain()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("upstream_port", type=int)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--rtt-ms", type=float, default=0.0)
    p.add_argument("--fail-503", type=float, default=0.0)
    p.add_argument("--drop", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    proxy = HttpProxy(a.upstream_port, a.rtt_ms / 1000, a.fail_503, a.drop, a.seed, port=a.port)
    asyncio.run(proxy.serve_forever())


if __name__ == "__main__":
    main()
