"""The agent's only door to the network: gRPC channel, proto conversion, error mapping.

Nothing outside this package imports grpc or storesafe.v1.
"""

import os
import sys

# gRPC's C core writes INFO lines (a failed TLS handshake, say) straight to
# stderr unless told otherwise before it loads; the agent reports those
# failures itself, as one sentence. An explicit GRPC_VERBOSITY still wins.
if "grpc" not in sys.modules:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
