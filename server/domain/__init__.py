"""The server's domain floor: pure rules and records; imports nothing from services, state, rpc, web, alerting or db."""
