"""dvc.yaml stays honest: every stage depends on the library modules its script imports."""

import ast
from pathlib import Path

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


def test_stage_deps_cover_imported_modules() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages
    for name, stage in stages.items():
        body = stage.get("do", stage)
        deps = set(body["deps"])
        scripts = [d for d in deps if d.startswith("stages/")]
        assert len(scripts) == 1, f"{name}: deps must name its one stage script"
        assert scripts[0] in body["cmd"], f"{name}: its script dep is not the one it runs"
        missing = charlm_imports(REPO / scripts[0]) - deps
        assert not missing, f"stage {name} imports {sorted(missing)} but does not list them in deps"
