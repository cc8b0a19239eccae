"""The fault campaign's short form: every fault of docs/reliability.md, each on its own cluster of real nodes,
judged by the checker (nothing acknowledged lost, no duplicate stored or shown, nothing unexpected, no false
error, order intact, online latency and resources within bounds, and the fault really injected)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experiments.campaign.scenarios import FAULTS, Options, run_fault
from tests.support.services import IN_CI, require_service

NEEDS = {"database_down": "mariadbd", "bus_restart": "redis-server"}


# Known failure, kept visible (strict: it fails the suite once it passes, so the mark gets removed): in the
# crash-point fault a device does not get connected within 30 s after a crash-restart of node-1, and the devices
# that failed over from node-1 end connected to node-2 yet holding none of the traffic, even after the final
# resync; not yet diagnosed (harness or server). See docs/reliability.md.
KNOWN_FAILING: set[str] = set()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="undiagnosed; see KNOWN_FAILING"))
        if n in KNOWN_FAILING
        else n
        for n in FAULTS
    ],
)
async def test_fault_short(name: str, tmp_path: Path) -> None:
    host, port = require_service("redis")
    tool = NEEDS.get(name)
    if tool and not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin")):
        if IN_CI:
            pytest.fail(f"{tool} is not installed; CI must provide it")
        pytest.skip(f"{tool} is not installed (skipped outside CI only)")
    spec = FAULTS[name]
    result = await run_fault(
        Options(short=True, workdir=tmp_path, redis_url=f"redis://{host}:{port}/0"),
        name,
        spec.fault,
        nodes=spec.nodes,
        members_per_node=spec.members,
        overrides=spec.overrides,
        env=spec.env,
        prepare=spec.prepare,
    )
    report = json.dumps(result.as_dict(), indent=1, default=str)
    assert result.error is None, report
    assert result.verdict.acked > 0, report
    assert result.passed, report
