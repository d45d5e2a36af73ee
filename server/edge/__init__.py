"""The edge of the network: what a trusted proxy in front of Plexicorn says about the client.

Pure, socket-free parsers: `trust.py` (which peers may speak for their clients,
`--forwarded-allow-ips`), `forwarded.py` (`X-Forwarded-*` and RFC 7239 `Forwarded`, applied to
each scope) and `proxyprotocol.py` (the PROXY protocol v1/v2 header a connection starts with).
"""
