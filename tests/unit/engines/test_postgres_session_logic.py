"""The PostgreSQL session's decisions, without sockets: startup checks, client auth, transaction
tracking and pinning, cancel keys."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from scramp import ScramClient

import reference_proxy.protocol.postgres as pg
from reference_proxy.contracts import ClientCredential, ReleaseState
from reference_proxy.engines.postgres.auth import (
    MD5,
    SCRAM,
    AuthFailed,
    ClientAuthenticator,
    ScramSecretCache,
    md5_answer,
)
from reference_proxy.engines.postgres.cancel import CancelRegistry
from reference_proxy.engines.postgres.pinning import classify
from reference_proxy.engines.postgres.startup import StartupRejected, check_startup
from reference_proxy.engines.postgres.tracking import NAMED_STATEMENT_REASON, TransactionTracker
from reference_proxy.engines.postgres.unserved import answer_unserved, skip_to_after_sync

# ----------------------------------------------------------------------------------- startup


def _startup(*params, version=pg.PROTOCOL_3_0):
    return pg.StartupMessage(version, tuple(params))


def test_startup_accepts_supported_parameters_and_sorts_them():
    s = check_startup(_startup(("user", "app"), ("database", "db"), ("TimeZone", "UTC"),
                               ("application_name", "x"), ("datestyle", "ISO")))
    assert (s.user, s.database) == ("app", "db")
    assert s.runtime == (("DateStyle", "ISO"), ("TimeZone", "UTC"), ("application_name", "x"))
    assert not s.needs_negotiation
    assert check_startup(_startup(("user", "app"))).database == "app"


@pytest.mark.parametrize("params, version, text", [
    ((("user", "u"), ("options", "-c search_path=x")), pg.PROTOCOL_3_0,
     "Feature not supported: RDS Proxy currently doesn't support command-line options."),
    ((("user", "u"), ("replication", "database")), pg.PROTOCOL_3_0,
     "Feature not supported: RDS Proxy currently doesn't support streaming replication mode."),
    ((("user", "u"), ("work_mem", "1MB")), pg.PROTOCOL_3_0,
     "Feature not supported: RDS Proxy currently doesn't support the option work_mem."),
    ((), 2 << 16, "Feature not supported: RDS Proxy supports only version 3.0 of the PostgreSQL messaging protocol."),
    ((("database", "d"),), pg.PROTOCOL_3_0,
     "A user name is missing from the connection startup packet. Provide a user name for this connection."),
])
def test_startup_rejections_use_rds_text(params, version, text):
    with pytest.raises(StartupRejected) as info:
        check_startup(_startup(*params, version=version))
    assert info.value.message == text


def test_newer_minor_and_pq_options_negotiate():
    s = check_startup(_startup(("user", "u"), ("_pq_.thing", "1"), version=(3 << 16) | 2))
    assert s.needs_negotiation and s.unrecognized_options == ("_pq_.thing",) and s.requested_minor == 2

# -------------------------------------------------------------------------------------- auth


def _counter_bytes():
    counter = itertools.count()
    return lambda n: bytes(next(counter) % 256 for _ in range(n))


def test_md5_auth_accepts_right_answer_and_rejects_wrong():
    auth = ClientAuthenticator("u", ClientCredential("u", "pw", MD5), scram_cache=ScramSecretCache(),
                               token_bytes=_counter_bytes())
    (request,) = auth.start()
    assert isinstance(request, pg.AuthenticationMD5Password) and request.salt == b"\x00\x01\x02\x03"
    expected = "md5" + hashlib.md5(hashlib.md5(b"pwu").hexdigest().encode() + request.salt).hexdigest()
    assert md5_answer("u", "pw", request.salt) == expected
    out, done = auth.receive(pg.PasswordMessage.from_password(expected))
    assert done and out == [pg.AuthenticationOk()]

    auth = ClientAuthenticator("u", ClientCredential("u", "pw", MD5), scram_cache=ScramSecretCache())
    auth.start()
    with pytest.raises(AuthFailed, match="The password that was provided for the role u is wrong.") as info:
        auth.receive(pg.PasswordMessage.from_password("md5wrong"))
    assert info.value.sqlstate == "28P01"


def _scram_exchange(password_client: str, first_user: str = "u"):
    auth = ClientAuthenticator("u", ClientCredential("u", "pw", SCRAM), scram_cache=ScramSecretCache())
    (request,) = auth.start()
    assert request == pg.AuthenticationSASL(("SCRAM-SHA-256",))
    client = ScramClient(["SCRAM-SHA-256"], first_user, password_client)
    first = client.get_client_first().encode()
    initial = pg.SASLInitialResponse("SCRAM-SHA-256", first)
    out, done = auth.receive(pg.PasswordMessage(initial.encode()[5:]))
    assert not done
    client.set_server_first(out[0].data.decode())
    out, done = auth.receive(pg.PasswordMessage(client.get_client_final().encode()))
    client.set_server_final(out[0].data.decode())  # proves the server knew the password
    return out, done


def test_scram_auth_round_trip():
    out, done = _scram_exchange("pw")
    assert done and out[-1] == pg.AuthenticationOk()


def test_scram_wrong_password_is_28p01():
    with pytest.raises(AuthFailed, match="is wrong"):
        _scram_exchange("not-pw")


def test_unknown_user_gets_rds_text():
    auth = ClientAuthenticator("ghost", None, scram_cache=ScramSecretCache())
    with pytest.raises(AuthFailed, match="This RDS proxy has no credentials for the role ghost."):
        auth.start()


def test_malformed_sasl_is_a_protocol_violation():
    auth = ClientAuthenticator("u", ClientCredential("u", "pw", SCRAM), scram_cache=ScramSecretCache())
    auth.start()
    with pytest.raises(pg.ProtocolViolation):
        auth.receive(pg.PasswordMessage(pg.SASLInitialResponse("SCRAM-SHA-256", b"garbage").encode()[5:]))

# ---------------------------------------------------------------------------------- tracking


def _frames(*messages) -> pg.Frames:
    splitter = pg.MessageSplitter(pg.FRONTEND_TYPES | pg.BACKEND_TYPES)
    return splitter.feed(b"".join(m.encode() for m in messages))


def _backend(*statuses) -> pg.Frames:
    splitter = pg.MessageSplitter(pg.BACKEND_TYPES)
    return splitter.feed(b"".join(pg.CommandComplete("SELECT 1").encode() + pg.ReadyForQuery(s).encode()
                                  for s in statuses))


def test_simple_query_releases_at_idle_ready_for_query():
    t = TransactionTracker(classify)
    run = t.client_run(_frames(pg.Query("select 1")))
    assert run.sync_points == 1 and run.queries == 1 and run.new_pin is None
    assert not t.at_release_point
    assert t.backend_run(_backend("I")) == 1
    assert t.may_release() == (True, None)


def test_shutdown_fatal_from_the_backend_is_located_and_other_errors_are_not():
    t = TransactionTracker(classify)
    t.client_run(_frames(pg.Query("select 1"), pg.Query("select 2")))
    statement_error = pg.ErrorResponse.build("ERROR", "42P01", "relation does not exist")
    frames = _frames(pg.CommandComplete("SELECT 1"), pg.ReadyForQuery("I"), statement_error)
    assert t.backend_run(frames) == 1 and t.backend_farewell is None  # an ERROR is the client's business
    goodbye = pg.ErrorResponse.build("FATAL", "57P01", "terminating connection due to administrator command")
    frames = _frames(pg.ReadyForQuery("I"), goodbye, pg.ReadyForQuery("I"))
    assert t.backend_run(frames) == 1  # nothing after the FATAL counts
    start, error = t.backend_farewell
    assert start == len(pg.ReadyForQuery("I").encode()) and error.sqlstate == "57P01"
    t.backend_released()
    assert t.backend_farewell is None
    other_fatal = pg.ErrorResponse.build("FATAL", "25P03", "idle-in-transaction timeout")
    t.backend_run(_frames(other_fatal))
    assert t.backend_farewell is None  # passed on as the server said it


def test_transaction_block_keeps_the_backend_until_idle():
    t = TransactionTracker(classify)
    t.client_run(_frames(pg.Query("begin")))
    t.backend_run(_backend("T"))
    assert t.may_release() == (False, None)
    assert t.release_state_if_client_leaves() is ReleaseState.BROKEN
    t.client_run(_frames(pg.Query("commit")))
    t.backend_run(_backend("I"))
    assert t.may_release() == (True, None)


def test_pipelined_messages_after_the_last_sync_hold_the_backend():
    t = TransactionTracker(classify)
    t.client_run(_frames(pg.Parse("", "select 1"), pg.Bind("", ""), pg.Execute(""), pg.Sync(),
                         pg.Parse("", "select 2"), pg.Bind("", "")))
    t.backend_run(_backend("I"))
    assert not t.at_release_point  # Parse/Bind after the Sync went to this backend
    t.client_run(_frames(pg.Execute(""), pg.Sync()))
    t.backend_run(_backend("I"))
    assert t.may_release() == (True, None)


def test_copy_data_does_not_hold_the_backend():
    t = TransactionTracker(classify)
    t.client_run(_frames(pg.Query("copy t from stdin")))
    t.client_run(_frames(pg.CopyData(b"1\n"), pg.CopyDone()))
    t.backend_run(_backend("I"))
    assert t.may_release() == (True, None)


def test_pinning_statement_pins_once_and_is_reported_once():
    t = TransactionTracker(classify)
    run = t.client_run(_frames(pg.Query("SET search_path TO x")))
    assert run.new_pin is not None and "session settings" in run.new_pin.reason
    assert t.client_run(_frames(pg.Query("SET work_mem = '1MB'"))).new_pin is None
    t.backend_run(_backend("I", "I"))
    assert t.may_release() == (False, None)
    assert t.release_state_if_client_leaves() is ReleaseState.DIRTY


def test_unnamed_parse_of_a_set_pins_but_plain_unnamed_does_not():
    t = TransactionTracker(classify)
    assert t.client_run(_frames(pg.Parse("", "select $1"), pg.Sync())).new_pin is None
    assert t.client_run(_frames(pg.Parse("", "set timezone = 'UTC'"), pg.Sync())).new_pin is not None


def test_named_statement_pins_only_if_it_outlives_the_transaction():
    t = TransactionTracker(classify)
    t.client_run(_frames(pg.Parse("_pg3_0", "select $1"), pg.Sync()))
    t.client_run(_frames(pg.Close("S", "_pg3_0"), pg.Sync()))
    t.backend_run(_backend("I", "I"))
    assert t.may_release() == (True, None)

    t = TransactionTracker(classify)
    t.client_run(_frames(pg.Parse("_pg3_1", "select $1"), pg.Sync()))
    t.backend_run(_backend("I"))
    release, pin = t.may_release()
    assert not release and pin.reason == NAMED_STATEMENT_REASON and pin.sql == "select $1"


def test_failpoint_named_statements_unpinned_releases_a_backend_that_holds_one():
    t = TransactionTracker(classify, named_statements_pin=False)
    t.client_run(_frames(pg.Parse("_pg3_0", "select $1"), pg.Sync()))
    t.backend_run(_backend("I"))
    assert t.may_release() == (True, None) and not t.pinned


def test_terminate_is_located_and_idle_clean_backend_is_clean():
    t = TransactionTracker(classify)
    frames = _frames(pg.Terminate())
    assert t.client_run(frames).terminate_at == 0
    assert t.release_state_if_client_leaves() is ReleaseState.CLEAN


def test_password_message_after_auth_is_a_violation():
    with pytest.raises(pg.ProtocolViolation):
        TransactionTracker(classify).client_run(_frames(pg.PasswordMessage.from_password("x")))

# ------------------------------------------------------------------------------------ cancel


def test_cancel_registry_issues_unique_keys_and_forgets_them():
    reg = CancelRegistry(token_bytes=lambda n: b"\x00" * n)  # worst case: the same bytes every time
    first = reg.register("a")
    assert first == (1, 0) and reg.find(*first) == "a"
    reg.unregister(first)
    assert reg.find(*first) is None and len(reg) == 0

# ---------------------------------------------------------------------------------- unserved

_ERR = pg.ErrorResponse.build("ERROR", "08001", "Timed-out waiting to acquire database connection.")


def _decode_backend(data: bytes) -> list:
    d = pg.Decoder(pg.Direction.BACKEND)
    d.receive_data(data)
    out = []
    while (m := d.next_event()) is not pg.NEED_DATA:
        out.append(m)
    return out


def test_unserved_queries_each_get_error_and_ready():
    got = answer_unserved(_frames(pg.Query("a"), pg.Query("b")), _ERR)
    assert _decode_backend(got.reply) == [_ERR, pg.ReadyForQuery("I"), _ERR, pg.ReadyForQuery("I")]
    assert not got.still_discarding and not got.terminate


def test_unserved_extended_batch_gets_one_error_then_ready_at_sync():
    got = answer_unserved(_frames(pg.Parse("", "x"), pg.Bind("", ""), pg.Execute(""), pg.Sync()), _ERR)
    assert _decode_backend(got.reply) == [_ERR, pg.ReadyForQuery("I")]


def test_unserved_batch_without_sync_discards_until_it_arrives():
    got = answer_unserved(_frames(pg.Parse("", "x"), pg.Flush()), _ERR)
    assert _decode_backend(got.reply) == [_ERR] and got.still_discarding
    later = skip_to_after_sync(_frames(pg.Execute(""), pg.Sync(), pg.Query("next")))
    assert _decode_backend(later.reply) == [pg.ReadyForQuery("I")]
    assert [chr(t) for t, _, _ in later.rest.spans] == ["Q"]
    assert pg.Query.decode(later.rest.body(0)) == pg.Query("next")
    assert skip_to_after_sync(_frames(pg.Execute(""))).still_discarding
    assert skip_to_after_sync(_frames(pg.Terminate())).terminate


def test_unserved_terminate_ends_the_session():
    assert answer_unserved(_frames(pg.Query("a"), pg.Terminate()), _ERR).terminate
