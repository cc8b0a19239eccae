"""Presence and device-session registry shared by a cluster, in Redis.

Layout (``p`` is the configured prefix; ``{...}`` is a Redis Cluster hash tag, so every script touches one slot):

* ``p:u:{<user>}`` hash: device -> the *registration* holding it, ``<node>#<boot token>.<epoch>``;
* ``p:nd:{<registration>}`` set: ``<user>:<device>`` entries a registration added (its clean-up list);
* ``{p}:nodes`` sorted set: registration -> lease expiry (Redis server time, ms); ``{p}:dead`` set: registrations
  being reaped;
* ``p:id:{<n>}`` string: the registration's boot id holding snowflake node id ``n`` (SET NX with a TTL).

Why a lease per node and not per device: the node's own heartbeat loop renews one key every ``renew_s``
(O(1) per node), instead of one Redis write per device per heartbeat (10,000 devices at 30 s would be 333
writes/s for nothing). A live node already reaps its silent devices itself (missed heartbeats close the socket,
which unregisters the device); what it cannot do is report its own death, and that is what the lease covers —
faster (``node_lease_s`` + ``renew_s``, 13 s by default) than device leases at 2 x 30 s would.

How it behaves under races (all of it follows from Redis running each script atomically):

* Flips: ``device_online`` and ``device_offline`` are one script each on the user's hash. Whatever the
  interleaving of nodes, exactly one call sees the hash go from empty to non-empty (reported online) and one
  from non-empty to empty (reported offline).
* A device that moves (reconnects to node B before node A noticed its socket died): B overwrites the device's
  entry with its registration; A's later ``device_offline`` only removes an entry that still names A's
  registration, so it does nothing and the user never flickers offline.
* A dead node: sweepers (every node runs one) atomically *claim* registrations whose lease is past due (moving
  their expiry ``reap_timeout_s`` ahead and marking them dead, so two sweepers never reap the same one, and one
  that dies mid-way is replaced); the claimer removes each of its devices with the same conditional script, so
  devices that already reconnected elsewhere are kept and users that lost their last device are reported once,
  on the claiming node (``on_changed(users, False)``), which pushes presence.
* A live node whose lease was claimed (it stalled or was partitioned for longer than the lease) finds itself
  dead on its next renewal: it takes a new registration (next epoch), re-registers every device it holds (users
  that this brings back are reported online), and calls ``on_gap`` so its devices resync — messages routed while
  it was gone did not reach it. A node whose writes failed while Redis was unreachable does the same once Redis
  answers (a write may or may not have landed; re-registering is idempotent). Redis restarted empty: the same.
* Crash safety of the two keys a registration writes: the clean-up set entry is written before the device entry
  and removed after it, so a crash between the two leaves at most a clean-up entry that finds nothing to remove.
* Routing: ``nodes_of`` reads the hashes; a message stored after a device's registration finished is routed to
  its node (the registration completes before the device can sync). A dead node's entries may still be named
  until reaped: an extra publish to a node that is gone, never a missed one.
* Presence pushes are sent by whichever node saw the flip; two flips of one user published by two nodes may
  reach a third node's devices in either order (no global order across publishers), so a friend can briefly show
  a stale state until the next flip or a REST read, which is always current.

Time: leases use Redis server time (``TIME`` inside the scripts), never the nodes' clocks, so clock skew between
nodes cannot expire a live node early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from strategies import _redis
from strategies._aio import cancel_and_wait
from strategies.context import StrategyContext
from strategies.presence.base import ChangeHandler, GapHandler, NodeIdHandler, PresenceUnavailable
from strategies.presence.config import RedisPresenceConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"

# KEYS[1] user hash; ARGV device, registration -> 1 if the user had no device before
_ONLINE = """
local n = redis.call('HLEN', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if n == 0 then return 1 end
return 0
"""

# KEYS[1] user hash; ARGV device, registration -> 0 not ours (kept), 1 removed, 2 removed and it was the last
_OFFLINE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then return 2 end
return 1
"""

# KEYS nodes, dead; ARGV registration, lease_ms -> 1 renewed, 0 lost (claimed or gone)
_RENEW = (
    _NOW
    + """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS nodes; ARGV registration, lease_ms
_JOIN = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS nodes, dead; ARGV reap_timeout_ms, limit -> registrations claimed by this caller
_CLAIM = (
    _NOW
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('SADD', KEYS[2], m)
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), m)
end
return due
"""
)

# KEYS id key; ARGV owner, ttl_ms -> 1 renewed, 0 lost
_ID_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS id key; ARGV owner
_ID_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_ERRORS = (RedisError, OSError, TimeoutError)


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def node_of(registration: str) -> str:
    return registration.rsplit("#", 1)[0]


class RedisPresence:
    """See the module docstring: per-user device hashes, per-node leases renewed by the node, atomic flips."""

    node_local = False

    def __init__(self, config: RedisPresenceConfig, ctx: StrategyContext) -> None:
        self._cfg = config
        self._metrics = ctx.metrics
        p = config.prefix
        self._k_nodes = f"{{{p}}}:nodes"
        self._k_dead = f"{{{p}}}:dead"
        self._r: aioredis.Redis | None = None
        self._node = ""
        self._boot = ""
        self._epoch = 0
        self._reg = ""
        self._held: set[tuple[int, str]] = set()  # devices this node holds: the truth a rollover re-asserts
        self._dirty = False
        self._stable = asyncio.Event()
        self._stable.set()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._on_gap: GapHandler | None = None
        self._on_changed: ChangeHandler | None = None
        self._node_id: int | None = None
        self._id_count = 0
        self._on_id_change: NodeIdHandler | None = None
        self._scripts: dict[str, Any] = {}

    # ---------------------------------------------------------------- keys
    def _k_user(self, user: int) -> str:
        return f"{self._cfg.prefix}:u:{{{user}}}"

    def _k_devs(self, registration: str) -> str:
        return f"{self._cfg.prefix}:nd:{{{registration}}}"

    def _k_id(self, n: int) -> str:
        return f"{self._cfg.prefix}:id:{{{n}}}"

    @property
    def registration(self) -> str:
        return self._reg

    @property
    def redis(self) -> aioredis.Redis:
        if self._r is None:
            raise RuntimeError("presence registry not started")
        return self._r

    def _script(self, name: str) -> Any:
        return self._scripts[name]

    # ---------------------------------------------------------------- lifecycle
    async def start(self, node: str, on_gap: GapHandler, on_changed: ChangeHandler) -> None:
        cfg = self._cfg
        self._r = aioredis.Redis.from_url(
            cfg.url, socket_timeout=cfg.timeout_s, socket_connect_timeout=cfg.timeout_s, decode_responses=True
        )
        for name, lua in (
            ("online", _ONLINE),
            ("offline", _OFFLINE),
            ("renew", _RENEW),
            ("join", _JOIN),
            ("claim", _CLAIM),
            ("id_renew", _ID_RENEW),
            ("id_release", _ID_RELEASE),
        ):
            self._scripts[name] = self._r.register_script(lua)
        self._node = node
        self._on_gap = on_gap
        self._on_changed = on_changed
        self._boot = f"{node}#{secrets.token_hex(4)}"
        self._epoch = 0
        self._reg = f"{self._boot}.0"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.start_timeout_s
        while True:
            try:
                await self._script("join")(keys=[self._k_nodes], args=[self._reg, self._lease_ms])
                break
            except _ERRORS as exc:
                if loop.time() > deadline:
                    await self._r.aclose()
                    self._r = None
                    raise ConnectionError(f"redis presence: cannot reach {cfg.url}: {exc!r}") from None
                await asyncio.sleep(min(1.0, cfg.renew_s))
        self._task = asyncio.create_task(self._renew_loop(), name="redis-presence")

    @property
    def _lease_ms(self) -> int:
        return int(self._cfg.node_lease_s * 1000)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._r is None:
            return
        # Leave nothing half-alive: make the registration due now, so the next sweep (any node) removes whatever
        # devices are still listed and pushes their users' offline presence; free the node id at once. Each step
        # has a deadline: a Redis that stopped answering must not hold a shutdown (a 300 s hang was seen in CI);
        # the lease then runs out on its own.
        with contextlib.suppress(*_ERRORS):  # _ERRORS includes TimeoutError
            async with asyncio.timeout(self._cfg.timeout_s):
                async with self._r.pipeline(transaction=False) as pipe:
                    pipe.zadd(self._k_nodes, {self._reg: 0})
                    if self._node_id is not None:
                        await self._script("id_release")(
                            keys=[self._k_id(self._node_id)], args=[self._boot], client=pipe
                        )
                    await pipe.execute()
        await _redis.close(self._r, self._cfg.timeout_s)
        self._r = None
        self._held.clear()

    # ---------------------------------------------------------------- writes
    async def _write(self, op: Callable[[], Awaitable[T]], default: T) -> T:
        """Run a registration write unless a rollover is re-asserting devices; failures mark the node dirty."""
        while not self._stable.is_set():
            await self._stable.wait()
        self._inflight += 1
        self._idle.clear()
        try:
            return await op()
        except _ERRORS as exc:
            self._dirty = True
            log.warning("presence write failed (%r); devices are re-registered when Redis answers", exc)
            return default
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def device_online(self, user: int, device: str, node: str) -> bool:
        self._held.add((user, device))

        async def op() -> bool:
            reg = self._reg
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(self._k_devs(reg), f"{user}:{device}")
                await self._script("online")(keys=[self._k_user(user)], args=[device, reg], client=pipe)
                result = await pipe.execute()
            return bool(result[1] == 1)

        return await self._write(op, False)

    async def device_offline(self, user: int, device: str, node: str) -> bool:
        self._held.discard((user, device))

        async def op() -> bool:
            reg = self._reg
            async with self.redis.pipeline(transaction=False) as pipe:
                await self._script("offline")(keys=[self._k_user(user)], args=[device, reg], client=pipe)
                pipe.srem(self._k_devs(reg), f"{user}:{device}")
                result = await pipe.execute()
            return bool(result[0] == 2)

        return await self._write(op, False)

    async def refresh(self, user: int, device: str, node: str) -> None:
        """Nothing to write: the node's lease covers its devices (see the module docstring)."""

    # ---------------------------------------------------------------- reads
    async def _read(self, users: Iterable[int], command: str) -> list[tuple[int, Any]]:
        ids = list(dict.fromkeys(users))
        if not ids:
            return []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for u in ids:
                    getattr(pipe, command)(self._k_user(u))
                results = await pipe.execute()
        except _ERRORS as exc:
            raise PresenceUnavailable(f"presence registry unreachable: {exc!r}") from None
        return list(zip(ids, results, strict=True))

    async def online_devices(self, users: Iterable[int]) -> dict[int, int]:
        return {u: int(n) for u, n in await self._read(users, "hlen") if n}

    async def nodes_of(self, users: Iterable[int]) -> dict[int, set[str]]:
        return {u: {node_of(r) for r in regs} for u, regs in await self._read(users, "hvals") if regs}

    # ---------------------------------------------------------------- node ids
    async def lease_node_id(self, id_count: int, on_change: NodeIdHandler) -> int | None:
        self._id_count = id_count
        self._on_id_change = on_change
        self._node_id = await self._acquire_id()
        return self._node_id

    async def _acquire_id(self) -> int:
        """First free id from a stable starting point (a node keeps its id across restarts when it is free)."""
        n = self._id_count
        start = zlib.crc32(self._node.encode()) % n
        ttl_ms = int(self._cfg.node_id_lease_s * 1000)
        for i in range(n):
            candidate = (start + i) % n
            if await self.redis.set(self._k_id(candidate), self._boot, nx=True, px=ttl_ms):
                return candidate
        raise RuntimeError(f"all {n} snowflake node ids are leased by live nodes")

    async def _renew_id(self) -> None:
        if self._node_id is None:
            return
        ttl_ms = int(self._cfg.node_id_lease_s * 1000)
        ok = await self._script("id_renew")(keys=[self._k_id(self._node_id)], args=[self._boot, ttl_ms])
        if ok == 1:
            return
        old = self._node_id
        self._node_id = await self._acquire_id()
        log.warning("snowflake node id lease %d was lost; now %d", old, self._node_id)
        if self._on_id_change is not None:
            self._on_id_change(self._node_id)

    # ---------------------------------------------------------------- renewal, sweeping, rollover
    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cfg.renew_s)
            try:
                await self.tick()
            except _ERRORS as exc:
                log.warning("presence renewal failed (%r); retrying in %.1f s", exc, self._cfg.renew_s)
            except Exception:
                log.exception("presence renewal failed")

    async def tick(self) -> None:
        """One renewal round (public so tests can drive it without waiting for the timer)."""
        if self._dirty:
            await self._rollover("registrations may be missing after Redis was unreachable")
        else:
            renewed = await self._script("renew")(
                keys=[self._k_nodes, self._k_dead], args=[self._reg, self._lease_ms]
            )
            if renewed != 1:
                await self._rollover("this node's presence lease ran out")
        await self._renew_id()
        await self.sweep()

    async def sweep(self) -> list[int]:
        """Claim and reap registrations whose lease ran out; report the users that went offline."""
        cfg = self._cfg
        claimed: list[str] = await self._script("claim")(
            keys=[self._k_nodes, self._k_dead], args=[int(cfg.reap_timeout_s * 1000), 16]
        )
        offline: list[int] = []
        for reg in claimed:
            if reg == self._reg:
                continue  # our own renewal will find it dead and roll over
            offline += await self._reap(reg)
        if offline and self._on_changed is not None:
            await self._on_changed(offline, False)
        return offline

    async def _reap(self, reg: str) -> list[int]:
        """Remove every device still held by ``reg`` (only entries that still name it) and retire it."""
        r = self.redis
        key = self._k_devs(reg)
        entries = [e async for e in r.sscan_iter(key, count=self._cfg.batch)]
        offline: list[int] = []
        removed = 0
        for chunk in _chunks(entries, self._cfg.batch):
            async with r.pipeline(transaction=False) as pipe:
                users = []
                for entry in chunk:
                    user_s, _, device = entry.partition(":")
                    users.append(int(user_s))
                    await self._script("offline")(
                        keys=[self._k_user(int(user_s))], args=[device, reg], client=pipe
                    )
                results = await pipe.execute()
            for user, result in zip(users, results, strict=True):
                removed += result > 0
                if result == 2:
                    offline.append(user)
        async with r.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            pipe.srem(self._k_dead, reg)
            pipe.zrem(self._k_nodes, reg)
            await pipe.execute()
        self._metrics.presence_expired.inc(removed)
        if removed:
            log.info("presence: removed %d device(s) of %s (lease ran out)", removed, reg)
        return list(dict.fromkeys(offline))

    async def _rollover(self, reason: str) -> None:
        """Take a new registration, re-register every held device under it, retire the old one."""
        self._stable.clear()
        try:
            await self._idle.wait()
            r = self.redis
            old = self._reg
            self._epoch += 1
            self._reg = reg = f"{self._boot}.{self._epoch}"
            self._dirty = True  # until this completes
            await self._script("join")(keys=[self._k_nodes], args=[reg, self._lease_ms])
            back_online: list[int] = []
            for chunk in _chunks(sorted(self._held), self._cfg.batch):
                async with r.pipeline(transaction=False) as pipe:
                    for user, device in chunk:
                        pipe.sadd(self._k_devs(reg), f"{user}:{device}")
                        await self._script("online")(
                            keys=[self._k_user(user)], args=[device, reg], client=pipe
                        )
                    results = await pipe.execute()
                back_online += [u for (u, _), res in zip(chunk, results[1::2], strict=True) if res == 1]
            self._dirty = False
        finally:
            self._stable.set()
        log.warning("presence: %s; re-registered %d device(s) as %s", reason, len(self._held), reg)
        gone: list[int] = []
        try:
            gone = await self._reap(old)
        except _ERRORS:
            pass  # the old registration is no longer renewed: a sweeper reaps it once its lease runs out
        if self._on_changed is not None:
            if back_online:
                await self._on_changed(list(dict.fromkeys(back_online)), True)
            if gone:
                await self._on_changed(gone, False)
        if self._on_gap is not None:
            await self._on_gap(f"presence: {reason}")
