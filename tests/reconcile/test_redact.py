"""redact(): no credential survives, whatever shape the URL or DSN has; everything else does."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.redact import _NAME_HINT, _names_a_secret, might_hold_secret, redact

SECRET = "S3cr3t-Pw"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mysql://root:S3cr3t-Pw@db:3306/mlmd", "mysql://root:***@db:3306/mlmd"),
        ("mysql//root:S3cr3t-Pw@db/mlmd", "mysql//root:***@db/mlmd"),  # the unparseable scheme
        ("mysql:/root:S3cr3t-Pw@db", "mysql:/root:***@db"),
        ("root:S3cr3t-Pw@db:3306/mlmd", "root:***@db:3306/mlmd"),
        ("mysql://:S3cr3t-Pw@db/x", "mysql://:***@db/x"),
        ("mysql://root:S3cr3t-Pw@@db/x", "mysql://root:***@db/x"),
        ("https://h/x?user=a&password=S3cr3t-Pw&b=1", "https://h/x?user=a&password=***&b=1"),
        ("host=db user=root password=S3cr3t-Pw dbname=m", "host=db user=root password=*** dbname=m"),
        ('{"password": "S3cr3t-Pw", "n": 1}', '{"password": "***", "n": 1}'),
        ("MYSQL_PASSWORD=S3cr3t-Pw", "MYSQL_PASSWORD=***"),
        ("Authorization: Bearer S3cr3t-Pw", "Authorization: Bearer ***"),
        (
            "error: invalid URL 'mysql//root:S3cr3t-Pw@x': no scheme",
            "error: invalid URL 'mysql//root:***@x': no scheme",
        ),
    ],
)
def test_credentials_are_masked_and_the_address_kept(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "grpc://metadata-grpc-service.kubeflow:8080",
        "sqlite:////var/lib/mlmd.db",
        "mysql://root@db:3306/mlmd",
        "pod kubeflow/wf-a-1: malformed_annotation: not valid JSON (Expecting ',' at 12:30)",
        '"accessKeySecret": {"name": "mlpipeline-minio-artifact", "key": "accesskey"}',
        "user@example.com wrote 3 records at 12:30",
        "",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert redact(text) == text


PASSWORDS = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Zs", "Cc"], blacklist_characters="'\""),
    min_size=6,
    max_size=30,
).filter(lambda p: "@" not in p[-1:] and "/" not in p[:1])


@given(
    st.sampled_from(["mysql://", "mysql//", "mysql:/", "grpc://", "http://", "//", ""]),
    st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    PASSWORDS,
    st.from_regex(r"[a-z][a-z0-9.-]{0,20}(:[0-9]{2,5})?", fullmatch=True),
    st.sampled_from(["", " and more", "/db?x=1", "'"]),
)
def test_no_password_survives_any_url_shape(
    scheme: str, user: str, password: str, host: str, tail: str
) -> None:
    text = f"connecting to {scheme}{user}:{password}@{host}{tail}"
    out = redact(text)
    assert password not in out
    assert host.split(":")[0] in out


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@given(_JSON_VALUES)
def test_what_might_hold_no_secret_is_left_unchanged_by_every_redaction(value: object) -> None:
    """PatchLog skips the walk when the whole JSON text holds no '@' and no secret's name."""
    import json

    from controller.logs import redacted_value

    if not might_hold_secret(json.dumps(value, ensure_ascii=False)):
        assert redacted_value(value) == value


@pytest.mark.parametrize(
    "value",
    [
        {"api_key": {"nested": "x"}},  # masked whole by key, though the text regex skips objects
        {"labels": {"a": "mysql://u:pw@db"}},
        {"Secret": 1},
        ["Bearer abc"],
    ],
)
def test_what_redaction_changes_is_flagged(value: object) -> None:
    import json

    from controller.logs import redacted_value

    assert redacted_value(value) != value
    assert might_hold_secret(json.dumps(value, ensure_ascii=False))


_MIXED_CASE_WORDS = st.sampled_from(
    ["PASS", "Pwd", "sEcReT", "toKen", "KEY", "Credential", "bearer", "BASIC"]
)


@given(st.lists(st.text(alphabet=string.printable, max_size=8) | _MIXED_CASE_WORDS, max_size=6).map("".join))
def test_the_ascii_hint_search_finds_what_the_ignore_case_one_finds(text: str) -> None:
    assert _names_a_secret(text) is (_NAME_HINT.search(text) is not None)
