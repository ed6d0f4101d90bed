"""Configuration layers and their drop-in files, by systemd's rules.

Layers, lowest first: vendor (the ``configs/`` tree shipped with rktcfg), system
(``/etc/rktcfg``), user (``$XDG_CONFIG_HOME/rktcfg``). Each has one directory per kind
(``paths.d``, ``stage1.d``, ``isolators.d``, ``net.d``).

Per kind, the file names of all layers are unioned; a file in a higher layer replaces the
same-named file of a lower layer whole; an empty file or a symlink to ``/dev/null`` masks it.
Surviving files are merged in lexical order of their names. Files that are not ``*.toml``,
``*.yaml``, ``*.yml`` or ``*.json`` (README, ``*.bak``, ``*~``, hidden files) and directories
are ignored, each with a note for ``--debug``.

This module reads directories (never file contents) and is imported on every ``rktcfg
config``, so it imports nothing beyond ``os``.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

KINDS = ("paths", "stage1", "isolators", "net")
EXTENSIONS = (".toml", ".yaml", ".yml", ".json")
DEFAULT_SYSTEM_DIR = "/etc/rktcfg"
#: A file the vendor tree always has; marks a directory as rktcfg's vendor configuration.
VENDOR_MARKER = os.path.join("paths.d", "00-rktcfg.toml")


class Layer:
    """One configuration layer: a name, a directory (which may not exist) and how it was chosen."""

    __slots__ = ("chosen_by", "name", "path")

    def __init__(self, name: str, path: str, chosen_by: str) -> None:
        self.name = name
        self.path = path
        self.chosen_by = chosen_by

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, {self.path!r}, {self.chosen_by!r})"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "path": self.path, "chosen_by": self.chosen_by}


class Source:
    """The surviving drop-in file of one name in one kind."""

    __slots__ = ("kind", "layer", "name", "path")

    def __init__(self, kind: str, name: str, path: str, layer: str) -> None:
        self.kind = kind
        self.name = name
        self.path = path
        self.layer = layer

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "path": self.path, "layer": self.layer}


class Scan:
    """What the layer directories hold: the files to read, notes, and a fingerprint."""

    __slots__ = ("fingerprint", "notes", "problems", "sources")

    def __init__(self) -> None:
        self.sources: list[Source] = []
        self.notes: list[str] = []
        #: (path, message) for layer paths that cannot be used at all
        self.problems: list[tuple[str, str]] = []
        #: Everything a cached result depends on: paths, sizes, mtimes, inodes, link targets.
        self.fingerprint: list[object] = []


def find_vendor_dir() -> str | None:
    """The vendor ``configs/`` tree: beside the package in a checkout, else in the prefix."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [
        os.path.join(os.path.dirname(package_dir), "configs"),
        os.path.join(sys.prefix, "share", "rktcfg", "configs"),
    ]
    user_base = getattr(sys.modules.get("site"), "USER_BASE", None)
    if user_base:  # pip install --user puts data files below the user base
        candidates.append(os.path.join(user_base, "share", "rktcfg", "configs"))
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, VENDOR_MARKER)):
            return candidate
    return None


def _chosen_layer(name: str, flag_value: str | None, env: Mapping[str, str], default: str) -> Layer:
    """A layer from its flag, else its environment variable, else its default directory."""
    variable = f"RKTCFG_{name.upper()}_CONFIG"
    if flag_value is not None:
        return Layer(name, os.path.abspath(flag_value), f"--{name}-config")
    if env.get(variable):
        return Layer(name, os.path.abspath(env[variable]), f"env {variable}")
    return Layer(name, default, "default")


def resolve_layers(
    *,
    vendor: str | None = None,
    system: str | None = None,
    user: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Layer]:
    """The three layers, lowest first, each from its flag, then environment, then default."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    layers: list[Layer] = []
    if vendor is not None:
        layers.append(Layer("vendor", os.path.abspath(vendor), "--vendor-config"))
    else:
        found = find_vendor_dir()
        if found is not None:
            layers.append(Layer("vendor", found, "shipped with rktcfg"))
        else:  # scanned as a missing directory, so --debug says so
            layers.append(Layer("vendor", "", "not found beside rktcfg or in its install prefix"))
    layers.append(_chosen_layer("system", system, env, DEFAULT_SYSTEM_DIR))
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config"
    )
    user_default = os.path.join(os.path.abspath(config_home), "rktcfg")
    layers.append(_chosen_layer("user", user, env, user_default))
    return layers


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _entry_fingerprint(path: str, entry: os.DirEntry[str]) -> list[object]:
    st = entry.stat(follow_symlinks=False)
    key: list[object] = [entry.name, *_stat_key(st)]
    if entry.is_symlink():
        key.append(os.readlink(path))
        try:
            key.extend(_stat_key(os.stat(path)))
        except OSError:
            key.append(None)
    return key


def _is_masked(path: str, entry: os.DirEntry[str]) -> bool:
    if entry.is_symlink():
        return os.path.realpath(path) == os.devnull
    try:
        st = entry.stat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def scan_layers(layers: list[Layer], kinds: tuple[str, ...] = KINDS) -> Scan:
    """List every kind directory of every layer once and apply the drop-in rules."""
    scan = Scan()
    # kind -> file name -> (layer, path, entry); later layers overwrite earlier ones
    chosen: dict[str, dict[str, tuple[Layer, str, os.DirEntry[str]]]] = {k: {} for k in kinds}
    for layer in layers:
        scan.fingerprint.append(layer.path)
        if not layer.path:
            scan.notes.append(f"{layer.name} config: {layer.chosen_by}; built-in defaults only")
            continue
        if not os.path.isdir(layer.path):
            if os.path.exists(layer.path):
                scan.problems.append((layer.path, f"{layer.name} config is not a directory"))
            else:
                scan.notes.append(f"{layer.name} config {layer.path} does not exist")
            scan.fingerprint.append(os.path.exists(layer.path))
            continue
        for kind in kinds:
            directory = os.path.join(layer.path, kind + ".d")
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except FileNotFoundError:
                scan.fingerprint.append([kind, None])
                continue
            except NotADirectoryError:
                scan.problems.append((directory, "is not a directory"))
                continue
            except OSError as exc:
                scan.problems.append((directory, f"cannot read directory: {exc.strerror}"))
                continue
            listing: list[object] = [kind]
            for entry in entries:
                path = os.path.join(directory, entry.name)
                try:
                    listing.append(_entry_fingerprint(path, entry))
                except OSError:
                    listing.append([entry.name, None])
                if entry.name.startswith(".") or not entry.name.endswith(EXTENSIONS):
                    scan.notes.append(f"ignored {path}: not a *.toml, *.yaml, *.yml or *.json file")
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:  # a symlink loop: reading it reports the problem
                    is_dir = False
                if is_dir:
                    scan.notes.append(f"ignored {path}: is a directory")
                    continue
                below = chosen[kind].get(entry.name)
                if below is not None:
                    scan.notes.append(f"{path} replaces {below[1]}")
                chosen[kind][entry.name] = (layer, path, entry)
            scan.fingerprint.append(listing)
    for kind in kinds:
        for name in sorted(chosen[kind]):
            layer, path, entry = chosen[kind][name]
            if _is_masked(path, entry):
                scan.notes.append(f"{path} masks {kind}.d/{name}")
                continue
            scan.sources.append(Source(kind, name, path, layer.name))
    return scan
