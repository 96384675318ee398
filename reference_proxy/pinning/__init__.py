"""Deciding when a client session must be pinned to one backend connection (per engine)."""

from reference_proxy.pinning.decision import PinDecision

__all__ = ["PinDecision"]
