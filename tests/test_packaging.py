"""Dependencies are declared once (pyproject.toml); the environment files install from it."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {_normal(re.split(r"[<>=~!\[ ;]", spec, maxsplit=1)[0]) for spec in specs}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_of_the_package_is_declared():
    dists = packages_distributions()
    third_party = {m for m in _imports(ROOT / "neds") if m not in sys.stdlib_module_names and m != "neds"}
    declared = _declared()
    missing = {m: dists.get(m) for m in third_party if not {_normal(d) for d in dists.get(m, [])} & declared}
    # brainbox ships inside ibllib (declared); its import name has no distribution of its own
    missing.pop("brainbox", None)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_environment_files_install_from_pyproject():
    for name in ("environment.yml", "workflow/envs/neds.yaml"):
        deps = yaml.safe_load((ROOT / name).read_text())["dependencies"]
        conda = [d for d in deps if isinstance(d, str)]
        pip = [d for d in deps if isinstance(d, dict)]
        assert {c.split("=")[0] for c in conda} == {"python", "pip"}, name
        assert len(pip) == 1 and all(p.startswith("-e ") for p in pip[0]["pip"]), name
