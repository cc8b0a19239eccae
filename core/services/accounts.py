"""Accounts: registration, login, token issue/rotation/revocation, profiles.

Passwords are hashed with Argon2id in a worker thread, at most ``max_concurrent_hashes`` at once. Access tokens
are short-lived HS256 JWTs (algorithm pinned, ``exp``/``iat``/``sub``/``sid``/``typ`` required, times checked
against the injected clock). Refresh tokens are opaque random strings stored hashed; each use rotates them, and
presenting a used one again revokes the whole login session (reuse detection: a stolen token is worth one use).
The one exception is a second use within ``refresh_reuse_grace_s`` of the first, which gets fresh tokens of the
same session: two tabs of one browser share the tokens through localStorage, which Chromium propagates between
tab processes asynchronously, so the second tab can read the old token after the first one spent it (seen in the
browser tests). Okta, Auth0 and Ory Hydra have the same leeway for the same reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cachetools import TTLCache

from core.clock import Clock
from core.config import AuthConfig
from core.errors import CloseCode, ErrorCode, WsimError
from core.models import Principal, RefreshToken, User
from core.protocol.ratelimit import TokenBucket
from core.routing import Router
from strategies.cache.base import Cache, cached
from strategies.ids.base import IdGenerator
from strategies.store.base import AccountStore, DuplicateError

USERNAME_RE = re.compile(r"^[a-z0-9_.-]{3,32}$")
JWT_ALGORITHM = "HS256"


_SUB_RE = re.compile(r"[1-9][0-9]{0,18}")
_MAX_CLAIM_S = 2**40  # seconds: year 36812; bounds every time claim


@dataclass(frozen=True, slots=True)
class TokenPair:
    user: User
    access_token: str
    access_expires_ms: int
    refresh_token: str
    refresh_expires_ms: int
    session: str

    def body(self) -> dict[str, Any]:
        return {
            "user": self.user.public(),
            "access_token": self.access_token,
            "access_expires": self.access_expires_ms,
            "refresh_token": self.refresh_token,
            "refresh_expires": self.refresh_expires_ms,
            "session": self.session,
            "token_type": "Bearer",
        }


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_username(username: str) -> str:
    return username.strip().lower()


@dataclass(eq=False)
class AccountService:
    store: AccountStore
    ids: IdGenerator
    clock: Clock
    config: AuthConfig
    secret: bytes = field(repr=False)
    cache: Cache
    router: Router

    def __post_init__(self) -> None:
        config = self.config
        self._hasher = PasswordHasher(
            time_cost=config.argon2_time_cost,
            memory_cost=config.argon2_memory_kib,
            parallelism=config.argon2_parallelism,
        )
        self._hash_slots = asyncio.Semaphore(config.max_concurrent_hashes)
        # Verified instead of a real hash when the username is unknown, so that both answers cost one verify.
        # Made now, not on the first unknown login: that one would otherwise take a hash *and* a verify.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
        self._failures: TTLCache[str, TokenBucket] = TTLCache(
            maxsize=100_000, ttl=600, timer=self.clock.monotonic
        )

    # ---------------------------------------------------------------- hashing
    async def _hash(self, password: str) -> str:
        async with self._hash_slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._hash_slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    # ---------------------------------------------------------------- tokens
    def _access_token(self, user_id: int, family: str) -> tuple[str, int]:
        now_s = self.clock.wall_ms() // 1000
        exp_s = now_s + self.config.access_ttl_s
        claims = {
            "sub": str(user_id),
            "sid": family,
            "typ": "access",
            "iat": now_s,
            "exp": exp_s,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self.secret, algorithm=JWT_ALGORITHM), exp_s * 1000

    async def _issue(self, user: User, family: str, device: str | None) -> TokenPair:
        access, access_exp = self._access_token(user.id, family)
        refresh = secrets.token_urlsafe(32)
        refresh_exp = self.clock.wall_ms() + self.config.refresh_ttl_s * 1000
        await self.store.add_refresh_token(
            RefreshToken(_hash_token(refresh), user.id, family, refresh_exp, device=device)
        )
        return TokenPair(user, access, access_exp, refresh, refresh_exp, family)

    async def _new_session(self, user: User, device: str | None) -> TokenPair:
        family = secrets.token_hex(16)
        await self.store.create_session(family, user.id, device, self.clock.wall_ms())
        return await self._issue(user, family, device)

    def decode_access(self, token: str) -> Principal:
        """Signature, algorithm and claims; raises WsimError(UNAUTHORIZED/TOKEN_EXPIRED). No store access."""
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[JWT_ALGORITHM],
                options={
                    "require": ["exp", "iat", "sub", "sid", "typ"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise WsimError(ErrorCode.UNAUTHORIZED, f"invalid access token: {exc}") from None
        if claims.get("typ") != "access":
            raise WsimError(ErrorCode.UNAUTHORIZED, "not an access token")
        # Every claim is type-checked (issue 14, L2): a string "exp" or a 2**70 one, a non-id "sub" are refused
        # as malformed, never coerced or left to fail later.
        sub, sid, exp, iat = claims["sub"], claims["sid"], claims["exp"], claims["iat"]
        if not (
            isinstance(sub, str)
            and _SUB_RE.fullmatch(sub)
            and isinstance(sid, str)
            and 0 < len(sid) <= 128
            and all(type(t) is int and 0 <= t < _MAX_CLAIM_S for t in (exp, iat))
        ):
            raise WsimError(ErrorCode.UNAUTHORIZED, "malformed token claims")
        user_id, exp_ms, iat_ms = int(sub), exp * 1000, iat * 1000
        now = self.clock.wall_ms()
        if exp_ms <= now:
            raise WsimError(ErrorCode.TOKEN_EXPIRED, "access token expired")
        if iat_ms > now + 60_000:  # issued in the future beyond clock skew tolerance
            raise WsimError(ErrorCode.UNAUTHORIZED, "token issued in the future")
        return Principal(user_id, sid, exp_ms)

    async def verify_access(self, token: str) -> Principal:
        principal = self.decode_access(token)
        # The login session must be active and belong to the token's subject (a "sub" that is not the
        # session's user was a REST 500 and an auth.ok on the socket).
        if await self.session_user(principal.family) != principal.user_id:
            raise WsimError(ErrorCode.UNAUTHORIZED, "session has been logged out")
        return principal

    async def session_user(self, family: str) -> int | None:
        """The user of an active login session (cached, invalidated on logout); None if revoked or unknown."""
        user = await cached(self.cache, "session", family, lambda: self.store.session_user(family))
        return int(user) if user else None

    async def session_active(self, family: str) -> bool:
        """Whether a login session is still valid (not logged out); for credentials derived from a token."""
        return await self.session_user(family) is not None

    # ---------------------------------------------------------------- throttling
    def _check_throttle(self, keys: list[str]) -> None:
        now = self.clock.monotonic()
        for key in keys:
            bucket = self._failures.get(key)
            if bucket is not None and bucket.retry_after_s(now) > 0:
                raise WsimError(
                    ErrorCode.RATE_LIMITED,
                    "too many failed logins; try again later",
                    retry_after_s=bucket.retry_after_s(now),
                )

    def _record_failure(self, keys: list[str]) -> None:
        now = self.clock.monotonic()
        per_min = self.config.login_failures_per_minute
        for key in keys:
            bucket = self._failures.get(key)
            if bucket is None:
                bucket = self._failures[key] = TokenBucket(per_min / 60.0, per_min, now)
            bucket.take(now)

    # ---------------------------------------------------------------- API
    async def register(
        self, username: str, password: str, display_name: str | None, device: str | None = None
    ) -> TokenPair:
        name = normalize_username(username)
        if not USERNAME_RE.match(name):
            raise WsimError(ErrorCode.INVALID, "username: 3-32 characters of a-z, 0-9, '_', '.', '-'")
        if not 8 <= len(password) <= 128:
            raise WsimError(ErrorCode.INVALID, "password: 8 to 128 characters")
        if not password.strip():
            raise WsimError(ErrorCode.INVALID, "password: must not be only whitespace")
        shown = (display_name or name).strip()
        if not 1 <= len(shown) <= 64:
            raise WsimError(ErrorCode.INVALID, "display_name: 1 to 64 characters")
        if await self.store.get_user_by_name(name) is not None:
            raise WsimError(ErrorCode.ALREADY_EXISTS, "username is taken")
        user = User(
            self.ids.next_id(self.clock.wall_ms()),
            name,
            shown,
            await self._hash(password),
            self.clock.wall_ms(),
        )
        try:
            await self.store.create_user(user)
        except DuplicateError:
            raise WsimError(ErrorCode.ALREADY_EXISTS, "username is taken") from None
        return await self._new_session(user, device)

    async def login(self, username: str, password: str, client: str, device: str | None = None) -> TokenPair:
        name = normalize_username(username)
        keys = [f"u:{name}", f"a:{client}"]
        self._check_throttle(keys)
        user = await self.store.get_user_by_name(name)
        if user is None:
            # Same work and same answer as a wrong password, so usernames cannot be probed by timing.
            await self._verify(self._dummy_hash, password)
            ok = False
        else:
            ok = await self._verify(user.password_hash, password)
        if not ok or user is None:
            self._record_failure(keys)
            raise WsimError(ErrorCode.BAD_CREDENTIALS, "wrong username or password")
        return await self._new_session(user, device)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Everything the answer needs (token, session, user) is read in the one primary transaction that spends
        the token, and only a refresh that will succeed spends it: a replica outage or lag cannot log anyone out."""
        now_ms = self.clock.wall_ms()
        token, first_use, user = await self.store.claim_refresh_token(_hash_token(refresh_token), now_ms)
        if token is None:
            raise WsimError(ErrorCode.UNAUTHORIZED, "unknown refresh token")
        if token.revoked:
            raise WsimError(ErrorCode.UNAUTHORIZED, "session has been logged out")
        if user is None:
            raise WsimError(ErrorCode.UNAUTHORIZED, "user no longer exists")
        if not token.used and token.expires_ms <= now_ms:
            raise WsimError(ErrorCode.TOKEN_EXPIRED, "refresh token expired; log in again")
        if not first_use and 0 <= now_ms - token.used_ms <= self.config.refresh_reuse_grace_s * 1000:
            first_use = True  # a concurrent refresh of the same session (module docstring), not a replay
        if not first_use:
            await self.logout(token.family, reason="refresh token reused")
            raise WsimError(ErrorCode.TOKEN_REUSED, "refresh token was already used; the session is revoked")
        if token.expires_ms <= now_ms:
            raise WsimError(ErrorCode.TOKEN_EXPIRED, "refresh token expired; log in again")
        return await self._issue(user, token.family, token.device)

    async def logout(self, family: str, reason: str = "logged out") -> None:
        user_id = await self.store.revoke_session(family)
        await self.cache.delete("session", family)
        if user_id is not None:
            await self.router.close_sessions(user_id, family, CloseCode.SESSION_REVOKED, reason)

    async def get_user(self, user_id: int) -> User:
        user = await self.store.get_user(user_id)
        if user is None:
            raise WsimError(ErrorCode.NOT_FOUND, "no such user")
        return user

    async def profile(self, user_id: int) -> dict[str, Any]:
        async def load() -> dict[str, Any] | None:
            user = await self.store.get_user(user_id)
            return None if user is None else user.public()

        prof = await cached(self.cache, "profile", str(user_id), load)
        if prof is None:
            raise WsimError(ErrorCode.NOT_FOUND, "no such user")
        result: dict[str, Any] = prof
        return result

    async def profiles(self, user_ids: list[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for uid in user_ids:
            try:
                out[uid] = await self.profile(uid)
            except WsimError:
                continue
        return out

    async def update_profile(
        self, user_id: int, *, display_name: str | None, bio: str | None, avatar_file: int | None
    ) -> User:
        if display_name is not None and not 1 <= len(display_name.strip()) <= 64:
            raise WsimError(ErrorCode.INVALID, "display_name: 1 to 64 characters")
        if bio is not None and len(bio) > 500:
            raise WsimError(ErrorCode.INVALID, "bio: at most 500 characters")
        user = await self.store.update_user(
            user_id,
            display_name=None if display_name is None else display_name.strip(),
            bio=bio,
            avatar_file=avatar_file,
        )
        await self.cache.delete("profile", str(user_id))
        if user is None:
            raise WsimError(ErrorCode.NOT_FOUND, "no such user")
        return user

    async def search(self, query: str, limit: int) -> list[User]:
        q = query.strip()
        if not q:
            return []
        return await self.store.search_users(q[:64], limit)
