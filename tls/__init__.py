"""TLS for Plexicorn: server contexts, SNI/reloadable certificates, development certificates."""

from .context import DEFAULT_TLS12_CIPHERS, TLSConfigError, create_server_context
from .devcert import DevCertificate, ensure_dev_certificate, trust_hint
from .store import CertificatePair, ServerTLS, h2_adequate

__all__ = [
    "DEFAULT_TLS12_CIPHERS",
    "CertificatePair",
    "DevCertificate",
    "ServerTLS",
    "TLSConfigError",
    "create_server_context",
    "ensure_dev_certificate",
    "h2_adequate",
    "trust_hint",
]
