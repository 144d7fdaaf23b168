"""Code shared by the agent, the server and the admin CLI: errors, clock, version."""
