"""AppTest for every page: uploads (good and bad), manual search and a run with scripted fake models."""
import re
import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

import fakes
from conftest import ROOT
from promptlab import planning, report, results
from promptlab.data import stored_dataset
from promptlab.models import make_spec
from promptlab.store import Store

PAGES = ROOT / "pages"


def target_reply(messages, params):
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    text = messages[-1]["content"].lower()
    if "invoice" in text or "refund" in text or "charge" in text:
        return "billing"
    return "technical" if "magic" in system.lower() else "billing"


def proposer_reply(messages, params):
    return "<prompt>Use MAGIC: route the message.</prompt><prompt>Be careful: route the message.</prompt>"


def fake_models_db(path, monkeypatch, **replies):
    """The dashboard's DB at `path` with the scripted target and proposer (and any `name=reply` given) saved as models."""
    monkeypatch.setenv("PROMPTLAB_DB", str(path))
    store = Store(path)
    models = {"fake-target": ("pages-target", target_reply), "fake-prop": ("pages-prop", proposer_reply)}
    models |= {name.replace("_", "-"): (name.replace("_", "-"), reply) for name, reply in replies.items()}
    for name, (script, reply) in models.items():
        store.save_model(name, make_spec(fakes.script(script, reply), name=name).to_record())
    store.close()
    return path


@pytest.fixture
def db(tmp_path, monkeypatch):
    return fake_models_db(tmp_path / "pages.duckdb", monkeypatch)


def page(name: str) -> AppTest:
    return AppTest.from_file(str(PAGES / name) if name != "app.py" else str(ROOT / "app.py"), default_timeout=60)


