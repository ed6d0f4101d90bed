"""Pod files: golden cases under tests/data/spec/, one folder each, and the API around them.

A case holds its input files (usually a ``pods/`` directory), an optional ``args.json``
(``paths``, default ``["pods"]``; ``recursive``, ``variables``, ``vars_files``, ``validate``,
``environ``, default ``{}``) and either ``expected.json`` (what :meth:`Loaded.as_dict` gives,
the case's absolute path written ``@case``) or ``expected-error.txt`` (the ValidationError's
message). The load runs in the case folder, so messages name files as a user would.

``RKTCFG_UPDATE_GOLDEN=1 pytest tests/unit/test_spec.py`` rewrites the expectations; review
the diff before keeping it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rktcfg.errors import UsageError, ValidationError
from rktcfg.spec import DesiredPod, Loaded, documents, load
from rktcfg.spec.loader import apply_set_of, pod_file_format

CASES = Path(__file__).resolve().parent.parent / "data" / "spec"
UPDATE = os.environ.get("RKTCFG_UPDATE_GOLDEN") == "1"

#: The keys of the canonical spec, of an app and of a volume (apply-design.md §1).
SPEC_KEYS = {
    "labels",
    "annotations",
    "stage1",
    "restartPolicy",
    "net",
    "hostname",
    "dns",
    "apps",
    "volumes",
}
APP_KEYS = {
    "name",
    "image",
    "exec",
    "args",
    "env",
    "user",
    "group",
    "supplementaryGroups",
    "workingDirectory",
    "readOnlyRootFS",
    "isolators",
    "mounts",
    "ports",
    "healthCheck",
    "annotations",
}
VOLUME_KEYS = {"name", "kind", "source", "readOnly", "recursive", "mode", "uid", "gid"}
PORT_KEYS = {"name", "port", "protocol", "hostPort", "hostIP"}


def _run(case: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    args = json.loads((case / "args.json").read_text()) if (case / "args.json").exists() else {}
    monkeypatch.chdir(case)
    try:
        loaded = load(
            args.get("paths", ["pods"]),
            recursive=args.get("recursive", False),
            variables=args.get("variables"),
            vars_files=args.get("vars_files", ()),
            validate=args.get("validate", "strict"),
            environ=args.get("environ", {}),
        )
    except ValidationError as exc:
        return "error", str(exc) + "\n"
    _check_shape(loaded)
    text = json.dumps(loaded.as_dict(), indent=2, sort_keys=True).replace(str(case), "@case")
    return "ok", json.loads(text)


def _check_shape(loaded: Loaded) -> None:
    """Every key of the contract is present, whatever the input."""
    for pod in loaded.pods:
        assert set(pod.spec) == SPEC_KEYS
        for app in pod.spec["apps"]:
            assert set(app) == APP_KEYS
            for port in app["ports"]:
                assert set(port) == PORT_KEYS
        for volume in pod.spec["volumes"]:
            assert set(volume) == VOLUME_KEYS
        assert json.loads(json.dumps(pod.spec)) == pod.spec  # plain JSON values only


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()), ids=str)
def test_golden(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    root = CASES / case
    kind, got = _run(root, monkeypatch)
    expected_json, expected_error = root / "expected.json", root / "expected-error.txt"
    if UPDATE:
        expected_json.unlink(missing_ok=True)
        expected_error.unlink(missing_ok=True)
        if kind == "ok":
            expected_json.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
        else:
            expected_error.write_text(got)
    if expected_error.exists():
        assert kind == "error", f"expected an error, loaded {got}"
        assert got == expected_error.read_text()
    else:
        assert kind == "ok", got
        assert got == json.loads(expected_json.read_text())


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()), ids=str)
def test_golden_without_libyaml(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML's own parser gives the same pods and messages as libyaml."""
    monkeypatch.setattr(documents, "_FAST_LOADER", [None])
    root = CASES / case
    kind, got = _run(root, monkeypatch)
    if kind == "error":
        assert got == (root / "expected-error.txt").read_text()
    else:
        assert got == json.loads((root / "expected.json").read_text())


def test_every_case_has_expectations() -> None:
    for case in CASES.iterdir():
        if case.is_dir():
            assert (case / "expected.json").is_file() != (case / "expected-error.txt").is_file()


