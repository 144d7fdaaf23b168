"""The admin CLI's only gRPC code: the channel, the AdminService calls, the translation.

Commands get plain `cli.models` records and `common.errors` exceptions from this
package; they never see protobuf messages or `grpc.RpcError`.

- `settings`: where the server is (`Settings`), as the global options give it; no gRPC,
  so that taking the options loads none (see cli/main.py on start-up).
- `channel`: the address and the admin token checked, TLS, the channel.
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
