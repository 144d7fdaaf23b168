"""The server's domain floor: pure rules and records.

It imports nothing from services, state, rpc, web, alerting or db (.importlinter).
"""
