"""The strategies by name: what `--strategy` and the Runs page accept, the settings each name takes (grouped by stage
for the Advanced section), and building a strategy object from a run's stored settings."""
from __future__ import annotations

from promptlab.errors import PromptlabError
from promptlab.optimize.arena import Arena
from promptlab.optimize.auto import STAGES, Auto
from promptlab.optimize.chain import Chain
from promptlab.optimize.fewshot import FewShot
from promptlab.optimize.gradient import Gradient
from promptlab.optimize.settings import merged_settings, settings_of
from promptlab.optimize.strategy import PoolStrategy

STRATEGIES = {"arena": Arena, "fewshot": FewShot, "gradient": Gradient, "auto": Auto}
DEFAULT_STRATEGY = "auto"
# What the Runs page and the CLI's help offer: the default first, each strategy alone, the usual chains.
STRATEGY_MENU = [DEFAULT_STRATEGY] + [n for n in STRATEGIES if n != DEFAULT_STRATEGY] + [
    "arena,fewshot", "arena,gradient", "arena,gradient,fewshot"]
# Settings every strategy shares (racing and the confirmation of the result); the rest are a strategy's own.
FRAME_SETTINGS = tuple(s.name for s in settings_of(PoolStrategy))
STRUCTURAL = {"proposers", "baselines", "meta_prompt", "name", "instructions", "demos_stage", "demo_instructions",
              "edits", "patience", "leader_demos"}


def strategy_classes(strategy: str) -> list[type]:
    """The classes whose settings a strategy name (or chain) takes: auto takes its stages' too."""
    out = []
    for name in strategy_names(strategy):
        out += [Auto, *(st.cls for st in STAGES)] if name == "auto" else [STRATEGIES[name]]
    return list(dict.fromkeys(out))


def strategy_settings(strategy: str) -> dict:
    """name -> Setting for a strategy (or chain): what make_config checks, the CLI and the Runs page show."""
    return merged_settings(strategy_classes(strategy))


SETTING_GROUPS = {"auto": "auto: the stages' shares and patience", "arena": "Instructions (the arena's proposers)",
                  "fewshot": "Demonstrations (few-shot)", "gradient": "Edits (textual gradients)",
                  "frame": "Racing and the result: how much of val each candidate gets, and what confirms the winner"}


def settings_by_stage(strategy: str) -> list[tuple[str, dict]]:
    """A strategy's settings grouped as the Runs page's Advanced section shows them: each stage's own (in the
    order the stages run), then racing and the confirmation, which every strategy shares. Each setting once."""
    merged = strategy_settings(strategy)
    shown: set[str] = set(FRAME_SETTINGS)
    out = []
    for cls in strategy_classes(strategy):
        own = {s.name: merged[s.name] for s in settings_of(cls) if s.name not in shown}
        shown |= set(own)
        if own:
            out.append((SETTING_GROUPS.get(cls.name, cls.name), own))
    out.append((SETTING_GROUPS["frame"], {k: merged[k] for k in FRAME_SETTINGS if k in merged}))
    return out


def all_settings() -> dict:
    """Every strategy's settings (the CLI offers them all; each run checks those of its strategy)."""
    return merged_settings([Auto, Arena, FewShot, Gradient])


def strategy_names(strategy: str) -> list[str]:
    """'arena,fewshot' -> ['arena', 'fewshot'], refusing unknown names with the list of known ones."""
    names = [n.strip().lower() for n in str(strategy).split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if not names or unknown:
        raise PromptlabError(f"unknown strategy '{', '.join(unknown) or strategy}': use one of {', '.join(STRATEGIES)}, "
                             "or several joined by commas (e.g. arena,fewshot)")
    return names


def make_stage(name: str, common: dict, params: dict):
    """One strategy from a run's settings; auto gets its stages built the same way."""
    def make(cls, **more):
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in {**common, **params, **more}.items() if k in fields})

    return make(STRATEGIES[name]) if name != "auto" else Auto.build(make, bool(common["proposers"]))


def make_strategy(strategy: str, common: dict, params: dict):
    """The strategy a run's name (or chain of names) and settings describe; a chain runs its stages in turn."""
    stages = [make_stage(name, common, params) for name in strategy_names(strategy)]
    return stages[0] if len(stages) == 1 else Chain(tuple(stages))
