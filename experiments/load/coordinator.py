"""The swarm's coordinator: builds the population through the REST API, then drives worker processes.

Registration of thousands of users goes through the real ``/api/auth/register`` (so the server under test needs
cheap argon2 settings: time cost 1, 1 MiB, parallelism 1; the experiment base config sets them), friendships
through ``/api/friends/requests`` and groups through ``/api/groups``, concurrently but bounded.
"""

from __future__ import annotations

import asyncio
import functools
import math
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import orjson
from hdrh.histogram import HdrHistogram

from experiments.load.spec import Population
from experiments.load.swarm import Credential, new_histogram

PASSWORD = "load-password-1"  # noqa: S105 - a throwaway password for generated load users


class SetupError(RuntimeError):
    pass


async def _call(http: httpx.AsyncClient, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for attempt in range(8):
        resp = await http.request(method, path, headers=headers, **kw)
        if resp.status_code == 429:  # login/registration throttles: back off as told
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")) * (1 + attempt / 4))
            continue
        if resp.status_code >= 400:
            raise SetupError(f"{method} {path} -> {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else None
    raise SetupError(f"{method} {path}: still rate limited after retries")


async def _bounded(limit: int, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Any]) -> Any:
        async with sem:
            return await job()

    return await asyncio.gather(*(run(j) for j in jobs))


def ring_pairs(n: int, friends_per_user: int) -> list[tuple[int, int]]:
    """Each user befriends its next ``friends_per_user // 2`` ring neighbours (at least one when asked)."""
    k = max(1, friends_per_user // 2) if friends_per_user else 0
    pairs = {(i, (i + d) % n) for i in range(n) for d in range(1, k + 1) if (i + d) % n != i}
    return sorted({(min(a, b), max(a, b)) for a, b in pairs})


def group_slices(n: int, groups: int, size: int) -> list[list[int]]:
    """Groups of consecutive users, wrapping around the population."""
    return [[(g * size + j) % n for j in range(size)] for g in range(groups)]


async def prepare_population(
    base_url: str,
    pop: Population,
    *,
    prefix: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Credential]:
    """Register ``pop.users`` users, befriend them along the ring, create the groups; return credentials."""
    prefix = prefix or f"u{secrets.token_hex(3)}"
    say = progress or (lambda _: None)
    limits = httpx.Limits(
        max_connections=pop.setup_concurrency, max_keepalive_connections=pop.setup_concurrency
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=120.0, limits=limits) as http:
        t0 = time.monotonic()

        async def register(i: int) -> dict[str, Any]:
            body = {"username": f"{prefix}_{i}", "password": PASSWORD, "device": f"d{i}"}
            out: dict[str, Any] = await _call(http, "POST", "/api/auth/register", json=body)
            return out

        regs = await _bounded(
            pop.setup_concurrency, [functools.partial(register, i) for i in range(pop.users)]
        )
        say(f"registered {pop.users} users in {time.monotonic() - t0:.1f} s")
        ids = [r["user"]["id"] for r in regs]
        tokens = [r["access_token"] for r in regs]
        directs: list[list[str]] = [[] for _ in range(pop.users)]
        groups: list[list[str]] = [[] for _ in range(pop.users)]

        def conv(a: int, b: int) -> str:
            lo, hi = sorted((int(ids[a]), int(ids[b])))
            return f"d:{lo}:{hi}"

        async def befriend(a: int, b: int) -> None:
            req = await _call(http, "POST", "/api/friends/requests", tokens[a], json={"user_id": ids[b]})
            if req["status"] != "pending":
                return
            # Under concurrent setup the node's SQLite reader can briefly miss a request the writer just
            # committed (read-after-write across connections); retry the accept for a moment before failing.
            for attempt in range(40):
                try:
                    await _call(http, "POST", f"/api/friends/requests/{req['id']}/accept", tokens[b])
                    return
                except SetupError as exc:
                    if "-> 404" not in str(exc) or attempt == 39:
                        raise
                    await asyncio.sleep(0.05)

        social = min(pop.social_users or pop.users, pop.users)
        pairs = ring_pairs(social, pop.friends_per_user) if social >= 2 else []
        slices = group_slices(pop.users, pop.groups, pop.group_size) if pop.groups else []
        # group owners must be friends with every member they add
        owner_pairs = {(s[0], m) for s in slices for m in s[1:]}
        all_pairs = sorted(set(pairs) | {(min(a, b), max(a, b)) for a, b in owner_pairs})
        t1 = time.monotonic()
        await _bounded(pop.setup_concurrency, [functools.partial(befriend, a, b) for a, b in all_pairs])
        for a, b in pairs:
            directs[a].append(conv(a, b))
            directs[b].append(conv(a, b))
        say(f"{len(all_pairs)} friendships in {time.monotonic() - t1:.1f} s")

        async def make_group(g: int, members: list[int]) -> None:
            out = await _call(
                http,
                "POST",
                "/api/groups",
                tokens[members[0]],
                json={"name": f"g{g}", "members": [ids[m] for m in members[1:]]},
            )
            for m in members:
                groups[m].append(out["conv"])

        await _bounded(8, [functools.partial(make_group, g, s) for g, s in enumerate(slices)])
        if slices:
            say(f"{len(slices)} groups of {pop.group_size}")
        extra: dict[tuple[int, int], str] = {}  # (user, device number) -> access token of that device

        async def login(i: int, k: int) -> None:
            body = {"username": f"{prefix}_{i}", "password": PASSWORD, "device": f"d{i}x{k}"}
            extra[(i, k)] = (await _call(http, "POST", "/api/auth/login", json=body))["access_token"]

        if pop.devices_per_user > 1:
            t2 = time.monotonic()
            await _bounded(
                pop.setup_concurrency,
                [
                    functools.partial(login, i, k)
                    for i in range(pop.users)
                    for k in range(1, pop.devices_per_user)
                ],
            )
            say(
                f"{pop.users * (pop.devices_per_user - 1)} more devices logged in in {time.monotonic() - t2:.1f} s"
            )
    # Client index = user * devices + device number: a user's devices sit side by side in the ledgers.
    return [
        Credential(
            i * pop.devices_per_user + k,
            ids[i],
            f"{prefix}_{i}",
            tokens[i] if k == 0 else extra[(i, k)],
            f"d{i}" if k == 0 else f"d{i}x{k}",
            directs[i],
            groups[i],
        )
        for i in range(pop.users)
        for k in range(pop.devices_per_user)
    ]


def source_addresses(connections: int, configured: int = 0) -> list[str]:
    """127.0.0.2 .. : loopback runs out of ephemeral ports near 28k connections per source address."""
    n = configured or max(1, math.ceil(connections / 10_000))
    return [f"127.0.0.{2 + i}" for i in range(n)]


def merge_histograms(encoded: Sequence[str]) -> HdrHistogram:
    total = new_histogram()
    for e in encoded:
        total.add(HdrHistogram.decode(e.encode()))
    return total


def percentiles_ms(h: HdrHistogram, ps: Sequence[float] = (50, 90, 99, 99.9)) -> dict[str, float | None]:
    """Percentiles in milliseconds (None when empty), plus n."""
    n = h.get_total_count()
    out: dict[str, float | None] = {"n": float(n)}
    for p in ps:
        key = f"p{p:g}".replace(".", "_")
        out[key] = h.get_value_at_percentile(p) / 1000 if n else None
    out["max"] = h.get_max_value() / 1000 if n else None
    return out


class WorkerPool:
    """Swarm worker subprocesses (``python -m experiments.load.worker``), one JSON command line at a time."""

    def __init__(self, count: int, log_dir: Path) -> None:
        self.count = count
        self.log_dir = log_dir
        self.procs: list[asyncio.subprocess.Process] = []
        self._logs: list[Any] = []

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            fh = (self.log_dir / f"worker{i}.log").open("ab")
            self._logs.append(fh)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "experiments.load.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=fh,
                limit=1 << 30,
            )
            self.procs.append(proc)

    async def _one(self, proc: asyncio.subprocess.Process, cmd: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(orjson.dumps(cmd) + b"\n")
        await proc.stdin.drain()
        line = await proc.stdout.readline()
        if not line:
            raise SetupError(f"swarm worker {proc.pid} exited (see {self.log_dir}/worker*.log)")
        answer: dict[str, Any] = orjson.loads(line)
        if not answer.get("ok"):
            raise SetupError(f"swarm worker {proc.pid}: {answer.get('error')}")
        return answer

    async def call(self, make: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
        """Send each worker its command (``make(worker_index)``) and gather the answers."""
        return await asyncio.gather(*(self._one(p, make(i)) for i, p in enumerate(self.procs)))

    async def setup(
        self,
        ws_urls: str | list[str],
        creds: list[Credential],
        addrs: list[str],
        workload: dict[str, Any],
        seed: int = 0,
    ) -> None:
        shards = [creds[i :: self.count] for i in range(self.count)]
        await self.call(
            lambda i: {
                "cmd": "setup",
                "ws_urls": [ws_urls] if isinstance(ws_urls, str) else ws_urls,
                "clients": [asdict(c) for c in shards[i]],
                "source_addrs": addrs,
                "workload": workload,
                "seed": seed * 1000 + i,
            }
        )

    async def close(self) -> None:
        for p in self.procs:
            if p.returncode is None:
                try:
                    await asyncio.wait_for(self._one(p, {"cmd": "close"}), 30)
                except (SetupError, TimeoutError, BrokenPipeError, ConnectionResetError):
                    pass
        for p in self.procs:
            if p.returncode is None:
                try:
                    await asyncio.wait_for(p.wait(), 10)
                except TimeoutError:
                    p.kill()
                    await p.wait()
        for fh in self._logs:
            fh.close()
