"""`open_store`: a blob store URL (a path, `file:` or `s3://`) turned into a `BlobStore`."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from common.clock import Clock
from common.errors import InvalidArgument, quote
from server.storage.filesystem import FilesystemBackend
from server.storage.keys import check_prefix
from server.storage.s3 import S3Backend
from server.storage.store import DEFAULT_WORKERS, BlobStore

DEFAULT_DIR = "store"
FORMS = "a path, file:PATH, or s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_OPTIONS = {"endpoint", "region"}


def open_store(
    url: str,
    data_dir: Path,
    *,
    workers: int = DEFAULT_WORKERS,
    clock: Clock | None = None,
) -> BlobStore:
    """The store `url` names; "" or "file:" is `<data_dir>/store`. Does no I/O yet:
    call `await store.check()` to learn whether it can be used.
    """
    text = url.strip()
    if text in ("", "file:", "file://"):
        return BlobStore(
            FilesystemBackend(Path(data_dir) / DEFAULT_DIR, clock=clock), workers=workers
        )
    if text.startswith("s3:"):
        return BlobStore(_s3(text, workers), workers=workers)
    if text.startswith("file:"):
        return BlobStore(FilesystemBackend(_file_path(text), clock=clock), workers=workers)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise InvalidArgument(f"store URL {quote(url)} has an unknown scheme; use {FORMS}")
    return BlobStore(FilesystemBackend(Path(text), clock=clock), workers=workers)


def _file_path(text: str) -> Path:
    parsed = urllib.parse.urlsplit(text)
    if parsed.netloc not in ("", "localhost") or parsed.query or parsed.fragment:
        raise InvalidArgument(
            f"store URL {quote(text)} must be file:/ABSOLUTE/PATH or file:///ABSOLUTE/PATH"
        )
    path = urllib.parse.unquote(parsed.path)
    if not path.startswith("/"):
        raise InvalidArgument(f"store URL {quote(text)} must name an absolute path")
    return Path(path)


def _s3(text: str, workers: int) -> S3Backend:
    parsed = urllib.parse.urlsplit(text)
    if not text.startswith("s3://") or parsed.fragment:
        raise InvalidArgument(f"store URL {quote(text)} must look like {FORMS}")
    if "@" in parsed.netloc:
        raise InvalidArgument(
            "an S3 store URL never carries credentials; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the server's environment"
        )
    bucket = parsed.netloc
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidArgument(
            f"S3 bucket name {quote(bucket)} must be 3-63 lowercase letters, digits, '.' or '-'"
        )
    prefix = parsed.path.strip("/")
    if prefix:
        check_prefix(prefix)
    options = _options(text, parsed.query)
    return S3Backend(
        bucket,
        prefix=prefix,
        endpoint=options.get("endpoint"),
        region=options.get("region"),
        connections=workers,
    )


def _options(text: str, query: str) -> dict[str, str]:
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InvalidArgument(f"store URL {quote(text)} has a malformed query") from None
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in _S3_OPTIONS:
            raise InvalidArgument(
                f"store URL option {quote(name)} is unknown; S3 takes endpoint and region"
            )
        if name in options or not value:
            raise InvalidArgument(f"store URL option {name} must be given once, with a value")
        options[name] = value
    endpoint = options.get("endpoint")
    if endpoint is not None:
        target = urllib.parse.urlsplit(endpoint)
        bad_path = target.path not in ("", "/")
        if target.scheme not in ("http", "https") or not target.hostname or bad_path:
            raise InvalidArgument(
                f"S3 endpoint {quote(endpoint)} must be http://HOST[:PORT] or https://HOST[:PORT]"
            )
        try:
            target.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise InvalidArgument(f"S3 endpoint {quote(endpoint)} has a bad port") from None
    return options
