"""How the CLI reaches the server: the address and token checked (`Settings`), TLS, the channel.

Every check of what the technician typed (an address that is not HOST:PORT, a
token no header can carry, an unreadable CA file, --insecure off loopback) ends
in one `InvalidArgument` sentence before anything is sent.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import grpc

from cli.client.settings import Settings
from common import errors
from common.version import VERSION

MAX_RECEIVE_BYTES = 64 * 1024 * 1024  # 10,000+ site rows fit with room to spare
MAX_SEND_BYTES = 4 * 1024 * 1024

_ADDRESS = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[^:\[\]\s]+):(?P<port>\d{1,5})")


def server_of(settings: Settings) -> str:
    """The server address, or a complaint that there is none."""
    if not settings.server:
        raise errors.InvalidArgument(
            "no server given: pass --server HOST:PORT or set STORESAFE_SERVER"
        )
    return settings.server.strip()


def token_of(settings: Settings) -> str:
    """The admin token, checked to be something a header can carry."""
    token = (settings.token or "").strip()
    if not token:
        raise errors.InvalidArgument("no admin token given: pass --token or set STORESAFE_TOKEN")
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise errors.InvalidArgument(
            "the admin token holds characters no token has: check --token or STORESAFE_TOKEN"
        )
    return token


def split_address(address: str) -> tuple[str, int]:
    """Split `HOST:PORT` (or `[v6]:PORT`) and check the port."""
    match = _ADDRESS.fullmatch(address.strip())
    port = int(match["port"]) if match else 0
    if not match or not 1 <= port <= 65535:
        raise errors.InvalidArgument(f"the server address '{address}' is not HOST:PORT")
    return match["host"].strip("[]"), port


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_channel(settings: Settings) -> grpc.Channel:
    """A channel to the server: TLS trusting `settings.ca` (the system roots when none is
    given), or plaintext with --insecure, which only a loopback address may use."""
    server = server_of(settings)
    host, _port = split_address(server)
    token_of(settings)
    options = [
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        ("grpc.primary_user_agent", f"storesafe-cli/{VERSION}"),
    ]
    if settings.insecure:
        if not is_loopback(host):
            raise errors.InvalidArgument(
                f"--insecure is allowed only for loopback addresses, not '{host}'"
            )
        return grpc.insecure_channel(server, options=options)
    return grpc.secure_channel(server, _credentials(settings.ca), options=options)


def _credentials(ca: Path | None) -> grpc.ChannelCredentials:
    """TLS trusting `ca` (the server's private CA), or the system roots when none is given."""
    if ca is None:
        return grpc.ssl_channel_credentials()
    try:
        pem = ca.expanduser().read_bytes()
    except OSError as err:
        raise errors.InvalidArgument(
            f"cannot read the CA certificate {ca}: {err.strerror or err}"
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise errors.InvalidArgument(f"{ca} is not a PEM CA certificate")
    return grpc.ssl_channel_credentials(root_certificates=pem)
