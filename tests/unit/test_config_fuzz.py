"""Whatever is in a drop-in file, loading yields a configuration or a RktcfgError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rktcfg.config.layers import KINDS
from rktcfg.config.loader import inputs_from, load_effective
from rktcfg.errors import RktcfgError

EXTENSIONS = (".toml", ".yaml", ".json")
KNOWN_KEYS = [
    "data",
    "stage1-images",
    "cgroup-parent",
    "default-flavor",
    "fly",
    "default",
    "kvm",
    "name",
    "version",
    "location",
    "qemu",
    "kernel",
    "kernel-args",
    "accel",
    "memory-overhead",
    "cpu",
    "memory",
    "pids",
    "type",
    "subnet",
    "gateway",
    "ip-masq",
    "default-route",
    "lab",
    "rktKind",
    "rktVersion",
]
values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True),
        st.sampled_from(
            ["", "/abs", "rel", "500m", "1Gi", "16m", "10.0.0.0/24", "10.0.0.1", "ptp", "v1"]
        ),
        st.sampled_from(["paths", "stage1", "fly", "kvm", "tcg", "bridge", "stage1-fly"]),
        st.text(max_size=8),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=5)), children, max_size=4
        ),
    ),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(KNOWN_KEYS), values, max_size=5)


def _load(kind: str, name: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "system" / f"{kind}.d"
        directory.mkdir(parents=True)
        (directory / name).write_bytes(content)
        inputs = inputs_from(
            vendor=str(Path(tmp) / "none"), system=str(Path(tmp) / "system"), user=tmp, environ={}
        )
        try:
            effective = load_effective(inputs)
        except RktcfgError:
            return
        effective.config()  # a valid document always builds a typed Config


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), st.sampled_from(EXTENSIONS), st.binary(max_size=200))
def test_arbitrary_bytes(kind: str, ext: str, content: bytes) -> None:
    _load(kind, "10-fuzz" + ext, content)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), st.sampled_from((".yaml", ".json")), documents)
def test_arbitrary_documents(kind: str, ext: str, document: dict[str, Any]) -> None:
    text = json.dumps(document) if ext == ".json" else yaml.safe_dump(document)
    _load(kind, "10-fuzz" + ext, text.encode())


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(KINDS), st.text(max_size=120))
def test_arbitrary_toml_text(kind: str, text: str) -> None:
    _load(kind, "10-fuzz.toml", text.encode("utf-8", "surrogatepass"))
