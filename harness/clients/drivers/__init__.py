"""Thin adapters between the recording clients and one database driver each.

An adapter opens one connection, sends one statement and hands back its rows, says whether the
connection still stands, and leaves it clean after an error.  It records nothing and decides
nothing: :mod:`harness.clients.client` drives the steps of a plan and records the outcome.

* :mod:`.psycopg` - psycopg 3, sync and async (PostgreSQL);
* :mod:`.pymysql` - PyMySQL, sync (MySQL-protocol servers);
* :mod:`.connector` - MySQL Connector/Python, sync, binary protocol only (prepared statements by id);
* :mod:`.aiomysql` - aiomysql, async (MySQL-protocol servers; PyMySQL's errors).
"""
