"""Access tokens and password hashing, in process with a fake clock: the JWT checks one by one (pinned algorithm,
required claims, type, signature, expiry), Argon2id's concurrency bound, and the same work and answer for an
unknown user as for a wrong password."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from core.app import build_node, jwt_secret, start_node, stop_node
from core.clock import FakeClock
from core.errors import ErrorCode, WsimError
from core.node import Node
from core.services.accounts import AccountService
from tests.support.server import settings_for_test

NOW_S = 1_700_000_000


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return build_node(settings_for_test(tmp_path), FakeClock(start_wall_ms=NOW_S * 1000))


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "42",
        "sid": "family-1",
        "typ": "access",
        "iat": NOW_S - 10,
        "exp": NOW_S + 600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def secret_of(node: Node) -> bytes:
    return jwt_secret(node.settings)


def refused(accounts: AccountService, token: str) -> ErrorCode:
    with pytest.raises(WsimError) as info:
        accounts.decode_access(token)
    return info.value.code


def test_a_well_formed_token_is_accepted(node: Node) -> None:
    token = jwt.encode(claims(), secret_of(node), algorithm="HS256")
    principal = node.accounts.decode_access(token)
    assert (principal.user_id, principal.family, principal.exp_ms) == (42, "family-1", (NOW_S + 600) * 1000)


def test_alg_none_and_other_algorithms_are_refused(node: Node) -> None:
    secret = secret_of(node)
    unsigned = jwt.encode(claims(), key=None, algorithm="none")  # type: ignore[arg-type]
    assert refused(node.accounts, unsigned) == ErrorCode.UNAUTHORIZED
    for alg in ("HS384", "HS512"):  # the right secret, the wrong algorithm: pinned to HS256
        assert refused(node.accounts, jwt.encode(claims(), secret, algorithm=alg)) == ErrorCode.UNAUTHORIZED
    # a hand-made header claiming "none" in front of a valid HS256 payload and signature
    _header, payload, sig = jwt.encode(claims(), secret, algorithm="HS256").split(".")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    assert refused(node.accounts, f"{none_header}.{payload}.{sig}") == ErrorCode.UNAUTHORIZED
    assert refused(node.accounts, f"{none_header}.{payload}.") == ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "sid", "typ"])
def test_every_required_claim_is_required(node: Node, missing: str) -> None:
    token = jwt.encode(claims(**{missing: None}), secret_of(node), algorithm="HS256")
    assert refused(node.accounts, token) == ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("typ", ["refresh", "mqtt", "Access", ""])
def test_only_access_tokens_open_sessions(node: Node, typ: str) -> None:
    token = jwt.encode(claims(typ=typ), secret_of(node), algorithm="HS256")
    assert refused(node.accounts, token) == ErrorCode.UNAUTHORIZED


def test_tampered_and_foreign_signatures_are_refused(node: Node) -> None:
    secret = secret_of(node)
    header, payload, sig = jwt.encode(claims(), secret, algorithm="HS256").split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert refused(node.accounts, f"{header}.{payload}.{flipped}") == ErrorCode.UNAUTHORIZED
    # another user's id under the original signature
    other = jwt.encode(claims(sub="1"), secret, algorithm="HS256").split(".")[1]
    assert refused(node.accounts, f"{header}.{other}.{sig}") == ErrorCode.UNAUTHORIZED
    assert (
        refused(node.accounts, jwt.encode(claims(), b"x" * 32, algorithm="HS256")) == ErrorCode.UNAUTHORIZED
    )
    assert refused(node.accounts, "not.a.jwt") == ErrorCode.UNAUTHORIZED


def test_expiry_and_issue_time_follow_the_injected_clock(node: Node) -> None:
    secret = secret_of(node)
    token = jwt.encode(claims(exp=NOW_S + 5), secret, algorithm="HS256")
    node.accounts.decode_access(token)
    assert isinstance(node.clock, FakeClock)
    node.clock.advance(5)
    assert refused(node.accounts, token) == ErrorCode.TOKEN_EXPIRED
    future = jwt.encode(claims(iat=NOW_S + 3600, exp=NOW_S + 7200), secret, algorithm="HS256")
    assert refused(node.accounts, future) == ErrorCode.UNAUTHORIZED
    for bad_sub in ("alice", "1.5", ""):
        token = jwt.encode(claims(sub=bad_sub), secret, algorithm="HS256")
        assert refused(node.accounts, token) == ErrorCode.UNAUTHORIZED


# ---------------------------------------------------------------------------------------------- Argon2id


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Node]:
    auth = {"argon2_time_cost": 2, "argon2_memory_kib": 8192, "max_concurrent_hashes": 2}
    n = build_node(settings_for_test(tmp_path, {"auth": auth}))
    await start_node(n)
    try:
        yield n
    finally:
        await stop_node(n)


class CountingHasher:
    """Wraps the real hasher and records how many hashes/verifies run at the same time."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.running = 0
        self.peak = 0
        self.verifies = 0
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def _leave(self) -> None:
        with self._lock:
            self.running -= 1

    def hash(self, password: str) -> str:
        self._enter()
        try:
            time.sleep(0.02)
            return str(self.inner.hash(password))
        finally:
            self._leave()

    def verify(self, hashed: str, password: str) -> bool:
        self._enter()
        self.verifies += 1
        try:
            time.sleep(0.02)
            return bool(self.inner.verify(hashed, password))
        finally:
            self._leave()


async def test_concurrent_hashing_is_bounded(started: Node) -> None:
    accounts = started.accounts
    counting = CountingHasher(accounts._hasher)
    accounts._hasher = counting  # type: ignore[assignment]
    await asyncio.gather(*(accounts.register(f"flood{i}", "password-123", None) for i in range(8)))
    await asyncio.gather(
        *(accounts.login(f"flood{i}", "wrong-password", client=f"10.0.0.{i}") for i in range(8)),
        return_exceptions=True,
    )
    assert counting.peak == started.settings.auth.max_concurrent_hashes == 2


async def test_unknown_user_costs_one_verify_like_a_wrong_password(started: Node) -> None:
    accounts = started.accounts
    await accounts.register("known", "password-123", None)
    counting = CountingHasher(accounts._hasher)
    accounts._hasher = counting  # type: ignore[assignment]
    answers = []
    for username in ("known", "unknown-user"):
        with pytest.raises(WsimError) as info:
            await accounts.login(username, "wrong-password", client=username)
        answers.append((info.value.code, info.value.message))
    assert answers[0] == answers[1] == (ErrorCode.BAD_CREDENTIALS, "wrong username or password")
    assert counting.verifies == 2  # one each: the unknown user is verified against the dummy hash


async def test_the_dummy_hash_costs_what_a_users_hash_costs(started: Node) -> None:
    """An unknown user is verified against the dummy hash (counted above); Argon2's cost is in the hash's own
    parameters, so equal parameters mean equal time. Checked structurally, not by timing on a shared machine."""
    accounts = started.accounts
    await accounts.register("timed", "password-123", None)
    user = await started.users_store.get_user_by_name("timed")
    assert user is not None

    def params(encoded: str) -> list[str]:  # $argon2id$v=19$m=8192,t=2,p=1$salt$hash
        return encoded.split("$")[1:4]

    assert params(accounts._dummy_hash) == params(user.password_hash)
    assert params(user.password_hash)[2].startswith("m=8192,t=2,")  # the configured cost, not a cheap default
