"""Charts are pure: DataFrame in, figure out; tests read the figure's data."""
import pandas as pd

from promptlab import charts

CANDS = pd.DataFrame([
    {"id": 1, "round": 0, "family": "baseline", "proposer": "baseline", "status": "evaluated", "val_score": 0.5, "minibatch_score": None, "text": "b", "target_requests": 100},
    {"id": 2, "round": 1, "family": "qwen", "proposer": "q15", "status": "evaluated", "val_score": 0.6, "minibatch_score": 0.6, "text": "x", "target_requests": 200},
    {"id": 3, "round": 1, "family": "smollm", "proposer": "s", "status": "gated", "val_score": None, "minibatch_score": 0.2, "text": "y", "target_requests": 224},
    {"id": 4, "round": 2, "family": "qwen", "proposer": "q05", "status": "evaluated", "val_score": 0.55, "minibatch_score": 0.5, "text": "z", "target_requests": 330},
    {"id": 5, "round": 2, "family": "smollm", "proposer": "s", "status": "evaluated", "val_score": 0.7, "minibatch_score": 0.7, "text": "w", "target_requests": 430},
])


def traces(fig):
    return {t.name: t for t in fig.data}


def test_best_so_far_line_per_family_starts_at_the_baseline():
    t = traces(charts.score_trajectories(CANDS))
    assert list(t["qwen: best so far"].y) == [0.5, 0.6, 0.6]
    assert list(t["qwen: best so far"].x) == [0, 1, 2]
    assert list(t["smollm: best so far"].y) == [0.5, 0.7]


def test_every_candidate_is_a_point_and_gated_ones_are_hollow_at_their_minibatch_score():
    t = traces(charts.score_trajectories(CANDS))
    assert list(t["qwen: candidates (val)"].y) == [0.6, 0.55]
    assert list(t["smollm: gated (minibatch)"].y) == [0.2]
    assert t["smollm: gated (minibatch)"].marker.color == "rgba(0,0,0,0)"
    assert list(t["baseline (val)"].y) == [0.5]


def test_x_axis_can_be_target_calls():
    fig = charts.score_trajectories(CANDS, x="target_requests")
    t = traces(fig)
    assert list(t["qwen: best so far"].x) == [100, 200, 330]
    assert fig.layout.xaxis.title.text == "target requests"


def test_empty_and_other_charts():
    assert len(charts.score_trajectories(CANDS.iloc[0:0]).data) == 0
    cm = pd.DataFrame([[3, 1, 0], [0, 2, 1]], index=["a", "b"], columns=["a", "b", "(invalid)"])
    heat = charts.confusion_heatmap(cm)
    assert heat.data[0].z.tolist() == [[3, 1, 0], [0, 2, 1]]
    bars = charts.label_distribution({"a": 3, "b": 5})
    assert list(bars.data[0].y) == [3, 5]


def test_png_export_renders_offline_through_the_system_browser():
    png = charts.to_png(charts.score_trajectories(CANDS), width=600, height=300)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
