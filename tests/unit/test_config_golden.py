"""Golden cases for the layered configuration: one folder each under tests/data/config/.

A case holds layer folders (``vendor/``, ``system/``, ``user/``; a missing one is an absent
layer), optional ``args.json`` (``flags``: {"dir": ...}, ``env``: {...}) and ``expected.json``:
either ``errors`` (every problem, file paths relative to the case) or ``config`` and
``origins``, compared for whole kinds, or for the dotted keys listed in ``select``; ``typed``
compares fields of the typed Config.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from rktcfg.cli.config import flatten
from rktcfg.config.loader import inputs_from, load_effective
from rktcfg.errors import ConfigError
from rktcfg.version import __version__

CASES = Path(__file__).resolve().parent.parent / "data" / "config"


def _load_case(case: Path) -> tuple[Any, dict[str, Any]]:
    args = json.loads((case / "args.json").read_text()) if (case / "args.json").exists() else {}
    inputs = inputs_from(
        vendor=str(case / "vendor"),
        system=str(case / "system"),
        user=str(case / "user"),
        data_dir=args.get("flags", {}).get("dir"),
        environ=args.get("env", {}),
    )
    expected = json.loads((case / "expected.json").read_text().replace("@version", __version__))
    return inputs, expected


def _relative(text: str, case: Path) -> str:
    return text.replace(str(case) + "/", "")


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()), ids=str)
def test_golden(case: str) -> None:
    root = CASES / case
    inputs, expected = _load_case(root)
    if "errors" in expected:
        with pytest.raises(ConfigError) as caught:
            load_effective(inputs)
        got = [_relative(str(p), root) for p in caught.value.problems]
        assert got == expected["errors"]
        return
    effective = load_effective(inputs)
    origins = {k: _relative(v, root) for k, v in effective.origins.items()}
    if "select" in expected:
        flat = dict(flatten(effective.document))
        assert {k: flat[k] for k in expected["select"]} == expected["config"]
        assert {k: origins[k] for k in expected["select"]} == expected["origins"]
    else:
        for kind, values in expected["config"].items():
            assert effective.document[kind] == values
        kinds = tuple(k + "." for k in expected["config"])
        assert {k: v for k, v in origins.items() if k.startswith(kinds)} == expected["origins"]
    config = effective.config()
    for section, fields in expected.get("typed", {}).items():
        assert dataclasses.asdict(getattr(config, section)) == fields


def test_every_case_has_expectations() -> None:
    for case in CASES.iterdir():
        assert (case / "expected.json").is_file(), case
