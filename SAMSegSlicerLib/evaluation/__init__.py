"""Honest evaluation: simulated users prompt the model slice by slice; 3-D Dice and leak against a label map.

This package sits on top of the core (``SAMSegSlicerLib``'s modules, ``models``, ``controller``,
``web``), which never imports it (ruff TID251 and ``Testing/Python/test_layers.py``):

* :mod:`.protocol` -- the protocol contract (:class:`EvalOptions`, :class:`ProtocolOutcome`);
* :mod:`.masks` -- the measures (Dice, the slices holding a label, leak, slices beyond the label);
* :mod:`.box`, :mod:`.simulated_user` (clicks, scribbles, lasso), :mod:`.propagate` -- the
  protocols; :mod:`.assisted` -- any protocol with SAM^assist;
* :mod:`.run` -- :data:`PROTOCOLS` and :func:`run_evaluation`; :mod:`.report` -- the report.
"""

from .protocol import EvalOptions, ProtocolFn, ProtocolOutcome
from .report import EvalReport, LabelResult
from .run import PROTOCOLS, LabelProgress, check_label_values, run_evaluation

__all__ = ["PROTOCOLS", "EvalOptions", "EvalReport", "LabelProgress", "LabelResult", "ProtocolFn",
           "ProtocolOutcome", "check_label_values", "run_evaluation"]
