"""Locust load profiles whose requests land in the harness's history and are judged by its checkers.

Two ways to run a profile (``loadprofiles/<name>.py``; the names are in :mod:`.profiles`):

* ``aurora-harness load --profile NAME --target reference|external --engine ...`` brings the target up
  if needed, runs Locust in child processes (``--workers N``: a master and N workers), and judges the
  merged histories like a certification (:mod:`harness.cli.load`);
* ``locust -f loadprofiles/NAME.py --target ...`` against a running target, with the harness's options
  registered on Locust's parser (:mod:`.options`); a master hands them to its workers.

The package is split by whether a module imports Locust (which patches its process with gevent):

* Locust-free, imported by the harness's own commands and by the tests: :mod:`.stages` (shapes and
  fault plans as data), :mod:`.profiles` (the table of profiles), :mod:`.requests` (the requests, as
  functions of a recording client), :mod:`.bridge` (a request's result as a Locust request event),
  :mod:`.histories` (per-process histories, their merge, the manifest), :mod:`.options` (the target
  from Locust's options), :mod:`.phases` (numbers before, during and after each fault),
  :mod:`.verdicts` (final read, checkers, ``results.json``), :mod:`.benchmark`;
* Locust's side, imported only by Locust processes: :mod:`.runtime` (per-process state, listeners, the
  end-of-run handshake with the workers), :mod:`.users`, :mod:`.shapes`, the profile files and
  ``bench_users.py``.
"""
