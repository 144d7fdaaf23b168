"""The StoreSafe agent: the loop, the capability seam, its capabilities and the transport.

agent.domain is the vocabulary every part speaks; each capability (agent.firebird
now) plugs in through agent.capability and is listed in agent.installed;
agent.service wires them; only agent.transport talks to the server.
"""
