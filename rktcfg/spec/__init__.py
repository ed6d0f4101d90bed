"""Pod definitions: ``rktcfg/v1`` Pod documents, Jinja2 templates, the Kubernetes v1 Pod subset.

:func:`load` reads pod files and directories into :class:`Loaded`: the desired pods in
canonical form (the input of ``rktcfg.plan``), notes, the files read and the default apply
set. Modules:

- ``loader``: finding files (suffixes, skipped files), reading, the load itself;
- ``templates``: Jinja2 rendering of ``*.j2`` files and their variables;
- ``documents``: ``---`` documents with the line of every key;
- ``schema``: the cerberus schemas of both apiVersions, and the fast check of a valid one;
- ``build``: one document to its canonical spec, and the checks that span fields;
- ``model``: :class:`DesiredPod` and :class:`Loaded`.

Importing this package costs nothing beyond ``dataclasses``: YAML, Jinja2 and cerberus are
imported when a load needs them (cerberus only for a document with something wrong in it).
"""

from __future__ import annotations

from rktcfg.spec.model import DesiredPod, Loaded

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = ["DesiredPod", "Loaded", "load"]


def load(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    variables: Mapping[str, Any] | None = None,
    vars_files: Iterable[str] = (),
    validate: str = "strict",
    environ: Mapping[str, str] | None = None,
) -> Loaded:
    """Load the pods that ``paths`` (pod files and directories) define.

    ``recursive``: also the pod files in subdirectories. ``variables`` (``--var k=v``) over
    ``vars_files`` (YAML, JSON or TOML tables, merged in order) are what ``*.j2`` templates
    see, with ``env``, the environment (``environ``, default ``os.environ``).
    ``validate="warn"`` turns unknown and unsupported fields into notes (they are dropped);
    ``"strict"`` (the default) makes them errors.

    Raises :class:`~rktcfg.errors.ValidationError` with every problem of every file (file,
    line, field), :class:`~rktcfg.errors.UsageError` for bad arguments.
    """
    from rktcfg.spec import loader

    return loader.load(
        paths,
        recursive=recursive,
        variables=variables,
        vars_files=vars_files,
        validate=validate,
        environ=environ,
    )
