"""IAM token checks, on tokens made by boto3's own ``generate_db_auth_token`` at a fixed date."""

from __future__ import annotations

import pytest
from iam_token_samples import AKID, HOST, PORT, REGION, SECRET, SIGNED_EPOCH, make_token

from reference_proxy.credentials.iam_token import MAX_TOKEN_LENGTH, IamTokenVerifier, TokenRefusal


def verifier(now: float = SIGNED_EPOCH + 60, **keys: str) -> IamTokenVerifier:
    return IamTokenVerifier(keys or {AKID: SECRET}, region=REGION, wall_clock=lambda: now)


def check(token: str, *, user: str = "app", host: str = HOST, port: int = PORT, now: float = SIGNED_EPOCH + 60):
    return verifier(now).verify(token, user=user, host=host, port=port)


def edit(token: str, name: str, value: str) -> str:
    """The token with one query parameter's (encoded) value replaced."""
    head, _, query = token.partition("?")
    pairs = [p.split("=", 1) for p in query.split("&")]
    return head + "?" + "&".join(f"{k}={value if k == name else v}" for k, v in pairs)


def test_a_fresh_token_is_accepted_and_names_its_access_key() -> None:
    verdict = check(make_token())
    assert verdict.accepted, verdict
    assert verdict.refusal is None and verdict.access_key_id == AKID


def test_the_token_is_boto3s_presigned_url_without_scheme() -> None:
    token = make_token()
    assert token.startswith(f"{HOST}:{PORT}/?Action=connect&DBUser=app&")
    assert "X-Amz-Expires=900" in token and "rds-db%2Faws4_request" in token


@pytest.mark.parametrize("now, accepted", [(SIGNED_EPOCH, True), (SIGNED_EPOCH + 900, True),
                                           (SIGNED_EPOCH + 901, False)])
def test_a_token_lives_900_seconds(now: float, accepted: bool) -> None:
    verdict = check(make_token(), now=now)
    assert verdict.accepted is accepted
    if not accepted:
        assert verdict.refusal is TokenRefusal.EXPIRED and "expired 1 s ago" in verdict.detail


def test_a_token_from_the_future_beyond_the_allowed_skew_is_refused() -> None:
    token = make_token()
    assert check(token, now=SIGNED_EPOCH - 299).accepted
    assert check(token, now=SIGNED_EPOCH - 301).refusal is TokenRefusal.NOT_YET_VALID


def test_a_tampered_signature_is_refused() -> None:
    token = make_token()
    last = token[-1]
    tampered = token[:-1] + ("0" if last != "0" else "1")
    verdict = check(tampered)
    assert verdict.refusal is TokenRefusal.BAD_SIGNATURE
    assert token[-64:] not in verdict.detail and tampered[-64:] not in verdict.detail


def test_a_token_edited_to_name_another_user_fails_its_signature() -> None:
    forged = edit(make_token("bob"), "DBUser", "app")
    assert check(forged, user="app").refusal is TokenRefusal.BAD_SIGNATURE


def test_a_token_for_another_user_is_refused() -> None:
    assert check(make_token("bob"), user="app").refusal is TokenRefusal.WRONG_USER


@pytest.mark.parametrize("host, port", [("other.proxy-abc123.us-east-1.rds.amazonaws.com", PORT), (HOST, 3306)])
def test_a_token_for_another_endpoint_is_refused(host: str, port: int) -> None:
    verdict = check(make_token(host=host, port=port))
    assert verdict.refusal is TokenRefusal.WRONG_ENDPOINT
    assert f"{host}:{port}" in verdict.detail


def test_host_names_compare_without_case() -> None:
    assert check(make_token(host=HOST.upper()), host=HOST).accepted


def test_a_token_signed_for_another_region_is_refused() -> None:
    verdict = check(make_token(region="eu-west-1"))
    assert verdict.refusal is TokenRefusal.WRONG_REGION and "eu-west-1" in verdict.detail


