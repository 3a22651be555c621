"""The model zoo: the catalogue, the export cache, the CLI, and every model's small configuration exported with
the TorchScript exporter and run by the reference executor with the same outputs as onnxruntime."""

import json

import onnx
import pytest
from click.testing import CliRunner

from dnnfusion.cli import main
from dnnfusion.pipeline import load
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.runtime import ReferenceExecutor
from dnnfusion.zoo import export, registry

pytest.importorskip("torch")
pytest.importorskip("transformers")

PAPER_MODELS = ["efficientnet_b0", "vgg16", "mobilenetv1_ssd", "yolov4", "c3d", "s3d", "unet", "faster_rcnn",
                "mask_rcnn", "tinybert", "distilbert", "albert", "bert_base", "mobilebert", "gpt2"]


@pytest.fixture(autouse=True, scope="module")
def zoo_cache(tmp_path_factory):
    """One export cache for the module, so each small model is exported once per test process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DNNFUSION_CACHE_DIR", str(tmp_path_factory.mktemp("zoo-cache")))
        yield


def test_catalogue_has_the_papers_fifteen_models():
    assert registry.names() == PAPER_MODELS
    assert registry.get("gpt2").paper.ops_before == 2533


def test_config_overrides_are_checked():
    bert = registry.get("bert_base")
    assert bert.config(size=64)["seq"] == 64 and bert.config()["seq"] == 128
    assert registry.get("efficientnet_b0").config(width=1)["width"] == 1.0
    with pytest.raises(registry.ZooError, match="no parameter 'image'"):
        bert.config(image=3)
    with pytest.raises(registry.ZooError, match="must be positive"):
        bert.config(size=0)
    with pytest.raises(registry.ZooError, match="must be int"):
        bert.config(layers="2")
    with pytest.raises(registry.ZooError, match="the zoo has: efficientnet_b0"):
        registry.get("resnet")


def test_cache_key_follows_config_and_opset():
    config = registry.get("tinybert").config(small=True)
    key = export.cache_key("tinybert", config, 13)
    assert key == export.cache_key("tinybert", dict(config), 13)
    assert key != export.cache_key("tinybert", {**config, "seq": 17}, 13)
    assert key != export.cache_key("tinybert", config, 17)


def test_export_is_cached(monkeypatch, tmp_path):
    first = export.export("tinybert", small=True, size=8)
    assert first.input_shapes == {"input_ids": [1, 8], "attention_mask": [1, 8], "token_type_ids": [1, 8]}
    monkeypatch.setattr(registry.ZooModel, "build", lambda self, config: pytest.fail("rebuilt a cached export"))
    again = export.export("tinybert", small=True, size=8, output=tmp_path)
    assert again.model_path == tmp_path / "tinybert.onnx" and again.inputs_path.exists()
    assert again.model_path.read_bytes() == first.model_path.read_bytes()
    assert export.cached("tinybert", small=True, size=9) is None


@pytest.mark.parametrize("opset, fused_op", [(17, "LayerNormalization"), (20, "Gelu")])
def test_newer_opsets_bring_single_operators(opset, fused_op):
    result = export.export("bert_base", small=True, opset=opset)
    model = onnx.load(result.model_path)
    assert model.opset_import[0].version == opset
    assert fused_op in result.stats["ops_by_type"]
    assert "LayerNormalization" not in export.export("bert_base", small=True).stats["ops_by_type"]


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_small_model_matches_onnxruntime(name):
    result = export.export(name, small=True)
    graph = load(result.model_path, result.input_shapes)
    assert all(v.is_static for v in graph.outputs)
    assert all(data_dependent_origin(v) == "NonMaxSuppression" for v in graph.live_values() if not v.is_static)
    feeds = result.feeds()
    diffs = compare(ReferenceExecutor(graph).run(feeds), run_onnxruntime(str(result.model_path), feeds))
    assert diffs and all(d.ok for d in diffs), diffs
    stats = result.stats
    assert stats["ops_before"] == sum(stats["ops_by_mapping"].values()) > 0
    assert stats["flops"] > 0 and stats["params"] > 0 and stats["irs_bytes"] > 0


def data_dependent_origin(value):
    """The operator a shape-less value's extent comes from: follow the first non-static input upwards."""
    node = value.producer
    while node is not None:
        upstream = [v for v in node.inputs if v is not None and not v.is_static]
        if not upstream:
            return node.op_type
        node = upstream[0].producer
    return None


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_list_and_export(tmp_path):
    listed = invoke("zoo", "list", "--small")
    assert listed.exit_code == 0, listed.output
    assert all(name in listed.output for name in PAPER_MODELS)
    exported = invoke("zoo", "export", "gpt2", "--small", "--seq", "8", "-o", tmp_path / "g.onnx")
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "g.onnx").exists() and (tmp_path / "g.npz").exists()
    assert "operators:" in exported.output
    listed = invoke("zoo", "list", "--small")
    assert listed.exit_code == 0


def test_cli_rejects_the_wrong_size_option():
    result = invoke("zoo", "export", "gpt2", "--image", "64")
    assert result.exit_code == 2 and "takes --seq, not --image" in result.output
    result = invoke("zoo", "export", "vgg17")
    assert result.exit_code == 2 and "no zoo model 'vgg17'" in result.output


def test_export_metadata_is_recorded():
    result = export.export("distilbert", small=True)
    meta = json.loads(result.model_path.with_suffix(".json").read_text())
    assert meta["opset"] == 13 and "TorchScript" in meta["exporter"] and meta["config"]["layers"] == 2
