"""Evaluation on the runtime: the evaluator (batched decoding, option scoring), scoring
(grouping by condition, option letters, the bootstrap margin) and the report (JSON, the table)."""

from medpalm_m.evaluation.answer import answer
from medpalm_m.evaluation.evaluator import Evaluator, evaluate
from medpalm_m.evaluation.report import baseline_summary, format_table

__all__ = ["Evaluator", "answer", "baseline_summary", "evaluate", "format_table"]
