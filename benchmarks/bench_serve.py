"""Serving throughput: the real scoring server under 1, 8 and 32 concurrent clients.

Starts `charlm serve` (`mlflow models serve` with charlm's worker, thread and event-loop setup)
on a free loopback port and runs one bounded load after another. Each client keeps one keep-alive
connection (`Connection`, a plain socket: the lightest client beside the server on its cores) and
sends its two prebuilt requests back to back; every `--invalid-every`-th is invalid (a prompt
character the model does not know), which the server must answer 400. A failed request is
recorded as an error and the client goes on over a new connection. A load runs in `--rounds`
pieces of `--seconds` in all: in each, clients join one after another over `--ramp-s`, as they
would arrive (all at once, the first worker to wake would accept every connection), and only
requests sent after the ramp are measured, each piece's seconds running from the ramp's end to its
last answer. The 32-client load runs twice, so the server's memory can be compared across two
consecutive loads. Prints requests/s, generated chars/s, p50 and p95 latency of the valid
requests, the 400s, any other errors, the server's peak RSS (all its processes), the server's CPU
time per generated character (all its processes, so the load client, which shares the cores,
drops out; from the end of a piece's ramp until its clients stop sending, over every character
answered in that span, refused requests' work included) and the most uneven split of
connections between the workers after a ramp, then the ratios the serving targets are stated in.
Before the first piece and after each, while the server idles, the served model generates in this
process (`generate_all`, batches of a worker's share of the load's streams, one torch thread, as a
worker) for `--ceiling-s` of CPU time: its CPU time per character, the mean of the readings, is the
ceiling the server's is compared with, taking turns with the load because this machine's speed
drifts (the readings are printed at the end). Beside it, from the threads' own CPU times (no
drift between them), the share of the server's CPU outside each process's busiest thread (under
load, a worker's batching thread, at one torch thread per worker): what the rest (HTTP, JSON, the
event loop) costs.
Then the same server takes 1, 8 and 32 streaming clients (`POST /stream`, the same requests, each
load in one piece of `--seconds`), whose time to the first character (p50, p95) is printed beside
the rest.

Then a fresh server with one worker takes one heavy client among `--light` light ones: the heavy
client sends the largest request `limits` allows (`max_request_rows` texts sharing
`max_request_chars`) back to back, the light clients send one 200-character text at a time, and
the light clients' p50 and p95 are printed: what one careless client costs everyone else. A last
server does the same with a client that sends one prompt of `max_prompt_chars` after another (ten
characters generated after each): what feeding the longest prompts costs everyone else. Traffic
goes only to loopback.
"""

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import mlflow.pyfunc
import numpy as np
import psutil
import torch

from charlm.generation.decoder import generate_all
from charlm.params.base import load_params
from charlm.params.pipeline import Params
from charlm.serving.launcher import default_workers, serve_command
from charlm.serving.pyfunc import CharLMModel
from charlm.tracking.store import connect, tracking_uri

LOADS = (1, 8, 32, 32)
STREAM_LOADS = (1, 8, 32)


