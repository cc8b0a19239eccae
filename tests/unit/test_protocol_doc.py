"""docs/protocol.md is the contract: every frame type, every field, every error code and every close code of the
code is in it, and nothing else is (issue 14, "Done when")."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from core.errors import CloseCode, ErrorCode, http_status
from core.protocol.frames import CLIENT_FRAME_TYPES, ClientFrame, ServerFrame

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text under a heading (any level) up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}\s*$", DOC, re.MULTILINE)
    assert match is not None, f"no section {title!r} in docs/protocol.md"
    level = len(match.group(1))
    rest = DOC[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``text``, as stripped cells."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    return [r for r in cells[2:] if r]  # skip the header and the --- row


def unquote(cell: str) -> str:
    return cell.strip("`")


def models(union: object) -> dict[str, type[BaseModel]]:
    args = typing.get_args(union)
    if args and typing.get_origin(union) is typing.Annotated:
        args = typing.get_args(args[0])
    out: dict[str, type[BaseModel]] = {}
    for model in args:
        out[typing.get_args(model.model_fields["type"].annotation)[0]] = model
    return out


def documented_fields(cell: str) -> set[str]:
    return {m.rstrip("?") for m in re.findall(r"`([a-z_]+\??)`", cell)}


def wire_fields(model: type[BaseModel]) -> set[str]:
    return {(f.alias or name) for name, f in model.model_fields.items() if name != "type"}


def test_client_frames_and_their_fields_are_documented() -> None:
    rows = table_rows(section("Frames a client sends"))
    assert [unquote(r[0]) for r in rows] == list(CLIENT_FRAME_TYPES)
    by_type = models(ClientFrame)
    assert set(by_type) == set(CLIENT_FRAME_TYPES)
    for row in rows:
        ftype = unquote(row[0])
        missing = wire_fields(by_type[ftype]) - documented_fields(row[1])
        assert not missing, f"{ftype}: fields {missing} not documented"


def test_server_frames_and_their_fields_are_documented() -> None:
    rows = table_rows(section("Frames the server sends"))
    by_type = models(ServerFrame)
    assert sorted(unquote(r[0]) for r in rows) == sorted(by_type)
    for row in rows:
        ftype = unquote(row[0])
        fields = wire_fields(by_type[ftype])
        documented = documented_fields(row[1])
        assert fields <= documented, f"{ftype}: fields {fields - documented} not documented"


def test_every_error_code_is_documented_with_its_status_and_no_other() -> None:
    rows = table_rows(section("Error codes"))
    documented = {unquote(r[0]): int(r[1]) for r in rows}
    assert set(documented) == {c.value for c in ErrorCode}
    for code in ErrorCode:
        assert documented[code.value] == http_status(code), code


def test_every_close_code_is_documented_and_no_other() -> None:
    rows = table_rows(section("Close codes"))
    documented = [int(r[0]) for r in rows]
    assert sorted(documented) == sorted(int(c) for c in CloseCode)
    assert len(documented) == len(set(documented))


def test_the_limits_table_names_real_keys() -> None:
    from core.config import Settings

    settings = Settings()
    for row in table_rows(
        section("Limits and their keys (defaults; YAML keys, or `WSIM_<SECTION>__<KEY>` in the environment)")
    ):
        for key in re.findall(r"`([a-z_]+\.[a-z_]+)`", row[0]):
            section_name, name = key.split(".")
            assert hasattr(getattr(settings, section_name), name), key
