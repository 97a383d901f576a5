"""Cost ceilings: what a prompt may cost per call ("tokens<=300", "latency<=0.5", "price<=0.2"), kept by a search as
the metric's floors are. Parsed and checked here, told to proposers here, and applied here: a candidate whose cost per
call, measured from the calls that scored it at its first rung, breaks a ceiling goes no further ("over ceiling"),
whatever it scores. The decision reads `broken` too, for a start that breaks one. What a call costs is measured in
promptlab.cost.
"""
from __future__ import annotations

import math
import re

from promptlab.cost import Cost, cost_of_calls
from promptlab.errors import PromptlabError
from promptlab.optimize.base import CandidateScored, OptimizeContext
from promptlab.text import number_or_none as _f


class CeilingError(PromptlabError):
    pass

MEASURES = {"tokens": "prompt tokens per call (mean)", "latency": "seconds per call (median)",
            "price": "dollars per 1,000 calls"}

_CEILING = re.compile(r"^\s*(tokens|latency|price)\s*<=\s*(\S+)\s*$", re.IGNORECASE)


def is_ceiling(text: str) -> bool:
    """Whether a --constraint is a cost ceiling (MEASURE<=VALUE) rather than a metric floor (METRIC>=VALUE)."""
    return bool(re.match(r"^\s*(tokens|latency|price)\s*(<=|>=|<|>|=)", text or "", re.IGNORECASE))


def parse_ceilings(texts) -> dict[str, float]:
    """{'tokens': 300.0, ...} from ['tokens<=300', ...]; errors say what is wrong and how to write it."""
    out: dict[str, float] = {}
    for text in texts or ():
        m = _CEILING.match(text or "")
        if not m:
            raise CeilingError(f"cost ceiling '{text}': write it as MEASURE<=VALUE with MEASURE one of "
                               f"{', '.join(MEASURES)} (e.g. tokens<=300, latency<=0.5, price<=0.2)")
        measure, raw = m.group(1).lower(), m.group(2)
        try:
            limit = float(raw)
        except ValueError:
            raise CeilingError(f"cost ceiling '{text}': '{raw}' is not a number") from None
        if not math.isfinite(limit) or limit <= 0:
            raise CeilingError(f"cost ceiling '{text}': the limit must be a number above 0")
        out[measure] = min(limit, out.get(measure, math.inf))
    return out


def broken(cost: Cost, ceilings: dict[str, float]) -> list[str]:
    """The ceilings a measured cost breaks, as 'tokens 359 > 300'. A measure that is unknown (no price for
    this model) breaks nothing: it cannot be held to a ceiling, and `describe_ceilings` says so up front."""
    out = []
    for measure, limit in (ceilings or {}).items():
        value = cost.value(measure)
        if value is not None and value > limit:
            out.append(f"{measure} {value:.3g} > {limit:g}")
    return out


def describe_ceilings(ceilings: dict[str, float]) -> str:
    """In words, for proposers and reports: 'at most 300 prompt tokens per call (mean)'."""
    return " and ".join(f"at most {limit:g} {MEASURES[m]}" for m, limit in ceilings.items())


def checked(ceilings: list[str] | dict | None) -> dict[str, float]:
    """A run's ceilings, checked: from the CLI's and the page's texts (['tokens<=300']) or a stored record."""
    return dict(ceilings) if isinstance(ceilings, dict) else parse_ceilings(ceilings or [])


def note(ceilings: dict[str, float]) -> str:
    """What proposers (and the critic) are told of the cost ceilings, after the metric: '' without any."""
    if not ceilings:
        return ""
    return (f". Every prompt must cost {describe_ceilings(ceilings)}, measured with its demonstrations "
            "and the replies it gets: a longer one is dropped unscored")


def breaks(ctx: OptimizeContext, cand, res) -> bool:
    """Whether the candidate's cost per call, measured from the calls that just scored it, breaks a ceiling;
    records which on the candidate. Read from the stored calls, so a resumed run decides the same."""
    cand.over_ceiling = "; ".join(broken(cost_of_calls(ctx.store, res.rows["call_key"]), ctx.ceilings))
    return bool(cand.over_ceiling)


def over(ctx: OptimizeContext, cand, n_scored: int, saved: int) -> CandidateScored:
    """The step of a candidate dropped for its cost, at its score on the `n_scored` examples it was read on."""
    cand.n_scored = n_scored
    return CandidateScored(cand.id, cand.round, _f(cand.minibatch), None, None, 0, "over ceiling", calls_saved=saved,
                           target_requests=ctx.counters.target_requests, n_scored=n_scored)
