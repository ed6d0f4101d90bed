"""rktcfg as a real process: the installed command, ``python -m``, lazy imports, the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rktcfg.config.loader import inputs_from, load_effective
from rktcfg.version import __version__

REPO = Path(__file__).resolve().parents[2]
RKTCFG = Path(sys.executable).parent / "rktcfg"


def rktcfg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RKTCFG), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_installed_command_and_python_m(tmp_path: Path) -> None:
    result = rktcfg("--dir", str(tmp_path), "config", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["paths"]["data"] == str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "rktcfg", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith(f"rktcfg {__version__}\n")


def test_errors_exit_codes_in_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "isolators.d").mkdir()
    (tmp_path / "isolators.d" / "10.toml").write_text('memory = "lots"\n')
    result = rktcfg("--system-config", str(tmp_path), "config")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"rktcfg: error: {tmp_path}/isolators.d/10.toml:1: memory: "
        'must be a memory quantity like 128M or 1Gi (got "lots")\n'
    )


def _modules_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


HEAVY = {"yaml", "cerberus", "jinja2", "pyroute2", "rich", "tomllib"}


def test_version_flag_imports_nothing_heavy() -> None:
    loaded = _modules_after(
        "import io, contextlib\nfrom rktcfg.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--version'])"
    )
    assert not loaded & (HEAVY | {"argparse", "json", "typing", "dataclasses"})


def test_cached_config_skips_parsers_and_cerberus() -> None:
    code = (
        "import io, contextlib\nfrom rktcfg.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['config']) == 0"
    )
    first = _modules_after(code)
    assert {"tomllib", "cerberus"} <= first  # cold: parsed and validated
    second = _modules_after(code)
    assert not second & (HEAVY | {"dataclasses"})  # warm: from the cache


def test_cache_notices_every_kind_of_change(tmp_path: Path) -> None:
    system = tmp_path / "system"
    (system / "paths.d").mkdir(parents=True)
    cache_file = str(tmp_path / "cache.json")
    site = system / "paths.d" / "50-site.toml"
    site.write_text('data = "/srv/one"\n')

    def data() -> str:
        inputs = inputs_from(system=str(system), user=str(tmp_path / "nouser"), environ={})
        value: str = load_effective(inputs, cache_file=cache_file).document["paths"]["data"]
        return value

    assert data() == "/srv/one"
    assert data() == "/srv/one"  # warm
    site.write_text('data = "/srv/two"\n')  # same size, new content
    assert data() == "/srv/two"
    (system / "paths.d" / "60-later.yaml").write_text("data: /srv/three\n")  # a new file
    assert data() == "/srv/three"
    (system / "paths.d" / "60-later.yaml").unlink()
    assert data() == "/srv/two"
    target = tmp_path / "elsewhere.toml"
    target.write_text('data = "/srv/link"\n')
    (system / "paths.d" / "70-link.toml").symlink_to(target)
    assert data() == "/srv/link"
    target.write_text('data = "/srv/lnk2"\n')  # the link's target changes
    assert data() == "/srv/lnk2"
    os.utime(site, ns=(time.time_ns(), time.time_ns()))
    assert data() == "/srv/lnk2"
    # An invalid layer is never cached as valid.
    (system / "paths.d" / "80-bad.toml").write_text("data = 1\n")
    for _ in range(2):
        with pytest.raises(Exception, match="must be a string"):
            data()


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    cache_file.write_text("{not json")
    inputs = inputs_from(system=str(tmp_path / "s"), user=str(tmp_path / "u"), environ={})
    assert load_effective(inputs, cache_file=str(cache_file)).document["paths"]["data"]
    assert json.loads(cache_file.read_text())["key"][0] == __version__


@pytest.mark.skipif(not (REPO / "pyproject.toml").exists(), reason="needs the source tree")
def test_wheel_ships_the_vendor_layer(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("rktcfg-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = "from rktcfg.config.layers import find_vendor_dir; print(find_vendor_dir())"
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,  # not the checkout, whose rktcfg/ would shadow the installed one
    ).stdout.strip()
    assert found == str(venv / "share" / "rktcfg" / "configs")
    assert sorted(p.name for p in Path(found).iterdir()) == [
        "isolators.d",
        "net.d",
        "paths.d",
        "stage1.d",
    ]
    version = subprocess.run(
        [str(venv / "bin" / "rktcfg"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert version.stdout.startswith(f"rktcfg {__version__}")
