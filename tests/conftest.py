import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from promptlab.store import Store  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
DEMO = ROOT / "data" / "support_tickets.csv"


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "test.duckdb")
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    rows = ["text,label"]
    for i in range(12):
        rows.append(f"great product number {i},positive")
        rows.append(f"awful service case {i},negative")
    for i in range(4):
        rows.append(f"it arrived on day {i},neutral")
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def sentiment_dataset(store: Store, tmp_path: Path, neutral: int = 20, neutral_label: str = "neutral"):
    """A three-label dataset the scripted targets can read ('great' / 'awful' / 'plain'), written to
    tmp_path/sent.csv and imported; 30 positive, 30 negative and `neutral` neutral rows."""
    from promptlab.data import import_dataset

    rows = ["text,label"] + [f"great thing {i},positive" for i in range(30)] + \
        [f"awful thing {i},negative" for i in range(30)] + [f"plain thing {i},{neutral_label}" for i in range(neutral)]
    path = tmp_path / "sent.csv"
    path.write_text("\n".join(rows))
    return import_dataset(store, path)[0]
