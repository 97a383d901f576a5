"""DataFrame in, plotly figure out. Pure: never calls st.*, never touches the store."""
from __future__ import annotations

import math
from collections.abc import Iterator

import pandas as pd
import plotly.graph_objects as go

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f"]


def _family_colors(families) -> dict[str, str]:
    ordered = sorted({f for f in families if f != "baseline"})
    colors = {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(ordered)}
    colors["baseline"] = "#444444"
    return colors


def score_trajectories(cands: pd.DataFrame, x: str = "round", metric: str = "score", title: str | None = None,
                       stages: list[dict] | None = None) -> go.Figure:
    """Best-so-far val score per proposer family (lines) and every candidate (points).

    cands: one row per candidate with columns round, family, proposer, status, val_score, minibatch_score,
    text, id, and target_requests (for x="target_requests"). Baselines (family 'baseline') start every
    line: each family's best-so-far begins at the best baseline. Gated candidates are drawn hollow at
    their minibatch score.
    """
    fig = go.Figure()
    if cands.empty:
        fig.update_layout(title=title or "No candidates yet")
        return fig
    xcol = "target_requests" if x == "target_requests" else "round"
    df = _trajectory_frame(cands, xcol)
    colors = _family_colors(df["family"])
    fig.add_traces([*_best_so_far_lines(df, xcol, colors), *_candidate_points(df, xcol, colors),
                    *_analyst_marks(df, xcol)])
    _lay_out_trajectories(fig, df, xcol, metric, title, stages or [])
    return fig


def _trajectory_frame(cands: pd.DataFrame, xcol: str) -> pd.DataFrame:
    """A copy of cands with the decision and decided_by columns (None where absent) and a numeric x column
    (0 where missing)."""
    df = cands.copy()
    for col in ("decision", "decided_by"):
        if col not in df:
            df[col] = None
    df[xcol] = pd.to_numeric(df[xcol], errors="coerce").fillna(0)
    return df


def _best_so_far_lines(df: pd.DataFrame, xcol: str, colors: dict[str, str]) -> Iterator[go.Scatter]:
    """One step line per non-baseline family: its best val score so far, starting at the best baseline (at the
    last baseline's x). A family with no val score draws no line."""
    discarded = df["decision"].eq("discard") & df["decided_by"].eq("analyst")
    base = df[df["family"] == "baseline"]
    base_best = base["val_score"].max() if len(base) else math.nan
    x0 = float(base[xcol].max()) if len(base) else 0.0
    for family in [f for f in colors if f != "baseline"]:
        # the analyst's discards left the history, so they never lift a best-so-far line
        fam = df[(df["family"] == family) & df["val_score"].notna() & ~discarded].sort_values([xcol, "id"])
        xs, ys, best = [x0], [base_best], base_best
        for row in fam.itertuples():
            best = row.val_score if (best != best or row.val_score > best) else best
            xs.append(getattr(row, xcol))
            ys.append(best)
        if len(xs) > 1:
            yield go.Scatter(
                x=xs, y=ys, mode="lines", line={"shape": "hv", "width": 3, "color": colors[family]},
                name=f"{family}: best so far", legendgroup=family,
            )


def _candidate_points(df: pd.DataFrame, xcol: str, colors: dict[str, str]) -> Iterator[go.Scatter]:
    """Per family: its candidates scored on val as filled points, then its gated ones hollow at their minibatch
    score."""
    for family, color in colors.items():
        fam = df[df["family"] == family]
        full = fam[fam["val_score"].notna()]
        gated = fam[fam["val_score"].isna() & fam["minibatch_score"].notna() & (fam["status"] == "gated")]
        if len(full):
            yield go.Scatter(
                x=full[xcol], y=full["val_score"], mode="markers", legendgroup=family,
                marker={"size": 9, "color": color, "line": {"width": 1, "color": "white"}},
                name=f"{family}: candidates (val)" if family != "baseline" else "baseline (val)",
                text=_hover_texts(full), hovertemplate="%{text}<br>val %{y:.3f}<extra></extra>",
            )
        if len(gated):
            yield go.Scatter(
                x=gated[xcol], y=gated["minibatch_score"], mode="markers", legendgroup=family,
                marker={"size": 8, "color": "rgba(0,0,0,0)", "line": {"width": 1.5, "color": color}},
                name=f"{family}: gated (minibatch)",
                text=_hover_texts(gated), hovertemplate="%{text}<br>minibatch %{y:.3f}<extra></extra>",
            )


