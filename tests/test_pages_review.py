"""AppTest: the semi-automatic workflow in the dashboard on a labeled, a reference-answer and an unlabeled
dataset, manual grading from the grading panel, and the judge check (scripted fake models: logic only)."""
import pytest

from test_pages import _wait, fake_models_db, page
from test_review import judge_reply
from promptlab.store import Store

QA = [("What is 2 + 2?", "4"), ("What is 3 + 5?", "8"), ("Capital of France?", "Paris"), ("What is 10 - 3?", "7"),
      ("Capital of Italy?", "Rome"), ("What is 6 * 7?", "42"), ("Столица России?", "Москва"),
      ("Сколько будет 9 умножить на 7?", "63"), ("Capital of Spain?", "Madrid"), ("What is 12 / 4?", "3"),
      ("Capital of Japan?", "Tokyo"), ("What is 5 + 9?", "14")]


def qa_target(messages, params):
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    answer = dict(QA).get(messages[-1]["content"], "?")
    if "{" in system:  # a labels prompt on this data
        return "?"
    return answer if ("MAGIC" in system or "only" in system.lower()) else f"The answer is {answer}."


@pytest.fixture
def db(tmp_path, monkeypatch):
    return fake_models_db(tmp_path / "review.duckdb", monkeypatch, qa_target=qa_target, qa_judge=judge_reply)


def _import(kind: str, name: str):
    at = page("1_Datasets.py").run()
    header = "question,answer" if kind == "reference" else "question"
    rows = [f'"{q}","{a}"' if kind == "reference" else f'"{q}"' for q, a in QA * 2]
    at.file_uploader[0].set_value((f"{name}.csv", ("\n".join([header, *rows]) + "\n").encode(), "text/csv")).run()
    at.radio(key="datasets.kind").set_value(kind).run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    at.button(key="datasets.import").click().run()
    assert any(f"Imported '{name}'" in s.value for s in at.success)


def _start_review_run(dataset: str, target: str, metric: str | None = None) -> str:
    at = page("3_Runs.py").run()
    at.selectbox(key="runs.dataset").set_value(dataset).run()
    at.selectbox(key="runs.target").set_value(target)
    at.multiselect(key="runs.proposers").set_value(["fake-prop"])
    at.number_input(key="runs.rounds").set_value(2)
    at.number_input(key="runs.budget").set_value(None)
    at.number_input(key="runs.minibatch").set_value(4)
    if metric:
        at.text_input(key=f"runs.metric.{dataset}").set_value(metric)
    at.checkbox(key="runs.review").check().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    at.button(key="runs.start").click().run()
    return at


def _paused(store, round_):
    runs = store.list_runs()
    return len(runs) and runs["status"].iloc[0] == "paused" and \
        any(s["kind"] == "review_requested" and s["round"] == round_ for s in store.steps(runs["id"].iloc[0]))


