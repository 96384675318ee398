"""The MySQL engine's client login, with bytes alone: greeting, plugins, TLS, refusals, sequence ids.

Client answers are computed with PyMySQL's own scramble functions, an implementation independent of
the proxy's codec, so a shared misunderstanding of the formulas cannot make these tests pass.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iam_support import HOST as IAM_HOST
from iam_support import PORT as IAM_PORT
from iam_support import iam
from iam_support import token as iam_token
from pymysql import _auth as pymysql_auth

from reference_proxy.contracts import ClientCredential
from reference_proxy.credentials.source import IAM_METHOD
from reference_proxy.engines.mysql.auth import (
    ClientAuthenticator,
    Sha2FastPathCache,
    StoredPassword,
)
from reference_proxy.engines.mysql.login import (
    SERVER_VERSION,
    Authenticated,
    ClientLogin,
    LookUpCredentials,
    RecheckCredentials,
    Refused,
    SendToClient,
    StartTls,
    make_nonce,
)
from reference_proxy.protocol.mysql import (
    CACHING_SHA2_PASSWORD,
    CLEAR_PASSWORD,
    NATIVE_PASSWORD,
    Capability,
    HandshakeResponse41,
    HandshakeV10,
    PacketReader,
    SSLRequest,
    encode_packet,
)

CLIENT_CAPS = (Capability.LONG_PASSWORD | Capability.LONG_FLAG | Capability.PROTOCOL_41
               | Capability.TRANSACTIONS | Capability.SECURE_CONNECTION | Capability.MULTI_RESULTS
               | Capability.PLUGIN_AUTH | Capability.CONNECT_ATTRS
               | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA)

NONCE_SOURCE = bytes(range(0x30, 0x44))
"""20 printable bytes: make_nonce keeps them as they are, so the tests know the nonce."""

STORED_HASH = hashlib.sha1(hashlib.sha1(b"h-secret").digest()).hexdigest()
"""The ``*``-prefixed form of SHA1(SHA1("h-secret")), as ``mysql.user`` shows it (either case works)."""

USERS = {
    "native": ClientCredential("native", "n-secret", NATIVE_PASSWORD),
    "sha2": ClientCredential("sha2", "s-secret", CACHING_SHA2_PASSWORD),
    "hashed": ClientCredential("hashed", "*" + STORED_HASH.upper(), CACHING_SHA2_PASSWORD),
    "hashed-native": ClientCredential("hashed-native", "*" + STORED_HASH, NATIVE_PASSWORD),
    "empty": ClientCredential("empty", "", NATIVE_PASSWORD),
}


class TableLogin(ClientLogin):
    """A login whose credential lookups a fixed table answers at once (a session asks its source)."""

    def __init__(self, table: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.table = table

    def receive_data(self, data: bytes) -> list:
        return self.answer_lookups(super().receive_data(data), self.table.get)


def new_login(*, cache: Sha2FastPathCache | None = None, tls: bool = False, require_tls: bool = False,
              users: dict | None = None) -> ClientLogin:
    return TableLogin(USERS if users is None else users, client_host="10.0.0.9", connection_id=42,
                      sha2_cache=cache if cache is not None else Sha2FastPathCache(),
                      tls_available=tls, require_tls=require_tls, random_bytes=lambda n: NONCE_SOURCE[:n])


def started(**kwargs) -> ClientLogin:
    login = new_login(**kwargs)
    login.greeting()
    return login


def packets(data: bytes) -> list[tuple[int, bytes]]:
    """Split server bytes into (sequence id, payload)."""
    reader = PacketReader()
    reader.receive_data(data)
    out = []
    while reader.buffered:
        packet = reader.next_packet()
        out.append((packet.sequence_id, packet.payload))
    return out


def sent(events) -> list[tuple[int, bytes]]:
    return [p for e in events if isinstance(e, SendToClient) for p in packets(e.data)]


def response(user: str, auth: bytes, *, plugin: str | None = NATIVE_PASSWORD, caps: int = CLIENT_CAPS,
             database: str | None = None, attributes=(), seq: int = 1) -> bytes:
    if database is not None:
        caps |= Capability.CONNECT_WITH_DB
    message = HandshakeResponse41(caps, user, auth, database, plugin, attributes, character_set=33)
    return encode_packet(message.encode(), seq)[0]


def native(password: str) -> bytes:
    return pymysql_auth.scramble_native_password(password.encode(), NONCE_SOURCE)


def sha2(password: str) -> bytes:
    return pymysql_auth.scramble_caching_sha2(password.encode(), NONCE_SOURCE)


def ok_at(seq: int) -> tuple[int, bytes]:
    return (seq, bytes.fromhex("00 00 00 0200 0000"))


def refused(events) -> Refused:
    assert isinstance(events[-1], Refused), events
    return events[-1]


def err_payload(code: int, sqlstate: str, message: str) -> bytes:
    return b"\xff" + code.to_bytes(2, "little") + b"#" + sqlstate.encode() + message.encode()


# ---------------------------------------------------------------------------------------- greeting

def test_greeting_bytes():
    data = new_login().greeting().data
    assert data == bytes.fromhex(
        "5d0000" "00" "0a" + SERVER_VERSION.encode().hex() + "00" "2a000000" + NONCE_SOURCE[:8].hex() + "00"
        "5ff7" "2d" "0200" "7f80" "15" + "00" * 10 + NONCE_SOURCE[8:].hex() + "00"
        + b"mysql_native_password".hex() + "00")
    hello = HandshakeV10.decode(data[4:])
    assert hello.server_version == "8.0.32-MariaDB-compatible"
    assert hello.auth_plugin_data == NONCE_SOURCE
    caps = Capability(hello.capabilities)
    assert Capability.LONG_PASSWORD in caps  # CLIENT_MYSQL: no MariaDB extended capabilities
    assert hello.mariadb_capabilities == 0
    for never in (Capability.COMPRESS, Capability.LOCAL_FILES, Capability.SSL, Capability.SESSION_TRACK,
                  Capability.DEPRECATE_EOF, Capability.ZSTD_COMPRESSION):
        assert never not in caps


def test_greeting_offers_ssl_only_with_a_tls_context():
    hello = HandshakeV10.decode(new_login(tls=True).greeting().data[4:])
    assert hello.capabilities & Capability.SSL
    assert not hello.capabilities & Capability.COMPRESS


def test_compression_and_local_files_are_never_offered_even_when_asked():
    login = ClientLogin(client_host="h", connection_id=1,
                        sha2_cache=Sha2FastPathCache(), offered_capabilities=0xFFFFFFFF)
    caps = HandshakeV10.decode(login.greeting().data[4:]).capabilities
    never = Capability.COMPRESS | Capability.ZSTD_COMPRESSION | Capability.LOCAL_FILES | Capability.SSL
    assert not caps & never


def test_each_login_draws_a_fresh_nonce():
    draws = iter([bytes([7]) * 20, bytes([9]) * 20])
    nonces = {ClientLogin(client_host="h", connection_id=1,
                          sha2_cache=Sha2FastPathCache(), random_bytes=lambda n: next(draws)).nonce
              for _ in range(2)}
    assert nonces == {bytes([7]) * 20, bytes([9]) * 20}


def test_nonce_is_seven_bit_without_nul_or_dollar():
    nonce = make_nonce(lambda n: bytes([0x00, 0x24, 0x80, 0xA4, 0xFF]) * 4)
    assert len(nonce) == 20
    assert all(0 < b < 0x80 and b != ord("$") for b in nonce)


def test_greeting_once_and_data_only_after_it():
    login = new_login()
    with pytest.raises(RuntimeError):
        login.receive_data(b"\x00")
    login.greeting()
    with pytest.raises(RuntimeError):
        login.greeting()


# ---------------------------------------------------------------------------------- native password

def test_native_login_succeeds_with_ok_at_the_next_sequence_id():
    login = started()
    events = login.receive_data(response("native", native("n-secret"), database="app",
                                         attributes=(("_client_name", "pymysql"),)))
    assert sent(events) == [ok_at(2)]
    done = events[-1]
    assert isinstance(done, Authenticated)
    assert (done.user, done.database, done.auth_plugin, done.tls) == ("native", "app", NATIVE_PASSWORD, False)
    assert done.attributes == (("_client_name", "pymysql"),)
    assert done.character_set == 33
    assert done.capabilities == CLIENT_CAPS | Capability.CONNECT_WITH_DB
    assert login.finished
    assert login.receive_data(b"more") == []


def test_native_wrong_password_is_access_denied():
    events = started().receive_data(response("native", native("wrong")))
    message = "Access denied for user 'native'@'10.0.0.9' (using password: YES)"
    assert sent(events) == [(2, err_payload(1045, "28000", message))]
    r = refused(events)
    assert (r.error_code, r.sqlstate, r.message, r.auth_failure) == (1045, "28000", message, True)


def test_no_password_says_so():
    r = refused(started().receive_data(response("native", b"")))
    assert r.message == "Access denied for user 'native'@'10.0.0.9' (using password: NO)"


def test_unknown_user_gets_access_denied_with_rds_no_credentials_text():
    r = refused(started().receive_data(response("nobody", native("x"))))
    assert (r.error_code, r.sqlstate, r.auth_failure) == (1045, "28000", True)
    assert r.message == ("Access denied for user 'nobody'@'10.0.0.9' (using password: YES): This RDS proxy has "
                         "no credentials for the role nobody. Check the credentials for this role and try again.")


def test_empty_password_user_logs_in_with_an_empty_answer_only():
    events = started().receive_data(response("empty", b""))
    assert isinstance(events[-1], Authenticated)
    assert refused(started().receive_data(response("empty", native("x")))).error_code == 1045


def test_stored_native_hash_secret():
    events = started().receive_data(response("hashed-native", native("h-secret")))
    assert isinstance(events[-1], Authenticated)
    assert refused(started().receive_data(response("hashed-native", native("nope")))).error_code == 1045


def test_native_user_answering_with_sha2_is_switched_to_native():
    login = started()
    events = login.receive_data(response("native", sha2("n-secret"), plugin=CACHING_SHA2_PASSWORD))
    assert sent(events) == [(2, b"\xfe" + b"mysql_native_password\0" + NONCE_SOURCE + b"\0")]
    events = login.receive_data(encode_packet(native("n-secret"), 3)[0])
    assert sent(events) == [ok_at(4)]
    assert isinstance(events[-1], Authenticated)


def test_client_without_plugin_auth_uses_native():
    caps = CLIENT_CAPS & ~(Capability.PLUGIN_AUTH | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA)
    events = started().receive_data(response("native", native("n-secret"), plugin=None, caps=caps))
    assert isinstance(events[-1], Authenticated)
    r = refused(started().receive_data(response("sha2", native("s-secret"), plugin=None, caps=caps)))
    assert "supports authentication plugins" in r.message


# ---------------------------------------------------------------------------- caching_sha2_password

def switch_to_sha2(seq: int) -> tuple[int, bytes]:
    return (seq, b"\xfe" + b"caching_sha2_password\0" + NONCE_SOURCE + b"\0")


def tls_login(cache: Sha2FastPathCache, user: str = "sha2", password: str = "s-secret") -> list:
    """A caching_sha2 login over TLS; returns the events of each step."""
    login = started(cache=cache, tls=True)
    steps = [login.receive_data(encode_packet(SSLRequest(CLIENT_CAPS).encode(), 1)[0])]
    assert steps[0] == [StartTls(b"")]
    login.tls_started()
    caps = CLIENT_CAPS | Capability.SSL
    steps.append(login.receive_data(response(user, native(password), seq=2, caps=caps)))
    steps.append(login.receive_data(encode_packet(sha2(password), 4)[0]))
    if not isinstance(steps[-1][-1], Refused):
        steps.append(login.receive_data(encode_packet(password.encode() + b"\0", 6)[0]))
    return steps


def test_sha2_full_path_is_refused_over_plaintext_before_the_client_sends_its_password():
    login = started()
    events = login.receive_data(response("sha2", native("s-secret")))
    assert sent(events) == [switch_to_sha2(2)]
    events = login.receive_data(encode_packet(sha2("s-secret"), 3)[0])
    [(seq, payload)] = sent(events)
    assert seq == 4 and payload.startswith(b"\xff\x15\x04#28000")  # never 01 04: no password in clear
    r = refused(events)
    assert r.auth_failure
    assert r.message.startswith("Access denied for user 'sha2'@'10.0.0.9' (using password: YES): ")
    assert "TLS" in r.message


def test_sha2_full_path_over_tls_then_fast_path_over_plaintext():
    cache = Sha2FastPathCache()
    _ssl, first, scramble, full = tls_login(cache)
    assert sent(first) == [switch_to_sha2(3)]
    assert sent(scramble) == [(5, b"\x01\x04")]
    assert sent(full) == [ok_at(7)]
    done = full[-1]
    assert isinstance(done, Authenticated)
    assert done.tls and done.auth_plugin == CACHING_SHA2_PASSWORD
    assert done.capabilities & Capability.SSL
    assert len(cache) == 1

    login = started(cache=cache)
    assert sent(login.receive_data(response("sha2", native("s-secret")))) == [switch_to_sha2(2)]
    events = login.receive_data(encode_packet(sha2("s-secret"), 3)[0])
    assert sent(events) == [(4, b"\x01\x03"), ok_at(5)]
    assert isinstance(events[-1], Authenticated) and not events[-1].tls


def test_sha2_client_answering_the_greeting_with_sha2_takes_the_fast_path_directly():
    cache = Sha2FastPathCache()
    cache.remember("sha2", StoredPassword.from_secret("s-secret"), b"s-secret")
    events = started(cache=cache).receive_data(
        response("sha2", sha2("s-secret"), plugin=CACHING_SHA2_PASSWORD))
    assert sent(events) == [(2, b"\x01\x03"), ok_at(3)]


def test_sha2_fast_path_wrong_password_is_denied():
    cache = Sha2FastPathCache()
    cache.remember("sha2", StoredPassword.from_secret("s-secret"), b"s-secret")
    r = refused(started(cache=cache).receive_data(
        response("sha2", sha2("wrong"), plugin=CACHING_SHA2_PASSWORD)))
    assert r.message == "Access denied for user 'sha2'@'10.0.0.9' (using password: YES)"


def test_sha2_full_path_wrong_password_is_denied_and_not_cached():
    cache = Sha2FastPathCache()
    *_, full = tls_login(cache, password="wrong")
    assert refused(full).error_code == 1045
    assert sent(full)[0][0] == 7
    assert len(cache) == 0


def test_sha2_full_path_with_a_stored_hash_secret():
    cache = Sha2FastPathCache()
    *_, full = tls_login(cache, user="hashed", password="h-secret")
    assert isinstance(full[-1], Authenticated)
    assert cache.lookup("hashed", StoredPassword.from_secret(USERS["hashed"].password)) == \
        hashlib.sha256(hashlib.sha256(b"h-secret").digest()).digest()


def test_a_changed_secret_misses_the_fast_path_cache():
    cache = Sha2FastPathCache()
    cache.remember("sha2", StoredPassword.from_secret("old-secret"), b"old-secret")
    events = started(cache=cache).receive_data(
        response("sha2", sha2("old-secret"), plugin=CACHING_SHA2_PASSWORD))
    assert "TLS" in refused(events).message  # a cache miss: full path needed, refused over plaintext


def test_cache_forgets_a_user():
    cache = Sha2FastPathCache()
    stored = StoredPassword.from_secret("s-secret")
    cache.remember("sha2", stored, b"s-secret")
    cache.remember("other", stored, b"s-secret")
    cache.forget("sha2")
    assert cache.lookup("sha2", stored) is None and cache.lookup("other", stored) is not None


def test_public_key_request_is_refused():
    auth = ClientAuthenticator("sha2", USERS["sha2"], nonce=NONCE_SOURCE, client_host="h", tls=True,
                               sha2_cache=Sha2FastPathCache())
    assert auth.start(CACHING_SHA2_PASSWORD, sha2("s-secret"))[0][0].data == b"\x04"
    with pytest.raises(Exception, match="RSA public key"):
        auth.receive(b"\x02")


# -------------------------------------------------------------------------------- TLS and refusals

def test_ssl_request_hands_over_early_tls_bytes():
    login = started(tls=True)
    events = login.receive_data(encode_packet(SSLRequest(CLIENT_CAPS).encode(), 1)[0] + b"\x16\x03\x01")
    assert events == [StartTls(b"\x16\x03\x01")]
    with pytest.raises(RuntimeError):
        login.receive_data(b"x")
    login.tls_started()
    assert login.tls


def test_ssl_request_without_tls_offered_is_a_bad_handshake():
    events = started().receive_data(encode_packet(SSLRequest(CLIENT_CAPS).encode(), 1)[0])
    assert refused(events).error_code == 1043
    assert sent(events)[0][0] == 2


def test_second_ssl_request_is_a_bad_handshake():
    login = started(tls=True)
    login.receive_data(encode_packet(SSLRequest(CLIENT_CAPS).encode(), 1)[0])
    login.tls_started()
    events = login.receive_data(encode_packet(SSLRequest(CLIENT_CAPS).encode(), 2)[0])
    assert refused(events).error_code == 1043


def test_require_tls_refuses_plaintext_with_rds_words():
    events = started(tls=True, require_tls=True).receive_data(response("native", native("n-secret")))
    message = "This RDS Proxy requires TLS connections."
    assert sent(events) == [(2, err_payload(3159, "HY000", message))]
    assert refused(events).auth_failure


def test_require_tls_lets_tls_clients_in():
    login = started(tls=True, require_tls=True)
    login.receive_data(encode_packet(SSLRequest(CLIENT_CAPS).encode(), 1)[0])
    login.tls_started()
    events = login.receive_data(response("native", native("n-secret"), seq=2))
    assert sent(events) == [ok_at(3)]
    assert isinstance(events[-1], Authenticated)


def test_wrong_sequence_id_is_a_protocol_error():
    events = started().receive_data(response("native", native("n-secret"), seq=2))
    [(seq, payload)] = sent(events)
    assert seq == 2 and payload.startswith(b"\xff\x84\x04#08S01")
    r = refused(events)
    assert (r.error_code, r.sqlstate, r.auth_failure) == (1156, "08S01", False)


def test_wrong_sequence_id_in_the_auth_exchange():
    login = started()
    login.receive_data(response("sha2", native("s-secret")))
    assert refused(login.receive_data(encode_packet(sha2("s-secret"), 4)[0])).error_code == 1156


def test_compression_is_refused():
    caps = CLIENT_CAPS | Capability.COMPRESS
    r = refused(started().receive_data(response("native", native("n-secret"), caps=caps)))
    assert r.error_code == 1043 and "compress" in r.message


def test_local_files_and_ssl_are_not_negotiated_over_plaintext():
    caps = CLIENT_CAPS | Capability.LOCAL_FILES | Capability.SSL | Capability.SESSION_TRACK
    done = started().receive_data(response("native", native("n-secret"), caps=caps))[-1]
    assert isinstance(done, Authenticated)
    assert not done.capabilities & (Capability.LOCAL_FILES | Capability.SSL | Capability.SESSION_TRACK)


def test_malformed_response_is_a_bad_handshake():
    r = refused(started().receive_data(encode_packet(b"\x00\x00", 1)[0]))
    assert (r.error_code, r.sqlstate) == (1043, "08S01")


def test_overlong_database_name():
    r = refused(started().receive_data(response("native", native("n-secret"), database="d" * 65)))
    assert (r.error_code, r.sqlstate, r.auth_failure) == (1102, "42000", False)


def test_bytes_may_arrive_one_at_a_time():
    login = started()
    events = []
    for b in response("native", native("n-secret")):
        events += login.receive_data(bytes([b]))
    assert sent(events) == [ok_at(2)]
    assert isinstance(events[-1], Authenticated)


def test_a_hurried_first_command_stays_buffered():
    login = started()
    events = login.receive_data(response("native", native("n-secret")) + encode_packet(b"\x0e", 0)[0])
    assert isinstance(events[-1], Authenticated)
    assert login.take_buffered() == b"\x01\x00\x00\x00\x0e"


# ------------------------------------------------------------------ the credential source's part

def source_login(**kwargs) -> ClientLogin:
    """A plain login: the test answers its lookups itself, as a session does with its source."""
    login = ClientLogin(client_host="10.0.0.9", connection_id=42, sha2_cache=Sha2FastPathCache(),
                        random_bytes=lambda n: NONCE_SOURCE[:n], **kwargs)
    login.greeting()
    return login


def test_the_user_is_looked_up_before_anything_is_sent_and_the_answer_goes_on():
    login = source_login()
    assert login.receive_data(response("native", native("n-secret"))) == [LookUpCredentials("native")]
    with pytest.raises(RuntimeError):
        login.recheck(USERS["native"])
    events = login.credentials_found(USERS["native"])
    assert sent(events) == [ok_at(2)] and isinstance(events[-1], Authenticated)


def test_no_credential_found_is_refused_with_rds_text():
    login = source_login()
    login.receive_data(response("nobody", native("x")))
    events = login.credentials_found(None)
    assert refused(events).auth_failure and "no credentials for the role nobody" in refused(events).message
    assert sent(events)[0][0] == 2


def test_a_wrong_password_asks_for_a_recheck_and_the_newer_secret_lets_the_client_in():
    login = source_login()
    login.receive_data(response("native", native("rotated")))
    events = login.credentials_found(USERS["native"])
    assert events == [RecheckCredentials("native", USERS["native"])]  # nothing sent yet
    events = login.recheck(ClientCredential("native", "rotated", NATIVE_PASSWORD))
    assert sent(events) == [ok_at(2)] and isinstance(events[-1], Authenticated)


@pytest.mark.parametrize("newer", [None, USERS["native"], ClientCredential("native", "other", NATIVE_PASSWORD)])
def test_a_recheck_without_a_matching_newer_secret_is_access_denied(newer):
    login = source_login()
    login.receive_data(response("native", native("rotated")))
    login.credentials_found(USERS["native"])
    events = login.recheck(newer)
    assert refused(events).error_code == 1045 and refused(events).auth_failure
    assert sent(events) == [(2, err_payload(1045, "28000",
                                            "Access denied for user 'native'@'10.0.0.9' (using password: YES)"))]


def test_an_iam_login_over_tls_bytes_and_sequence_ids():
    authenticator = iam()
    login = source_login(tls_available=True, iam=authenticator, token_endpoint=(IAM_HOST, IAM_PORT))
    assert login.receive_data(encode_packet(SSLRequest(CLIENT_CAPS).encode(), 1)[0]) == [StartTls()]
    login.tls_started()
    assert login.receive_data(response("lambda", native("x"), seq=2)) == [LookUpCredentials("lambda")]
    events = login.credentials_found(ClientCredential("lambda", "", IAM_METHOD))
    assert sent(events) == [(3, b"\xfemysql_clear_password\x00")]
    assert authenticator.limiter.in_progress == 1
    events = login.receive_data(encode_packet(iam_token().encode() + b"\0", 4)[0])
    assert sent(events) == [ok_at(5)]
    assert events[-1].auth_plugin == CLEAR_PASSWORD and events[-1].tls
    assert authenticator.limiter.in_progress == 0


def test_an_iam_login_on_plaintext_is_refused_before_the_token_is_asked_for():
    authenticator = iam()
    login = source_login(iam=authenticator, token_endpoint=(IAM_HOST, IAM_PORT))
    login.receive_data(response("lambda", native("x")))
    events = login.credentials_found(ClientCredential("lambda", "", IAM_METHOD))
    assert sent(events)[0][1].startswith(b"\xff\x15\x04#28000Access denied")
    assert refused(events).message.endswith("IAM authentication is allowed only with SSL connections.")
    assert authenticator.limiter.in_progress == 0


def test_a_client_leaving_after_the_switch_gives_its_iam_place_back():
    authenticator = iam()
    login = source_login(tls_available=True, iam=authenticator, token_endpoint=(IAM_HOST, IAM_PORT))
    login.receive_data(encode_packet(SSLRequest(CLIENT_CAPS).encode(), 1)[0])
    login.tls_started()
    login.receive_data(response("lambda", native("x"), seq=2))
    login.credentials_found(ClientCredential("lambda", "", IAM_METHOD))
    assert authenticator.limiter.in_progress == 1
    login.abandon()
    assert authenticator.limiter.in_progress == 0


# ------------------------------------------------------------------------------------------- fuzz

def drive(login: ClientLogin, chunks: list[bytes]) -> list:
    """Feed ``chunks``, carrying out StartTls as a caller would; returns every event."""
    events: list = []
    for chunk in chunks:
        if login.finished:
            break
        new = login.receive_data(chunk)
        if any(isinstance(e, StartTls) for e in new):
            login.tls_started()
        events += new
    return events


def check_outcome(events: list) -> None:
    assert all(isinstance(e, (SendToClient, StartTls, Authenticated, Refused)) for e in events)
    ends = [e for e in events if isinstance(e, (Authenticated, Refused))]
    assert len(ends) <= 1 and (not ends or events[-1] is ends[0])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=5), st.sampled_from(sorted(USERS)), st.booleans(),
       st.booleans())
def test_fuzz_framed_packets_end_in_events_never_exceptions(payloads, user, tls, valid_first):
    """Random packets at the right sequence ids, after a valid response or instead of one."""
    if valid_first:
        payloads = [response(user, native("n-secret"))[4:], *payloads]
    login = started(tls=tls)
    check_outcome(drive(login, [encode_packet(p, seq)[0] for seq, p in enumerate(payloads, start=1)]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=40))
def test_fuzz_raw_bytes_end_in_events_never_exceptions(data, chunk):
    login = started(tls=True)
    check_outcome(drive(login, [data[i:i + chunk] for i in range(0, len(data), chunk)]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(USERS)), st.integers(min_value=0, max_value=200), st.binary(max_size=40))
def test_fuzz_damaged_responses_end_in_events_never_exceptions(user, cut, answer):
    payload = response(user, sha2("s-secret"), plugin=CACHING_SHA2_PASSWORD, database="db",
                       attributes=(("k", "v"),))[4:]
    login = started(tls=True)
    check_outcome(drive(login, [encode_packet(payload[:cut], 1)[0], encode_packet(answer, 3)[0],
                                encode_packet(answer, 5)[0]]))
