"""The off-site upload shared by every capability that ships data into the store: batching, sending, pacing."""
