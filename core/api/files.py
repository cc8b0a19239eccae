from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from core.api.deps import FileIdPath, NodeDep, OptionalPrincipalDep, PrincipalDep, error_responses, ident
from core.api.multipart import MultipartFileStream
from core.api.schemas import FileLinkOut, FileOut
from core.errors import ErrorCode, ErrorOut, WsimError
from core.models import FileMeta, Principal
from core.node import Node
from core.services.files import IMAGE_TYPES

router = APIRouter(prefix="/api/files", tags=["files"], responses=error_responses(401, 404, 413, 415, 422))

# User files are never rendered as pages: no scripts, no plugins, no sniffing into HTML.
USER_FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "private, max-age=3600",
}

_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def _file_out(meta: FileMeta) -> FileOut:
    return FileOut(**meta.public())


@router.post("", status_code=status.HTTP_201_CREATED, response_model=FileOut, openapi_extra=_UPLOAD_DOC)
async def upload(request: Request, principal: PrincipalDep, node: NodeDep) -> FileOut:
    """Upload one file (multipart field ``file``), streamed; type detected from the content; images get a
    thumbnail. Send it in a chat with ``message.send`` ``kind: image|file`` and ``file: <id>``."""
    limit = node.settings.limits.upload_max_bytes
    stream = MultipartFileStream(request, "file", max_body_bytes=limit + 256 * 1024)
    await stream.start()
    meta = await node.files.upload(principal.user_id, stream.filename, stream.chunks())
    return _file_out(meta)


class LinkQuery(BaseModel):
    """The query of a signed link (FileService.signed_link); without both parts the bearer token decides."""

    exp: int | None = Field(None, ge=0, le=2**53)
    sig: str | None = Field(None, max_length=64)


async def _authorized(
    node: Node, file_id: int, variant: str, principal: Principal | None, link: LinkQuery
) -> FileMeta:
    if link.sig is not None and link.exp is not None:
        if not node.files.check_link(file_id, variant, link.exp, link.sig):
            raise WsimError(ErrorCode.FORBIDDEN, "link expired or invalid")
        return await node.files.get(file_id)
    if principal is None:
        raise WsimError(ErrorCode.UNAUTHORIZED, "missing bearer token or signed link")
    return await node.files.authorize(principal.user_id, file_id)


def _serve(node: Node, key: str, mime: str, name: str) -> Response:
    disposition = "inline" if mime in IMAGE_TYPES else "attachment"
    path = node.files.local_path(key)
    if path is not None:
        return FileResponse(
            path,
            media_type=mime,
            filename=name,
            content_disposition_type=disposition,
            headers=USER_FILE_HEADERS,
        )
    return StreamingResponse(
        node.files.open(key),
        media_type=mime,
        headers={
            **USER_FILE_HEADERS,
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{_quote(name)}",
        },
    )


def _quote(name: str) -> str:
    return quote(name, safe="")


@router.get("/{file_id:id}", responses={200: {"content": {"*/*": {}}}, 403: {"model": ErrorOut}})
async def download(
    file_id: FileIdPath,
    node: NodeDep,
    principal: OptionalPrincipalDep,
    link: Annotated[LinkQuery, Query()],
) -> Response:
    """For the uploader and members of a conversation it was sent to (bearer token), or with a signed link."""
    meta = await _authorized(node, ident(file_id, "file"), "file", principal, link)
    return _serve(node, meta.storage_key, meta.mime, meta.name)


@router.get(
    "/{file_id:id}/thumbnail",
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, 403: {"model": ErrorOut}},
)
async def thumbnail(
    file_id: FileIdPath,
    node: NodeDep,
    principal: OptionalPrincipalDep,
    link: Annotated[LinkQuery, Query()],
) -> Response:
    meta = await _authorized(node, ident(file_id, "file"), "thumbnail", principal, link)
    if meta.thumb_key is None:
        raise WsimError(ErrorCode.NOT_FOUND, "this file has no thumbnail")
    mime = "image/png" if meta.mime in ("image/png", "image/gif", "image/webp") else "image/jpeg"
    return _serve(node, meta.thumb_key, mime, f"thumb-{meta.name}")


@router.get("/{file_id:id}/meta", response_model=FileOut)
async def file_meta(file_id: FileIdPath, principal: PrincipalDep, node: NodeDep) -> FileOut:
    return _file_out(await node.files.authorize(principal.user_id, ident(file_id, "file")))


@router.post("/{file_id:id}/link", response_model=FileLinkOut)
async def file_link(file_id: FileIdPath, principal: PrincipalDep, node: NodeDep) -> FileLinkOut:
    """Short-lived signed URLs (for ``<img src>`` and download links, which cannot carry a bearer header)."""
    meta = await node.files.authorize(principal.user_id, ident(file_id, "file"))
    link = node.files.signed_link(meta.id, "file")
    thumb = node.files.signed_link(meta.id, "thumbnail").url if meta.thumb_key else None
    return FileLinkOut(url=link.url, thumbnail_url=thumb, expires=link.expires_ms)
