"""Locustfile of ``aurora-harness bench load``: one user class per request, with no pause between requests.

Not a load profile (no shape, nothing judged): the benchmark runs it with one class at a time
(``locust -f loadprofiles/bench_users.py ... PointReadBench``) to measure what one Locust process
sends, and runs the same :mod:`loadprofiles.requests` from a thread pool beside it.
"""

from locust import constant, task

from loadprofiles import requests
from loadprofiles.users import DatabaseUser


class BenchUser(DatabaseUser):
    abstract = True
    wait_time = constant(0)


class PointReadBench(BenchUser):
    """Point reads by primary key through the writer endpoint (one autocommit statement naming who served it)."""

    @task
    def go(self) -> None:
        self.request("point_read", requests.point_read)


class ReaderReadBench(BenchUser):
    """The same point reads through the reader endpoint."""

    endpoint = "reader"

    @task
    def go(self) -> None:
        self.request("point_read", requests.point_read)


class WriteBench(BenchUser):
    """Unique-id inserts through the writer endpoint."""

    @task
    def go(self) -> None:
        self.write()


class ChurnBench(BenchUser):
    """Connect, one query, disconnect."""

    @task
    def go(self) -> None:
        try:
            self.request("churn_query", requests.churn_query)
        finally:
            self.disconnect()


class SleepBench(BenchUser):
    """100 ms asleep in SQL: N users reach about 10 N req/s only if gevent really runs them at once."""

    @task
    def go(self) -> None:
        self.request("sleep", requests.sleep)
