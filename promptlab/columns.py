"""The headers a person reads for the columns of the library's tables: one mapping from the names the frames carry
(and the JSON keeps) to words, applied where a table is shown. A leaf: it imports nothing of promptlab's."""
from __future__ import annotations

# One name, one header, whichever table it appears in. A name that means two things in two tables is given two names
# where the table is built (a stage's target requests are `target_requests`, a proposer's own calls `calls`).
COLUMN_NAMES = {
    # candidates (the leaderboard)
    "n_scored": "val examples scored",
    "minibatch_score": "score on them",
    "val_score": "val",
    "val_ci_low": "val CI low",
    "val_ci_high": "val CI high",
    "confirm_score": "held-back val",
    "test_score": "test",
    "constant": "constant answer",
    "decided_by": "decided by",
    "demos_shown": "demos",
    "text": "prompt",
    "val_vs_baseline": "Δ val vs baseline",
    "val_minus_held_back": "gap (val − held-back)",
    # what a call costs
    "tokens_in": "tokens in per call",
    "tokens_out": "tokens out per call",
    "latency_s": "latency per call (s)",
    "price_1k": "$ per 1,000 calls",
    # proposals: asked for, written in the replies, usable (passed the screen and became candidates)
    "usable_rate": "usable share of asked",
    "best_val": "best val",
    "best_val_test": "its test",
    "wins": "rounds won",
    "candidates_scored": "candidates scored",
    "size_b": "size (B params)",
    # datasets, runs, grading
    "n_rows": "rows",
    "label_col": "label column",
    "input_cols": "input columns",
    "created_at": "created",
    "updated_at": "updated",
    "judge_reason": "judge's reason",
    # stages
    "target_requests": "target requests",  # what the budget counts: each prompt x example once, cached or not
    "proposer_calls": "proposer calls",
    "copied": "dropped: copied an input",
    "never_scored": "never scored",
    "leader_after": "leader after",
    "ended": "why it ended",
    # examples
    "example_idx": "example",
    "gold": "expected",
    "parse": "read as",
    # runs side by side, groups and studies
    "run_id": "run",
    "baseline_val": "baseline val",
    "baseline_test": "baseline test",
    "best_test": "result test",
    "best_proposer": "result by",
    "result_by": "result by",
    "test_ci_low": "test CI low",
    "test_ci_high": "test CI high",
    "n_test": "n test",
    "gain_ci_low": "gain CI low",
    "gain_ci_high": "gain CI high",
    "gain_mean": "gain (mean)",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "p_value": "p",
    "p_adj": "p (Holm)",
    "better_on": "better on",
    "worse_on": "worse on",
    "second_better_on": "second better on",
    "first_better_on": "first better on",
    "own_model": "found for",
    "own_score": "on its own model",
    "others_mean": "on the others (mean)",
}


def in_words(frame):
    """`frame` (a pandas DataFrame) with its columns named as a person reads them (COLUMN_NAMES); a name not in the
    mapping is already a word and stays."""
    return frame.rename(columns=COLUMN_NAMES)
