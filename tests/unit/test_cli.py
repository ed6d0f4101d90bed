"""The CLI through main(argv): output formats, errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rktcfg.cli import main as cli_main
from rktcfg.cli.main import _command_in, main
from rktcfg.errors import ExitCode, StoreError
from rktcfg.version import __version__


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_flag_and_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.splitlines()[0] == f"rktcfg {__version__}"
    assert "appc spec 0.8.11 (also reads 0.7.4 images)" in out
    assert "api v1alpha" in out
    assert "stage1 default (rktcfg.dev/stage1-default " in out
    code, out, _ = run(capsys, "version", "-o", "json")
    data = json.loads(out)
    assert data["appc"] == {"spec": "0.8.11", "reads": "0.7.4"}
    assert data["stage1"]["flavor"] == "default"
    assert data["stage1"]["origin"].startswith("file:")  # the vendor stage1.d sets it


def test_version_follows_configuration(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "stage1.d").mkdir()
    (tmp_path / "stage1.d" / "50-fly.toml").write_text('default-flavor = "fly"\n')
    code, out, _ = run(capsys, "--system-config", str(tmp_path), "version")
    assert code == 0
    assert f"stage1 fly (rktcfg.dev/stage1-fly {__version__}) from file:{tmp_path}" in out


def test_config_outputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "--dir", str(tmp_path), "config", "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["paths"]["data"] == str(tmp_path)
    assert set(doc) == {"paths", "stage1", "isolators", "net"}
    assert doc["net"]["default"]["subnet"] == "172.16.28.0/24"
    assert doc["net"]["default-restricted"]["default-route"] is False
    code, out, _ = run(capsys, "--dir", str(tmp_path), "config", "paths", "-o", "yaml")
    assert yaml.safe_load(out) == {"paths": doc["paths"]}
    code, out, _ = run(capsys, "--dir", str(tmp_path), "config", "paths")
    assert f'paths.data = "{tmp_path}"' in out.splitlines()
    assert "paths.cgroup-parent = (unset)" in out.splitlines()


def test_show_origin(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "--dir", "rel/dir", "config", "--show-origin", "paths")
    assert code == 0
    lines = out.splitlines()
    wanted = f'paths.data = "{Path.cwd()}/rel/dir"'
    assert any(line.startswith("flag --dir") and line.endswith(wanted) for line in lines)
    assert any(line.startswith("file:") and "paths.stage1-images" in line for line in lines)
    code, out, _ = run(capsys, "config", "--show-origin", "-o", "json")
    data = json.loads(out)
    assert data["origins"]["net.default.gateway"] == "built-in"
    assert [layer["name"] for layer in data["layers"]] == ["vendor", "system", "user"]
    assert {f["name"] for f in data["files"]} >= {"00-rktcfg.toml", "10-default.toml"}


def test_environment_variables(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user"
    (user / "paths.d").mkdir(parents=True)
    (user / "paths.d" / "10.toml").write_text('stage1-images = "/srv/images"\n')
    monkeypatch.setenv("RKTCFG_USER_CONFIG", str(user))
    monkeypatch.setenv("RKTCFG_DIR", "/srv/env-data")
    code, out, _ = run(capsys, "config", "paths", "--show-origin")
    assert code == 0
    assert "env RKTCFG_DIR" in out and '"/srv/env-data"' in out
    assert f"file:{user}/paths.d/10.toml:1" in out


def test_check_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = tmp_path / "good"
    (good / "net.d").mkdir(parents=True)
    (good / "net.d" / "30-lab.yaml").write_text("lab:\n  type: bridge\n  subnet: 10.77.0.0/24\n")
    code, out, _ = run(capsys, "config", "--check", str(good))
    assert (code, out) == (0, f"{good}: ok, 1 file(s) valid\n")
    code, out, _ = run(capsys, "config", "--check", str(good / "net.d"), "-o", "json")
    assert json.loads(out)["files"] == [str(good / "net.d" / "30-lab.yaml")]

    bad = tmp_path / "bad"
    (bad / "paths.d").mkdir(parents=True)
    (bad / "net.d").mkdir()
    (bad / "paths.d" / "10.toml").write_text('data = "relative"\nextra = 1\n')
    (bad / "net.d" / "10.toml").write_text('[lab]\nsubnet = "172.16.28.0/25"\ntype = "ptp"\n')
    code, out, err = run(capsys, "config", "--check", str(bad))
    assert code == ExitCode.BAD_INPUT
    assert err.startswith("rktcfg: error: 3 problems in the configuration:\n")
    assert f'  {bad}/paths.d/10.toml:1: data: must be an absolute path (got "relative")' in err
    assert f"  {bad}/paths.d/10.toml:2: extra: unknown key" in err
    assert "overlaps the subnet 172.16.28.0/24 of network 'default'" in err
    code, out, err = run(capsys, "config", "--check", str(bad), "-o", "json")
    verdict = json.loads(out)
    assert (code, err, verdict["ok"]) == (2, "", False)
    assert [(p["field"], p["line"]) for p in verdict["problems"]] == [
        ("lab.subnet", 2),  # net.d sorts before paths.d
        ("data", 1),
        ("extra", 2),
    ]
    code, _, err = run(capsys, "config", "--check", str(tmp_path / "missing"))
    assert code == 2 and "no such directory" in err
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "10-site.toml").write_text('data = "relative"\n')
    code, _, err = run(capsys, "config", "--check", str(tmp_path / "flat"))
    assert code == 2 and "no paths.d, stage1.d, isolators.d or net.d directory" in err


def test_invalid_layer_makes_every_command_fail_cleanly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "paths.d").mkdir()
    (tmp_path / "paths.d" / "10.yaml").write_text("data: /a\ndata: /b\n")
    code, out, err = run(capsys, "--system-config", str(tmp_path), "config")
    assert (code, out) == (2, "")
    assert err == f"rktcfg: error: {tmp_path}/paths.d/10.yaml:2: data: duplicate key\n"


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "config", "--bogus")
    assert code == 2 and err.startswith("rktcfg: error: unrecognized arguments: --bogus")
    code, _, err = run(capsys, "nosuchcommand")
    assert code == 2 and "invalid choice: 'nosuchcommand'" in err
    code, _, err = run(capsys, "config", "-o", "xml")
    assert code == 2 and "invalid choice: 'xml'" in err
    code, out, err = run(capsys)
    assert (code, out) == (2, "")
    assert err.endswith("rktcfg: error: a command is required (see 'rktcfg --help')\n")
    code, _, err = run(capsys, "--sys", "/x", "config")  # no abbreviations of global flags
    assert code == 2 and "invalid choice: '/x'" in err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "config" in out and "version" in out and "RKTCFG_DIR" in out
    code, out, _ = run(capsys, "config", "--help")
    assert code == 0 and "--show-origin" in out and "--check DIR" in out


def test_runtime_failure_and_bugs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rktcfg.cli.version as version_cmd

    def fail(*_: object) -> int:
        raise StoreError("data directory /x is not writable")

    monkeypatch.setattr(version_cmd, "run", fail)
    code, _, err = run(capsys, "version")
    assert (code, err) == (1, "rktcfg: error: data directory /x is not writable\n")

    def crash(*_: object) -> int:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(version_cmd, "run", crash)
    code, _, err = run(capsys, "version")
    assert code == 1
    assert "unexpected ZeroDivisionError: boom" in err and "bug in rktcfg" in err
    assert "Traceback" not in err
    code, _, err = run(capsys, "--debug", "version")
    assert "Traceback" in err


def test_debug_lists_ignored_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "paths.d").mkdir()
    (tmp_path / "paths.d" / "README").write_text("notes\n")
    (tmp_path / "paths.d" / "00-rktcfg.toml").write_text("")
    for _ in range(2):  # the second run comes from the cache and still says so
        code, _, err = run(capsys, "--debug", "--system-config", str(tmp_path), "config")
        assert code == 0
        assert f"ignored {tmp_path}/paths.d/README" in err
        assert f"{tmp_path}/paths.d/00-rktcfg.toml masks paths.d/00-rktcfg.toml" in err


def test_command_detection_skips_global_flag_values() -> None:
    assert _command_in(["--dir", "config", "version"]) == "version"
    assert _command_in(["--debug", "config", "-o", "json"]) == "config"
    assert _command_in(["--dir=/x", "config"]) == "config"
    assert _command_in([]) is None
    assert set(cli_main.COMMANDS) >= {"version", "config", "fetch", "image"}


def _dests(parser: object) -> set[str]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _dests(sub)
        elif action.dest != "help":
            found.add(action.dest)
    return found


def test_no_command_option_shadows_a_global_option() -> None:
    # argparse puts every level's options in one namespace: a subcommand's "dir" would
    # silently replace the global --dir (it once did, for image extract DIR).
    global_dests = {"version", "dir", "vendor_config", "system_config", "user_config", "debug"}
    for name in cli_main.COMMANDS:
        parser = cli_main.build_parser(name)
        (sub,) = (a for a in parser._actions if a.dest == "command")
        command_parser = sub.choices[name]  # type: ignore[attr-defined]
        assert not _dests(command_parser) & global_dests, name
