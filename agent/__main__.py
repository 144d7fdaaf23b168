"""`python -m agent`: the `storesafe-agent` command line (used by services without the script)."""

from agent.main import app

app(prog_name="storesafe-agent")
