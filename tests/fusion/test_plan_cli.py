"""`dnnfusion plan` (statistics, --json keys scripts rely on, --why, --html, --onnx) and `dnnfusion profile-db`."""

import json

import onnx
import pytest
from click.testing import CliRunner

from dnnfusion.cli import main
from dnnfusion.fusion import ProfileDB
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.pipeline import load
from dnnfusion.runtime import ReferenceExecutor, random_feeds
from tests.fusion.test_planner import attention_model, layer_norm_model

JSON_KEYS = {"ops_before", "blocks", "fusion_rate", "irs_bytes_before", "irs_bytes_after", "blocks_by_type",
             "yellow_fused", "yellow_rejected"}


@pytest.fixture
def ln_path(tmp_path):
    path = tmp_path / "ln.onnx"
    onnx.save(layer_norm_model(), path)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def json_lines(output: str) -> list[dict]:
    """The JSON objects of an export, one a line (notes printed beside them are skipped)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_plan_json_has_the_keys_scripts_rely_on(ln_path, tmp_path):
    result = invoke("plan", ln_path, "--json", "--profile-db", tmp_path / "db.sqlite")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert JSON_KEYS <= stats.keys()
    assert (stats["ops_before"], stats["blocks"], stats["fusion_rate"]) == (9, 1, 9.0)   # one LayerNormalization
    assert sum(stats["blocks_by_type"].values()) == 1 and sum(stats["rules_fired"].values()) >= 1
    assert stats["flops_after"] < stats["flops_before"]
    o2 = json.loads(invoke("plan", ln_path, "--json", "--opt", "O2").output)
    assert (o2["blocks"], o2["rules_fired"], o2["flops_after"]) == (2, {}, o2["flops_before"])
    o0 = json.loads(invoke("plan", ln_path, "--json", "--opt", "O0").output)
    assert o0["blocks"] == 9 and o0["irs_bytes_after"] == o0["irs_bytes_before"]


def test_plan_table_why_html_and_onnx(ln_path, tmp_path):
    html, fused = tmp_path / "plan.html", tmp_path / "fused.onnx"
    result = invoke("plan", ln_path, "--opt", "O2", "--why", "--html", html, "--onnx", fused)
    assert result.exit_code == 0, result.output
    assert "fusion rate" in result.output and "4.50x" in result.output
    assert "not fused: red cell of the pair table (1)" in result.output and "ReduceMean -> Sub" in result.output
    assert html.read_text().count('class="block"') == 2
    model = onnx.load(fused)
    assert [f.name for f in model.functions] == ["block_1_many_to_many"]        # block 0 is one ReduceMean
    graph = load(ln_path)
    feeds = random_feeds(graph)
    diffs = compare(run_onnxruntime(model, feeds), ReferenceExecutor(graph).run(feeds))
    assert all(d.ok for d in diffs)


def test_plan_binds_shapes_and_reports_bad_input(tmp_path):
    path = tmp_path / "attn.onnx"
    onnx.save(attention_model(), path)
    assert invoke("plan", path, "--json").exit_code == 0
    missing = invoke("plan", tmp_path / "nope.onnx")
    assert missing.exit_code == 2 and "error:" in missing.output
    unknown = invoke("plan", "not_a_zoo_model")
    assert unknown.exit_code == 2 and "neither a file nor a zoo model" in unknown.output


def test_profile_db_commands(ln_path, tmp_path):
    db = tmp_path / "db.sqlite"
    assert invoke("plan", ln_path, "--opt", "O2", "--profile-db", db).exit_code == 0
    stats = invoke("profile-db", "stats", "--path", db)
    assert stats.exit_code == 0 and "1 entries" in stats.output and "estimate" in stats.output
    exported = invoke("profile-db", "export", "--path", db)
    rows = json_lines(exported.output)
    assert len(rows) == 1 and rows[0]["source"] == "estimate" and rows[0]["pattern"][0][0] == "ReduceMean"
    replanned = json.loads(invoke("plan", ln_path, "--opt", "O2", "--json", "--profile-db", db).output)
    assert (replanned["profile_db_hits"], replanned["profile_db_misses"]) == (0, 1)   # an estimate is no hit
    assert replanned["yellow_by_source"] == {"measured": 0, "estimate": 1}
    ProfileDB(db).record_method({"ops": [["Conv"]]}, "Winograd F(4x4, 3x3)", 0.25)
    exported = invoke("profile-db", "export", "--path", db)
    rows = json_lines(exported.output)
    assert len(rows) == 2 and rows[1]["kernel_method"] == "Winograd F(4x4, 3x3)" and rows[1]["seconds"] == 0.25
    assert "1 timings of 1 blocks" in invoke("profile-db", "stats", "--path", db).output
    assert "deleted 1 entries" in invoke("profile-db", "clear", "--path", db).output
    assert "0 entries" in invoke("profile-db", "stats", "--path", db).output
