"""The network layer of the harness: a user-space TCP relay and the toxics it applies.

* :mod:`.toxics` - what the relay does to the bytes passing through it (pure: shaping is tested
  without sockets);
* :mod:`.relay`  - the relay itself, one listener in front of one database instance.

It sits below both the targets (the reference target puts a relay in front of every instance) and
the faults (a network fault installs a toxic on one relay), so neither has to import the other.
"""
