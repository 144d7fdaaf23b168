"""Proto <-> domain conversion for the server: the only place both kinds meet.

enums.py and stamps.py are the shared pieces; agent.py decodes what agents send
(and encodes what they are sent), admin.py encodes the admin API's answers,
protodict.py is the fast proto-to-dict, sitelist.py the ListSites answer.
"""