def _review_both_rounds(at, store, edit_text: str):
    _wait(at, lambda a: _paused(store, 1), timeout=120)
    run_id = store.list_runs()["id"].iloc[0]
    at.run()
    assert any("Round 1 is waiting for your review" in h.value for h in at.subheader)
    steps = store.steps(run_id)
    pause = [s for s in steps if s["kind"] == "review_requested"][-1]
    cands = pause["candidate_ids"]
    assert cands
    at.button(key=f"rv.discard.{run_id}.1.{cands[-1]}").click().run()
    assert not at.exception
    assert any("discarded by analyst" in m.value for m in at.markdown)  # the card says what was decided
    at.text_area(key=f"rv.add.{run_id}.1.0").set_value("My own prompt, written in the review.")
    at.button(key=f"rv.add_save.{run_id}.1").click().run()
    assert at.text_area(key=f"rv.add.{run_id}.1.1").value == ""  # a fresh box: the prompt cannot be added twice
    at.text_area(key=f"rv.edit.{run_id}.1.{cands[0]}").set_value(edit_text)
    at.button(key=f"rv.edit_save.{run_id}.1.{cands[0]}").click().run()
    at.button(key=f"rv.rescore.{run_id}.1.{cands[0]}").click().run()
    _wait(at, lambda a: any(d["action"] == "rescore" for d in store.decisions(run_id)), timeout=60)
    at.run()
    assert any("Decisions so far" in m.value for m in at.markdown)
    at.button(key=f"rv.continue.{run_id}.1").click().run()
    _wait(at, lambda a: _paused(store, 2), timeout=120)
    at.run()
    at.button(key=f"rv.stop.{run_id}.2").click().run()
    _wait(at, lambda a: store.list_runs()["status"].iloc[0] == "finished", timeout=120)
    decided = [(s["action"], s["who"]) for s in store.steps(run_id) if s["kind"] == "decided"]
    for action in ("discard", "edit", "add", "rescore", "continue", "stop"):
        assert (action, "analyst") in decided
    human = store.candidates(run_id).query("proposer == 'human'")
    assert sorted(human["text"]) == sorted([edit_text, "My own prompt, written in the review."])
    return run_id


def _results_show_human_picks():
    res = page("4_Results.py").run()
    assert not res.exception
    assert any("Human decisions in this run" in c.value for c in res.caption)
    fig = res.get("plotly_chart")[0].proto.spec
    assert "discarded by the analyst" in fig


def test_semi_automatic_run_on_a_labeled_dataset(db):
    store = Store(db)
    at = _start_review_run("support_tickets", "fake-target")
    _review_both_rounds(at, store, "Use MAGIC, and route the message to one team: {labels}.")
    _results_show_human_picks()


def test_semi_automatic_run_on_a_reference_dataset(db):
    _import("reference", "qa")
    pr = page("2_Prompts_and_proposers.py").run()
    pr.selectbox[0].set_value("qa").run()
    assert not pr.exception
    scorer = next(s for s in pr.selectbox if s.label == "Scorer")
    scorer.set_value("exact").run()
    assert not pr.exception
    store = Store(db)
    assert store.dataset_row("qa")["scoring"] == {"metric": "exact"}
    at = _start_review_run("qa", "qa-target")
    assert store.run_row(store.list_runs()["id"].iloc[0])["config"]["metric"] == "exact"
    _review_both_rounds(at, store, "Answer with the answer only.")
    _results_show_human_picks()


def test_unlabeled_dataset_judge_run_and_grading_by_hand(db):
    _import("unlabeled", "open")
    pr = page("2_Prompts_and_proposers.py").run()
    pr.selectbox[0].set_value("open").run()
    pr.selectbox[1].set_value("qa-target").run()
    judge = next(s for s in pr.selectbox if s.label == "Judge model")
    judge.set_value("qa-judge").run()
    next(t for t in pr.text_area if t.label.startswith("Rubric")).set_value("Short answers are best.").run()
    assert not pr.exception
    store = Store(db)
    scoring = store.dataset_row("open")["scoring"]
    assert scoring["metric"] == "judge" and scoring["judge"]["rubric"] == "Short answers are best."

    # grade outputs by hand: one at a time, 1-5, with a note; the score shows with n and CI
    pr.text_area(key="grade.prompt").set_value("Answer with the answer only.")
    pr.number_input(key="grade.limit").set_value(4)
    pr.button(key="grade.load").click().run()
    _wait(pr, lambda a: any(m.label == "Graded (n)" for m in a.metric), timeout=60)
    for grade in ("5", "4", "5", "2"):
        note = [t for t in pr.text_input if t.key and t.key.startswith("grade.note.")]
        note[0].set_value("fine" if grade != "2" else "wrong")
        btn = next(b for b in pr.button if b.key and b.key.startswith(f"grade.btn.{grade}."))
        btn.click().run()
        assert not pr.exception
    assert any("All 4 outputs are graded" in s.value for s in pr.success)
    graded = next(m for m in pr.metric if m.label == "Graded (n)")
    assert graded.value == "4 / 4"
    assert next(m for m in pr.metric if m.label == "95% CI").value.startswith("[")
    grades = store.grades(store.dataset_row("open")["id"])
    assert sorted(grades["grade"].tolist()) == [2.0, 4.0, 5.0, 5.0] and "wrong" in grades["note"].tolist()
    assert grades["blind"].all()

    pr.selectbox(key="grade.judge").set_value("qa-judge")
    pr.text_area(key="grade.rubric").set_value("Short answers are best.")
    pr.button(key="grade.calibrate").click().run()
    _wait(pr, lambda a: any(m.label == "Cohen's kappa" for m in a.metric), timeout=60)
    assert any("agreement" in c.value and "on 4 outputs" in c.value for c in pr.caption)

    # and a semi-automatic run scored by the judge
    at = _start_review_run("open", "qa-target")
    _review_both_rounds(at, store, "Reply with the answer only, one word or number.")
    run_id = store.list_runs()["id"].iloc[0]
    assert store.run_row(run_id)["config"]["metric"] == "judge"
    assert store.run_call_counts(run_id)["judge"]["calls"] > 0
    _results_show_human_picks()


