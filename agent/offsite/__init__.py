"""The off-site upload every capability shares: batching, asking, sealing, sending, pacing."""
