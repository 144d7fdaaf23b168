"""The agent's own vocabulary: run reports, messages to and from the server, typed errors.

Capabilities and the transport both import it; it imports neither (see .importlinter).
"""
