"""The dashboard starts on the embedded default (AppTest; the full dashboard has its own issue)."""
from streamlit.testing.v1 import AppTest

from conftest import ROOT


def test_home_page_starts_with_the_demo_dataset_and_the_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_DB", str(tmp_path / "app.duckdb"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "promptlab"
    tables = [df.value for df in at.dataframe]
    assert "support_tickets" in tables[0]["name"].tolist()
    assert set(tables[1]["model"]) == {"local/smollm2-135m", "local/qwen2.5-coder-0.5b", "local/qwen2.5-coder-1.5b"}


def test_datasets_page_lists_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_DB", str(tmp_path / "app2.duckdb"))
    at = AppTest.from_file(str(ROOT / "pages" / "1_Datasets.py"), default_timeout=60).run()
    assert not at.exception
    assert "support_tickets" in at.dataframe[0].value["name"].tolist()
