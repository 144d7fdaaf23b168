"""Enrollment: trade a one-time token for this agent's own credential and store it,
and the command that enrolls this agent again."""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys

from agent import facts
from agent.domain.messages import EnrollRequest
from agent.settings import CA_FILE, Credentials, StateDir
from agent.transport.link import ServerLink
from common.clock import Clock
from common.errors import InvalidArgument, StoreSafeError, Unavailable
from common.version import VERSION

log = logging.getLogger(__name__)


async def enroll(
    *,
    state: StateDir,
    server: str,
    token: str,
    site: str,
    ca_pem: bytes | None,
    insecure: bool,
    clock: Clock,
) -> Credentials:
    """Enroll for `site` and store the credential; the token is spent only if all checks pass."""
    token, site = token.strip(), site.strip()
    if not token:
        raise InvalidArgument("the enrollment token is empty")
    if not site:
        raise InvalidArgument("the site name is empty")
    link = ServerLink(server, ca_pem=ca_pem, insecure=insecure)  # checks the address
    try:
        state.ensure()  # before the one-time token is spent
        if state.is_enrolled():
            log.warning("replacing the existing enrollment in %s", state.root)
        request = EnrollRequest(
            token=token,
            site=site,
            hostname=facts.hostname(),
            agent_version=VERSION,
            os=facts.os_string(),
        )
        try:
            got = await link.enroll(request)
        except Unavailable as exc:
            if "TLS handshake" not in str(exc):
                raise
            hint = (
                "pass the server's CA certificate with --ca FILE"
                if ca_pem is None
                else "check that --ca names the server's CA certificate"
            )
            raise Unavailable(f"{exc}; {hint}") from exc
    finally:
        await link.close()
    creds = Credentials(
        server=server.strip(),
        agent_id=got.agent_id,
        credential=got.credential,
        site=got.site or site,
        group=got.group,
        ca_file=CA_FILE if ca_pem is not None else None,
        insecure=insecure,
        enrolled_at=clock.now(),
    )
    try:
        state.save_credentials(creds, ca_pem)
    except StoreSafeError as exc:
        raise type(exc)(
            f"enrolled as agent {got.agent_id}, but {exc}; the token is spent: "
            "create a new one and enroll again"
        ) from exc
    return creds


def reenroll_command(state: StateDir, creds: Credentials) -> str:
    """The `storesafe-agent enroll` command that enrolls this agent again, as it runs now:
    its server, site, state dir and CA certificate (or --insecure); only the new token
    is left to fill in (NEW_TOKEN)."""
    args = [
        "storesafe-agent",
        "enroll",
        "--server",
        creds.server,
        "--token",
        "NEW_TOKEN",
        "--site",
        creds.site,
        "--state-dir",
        str(state.root.absolute()),
    ]
    if creds.ca_file is not None:
        args += ["--ca", str((state.root / creds.ca_file).absolute())]
    if creds.insecure:
        args.append("--insecure")
    return subprocess.list2cmdline(args) if sys.platform == "win32" else shlex.join(args)
