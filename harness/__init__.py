"""aurora-proxy-harness: chaos and conformance testing for proxied Aurora deployments."""

__version__ = "0.1.0"
