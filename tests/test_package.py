"""promptlab as a package: `pip install .` into a fresh venv gives `import promptlab`, the `promptlab` command (the
same CLI as `python -m promptlab`) and a store of its own outside site-packages; an exported script runs there
without a clone, its demos per input picked by the installed package; `pip install -e .` points at its source tree.
The installs run from a copy of the package's sources: setuptools writes build/ and promptlab.egg-info beside
pyproject.toml, and the checkout must stay as git has it.
The pins in pyproject.toml are requirements.txt's."""
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv

from conftest import ROOT, sentiment_dataset
from openai_stub import Stub
from promptlab.evaluate import evaluate
from promptlab.export import export, files, stored_prompt
from promptlab.jobs import record_eval
from promptlab.models import make_spec
from promptlab.prompt import Demo, PromptTemplate
from promptlab.scoring.labels import parse_metric
from test_export import digest_reply


def pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(3)
    return out


def test_the_package_pins_are_the_requirements_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = pins(project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds])
    required = pins((ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines())
    assert declared == required, {k: (declared.get(k), required.get(k)) for k in declared.keys() ^ required.keys()
                                  or {k for k in declared if declared[k] != required[k]}}
    assert project["scripts"]["promptlab"] == "promptlab.cli:main"


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_pip_install_gives_the_promptlab_command_and_runs_an_export_without_a_clone(tmp_path, store):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py, cli = env_dir / "bin" / "python", env_dir / "bin" / "promptlab"
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROMPTLAB_DB", "VIRTUAL_ENV")}
    env |= {"HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "PIP_CACHE_DIR": os.environ.get(
        "PIP_CACHE_DIR", os.path.expanduser("~/.cache/pip")), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    src = tmp_path / "src"
    shutil.copytree(ROOT / "promptlab", src / "promptlab", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _run([str(py), "-m", "pip", "install", "-q", str(src)], env=env, cwd=tmp_path)

    outside = tmp_path / "elsewhere"  # no clone in sight: the installed package alone
    outside.mkdir()
    out = _run([str(cli), "--help"], env=env, cwd=outside)
    assert "optimize" in out and "export" in out
    assert _run([str(py), "-c", "import promptlab; print(promptlab.__file__)"], env=env, cwd=outside).startswith(
        str(env_dir))
    _run([str(cli), "datasets", "list"], env=env, cwd=outside)  # its store: the user's data folder, not site-packages
    assert (home / "data" / "promptlab" / "promptlab.duckdb").is_file()

    # the exported script, fixed demos and demos per input, gives promptlab's reply through the same server
    ds = sentiment_dataset(store, tmp_path, neutral=10)
    train = ds.split("train")
    demos = [Demo(t, lab, (("text", t),), int(i)) for t, lab, i in zip(train["text"], train["label"], train["idx"])]
    base = PromptTemplate("Answer with one of: {labels}.", "{input}")
    with Stub(digest_reply, delay_s=0.0) as stub:
        spec = make_spec("openai/stub-target", api_base=stub.base)
        for prompt in (base.with_demos(demos[:3]), base.with_demos(demos[:8], similar_k=2)):
            _, summary = record_eval(store, spec, prompt, ds, parse_metric("accuracy", ds.labels), split="test")
            sp = stored_prompt(store, summary["run_id"])
            script = outside / "winner.py"
            script.write_text(export(sp, "python"), encoding="utf-8")
            test = ds.split("test").head(4)
            res = evaluate(store, spec, sp.template, ds, test, parse_metric("accuracy", ds.labels),
                           max_tokens=sp.params["max_tokens"], save=False)
            for text, reply in zip(test["text"], res.rows["reply"]):
                got = _run([str(py), str(script), text], env=env | {"PROMPTLAB_API_BASE": stub.base}, cwd=outside)
                assert got.strip() == reply
            assert "promptlab_prompt.py" in files(sp, "promptfoo")

    # editable: the same command, its code the source tree's
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "-e", str(src)], env=env, cwd=tmp_path)
    where = _run([str(py), "-c", "import promptlab; print(promptlab.__file__)"], env=env, cwd=outside)
    assert where.strip() == str(src / "promptlab" / "__init__.py")
    assert "optimize" in _run([str(cli), "--help"], env=env, cwd=outside)
