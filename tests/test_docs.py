"""docs/OPERATORS.md is generated from the registry; it must list exactly the registered operators."""

import re
from pathlib import Path

from dnnfusion import ops

DOC = Path(__file__).resolve().parents[1] / "docs" / "OPERATORS.md"


def test_operators_doc_is_current():
    rows = re.findall(r"^\| (\w+) \| (One-to-One|One-to-Many|Many-to-Many|Reorganize|Shuffle) \|", DOC.read_text(), re.M)
    assert dict(rows) == {op.op_type: op.mapping.value for op in ops.all_ops()}, \
        "docs/OPERATORS.md is stale: run python tools/gen_operators_doc.py"


def test_registry_covers_at_least_120_operators():
    assert len(ops.all_ops()) >= 120


def test_zoo_doc_lists_every_zoo_model():
    from dnnfusion.zoo import registry

    doc = (DOC.parent / "ZOO.md").read_text()
    rows = re.findall(r"^\| (\w+) \| \d+x", doc, re.M)
    assert rows == registry.names(), "docs/ZOO.md is stale: run python tools/gen_zoo_doc.py"


def test_fusion_doc_lists_every_zoo_model():
    from dnnfusion.zoo import registry

    doc = (DOC.parent / "FUSION.md").read_text()
    rows = re.findall(r"^\| (\w+) \| \d+ \| \d+ \| \d+ \|", doc, re.M)
    assert rows == registry.names(), "docs/FUSION.md is stale: run python tools/gen_fusion_doc.py"


def test_rewrite_doc_lists_every_rule_and_zoo_model():
    from dnnfusion.passes.rewrite import RULES
    from dnnfusion.zoo import registry

    doc = (DOC.parent / "REWRITE.md").read_text()
    rules = re.findall(r"^\| `([\w-]+)` \| (\w+) \|", doc, re.M)
    assert sorted(rules) == sorted((r.name, r.family) for r in RULES), \
        "docs/REWRITE.md is stale: run python tools/gen_rewrite_doc.py"
    models = re.findall(r"^\| (\w+) \| \d+ \| \d+ \| [+-]", doc, re.M)
    assert models == registry.names(), "docs/REWRITE.md is stale: run python tools/gen_rewrite_doc.py"
