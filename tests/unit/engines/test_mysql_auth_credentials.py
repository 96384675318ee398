"""MySQL client authentication against the credential source's answers, without sockets: IAM tokens
through ``mysql_clear_password`` (TLS first, a limiter slot, boto3's own token judged), what a wrong
password allows once the secret was read again, and the refusals' codes and words."""

from __future__ import annotations

import pytest
from iam_support import HOST, PORT, iam, token
from pymysql import _auth as pymysql_auth

from reference_proxy.contracts import ClientCredential
from reference_proxy.credentials.iam_auth import IamAuthenticator
from reference_proxy.credentials.refusals import MYSQL_IAM_RATE_LIMIT_TEXT, RefusalReason
from reference_proxy.credentials.source import IAM_METHOD
from reference_proxy.engines.mysql.auth import (
    AuthFailed,
    ClientAuthenticator,
    Sha2FastPathCache,
    StoredPassword,
    WrongPassword,
    refused,
)
from reference_proxy.protocol.mysql import (
    CACHING_SHA2_PASSWORD,
    CLEAR_PASSWORD,
    FAST_AUTH_SUCCESS,
    NATIVE_PASSWORD,
    PERFORM_FULL_AUTHENTICATION,
    AuthMoreData,
    AuthSwitchRequest,
)

NONCE = bytes(range(0x30, 0x44))
TOKEN_REFUSED = "IAM authentication failed for user lambda. Check the IAM token for this user and try again."


def denied(user: str, why: str = "") -> str:
    message = f"Access denied for user '{user}'@'h' (using password: YES)"
    return f"{message}: {why}" if why else message


def iam_login(authenticator: IamAuthenticator | None, *, tls: bool = True, can_switch: bool = True,
              user: str = "lambda") -> ClientAuthenticator:
    return ClientAuthenticator(user, ClientCredential(user, "", IAM_METHOD), nonce=NONCE, client_host="h", tls=tls,
                               sha2_cache=Sha2FastPathCache(), can_switch_plugin=can_switch, iam=authenticator,
                               token_endpoint=(HOST, PORT))


def password_login(password: str, method: str, *, tls: bool = False,
                   cache: Sha2FastPathCache | None = None) -> ClientAuthenticator:
    return ClientAuthenticator("u", ClientCredential("u", password, method), nonce=NONCE, client_host="h", tls=tls,
                               sha2_cache=Sha2FastPathCache() if cache is None else cache)


def native(password: str) -> bytes:
    return pymysql_auth.scramble_native_password(password.encode(), NONCE)


def sha2(password: str) -> bytes:
    return pymysql_auth.scramble_caching_sha2(password.encode(), NONCE)


# --------------------------------------------------------------------------------------- IAM

def test_an_iam_user_is_switched_to_clear_password_and_boto3s_token_passes():
    authenticator = iam()
    auth = iam_login(authenticator)
    packets, done = auth.start(NATIVE_PASSWORD, native("whatever the client scrambled"))
    assert not done and packets == [AuthSwitchRequest(CLEAR_PASSWORD)]
    assert packets[0].encode() == b"\xfemysql_clear_password\x00"
    assert authenticator.limiter.in_progress == 1
    assert auth.receive(token().encode() + b"\0") == ([], True)  # the trailing NUL is not the token's
    assert auth.plugin == CLEAR_PASSWORD and authenticator.limiter.in_progress == 0


def test_a_client_that_already_sent_clear_password_is_not_asked_again():
    authenticator = iam()
    assert iam_login(authenticator).start(CLEAR_PASSWORD, token().encode() + b"\0") == ([], True)
    assert authenticator.limiter.in_progress == 0


def test_iam_without_tls_is_refused_before_any_token_is_asked_for():
    authenticator = iam()
    with pytest.raises(AuthFailed) as info:
        iam_login(authenticator, tls=False).start(NATIVE_PASSWORD, b"x" * 20)
    assert (info.value.error_code, info.value.sqlstate) == (1045, "28000")
    assert info.value.message == denied("lambda", "IAM authentication is allowed only with SSL connections.")
    assert authenticator.limiter.in_progress == 0


