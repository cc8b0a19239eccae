"""Uploads and downloads.

Uploads are streamed into storage with the size limit enforced as bytes arrive; the type is detected from the
content (magic numbers via ``filetype``, plain UTF-8 text by decoding), never from the name or the client's
Content-Type, and must be on the allowlist. Images are opened by Pillow header-first: more pixels than the limit
is refused before any decoding (pixel bombs), and a thumbnail is stored beside the original. Files are stored under
generated keys; the user's file name is kept only as metadata.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import secrets
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import InitVar, dataclass

import filetype
from PIL import Image, UnidentifiedImageError

from core.clock import Clock
from core.config import LimitsConfig
from core.errors import ErrorCode, WsimError
from core.models import FileMeta
from core.services.social import SocialService
from strategies.files.base import FileStorage
from strategies.ids.base import IdGenerator
from strategies.store.base import FileCatalog

IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
ALLOWED_TYPES = IMAGE_TYPES | {
    "application/pdf",
    "application/zip",
    "application/gzip",
    "application/x-7z-compressed",
    "application/x-tar",
    "audio/mpeg",
    "audio/ogg",
    "audio/x-wav",
    "audio/mp4",
    "video/mp4",
    "video/webm",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "text/plain",
}
THUMB_SIZE = (320, 320)
SNIFF_BYTES = 8192
LINK_TTL_MS = 10 * 60 * 1000


def detect_type(head: bytes) -> str | None:
    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime)
    if b"\x00" in head:
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed prefix is still text.
        if exc.start < len(head) - 4:
            return None
    return "text/plain"


def clean_filename(name: str) -> str:
    """Keep the user's name for display: printable, no path parts, at most 200 characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return (name or "file")[:200]


@dataclass(frozen=True, slots=True)
class FileLink:
    url: str
    expires_ms: int


@dataclass(eq=False)
class FileService:
    users: FileCatalog
    storage: FileStorage
    social: SocialService
    ids: IdGenerator
    clock: Clock
    limits: LimitsConfig
    secret: InitVar[bytes]

    def __post_init__(self, secret: bytes) -> None:
        self._link_key = hashlib.sha256(b"wsim-file-link:" + secret).digest()

    async def upload(self, owner: int, filename: str, chunks: AsyncIterator[bytes]) -> FileMeta:
        key = secrets.token_hex(16)
        writer = await self.storage.writer(key)
        total = 0
        head = bytearray()
        committed = False
        try:
            async for chunk in chunks:
                total += len(chunk)
                if total > self.limits.upload_max_bytes:
                    raise WsimError(
                        ErrorCode.TOO_LARGE, f"file larger than {self.limits.upload_max_bytes} bytes"
                    )
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                await writer.write(chunk)
            if total == 0:
                raise WsimError(ErrorCode.INVALID, "file: empty upload")
            mime = detect_type(bytes(head))
            if mime is None or mime not in ALLOWED_TYPES:
                raise WsimError(ErrorCode.UNSUPPORTED_TYPE, f"file type {mime or 'unknown'} is not allowed")
            await writer.commit()
            committed = True
            width = height = None
            thumb_key = None
            if mime in IMAGE_TYPES:
                width, height, thumb_key = await self._image(key)
        except BaseException:
            if committed:
                await self.storage.delete(key)
            else:
                await writer.abort()
            raise
        now = self.clock.wall_ms()
        meta = FileMeta(
            self.ids.next_id(now),
            owner,
            clean_filename(filename),
            total,
            mime,
            key,
            now,
            width,
            height,
            thumb_key,
        )
        await self.users.add_file(meta)
        return meta

    async def _image(self, key: str) -> tuple[int, int, str | None]:
        path = self.storage.local_path(key)
        if path is not None:
            source: io.BytesIO | str = str(path)
        else:
            buf = io.BytesIO()
            async for chunk in self.storage.read(key):
                buf.write(chunk)
            buf.seek(0)
            source = buf
        limit = self.limits.image_max_pixels

        def probe_and_thumbnail() -> tuple[int, int, bytes | None]:
            try:
                with Image.open(source) as img:
                    w, h = img.size
                    if w * h > limit:
                        raise WsimError(
                            ErrorCode.TOO_LARGE, f"image has {w * h} pixels; the limit is {limit}"
                        )
                    img.draft("RGB", THUMB_SIZE)
                    img.thumbnail(THUMB_SIZE)
                    out = io.BytesIO()
                    rgb = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
                    rgb.save(out, format="PNG" if rgb.mode == "RGBA" else "JPEG", quality=85)
                    return w, h, out.getvalue()
            except Image.DecompressionBombError:  # Pillow's own bound (2x MAX_IMAGE_PIXELS) fires in open()
                raise WsimError(ErrorCode.TOO_LARGE, f"image has more than {limit} pixels") from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
                raise WsimError(ErrorCode.UNSUPPORTED_TYPE, "image could not be decoded") from None

        w, h, thumb = await asyncio.to_thread(probe_and_thumbnail)
        thumb_key = None
        if thumb is not None:
            thumb_key = f"{key}_t"
            writer = await self.storage.writer(thumb_key)
            await writer.write(thumb)
            await writer.commit()
        return w, h, thumb_key

    async def authorize(self, user: int, file_id: int) -> FileMeta:
        """The file, if ``user`` uploaded it or is a member of a conversation where it was sent."""
        meta = await self.users.get_file(file_id)
        if meta is None:
            raise WsimError(ErrorCode.NOT_FOUND, "no such file")
        if meta.owner == user:
            return meta
        for conv in await self.users.file_convs(file_id):
            try:
                await self.social.first_readable_seq(user, conv)
            except WsimError:
                continue
            return meta
        # Same answer as a missing file: do not reveal that the id exists.
        raise WsimError(ErrorCode.NOT_FOUND, "no such file")

    async def get(self, file_id: int) -> FileMeta:
        meta = await self.users.get_file(file_id)
        if meta is None:
            raise WsimError(ErrorCode.NOT_FOUND, "no such file")
        return meta

    # Signed links let <img src> and downloads work without putting the access token in a URL.
    def _sign(self, file_id: int, variant: str, expires_ms: int) -> str:
        msg = f"{file_id}:{variant}:{expires_ms}".encode()
        return hmac.new(self._link_key, msg, hashlib.sha256).hexdigest()[:32]

    def signed_link(self, file_id: int, variant: str) -> FileLink:
        expires = self.clock.wall_ms() + LINK_TTL_MS
        suffix = "/thumbnail" if variant == "thumbnail" else ""
        return FileLink(
            f"/api/files/{file_id}{suffix}?exp={expires}&sig={self._sign(file_id, variant, expires)}", expires
        )

    def check_link(self, file_id: int, variant: str, exp: int, sig: str) -> bool:
        if exp < self.clock.wall_ms():
            return False
        return hmac.compare_digest(self._sign(file_id, variant, exp).encode(), sig.encode())

    def open(self, key: str) -> AsyncIterator[bytes]:
        return self.storage.read(key)

    def local_path(self, key: str) -> str | None:
        p = self.storage.local_path(key)
        return None if p is None else str(p)
