"""Data and models that travel between machines as ``s3://bucket/prefix`` URIs.

A pipeline submitted to a cluster names its inputs by URI, never by a path on the submitting machine:
``minielm data upload`` puts a local directory under a URI, the submitter checks that each input URI
holds objects, and each task fetches what it reads. A URI names either a "directory" (every object
under the prefix) or a single object.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from tqdm.auto import tqdm

from minielm.config import S3Config
from minielm.errors import InputError, ServiceError
from minielm.storage import s3_client

S3_SCHEME = "s3://"


class S3UriError(InputError):
    """An input URI is malformed or names nothing (bad input: the message names the URI)."""


class S3Unreachable(ServiceError):
    """The S3 endpoint cannot be reached or refused the credentials (the environment, not the input)."""


def is_s3_uri(value: str) -> bool:
    return str(value).startswith(S3_SCHEME)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ("bucket", "some/prefix")."""
    if not is_s3_uri(uri):
        raise S3UriError(f"expected an s3://bucket/prefix URI, got {uri!r}")
    bucket, _, prefix = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise S3UriError(f"{uri!r} names no bucket; expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def _keys(client, uri: str) -> list[str]:
    """Every object the URI names: the object itself, else every object under the prefix."""
    bucket, prefix = parse_s3_uri(uri)
    try:
        if prefix:
            try:
                client.head_object(Bucket=bucket, Key=prefix)
                return [prefix]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey", "NotFound"}:
                    raise
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "")
        return [item["Key"] for page in pages for item in page.get("Contents", [])]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in {"NoSuchBucket", "404"}:
            raise S3UriError(f"{uri}: bucket {bucket!r} does not exist") from None
        raise S3Unreachable(f"{uri}: S3 refused the request ({code or error})") from None
    except (EndpointConnectionError, BotoCoreError) as error:
        raise S3Unreachable(f"{uri}: cannot reach S3 ({error})") from None


def require_objects(uri: str, config: S3Config, client=None) -> int:
    """The number of objects the URI names; raises S3UriError naming it when there are none."""
    keys = _keys(client or s3_client(config), uri)
    if not keys:
        raise S3UriError(f"{uri} does not exist (no object at or under it)")
    return len(keys)


def upload_dir(local_dir: Path, uri: str, config: S3Config, client=None) -> list[str]:
    """Copy every file under ``local_dir`` to ``uri``/<relative path>; returns the keys written."""
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise S3UriError(f"{local_dir} is not a directory")
    bucket, prefix = parse_s3_uri(uri)
    client = client or s3_client(config)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    if not files:
        raise S3UriError(f"{local_dir} holds no files")
    keys = []
    try:
        for path in tqdm(files, desc=f"upload {uri}", unit="file"):
            key = "/".join(p for p in (prefix, path.relative_to(local_dir).as_posix()) if p)
            client.upload_file(str(path), bucket, key)
            keys.append(key)
    except ClientError as error:
        raise S3Unreachable(f"{uri}: S3 refused the upload ({error})") from None
    except (EndpointConnectionError, BotoCoreError) as error:
        raise S3Unreachable(f"{uri}: cannot reach S3 ({error})") from None
    return keys


def fetch(source: str, dest: Path, config: S3Config, client=None) -> Path:
    """Bring an input onto this machine under ``dest`` and return its local path.

    An ``s3://`` URI of a prefix becomes the folder ``dest``; of one object, ``dest/<name>``. A local path
    (kfp.local runs on one machine only) is copied the same way.
    """
    dest = Path(dest)
    if not is_s3_uri(source):
        path = Path(source)
        if path.is_dir():
            shutil.copytree(path, dest, dirs_exist_ok=True)
            return dest
        if path.is_file():
            dest.mkdir(parents=True, exist_ok=True)
            return Path(shutil.copy2(path, dest / path.name))
        raise S3UriError(f"{source} does not exist (expected an s3:// URI or, for local runs, a path)")
    client = client or s3_client(config)
    bucket, prefix = parse_s3_uri(source)
    keys = _keys(client, source)
    if not keys:
        raise S3UriError(f"{source} does not exist (no object at or under it)")
    if keys == [prefix]:
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / Path(prefix).name
        client.download_file(bucket, prefix, str(target))
        return target
    for key in tqdm(keys, desc=f"fetch {source}", unit="file"):
        target = dest / key[len(prefix) :].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target))
    return dest
