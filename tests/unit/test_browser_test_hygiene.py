"""The browser tests poll the page only with function predicates, never with a bare expression.

Playwright evaluates a bare expression (``"window.x === 1"``) with ``eval`` on every poll. The first poll runs
inside the DevTools evaluation, which the page's Content Security Policy (``script-src 'self'``) does not cover;
every later poll runs from the page's own animation frame, where the policy forbids ``eval``. So such a wait
passes when the condition already holds and fails with ``EvalError`` when it has to wait: a flake that hangs on
timing (it failed CI once). A function (``"() => window.x === 1"``) is evaluated once and then only called.
"""

from __future__ import annotations

import ast
from pathlib import Path

E2E = Path(__file__).resolve().parents[1] / "e2e"
POLLING_CALLS = {"wait_for_function"}


def _bare_expression_polls(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in POLLING_CALLS or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            text = first.value.strip()
            if not (text.startswith(("(", "async", "function")) or "=>" in text.split("\n", 1)[0]):
                found.append((node.lineno, text))
    return found


def test_the_check_finds_a_bare_expression() -> None:
    source = 'async def t(page):\n    await page.wait_for_function("window.__n === 2")\n'
    assert _bare_expression_polls(source) == [(2, "window.__n === 2")]
    ok = 'async def t(page):\n    await page.wait_for_function("() => window.__n === 2")\n'
    assert _bare_expression_polls(ok) == []


def test_browser_tests_poll_with_functions() -> None:
    files = sorted(E2E.glob("*.py"))
    assert files, E2E
    offenders = [
        f"{path.name}:{line}: {text}"
        for path in files
        for line, text in _bare_expression_polls(path.read_text())
    ]
    assert offenders == [], "use a function predicate, e.g. '() => <expression>':\n" + "\n".join(offenders)
