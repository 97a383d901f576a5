"""planning.plan: a RunRequest by name resolved into a checked RunConfig, the one call `promptlab optimize` and the
Runs page make; bad names fail with the same clear line through either."""
import json
import re

import pytest

import fakes
from promptlab import planning
from promptlab.cli import build_parser, main, optimize
from promptlab.data import import_dataset
from promptlab.errors import PromptlabError
from promptlab.prompt import PromptTemplate
from promptlab.scoring.objective import JudgeSettings

TARGET = fakes.script("plan-target", lambda m, p: "positive")
PROPOSER = fakes.script("plan-prop", lambda m, p: "<prompt>Label it: {labels}.</prompt>")


@pytest.fixture
def tiny(store, tiny_csv):
    return import_dataset(store, tiny_csv)[0]


# (what the request changes, the same through the CLI's flags, what the one error line says)
BAD = [
    ({"dataset": "nope"}, ["--dataset", "nope"], "no dataset named 'nope'"),
    ({"target": "nope"}, ["--target", "nope"], "unknown model 'nope'"),
    ({"target": "local/nope"}, ["--target", "local/nope"], "unknown local model 'nope'"),
    ({"proposers": (PROPOSER, "nope")}, ["--proposers", f"{PROPOSER},nope"], "unknown model 'nope'"),
    ({"settings": {"critic": "nope"}}, ["--critic", "nope"], "unknown model 'nope'"),
    ({"settings": {"gate": "magic"}}, ["--gate", "magic"], "gate must be race or ci or mean or off"),
    ({"strategy": "magic"}, ["--strategy", "magic"], "unknown strategy 'magic'"),
    ({"strategy": "arena", "proposers": ()}, ["--strategy", "arena", "--proposers", ""], "needs proposer models"),
    ({"rounds": 0}, ["--rounds", "0"], "--rounds must be at least 1"),
    ({"metric": "recall:happy"}, ["--metric", "recall:happy"], "unknown label 'happy'"),
    ({"metric": "judge"}, ["--metric", "judge"], "not by a judge"),
]


