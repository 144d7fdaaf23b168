"""Opening a gRPC channel to the server: address checks, TLS, message limits, keepalive."""

from __future__ import annotations

import dataclasses
import ipaddress

import grpc
from grpc import aio

from common.errors import InvalidArgument

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest message accepted, and sent but for PutChunks (the link checks its reports)."""
MAX_CHUNK_MESSAGE_BYTES = 16 * 1024 * 1024 + 64 * 1024
"""Largest message sent: a PutChunks message, a sealed chunk of up to 16 MiB (the server's
limit; an images chunk of 4 MiB seals to a little more than 4 MiB) and its fields."""


@dataclasses.dataclass(frozen=True)
class Address:
    """A parsed HOST:PORT."""

    host: str
    port: int

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def is_loopback(self) -> bool:
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_address(text: str) -> Address:
    """Parse HOST:PORT (IPv6 as [::1]:PORT), or raise InvalidArgument."""
    raw = text.strip()
    host, sep, port_text = raw.rpartition(":")
    if raw.startswith("["):
        host = host.removeprefix("[").removesuffix("]") if host.endswith("]") else ""
    bad = InvalidArgument(
        f"the server address {text!r} is not HOST:PORT (e.g. backup.example.com:7443)"
    )
    if not sep or not host or not port_text.isdigit() or any(c.isspace() for c in host):
        raise bad
    port = int(port_text)
    if not 0 < port < 65536:
        raise bad
    return Address(host=host, port=port)


def channel_options(*, max_reconnect_seconds: float = 30.0) -> list[tuple[str, int]]:
    """Message limits, keepalive and reconnect pacing shared by every agent channel."""
    return [
        ("grpc.max_send_message_length", MAX_CHUNK_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # Ping only while a call is open: servers refuse idle pings more often than 5 min.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 0),
        # Keep pinging a quiet directive stream (the server allows one ping per 20 s).
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 1_000),
        ("grpc.min_reconnect_backoff_ms", 1_000),
        ("grpc.max_reconnect_backoff_ms", max(1_000, int(max_reconnect_seconds * 1000))),
    ]


def open_channel(
    address: str,
    *,
    ca_pem: bytes | None,
    insecure: bool = False,
    max_reconnect_seconds: float = 30.0,
) -> aio.Channel:
    """A grpc.aio channel: TLS against `ca_pem` (None: system roots); plaintext only on loopback."""
    addr = parse_address(address)
    options = channel_options(max_reconnect_seconds=max_reconnect_seconds)
    if insecure:
        if not addr.is_loopback():
            raise InvalidArgument(
                f"plaintext (--insecure) is allowed only to a loopback address, not {addr.host}"
            )
        return aio.insecure_channel(addr.target, options=options)
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    return aio.secure_channel(addr.target, creds, options=options)
