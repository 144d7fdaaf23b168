"""Firebird work shared by the agent and the admin CLI: connecting, restoring, validating, counting.

The agent's capability (agent/firebird) backs up and verifies; the admin CLI's
restore from the off-site store restores and checks the same way. Both use
these modules, so a restore is judged by one set of rules wherever it runs.
"""