def test_a_token_of_an_untrusted_access_key_is_refused() -> None:
    verdict = check(make_token(akid="AKIDSOMEONEELSE", secret="whatever"))
    assert verdict.refusal is TokenRefusal.UNKNOWN_ACCESS_KEY and verdict.access_key_id == "AKIDSOMEONEELSE"


def test_a_token_signed_with_the_wrong_secret_for_a_trusted_key_is_refused() -> None:
    assert check(make_token(secret="not-the-secret")).refusal is TokenRefusal.BAD_SIGNATURE


def test_edited_action_service_and_lifetime_are_refused_for_what_they_say() -> None:
    token = make_token()
    assert check(edit(token, "Action", "disconnect")).refusal is TokenRefusal.NOT_CONNECT
    assert check(edit(token, "X-Amz-Credential", f"{AKID}%2F20261129%2F{REGION}%2Fs3%2Faws4_request")
                 ).refusal is TokenRefusal.WRONG_SERVICE
    assert check(edit(token, "X-Amz-Expires", "3600")).refusal is TokenRefusal.LIFETIME_TOO_LONG
    assert check(edit(token, "X-Amz-Expires", "60")).refusal is TokenRefusal.BAD_SIGNATURE


@pytest.mark.parametrize("token", [
    "",
    "app-password",
    f"{HOST}:{PORT}/?Action=connect&DBUser=app",
    f"{HOST}:notaport/?Action=connect",
    "x" * (MAX_TOKEN_LENGTH + 1),
])
def test_malformed_tokens_are_refused(token: str) -> None:
    assert check(token).refusal is TokenRefusal.MALFORMED


def test_truncated_duplicated_or_misdated_tokens_are_malformed() -> None:
    token = make_token()
    assert check(token[: token.index("&X-Amz-Signature")]).refusal is TokenRefusal.MALFORMED
    assert check(token + "&DBUser=app").refusal is TokenRefusal.MALFORMED
    assert check(edit(token, "X-Amz-Date", "20261130T065325Z")).refusal is TokenRefusal.MALFORMED
    assert check(edit(token, "X-Amz-Algorithm", "AWS4-HMAC-SHA1")).refusal is TokenRefusal.MALFORMED
    assert check(token.replace(":5432/?", ":5432/db?")).refusal is TokenRefusal.MALFORMED


def test_every_kind_of_bad_token_has_its_own_reason() -> None:
    token = make_token()
    reasons = [
        check(token, now=SIGNED_EPOCH + 2000).refusal,
        check(token[:-1] + ("0" if token[-1] != "0" else "1")).refusal,
        check(token, user="bob").refusal,
        check(token, port=3306).refusal,
        check(make_token(region="eu-west-1")).refusal,
        check(make_token(akid="AKIDOTHER")).refusal,
        check("garbage").refusal,
    ]
    assert None not in reasons
    assert len(set(reasons)) == len(reasons), reasons


def test_user_names_with_special_characters_round_trip() -> None:
    assert check(make_token("app@x y"), user="app@x y").accepted


def test_tokens_of_temporary_credentials_carry_their_session_token_under_the_signature() -> None:
    token = make_token(session_token="FQoGZXIvYXdzEXAMPLE/+=")
    assert "X-Amz-Security-Token=" in token
    assert check(token).accepted
    assert check(edit(token, "X-Amz-Security-Token", "OTHER")).refusal is TokenRefusal.BAD_SIGNATURE


def test_under_the_failpoint_iam_expiry_unchecked_an_expired_token_is_accepted_and_nothing_else_changes() -> None:
    careless = IamTokenVerifier({AKID: SECRET}, region=REGION, wall_clock=lambda: SIGNED_EPOCH + 3600,
                                check_expiry=False)
    assert careless.verify(make_token(), user="app", host=HOST, port=PORT).accepted
    token = make_token()
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert careless.verify(tampered, user="app", host=HOST, port=PORT).refusal is TokenRefusal.BAD_SIGNATURE
