"""Redaction: credentials in any form they reach text are blanked; everything else is kept as written."""

from __future__ import annotations

import pytest

from dybench.redact import REDACTED, add_secret, redact, redact_data


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://alice:pw-1234@host:8000/v1", f"http://{REDACTED}@host:8000/v1"),
        ("https://ghp_abcdefgh12345678@github.com/x", f"https://{REDACTED}@github.com/x"),
        ("http://h/v1?api_key=abc123&api-version=2024", f"http://h/v1?api_key={REDACTED}&api-version=2024"),
        ("http://h/v1?key=abc123", f"http://h/v1?key={REDACTED}"),
        ("http://h/v1?access_token=abc&x=1", f"http://h/v1?access_token={REDACTED}&x=1"),
        ("Authorization: Bearer abcdefghijkl", f"Authorization: Bearer {REDACTED}"),
        ("{'authorization': 'Bearer abcdefghijkl', 'host': 'x'}", f"{{'authorization': 'Bearer {REDACTED}', 'host': 'x'}}"),
        ('{"x-api-key": "abcdefghijkl"}', f'{{"x-api-key": "{REDACTED}"}}'),
        ('{"password": "hunter2"}', f'{{"password": "{REDACTED}"}}'),
        ("sent bearer abcdefghijkl to it", f"sent bearer {REDACTED} to it"),
        # left alone: no credential in them
        ("Answer: B", "Answer: B"),
        ("prompt_tokens: 7, max_tokens=64", "prompt_tokens: 7, max_tokens=64"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("The key to this question is motion.", "The key to this question is motion."),
    ],
)
def test_credentials_are_blanked_and_other_text_is_kept(text, expected):
    assert redact(text) == expected


def test_credential_named_environment_values_are_blanked_wherever_they_appear(monkeypatch):
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "zz-very-secret-value")
    monkeypatch.setenv("DYBENCH_CACHE", "/tmp/cache-folder-x")  # not a credential by its name
    assert redact("echo: zz-very-secret-value!") == f"echo: {REDACTED}!"
    assert redact("/tmp/cache-folder-x") == "/tmp/cache-folder-x"


def test_a_registered_secret_is_blanked_whatever_its_variable_is_called():
    add_secret("opaque-value-registered-0042")
    assert redact("x=opaque-value-registered-0042;") == f"x={REDACTED};"


def test_nested_settings_and_commands_are_redacted_element_by_element():
    data = {"base_url": "http://u:p@h/v1", "n": 3, "command": ["dybench", "--base-url", "http://h?token=t0k3n"]}
    assert redact_data(data) == {"base_url": f"http://{REDACTED}@h/v1", "n": 3,
                                 "command": ["dybench", "--base-url", f"http://h?token={REDACTED}"]}
