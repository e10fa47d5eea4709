"""Public tokens: genuine ones verify; forged, truncated, altered or other-kind ones do not."""

from __future__ import annotations

import pytest

from states import public_links as pl


@pytest.fixture(autouse=True)
def fresh_secret() -> None:
    pl.server_secret.cache_clear()


def test_a_token_verifies_for_its_kind_only() -> None:
    nonce = pl.new_nonce()
    token = pl.token_for("survey", nonce)
    assert len(token) == pl.TOKEN_LENGTH
    assert pl.nonce_of("survey", token) == nonce
    assert pl.nonce_of("board", token) is None
    assert pl.nonce_of("survey", token[:-1]) is None
    assert pl.nonce_of("survey", token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    forged = pl.new_nonce() + token[24:]
    assert pl.nonce_of("survey", forged) is None
    assert pl.nonce_of("survey", "") is None and pl.nonce_of("survey", "." * 41) is None


def test_the_secret_is_kept_once_per_installation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pl.SECRET_ENV, raising=False)
    token = pl.token_for("board", "n" * 24)
    key = pl.data_dir() / pl.KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600
    pl.server_secret.cache_clear()  # another process of the same installation
    assert pl.token_for("board", "n" * 24) == token
    monkeypatch.setenv(pl.SECRET_ENV, "another installation")
    pl.server_secret.cache_clear()
    assert pl.nonce_of("board", token) is None
