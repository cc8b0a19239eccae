from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from core import __version__
from core.api.deps import NodeDep
from core.api.schemas import HealthOut
from core.errors import ErrorCode, WsimError
from core.metrics import PROMETHEUS_CONTENT_TYPE

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=HealthOut)
async def healthz(node: NodeDep) -> HealthOut:
    return HealthOut(status="ok", node=node.name, connections=node.hub.connection_count, version=__version__)


@router.get("/metrics", response_class=Response, responses={200: {"content": {PROMETHEUS_CONTENT_TYPE: {}}}})
async def metrics(node: NodeDep, request: Request) -> Response:
    """Prometheus text format: connections, frames, acks by state, latency histograms, retries, dead letters,
    cache hits/misses per tier, store operation latency. With ``server.metrics_token`` set, only for
    ``Authorization: Bearer <that token>``."""
    expected = node.settings.server.metrics_token
    if expected:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            raise WsimError(ErrorCode.UNAUTHORIZED, "metrics need the metrics bearer token")
    return Response(node.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)
