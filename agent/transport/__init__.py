"""The agent's only door to the network: gRPC channel, proto conversion, error mapping.

Nothing outside this package imports grpc or storesafe.v1.
"""
