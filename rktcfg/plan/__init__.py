"""Declarative apply, the pure part: desired pods and observed state in, a plan out.

* :mod:`rktcfg.plan.planner`: :class:`DesiredPod`, :class:`Plan` of :class:`Action` s with
  their :class:`Change` s, :func:`compute_plan`, :func:`spec_hash`, :func:`simulate`;
* :mod:`rktcfg.plan.diff`: field diffs and :func:`render_text`;
* :mod:`rktcfg.plan.observe`: the one module with I/O, reading the pod and image stores into
  the observed dict (import it where it is needed; it opens SQLite).
"""

from __future__ import annotations

from rktcfg.plan.diff import render_text
from rktcfg.plan.planner import (
    KINDS,
    Action,
    Change,
    DesiredPod,
    Plan,
    compute_plan,
    hash_resolved,
    ownership_annotations,
    resolved_spec,
    simulate,
    spec_hash,
)

__all__ = [
    "KINDS",
    "Action",
    "Change",
    "DesiredPod",
    "Plan",
    "compute_plan",
    "hash_resolved",
    "ownership_annotations",
    "render_text",
    "resolved_spec",
    "simulate",
    "spec_hash",
]
