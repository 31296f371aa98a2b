"""S3 object storage on boto3: bytes, JSON, parquet, directories and atomic pointer objects.

Works against the embedded SeaweedFS, MinIO and AWS alike (``s3.endpoint_url: null`` means AWS).
A pointer is a small JSON object written with one PUT: S3 replaces an object whole, so a reader
sees either the old or the new target, never a mix. That is what makes registry promotion atomic.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from minielm.config import S3Config
from minielm.errors import ServiceError


class ObjectNotFound(ServiceError, KeyError):
    """The key does not exist in the bucket."""


# Answers that waiting does not fix: credentials, permissions, a missing bucket, a malformed request.
PERMANENT_S3_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "InvalidBucketName",
    "AccountProblem",
    "InvalidRequest",
    "ExpiredToken",
    "InvalidToken",
}


def permanent_s3_error(error: BaseException) -> str | None:
    """``"Code: message"`` when retrying cannot help (4xx such as AccessDenied, NoSuchBucket), else None.

    5xx, throttling, timeouts and connection errors are transient: retry those with backoff.
    """
    if not isinstance(error, ClientError):
        return None
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if code in PERMANENT_S3_CODES or (400 <= int(status) < 500 and code not in {"RequestTimeout", "SlowDown"}):
        return f"{code or status}: {details.get('Message', '')}".rstrip(": ")
    return None


def s3_client(config: S3Config, connect_timeout: float = 5, retries: int | None = None):
    """A boto3 S3 client for the configured endpoint (path-style addressing for local servers).

    botocore's ``standard`` retry mode retries 5xx answers (e.g. InternalError while a restarted
    server registers its volumes), throttling and timeouts with jittered exponential backoff;
    ``retries`` (default ``s3.max_attempts``) counts attempts, so 0 or 1 means a single try.
    """
    attempts = config.max_attempts if retries is None else max(retries, 1)
    secret = config.secret_access_key.get_secret_value() if config.secret_access_key else None
    key_id = config.access_key_id.get_secret_value() if config.access_key_id else None
    return boto3.client(
        "s3",
        endpoint_url=config.endpoint_url,
        region_name=config.region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=BotoConfig(
            connect_timeout=connect_timeout,
            read_timeout=30,
            retries={"total_max_attempts": attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
        ),
    )


class ObjectStore:
    """Typed access to one bucket."""

    def __init__(self, config: S3Config, client=None) -> None:
        self.config = config
        self.bucket = config.bucket
        self.client = client or s3_client(config)

    def ensure_bucket(self) -> None:
        """Create the bucket when it is missing; any other failure (e.g. 5xx after retries) is raised, not
        answered with a create that would then fail on the existing bucket."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except ClientError as error:  # another process created it meanwhile
            if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise

    # -- bytes ---------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                raise ObjectNotFound(f"s3://{self.bucket}/{key}") from None
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under the prefix, in lexicographic order, across pages."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    # -- JSON and parquet ----------------------------------------------------------------------
    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value, indent=2, default=str).encode(), "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_parquet(self, key: str, frame: pd.DataFrame) -> None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self.put_bytes(key, buffer.getvalue(), "application/vnd.apache.parquet")

    def get_parquet(self, key: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.get_bytes(key)))

    # -- pointers ------------------------------------------------------------------------------
    def write_pointer(self, key: str, target: dict[str, Any]) -> None:
        """Replace the pointer object in one PUT (atomic for readers)."""
        self.put_json(key, target)

    def read_pointer(self, key: str) -> dict[str, Any] | None:
        try:
            return self.get_json(key)
        except ObjectNotFound:
            return None

    # -- directories ---------------------------------------------------------------------------
    def upload_dir(self, local_dir: Path, prefix: str) -> list[str]:
        local_dir = Path(local_dir)
        keys = []
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}"
            self.client.upload_file(str(path), self.bucket, key)
            keys.append(key)
        return keys

    def download_dir(self, prefix: str, local_dir: Path) -> list[Path]:
        prefix = prefix.rstrip("/") + "/"
        paths = []
        for key in self.list_keys(prefix):
            target = Path(local_dir) / key[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.bucket, key, str(target))
            paths.append(target)
        if not paths:
            raise ObjectNotFound(f"s3://{self.bucket}/{prefix} holds no objects")
        return paths