def snake_headers(at: AppTest) -> list[str]:
    """Column headers left as code names (snake_case) in the page's tables."""
    return [c for df in at.dataframe for c in df.value.columns if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", str(c))]


def test_home_shows_demo_zoo_and_the_one_click_run(db):
    at = page("app.py").run()
    assert not at.exception
    assert "support_tickets" in at.dataframe[0].value["name"].tolist()
    assert any("Start a small run" in b.label for b in at.button)
    assert {"rows", "label column"} <= set(at.dataframe[0].value.columns) and not snake_headers(at)


def test_upload_preview_import(db):
    at = page("1_Datasets.py").run()
    assert not at.exception
    csv = "message,team\n" + "\n".join(f"please refund order {i},billing\napp crashes on screen {i},technical" for i in range(10))
    at.file_uploader[0].set_value(("mine.csv", csv.encode(), "text/csv")).run()
    assert not at.exception
    assert at.selectbox(key="datasets.label_col").value == "team"
    at.button(key="datasets.import").click().run()
    assert not at.exception
    assert any("Imported 'mine'" in s.value for s in at.success)
    assert "mine" in Store(db).list_datasets()["name"].tolist()
    stored = at.dataframe[-1].value  # the stored datasets, their headers in words
    assert {"rows", "label column", "input columns", "created"} <= set(stored.columns) and "n_rows" not in stored


def test_upload_with_a_separate_test_file(db):
    at = page("1_Datasets.py").run()
    main = "message,team\n" + "\n".join(f"refund order {i},billing\napp crash {i},technical" for i in range(10))
    test = "message,team\n" + "\n".join(f"refund now {i},billing\ncrash again {i},technical" for i in range(5))
    at.file_uploader[0].set_value(("own.csv", main.encode(), "text/csv"))
    at.file_uploader(key="datasets.test_upload").set_value(("own_test.csv", test.encode(), "text/csv")).run()
    assert not at.exception and not at.error
    assert any("test 10 (your own split" in c.value for c in at.caption)
    at.button(key="datasets.import").click().run()
    from promptlab.data import stored_dataset

    ds = stored_dataset(Store(db), "own")
    assert ds.own_split and set(ds.split("test")["text"]) == {f"refund now {i}" for i in range(5)} | {
        f"crash again {i}" for i in range(5)}


def test_a_free_text_target_column_is_read_as_reference_answers(db):
    """The page preselects what the rows look like: a column of free text is reference answers, not labels."""
    at = page("1_Datasets.py").run()
    qa = "question,answer\n" + "\n".join(f"What is {i} plus {i}?,The sum is {2 * i}." for i in range(30))
    at.file_uploader[0].set_value(("qa.csv", qa.encode(), "text/csv")).run()
    assert not at.exception and not at.error
    assert at.radio(key="datasets.kind").value == "reference"
    assert at.selectbox(key="datasets.label_col").value == "answer"
    tickets = "message,team\n" + "\n".join(f"refund order {i},billing\napp crash {i},technical" for i in range(10))
    at.file_uploader[0].set_value(("tickets.csv", tickets.encode(), "text/csv")).run()
    assert at.radio(key="datasets.kind").value == "labels"


@pytest.mark.parametrize("name,content,needle", [
    ("empty.csv", b"", "empty"),
    ("one.csv", b"text,label\na,x\nb,x\nc,x\n", "same label"),
    ("bin.csv", bytes(range(256)) * 20, "binary"),
])
def test_bad_upload_shows_a_message_and_changes_nothing(db, name, content, needle):
    at = page("1_Datasets.py").run()
    before = len(Store(db).list_datasets())
    at.file_uploader[0].set_value((name, content, "text/csv")).run()
    assert not at.exception
    assert any(needle in e.value for e in at.error)
    assert len(Store(db).list_datasets()) == before


def _wait(at: AppTest, until, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        if until(at):
            return at
        time.sleep(0.3)
    raise AssertionError("timed out waiting for the page")


def test_manual_search_side_by_side(db):
    at = page("2_Prompts_and_proposers.py").run()
    assert not at.exception
    # it starts from the prompt a run starts from (planning's), and a second one
    assert tuple(at.text_area(key=f"manual.text.{i}").value for i in (0, 1)) == planning.starting_prompts("labels")
    assert at.text_area(key="manual.text.0").value == planning.DEFAULT_BASELINES["labels"]
    at.selectbox[1].set_value("fake-target").run()  # target
    buttons = [b for b in at.button if b.label == "Evaluate side by side"]
    buttons[0].click().run()
    assert not at.exception
    _wait(at, lambda a: any("95% CI" in str(df.value.columns.tolist()) for df in a.dataframe))
    assert not at.exception
    assert any("Examples where the prompts disagree" in m.value for m in at.markdown)
    assert not snake_headers(at)  # example_idx reads 'example'; the configured models' api base in words


def _run_form(at: AppTest, target: str, rounds: int, strategy: str | None = None) -> AppTest:
    """The Runs page's short form (and its rounds, under Advanced): the fake proposer, no budget cap."""
    at.selectbox(key="runs.target").set_value(target)
    at.multiselect(key="runs.proposers").set_value(["fake-prop"])
    if strategy:
        at.selectbox(key="runs.strategy").set_value(strategy)
    at.number_input(key="runs.rounds").set_value(rounds)
    at.number_input(key="runs.budget").set_value(None)  # cleared: no limit
    return at


def test_start_a_run_with_fake_models_and_see_it_finish(db):
    at = page("3_Runs.py").run()
    assert not at.exception
    _run_form(at, "fake-target", 2).run()
    assert any("Projected:" in i.value for i in at.info)
    at.button(key="runs.start").click().run()
    assert not at.exception
    store = Store(db)
    _wait(at, lambda a: store.list_runs()["status"].iloc[0] == "finished", timeout=120)
    assert not at.exception
    at.run()
    assert list(at.dataframe[-1].value.columns) == ["id", "kind", "dataset", "status", "created", "updated"]

    res = page("4_Results.py").run()
    assert not res.exception
    assert any("Score trajectories" in h.value for h in res.subheader)
    assert len(res.get("plotly_chart")) >= 2
    # the status in words, and every table with its columns in words (no raw snake_case header)
    assert any(c.value.startswith("Status: **finished") and "(no errors)" not in c.value for c in res.caption)
    raw = {str(c) for d in res.dataframe for c in d.value.columns if "_" in str(c)}
    assert not raw, raw
    _proposals_are_shown_as_sent(res, store, store.list_runs()["id"].iloc[0])
    assert any(c.value.startswith("Cost per call (test)") for c in res.caption)  # the result card's cost
    assert res.radio(key="results.cost_axis").value == "tokens_in"  # score against cost, Pareto front drawn
    res.button(key="results.trajectories.render").click().run()
    assert not res.exception
    assert any(b.label == "Download PNG" for b in res.get("download_button"))

    # the prompt leaves as code, and is scored again elsewhere by a worker (here: its own data, from the cache)
    labels = {b.label for b in res.get("download_button")}
    assert {"Text", "Chat messages (JSON)", "Python script (litellm)", "promptfoo folder (zip)"} <= labels
    res.selectbox(key="results.elsewhere.split").set_value("val")
    res.button(key="results.elsewhere.go").click().run()
    assert not res.exception
    _wait(res, lambda a: any("on support_tickets (val" in m.value for m in a.success), timeout=60)
    line = next(m.value for m in res.success if "on support_tickets (val" in m.value)
    assert "95% CI" in line and "with fake-target" in line and "0 new calls" in line

    # prompts x models: the run's result scored by two models, in a worker, as a heatmap with the best marked
    charts_before = len(res.get("plotly_chart"))
    res.multiselect(key="results.matrix.models").set_value(["fake-target", "fake-prop"]).run()
    res.button(key="results.matrix.go").click().run()
    assert not res.exception
    _wait(res, lambda a: len(a.get("plotly_chart")) > charts_before, timeout=60)
    assert any(c.value.startswith("best for fake-target:") for c in res.caption)


def test_the_runs_page_refuses_a_budget_of_0_and_reads_an_empty_box_as_no_limit(db):
    """One meaning of 0 with `promptlab optimize --budget 0` (tests/test_plan.py): refused, with the same words."""
    at = page("3_Runs.py").run()
    assert at.number_input(key="runs.budget").value == 600  # the default, in a box that can be cleared
    _run_form(at, "fake-target", 1).run()  # cleared
    assert any("Projected:" in i.value and "capped by the budget" not in i.value for i in at.info)
    assert not at.warning and any(b.key == "runs.start" for b in at.button)
    at.number_input(key="runs.budget").set_value(0).run()
    assert not at.exception
    assert any(w.value.startswith("The budget of 0 target requests would run nothing") for w in at.warning)
    assert not any(b.key == "runs.start" for b in at.button)
    at.number_input(key="runs.budget").set_value(300).run()
    assert any("capped by the budget at 300" in i.value for i in at.info)


def _proposals_are_shown_as_sent(res: AppTest, store, run_id: str) -> None:
    """For a round picked on the Results page, each proposer call's exact meta-prompt and reply, in an expander."""
    calls = results.proposals(store, run_id)
    assert calls and any("What each proposer was sent" in h.value for h in res.subheader)
    first = calls[0]["round"]
    res.selectbox(key=f"results.proposals.round.{run_id}").set_value(first).run()
    assert not res.exception
    mine = results.proposals(store, run_id, first)
    labels = [e.label for e in res.expander]
    assert all(report.call_line(c) in labels for c in mine)
    shown = {c.value.rstrip("\n") for c in res.code}  # st.code drops a final newline
    assert all(c["meta_prompt"].rstrip("\n") in shown and c["reply"].rstrip("\n") in shown for c in mine)


def test_results_scores_the_picked_prompt_in_a_worker_and_shows_it_when_done(tmp_path, monkeypatch):
    """The Results page never calls a model while it renders: the picked prompt's val replies that are not cached
    (here one failed during the run, so it is asked again) come from a worker, and the page shows them when done."""
    flaky, back, release = {}, threading.Event(), threading.Event()

    def flaky_target(messages, params):
        if flaky.get("text") and flaky["text"] in messages[-1]["content"]:
            if not back.is_set():
                return RuntimeError("the endpoint is down")  # not transient: recorded as a failed call
            release.wait(30)
        return target_reply(messages, params)

    db = fake_models_db(tmp_path / "worker.duckdb", monkeypatch, flaky_target=flaky_target)
    at = page("3_Runs.py").run()
    flaky["text"] = stored_dataset(Store(db), "support_tickets").split("val")["text"].iloc[0]
    _run_form(at, "flaky-target", 1, "arena").run()
    at.button(key="runs.start").click().run()
    store = Store(db)
    _wait(at, lambda a: store.list_runs()["status"].iloc[0] == "finished", timeout=120)

    back.set()
    try:
        res = page("4_Results.py").run()
        assert not res.exception
        assert not any("Errors on val" in m.value for m in res.markdown)  # the render did not wait for the model
        assert any("new calls" in bar.proto.text for bar in res.get("progress"))
    finally:
        release.set()
    _wait(res, lambda a: any("Errors on val" in m.value for m in a.markdown), timeout=60)
    assert not res.exception
    assert any("calls were not cached and were made now" in c.value for c in res.caption)
    # shown once, then let go: the next view scores again, all from the cache now (the failed call was asked again)
    _wait(res, lambda a: any("Errors on val" in m.value for m in a.markdown), timeout=60)
    assert not any("calls were not cached" in c.value for c in res.caption)


def test_start_a_chained_run_from_the_runs_page_and_read_it_on_results(db):
    """arena,fewshot chosen in the dashboard: both stages run, few-shot candidates show on Results."""
    at = page("3_Runs.py").run()
    _run_form(at, "fake-target", 1, "arena,fewshot").run()
    assert not at.exception
    at.text_input(key="runs.floor.support_tickets").set_value("precision:billing")
    at.number_input(key="runs.floor_at.support_tickets").set_value(0.1).run()
    assert at.multiselect(key="runs.methods").value == ["random", "stratified", "bootstrapped", "similar"]
    at.multiselect(key="runs.methods").set_value(["stratified", "similar"])
    at.selectbox(key="runs.demo_format").set_value("search").run()
    assert any("Projected:" in i.value for i in at.info)
    at.button(key="runs.start").click().run()
    assert not at.exception
    store = Store(db)
    _wait(at, lambda a: store.list_runs()["status"].iloc[0] == "finished", timeout=120)
    run_id = store.list_runs()["id"].iloc[0]
    config = store.run_row(run_id)["config"]
    assert config["strategy"] == "arena,fewshot" and config["strategy_params"]["methods"] == ["stratified", "similar"]
    assert config["metric"] == "accuracy; precision:billing>=0.1"
    kinds = [s["kind"] for s in store.steps(run_id)]
    assert kinds.count("stage_started") == 2
    proposers = set(store.candidates(run_id)["proposer"])
    assert proposers & {"fewshot/stratified", "fewshot/similar"}

    res = page("4_Results.py").run()
    assert not res.exception
    assert len(res.get("plotly_chart")) >= 2


def test_start_a_study_from_the_runs_page_and_read_its_answer_on_results(db):
    store = Store(db)
    store.save_model("fake-prop-2", make_spec(fakes.script("pages-prop-2", proposer_reply), name="fake-prop-2").to_record())
    at = page("3_Runs.py").run()
    at.selectbox(key="runs.target").set_value("fake-target")
    at.multiselect(key="runs.proposers").set_value(["fake-prop"]).run()
    at.multiselect(key="study.targets").set_value(["fake-target"])
    at.multiselect(key="study.proposers").set_value(["fake-prop", "fake-prop-2"])
    at.number_input(key="study.seeds").set_value(2)
    at.number_input(key="study.rounds").set_value(1)
    at.run()
    assert any("4 runs of up to" in i.value for i in at.info)
    assert any("and 2 seeds, a gain over the baseline under ~" in c.value for c in at.caption)  # power, up front
    at.button(key="study.start").click().run()
    assert not at.exception
    _wait(at, lambda a: len(store.list_studies()) == 1 and int(store.list_studies()["finished"].iloc[0]) == 4, timeout=180)
    members = store.study_members(store.list_studies()["id"].iloc[0])
    assert set(members["status"]) == {"finished"} and len(members) == 4

    res = page("4_Results.py").run()
    assert not res.exception
    assert any("Studies" in h.value for h in res.subheader)
    _wait(res, lambda a: any("For fake-target" in i.value for i in a.info))  # analysed in a worker, then shown
    assert any("For fake-target" in i.value for i in res.info)  # the one-line reading
    assert any(c.key and c.key.startswith("results.study.") for c in res.get("plotly_chart")) or len(res.get("plotly_chart")) >= 3


def test_results_of_a_run_with_nothing_scored_yet_say_so(db):
    """A run stopped before its baseline was scored: the page says what to do instead of failing on an empty board."""
    from promptlab import planning, runs
    from promptlab.data import import_dataset

    store = Store(db)
    import_dataset(store, ROOT / "data" / "support_tickets.csv")
    plan = planning.plan(store, planning.RunRequest("support_tickets", "fake-target", ("fake-prop",), strategy="arena"))
    runs.create_run(store, plan.config)
    runs.mark_dead_runs(store)  # never executed: interrupted, with no candidate
    res = page("4_Results.py").run()
    assert not res.exception
    assert any("No prompt of this run has been scored yet" in i.value for i in res.info), [i.value for i in res.info]


def test_a_cost_ceiling_on_the_runs_page_is_stored_and_a_bad_one_explained(db):
    at = page("3_Runs.py").run()
    at.selectbox(key="runs.target").set_value("fake-target")
    at.multiselect(key="runs.proposers").set_value(["fake-prop"])
    at.text_input(key="runs.ceilings").set_value("tokens=>300").run()
    assert not at.exception and any("MEASURE<=VALUE" in e.value for e in at.error)
    at.text_input(key="runs.ceilings").set_value("tokens<=300, latency<=2").run()
    at.checkbox(key="runs.prefer_score").check().run()
    assert not at.exception and not at.error
    at.button(key="runs.start").click().run()
    store = Store(db)
    _wait(at, lambda a: store.list_runs()["status"].iloc[0] == "finished", timeout=120)
    config = store.run_row(store.list_runs()["id"].iloc[0])["config"]
    assert config["cost"] == {"ceilings": {"tokens": 300.0, "latency": 2.0}, "prefer": "score"}


def test_the_best_prompt_for_each_model_from_the_runs_page_read_on_results(tmp_path, monkeypatch):
    db = fake_models_db(tmp_path / "group.duckdb", monkeypatch, other_target=lambda m, p: "billing")
    at = page("3_Runs.py").run()
    _run_form(at, "fake-target", 1, "arena")
    at.multiselect(key="runs.more_targets").set_value(["other-target"])
    at.run()
    assert any("One search for each of 2 models" in i.value for i in at.info)
    at.button(key="runs.start").click().run()
    assert not at.exception
    store = Store(db)
    _wait(at, lambda a: len(store.list_studies(groups=True)) and
          store.list_studies(groups=True)["finished"].iloc[0] == 2, timeout=120)
    res = page("4_Results.py").run()
    _wait(res, lambda a: any("best for fake-target" in m.value for m in a.markdown), timeout=60)  # the matrix, read
    assert not res.exception
    frames = [d.value for d in res.dataframe if "model" in d.value.columns and "gain" in d.value.columns]
    assert frames and frames[0]["model"].tolist() == ["fake-target", "other-target"]
    assert any("best for fake-target" in m.value for m in res.markdown)
