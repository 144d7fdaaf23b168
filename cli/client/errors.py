"""The CLI's reading of a failed call: the typed error the server raised, in one sentence.

The class comes from the shared client-side table (common/wire_errors.py): the
stable code the server sent in the trailing metadata, else the status code. The
sentence is the CLI's: the server's own reason where it gave one, and for what
gRPC itself reports (no server, no answer in time, a failed TLS handshake, a
host name that does not resolve) a sentence that says which option to check.
"""

from __future__ import annotations

import re

import grpc

from cli.client.channel import server_of
from cli.client.settings import Settings
from common import errors
from common.wire_errors import code_in, error_class, host_of, names_unresolved_host, tells_of_tls

_SERVER = "the StoreSafe server at {server}"
_FAILED = "the StoreSafe server failed: {details}"
NO_SERVER = "cannot reach " + _SERVER + ": is it running?"
_NO_PLAIN_SERVER = "cannot reach " + _SERVER + " without TLS: is it running with plaintext allowed?"
_REFUSED = "the admin token was refused by " + _SERVER + ": check --token or STORESAFE_TOKEN"
_OLDER = _SERVER + " does not offer this: is it older than the CLI?"
_FALLBACK = "the StoreSafe server refused the request ({code})"
_TLS_FAILURE = (
    "cannot make a TLS connection to " + _SERVER + ": is --ca (STORESAFE_CA) the "
    "CA certificate from the server's data dir?"
)
_NO_HOST = "cannot resolve the host name '{host}': check --server or STORESAFE_SERVER"

# The sentence for each status code, where it is not the server's own ("{details}").
# `{server}`, `{details}`, `{timeout}` and `{code}` are filled in; an empty `{details}`
# falls back to `_FALLBACK`.
_SENTENCES: dict[str, str] = {
    "UNAVAILABLE": NO_SERVER,
    "DEADLINE_EXCEEDED": _SERVER + " did not answer within {timeout:g}s",
    "CANCELLED": "the call to {server} was cancelled",
    "UNAUTHENTICATED": _REFUSED,
    "UNIMPLEMENTED": _OLDER,
    "INTERNAL": _FAILED,
    "UNKNOWN": _FAILED,
    "DATA_LOSS": _FAILED,
}
# What gRPC itself says when there is no connection (unlike a reason the server gives).
_NO_CONNECTION = re.compile(
    r"connect|socket|dns|resolution|broken pipe|goaway|endpoint|keepalive|unreachable|backends",
    re.IGNORECASE,
)


def error_from_rpc(err: grpc.RpcError, settings: Settings) -> errors.StoreSafeError:
    """The typed error, with its one sentence, for a failed call made with `settings`."""
    server = server_of(settings)
    if isinstance(err, grpc.Call):
        code, details, sent = err.code(), err.details(), code_in(err.trailing_metadata())
    else:
        code, details, sent = grpc.StatusCode.UNKNOWN, str(err), None
    error = error_for(code, details, server=server, timeout=settings.timeout, error_code=sent)
    if settings.insecure and error.message == NO_SERVER.format(server=server):
        error = errors.Unavailable(_NO_PLAIN_SERVER.format(server=server))
    return error


def error_for(
    code: grpc.StatusCode,
    details: str | None,
    *,
    server: str,
    timeout: float,
    error_code: str | None = None,
) -> errors.StoreSafeError:
    """Turn a gRPC status (and the stable `error_code` the server sent, None when it sent
    none) into the matching StoreSafe error with one sentence."""
    text = (details or "").strip().splitlines()[0] if (details or "").strip() else ""
    cls = error_class(error_code, code.name)
    template = _SENTENCES.get(code.name, "{details}")
    if code is grpc.StatusCode.UNAVAILABLE:
        if error_code is not None:
            template = "{details}"  # the server answered: its own reason, e.g. its database
        elif (told := _unreachable(text, server)) is not None:
            return errors.Unavailable(told)
    if "{details}" in template and not text:
        template = _FALLBACK
    return cls(template.format(server=server, details=text, timeout=timeout, code=code.name))


def _unreachable(text: str, server: str) -> str | None:
    """The sentence for an UNAVAILABLE that carries no code, when its details say more than
    "no server": a host name that does not resolve, a failed TLS handshake, or a reason
    that is not gRPC's own (a server too old to send codes, e.g. its database is down)."""
    if names_unresolved_host(text, server):
        return _NO_HOST.format(host=host_of(server))
    if tells_of_tls(text):
        return _TLS_FAILURE.format(server=server)
    if text and not _NO_CONNECTION.search(text):
        return text
    return None
