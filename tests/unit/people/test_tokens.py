"""Personal tokens: printed once, kept as a hash, refused when expired or revoked."""
from __future__ import annotations

import pytest

from smartops_nb.contract import ParameterError
from smartops_nb.people.identity import Unauthorized
from smartops_nb.people.tokens import Tokens, digest
from smartops_nb.records.archive import open_archive


@pytest.fixture
def tokens(tmp_path):
    return Tokens(open_archive(tmp_path / "incidents"))


def test_a_token_names_its_user_and_role_and_only_its_hash_is_kept(tokens, tmp_path):
    token, row = tokens.create("alice", "approver", "90d", by="carol")
    who = tokens.identity(token)
    assert (who.name, who.role, who.how) == ("alice", "approver", "token")
    index = b"".join(p.read_bytes() for p in (tmp_path / "incidents").rglob("*") if p.is_file())
    assert token.encode() not in index and digest(token).encode() in index
    assert "hash" not in tokens.list()[0] and tokens.list()[0]["state"] == "active"


def test_a_revoked_or_expired_or_unknown_token_is_unauthorized(tokens, tmp_path):
    token, row = tokens.create("bob", "responder", "1m")
    tokens.revoke(row["id"])
    with pytest.raises(Unauthorized, match="revoked"):
        tokens.identity(token)
    with pytest.raises(ParameterError, match="already revoked"):
        tokens.revoke(row["id"])
    with pytest.raises(Unauthorized, match="unknown"):
        tokens.identity(token[:-2] + "xx")
    old, row = tokens.create("carl", "viewer", "1m")
    with open_archive(tmp_path / "incidents").tables("people", write=True) as con:
        con.execute("UPDATE tokens SET expires_at = '2020-01-01T00:00:00Z' WHERE id = ?", (row["id"],))
    with pytest.raises(Unauthorized, match="expired"):
        tokens.identity(old)


@pytest.mark.parametrize("user, role, expires", [("alice", "root", "1d"), ("al ice", "viewer", "1d"),
                                                  ("alice", "viewer", "soon"), ("alice", "viewer", "0d")])
def test_bad_input_creates_nothing(tokens, user, role, expires):
    with pytest.raises(ParameterError):
        tokens.create(user, role, expires)
    assert tokens.list() == []
