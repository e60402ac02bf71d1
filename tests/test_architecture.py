"""The layering docs/architecture.md promises: every module listed, each importing only those above it.

Reads source files only (ast), so it runs in a blink and names the offending import.
"""

import ast
import pathlib
import re

import pytest

BUILDER = "tfds_builders/covid_xray"


def documented_order(project_root: pathlib.Path) -> dict[str, int]:
    """Module name -> its row in the architecture table (modules sharing a row share a rank)."""
    rank = {}
    for line in (project_root / "docs" / "architecture.md").read_text().splitlines():
        match = re.match(r"\| (`[^|]+`) \|", line)
        if match:
            for name in match.group(1).split(","):
                rank[name.strip("` ")] = len(set(rank.values()))
    return rank


def project_imports(path: pathlib.Path) -> set[str]:
    """The covid_keras modules (and the TFDS builder) a source file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "covid_keras":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("covid_keras."):
                found.add(node.module.split(".")[1])
            elif node.module.startswith("tfds_builders.covid_xray"):
                found.add(BUILDER)
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("covid_keras.")}
    return found


def package_sources(project_root: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    """Module or subpackage name -> its source files (a subpackage is one row: all its files)."""
    package = project_root / "covid_keras"
    sources = {path.stem: [path] for path in package.glob("*.py") if path.stem != "__init__"}
    sources.update({folder.name: sorted(folder.glob("*.py")) for folder in package.iterdir()
                    if (folder / "__init__.py").is_file()})
    sources[BUILDER] = [path for path in (project_root / BUILDER).glob("*.py") if not path.stem.endswith("_test")]
    return sources


def test_every_module_is_documented(project_root):
    undocumented = set(package_sources(project_root)) - set(documented_order(project_root))
    assert not undocumented, f"docs/architecture.md has no row for {sorted(undocumented)}"


def test_modules_import_only_modules_above_them(project_root):
    rank = documented_order(project_root)
    upward = [
        f"{path.relative_to(project_root)} imports {imported}, which docs/architecture.md lists "
        + ("nowhere" if imported not in rank else f"at or below {module}")
        for module, paths in package_sources(project_root).items() if module in rank
        for path in paths
        for imported in sorted(project_imports(path))
        if imported != module and rank.get(imported, len(rank)) >= rank[module]
    ]
    assert not upward, "\n".join(upward)


def test_scripts_import_only_the_package(project_root):
    for path in sorted((project_root / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                assert not name.startswith(("scripts", "tests", "bench")), f"{path.name} imports {name}"


@pytest.mark.parametrize("source, expected", [
    ("from covid_keras import data, plots\nimport covid_keras.gan as g\n", {"data", "plots", "gan"}),
    ("from covid_keras.labels import BINARY_CLASSES\nfrom tfds_builders.covid_xray import x\n", {"labels", BUILDER}),
])
def test_imports_are_read(tmp_path, source, expected):
    path = tmp_path / "module.py"
    path.write_text(source)
    assert project_imports(path) == expected


def test_gan_config_presets_and_run_folders_load_without_tensorflow(project_root):
    """Scripts check a GAN config and read a run folder before TensorFlow loads (and `--help` is fast)."""
    import subprocess
    import sys

    code = ("import sys; import covid_keras.gan.config, covid_keras.gan.presets, covid_keras.gan.run_dir, "
            "covid_keras.files, covid_keras.cli; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project_root, check=True)
    assert out.stdout.strip() == "[]"
