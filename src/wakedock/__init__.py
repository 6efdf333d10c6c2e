"""WakeDock: wake Docker services on demand, behind an enterprise-grade security layer."""

__version__ = "0.1.0"