def _analyst_marks(df: pd.DataFrame, xcol: str) -> Iterator[go.Scatter]:
    """A star over each candidate the analyst kept and a cross over each one discarded, at its val score (its
    minibatch score when it has none); candidates with neither score are not marked."""
    picks = df[df["decided_by"].eq("analyst") & df["decision"].isin(["keep", "discard"])]
    for decision, symbol, name in (("keep", "star", "kept by the analyst"), ("discard", "x-thin", "discarded by the analyst")):
        mine = picks[picks["decision"] == decision]
        y = mine["val_score"].where(mine["val_score"].notna(), mine["minibatch_score"])
        mine, y = mine[y.notna()], y[y.notna()]
        if len(mine):
            yield go.Scatter(
                x=mine[xcol], y=y, mode="markers", name=name,
                marker={"symbol": symbol, "size": 18, "color": "rgba(0,0,0,0)" if decision == "keep" else "#222",
                        "line": {"width": 2, "color": "#222"}},
                text=_hover_texts(mine, f", {name}"), hovertemplate="%{text}<br>%{y:.3f}<extra></extra>",
            )


def _hover_texts(rows: pd.DataFrame, tag: str = "") -> list[str]:
    """'#id proposer<tag>' over the start of each candidate's text, one per row."""
    return [f"#{i} {p}{tag}<br>{_short(t)}" for i, p, t in zip(rows["id"], rows["proposer"], rows["text"])]


def _lay_out_trajectories(fig: go.Figure, df: pd.DataFrame, xcol: str, metric: str, title: str | None,
                          stages: list[dict]) -> None:
    """Title, axes, legend and stage shading; the y range padded around every val and minibatch score drawn."""
    fig.update_layout(
        title=title or "Score trajectories per proposer family",
        xaxis_title="round" if xcol == "round" else "target requests",
        yaxis_title=f"val {metric}", template="plotly_white", legend={"orientation": "h", "y": -0.2},
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
    )
    if xcol == "round":
        fig.update_xaxes(dtick=1)
    _shade_stages(fig, stages, xcol)
    ys = pd.concat([df["val_score"], df["minibatch_score"]]).dropna()
    if len(ys):
        pad = max(0.02, 0.08 * (ys.max() - ys.min()))
        fig.update_yaxes(range=[ys.min() - pad, ys.max() + pad])


STAGE_SHADES = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e")


def _shade_stages(fig: go.Figure, stages: list[dict], xcol: str) -> None:
    """Shade each stage of a staged run (results.stage_report) over the x range it covers, named at the top; the
    stage the result came from says so."""
    if len(stages) < 2:
        return
    for i, st in enumerate(stages):
        if xcol == "round":
            lo, hi = st["span_rounds"]
            x0, x1 = lo - 0.5, hi + 0.5
        else:
            x0, x1 = st["span_requests"]
        if x1 <= x0 or not st["candidates"]:
            continue
        label = st["stage"] + (" (the result)" if st["result_from_here"] else "")
        fig.add_vrect(x0=x0, x1=x1, fillcolor=STAGE_SHADES[i % len(STAGE_SHADES)], opacity=0.07, line_width=0,
                      annotation_text=label, annotation_position="top left", annotation_font_size=11, layer="below")


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def attribution_bars(attribution: pd.DataFrame) -> go.Figure:
    """Best val score per proposer, coloured by family, with its usable share of the proposals asked and its wins
    above the bar."""
    fig = go.Figure()
    if attribution.empty:
        return fig
    colors = _family_colors(attribution["family"])
    fig.add_trace(go.Bar(
        x=attribution["model"], y=attribution["best_val"].fillna(0),
        marker_color=[colors.get(f, "#999") for f in attribution["family"]],
        text=[f"usable {v:.0%} · wins {w}" if v == v and v is not None else f"wins {w}"
              for v, w in zip(attribution["usable_rate"].astype(float), attribution["wins"])],
        textposition="outside",
    ))
    fig.update_layout(title="Best val score per proposer", yaxis_title="best val", template="plotly_white",
                      margin={"l": 50, "r": 20, "t": 60, "b": 40})
    return fig