# --- the API around the golden cases --------------------------------------------------------

POD = """apiVersion: rktcfg/v1
kind: Pod
metadata: {name: NAME}
spec:
  apps: [{name: main, image: example.com/main:1.0}]
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_pod_file_suffixes() -> None:
    assert pod_file_format("web.yaml") == ("yaml", False)
    assert pod_file_format("web.YML") == ("yaml", False)
    assert pod_file_format("web.json") == ("json", False)
    assert pod_file_format("web.yaml.j2") == ("yaml", True)
    assert pod_file_format("web.yml.j2") == ("yaml", True)
    assert pod_file_format("web.json.j2") == ("json", True)
    for name in ("web.yaml.bak", "web.yaml~", "README.md", "web.toml", "web.j2", ".yaml", "yaml"):
        assert pod_file_format(name) is None, name


def test_apply_set(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    web = _write(pods / "web.yaml", POD.replace("NAME", "web"))
    other = _write(tmp_path / "other" / "db.yaml", POD.replace("NAME", "db"))
    assert apply_set_of([str(pods)]) == str(pods)
    assert apply_set_of([str(web)]) == str(pods)
    assert apply_set_of([str(web), str(pods)]) == str(pods)
    assert apply_set_of([str(web), str(other)]) == f"{other.parent},{pods}"  # sorted
    assert load([str(web), str(other)], environ={}).apply_set == f"{other.parent},{pods}"


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    web = _write(tmp_path / "pods" / "web.yaml", POD.replace("NAME", "web"))
    loaded = load([str(tmp_path / "pods"), str(web)], environ={})
    assert [p.name for p in loaded.pods] == ["web"]
    assert loaded.sources == (str(web),)


def test_pods_sorted_by_name_and_documents_counted(tmp_path: Path) -> None:
    _write(
        tmp_path / "b.yaml",
        POD.replace("NAME", "zeta") + "---\n---\n" + POD.replace("NAME", "alpha"),
    )
    _write(tmp_path / "a.yaml", POD.replace("NAME", "mid"))
    loaded = load([str(tmp_path)], environ={})
    assert [(p.name, Path(p.source).name, p.document) for p in loaded.pods] == [
        ("alpha", "b.yaml", 2),
        ("mid", "a.yaml", 0),
        ("zeta", "b.yaml", 0),
    ]


def test_bad_arguments() -> None:
    with pytest.raises(UsageError):
        load([])
    with pytest.raises(UsageError, match="strict or warn"):
        load(["pods"], validate="ignore")


def test_env_cannot_be_a_variable(tmp_path: Path) -> None:
    _write(tmp_path / "web.yaml.j2", POD.replace("NAME", "{{ name }}"))
    with pytest.raises(UsageError, match="environment"):
        load([str(tmp_path)], variables={"env": "x"}, environ={})
    vars_file = _write(tmp_path / "vars.yaml", "env: x\nname: web\n")
    with pytest.raises(ValidationError, match="'env' is the environment"):
        load([str(tmp_path / "web.yaml.j2")], vars_files=[str(vars_file)], environ={})


def test_variables_beat_vars_files_and_files_merge_in_order(tmp_path: Path) -> None:
    template = POD.replace("NAME", "{{ name }}").replace(
        "example.com/main:1.0", "{{ image.repo }}:{{ image.tag }}"
    )
    _write(tmp_path / "pods" / "web.yaml.j2", template)
    first = _write(tmp_path / "a.yaml", "name: a\nimage: {repo: example.com/a, tag: '1'}\n")
    second = _write(tmp_path / "b.toml", 'name = "b"\n[image]\ntag = "2"\n')
    loaded = load(
        [str(tmp_path / "pods")],
        vars_files=[str(first), str(second)],
        variables={"name": "c"},
        environ={},
    )
    assert loaded.pods[0].name == "c"
    assert loaded.pods[0].spec["apps"][0]["image"] == "example.com/a:2"
    assert set(loaded.sources) == {str(first), str(second), str(tmp_path / "pods" / "web.yaml.j2")}


def test_environ_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RKTCFG_TEST_POD_NAME", "from-env")
    _write(tmp_path / "web.yaml.j2", POD.replace("NAME", "{{ env.RKTCFG_TEST_POD_NAME }}"))
    assert load([str(tmp_path)]).pods[0].name == "from-env"


def test_a_fifo_named_like_a_pod_file_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "web.yaml")
    with pytest.raises(ValidationError, match="not a regular file"):
        load([str(tmp_path)], environ={})


def test_an_empty_directory_is_noted(tmp_path: Path) -> None:
    loaded = load([str(tmp_path)], environ={})
    assert loaded.pods == ()
    assert loaded.notes == (
        f"{tmp_path}: no pod files (*.yaml, *.yml, *.json, or one of those with .j2 (a template))",
    )


def test_host_files_are_read_only_host_volumes(tmp_path: Path) -> None:
    _write(
        tmp_path / "web.yaml",
        """apiVersion: rktcfg/v1
