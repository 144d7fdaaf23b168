"""Read-only tokens (`admin-token create --read-only`) open the status page and nothing else."""

from __future__ import annotations

import json
import subprocess

import grpc
import pytest
from storesafe.v1 import admin_pb2

from tests.support.server import BIN
from tests.support.web import WebServer


def read_only_token(web: WebServer) -> str:
    out = subprocess.run(
        [
            str(BIN / "storesafe-server"),
            "admin-token",
            "create",
            "--data-dir",
            str(web.handle.data_dir),
            "--name",
            "wallboard",
            "--read-only",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    token: str = json.loads(out)["admin_token"]
    assert token.startswith("ssro_")
    return token


def test_a_read_only_token_opens_the_page_and_signs_in(web: WebServer) -> None:
    token = read_only_token(web)
    assert web.get("/", token=token).status == 200
    signed_in = web.post_form("/login", {"token": token})
    assert signed_in.status == 303
    assert web.get("/", cookie=signed_in.headers["Set-Cookie"].split(";")[0]).status == 200
    wrong = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    assert web.get("/", token=wrong).status == 401


@pytest.mark.parametrize("rewrite", [False, True])
def test_a_read_only_token_is_refused_by_the_admin_api(web: WebServer, rewrite: bool) -> None:
    token = read_only_token(web)
    if rewrite:  # the same id and secret under the admin prefix
        token = "ssadm_" + token.removeprefix("ssro_")
    with pytest.raises(grpc.RpcError) as err:
        web.handle.admin_stub().ListSites(
            admin_pb2.ListSitesRequest(),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_cli_refuses_a_read_only_token_in_one_sentence(web: WebServer) -> None:
    env = {**web.handle.cli_env, "STORESAFE_TOKEN": read_only_token(web)}
    done = subprocess.run(
        [str(BIN / "storesafe"), "sites"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
