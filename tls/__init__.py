"""TLS for Plexicorn: server contexts and development certificates."""

from .context import TLSConfigError, create_server_context
from .devcert import DevCertificate, ensure_dev_certificate, trust_hint

__all__ = [
    "DevCertificate",
    "TLSConfigError",
    "create_server_context",
    "ensure_dev_certificate",
    "trust_hint",
]
