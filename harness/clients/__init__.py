"""Recording clients: every request a workload makes, written into the history with its outcome.

* :mod:`.outcomes` - driver errors classified as definite or indefinite (pure functions);
* :mod:`.base` - addresses, request plans, the shared recording bookkeeping, request deadlines;
* :mod:`.postgres` - :class:`~.postgres.PgClient` and :class:`~.postgres.AsyncPgClient` (psycopg 3);
* :mod:`.mysql` - :class:`~.mysql.MySQLClient` (PyMySQL);
* :mod:`.workload` - write and read loops and idle clients built on them.
"""
