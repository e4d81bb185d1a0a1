"""The access file: validation with clear errors, hashed secrets, glob scopes, the CLI review and check, and
the viewer refusing to start on a bad file (fail closed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pipetrace.cli import app
from pipetrace.ui import access as A
from typer.testing import CliRunner
from viewer_helpers import env_for, pipetrace_cli

ROLES = """
[[role]]
name = "sales"
pipelines = ["daily_*"]
systems = ["airflow"]

[[role]]
name = "events"
pipelines = ["ingest_*", "hourly_*"]
"""


def token_entry(name: str, role: str) -> tuple[str, str]:
    token, digest = A.new_token()
    return token, A.entry_toml("token", name, [role], digest)


def test_roles_tokens_and_users_resolve_to_scoped_principals(tmp_path: Path) -> None:
    sales, sales_entry = token_entry("dash", "sales")
    text = ROLES + sales_entry + A.entry_toml("user", "alice", ["admin"], A.hash_password("correct horse battery"))
    path = tmp_path / "access.toml"
    path.write_text(text)
    config = A.load(path)
    who = config.by_token(sales)
    assert who is not None and who.name == "dash" and not who.admin
    assert who.may_see("airflow", "daily_sales") and not who.may_see("celery", "daily_sales")
    assert not who.may_see("airflow", "ingest_events") and not who.may_see("airflow", None)
    assert who.query_scopes() == [("daily_*", "airflow")]
    assert config.by_token(sales + "x") is None and config.by_token("") is None
    alice = config.by_password("alice", "correct horse battery")
    assert alice is not None and alice.admin and alice.query_scopes() is None
    assert config.by_password("alice", "wrong") is None and config.by_password("mallory", "x") is None
    assert config.by_password("alice", "correct horse battery") is not None  # the cached path agrees
    assert "correct horse" not in text and sales not in text  # only hashes are written


def test_pbkdf2_hashes_verify_and_weak_ones_are_refused() -> None:
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    good = hashlib.pbkdf2_hmac("sha256", b"pw-123456789", salt, 200_000)
    enc = f"pbkdf2_sha256$200000${base64.b64encode(salt).decode()}${base64.b64encode(good).decode()}"
    assert A.verify_password("pw-123456789", enc) and not A.verify_password("pw", enc)
    weak = enc.replace("200000", "1000")
    with pytest.raises(A.AccessConfigError, match="at least 100000 iterations"):
        A.parse({"user": [{"name": "u", "role": "admin", "secret": weak}]})


@pytest.mark.parametrize(("doc", "message"), [
    ({}, "nobody could sign in"),
    ({"roles": []}, "unknown section 'roles'"),
    ({"role": [{"name": "r"}], "token": [{"name": "t", "role": "r", "sha256": "0" * 64}]}, "pipelines is required"),
    ({"role": [{"name": "r", "pipelines": []}]}, "non-empty list of globs"),
    ({"role": [{"name": "r", "pipelines": ["*"], "colour": 1}]}, "unknown key 'colour'"),
    ({"role": [{"name": "ops", "admin": True, "pipelines": ["x"]}]}, "sees everything"),
    ({"role": [{"name": "has space", "pipelines": ["x"]}]}, "name must be"),
    ({"token": [{"name": "t", "role": "nope", "sha256": "0" * 64}]}, "unknown role 'nope' (defined: admin)"),
    ({"token": [{"name": "t", "role": "admin", "sha256": "abc"}]}, "64 lowercase hex"),
    ({"token": [{"name": "t", "role": "admin", "sha256": "0" * 64}, {"name": "t", "role": "admin",
                                                                      "sha256": "1" * 64}]}, "used twice"),
    ({"user": [{"name": "u", "role": "admin"}]}, "secret (a password hash) is required"),
    ({"user": [{"name": "u", "role": "admin", "secret": "plaintext"}]}, "scrypt$N$r$p$salt$hash"),
    ({"user": [{"name": "u", "role": "admin", "secret": "scrypt$1024$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA=="}]},
     "too weak"),
    ({"user": [{"name": "u", "roles": [], "secret": "x"}]}, "non-empty list of role names"),
])
def test_bad_files_are_refused_with_the_problem_named(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(A.AccessConfigError) as info:
        A.parse(doc)
    assert message in str(info.value)


def test_cli_review_check_and_add_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPETRACE_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    made = runner.invoke(app, ["access", "add-token", "dash", "--role", "sales"])
    assert made.exit_code == 0, made.output
    entry = made.stdout[made.stdout.index("[[token]]"):]
    user = runner.invoke(app, ["access", "add-user", "bob", "--role", "events", "--password-stdin"],
                         input="a long enough password\n")
    assert user.exit_code == 0 and "scrypt$" in user.stdout and "a long enough" not in user.stdout
    path = tmp_path / "access.toml"
    path.write_text(ROLES + entry + user.stdout)
    ok = runner.invoke(app, ["access", "check", "--file", str(path)])
    assert ok.exit_code == 0 and "3 roles, 1 tokens, 1 users" in ok.stdout
    review = runner.invoke(app, ["access", "--file", str(path), "--json"])
    assert review.exit_code == 0, review.output
    rows = {r["name"]: r for r in json.loads(review.stdout)}
    assert rows["dash"]["scope"] == ["daily_* in airflow"] and rows["bob"]["roles"] == ["events"]
    assert rows["bob"]["kind"] == "user" and not rows["bob"]["admin"]
    path.write_text(ROLES + entry.replace("sales", "saless"))
    bad = runner.invoke(app, ["access", "check", "--file", str(path)])
    assert bad.exit_code == 1 and "unknown role 'saless'" in bad.output
    assert runner.invoke(app, ["access", "check"]).exit_code == 2  # no file named anywhere


def test_review_lists_the_stored_pipelines_each_principal_sees(seeded: tuple[Path, dict[str, Any]],
                                                                tmp_path: Path) -> None:
    home, _ = seeded
    path = tmp_path / "access.json"
    path.write_text(json.dumps({"role": [{"name": "sales", "pipelines": ["daily_*"]}],
                                "token": [{"name": "dash", "role": "sales", "sha256": "a" * 64},
                                          {"name": "root", "role": "admin", "sha256": "b" * 64}]}))
    out = pipetrace_cli(home, "access", "--file", str(path), "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["dash"]["pipelines_in_store"] == ["daily_sales"]
    assert rows["root"]["pipelines_in_store"] == ["daily_sales", "hourly_rollup", "ingest_events"]
    # the periodic review: who has not used the viewer lately, and roles that match nothing
    from pipetrace.ui.access_log import format_line

    log = tmp_path / "ui-access.log"
    log.write_text(format_line("dash", "127.0.0.1", "GET", "/api/runs", 200)
                   + format_line("root", "127.0.0.1", "GET", "/", 200, now=1.0e9))  # 2001
    doc = json.loads(path.read_text())
    doc["role"].append({"name": "ghosts", "pipelines": ["nothing_*"]})
    path.write_text(json.dumps(doc))
    out = pipetrace_cli(home, "access", "--file", str(path), "--log", str(log), "--stale", "90d", "--json")
    assert out.returncode == 1
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert not rows["dash"]["stale"] and rows["root"]["stale"] and rows["root"]["last_seen"].startswith("2001-")
    text = pipetrace_cli(home, "access", "--file", str(path), "--log", str(log), "--stale", "90d").stdout
    assert "stale: root last used the viewer 2001-" in text and "role 'ghosts' matches no stored pipeline" in text
    assert pipetrace_cli(home, "access", "--file", str(path), "--log", str(log)).returncode == 0


def test_ui_refuses_to_start_on_a_bad_or_missing_access_file(tmp_path: Path) -> None:
    bad = tmp_path / "access.toml"
    bad.write_text('[[token]]\nname = "t"\nrole = "ghost"\nsha256 = "abc"\n')
    for args, env_file, words in ((["--access-file", str(bad)], None, "unknown role 'ghost'"),
                                  ([], str(tmp_path / "missing.toml"), "cannot read")):
        env = env_for(tmp_path / "home")
        if env_file:
            env["PIPETRACE_ACCESS_FILE"] = env_file
        proc = subprocess.run([sys.executable, "-m", "pipetrace", "ui", "--port", "0", *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "serving" not in proc.stdout
        assert "the viewer does not start" in proc.stderr and words in proc.stderr


def test_a_running_viewer_reloads_the_file_and_locks_when_it_breaks(tmp_path: Path) -> None:
    """Revoking a token needs no restart; a broken edit refuses everyone (503) until it is fixed."""
    from pipetrace.store import SpanStore
    from pipetrace.ui.server import make_server, serve_in_thread
    from test_server import request

    keep, keep_entry = token_entry("keep", "admin")
    drop, drop_entry = token_entry("drop", "admin")
    path = tmp_path / "access.toml"
    path.write_text(keep_entry + drop_entry)
    server = make_server(SpanStore(tmp_path / "traces.db"), port=0,
                         access=A.AccessFile(path, A.load(path), interval_s=0))
    serve_in_thread(server)

    def status(token: str) -> int:
        return request(server.url, "/api/runs", headers={"Authorization": f"Bearer {token}"})[0]

    try:
        assert status(keep) == 200 and status(drop) == 200
        path.write_text(keep_entry)  # revoke "drop"
        assert status(drop) == 401 and status(keep) == 200
        path.write_text(keep_entry + '[[token]]\nname = "x"\nrole = "ghost"\nsha256 = "00"\n')
        assert status(keep) == 503 and status(drop) == 503
        _, _, body = request(server.url, "/api/runs", headers={"Authorization": f"Bearer {keep}"})
        assert "ghost" not in body.decode()  # the details are for the server log, not the client
        path.write_text(keep_entry + drop_entry)
        assert status(keep) == 200 and status(drop) == 200
    finally:
        server.shutdown()
        server.server_close()