RELATION_COLORS = {"same family, bigger": "#2ca02c", "same family, same size": "#98df8a", "same family, smaller": "#bcbd22",
                   "same family, size unknown": "#98df8a", "cross family": "#d62728", "mix": "#7f7f7f"}


def study_gains(cells: pd.DataFrame, title: str) -> go.Figure:
    """Held-out gain over the baseline per proposer, with its 95% CI, coloured by relation to the target;
    n (test examples) and seeds in each row's label."""
    fig = go.Figure()
    cells = cells[cells["gain_mean"].notna()]
    for rel, group in cells.groupby("relation", sort=False):
        names = [f"{p} (n={n}, {s} seeds)" for p, n, s in zip(group["proposer"], group["n_test"], group["seeds"])]
        fig.add_trace(go.Scatter(
            x=group["gain_mean"], y=names, mode="markers", name=rel,
            marker={"size": 11, "color": RELATION_COLORS.get(rel, "#1f77b4")},
            error_x={"type": "data", "symmetric": False, "array": group["ci_high"] - group["gain_mean"],
                     "arrayminus": group["gain_mean"] - group["ci_low"]},
        ))
    fig.add_vline(x=0, line_dash="dash", line_color="#888")
    fig.update_layout(title=title, template="plotly_white", xaxis_title="test gain over the baseline (95% CI)",
                      margin={"l": 50, "r": 20, "t": 60, "b": 40}, height=160 + 45 * len(cells), legend_title="relation")
    return fig


def confusion_heatmap(cm: pd.DataFrame, title: str = "Confusion matrix") -> go.Figure:
    fig = go.Figure(go.Heatmap(
        z=cm.to_numpy(), x=list(cm.columns), y=list(cm.index), colorscale="Blues", showscale=False,
        text=cm.to_numpy(), texttemplate="%{text}",
    ))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="gold", template="plotly_white",
                      yaxis={"autorange": "reversed"}, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      height=120 + 45 * len(cm))
    return fig


def label_distribution(counts: dict[str, int], title: str = "Labels") -> go.Figure:
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), marker_color="#1f77b4",
                           text=list(counts.values()), textposition="outside"))
    fig.update_layout(title=title, template="plotly_white", yaxis_title="rows",
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, height=300)
    return fig


def to_png(fig: go.Figure, width: int = 1200, height: int = 600) -> bytes:
    """Render a figure to PNG offline (kaleido driving the system chromium). Raises RuntimeError with a
    plain message when no browser is available for it."""
    try:
        return fig.to_image(format="png", width=width, height=height, scale=2)
    except Exception as exc:  # noqa: BLE001 - kaleido reports a missing browser in several ways
        raise RuntimeError(
            f"PNG rendering is not available here ({type(exc).__name__}); it needs chromium installed "
            "(apt-get install chromium). Use the chart's camera button instead: your browser renders the PNG."
        ) from None


