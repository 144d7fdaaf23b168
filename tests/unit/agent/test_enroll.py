"""Enrollment stores the credential and CA only after the server said yes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.enroll import enroll
from agent.settings import Credentials, StateDir
from common.errors import InvalidArgument, Unavailable
from tests.support.agentfakes import T0, make_tls, recording_server
from tests.support.clock import FakeClock


def run_enroll(state: StateDir, *, ca_pem: bytes | None, use_tls: bool = True, **kw: str) -> None:
    tls = make_tls()

    async def go() -> None:
        async with recording_server(tls.server_credentials() if use_tls else None) as (addr, _):
            await enroll(
                state=state,
                server=addr,
                token=kw.get("token", "tok"),
                site=kw.get("site", "shop-1"),
                ca_pem=tls.ca_pem if ca_pem == b"right" else ca_pem,
                insecure=not use_tls,
                clock=FakeClock(T0),
            )

    asyncio.run(go())


def test_enroll_stores_credential_and_ca(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    run_enroll(state, ca_pem=b"right")
    creds = state.load_credentials()
    assert (creds.agent_id, creds.credential, creds.site, creds.group) == (
        "a1",
        "secret-tok",
        "shop-1",
        "g",
    )
    assert creds.enrolled_at == T0
    assert state.read_ca(creds) is not None
    assert b"BEGIN CERTIFICATE" in (state.root / "ca.pem").read_bytes()


def test_plaintext_enrollment_keeps_no_ca(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    run_enroll(state, ca_pem=None, use_tls=False)
    creds = state.load_credentials()
    assert (creds.insecure, creds.ca_file) == (True, None)


@pytest.mark.parametrize(
    ("ca_pem", "hint"),
    [(None, "pass the server's CA certificate with --ca"), (make_tls().ca_pem, "check that --ca")],
)
def test_an_untrusted_server_gets_a_hint_and_nothing_is_stored(
    tmp_path: Path, ca_pem: bytes | None, hint: str
) -> None:
    state = StateDir(tmp_path)
    with pytest.raises(Unavailable, match="TLS handshake") as caught:
        run_enroll(state, ca_pem=ca_pem)
    assert hint in str(caught.value)
    assert not state.is_enrolled()


@pytest.mark.parametrize(("token", "site"), [(" ", "shop-1"), ("tok", "")])
def test_empty_token_or_site_is_refused_before_any_call(
    tmp_path: Path, token: str, site: str
) -> None:
    with pytest.raises(InvalidArgument, match="empty"):
        run_enroll(StateDir(tmp_path), ca_pem=b"right", token=token, site=site)


@pytest.mark.parametrize(("ca_file", "insecure"), [("ca.pem", False), (None, False), (None, True)])
def test_the_re_enroll_command_parses_as_enroll_with_this_agents_settings(
    tmp_path: Path, ca_file: str | None, insecure: bool
) -> None:
    import shlex

    from typer.main import get_command

    from agent.enroll import reenroll_command
    from agent.main import app

    state = StateDir(tmp_path / "state dir")
    creds = Credentials(
        server="backup.msp.example:7443",
        agent_id="a1",
        credential="ssa_a1_secret",
        site="shop-a",
        group="default",
        ca_file=ca_file,
        insecure=insecure,
    )
    args = shlex.split(reenroll_command(state, creds))
    assert args[:2] == ["storesafe-agent", "enroll"]
    enroll = get_command(app).commands["enroll"]  # type: ignore[attr-defined]
    params = enroll.make_context("enroll", args[2:]).params
    assert params["server"] == "backup.msp.example:7443"
    assert params["site"] == "shop-a"
    assert params["token"] == "NEW_TOKEN"
    assert params["state_dir"] == state.root.absolute()
    assert params["ca"] == (state.root / "ca.pem" if ca_file else None)
    assert params["insecure"] is insecure
    assert "ssa_a1_secret" not in " ".join(args)
