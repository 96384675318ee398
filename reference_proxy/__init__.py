"""A pooling proxy that behaves like Amazon RDS Proxy, for local development and as the harness's reference.

Layout, lowest floor first (a module imports only from its own floor or below):

* ``protocol/<engine>/`` - sans-I/O wire codecs, one module per message family.
* ``contracts`` (the seams between the engine-neutral core and an engine), ``config``,
  ``settings_fields``, ``pinning`` (what a pin classifier answers), ``session_services`` (what a
  session is lent), ``tls`` (server TLS contexts).
* ``pool/``, ``routing``, ``topology/``, ``metrics``, ``admin`` - engine-neutral: connection caps
  and fair borrowing, who gets which instance, the topology monitor, RDS-named metrics, the
  ``/metrics`` and ``/status`` listener.
* ``engines/`` - :func:`~reference_proxy.engines.engine_for` picks the configured engine;
  ``engines/<engine>/`` holds its sessions, backends, authentication, pinning and topology probe.
* ``failover`` (routing across failovers) and ``server`` (wires it all together).
* ``__main__`` - the ``reference-proxy`` command.
"""
