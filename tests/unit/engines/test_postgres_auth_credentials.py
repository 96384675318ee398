"""PostgreSQL client authentication against the credential source's answers, without sockets:
IAM tokens (TLS first, a limiter slot, boto3's own token judged), and what a wrong password allows."""

from __future__ import annotations

import pytest
from iam_support import HOST, PORT, iam, token

import reference_proxy.protocol.postgres as pg
from reference_proxy.contracts import ClientCredential
from reference_proxy.credentials.iam_auth import IamAuthenticator
from reference_proxy.credentials.refusals import RefusalReason
from reference_proxy.credentials.source import IAM_METHOD
from reference_proxy.engines.postgres.auth import (
    MD5,
    SCRAM,
    AuthFailed,
    ClientAuthenticator,
    ScramSecretCache,
    WrongPassword,
    md5_answer,
)


def iam_login(authenticator: IamAuthenticator, *, tls: bool = True, user: str = "lambda") -> ClientAuthenticator:
    return ClientAuthenticator(user, ClientCredential(user, "", IAM_METHOD), scram_cache=ScramSecretCache(),
                               iam=authenticator, tls=tls, token_endpoint=(HOST, PORT))


def test_an_iam_user_is_asked_for_a_cleartext_token_and_boto3s_token_passes():
    authenticator = iam()
    auth = iam_login(authenticator)
    assert auth.start() == [pg.AuthenticationCleartextPassword()]
    assert authenticator.limiter.in_progress == 1
    out, done = auth.receive(pg.PasswordMessage.from_password(token()))
    assert done and out == [pg.AuthenticationOk()]
    assert authenticator.limiter.in_progress == 0


def test_iam_without_tls_is_refused_before_any_token_is_asked_for():
    authenticator = iam()
    with pytest.raises(AuthFailed, match="^IAM authentication is allowed only with SSL connections.$") as info:
        iam_login(authenticator, tls=False).start()
    assert (info.value.reason, info.value.sqlstate) == (RefusalReason.IAM_NEEDS_TLS, "28000")
    assert authenticator.limiter.in_progress == 0


BAD_TOKENS = {
    "other user": lambda: token("someone_else"),
    "other host": lambda: token(host="other.example.com"),
    "not a token": lambda: "not a token",
    "tampered": lambda: token()[:-2] + ("00" if not token().endswith("00") else "11"),
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_a_refused_token_gets_rds_text_and_gives_its_place_back(kind):
    bad = BAD_TOKENS[kind]()
    authenticator = iam()
    auth = iam_login(authenticator)
    auth.start()
    with pytest.raises(AuthFailed) as info:
        auth.receive(pg.PasswordMessage.from_password(bad))
    assert info.value.message == ("IAM authentication failed for user lambda. Check the IAM token for this user "
                                  "and try again.")
    assert info.value.sqlstate == "28P01" and info.value.detail  # which check failed, for the log
    assert authenticator.limiter.in_progress == 0


def test_the_iam_concurrency_limit_refuses_with_rds_text_until_a_place_is_given_back():
    authenticator = iam(limit=1)
    first = iam_login(authenticator)
    first.start()
    with pytest.raises(AuthFailed, match="too many competing requests") as info:
        iam_login(authenticator).start()
    assert info.value.sqlstate == "53300" and authenticator.limiter.refused == 1
    first.abandon()  # the client left before sending its token
    assert iam_login(authenticator).start() == [pg.AuthenticationCleartextPassword()]


def test_an_iam_user_without_iam_configured_is_refused():
    auth = ClientAuthenticator("lambda", ClientCredential("lambda", "", IAM_METHOD), scram_cache=ScramSecretCache())
    with pytest.raises(AuthFailed, match="IAM authentication failed for user lambda"):
        auth.start()


def test_a_wrong_md5_answer_may_be_checked_again_against_a_newer_password():
    auth = ClientAuthenticator("u", ClientCredential("u", "old", MD5), scram_cache=ScramSecretCache(),
                               token_bytes=lambda n: b"salt"[:n])
    (request,) = auth.start()
    with pytest.raises(WrongPassword) as info:
        auth.receive(pg.PasswordMessage.from_password(md5_answer("u", "new", request.salt)))
    assert info.value.recheckable and info.value.sqlstate == "28P01"
    out, done = auth.recheck(ClientCredential("u", "new", MD5))
    assert done and out == [pg.AuthenticationOk()] and auth.credential.password == "new"


def test_an_md5_answer_matching_neither_password_is_refused_for_good():
    auth = ClientAuthenticator("u", ClientCredential("u", "old", MD5), scram_cache=ScramSecretCache())
    (request,) = auth.start()
    with pytest.raises(WrongPassword):
        auth.receive(pg.PasswordMessage.from_password(md5_answer("u", "guess", request.salt)))
    with pytest.raises(WrongPassword, match="The password that was provided for the role u is wrong.") as info:
        auth.recheck(ClientCredential("u", "new", MD5))
    assert not info.value.recheckable


def test_a_scram_exchange_cannot_be_checked_again():
    from scramp import ScramClient

    auth = ClientAuthenticator("u", ClientCredential("u", "old", SCRAM), scram_cache=ScramSecretCache())
    auth.start()
    client = ScramClient(["SCRAM-SHA-256"], "u", "new")
    out, _ = auth.receive(pg.PasswordMessage(pg.SASLInitialResponse("SCRAM-SHA-256",
                                                                    client.get_client_first().encode()).encode()[5:]))
    client.set_server_first(out[0].data.decode())
    with pytest.raises(WrongPassword) as info:
        auth.receive(pg.PasswordMessage(client.get_client_final().encode()))
    assert not info.value.recheckable
    with pytest.raises(WrongPassword):
        auth.recheck(ClientCredential("u", "new", SCRAM))


def test_a_method_the_engine_does_not_speak_gets_rds_text():
    auth = ClientAuthenticator("u", ClientCredential("u", "pw", "caching_sha2_password"),
                               scram_cache=ScramSecretCache())
    with pytest.raises(AuthFailed, match="^RDS supports only IAM, MD5, or SCRAM authentication.$") as info:
        auth.start()
    assert info.value.reason is RefusalReason.UNSUPPORTED_METHOD