@pytest.mark.parametrize("change,flags,needle", BAD, ids=[b[2] for b in BAD])
def test_bad_names_fail_with_the_same_line_through_plan_and_the_cli(store, tiny, change, flags, needle, capsys):
    request = planning.RunRequest(**{"dataset": tiny.name, "target": TARGET, "proposers": (PROPOSER,), **change})
    with pytest.raises(PromptlabError, match=re.escape(needle)) as exc:
        planning.plan(store, request)
    argv = {"--dataset": tiny.name, "--target": TARGET, "--proposers": PROPOSER} | dict(zip(flags[::2], flags[1::2]))
    assert main(["optimize", *[x for pair in argv.items() for x in pair], "--db", str(store.path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {exc.value}"


def test_a_budget_too_small_is_a_problem_named_the_way_the_caller_names_it(store, tiny, capsys):
    request = planning.RunRequest(tiny.name, TARGET, (PROPOSER,), budget=5)
    assert planning.plan(store, request).problem.startswith("the budget of 5 target requests cannot even score the baseline")
    problem = planning.plan(store, request, budget_name="--budget").problem
    assert problem.startswith("--budget of 5 target requests")
    assert main(["optimize", "--dataset", tiny.name, "--target", TARGET, "--proposers", PROPOSER, "--budget", "5",
                 "--db", str(store.path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {problem}" and store.list_runs().empty



def test_a_budget_of_0_is_refused_through_plan_and_the_cli_never_read_as_no_limit(store, tiny, capsys):
    """One meaning of 0 (the Runs page shows the same problem, tests/test_pages.py): no budget is None."""
    problem = planning.plan(store, planning.RunRequest(tiny.name, TARGET, (PROPOSER,), budget=0), budget_name="--budget").problem
    assert problem.startswith("--budget of 0 target requests would run nothing: give at least ")
    assert problem.endswith("or no budget at all for no limit")
    assert main(["optimize", "--dataset", tiny.name, "--target", TARGET, "--proposers", PROPOSER, "--budget", "0",
                 "--db", str(store.path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {problem}" and store.list_runs().empty
    assert planning.plan(store, planning.RunRequest(tiny.name, TARGET, (PROPOSER,), budget=None)).problem is None


def optimize_args(argv):
    return build_parser().parse_args(["optimize", *argv])


def _stored_config(store, argv, monkeypatch) -> dict:
    """The config `promptlab optimize` stores for these flags (the run is created, not executed)."""
    monkeypatch.setattr(optimize, "follow", lambda store, run_id, args: 0)
    assert main(["optimize", *argv, "--db", str(store.path)]) == 0
    return store.run_row(store.list_runs()["id"].iloc[0])["config"]


def test_the_cli_and_a_direct_plan_store_the_same_config(store, tiny, tmp_path, monkeypatch):
    critic = fakes.script("plan-critic", lambda m, p: "too vague")
    argv = ["--dataset", tiny.name, "--target", TARGET, "--proposers", f"{PROPOSER}, {PROPOSER}2", "--seed", "3",
            "--rounds", "2", "--budget", "900", "--patience", "1", "--max-proposer-calls", "10",
            "--metric", "recall:positive", "--constraint", "precision:positive>=0.4", "--baseline", r"Say {labels}.\nNow",
            "--task", r"Label\tit", "--critic", critic, "--gate", "mean", "--demos", "2", "--review"]
    request = planning.RunRequest(
        tiny.name, TARGET, (PROPOSER, f"{PROPOSER}2"), metric="recall:positive; precision:positive>=0.4", seed=3,
        rounds=2, budget=900, patience=1, max_proposer_calls=10, settings={"critic": critic, "gate": "mean", "demos": "2"},
        baselines=(PromptTemplate.from_text("Say {labels}.\nNow"),), task="Label\tit", review=True)
    planned = planning.plan(store, request)
    assert optimize.request_from(optimize_args(argv)) == request
    assert _stored_config(store, argv, monkeypatch) == json.loads(json.dumps(planned.config.to_record()))
    assert planned.config.strategy_params["critic"]["model"] == critic and planned.config.review == "rounds"


def test_a_judge_asked_for_by_name_is_completed_from_the_datasets_own(store, tmp_path, monkeypatch):
    qa = tmp_path / "qa.csv"
    qa.write_text("question,answer\n" + "".join(f"what is {i}+{i},{2 * i}\n" for i in range(30)), encoding="utf-8")
    judge = fakes.script("plan-judge", lambda m, p: "Score: 4")
    assert main(["datasets", "import", str(qa), "--kind", "reference", "--scorer", "judge", "--judge", judge,
                 "--rubric", "Right is 5.", "--judge-scale", "1-5", "--db", str(store.path)]) == 0
    argv = ["--dataset", "qa", "--target", TARGET, "--proposers", PROPOSER, "--metric", "judge", "--judge-scale", "0-10",
            "--rubric", r"Short\nand right."]
    request = planning.RunRequest("qa", TARGET, (PROPOSER,), metric="judge",
                              judge=JudgeSettings(None, "Short\nand right.", (0, 10)))
    planned = planning.plan(store, request)
    assert planned.config.judge["model"]["model"] == judge  # the dataset's judge model, the run's rubric and scale
    assert (planned.config.judge["rubric"], planned.config.judge["lo"], planned.config.judge["hi"]) == \
        ("Short\nand right.", 0, 10)
    assert optimize.request_from(optimize_args(argv)) == request
    assert _stored_config(store, argv, monkeypatch) == json.loads(json.dumps(planned.config.to_record()))



def test_runs_stored_under_the_old_names_still_read_and_are_found_again(store, tiny):
    """One name per concept in code (arena, candidates, max_target_requests, review "unrecorded"); the record keeps
    the names it always had, so a run stored before reads the same, resumes, and is found again by its config."""
    from promptlab import runs
    from promptlab.models import make_spec

    cfg = planning.make_config(tiny, make_spec(TARGET), [make_spec(PROPOSER)], strategy="arena", rounds=1, budget=40,
                               arena=1, candidates=3, confirm=0)
    rec = cfg.to_record()
    # the stored names: what every run stored before this release has
    assert rec["strategy_params"]["arena_k"] == 1 and rec["strategy_params"]["candidates_per_proposer"] == 3
    assert rec["budget"]["max_target_calls"] == 40 and "arena" not in rec["strategy_params"]
    back = planning.RunConfig.from_record(rec)
    assert back == cfg and back.strategy_params["arena"] == 1 and back.budget["max_target_requests"] == 40
    strategy, ctx = planning.build(store, back, "check")
    assert strategy.arena == 1 and strategy.candidates == 3 and ctx.budget.max_target_requests == 40
    # an old record (no review field, its settings in another key order) is the same run
    old = dict(rec, strategy_params=dict(reversed(list(rec["strategy_params"].items()))))
    old.pop("review")
    assert planning.RunConfig.from_record(old).review == "unrecorded"
    run_id = runs.create_run(store, planning.RunConfig.from_record(rec))
    runs.execute(store, run_id)
    assert store.finished_run_with_config(cfg.to_record()) == run_id
    assert store.finished_run_with_config(dict(rec, strategy_params=old["strategy_params"])) == run_id


def test_records_stored_before_the_names_were_unified_are_the_records_stored_now(store, tiny):
    """Frozen records of d9bc65f (tests/data/run_configs_d9bc65f.json): today's make_config with the new names
    stores the same records but for what config version 4 changed (as values; only the key order of the settings
    moved), they read back to the same configs, and a stored record writes back the same record and hashes the same
    (group.create_group sorts keys), so old runs, benchmark runs and groups are all found again."""
    import hashlib
    from pathlib import Path

    from promptlab.models import make_spec

    frozen = json.loads((Path(__file__).parent / "data" / "run_configs_d9bc65f.json").read_text(encoding="utf-8"))
    t, p = make_spec("fake/plan-target"), [make_spec("fake/plan-prop")]
    now = {
        "arena": planning.make_config(tiny, t, p, strategy="arena", rounds=1, budget=40, arena=1, candidates=3,
                                      confirm=0),
        "auto": planning.make_config(tiny, t, p, rounds=2, budget=300),
        "gradient": planning.make_config(tiny, t, p, strategy="gradient", rounds=2, budget=200, candidates=2),
    }
    for name, cfg in now.items():
        assert tiny.id == frozen[name]["dataset_id"]
        # config version 4 (issue 31) changed these and nothing else: the decision's new settings and its share held
        # back, and the default meta-prompt's wording (never copy an example); the names are those stored before
        v4 = {"harm_margin": 0.02, "simplify_margin": 0.05} | ({"confirm": 0.5} if name != "arena" else {})
        expected = dict(frozen[name], version=4, meta_prompt=cfg.meta_prompt,
                        strategy_params=frozen[name]["strategy_params"] | v4)
        assert cfg.to_record() == expected, name
        assert planning.RunConfig.from_record(expected) == cfg, name
        old = planning.RunConfig.from_record(frozen[name])  # a stored v3 record reads back and writes the same record
        assert old.version == 3 and old.to_record() == frozen[name], name
        digest = [hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest() for r in (old.to_record(),
                                                                                                frozen[name])]
        assert digest[0] == digest[1], name
    with pytest.raises(PromptlabError, match="budget_calls is now budget"):
        planning.make_config(tiny, t, p, budget_calls=300)
