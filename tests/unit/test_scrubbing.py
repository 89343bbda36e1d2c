from __future__ import annotations

from domain.scrubbing import REDACTED, Scrubber

FAKE_SIGNATURE = "fe5c023b" * 4  # built at run time: no signed URL stands in the source tree
SIGNED = (
    "http://127.0.0.1:4599/hf-uploads/uploads/u1/a1?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential=AKIA%2F20261128&X-Amz-Signature={FAKE_SIGNATURE}"
)


def test_signed_query_strings_are_removed_but_the_path_stays():
    scrubbed = Scrubber()(f"PUT to {SIGNED} failed")

    assert "X-Amz-Signature" not in scrubbed
    assert "fe5c023b" not in scrubbed
    assert "/uploads/u1/a1?" in scrubbed


def test_a_bare_signature_parameter_is_removed():
    assert Scrubber()("params X-Amz-Signature=abcdef123456&x=1") == f"params X-Amz-Signature={REDACTED}&x=1"


def test_bearer_tokens_jwts_api_keys_and_session_cookies_are_removed():
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyMSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    text = (
        f"Authorization: Bearer {jwt} / Authorization: Key fal_abcdefgh:123456 / token {jwt} /"
        " Cookie: better-auth.session_token=abc.def%3D"
    )
    scrubbed = Scrubber()(text)

    assert jwt not in scrubbed
    assert "fal_abcdefgh" not in scrubbed
    assert "abc.def" not in scrubbed
    assert scrubbed.count(REDACTED) == 4


def test_configured_secrets_are_removed_wherever_they_appear():
    scrub = Scrubber(["hf-uploads-prod", "hf-processed-prod", "fal-key-123", None, ""])

    scrubbed = scrub("bucket hf-uploads-prod and hf-processed-prod with fal-key-123")

    assert scrubbed == f"bucket {REDACTED} and {REDACTED} with {REDACTED}"


def test_ordinary_text_is_left_alone():
    text = "upload 3f2a issued to user1 (image/jpeg, 2481733 bytes)"
    assert Scrubber(["hf-uploads"])(text) == text
