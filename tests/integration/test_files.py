"""Uploads, thumbnails and download permissions against a real server."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from core.sdk import ClientError, WsimClient
from strategies import files
from tests.conftest import ClientFactory, ServerFactory
from tests.support.helpers import eventually, make_friends
from tests.support.server import RunningServer


def png_bytes(w: int = 64, h: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def pixel_bomb() -> bytes:
    """A tiny PNG whose header claims 100000 x 100000 pixels."""
    data = bytearray(png_bytes(1, 1))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 100_000, 100_000)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


async def test_image_upload_thumbnail_and_send(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    meta = await alice.upload(png_bytes(), "red <script>.png")
    assert meta["mime"] == "image/png" and (meta["width"], meta["height"]) == (64, 48) and meta["thumbnail"]
    assert meta["name"] == "red <script>.png"  # kept as data; clients render it as text
    ack = await alice.send(conv, kind="image", file=meta["id"])
    assert ack is not None
    msg = await bob.next_message()
    assert msg["kind"] == "image" and msg["body"]["file"] == meta["id"] and msg["body"]["width"] == 64
    # bob may now download it (member of the conversation it was sent to)
    data = await bob.request("GET", f"/api/files/{meta['id']}")
    assert data == png_bytes()
    thumb = await bob.request("GET", f"/api/files/{meta['id']}/thumbnail")
    assert Image.open(io.BytesIO(thumb)).size[0] <= 320


async def test_download_permissions_and_signed_links(
    server: RunningServer, make_client: ClientFactory
) -> None:
    alice, bob, mallory = await make_client(), await make_client(), await make_client()
    await make_friends(alice, bob)
    meta = await alice.upload(b"plain text notes\n", "notes.txt")
    assert meta["mime"] == "text/plain"
    assert await alice.request("GET", f"/api/files/{meta['id']}") == b"plain text notes\n"
    for outsider in (bob, mallory):  # not yet sent anywhere bob can see
        with pytest.raises(ClientError) as info:
            await outsider.request("GET", f"/api/files/{meta['id']}")
        assert info.value.status == 404
    link = await alice.request("POST", f"/api/files/{meta['id']}/link")
    async with httpx.AsyncClient(base_url=server.url) as anon:
        r = await anon.get(link["url"])
        assert r.status_code == 200 and r.content == b"plain text notes\n"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in r.headers["content-security-policy"]
        assert r.headers["content-disposition"].startswith("attachment")
        tampered = link["url"].replace("sig=", "sig=0")
        assert (await anon.get(tampered)).status_code == 403  # as documented (issue 14, gap 11)
        assert (await anon.get(f"/api/files/{meta['id']}")).status_code == 401


async def test_upload_limits_and_types(start_server: ServerFactory, clients: list[WsimClient]) -> None:
    srv = await start_server({"limits": {"upload_max_bytes": 100_000, "image_max_pixels": 1_000_000}})
    c = WsimClient(srv.url)
    clients.append(c)
    await c.register("uploader", "password-123")
    with pytest.raises(ClientError) as info:
        await c.upload(b"x" * 200_000, "big.txt")
    assert info.value.status == 413
    with pytest.raises(ClientError) as info:
        await c.upload(b"\x7fELF\x02\x01\x01" + bytes(200), "tool.bin")
    assert info.value.status == 415
    with pytest.raises(ClientError) as info:
        await c.upload(pixel_bomb(), "bomb.png")
    assert info.value.status == 413  # 10 gigapixels: Pillow's own bomb check fires first (was 415, gap 11)
    with pytest.raises(ClientError) as info:
        await c.upload(png_bytes(2000, 1000), "too-many-pixels.png")
    assert info.value.status == 413
    async with httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.post(
            "/api/files",
            content=b"raw",
            headers={"Authorization": f"Bearer {c.access_token}", "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_type"
        r = await http.post(
            "/api/files",
            files={"other": ("a.txt", b"hi")},
            headers={"Authorization": f"Bearer {c.access_token}"},
        )
        assert r.status_code == 422
    files_root = Path(srv.node.settings.data_path) / "files"
    stored = [p for p in files_root.rglob("*") if p.is_file()]
    assert stored == []  # nothing refused was kept


async def test_interrupted_upload_leaves_nothing(server: RunningServer, make_client: ClientFactory) -> None:
    c = await make_client(connect=False)
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    writer.write(
        (
            f"POST /api/files HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {c.access_token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1000000\r\n\r\n"
        ).encode()
        + head
        + b"a" * 50_000
    )
    await writer.drain()
    tmp = Path(server.node.settings.data_path) / "files" / "tmp"
    await eventually(lambda: any(tmp.glob("*.part")), timeout=5)
    writer.close()
    await eventually(lambda: not any(tmp.glob("*.part")), timeout=5)
    files_root = tmp.parent
    assert [p for p in files_root.rglob("*") if p.is_file()] == []
    del reader


@pytest.mark.parametrize("kind", files.REGISTRY.names())  # a newly registered file storage is served at once
async def test_every_file_storage_serves_uploads_and_thumbnails(
    start_server: ServerFactory, kind: str
) -> None:
    """Local storage is served zero-copy from its path; the others stream through ``read`` (memory, remote)."""
    srv = await start_server({"strategies": {"files": {"kind": kind}}})
    c = WsimClient(srv.url)
    try:
        await c.register(f"f{kind}", "pw-12345678")
        image = png_bytes(640, 480)
        meta = await c.upload(image, "red.png")
        assert (meta["width"], meta["height"]) == (640, 480) and meta["thumbnail"]
        assert await c.request("GET", f"/api/files/{meta['id']}") == image
        thumb = await c.request("GET", f"/api/files/{meta['id']}/thumbnail")
        assert Image.open(io.BytesIO(thumb)).size == (320, 240)
    finally:
        await c.close()
