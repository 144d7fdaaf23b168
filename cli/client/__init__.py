"""The admin CLI's only gRPC code: the channel, the AdminService calls, the translation.

Commands get plain `cli.models` records and `common.errors` exceptions from this
package; they never see protobuf messages or `grpc.RpcError`.

- `channel`: where the server is (`Settings`), the admin token, TLS, the channel.
- `admin`: `AdminClient`, one method per AdminService RPC.
- `convert`: protobuf answers -> `cli.models` records, CLI words -> proto enums.
- `errors`: a failed call -> the typed error (the shared table in
  common/wire_errors.py) with the CLI's one sentence.
"""

from __future__ import annotations

import os

# gRPC core logs connection and TLS failures on stderr; the CLI reports them as
# one sentence instead. Read when grpc is first imported, so set before that: every
# module of this package imports grpc after this line has run.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from cli.client.admin import AdminClient
from cli.client.channel import DEFAULT_TIMEOUT, Settings

__all__ = ["DEFAULT_TIMEOUT", "AdminClient", "Settings"]
