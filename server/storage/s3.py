"""The S3 backend: one object per blob in a bucket (under an optional prefix), via boto3.

Create-only rests on the conditional put `If-None-Match: *`: the server refuses to
replace an object (412), and `BlobStore` then compares the stored bytes to tell an
idempotent retry from an overwrite. `check` proves the endpoint honours the condition
(some S3 servers ignore it and overwrite), so `serve` can refuse such a store. Blobs
are sent in one PUT: chunks are far below S3's 5 GiB single-put limit, so there is no
multipart upload. A batch (`create_many`) is sent as that many PUTs at once, at most
`connections` in flight (boto3 clients are thread-safe), since each costs a round trip.
Credentials come from boto3's standard chain (environment variables, shared files,
instance roles); none are ever put in the store URL.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions

from common.errors import NotFound
from server.storage.backend import Backend, BlobInfo, StoreUsage
from server.storage.errors import StoreFull, StoreUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
ATTEMPTS = 3
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_FULL = {"QuotaExceeded", "InsufficientStorage", "XMinioStorageFull", "507"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}
_UNREACHABLE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ConnectionClosedError,
)


class S3Backend(Backend):
    """Blobs as objects `<prefix><key>` in `bucket` at `endpoint` (None: AWS itself)."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        attempts: int = ATTEMPTS,
        connections: int = 10,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint = endpoint
        self.read_timeout = read_timeout
        config = botocore.config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": attempts, "mode": "standard"},
            max_pool_connections=connections,
            s3={"addressing_style": "path"} if endpoint else {},
        )
        session = boto3.session.Session()
        self.client: S3Client = session.client(
            "s3", endpoint_url=endpoint, region_name=region, config=config
        )
        self._writers = concurrent.futures.ThreadPoolExecutor(
            max_workers=connections, thread_name_prefix="s3-put"
        )

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} at {self.endpoint}" if self.endpoint else where

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise self._error(exc, "open the bucket") from exc
        self._check_conditional_put()

    def create(self, key: str, data: bytes) -> bool:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, IfNoneMatch="*"
            )
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _EXISTS:
                return False
            raise self._error(exc, f"store blob {key}") from exc
        except Exception as exc:
            raise self._error(exc, f"store blob {key}") from exc
        return True

    def create_many(self, blobs: Sequence[tuple[str, bytes]]) -> list[bool]:
        if len(blobs) < 2:
            return [self.create(key, data) for key, data in blobs]
        puts = [self._writers.submit(self.create, key, data) for key, data in blobs]
        try:
            return [put.result() for put in puts]  # the first failure in batch order
        finally:  # on a failure: nothing more starts, and nothing is still writing after
            for put in puts:
                put.cancel()
            concurrent.futures.wait(puts)

    def read(self, key: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            return answer["Body"].read()
        except Exception as exc:
            raise self._error(exc, f"read blob {key}", key) from exc

    def stat(self, keys: Sequence[str]) -> dict[str, BlobInfo | None]:
        return {key: self._head(key) for key in keys}

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        cut = len(self.prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield BlobInfo(item["Key"][cut:], item["Size"], item.get("LastModified"))
        except Exception as exc:
            raise self._error(exc, f"list blobs under {prefix or 'the root'}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as exc:
            if isinstance(exc, botocore.exceptions.ClientError) and _code(exc) in _NOT_FOUND:
                return
            raise self._error(exc, f"remove blob {key}") from exc

    def usage(self) -> StoreUsage:
        return StoreUsage(free_bytes=None, total_bytes=None)

    def close(self) -> None:
        self._writers.shutdown(wait=True, cancel_futures=True)
        self.client.close()

    def _head(self, key: str) -> BlobInfo | None:
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as exc:
            if isinstance(exc, botocore.exceptions.ClientError) and _code(exc) in _NOT_FOUND:
                return None
            raise self._error(exc, f"look up blob {key}") from exc
        return BlobInfo(key, answer["ContentLength"])

    def _check_conditional_put(self) -> None:
        """Write one probe object twice; the second, conditional put must be refused."""
        probe = f"{self.prefix}storesafe-probe/{uuid.uuid4().hex}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"1", IfNoneMatch="*")
            try:
                self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"2", IfNoneMatch="*")
            except botocore.exceptions.ClientError as exc:
                if _code(exc) not in _EXISTS:
                    raise
            else:
                raise StoreUnavailable(
                    f"the S3 store {self.describe()} overwrote an object despite "
                    "If-None-Match: *; it cannot keep blobs create-only, so it is not used"
                )
            finally:
                self.client.delete_object(Bucket=self.bucket, Key=probe)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise self._error(exc, "write a probe object") from exc

    def _error(self, exc: BaseException, action: str, key: str = "") -> Exception:
        where = self.describe()
        if isinstance(exc, botocore.exceptions.ReadTimeoutError):
            return StoreUnavailable(
                f"the S3 endpoint {self.endpoint or 'of AWS'} did not answer within "
                f"{self.read_timeout:g} s; could not {action}"
            )
        if isinstance(exc, _UNREACHABLE):
            return StoreUnavailable(
                f"the S3 endpoint {self.endpoint or 'of AWS'} cannot be reached; could not {action}"
            )
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StoreUnavailable(
                f"no S3 credentials were found for {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or another boto3 credential source)"
            )
        if isinstance(exc, botocore.exceptions.ClientError):
            return self._client_error(exc, action, key)
        return StoreUnavailable(f"the S3 store {where} could not {action}: {exc}")

    def _client_error(
        self, exc: botocore.exceptions.ClientError, action: str, key: str
    ) -> Exception:
        code, where = _code(exc), self.describe()
        if key and code in _NOT_FOUND:
            return NotFound(f"blob {key} is not in the store")
        if code == "NoSuchBucket" or (code in _NOT_FOUND and not key):
            return StoreUnavailable(f"the S3 bucket {self.bucket} does not exist at {where}")
        if code in _FULL:
            return StoreFull(f"the S3 store {where} is full ({code}); could not {action}")
        if code in _DENIED:
            return StoreUnavailable(
                f"the S3 store {where} refused access ({code}); check the credentials; "
                f"could not {action}"
            )
        return StoreUnavailable(f"the S3 store {where} could not {action}: {code} {_message(exc)}")


def _code(exc: botocore.exceptions.ClientError) -> str:
    error: Any = exc.response.get("Error", {})
    return str(error.get("Code", "")) or str(
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


def _message(exc: botocore.exceptions.ClientError) -> str:
    error: Any = exc.response.get("Error", {})
    return str(error.get("Message", "")).rstrip(".")