kind: Pod
metadata: {name: web}
spec:
  apps:
    - name: a
      image: x
      mounts: [{volume: ro-mount, path: /a, readOnly: true}, {volume: rw, path: /b}]
    - name: b
      image: x
      mounts: [{volume: rw, path: /b}, {volume: empty, path: /c, readOnly: true},
               {volume: mixed, path: /d, readOnly: true}]
    - name: c
      image: x
      mounts: [{volume: mixed, path: /d}]
  volumes:
    - {name: ro-mount, kind: host, source: conf}
    - {name: ro-volume, kind: host, source: site, readOnly: true}
    - {name: outside, kind: host, source: /srv/site, readOnly: true}
    - {name: rw, kind: host, source: data}
    - {name: mixed, kind: host, source: shared}
    - {name: empty, kind: empty}
""",
    )
    pod = load([str(tmp_path)], environ={}).pods[0]
    # read-only for every app and inside the repository: their content is the spec's; a
    # volume one app writes, or a path outside the repository, is not
    assert pod.host_files == tuple(sorted([str(tmp_path / "conf"), str(tmp_path / "site")]))


def test_an_empty_pod_file_is_an_error_never_a_prune(tmp_path: Path) -> None:
    from rktcfg.errors import ValidationError

    _write(tmp_path / "half-written.yaml", "")
    with pytest.raises(ValidationError) as caught:
        load([str(tmp_path)], environ={})
    assert "half-written.yaml" in str(caught.value) and "holds no pod" in str(caught.value)


def test_desired_pod_round_trips() -> None:
    pod = DesiredPod(
        name="web", source="/x/web.yaml", document=1, spec={"a": 1}, host_files=("/x",)
    )
    assert DesiredPod.from_dict(json.loads(json.dumps(pod.as_dict()))) == pod


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def test_importing_the_package_is_cheap() -> None:
    code = (
        "import sys, rktcfg.spec\n"
        "print(sorted(m for m in ('yaml', 'cerberus', 'jinja2') if m in sys.modules))"
    )
    assert _python(code) == "[]"


def test_valid_files_never_need_cerberus(tmp_path: Path) -> None:
    _write(tmp_path / "web.yaml", POD.replace("NAME", "web"))
    code = (
        "import sys, rktcfg.spec\n"
        f"rktcfg.spec.load([{str(tmp_path)!r}], environ={{}})\n"
        "print('cerberus' in sys.modules, 'jinja2' in sys.modules)"
    )
    assert _python(code) == "False False"


def test_included_templates_are_sources(tmp_path: Path) -> None:
    _write(tmp_path / "pods" / "parts" / "app.j2", "  apps: [{name: main, image: {{ image }}}]\n")
    _write(
        tmp_path / "pods" / "web.yaml.j2",
        POD.split("spec:")[0].replace("NAME", "web") + 'spec:\n{% include "parts/app.j2" %}',
    )
    loaded = load(tmp_path / "pods", variables={"image": "example.com/x:1"}, environ={})
    assert loaded.pods[0].spec["apps"][0]["image"] == "example.com/x:1"
    assert loaded.sources == (
        str(tmp_path / "pods" / "parts" / "app.j2"),
        str(tmp_path / "pods" / "web.yaml.j2"),
    )
    assert loaded.notes == (f"skipped {tmp_path}/pods/parts/ (a directory; not recursive)",)