def matrix_heatmap(cells: pd.DataFrame, metric: str, title: str = "Prompts x models") -> go.Figure:
    """Rows: prompts; columns: models; each cell its score with the 95% CI and n; ★ marks each model's best prompt
    and ◆ the model the prompt was found for."""
    prompts = list(dict.fromkeys(cells["prompt"]))
    models = list(dict.fromkeys(cells["model"]))
    by = cells.set_index(["prompt", "model"])
    z, text = [], []
    for p in prompts:
        zr, tr = [], []
        for m in models:
            r = by.loc[(p, m)]
            zr.append(r["score"])
            mark = ("★ " if r["best_for_model"] else "") + ("◆ " if r["own_model"] == m else "")
            tr.append(f"{mark}{r['score']:.3f}<br>[{r['ci_low']:.2f}, {r['ci_high']:.2f}] n={int(r['n'])}")
        z.append(zr)
        text.append(tr)
    fig = go.Figure(go.Heatmap(z=z, x=models, y=prompts, text=text, texttemplate="%{text}", colorscale="Blues",
                               colorbar={"title": metric}, hovertemplate="%{y} on %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"{title} ({metric}; ★ best prompt for the model, ◆ the model it was found for)",
                      xaxis_title="scored by", yaxis_title="prompt (run #candidate)",
                      height=max(300, 90 * len(prompts) + 150), yaxis={"autorange": "reversed"})
    return fig


COST_AXES = {"tokens_in": "prompt tokens per call (mean)", "latency_s": "seconds per call (median)",
             "price_1k": "$ per 1,000 calls"}


def pareto_front(frame: pd.DataFrame, cost: str, score: str = "val_score") -> pd.DataFrame:
    """The rows no other row beats on both counts (cheaper or as cheap, and better or as good), cheapest first."""
    df = frame[frame[cost].notna() & frame[score].notna()].sort_values([cost, score], ascending=[True, False])
    keep, best = [], -math.inf
    for i, row in df.iterrows():
        if row[score] > best:
            keep.append(i)
            best = row[score]
    return df.loc[keep]


def cost_frontier(board: pd.DataFrame, cost: str = "tokens_in", metric: str = "score",
                  highlight: int | None = None) -> go.Figure:
    """Candidates by cost per call (x) against val score (y), coloured by family, the Pareto front drawn as a
    step line; hover: the prompt, n and the 95% CI. board: a leaderboard (results.leaderboard) with its cost
    columns. `highlight`: the result's candidate id, ringed."""
    fig = go.Figure()
    label = COST_AXES.get(cost, cost)
    df = board[board[cost].notna() & board["val_score"].notna()] if cost in board else board.iloc[0:0]
    if df.empty:
        fig.update_layout(title="No costs measured yet", template="plotly_white")
        return fig
    colors = _family_colors(df["family"])
    for family, group in df.groupby("family", sort=False):
        fig.add_trace(go.Scatter(
            x=group[cost], y=group["val_score"], mode="markers", name=family,
            marker={"size": 10, "color": colors.get(family, "#999"), "line": {"width": 1, "color": "white"}},
            customdata=list(zip(group["id"], group["n_scored"].fillna(group.get("n_val", 0)), group["val_ci_low"],
                                group["val_ci_high"], [_short(t) for t in group["text"]])),
            hovertemplate=("#%{customdata[0]} · %{customdata[4]}<br>" + f"{metric} " + "%{y:.3f} "
                           "[%{customdata[2]:.3f}, %{customdata[3]:.3f}], n=%{customdata[1]}<br>" + label
                           + " %{x:.3g}<extra></extra>"),
        ))
    front = pareto_front(df, cost)
    fig.add_trace(go.Scatter(x=front[cost], y=front["val_score"], mode="lines", name="Pareto front",
                             line={"shape": "hv", "dash": "dot", "color": "#444"}, hoverinfo="skip"))
    if highlight is not None and (df["id"] == highlight).any():
        r = df[df["id"] == highlight].iloc[0]
        fig.add_trace(go.Scatter(x=[r[cost]], y=[r["val_score"]], mode="markers", name="result",
                                 marker={"size": 18, "symbol": "circle-open", "color": "#000", "line": {"width": 2}},
                                 hoverinfo="skip"))
    fig.update_layout(title=f"Score against cost per call ({len(df)} candidates, {len(front)} on the front)",
                      xaxis_title=label, yaxis_title=f"val {metric}", template="plotly_white",
                      margin={"l": 50, "r": 20, "t": 60, "b": 40})
    return fig
