"""Which peers may speak for their clients: `--forwarded-allow-ips` as a set of networks.

The same list decides whether a connection's forwarding headers are read (forwarded.py) and
whether it may open with a PROXY protocol header (proxyprotocol.py).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

DEFAULT_ALLOW = "127.0.0.1,::1,unix"

# The entry that trusts peers on a Unix socket (who may connect is the socket file's mode).
UNIX = "unix"

ANSWERS_KEPT = 4096

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedPeers:
    """`--forwarded-allow-ips`: a comma list of addresses, CIDR networks, `unix` and `*` (any)."""

    __slots__ = ("spec", "any", "unix", "_exact", "_networks", "_answers")

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.any = False
        self.unix = False
        exact: set[str] = set()
        networks: list[_Network] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item == "*":
                self.any = True
            elif item.lower() in (UNIX, "unix:"):
                self.unix = True
            else:
                try:
                    network = ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address, a network (10.0.0.0/8), unix or *") from None
                networks.append(network)
                if network.num_addresses == 1:
                    exact.add(str(network.network_address))  # a string look-up, before any parsing
        self._exact = frozenset(exact)
        self._networks = tuple(networks)
        # Answers for addresses seen lately (ipaddress containment costs microseconds), bounded.
        self._answers: dict[str, bool] = {}

    def __contains__(self, host: str | None) -> bool:
        """Whether the peer `host` (an IP address as text; None for a Unix-socket peer) is trusted."""
        if host is None:
            return self.unix or self.any
        if self.any or host in self._exact:
            return True
        answer = self._answers.get(host)
        if answer is None:
            address = parse_ip(host)
            answer = address is not None and any(address in network for network in self._networks)
            if len(self._answers) >= ANSWERS_KEPT:
                self._answers.clear()
            self._answers[host] = answer
        return answer


@lru_cache(maxsize=1024)
def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as text (IPv6 without brackets, maybe with a %zone) or None if it is not one;
    an IPv4-mapped IPv6 address (::ffff:10.0.0.1, from a dual-stack socket) as its IPv4 address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