@dataclass
class Load:
    clients: int
    since: float  # requests sent from here on are measured...
    until: float  # ...and none are sent after this
    seconds: float = 0.0  # from `since` to the last answer
    latencies: list[float] = field(default_factory=list)
    chars: int = 0
    refused: int = 0  # the intended 400s
    errors: list[str] = field(default_factory=list)
    peak_rss: int = 0
    cpu_s: float = 0.0  # the server's CPU time (all its processes) over the same span
    model_cpu_s: float = 0.0  # of which the workers' batching threads'
    window_chars: int = 0  # characters answered from the ramp's end until the clients stop sending
    heavy_done: int = 0  # the heavy client's answered requests
    first_chars: list[float] = field(default_factory=list)  # streams: seconds to the first character
    held: list[int] = field(default_factory=list)  # connections each worker holds after the ramp
    ceilings: tuple[float, ...] = ()  # the in-process decoder's CPU us per character at a
    # worker's share, before the first piece and after each

    @classmethod
    def joined(cls, pieces: "list[Load]", ceilings: tuple[float, ...]) -> "Load":
        """One load run in pieces, the ceiling measured between them: their sums and lists (the most
        uneven piece's connections per worker, the highest peak RSS)."""
        load = cls(pieces[0].clients, pieces[0].since, pieces[-1].until, ceilings=ceilings)
        for piece in pieces:
            load.seconds += piece.seconds
            load.latencies += piece.latencies
            load.chars, load.window_chars = load.chars + piece.chars, load.window_chars + piece.window_chars
            load.refused, load.heavy_done = load.refused + piece.refused, load.heavy_done + piece.heavy_done
            load.first_chars += piece.first_chars
            load.errors += piece.errors
            load.peak_rss = max(load.peak_rss, piece.peak_rss)
            load.cpu_s, load.model_cpu_s = load.cpu_s + piece.cpu_s, load.model_cpu_s + piece.model_cpu_s
        load.held = max(
            (piece.held for piece in pieces), key=lambda held: max(held, default=0) - min(held, default=0)
        )
        return load

    @property
    def ceiling_us(self) -> float:
        return sum(self.ceilings) / len(self.ceilings) if self.ceilings else 0.0

    @property
    def chars_per_s(self) -> float:
        return self.chars / self.seconds

    @property
    def cpu_us_per_char(self) -> float:
        """NaN when no character was answered in the window (every request failed)."""
        return self.cpu_s / self.window_chars * 1e6 if self.window_chars else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Connection:
    """One keep-alive HTTP/1.1 connection to the server over a plain socket, sending prebuilt
    requests and reading only the status line, Content-Length or chunked framing: the load client
    shares the server's cores, and the more it runs there (`http.client` parses each response's
    headers with the email package), the more CPU each character costs the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open()

    def open(self) -> None:
        """A new connection (after the server closed the last, or it failed)."""
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer, self.closing = b"", False

    def close(self) -> None:
        self.sock.close()

    def _read(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._read()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._read()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def post(self, path: str, body: bytes) -> tuple[int, bytes, float]:
        """The response's status and body, and seconds from sending to its first chunk that
        carries text (a stream's first characters; 0.0 for a response of one piece)."""
        if self.closing:  # the last response said `Connection: close`
            self.close()
            self.open()
        start = time.monotonic()
        self.sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        status, length, chunked = int(self._line().split()[1]), 0, False
        while header := self._line().lower():
            name, _, value = header.partition(b":")
            if name == b"content-length":
                length = int(value)
            chunked |= name == b"transfer-encoding" and value.strip().endswith(b"chunked")
            self.closing |= name == b"connection" and value.strip() == b"close"
        if not chunked:
            return status, self._exactly(length), 0.0
        chunks, first = [], 0.0
        while size := int(self._line().split(b";")[0], 16):
            chunks.append(self._exactly(size))
            first = first or (time.monotonic() - start if b'"text"' in chunks[-1] else 0.0)
            if self._exactly(2) != b"\r\n":
                raise ValueError("a chunk longer than its size")
        while self._line():  # trailers, up to the empty line
            pass
        return status, b"".join(chunks), first


def post(conn: Connection, rows: list[dict[str, object]]) -> tuple[int, bytes]:
    status, body, _ = conn.post("/invocations", json.dumps({"inputs": rows}).encode())
    return status, body


def generated(path: str, body: bytes) -> str:
    """The text a 200 answer carries: `/invocations`' one prediction, or a stream's events joined
    (a stream that ends with `event: error` raises)."""
    if path != "/stream":
        return json.loads(body)["predictions"][0]
    if b"event: error" in body:
        raise ValueError(f"the stream failed: {body[-200:]!r}")
    return "".join(
        json.loads(line[6:])["text"]
        for line in body.split(b"\n")
        if line.startswith(b"data: ") and b'"text"' in line
    )


def client(
    port: int, load: Load, lock: threading.Lock, join_at: float, length: int, invalid_every: int, stream: bool
) -> None:
    path = "/stream" if stream else "/invocations"
    bodies = {  # a valid request, and an invalid one: a prompt character the model does not know
        invalid: json.dumps(
            {"inputs": [{"prompt": "\u2603" if invalid else "ROMEO:", "length": length}]}
        ).encode()
        for invalid in (False, True)
    }
    time.sleep(max(0.0, join_at - time.monotonic()))
    conn = Connection(port)
    sent = 0
    while (start := time.monotonic()) < load.until:
        sent += 1
        invalid = invalid_every > 0 and sent % invalid_every == 0
        try:
            status, body, first = conn.post(path, bodies[invalid])
            chars = len(generated(path, body)) if status == 200 and not invalid else 0
        except (OSError, ValueError) as err:  # recorded, and the client goes on on a new connection
            with lock:
                load.errors.append(f"{type(err).__name__}: {err}")
            conn.close()
            conn.open()
            continue
        elapsed = time.monotonic() - start
        measured, answered = start >= load.since, load.since <= time.monotonic() < load.until
        with lock:
            if invalid and status == 400:
                load.refused += measured
            elif not invalid and status == 200:
                load.window_chars += chars * answered
                if measured:
                    load.latencies.append(elapsed)
                    load.chars += chars
                    load.first_chars += [first] if stream else []
            else:
                load.errors.append(f"{status}: {body[:200]!r}")
    conn.close()


def heavy_client(port: int, load: Load, lock: threading.Lock, rows: list[dict[str, object]]) -> None:
    """One large request, again and again, from one client."""
    conn = Connection(port)
    while time.monotonic() < load.until:
        try:
            status, body = post(conn, rows)
        except OSError as err:
            status, body = 0, f"{type(err).__name__}: {err}".encode()
            conn.close()
            conn.open()
        with lock:
            if status == 200:
                load.heavy_done += 1
            else:
                load.errors.append(f"heavy {status}: {body[:200]!r}")
    conn.close()


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a process may end between the two calls
            total += proc.memory_info().rss
    return total


def thread_cpu_s(process: psutil.Process) -> dict[tuple[int, int], float]:
    """The CPU time of every thread of the process and its children, by process and thread id."""
    spent = {}
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            for thread in proc.threads():
                spent[proc.pid, thread.id] = thread.user_time + thread.system_time
    return spent


def model_cpu_s(before: dict[tuple[int, int], float], after: dict[tuple[int, int], float]) -> float:
    """What each process's busiest thread spent between the two readings, summed: under load, a
    worker's batching thread, the only one that runs the model."""
    busiest: dict[int, float] = {}
    for (pid, tid), seconds in after.items():
        busiest[pid] = max(busiest.get(pid, 0.0), seconds - before.get((pid, tid), 0.0))
    return sum(busiest.values())


def held_connections(server: psutil.Process) -> list[int]:
    """The established connections each worker holds (a worker: a process of the server's that
    listens and starts no other), most first."""
    held = []
    for proc in server.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            connections = proc.net_connections()
            if not proc.children() and any(c.status == psutil.CONN_LISTEN for c in connections):
                held.append(sum(c.status == psutil.CONN_ESTABLISHED for c in connections))
    return sorted(held, reverse=True)


def decoder_cpu_us_per_char(served: CharLMModel, streams: int, length: int, seconds: float) -> float:
    """The served model generating in this process with its own step, batches of `streams` rows of
    `length` characters after ROMEO:, one batch after another for `seconds` of CPU time: its CPU
    microseconds per character over them all (this machine's speed drifts within seconds, so a
    short measure beside a load's long one misleads)."""
    spent, chars, batch = 0.0, 0, 0
    while spent < seconds:
        options = [
            served.settings.sampling.model_copy(update={"length": length, "seed": batch * streams + s})
            for s in range(streams)
        ]
        begin = time.process_time()
        generate_all(
            served.loaded.net,
            served.loaded.vocab,
            [("ROMEO:", o) for o in options],
            net_step=served.batcher.net_step,
        )
        spent += time.process_time() - begin
        chars, batch = chars + streams * length, batch + 1
    return spent / chars * 1e6


def run_load(
    port: int,
    server: psutil.Process,
    clients: int,
    ramp_s: float,
    seconds: float,
    length: int,
    invalid_every: int,
    heavy: list[dict[str, object]] | None = None,
    stream: bool = False,
) -> Load:
    """`clients` light clients joining over `ramp_s`; with `heavy` (its request's rows), a heavy one first."""
    lock = threading.Lock()
    start = time.monotonic()
    load = Load(clients, since=start + ramp_s, until=start + ramp_s + seconds)
    threads = [
        threading.Thread(
            target=client,
            args=(port, load, lock, start + ramp_s * i / clients, length, invalid_every, stream),
        )
        for i in range(clients)
    ]
    if heavy is not None:
        threads.insert(0, threading.Thread(target=heavy_client, args=(port, load, lock, heavy)))
    for thread in threads:
        thread.start()
    # The threads' CPU times when the ramp ends and when the clients stop sending: the batch is
    # full between them (it fills during the ramp and empties as the last requests finish).
    readings = []
    for mark in (load.since, load.until):
        while (now := time.monotonic()) < mark:
            load.peak_rss = max(load.peak_rss, tree_rss(server))
            time.sleep(min(0.2, mark - now))
        readings.append(thread_cpu_s(server))
        load.held = load.held or held_connections(server)
    for thread in threads:
        thread.join()
    if heavy is None:  # else the heavy client's characters, not counted, would cost the light ones
        before, after = readings  # a thread that ended between them goes uncounted
        load.cpu_s = sum(after.values()) - sum(before.get(key, 0.0) for key in after)
        load.model_cpu_s = model_cpu_s(before, after)
    load.seconds = time.monotonic() - load.since
    return load


@contextlib.contextmanager
def serving(model: str, workers: int | None, threads: int) -> Iterator[tuple[int, psutil.Process]]:
    """`charlm serve` on a free loopback port until it answers; its port and process."""
    port = free_port()
    cmd, env = serve_command(model, "127.0.0.1", port, tracking_uri(), workers, threads)
    # Its own process group: `mlflow models serve` runs uvicorn, which runs the workers.
    server = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start: {' '.join(cmd)}") from None
                time.sleep(0.5)
        print(f"{model}: `{' '.join(cmd[1:])}`, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
        warm_up = Connection(port)
        post(warm_up, [{"prompt": "ROMEO:", "length": 20}])  # every code path once
        warm_up.close()
        yield port, psutil.Process(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def report(load: Load) -> None:
    done = len(load.latencies) + load.refused
    p50, p95 = np.percentile(load.latencies, [50, 95]) if load.latencies else (float("nan"),) * 2
    first = (
        "  first char p50 {:.3f} p95 {:.3f}".format(*np.percentile(load.first_chars, [50, 95]))
        if load.first_chars
        else ""
    )
    print(
        f"{load.clients:>7} {done / load.seconds:>7.1f} {load.chars / load.seconds:>9,.0f} {p50:>7.3f} {p95:>7.3f}"
        f" {load.refused:>5} {len(load.errors):>6} {load.peak_rss / 2**20:>6.0f} MiB"
        f" {f'{load.cpu_us_per_char:.1f}' if load.cpu_s and load.window_chars else '-':>9}"
        f" {f'{load.ceiling_us:.1f}' if load.ceiling_us else '-':>9}"
        f" {'/'.join(map(str, load.held)):>10}{first}"
    )
    for error in load.errors[:3]:
        print(f"        error {error}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=load_params(Params).registry.alias_uri)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration of each load")
    parser.add_argument("--ramp-s", type=float, default=2.0, help="clients join over this long first")
    parser.add_argument("--length", type=int, default=200, help="characters per request")
    parser.add_argument(
        "--invalid-every", type=int, default=10, help="every n-th request is invalid (0: none)"
    )
    parser.add_argument("--workers", type=int, help="server processes (default: charlm serve's)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per worker (default: charlm serve's)"
    )
    parser.add_argument("--light", type=int, default=8, help="light clients beside the heavy one")
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        choices=range(1, 101),
        metavar="1..100",
        help="pieces each non-streaming load runs in, the ceiling measured around each",
    )
    parser.add_argument(
        "--ceiling-s", type=float, default=2.5, help="CPU seconds of in-process generation each time"
    )
    args = parser.parse_args()

    header = f"{'clients':>7} {'req/s':>7} {'chars/s':>9} {'p50 s':>7} {'p95 s':>7} {'400s':>5} {'errors':>6} {'peak RSS':>9} {'CPU us/ch':>9} {'in-proc':>9} {'per worker':>10}"
    workers = args.workers or default_workers(args.threads)
    connect()
    served = mlflow.pyfunc.load_model(args.model).unwrap_python_model()  # as a worker loads it
    torch.set_num_threads(args.threads)
    loads = []
    with serving(args.model, args.workers, args.threads) as (port, server):
        print(
            f"requests of {args.length} characters; every {args.invalid_every}th invalid;"
            f" each load in {args.rounds} pieces of {args.seconds / args.rounds:g} s measured after a"
            f" {args.ramp_s:g}-s ramp (streams: one piece of {args.seconds:g} s)"
        )
        print(header)
        for clients in LOADS:
            rows = -(-clients // workers)
            ceilings, pieces = [decoder_cpu_us_per_char(served, rows, args.length, args.ceiling_s)], []
            for _ in range(args.rounds):
                pieces.append(
                    run_load(
                        port,
                        server,
                        clients,
                        args.ramp_s,
                        args.seconds / args.rounds,
                        args.length,
                        args.invalid_every,
                    )
                )
                ceilings.append(decoder_cpu_us_per_char(served, rows, args.length, args.ceiling_s))
            loads.append(Load.joined(pieces, tuple(ceilings)))
            report(loads[-1])
        print("streaming (POST /stream), the same requests:")
        streams = {}
        for clients in STREAM_LOADS:
            streams[clients] = run_load(
                port, server, clients, args.ramp_s, args.seconds, args.length, args.invalid_every, stream=True
            )
            report(streams[clients])

    limits = load_params(Params).limits
    rows, prompt = limits.max_request_rows, "ROMEO:"
    length = limits.max_request_chars // rows - len(prompt)  # prompts count in the request's characters
    longest = ("ROMEO: Good morrow.\n" * (limits.max_prompt_chars // 20 + 1))[: limits.max_prompt_chars]
    for title, request in (
        (
            f"{rows} texts x {length} characters",
            [{"prompt": prompt, "length": length, "seed": n} for n in range(rows)],
        ),
        (f"a prompt of {len(longest):,} characters", [{"prompt": longest, "length": 10, "seed": 0}]),
    ):
        print(f"\none heavy client ({title} a request) among {args.light} light clients:")
        with serving(args.model, 1, args.threads) as (port, server):
            print(header)
            heavy = run_load(port, server, args.light, args.ramp_s, args.seconds, args.length, 0, request)
            report(heavy)
        print(
            f"heavy requests answered: {heavy.heavy_done}; light p95 {np.percentile(heavy.latencies, 95):.3f} s"
        )
    print()

    one, eight, first32, second32 = loads
    p95_ratio = np.percentile(eight.latencies, 95) / np.percentile(one.latencies, 50)
    print(
        f"8 clients:  {eight.chars_per_s / one.chars_per_s:.1f}x the 1-client chars/s; p95 {p95_ratio:.2f}x the 1-client p50"
    )
    print(
        f"32 clients: {first32.chars_per_s / one.chars_per_s:.1f}x, then {second32.chars_per_s / one.chars_per_s:.1f}x"
        " the 1-client chars/s"
    )
    print(
        f"peak RSS over the two 32-client loads: {first32.peak_rss / 2**20:.0f} MiB, then {second32.peak_rss / 2**20:.0f} MiB"
    )
    for clients, plain in ((8, eight), (32, first32)):
        print(
            f"{clients} streaming clients: {streams[clients].chars_per_s / plain.chars_per_s:.2f}x the non-streaming chars/s"
        )
    for load in loads:
        if not load.window_chars or not load.cpu_s:
            print(f"{load.clients} clients: no character answered in the measured span")
            continue
        print(
            f"{load.clients} clients: server CPU per character {load.cpu_us_per_char / load.ceiling_us:.2f}x the"
            f" in-process Decoder's ({served.settings.limits.precision} step, {-(-load.clients // workers)}"
            f" rows; {load.cpu_us_per_char:.1f} against {load.ceiling_us:.1f} us, around the pieces"
            f" {', '.join(f'{c:.1f}' for c in load.ceilings)}); the batching threads"
            f" {load.model_cpu_s / load.window_chars * 1e6 / load.ceiling_us:.2f}x, the rest of the server"
            f" {1 - load.model_cpu_s / load.cpu_s:.1%} of its CPU"
        )


if __name__ == "__main__":
    main()
