"""yakvs-raft flag parsing through click's CliRunner (no node is started on these paths)."""

from __future__ import annotations

from click.testing import CliRunner

from yakvs.cli.raft import main


def test_usage_errors_and_version():
    runner = CliRunner()
    both = ["-id", "n1", "-raft", "127.0.0.1:7000", "-bootstrap", "-join", "127.0.0.1:8081"]
    result = runner.invoke(main, both)
    assert result.exit_code == 2 and "not both" in result.output
    assert runner.invoke(main, ["--raft", "127.0.0.1:7000"]).exit_code == 2  # --id missing
    assert runner.invoke(main, ["--id", "n1", "--raft", "nope"]).exit_code == 2
    assert runner.invoke(main, ["--id", "a/b", "--raft", "127.0.0.1:1"]).exit_code == 2
    version = runner.invoke(main, ["--version"])
    assert version.exit_code == 0 and "yakvs" in version.output


def test_env_vars_and_exposure_refusal(tmp_path):
    # YAKVS_ID / YAKVS_DIR / YAKVS_RAFT name the node; a public address without a secret is
    # refused with exit 3 before anything binds.
    env = {"YAKVS_ID": "n1", "YAKVS_RAFT": "0.0.0.0:7000", "YAKVS_DIR": str(tmp_path),
           "YAKVS_SECRET": ""}
    result = CliRunner().invoke(main, ["--bootstrap"], env=env)
    assert result.exit_code == 3
    assert "without --secret" in result.output and "0.0.0.0" in result.output
    assert not any(tmp_path.iterdir())
