"""The one settings model (pydantic-settings): defaults < YAML file < ``WSIM_*`` environment < explicit overrides.

Nested keys use ``__`` in the environment: ``WSIM_STRATEGIES__BUS__KIND=redis``. Every strategy is chosen by
``kind`` from its registry; an unknown kind or key fails at start with the key's path and the allowed values.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from strategies.ack.config import AckConfig, ThreeStateAckConfig
from strategies.bus.config import BusConfig, LocalBusConfig
from strategies.cache.config import CacheConfig, L1CacheConfig
from strategies.dedup.config import DedupConfig, MemoryDedupConfig
from strategies.files.config import FilesConfig, LocalFilesConfig
from strategies.ids.config import IdsConfig, SnowflakeConfig
from strategies.presence.config import MemoryPresenceConfig, PresenceConfig
from strategies.retry.config import AdaptiveRetryConfig, RetryConfig
from strategies.store.config import StoreConfig
from strategies.transport.config import TransportConfig, WebSocketTransportConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    # Node name in a cluster; also shown in auth.ok. Defaults to "local".
    node: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "local"
    data_dir: str = "data"
    # Allowed browser Origins for the WebSocket handshake; "*" allows any. Requests without Origin (non-browser
    # clients) are always allowed: Origin is a browser protection, not authentication.
    origins: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"])
    # Serve the web client at "/".
    web_client: bool = True
    # Each HTTP request's headers (and a WebSocket handshake) must arrive within this time and size, or the
    # connection is closed (slowloris); uvicorn alone has no such deadline (core/transport/guard.py).
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    max_header_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    # Freeze the start-up heap out of the cyclic GC and raise its thresholds: full collections at 10k connections
    # caused 110 ms p99 spikes (measured; see docs/architecture.md).
    gc_tuning: bool = True
    # With gc_tuning: after every this many connections opened, collect generation 0 and freeze the collector's
    # heap; after every this many closed, collect generation 0 (core/gcpolicy.py: a 10k ramp gave 650-905 ms
    # generation-1 pauses without it, and 40-80 ms generation-0 ones with a timer instead). 0: only at start-up.
    gc_freeze_every_connections: Annotated[int, Field(ge=0)] = 20
    # With gc_tuning and the freezer on: also collect generation 0 this often. Each connection's pending await
    # chain (~23 objects) is replaced by a young one at every frame it handles while the old one's deallocation
    # cancels the count, so at 10,000 connections generation 0 reached 230,000 objects (a 198 ms collection) with
    # a 1 s interval; at 0.1 s it stayed under 32,000 (docs/performance.md).
    gc_young_interval_s: Annotated[float, Field(gt=0, le=60)] = 0.1
    # With gc_tuning: allocations minus deallocations between two generation-0 collections (CPython's default is
    # 700). Not a bound on generation 0's size: deallocations of older objects count too, so a ramp's generation
    # 0 reached 26,000-186,000 objects at this threshold (docs/performance.md).
    gc_gen0_threshold: Annotated[int, Field(ge=100)] = 10_000
    # One socket write per WebSocket connection per loop turn (core/transport/coalesce.py); off: one per frame.
    ws_coalesce_writes: bool = True
    log_level: str = "info"
    # When set, GET /metrics needs "Authorization: Bearer <metrics_token>" (401 otherwise). Empty: open, for a
    # node on loopback or behind a proxy that does not forward /metrics (docs/security.md).
    metrics_token: str = ""

    @model_validator(mode="after")
    def _origins_follow_the_port(self) -> ServerConfig:
        """The default Origins name the port the server listens on, not always 8000 (issue 14, gap 11)."""
        if "origins" not in self.model_fields_set and self.port:
            self.origins = [f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"]
        return self


class AuthConfig(_Section):
    # HS256 secret. Empty: generated once and kept in <data_dir>/jwt.secret so restarts keep tokens valid.
    jwt_secret: str = ""
    access_ttl_s: Annotated[int, Field(ge=1, le=86400)] = 900
    refresh_ttl_s: Annotated[int, Field(ge=60)] = 30 * 86400
    # A used refresh token presented again within this many seconds is a second tab refreshing at the same time
    # (it gets tokens of the same session); later it is a replay and revokes the session. 0: no leeway.
    refresh_reuse_grace_s: Annotated[float, Field(ge=0, le=60)] = 10.0
    # Usernames allowed to use /api/admin/*.
    admins: list[str] = Field(default_factory=list)
    # argon2id cost (argon2-cffi defaults are RFC 9106's "low memory" profile).
    argon2_time_cost: Annotated[int, Field(ge=1)] = 3
    argon2_memory_kib: Annotated[int, Field(ge=8)] = 65536
    argon2_parallelism: Annotated[int, Field(ge=1)] = 4
    # At most this many password hashes run at once (bounds memory and CPU under a login flood).
    max_concurrent_hashes: Annotated[int, Field(ge=1)] = 2
    # Failed logins per username and per client address before 429.
    login_failures_per_minute: Annotated[int, Field(ge=1)] = 10


class LimitsConfig(_Section):
    max_frame_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    max_text_chars: Annotated[int, Field(ge=1)] = 5000
    rate_per_s: Annotated[float, Field(gt=0)] = 20.0
    rate_burst: Annotated[float, Field(ge=1)] = 40.0
    rate_strikes: Annotated[int, Field(ge=1)] = 20
    error_budget: Annotated[int, Field(ge=1)] = 10
    max_connections_per_user: Annotated[int, Field(ge=1)] = 10
    # Open sockets (WebSocket and STOMP, counted from the handshake, authenticated or not) per client address.
    # High enough for a NAT or an office behind one address; load generators raise it.
    max_connections_per_address: Annotated[int, Field(ge=1)] = 1000
    # Frames queued to one device before it is closed as a slow consumer (4008).
    outbound_queue_frames: Annotated[int, Field(ge=10)] = 2000
    # Pending (unacknowledged) deliveries tracked per device.
    max_pending_deliveries: Annotated[int, Field(ge=10)] = 10_000
    auth_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    max_group_members: Annotated[int, Field(ge=2)] = 500
    recall_window_s: Annotated[float, Field(ge=0)] = 120.0
    upload_max_bytes: Annotated[int, Field(ge=1)] = 20 * 1024 * 1024
    image_max_pixels: Annotated[int, Field(ge=1)] = 40_000_000
    history_page_max: Annotated[int, Field(ge=1)] = 200
    # Receipts are coalesced: at most one per conversation and user per window, sent only when a mark advances
    # (core/protocol/receipts.py). 0 sends each advance at once.
    receipt_window_s: Annotated[float, Field(ge=0, le=5)] = 0.05


class HeartbeatConfig(_Section):
    interval_s: Annotated[float, Field(gt=0)] = 30.0
    missed_beats: Annotated[int, Field(ge=1)] = 2


class SyncConfig(_Section):
    # Messages a device that has no cursor for a conversation receives (its recent history).
    recent_messages: Annotated[int, Field(ge=0)] = 50
    # After a bus gap every device on the node must resync: spread those requests over this many seconds.
    resync_spread_s: Annotated[float, Field(ge=0)] = 2.0
    # Anti-entropy (core/sweeper.py): every interval, devices whose conversations' store heads are ahead of what
    # they are known to hold (for longer than the grace) are told to sync; repairs a stored message whose fan-out
    # died with its node. 0 turns the sweeper off.
    sweep_interval_s: Annotated[float, Field(ge=0)] = 5.0
    sweep_grace_s: Annotated[float, Field(ge=0)] = 2.0
    # Devices examined per sweep (round robin): bounds the store reads of one sweep on a crowded node.
    sweep_batch: Annotated[int, Field(ge=1)] = 1000


def _default_transports() -> list[TransportConfig]:
    return [WebSocketTransportConfig()]


class StrategiesConfig(_Section):
    ack: AckConfig = Field(default_factory=ThreeStateAckConfig)
    # Adaptive: measured in docs/performance.md ("Hot path changes"), the fixed 1/2/4 s schedule pushed every
    # message again 1.8 times on a busy, healthy node; it stays available as kind "exponential".
    retry: RetryConfig = Field(default_factory=AdaptiveRetryConfig)
    dedup: DedupConfig = Field(default_factory=MemoryDedupConfig)
    cache: CacheConfig = Field(default_factory=L1CacheConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    bus: BusConfig = Field(default_factory=LocalBusConfig)
    ids: IdsConfig = Field(default_factory=SnowflakeConfig)
    files: FilesConfig = Field(default_factory=LocalFilesConfig)
    presence: PresenceConfig = Field(default_factory=MemoryPresenceConfig)
    # How devices connect (docs/transports.md); each kind at most once. Default: the native WebSocket alone.
    transports: list[TransportConfig] = Field(default_factory=_default_transports)

    @field_validator("transports")
    @classmethod
    def _one_of_each(cls, value: list[TransportConfig]) -> list[TransportConfig]:
        kinds = [t.kind for t in value]
        repeated = sorted({k for k in kinds if kinds.count(k) > 1})
        if repeated:
            raise ValueError(f"each transport kind may appear once; repeated: {', '.join(repeated)}")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WSIM_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    strategies: StrategiesConfig = Field(default_factory=StrategiesConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the YAML file merged with explicit overrides (see load_settings); env wins over YAML.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _recall_window_stays_hot(self) -> Settings:
        # The tier job moves messages older than hot_days; a message that may still be recalled must not move
        # (a recall racing the move of its message could be lost), so the hot tier covers the recall window.
        tiering = self.strategies.store.tiering
        if tiering.enabled and tiering.hot_days * 86_400 < self.limits.recall_window_s:
            raise ValueError(
                f"strategies.store.tiering.hot_days ({tiering.hot_days:g} d) is shorter than "
                f"limits.recall_window_s ({self.limits.recall_window_s:g} s): messages would leave the hot tier "
                "while they can still be recalled"
            )
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir).expanduser().resolve()


_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s]*):(?P<pw>[^@/\s]+)@")
MASK = "***"


def mask_secrets(data: Any) -> Any:
    """A copy of plain settings data (``model_dump(mode="json")``) fit to print, log or archive: values of keys
    naming a password or a secret, and the password of every ``scheme://user:password@host`` URL, become ``***``.
    """
    if isinstance(data, dict):
        return {
            k: MASK
            if isinstance(k, str) and ("password" in k or "secret" in k) and v not in (None, "")
            else mask_secrets(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [mask_secrets(v) for v in data]
    if isinstance(data, str):
        return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", data)
    return data


class MaskSecretsFilter(logging.Filter):
    """A handler filter that masks URL passwords in every log line (a driver error quoting its DSN, for one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask_log_secrets() -> None:
    """Install :class:`MaskSecretsFilter` on every handler of the root logger."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskSecretsFilter) for f in handler.filters):
            handler.addFilter(MaskSecretsFilter())


class ConfigError(ValueError):
    """Invalid configuration, with one line per problem naming the key path."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    lines = [f"invalid {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        # Discriminated unions add the tag to the path ("strategies.bus.local.kind"): keep it, it says which kind.
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read YAML (optional), apply overrides, then environment; raise ConfigError naming each bad key."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must contain a mapping at the top level")
        data = loaded
    if overrides:
        data = deep_merge(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"config {path}" if path else "config")) from None
