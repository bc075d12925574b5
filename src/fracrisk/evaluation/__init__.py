"""Evaluation and reports: score fitted models on held-out patients, render the result.

.. code-block:: python

    from fracrisk.evaluation import evaluate, write_report

    result = evaluate({"CoxPH": cox, "DeepSurv": deep}, test, horizons=(5, 10), train=train)
    write_report(result, "runs/my_run")  # report.html, report.md, evaluation.json

The data flow ends here: cohort -> models -> survival curves -> evaluation and report.
"""

from fracrisk.evaluation.evaluate import ORACLE, Evaluation, evaluate
from fracrisk.evaluation.report import ModelCard, read_evaluations, render_html, write_report

__all__ = [
    "ORACLE",
    "Evaluation",
    "ModelCard",
    "evaluate",
    "read_evaluations",
    "render_html",
    "write_report",
]
