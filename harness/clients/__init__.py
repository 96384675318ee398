"""Recording clients: every request a workload makes, written into the history with its outcome.

* :mod:`.plans` - requests as data, and the sans-I/O steps that say which statements they send;
* :mod:`.dialects` - each engine's SQL: quoting, the identity query, session state;
* :mod:`.outcomes` - driver errors classified as definite or indefinite, and the one recording path;
* :mod:`.drivers` - thin adapters to psycopg (sync and async) and PyMySQL;
* :mod:`.address` - where a client connects, and history process ids;
* :mod:`.deadline` - request deadlines that cut off a silent connection;
* :mod:`.client` - :class:`~.client.Client` and :class:`~.client.AsyncClient`;
* :mod:`.workload` - the one request loop, and idle clients.
"""
