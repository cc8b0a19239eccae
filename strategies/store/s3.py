"""Cold-tier archive in any S3-compatible object store (AWS S3, MinIO, Ceph RGW), through boto3 in worker
threads (boto3 is synchronous; the tier job moves a few large objects, so a thread per call costs nothing that
matters, and boto3 is the best-kept S3 client). A PUT is atomic and durable when S3 answers 200."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
from botocore.exceptions import ClientError

from strategies.context import StrategyContext
from strategies.store.config import S3ArchiveConfig


class S3Archive:
    def __init__(self, config: S3ArchiveConfig, ctx: StrategyContext) -> None:
        del ctx
        self._cfg = config
        self._client: Any = None

    def _k(self, key: str) -> str:
        return f"{self._cfg.prefix}{key}"

    async def start(self) -> None:
        def make() -> Any:
            return boto3.session.Session().client(
                "s3",
                endpoint_url=self._cfg.endpoint_url,
                region_name=self._cfg.region,
                aws_access_key_id=self._cfg.access_key_id,
                aws_secret_access_key=self._cfg.secret_access_key,
            )

        self._client = await asyncio.to_thread(make)

    async def close(self) -> None:
        self._client = None

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._client.put_object, Bucket=self._cfg.bucket, Key=self._k(key), Body=data)

    async def get(self, key: str) -> bytes | None:
        def run() -> bytes | None:
            try:
                obj = self._client.get_object(Bucket=self._cfg.bucket, Key=self._k(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            data: bytes = obj["Body"].read()
            return data

        return await asyncio.to_thread(run)

    async def list(self, prefix: str) -> list[str]:
        def run() -> list[str]:
            keys: list[str] = []
            paginator = self._client.get_paginator("list_objects_v2")
            strip = len(self._cfg.prefix)
            for page in paginator.paginate(Bucket=self._cfg.bucket, Prefix=self._k(prefix)):
                keys += [o["Key"][strip:] for o in page.get("Contents", [])]
            return sorted(keys)

        return await asyncio.to_thread(run)
