"""Secrets masked in every text the framework stores or sends."""

from __future__ import annotations

import pytest

from include.etlkit.redaction import redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Max retries exceeded with url: /v1/rates?start=2024-01-01&api_key=k3y-Value-99", "k3y-Value-99"),
        ("GET https://api.example.com/x?token=tok_ABCDEF&page=2 failed", "tok_ABCDEF"),
        ("https://user:Pa55word!@db.example.com:5432/warehouse refused", "Pa55word!"),
        ("redirect to http://h/x?client_secret=s3cr3t#frag", "s3cr3t"),
        ("postgresql://etl:hunter22@127.0.0.1/totesys", "hunter22"),
        ("?X-Amz-Signature=abcdef0123&X-Amz-Credential=AKIA123", "abcdef0123"),
    ],
)
def test_urls_lose_their_credentials_and_secret_parameters(text, secret):
    masked = redact(text)
    assert secret not in masked and "***" in masked


def test_ordinary_text_and_harmless_parameters_are_kept():
    text = "GET /v1/rates?start_date=2024-01-01&page=3 answered 500: upstream timeout (keyword=x)"
    assert redact(text) == text


def test_secrets_the_process_registered_are_masked_wherever_they_appear():
    from airflow.sdk._shared.secrets_masker import mask_secret

    mask_secret("a-registered-Secret-42")
    assert "a-registered-Secret-42" not in redact("login failed for a-registered-Secret-42 on host")
