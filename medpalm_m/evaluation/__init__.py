"""Evaluation on the runtime: the evaluator (batched decoding, option scoring), suites (which tasks,
decode settings, where the report goes), scoring (grouping by condition, option letters, the
bootstrap margin, unparseable answers) and the report (JSON, the table)."""

from medpalm_m.evaluation.answer import answer, prompt_features
from medpalm_m.evaluation.evaluator import Evaluator, evaluate, suite_evaluator
from medpalm_m.evaluation.report import baseline_summary, format_table

__all__ = ["Evaluator", "answer", "baseline_summary", "evaluate", "format_table", "prompt_features",
           "suite_evaluator"]
