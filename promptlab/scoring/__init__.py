"""How a prompt is scored: one Objective contract (base.py) kept by label metrics (labels.py), reference scorers
(scorers.py), the LLM judge (judge.py) and human grades (base.HumanGrades); choosing one by name for a dataset
(objective.py); and the statistics that compare prompts on the same examples (stats.py)."""
from promptlab.scoring.base import HumanGrades, MeanScore, Objective, Reading, ScoringError, mean_interval, \
    wilson_interval
from promptlab.scoring.judge import Judge, JudgeError, JudgeScore
from promptlab.scoring.labels import Metric, MetricError, parse_label, parse_metric
from promptlab.scoring.objective import DEFAULT_RUBRIC, ObjectiveError, check_scoring, default_spec, judge_from, \
    JudgeSettings, judge_record, metric_choices, metric_spec, parse_objective, parse_scale, save_scoring
from promptlab.scoring.scorers import ReferenceScore, Scorer, ScorerError, parse_scorer

__all__ = [
    "Objective", "Reading", "MeanScore", "HumanGrades", "ScoringError", "mean_interval", "wilson_interval",
    "Metric", "MetricError", "parse_metric", "parse_label", "Scorer", "ScorerError", "ReferenceScore", "parse_scorer",
    "Judge", "JudgeError", "JudgeScore", "DEFAULT_RUBRIC", "ObjectiveError", "check_scoring", "default_spec",
    "judge_from", "JudgeSettings", "judge_record", "metric_choices", "metric_spec", "parse_objective", "parse_scale", "save_scoring",
]
