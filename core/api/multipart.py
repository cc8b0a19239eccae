"""Streaming multipart/form-data reader for uploads.

FastAPI's ``UploadFile`` spools the whole body to a temporary file before the handler runs, so a size limit
would be enforced only after the bytes were on disk and the content could not go straight to the storage
strategy. This wraps python-multipart's push parser instead: the file part's bytes are yielded as they arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from core.errors import ErrorCode, WsimError


class MultipartFileStream:
    def __init__(self, request: Request, field: str = "file", max_body_bytes: int = 2**31) -> None:
        self._request = request
        self._field = field.encode()
        self._max_body = max_body_bytes
        ctype, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise WsimError(ErrorCode.UNSUPPORTED_TYPE, "expected multipart/form-data with a 'file' part")
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
            },
        )
        self._source = request.stream().__aiter__()
        self._received = 0
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False
        self._file_done = False
        self._found = False
        self._pending: list[bytes] = []
        self._eof = False
        self.filename = "file"

    # parser callbacks ------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") == self._field and not self._found:
            self._found = self._in_file = True
            raw = params.get(b"filename", b"file")
            self.filename = raw.decode("utf-8", "replace")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(data[start:end])

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._file_done = True

    def file_complete(self) -> bool:
        return self._file_done

    # reading -----------------------------------------------------------------
    async def _feed_once(self) -> bool:
        if self._eof:
            return False
        try:
            chunk = await self._source.__anext__()
        except StopAsyncIteration:
            self._eof = True
            self._parser.finalize()
            return False
        self._received += len(chunk)
        if self._received > self._max_body:
            raise WsimError(ErrorCode.TOO_LARGE, "request body too large")
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            raise WsimError(ErrorCode.INVALID, "malformed multipart body") from None
        return True

    async def start(self) -> None:
        """Read until the file part's headers are known (its name is needed before storing)."""
        while not self._found:
            if not await self._feed_once():
                raise WsimError(ErrorCode.INVALID, f"no '{self._field.decode()}' part in the form")

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            while self._pending:
                data = self._pending.pop(0)
                if data:
                    yield data
            if self._file_done:
                break
            if not await self._feed_once() and not self._pending and not self.file_complete():
                raise WsimError(ErrorCode.INVALID, "upload ended before the file part was complete")
        while await self._feed_once():  # drain the rest of the body (bounded by max_body_bytes)
            self._pending.clear()
