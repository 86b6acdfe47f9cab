"""Source URLs: forms, defaults, where the password comes from, and that it never shows."""

from __future__ import annotations

import pytest

from history.errors import SourceConfigError
from history.url import parse_database_url


def parse(url: str, **kwargs: object) -> object:
    return parse_database_url(url, what="KFP database", **kwargs)  # type: ignore[arg-type]


def test_forms_and_defaults() -> None:
    url = parse("mysql://reader:s3cret@mysql.kubeflow/mlpipeline")
    assert (url.dialect, url.host, url.port, url.user, url.database) == (
        "mysql",
        "mysql.kubeflow",
        3306,
        "reader",
        "mlpipeline",
    )
    assert parse("mariadb://u@h:3307/db").dialect == "mysql"
    pg = parse("postgres://argo@pg:6543/argo?sslmode=require")
    assert (pg.dialect, pg.port, pg.options) == ("postgresql", 6543, (("sslmode", "require"),))
    assert parse("postgresql://argo@pg/argo").port == 5432
    assert parse("mysql://u@h", default_database="mlpipeline").database == "mlpipeline"
    assert parse("mysql://u%40corp@h/db").user == "u@corp"


def test_the_password_comes_from_the_url_then_the_caller_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_DB_PASSWORD", "from-env")
    assert (
        parse("mysql://u:from%2Furl@h/db", password="arg", password_env="TEST_DB_PASSWORD").password
        == "from/url"
    )
    assert parse("mysql://u@h/db", password="arg", password_env="TEST_DB_PASSWORD").password == "arg"
    assert parse("mysql://u@h/db", password_env="TEST_DB_PASSWORD").password == "from-env"
    monkeypatch.setenv("TEST_DB_PASSWORD", "")
    assert parse("mysql://u@h/db", password_env="TEST_DB_PASSWORD").password is None


def test_the_password_never_shows() -> None:
    url = parse("mysql://reader:hunter2@h/db?ssl_ca=/etc/ca.pem")
    assert "hunter2" not in repr(url)
    assert str(url) == url.redacted() == "mysql://reader:***@h:3306/db?ssl_ca=/etc/ca.pem"
    assert url.hide("Access denied (hunter2)") == "Access denied (***)"
    assert parse("mysql://reader@h/db").redacted() == "mysql://reader@h:3306/db"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "the URL is empty"),
        ("h/db", "it has no scheme"),
        ("sqlite:///x.db", "unsupported scheme 'sqlite'"),
        ("mysql://:pw@h/db", "the user is missing"),
        ("mysql://u:pw@/db", "the host is missing"),
        ("mysql://u:pw@h:99999/db", "the port must be a number"),
        ("mysql://u:pw@h/", "the database name is missing"),
        ("mysql://u:pw@h/db?sslmode=require", "unknown option(s) sslmode"),
        ("postgresql://u:pw@h/db?ssl_ca=x", "unknown option(s) ssl_ca"),
        ("mysql://u:pw@h/db#frag", "a fragment is not supported"),
    ],
)
def test_a_bad_url_is_one_clear_error_without_the_password(url: str, reason: str) -> None:
    with pytest.raises(SourceConfigError) as caught:
        parse(url)
    message = str(caught.value)
    assert message.startswith("invalid KFP database URL") and reason in message
    assert "pw" not in message.replace("postgresql", "")
    assert "\n" not in message