def test_visiting_runs_first_never_blanks_the_meta_prompt(db):
    """The Runs page only reads the meta-prompt setting; it used to store None there, which blanked the
    template on the Prompts page and stopped that page before its grading panel."""
    at = page("app.py").run()
    at.switch_page("pages/3_Runs.py").run()
    assert not at.exception
    at.switch_page("pages/2_Prompts_and_proposers.py").run()
    assert not at.exception
    assert at.text_area[0].value.startswith("You are an expert prompt engineer")
    assert any(h.value == "Grade outputs by hand" for h in at.subheader)


def test_opening_the_prompts_page_keeps_a_judge_set_from_the_cli(db, tmp_path):
    from promptlab.data import import_dataset

    path = tmp_path / "chats.csv"
    path.write_text("input\n" + "\n".join(q for q, _ in QA) + "\n", encoding="utf-8")
    store = Store(db)
    import_dataset(store, path, kind="unlabeled",
                   scoring={"metric": "judge", "judge": {"model": "fake/some-judge", "rubric": "Ten is best.", "lo": 1, "hi": 10}})
    before = store.dataset_row("chats")["scoring"]
    store.close()
    pr = page("2_Prompts_and_proposers.py").run()
    pr.selectbox[0].set_value("chats").run()
    assert not pr.exception and not pr.error
    assert next(s for s in pr.selectbox if s.label == "Judge model").value == "fake/some-judge"
    assert next(s for s in pr.selectbox if s.label == "Judge's scale").value == "1-10"
    assert Store(db).dataset_row("chats")["scoring"] == before


def test_a_new_run_is_shown_even_when_another_was_picked_in_the_session(db):
    """The run picker is a keyed widget: starting a run must switch it to the new run, or the review panel
    of a paused run would never appear in a session that had looked at another run."""
    store = Store(db)
    at = page("3_Runs.py").run()
    at.selectbox(key="runs.target").set_value("fake-target")
    at.multiselect(key="runs.proposers").set_value(["fake-prop"])
    at.number_input(key="runs.rounds").set_value(1)
    at.number_input(key="runs.budget").set_value(None)
    at.run()
    at.button(key="runs.start").click().run()
    _wait(at, lambda a: store.list_runs()["status"].iloc[0] == "finished", timeout=120)
    at.checkbox(key="runs.review").check().run()
    at.button(key="runs.start").click().run()
    _wait(at, lambda a: _paused(store, 1), timeout=120)
    at.run()
    assert at.selectbox(key="runs.pick").value == store.list_runs()["id"].iloc[0]
    assert any("Round 1 is waiting for your review" in h.value for h in at.subheader)
