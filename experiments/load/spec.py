"""What a load run is made of: the population (users, friendships, groups), the workload each client runs, and
the client-side faults. Shared by the experiment config (YAML), the swarm workers and the Locust driver.

Every model forbids unknown keys so a typo in an experiment file fails with the key's path instead of being
silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OldHistory(_Spec):
    """Old messages written into every conversation of the population before the load (through the cell's
    message store, as the server would have stored them), their timestamps spread evenly from ``oldest_days`` ago
    to now, oldest first. With tiering on, the tier job then moves what is due to the warm and cold tiers, so
    history reads meet every tier (experiments/tiering.yaml)."""

    messages_per_conversation: Annotated[int, Field(ge=1, le=100_000)] = 300
    oldest_days: Annotated[float, Field(gt=0, le=3650)] = 360.0


class Population(_Spec):
    """Who takes part. Users are befriended along a ring (each with ``friends_per_user`` neighbours) so every
    user has 1:1 conversations; groups are made of consecutive users, created by their first member."""

    users: Annotated[int, Field(ge=2, le=200_000)] = 100
    friends_per_user: Annotated[int, Field(ge=0, le=50)] = 2
    # Only the first ``social_users`` users get ring friendships (0: everyone); the rest only connect (idle
    # connection counts need no social graph, and building one costs two REST calls per friendship).
    social_users: Annotated[int, Field(ge=0)] = 0
    groups: Annotated[int, Field(ge=0)] = 0
    group_size: Annotated[int, Field(ge=2, le=5000)] = 20
    # Devices (clients, connections) per user: the first registers, the others log in as devices of their own.
    # A message is expected on every device of every member but the sending one, the sender's other devices
    # included; rates, windows and faults apply per device.
    devices_per_user: Annotated[int, Field(ge=1, le=8)] = 1
    # Connections are opened at most this fast (a real population does not connect in one instant).
    connect_rate_per_s: Annotated[float, Field(gt=0)] = 1000.0
    # Client sockets are spread over 127.0.0.2 .. 127.0.0.(1+n): loopback has ~28k ephemeral ports per source
    # address. 0: one address per 10,000 connections.
    source_addresses: Annotated[int, Field(ge=0, le=250)] = 0
    # Swarm worker processes (the swarm's Python loop is single-core; 2 processes drive ~2x).
    workers: Annotated[int, Field(ge=1, le=16)] = 1
    # Concurrent REST calls while registering users and building the social graph.
    setup_concurrency: Annotated[int, Field(ge=1, le=512)] = 32
    # Old messages in every conversation before the load starts (None: conversations start empty).
    history: OldHistory | None = None

    @property
    def clients(self) -> int:
        """Connections the population opens (users x devices)."""
        return self.users * self.devices_per_user

    @model_validator(mode="after")
    def _groups_fit(self) -> Population:
        if self.groups and self.group_size > self.users:
            raise ValueError(f"group_size {self.group_size} is larger than users {self.users}")
        return self


class Workload(_Spec):
    """What each client does once connected. Open loop (``rate_per_user_per_s`` with think time) models chat
    users; closed loop (``window``: keep that many messages awaiting their ack) measures capacity."""

    duration_s: Annotated[float, Field(gt=0)] = 30.0
    # Open loop: mean messages per second per sending user; 0 makes the clients idle (heartbeats only).
    rate_per_user_per_s: Annotated[float, Field(ge=0)] = 0.2
    think: Literal["poisson", "fixed"] = "poisson"
    # Closed loop: each sender keeps this many sends unacknowledged at once (overrides the rate).
    window: Annotated[int, Field(ge=1, le=1000)] | None = None
    senders_fraction: Annotated[float, Field(ge=0, le=1)] = 1.0
    # Share of sends that go to one of the user's groups (the rest go to a friend).
    group_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    text_bytes: Annotated[int, Field(ge=16, le=4000)] = 48
    # Send message.read after this many messages released in a conversation (0: never).
    read_every: Annotated[int, Field(ge=0)] = 10
    # Client-side resend of an unacknowledged message with the same cmid (what the SDK does).
    ack_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    max_resends: Annotated[int, Field(ge=0, le=20)] = 3
    # A flaky client: this fraction of sends is written twice with the same cmid (tests de-duplication).
    duplicate_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    # Open loop: sends awaiting their ack beyond which a client skips its turn (back-pressure).
    max_inflight: Annotated[int, Field(ge=1)] = 100
    # Heartbeat interval; None uses the server's (auth.ok heartbeat_s).
    heartbeat_s: Annotated[float, Field(gt=0)] | None = None
    # Reconnect backoff: exponential with full jitter.
    reconnect_base_s: Annotated[float, Field(gt=0)] = 0.25
    reconnect_cap_s: Annotated[float, Field(gt=0)] = 10.0
    # After the load stops: wait up to this long for outstanding acks and deliveries before measuring.
    drain_s: Annotated[float, Field(ge=0)] = 15.0
    # The drain ends early once nothing was received for this long (and nothing awaits an ack). It must outlast
    # the longest stall a fault can cause, or a message still in a stalled connection is counted as lost; the
    # runner raises it to the proxy's stall_ms + 1 s.
    drain_quiet_s: Annotated[float, Field(ge=0.1)] = 3.0
    # History reads: each client asks for a page of an older part of one of its conversations (REST
    # ``GET /api/conversations/{conv}/messages?before=..``) this often on average (Poisson; 0: never). ``before`` is
    # uniform over 2 .. history_span + 1, so with ``population.history`` the pages cover every age evenly; 0 takes
    # the seeded messages per conversation (and without them, the newest page).
    history_rate_per_user_per_s: Annotated[float, Field(ge=0)] = 0.0
    history_page: Annotated[int, Field(ge=1, le=200)] = 50
    # Reads in flight per swarm worker beyond which a due read is skipped (ledger status -1) rather than queued in
    # the client's connection pool, where its wait would be the client's, not the server's (one pooled
    # connection each: the pool never queues).
    # This cap covers every REST call of the swarm (the history pages and the account reads below).
    history_max_inflight: Annotated[int, Field(ge=1, le=1024)] = 64
    history_span: Annotated[int, Field(ge=0)] = 0
    # Account reads and writes over REST, per client (Poisson; 0: never), timed like history reads into the
    # ledger's ``rest`` table: the reads a user store's replica serves (docs/database.md) and the writes that pin
    # a user's reads to the primary for a while (read-your-writes). ``search``: ``GET /api/users/search`` with a
    # prefix of another client's username; ``requests``: ``GET /api/friends/requests``; ``befriend``:
    # ``POST /api/friends/requests`` to another client of the same worker (409, already asked or friends, is an
    # answer, not an error).
    search_rate_per_user_per_s: Annotated[float, Field(ge=0)] = 0.0
    requests_rate_per_user_per_s: Annotated[float, Field(ge=0)] = 0.0
    befriend_rate_per_user_per_s: Annotated[float, Field(ge=0)] = 0.0


class DropFault(_Spec):
    """A fraction of connections aborted at once (TCP reset, no close handshake); clients reconnect and sync."""

    type: Literal["drop"] = "drop"
    at_s: Annotated[float, Field(ge=0)]
    fraction: Annotated[float, Field(gt=0, le=1)] = 0.1
    every_s: Annotated[float, Field(gt=0)] | None = None
    count: Annotated[int, Field(ge=1)] = 1


class StormFault(_Spec):
    """A disconnect storm: (by default) every connection aborted together, ``count`` times, ``every_s`` apart.
    The reconnect herd is the point: it measures reconnect success and time under a thundering herd."""

    type: Literal["storm"] = "storm"
    at_s: Annotated[float, Field(ge=0)]
    fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    every_s: Annotated[float, Field(gt=0)] = 10.0
    count: Annotated[int, Field(ge=1)] = 1


class OfflineFault(_Spec):
    """A fraction of users close cleanly and stay away ``for_s``; messages sent to them meanwhile must arrive
    when they come back (offline push = sync from cursors)."""

    type: Literal["offline"] = "offline"
    at_s: Annotated[float, Field(ge=0)]
    fraction: Annotated[float, Field(gt=0, le=1)] = 0.2
    for_s: Annotated[float, Field(gt=0)] = 10.0


class NodeKillFault(_Spec):
    """Kill the server process (SIGKILL, or SIGTERM for a graceful stop) and start it again on the same port
    and data after ``down_s``."""

    type: Literal["node_kill"] = "node_kill"
    at_s: Annotated[float, Field(ge=0)]
    down_s: Annotated[float, Field(ge=0)] = 2.0
    signal: Literal["kill", "term"] = "kill"
    node: Annotated[int, Field(ge=0)] = 0


class BackendRestartFault(_Spec):
    """Restart a backend the experiment started itself (never a shared system service): it must be listed under
    the experiment's ``backends`` (experiments/faults/backends.py)."""

    type: Literal["backend_restart"] = "backend_restart"
    at_s: Annotated[float, Field(ge=0)]
    backend: Literal["redis", "mariadb", "rabbitmq", "mongo"]
    # which of its server processes: "replica" needs a backend started with one (backends.mariadb.replica)
    part: Literal["primary", "replica"] = "primary"
    down_s: Annotated[float, Field(ge=0)] = 2.0


ClientFault = DropFault | StormFault | OfflineFault
Fault = Annotated[
    DropFault | StormFault | OfflineFault | NodeKillFault | BackendRestartFault, Field(discriminator="type")
]
CLIENT_FAULT_TYPES = ("drop", "storm", "offline")


class ProxyConfig(_Spec):
    """The loopback TCP fault proxy between the clients and the server (per direction, per chunk).

    Rates are per connection per second (a Poisson process), so the fault load scales with the connections.
    """

    enabled: bool = True
    delay_ms: Annotated[float, Field(ge=0)] = 0.0
    jitter_ms: Annotated[float, Field(ge=0)] = 0.0
    # Stall: the connection stops forwarding for stall_ms (both directions), then resumes.
    stall_rate_per_s: Annotated[float, Field(ge=0)] = 0.0
    stall_ms: Annotated[float, Field(ge=0)] = 2000.0
    # Reset: the connection is aborted (RST) on both sides.
    reset_rate_per_s: Annotated[float, Field(ge=0)] = 0.0
    # Truncate: a chunk is cut at a random byte, the rest is dropped and the connection aborted.
    truncate_rate_per_s: Annotated[float, Field(ge=0)] = 0.0
    seed: int = 1
