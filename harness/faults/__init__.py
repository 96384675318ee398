"""Faults (Jepsen's nemeses): things done to the system while a workload runs.

* :mod:`.base` - the :class:`~.base.Fault` protocol (start, stop, history events, capability);
* :mod:`.registry` - faults by name and :func:`~.registry.fault_from_spec`;
* node faults: :mod:`.failover`, :mod:`.crash`, :mod:`.restart`; load: :mod:`.storm`;
* network faults: :mod:`.netfault`, a toxic on the user-space TCP relay (:mod:`harness.net`).
"""
