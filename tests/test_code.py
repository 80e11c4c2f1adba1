"""Code-level tests: layering rules, config file in step with the typed defaults, README in step with the contract."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pricing.config import Config, load_config
from pricing.contract import TABLES, contract_markdown, is_pii_column

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((REPO / "pricing").rglob("*.py")), ids=lambda p: p.name)
def test_domain_library_never_imports_orchestration(path: Path):
    bad = _imports(path) & {"prefect", "prefect_dask", "flows", "tasks"}
    assert not bad, f"{path.relative_to(REPO)} imports {bad}: pricing/ must stay free of Prefect"


def test_shipped_yaml_equals_typed_defaults():
    assert load_config() == Config()


def test_user_config_overrides_and_rejects_unknown_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("ingest:\n  max_row_failure_share: 0.05\n")
    assert load_config(f).ingest.max_row_failure_share == 0.05
    f.write_text("ingest:\n  max_row_failure_shares: 0.05\n")
    with pytest.raises(Exception, match="max_row_failure_shares"):
        load_config(f)


def test_readme_documents_every_contract_table_and_column():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Data contract v1", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ") and "|" in line[2:]}
    for name, spec in TABLES.items():
        assert name in rows, f"README contract lacks table {name}"
        needed = rows[name].split("|")[2].strip()
        assert needed == ("yes" if spec.required else "no"), name
        for col in spec.columns:
            assert col.name in rows[name], f"README contract lacks {name}.{col.name}"
    assert "| products |" in contract_markdown()


@pytest.mark.parametrize("name", ["email", "Phone", "first name", "Last-Name", "billing_address", "customer_email"])
def test_personal_data_names_are_recognised(name):
    assert is_pii_column(name)


@pytest.mark.parametrize("name", ["customer_id", "category", "region", "query", "product_ids"])
def test_contract_columns_are_not_personal_data(name):
    assert not is_pii_column(name)