BAD_TOKENS = {
    "other user": lambda: token("someone_else"),
    "other host": lambda: token(host="other.example.com"),
    "not a token": lambda: "not a token",
    "tampered": lambda: token()[:-2] + ("00" if not token().endswith("00") else "11"),
    "not UTF-8": lambda: None,
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_a_refused_token_gets_access_denied_with_rds_text_and_gives_its_place_back(kind):
    bad = BAD_TOKENS[kind]()
    answer = b"\xff\xfe\0" if bad is None else bad.encode() + b"\0"
    authenticator = iam()
    auth = iam_login(authenticator)
    auth.start(NATIVE_PASSWORD, b"")
    with pytest.raises(AuthFailed) as info:
        auth.receive(answer)
    assert not isinstance(info.value, WrongPassword)
    assert (info.value.error_code, info.value.message) == (1045, denied("lambda", TOKEN_REFUSED))
    assert info.value.detail and (bad is None or bad not in info.value.detail)  # which check failed, for the log
    assert authenticator.limiter.in_progress == 0


def test_the_iam_concurrency_limit_answers_1040_with_rds_mysql_text_until_a_place_is_given_back():
    authenticator = iam(limit=1)
    first = iam_login(authenticator)
    first.start(NATIVE_PASSWORD, b"")
    with pytest.raises(AuthFailed) as info:
        iam_login(authenticator).start(NATIVE_PASSWORD, b"")
    assert (info.value.error_code, info.value.sqlstate, info.value.message) == (
        1040, "HY000", MYSQL_IAM_RATE_LIMIT_TEXT)
    assert authenticator.limiter.refused == 1
    first.abandon()  # the client left before sending its token
    assert iam_login(authenticator).start(NATIVE_PASSWORD, b"")[1] is False


def test_an_iam_user_whose_client_cannot_switch_plugins_is_refused_and_frees_its_place():
    authenticator = iam()
    with pytest.raises(AuthFailed, match="mysql_clear_password"):
        iam_login(authenticator, can_switch=False).start(None, b"")
    assert authenticator.limiter.in_progress == 0


def test_an_iam_user_without_iam_configured_is_refused():
    with pytest.raises(AuthFailed) as info:
        iam_login(None).start(NATIVE_PASSWORD, b"x")
    assert info.value.message == denied("lambda", TOKEN_REFUSED)


def test_refusal_codes_per_reason():
    for reason in RefusalReason:
        failure = refused(reason, "u", "h")
        expected = (1040, "HY000") if reason is RefusalReason.IAM_TOO_MANY_COMPETING else (1045, "28000")
        assert (failure.error_code, failure.sqlstate) == expected, reason
        assert failure.message.startswith("Access denied for user 'u'@'h'") != (failure.error_code == 1040)


# --------------------------------------------------------------------------- wrong passwords

def test_a_wrong_native_answer_may_be_checked_again_against_a_newer_password():
    auth = password_login("old", NATIVE_PASSWORD)
    with pytest.raises(WrongPassword) as info:
        auth.start(NATIVE_PASSWORD, native("new"))
    assert info.value.recheckable and (info.value.error_code, info.value.message) == (1045, denied("u"))
    assert auth.recheck(ClientCredential("u", "new", NATIVE_PASSWORD)) == ([], True)
    assert auth.credential.password == "new"


def test_an_answer_matching_neither_password_is_refused_for_good():
    auth = password_login("old", NATIVE_PASSWORD)
    with pytest.raises(WrongPassword):
        auth.start(NATIVE_PASSWORD, native("guess"))
    with pytest.raises(WrongPassword) as info:
        auth.recheck(ClientCredential("u", "new", NATIVE_PASSWORD))
    assert not info.value.recheckable and info.value.message == denied("u")
    with pytest.raises(WrongPassword):  # and only once
        auth.recheck(ClientCredential("u", "guess", NATIVE_PASSWORD))


def test_a_recheck_against_another_method_refuses():
    auth = password_login("old", NATIVE_PASSWORD)
    with pytest.raises(WrongPassword):
        auth.start(NATIVE_PASSWORD, native("new"))
    with pytest.raises(WrongPassword) as info:
        auth.recheck(ClientCredential("u", "new", CACHING_SHA2_PASSWORD))
    assert not info.value.recheckable


def test_a_fast_path_scramble_on_a_rotated_password_goes_on_to_the_full_path_over_tls():
    """The cache proves only the old password; after the re-read the client is asked for its password
    in full (over TLS), which proves the new one and teaches the cache."""
    cache = Sha2FastPathCache()
    cache.remember("u", StoredPassword.from_secret("old"), b"old")
    auth = password_login("old", CACHING_SHA2_PASSWORD, tls=True, cache=cache)
    with pytest.raises(WrongPassword) as info:
        auth.start(CACHING_SHA2_PASSWORD, sha2("new"))
    assert info.value.recheckable
    assert auth.recheck(ClientCredential("u", "new", CACHING_SHA2_PASSWORD)) == (
        [AuthMoreData(PERFORM_FULL_AUTHENTICATION)], False)
    assert auth.receive(b"new\0") == ([], True)
    assert cache.lookup("u", StoredPassword.from_secret("new")) is not None
    fast = password_login("new", CACHING_SHA2_PASSWORD, cache=cache)
    assert fast.start(CACHING_SHA2_PASSWORD, sha2("new")) == ([AuthMoreData(FAST_AUTH_SUCCESS)], True)


def test_a_fast_path_scramble_on_a_rotated_password_over_plaintext_is_told_to_use_tls():
    cache = Sha2FastPathCache()
    cache.remember("u", StoredPassword.from_secret("old"), b"old")
    auth = password_login("old", CACHING_SHA2_PASSWORD, cache=cache)
    with pytest.raises(WrongPassword):
        auth.start(CACHING_SHA2_PASSWORD, sha2("new"))
    with pytest.raises(AuthFailed, match="needs a TLS connection"):
        auth.recheck(ClientCredential("u", "new", CACHING_SHA2_PASSWORD))


def test_a_full_path_password_is_checked_again_against_the_newer_secret():
    auth = password_login("old", CACHING_SHA2_PASSWORD, tls=True)
    assert auth.start(CACHING_SHA2_PASSWORD, sha2("new"))[0] == [AuthMoreData(PERFORM_FULL_AUTHENTICATION)]
    with pytest.raises(WrongPassword) as info:
        auth.receive(b"new\0")
    assert info.value.recheckable
    assert auth.recheck(ClientCredential("u", "new", CACHING_SHA2_PASSWORD)) == ([], True)


def test_an_unknown_user_gets_rds_no_credentials_text_in_a_1045():
    auth = ClientAuthenticator("ghost", None, nonce=NONCE, client_host="h", tls=False, sha2_cache=Sha2FastPathCache())
    with pytest.raises(AuthFailed) as info:
        auth.start(NATIVE_PASSWORD, native("x"))
    assert not isinstance(info.value, WrongPassword)
    assert info.value.message == denied(
        "ghost", "This RDS proxy has no credentials for the role ghost. Check the credentials for this role and "
                 "try again.")
