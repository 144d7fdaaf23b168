"""`open_store`: every URL form, and one clear sentence for each bad one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.errors import InvalidArgument
from server.storage import BlobStore, open_store
from server.storage.filesystem import FilesystemBackend
from server.storage.s3 import S3Backend


def opened(url: str, data_dir: Path) -> BlobStore:
    store = open_store(url, data_dir)
    asyncio.run(store.close())
    return store


@pytest.mark.parametrize("url", ["", "file:", "file://", "  "])
def test_the_default_is_the_store_folder_in_the_data_dir(url: str, tmp_path: Path) -> None:
    backend = opened(url, tmp_path).backend
    assert isinstance(backend, FilesystemBackend)
    assert backend.root == tmp_path / "store"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/srv/blobs", "/srv/blobs"),
        ("relative/blobs", "relative/blobs"),
        ("file:/srv/blobs", "/srv/blobs"),
        ("file:///srv/my%20blobs", "/srv/my blobs"),
        ("file://localhost/srv/blobs", "/srv/blobs"),
    ],
)
def test_paths_and_file_urls(url: str, path: str, tmp_path: Path) -> None:
    backend = opened(url, tmp_path).backend
    assert isinstance(backend, FilesystemBackend)
    assert backend.root == Path(path)


def test_an_s3_url(tmp_path: Path) -> None:
    url = "s3://offsite-bkt/fleet/a?endpoint=http://127.0.0.1:8333&region=eu-central-1"
    backend = opened(url, tmp_path).backend
    assert isinstance(backend, S3Backend)
    assert (backend.bucket, backend.prefix, backend.endpoint) == (
        "offsite-bkt",
        "fleet/a/",
        "http://127.0.0.1:8333",
    )
    assert backend.client.meta.region_name == "eu-central-1"
    assert backend.describe() == "s3://offsite-bkt/fleet/a/ at http://127.0.0.1:8333"


def test_an_s3_url_without_prefix_or_options(tmp_path: Path) -> None:
    backend = opened("s3://offsite-bkt", tmp_path).backend
    assert isinstance(backend, S3Backend)
    assert (backend.prefix, backend.endpoint) == ("", None)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://host/x", "unknown scheme"),
        ("http://127.0.0.1:8333/bkt", "unknown scheme"),
        ("file:relative", "absolute path"),
        ("file://otherhost/srv", "file:/ABSOLUTE/PATH"),
        ("file:/srv?x=1", "file:/ABSOLUTE/PATH"),
        ("s3:bucket", "must look like"),
        ("s3://AB/x", "bucket name"),
        ("s3://ab/x", "bucket name"),
        ("s3://key:secret@bkt1/x", "never carries credentials"),
        ("s3://bkt1/x?endpoint=127.0.0.1:8333", "must be http://HOST"),
        ("s3://bkt1/x?endpoint=http://h:99999", "bad port"),
        ("s3://bkt1/x?endpoint=http://h/path", "must be http://HOST"),
        ("s3://bkt1/x?bucket=y", "option 'bucket' is unknown"),
        ("s3://bkt1/x?region=a&region=b", "given once"),
        ("s3://bkt1/x?region=", "given once, with a value"),
        ("s3://bkt1/x?region", "malformed query"),
        ("s3://bkt1/../x", "blob name"),
    ],
)
def test_bad_urls_are_refused_in_one_sentence(url: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=why) as caught:
        open_store(url, tmp_path)
    assert "\n" not in str(caught.value)
