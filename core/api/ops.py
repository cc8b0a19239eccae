from __future__ import annotations

from fastapi import APIRouter, Response

from core import __version__
from core.api.deps import NodeDep
from core.api.schemas import HealthOut
from core.metrics import PROMETHEUS_CONTENT_TYPE

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=HealthOut)
async def healthz(node: NodeDep) -> HealthOut:
    return HealthOut(status="ok", node=node.name, connections=node.hub.connection_count, version=__version__)


@router.get("/metrics", response_class=Response, responses={200: {"content": {PROMETHEUS_CONTENT_TYPE: {}}}})
async def metrics(node: NodeDep) -> Response:
    """Prometheus text format: connections, frames, acks by state, latency histograms, retries, dead letters,
    cache hits/misses per tier, store operation latency."""
    return Response(node.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)
