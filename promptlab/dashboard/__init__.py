"""The one bridge to Streamlit: pages use `from promptlab import dashboard as ui`; nothing else in promptlab imports streamlit."""
# The names below are what pages may use; each lives in the module that owns its concern.
from promptlab import calls
from promptlab.dashboard.grading_panel import grading_panel
from promptlab.dashboard.worker_registry import (live_runs, run_is_live, running, stop_run, take_result, wait_for,
                                                 worker_result, workers)
from promptlab.dashboard.readers import (clear_readers, dataset, datasets_table, ensure_demo_dataset, get_store,
                                         model_choices, runs_table, zoo_table)
from promptlab.dashboard.review_panel import round_review
from promptlab.dashboard.settings import (DEFAULT_PROPOSERS, DEFAULT_TARGET, remember, remembered,
                                          remembered_prompt_keys, streamlit_secret)
from promptlab.columns import in_words  # noqa: F401 - the pages' ui.in_words
from promptlab.dashboard.widgets import (chart_exports, error_box, pick_grid, pick_run, setting_inputs,
                                         sidebar_nav)
from promptlab.dashboard.workers import (
    analyze_study, group_matrix, score_candidate, score_elsewhere, score_matrix, score_prompts, start_group, start_run,
    start_study,
)

# On import: every page imports this package before it can call a model, in whatever thread the call runs.
calls.set_secret_lookup(streamlit_secret)
