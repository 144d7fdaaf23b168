"""The agent's only door to the network: gRPC channel, proto conversion, error mapping.

Nothing outside this package imports grpc or storesafe.v1.
"""

import os

# gRPC's C core prints its own log lines to stderr; the agent logs what matters
# itself, so keep stderr to one clear sentence per failure unless asked otherwise.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
