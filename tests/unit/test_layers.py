from __future__ import annotations

import os
from pathlib import Path

from rktcfg.config.layers import find_vendor_dir, resolve_layers, scan_layers

REPO = Path(__file__).resolve().parents[2]


def test_layer_choice_flag_then_env_then_default(tmp_path: Path) -> None:
    env = {"HOME": "/home/u", "RKTCFG_SYSTEM_CONFIG": "/opt/etc-rktcfg"}
    layers = resolve_layers(environ=env)
    assert [(la.name, la.path, la.chosen_by) for la in layers] == [
        ("vendor", str(REPO / "configs"), "shipped with rktcfg"),
        ("system", "/opt/etc-rktcfg", "env RKTCFG_SYSTEM_CONFIG"),
        ("user", "/home/u/.config/rktcfg", "default"),
    ]
    layers = resolve_layers(
        system="/flag/etc", user="rel", environ={**env, "XDG_CONFIG_HOME": "/xdg"}
    )
    assert [(la.path, la.chosen_by) for la in layers[1:]] == [
        ("/flag/etc", "--system-config"),
        (os.path.abspath("rel"), "--user-config"),
    ]
    layers = resolve_layers(environ={"XDG_CONFIG_HOME": "/xdg", "RKTCFG_SYSTEM_CONFIG": ""})
    assert [(la.path, la.chosen_by) for la in layers[1:]] == [
        ("/etc/rktcfg", "default"),
        ("/xdg/rktcfg", "default"),
    ]


def test_vendor_dir_in_a_checkout() -> None:
    assert find_vendor_dir() == str(REPO / "configs")


def test_scan_reports_layers_that_are_not_directories(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    layers = resolve_layers(system=str(not_a_dir), user=str(tmp_path / "missing"), environ={})
    scan = scan_layers(layers)
    assert scan.problems == [(str(not_a_dir), "system config is not a directory")]
    assert f"user config {tmp_path / 'missing'} does not exist" in scan.notes


def test_scan_union_replace_mask_and_order(tmp_path: Path) -> None:
    low, high = tmp_path / "low", tmp_path / "high"
    for layer in (low, high):
        (layer / "paths.d").mkdir(parents=True)
    (low / "paths.d" / "20-b.toml").write_text("a = 1\n")
    (low / "paths.d" / "30-c.toml").write_text("a = 1\n")
    (high / "paths.d" / "10-a.yaml").write_text("a: 1\n")
    (high / "paths.d" / "20-b.toml").write_text("a = 2\n")
    (high / "paths.d" / "30-c.toml").symlink_to(os.devnull)
    (high / "paths.d" / "40-d.json.orig").write_text("{}")
    (high / "paths.d" / "50-e.toml").mkdir()
    layers = resolve_layers(vendor=str(low), system=str(high), user=str(tmp_path / "u"))
    scan = scan_layers(layers, ("paths",))
    assert [(s.name, s.layer) for s in scan.sources] == [
        ("10-a.yaml", "system"),
        ("20-b.toml", "system"),
    ]
    notes = "\n".join(scan.notes)
    assert f"{high}/paths.d/20-b.toml replaces {low}/paths.d/20-b.toml" in notes
    assert f"{high}/paths.d/30-c.toml masks paths.d/30-c.toml" in notes
    assert f"ignored {high}/paths.d/40-d.json.orig" in notes
    assert f"ignored {high}/paths.d/50-e.toml: is a directory" in notes


def test_fifos_and_symlink_loops_are_errors_not_hangs(tmp_path: Path) -> None:
    from rktcfg.config.loader import inputs_from, load_effective
    from rktcfg.errors import ConfigError

    kind_dir = tmp_path / "system" / "paths.d"
    kind_dir.mkdir(parents=True)
    os.mkfifo(kind_dir / "10-fifo.toml")
    (kind_dir / "20-loop.toml").symlink_to("20-loop.toml")
    inputs = inputs_from(system=str(tmp_path / "system"), user=str(tmp_path / "u"), environ={})
    try:
        load_effective(inputs)
    except ConfigError as exc:
        got = [str(p) for p in exc.problems]
    assert got == [
        f"{kind_dir}/10-fifo.toml: cannot read file: not a regular file",
        f"{kind_dir}/20-loop.toml: cannot read file: Too many levels of symbolic links",
    ]


def test_missing_vendor_layer_is_noted(monkeypatch: object) -> None:
    import rktcfg.config.layers as layers_module

    setattr(layers_module, "find_vendor_dir", lambda: None)  # noqa: B010
    try:
        layers = resolve_layers(environ={})
        scan = scan_layers(layers)
    finally:
        setattr(layers_module, "find_vendor_dir", find_vendor_dir)  # noqa: B010
    assert any("vendor config: not found" in note for note in scan.notes)
