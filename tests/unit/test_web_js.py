"""The web client's JavaScript: generated protocol constants up to date and used, and its ``node --test`` suite.

The client has no build step, so nothing else would notice a frame type, error or close code that the server
changed, or a store/ordering regression short of the (slow) browser tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from core.errors import CloseCode, ErrorCode
from core.protocol.frames import ClientFrame, ServerFrame
from core.web_constants import TARGET, frame_types, render
from tests.support.services import unavailable

ROOT = Path(__file__).parents[2]
JS_DIR = ROOT / "core" / "web" / "js"
JS_TESTS = ROOT / "tests" / "js"


def test_protocol_constants_are_generated_from_the_python_definitions() -> None:
    assert TARGET.read_text(encoding="utf-8") == render(), "run: python -m core.web_constants"


def _client_modules() -> list[Path]:
    return [p for p in sorted(JS_DIR.rglob("*.js")) if p != TARGET]


def _alternatives(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def test_client_spells_no_protocol_constant_by_hand() -> None:
    """Frame types, error codes and close codes come from protocol.js (an i18n key such as ``err_blocked`` is not
    a code: only quoted codes in comparisons, ``type:`` fields and ``case`` labels are looked for)."""
    frames = _alternatives([*frame_types(ClientFrame), *frame_types(ServerFrame)])
    errors = _alternatives([e.value for e in ErrorCode])
    patterns = [
        re.compile(rf"(?:type:\s*|case\s+|type\s*[!=]==\s*)'({frames})'"),
        re.compile(rf"code\s*[!=]==\s*'({errors})'"),
        re.compile(r"\b(" + "|".join(str(int(c)) for c in CloseCode if c > 4000) + r")\b"),
    ]
    found = []
    for path in _client_modules():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.lstrip().startswith("//") and any(p.search(line) for p in patterns):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == [], "use core/web/js/protocol.js:\n" + "\n".join(found)


def test_views_change_state_only_through_store_actions() -> None:
    """The store (core/web/js/store/) is the one place that changes application state (``state``, and ``rs`` of
    store/replies.js); views call its actions."""
    writes = re.compile(
        r"\b(?:state|rs)(?:\.\w+)+\s*(?:=(?!=)|\+\+|--)"  # state.x = ..., state.x.y++ ...
        r"|\b(?:state|rs)(?:\.\w+)+\.(?:set|delete|clear|push|splice|shift|unshift|add|pop)\("  # Map/Set/Array
        r"|Object\.assign\(\s*(?:state|rs)\b"
    )
    views = [*sorted((JS_DIR / "views").glob("*.js")), JS_DIR / "main.js"]
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in views
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if writes.search(line)
    ]
    assert found == [], "call a store action instead:\n" + "\n".join(found)


def test_every_client_module_is_type_checked() -> None:
    """``// @ts-check`` on line 1 of every module: editors (and tsc, where installed) check the JSDoc types."""
    unchecked = [
        str(p.relative_to(ROOT)) for p in _client_modules() if not p.read_text().startswith("// @ts-check\n")
    ]
    assert unchecked == []


def test_node_unit_tests() -> None:
    node = shutil.which("node")
    if node is None:
        unavailable("node (Node.js 20+) is not installed")
    files = sorted(str(p) for p in JS_TESTS.glob("*.test.mjs"))
    assert files, f"no tests in {JS_TESTS}"
    proc = subprocess.run(
        [node, "--test", *files], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
