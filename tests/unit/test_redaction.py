"""Secrets masked in every text the framework stores or sends."""

from __future__ import annotations

import pytest

from include.etlkit.redaction import mask_sensitive_parameters, redact, sensitive_parameters


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


@pytest.mark.parametrize(
    ("url_or_params", "expected"),
    [
        ({"api_key": "k3y-Value-99", "start_date": "2024-01-01", "page": 2}, ["k3y-Value-99"]),
        ({"apikey": "abcdef", "access_token": "tok_ABCDEF", "keyword": "rates"}, ["abcdef", "tok_ABCDEF"]),
        ("https://h/v1/x?page=2&sig=0123456789&author=someone", ["0123456789"]),
        ("https://etl:hunter22@h/x?X-Amz-Signature=abcdef0123&X-Amz-Date=2024", ["hunter22", "abcdef0123"]),
        ("/v1/rates?start_date=2024-01-01&end_date=2024-01-02", []),
    ],
)
def test_the_secret_values_of_query_parameters_are_found_by_their_names(url_or_params, expected):
    assert sensitive_parameters(url_or_params) == expected


def test_query_values_registered_with_the_masker_are_masked_in_any_text_later():
    from airflow.sdk._shared.secrets_masker import redact as mask_known

    registered = mask_sensitive_parameters({"api_key": "never-Seen-Key-7731", "start_date": "2024-02-02"})
    assert registered == ["never-Seen-Key-7731"]
    line = "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /v1?key=never-Seen-Key-7731"
    assert "never-Seen-Key-7731" not in str(mask_known(line))
    assert "2024-02-02" in str(mask_known("start 2024-02-02"))  # an ordinary value stays visible
