"""The values pod files load into: :class:`DesiredPod` and :class:`Loaded`.

The shapes are the contract between ``rktcfg.spec`` and ``rktcfg.plan``: plain JSON-able
dicts and tuples, every key always present (see :func:`rktcfg.spec.load`). Imports nothing
beyond ``dataclasses`` and the planner's value classes, so the CLI can name these types
without paying for the loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rktcfg.plan.planner import DesiredPod  # one class for the loader and the planner

__all__ = ["DesiredPod", "Loaded"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    """Everything a load of pod files found."""

    #: sorted by name
    pods: tuple[DesiredPod, ...]
    #: files skipped (``skipped pods/README.md (not a pod file)``) and, with
    #: ``validate="warn"``, the fields that were dropped
    notes: tuple[str, ...]
    #: every file read (pod files, templates they include, vars files): absolute, sorted
    sources: tuple[str, ...]
    #: the default apply set of the paths loaded
    apply_set: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "pods": [pod.as_dict() for pod in self.pods],
            "notes": list(self.notes),
            "sources": list(self.sources),
            "apply_set": self.apply_set,
        }
