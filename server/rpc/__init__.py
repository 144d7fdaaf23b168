"""The gRPC edge: thin servicers, proto conversion, the error table."""
