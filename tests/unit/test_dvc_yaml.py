"""dvc.yaml stays honest: every stage depends on exactly the library modules its script imports, so
`dvc repro` reruns what a change of code affects and nothing else."""

import ast
import importlib.util
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import REPO


def charlm_imports(path: Path) -> set[str]:
    """charlm modules imported by `path`, directly or through other charlm modules."""
    found: set[str] = set()
    pending = [path]
    while pending:
        tree = ast.parse(pending.pop().read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "charlm":
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.split(".")[0] == "charlm"]
            for name in names:
                module = REPO / "src" / Path(*name.split(".")).with_suffix(".py")
                rel = module.relative_to(REPO).as_posix()
                if module.is_file() and rel not in found and module.name != "__init__.py":
                    found.add(rel)
                    pending.append(module)
    return found


def stages() -> dict[str, dict[str, Any]]:
    found = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert found
    return {name: stage.get("do", stage) for name, stage in found.items()}


def test_stage_deps_are_the_modules_the_script_imports() -> None:
    for name, body in stages().items():
        deps = set(body["deps"])
        scripts = [d for d in deps if d.startswith("stages/")]
        assert len(scripts) == 1, f"{name}: deps must name its one stage script"
        assert scripts[0] in body["cmd"], f"{name}: its script dep is not the one it runs"
        imported = charlm_imports(REPO / scripts[0])
        code = {d for d in deps if d.startswith("src/")}
        assert not imported - code, (
            f"stage {name} imports {sorted(imported - code)} but does not list them in deps"
        )
        assert not code - imported, (
            f"stage {name} lists {sorted(code - imported)} in deps but never imports them"
        )


def test_only_the_register_stage_depends_on_the_serving_code_and_limits() -> None:
    serving = {"src/charlm/params/serving.py", "src/charlm/serving/interface.py"}
    for name, body in stages().items():
        if name not in ("params", "register"):
            assert not serving & set(body["deps"]), name
            assert "limits" not in body.get("params", []), name


def test_a_stage_reads_the_params_sections_dvc_yaml_lists_for_it() -> None:
    # The script's `Params` record is what it reads; dvc.yaml's list is what reruns it.
    for name, body in stages().items():
        listed = {p.split(".")[0] for p in body["params"] if isinstance(p, str)}
        if not listed:
            continue  # the params stage: the whole file
        (script,) = [d for d in body["deps"] if d.startswith("stages/")]
        spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / script)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        read = set(module.Params.model_fields)
        # `arch` and `train` also reach a stage as what every `models:` entry extends.
        assert listed <= read, f"{name}: dvc.yaml lists {sorted(listed - read)}, which it never reads"
        unlisted = read - listed - ({"arch", "train"} if "models" in read else set())
        assert not unlisted, f"{name}: reads {sorted(unlisted)}, which dvc.yaml does not list"


def test_imports_are_followed_through_the_package(tmp_path: Path) -> None:
    script = tmp_path / "stage.py"
    script.write_text("from charlm.data import encoded\n")  # a module, imported from its package
    modules = (
        "data/encoded data/chunks data/ngrams data/report data/vocab params/data params/base records"
        " errors files"
    )
    assert charlm_imports(script) == {f"src/charlm/{m}.py" for m in modules.split()}
