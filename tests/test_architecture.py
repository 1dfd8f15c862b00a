"""The layers hold: import-linter's contracts (pyproject.toml), and a tree that shows them."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    from importlinter.cli import lint_imports

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0
    finally:
        os.chdir(cwd)


def test_the_core_top_level_stays_small():
    modules = [p.name for p in (ROOT / "freshness").glob("*.py")]
    assert len(modules) <= 10, modules


def test_every_core_subpackage_says_what_lives_there():
    for package in (ROOT / "freshness").iterdir():
        init = package / "__init__.py"
        if package.is_dir() and init.exists():
            assert init.read_text().startswith('"""'), f"{package.name}: add a docstring"
