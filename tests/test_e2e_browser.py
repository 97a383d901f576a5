"""End to end in a real browser: Debian's chromium driven by Playwright against `streamlit run app.py`.

Upload a CSV, start a one-round arena run on the real local models, wait for the finished leaderboard
and the family chart, and save screenshots to tests/artifacts/ (look at them).
"""
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

from conftest import DEMO, ROOT
from promptlab.serve import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM,
                             args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])


def _import_upload(page, url: str, csv_path, name: str, preview: str, kind: str | None = None) -> None:
    """Upload a file on the Datasets page (choosing what each row carries, if given) and import it."""
    page.goto(url + "/Datasets")
    page.wait_for_selector("text=Upload a dataset", timeout=90_000)
    page.locator("input[type=file]").first.set_input_files(str(csv_path))
    if kind:
        page.get_by_text(kind, exact=True).click()
    page.wait_for_selector(f"text={preview}", timeout=60_000)
    page.get_by_role("button", name="Import dataset").click()
    page.wait_for_selector(f"text=Imported '{name}'", timeout=60_000)


def _choose(page, box: str, option: str) -> None:
    """Pick `option` in the first selectbox labelled `box` (the run's; the study's is further down).

    A rerun that lands between the click and the pick (the page reruns after every edited field) closes
    the open list, so the list is opened again until the option shows, as a user would click again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(4):
        page.wait_for_timeout(800)
        page.get_by_role("combobox", name=box).first.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    else:
        pytest.fail(f"the {box!r} list never showed {option!r}")
    page.wait_for_timeout(1000)


def _start_run(page, minibatch: int, review: bool = False, strategy: str | None = None) -> None:
    """A one-round run from the Runs page, on the dataset the session has selected (auto, unless `strategy`)."""
    page.get_by_role("link", name="Runs").click()
    page.wait_for_selector("text=Start a run", timeout=60_000)
    page.wait_for_timeout(1500)
    rounds = page.get_by_label("Rounds", exact=True)
    if not rounds.is_visible():  # rounds, minibatch and review wait under "Advanced"
        page.locator("summary:has-text('Advanced')").click()
    rounds.fill("1")
    rounds.press("Enter")
    if strategy:
        _choose(page, "Strategy", strategy)
    box = page.get_by_role("spinbutton", name="Minibatch size")
    for _ in range(40):  # after a strategy change the page reruns: its old settings linger until the new ones show
        if box.count() == 1:
            break
        page.wait_for_timeout(500)
    box.fill(str(minibatch))
    box.press("Enter")
    if review:
        page.get_by_text("Pause after each round for my review").click()
    page.wait_for_selector("text=Projected:", timeout=60_000)
    page.get_by_role("button", name="Start run").click()


def _stub_data(db, sub, srv, models) -> str:
    """A sentiment dataset in `db` (files under `sub`) and `models` served by the stub `srv`, added by the CLI."""
    from conftest import sentiment_dataset
    from promptlab.store import Store

    sub.mkdir(exist_ok=True)
    store = Store(db)
    name = sentiment_dataset(store, sub, neutral=20).name
    store.close()
    for m in models:
        subprocess.run([sys.executable, "-m", "promptlab", "models", "add", m, "--model", f"openai/{m}", "--api-base",
                        srv.base, "--db", str(db)], cwd=ROOT, check=True, capture_output=True)
    return name


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    port = free_port()
    env = {**os.environ, "PROMPTLAB_DB": str(tmp / "e2e.duckdb")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start: " + proc.stdout.read().decode()[-2000:])
    yield url, tmp
    proc.terminate()
    try:
        out = proc.communicate(timeout=20)[0].decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        out = ""
    (ARTIFACTS / "streamlit-server.log").write_text(out)


def test_upload_run_and_share_the_chart(server):
    from playwright.sync_api import expect, sync_playwright

    url, tmp = server
    ARTIFACTS.mkdir(exist_ok=True)
    demo = pd.read_csv(DEMO)
    small = pd.concat([demo[demo["label"] == lab].head(9) for lab in ("billing", "technical", "account")])
    csv_path = tmp / "my_tickets.csv"
    small.sample(frac=1, random_state=1).to_csv(csv_path, index=False)

    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        _import_upload(page, url, csv_path, "my_tickets", "Label distribution")
        page.screenshot(path=str(ARTIFACTS / "1-datasets.png"))

        # One name per page in the sidebar (the home page is "promptlab", not the file's name), and the Runs page
        # opens on its short form: the rest waits under "Advanced".
        page.get_by_role("link", name="Runs").click()
        page.wait_for_selector("text=Start a run", timeout=60_000)
        page.wait_for_selector("text=Projected:", timeout=60_000)
        nav = [t.strip() for t in page.locator("[data-testid='stSidebar'] a").all_inner_texts()]
        assert nav == ["promptlab", "Datasets", "Prompts and proposers", "Runs", "Results"], nav
        assert not page.get_by_label("Rounds", exact=True).is_visible()
        page.screenshot(path=str(ARTIFACTS / "1b-runs-short-form.png"))

        # The same browser session keeps the imported dataset selected on the Runs page.
        _start_run(page, minibatch=6)
        page.wait_for_selector("[data-testid='stMetricValue']:has-text('finished')", timeout=600_000)
        page.wait_for_timeout(2500)
        page.screenshot(path=str(ARTIFACTS / "2-runs-finished.png"), full_page=True)
        assert page.locator("text=Traceback").count() == 0

        page.get_by_role("link", name="Results").click()
        page.wait_for_selector("text=Score trajectories per proposer family", timeout=90_000)
        expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
        page.wait_for_selector("text=Per-proposer attribution", timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(ARTIFACTS / "3-results.png"))
        page.get_by_text("Families: same-family versus cross-family proposers").scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "4-results-families.png"))
        assert page.locator("text=Traceback").count() == 0
        legend = page.locator(".js-plotly-plot").first.locator("text.legendtext").evaluate_all(
            "nodes => nodes.map(n => n.textContent)")
        assert "baseline (val)" in legend and any("candidates" in t or "gated" in t for t in legend), legend
        # what a call costs: the result card's line, and score against cost with its Pareto front
        expect(page.get_by_text("Cost per call (test)").first).to_be_visible(timeout=30_000)
        page.locator("summary:has-text('Score against cost per call')").click()
        page.wait_for_selector("text=Pareto front", timeout=60_000)
        page.locator(".js-plotly-plot").filter(has_text="Pareto front").first.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "4b-results-cost.png"))
        assert page.locator("text=Traceback").count() == 0
        browser.close()


def test_the_best_prompt_for_each_model_on_results(server):
    """A group made from the CLI (two targets behind a real OpenAI-compatible server on 127.0.0.1): Results shows one
    row per model and the prompts x models matrix with the diagonal marked."""
    from playwright.sync_api import expect, sync_playwright

    from openai_stub import Stub

    url, tmp = server
    db = tmp / "e2e.duckdb"

    def reply(body):
        system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
        last = body["messages"][-1]["content"]
        if "prompt engineer" in last:
            return "<prompt>Use MAGIC: label the sentiment as {labels}.</prompt><prompt>Which label fits?</prompt>"
        truth = "positive" if "great" in last else ("negative" if "awful" in last else "neutral")
        return truth if "MAGIC" in system and body["model"] == "stub-a" else "positive"

    with Stub(reply, delay_s=0.01) as srv:
        cli = [sys.executable, "-m", "promptlab"]
        name = _stub_data(db, tmp / "group", srv, ("stub-a", "stub-b", "stub-writer"))
        done = subprocess.run(cli + ["optimize", "--dataset", name, "--target", "stub-a,stub-b", "--proposers",
                                     "stub-writer", "--strategy", "arena", "--rounds", "2", "--minibatch", "8",
                                     "--db", str(db)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "best for stub-a" in done.stdout
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url + "/Results")
        page.wait_for_selector("text=The best prompt for each model", timeout=90_000)
        page.get_by_text("The best prompt for each model", exact=True).scroll_into_view_if_needed()
        expect(page.get_by_text("Each model's prompt on every model").first).to_be_visible(timeout=90_000)
        page.get_by_text("The best prompt for each model", exact=True).scroll_into_view_if_needed()
        page.wait_for_timeout(2000)
        page.screenshot(path=str(ARTIFACTS / "4c-results-each-model.png"))
        page.locator(".js-plotly-plot").filter(has_text="Each model's prompt on every model").first.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "4d-results-each-model-matrix.png"))
        assert page.locator("text=best for stub-a").count() >= 1
        assert page.locator("text=Traceback").count() == 0
        browser.close()


def test_a_cli_run_while_two_browser_sessions_watch(server):
    """Concurrent use: a CLI run writes the database while two browser sessions (separate contexts) keep
    reloading the Runs and Results pages. No lock error, traceback or exception may reach either."""
    import json

    from playwright.sync_api import sync_playwright

    from openai_stub import Stub

    url, tmp = server
    db = tmp / "e2e.duckdb"

    def reply(body):
        last = body["messages"][-1]["content"]
        if "prompt engineer" in last:
            return "<prompt>Label the sentiment: {labels}.</prompt><prompt>Which label fits?</prompt>"
        return "positive" if "great" in last else ("negative" if "awful" in last else "neutral")

    with Stub(reply, delay_s=0.05) as srv:
        cli = [sys.executable, "-m", "promptlab"]
        name = _stub_data(db, tmp / "concurrency", srv, ("stub-target", "stub-prop"))
        run = subprocess.Popen(cli + ["optimize", "--dataset", name, "--target", "stub-target", "--proposers", "stub-prop",
                                      "--rounds", "4", "--minibatch", "8", "--json", "--db", str(db)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        bad = ("Could not set lock", "Conflicting lock", "stayed locked", "Traceback", "database is locked")
        seen, views = [], 0
        with sync_playwright() as p:
            browser = _launch(p)
            sessions = [browser.new_context().new_page() for _ in range(2)]
            for page, path in zip(sessions, ("/Runs", "/Results")):
                page.goto(url + path)
            deadline = time.time() + 300
            while run.poll() is None and time.time() < deadline:
                for page, path in zip(sessions, ("/Runs", "/Results")):
                    page.wait_for_timeout(1500)
                    text = page.inner_text("body")
                    seen += [b for b in bad if b in text]
                    assert page.locator("[data-testid='stException']").count() == 0
                    views += 1
                    page.reload()
            sessions[0].goto(url + "/Runs")
            sessions[0].wait_for_selector("text=Start a run", timeout=60_000)
            sessions[0].wait_for_timeout(2000)
            sessions[0].screenshot(path=str(ARTIFACTS / "5-runs-during-cli.png"), full_page=True)
            browser.close()
        out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "finished"
    assert not seen, seen
    assert views >= 4


def test_semi_automatic_round_and_keyboard_grading_on_reference_answers(server):
    """A reference-answer dataset, real local models: the run pauses after round 1, the analyst discards a
    candidate and adds a prompt in the browser, continues; the chart marks the human picks. Then outputs are
    graded from the keyboard (the key '4'), one at a time."""
    from playwright.sync_api import expect, sync_playwright

    url, tmp = server
    ARTIFACTS.mkdir(exist_ok=True)
    qa = pd.read_csv(ROOT / "data" / "short_answers.csv").head(30)
    csv_path = tmp / "qa_small.csv"
    qa.to_csv(csv_path, index=False)
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        _import_upload(page, url, csv_path, "qa_small", "Reference answers:", kind="a reference answer")
        _start_run(page, minibatch=5, review=True, strategy="arena")
        page.wait_for_selector("text=Round 1 is waiting for your review", timeout=600_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "6-round-review.png"), full_page=True)
        assert page.locator("text=Traceback").count() == 0
        discard = page.get_by_role("button", name="Discard")
        if discard.count():
            discard.first.click()
            page.wait_for_selector("text=Decisions so far in this round", timeout=60_000)
        page.wait_for_timeout(1500)  # let the rerun after the decision settle before opening the expander
        box = page.get_by_placeholder("Write an instruction")
        for _ in range(3):
            if box.is_visible():
                break
            page.locator("summary:has-text('Add a prompt of your own')").click()
            page.wait_for_timeout(1000)
        box.fill("Reply with the answer only: a number or a name, nothing else.")
        page.get_by_role("button", name="Add to the history").click()
        page.wait_for_selector("[data-testid='stDataFrame']", timeout=60_000)
        page.wait_for_timeout(1000)
        page.get_by_role("button", name="Continue").click()
        page.wait_for_selector("[data-testid='stMetricValue']:has-text('finished')", timeout=600_000)
        page.get_by_role("link", name="Results").click()
        page.wait_for_selector("text=Human decisions in this run", timeout=90_000)
        expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(ARTIFACTS / "7-results-human-picks.png"))
        legend = page.locator(".js-plotly-plot").first.locator("text.legendtext").evaluate_all(
            "nodes => nodes.map(n => n.textContent)")
        assert any(t.startswith("human") for t in legend), legend
        assert page.locator("text=Traceback").count() == 0

        page.get_by_role("link", name="Prompts and proposers").click()
        try:
            page.wait_for_selector("text=Grade outputs by hand", timeout=90_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "debug-prompts.png"), full_page=True)
            raise
        outputs = page.get_by_role("spinbutton", name="Outputs")
        outputs.fill("3")
        outputs.press("Enter")
        page.get_by_role("button", name="Get outputs to grade").click()
        page.wait_for_selector("text=Output 1 of 3", timeout=300_000)
        page.evaluate("document.activeElement && document.activeElement.blur()")  # keys go to the page, not a field
        page.wait_for_timeout(2000)  # the grade buttons (whose shortcuts the keys are) render after the output
        page.keyboard.press("4")
        page.wait_for_selector("text=Output 2 of 3", timeout=60_000)
        page.wait_for_timeout(2000)
        page.keyboard.press("2")
        page.wait_for_selector("text=Output 3 of 3", timeout=60_000)
        page.get_by_text("Grade outputs by hand").scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "8-grading.png"), full_page=True)
        graded = page.locator("[data-testid='stMetric']:has-text('Graded (n)') [data-testid='stMetricValue']")
        expect(graded).to_have_text("2 / 3", timeout=30_000)
        assert page.locator("text=Traceback").count() == 0
        browser.close()
