"""The ECG's annotations (mapping per input edge with broadcasting, IRS) and the profile database (round trip,
keys per machine, concurrent writers)."""

import multiprocessing

import numpy as np
from onnx import helper

from dnnfusion.fusion import build_ecg
from dnnfusion.fusion.profile_db import Profile, ProfileDB
from dnnfusion.pipeline import load
from dnnfusion.ops import MappingType
from tests.helpers import FLOAT, make_model


def test_broadcast_input_is_one_to_many_and_constants_do_not_count():
    model = make_model([helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], name="mean"),
                        helper.make_node("Sub", ["x", "m"], ["c"], name="sub"),
                        helper.make_node("Add", ["c", "bias"], ["y"], name="bias")],
                       [("x", FLOAT, [4, 6])], ["y"], {"bias": np.ones(6, np.float32)}, opset=13)
    ecg = build_ecg(load(model))
    mean, sub, bias = ecg.ops
    assert sub.input_mappings == [MappingType.ONE_TO_ONE, MappingType.ONE_TO_MANY]
    assert sub.mapping is MappingType.ONE_TO_MANY and sub.edge_mapping(mean) is MappingType.ONE_TO_MANY
    assert bias.input_mappings == [MappingType.ONE_TO_ONE, None]        # the broadcast bias is a weight
    assert bias.mapping is MappingType.ONE_TO_ONE and bias.edge_mapping(sub) is MappingType.ONE_TO_ONE
    assert (mean.irs_bytes, sub.irs_bytes) == (16, 96)
    assert [c.node.name for c in mean.consumers] == ["sub"] and sub.producers == [mean]


def test_profile_db_round_trip(tmp_path):
    db = ProfileDB(tmp_path / "p.sqlite")
    pattern = [["Relu", "", [[4]], ["float32"], "One-to-One"], "row-major"]
    assert db.lookup(pattern) is None
    db.record(pattern, Profile(1.0, 2.0, "measured"))
    assert db.lookup(pattern) == Profile(1.0, 2.0, "measured") and db.lookup(pattern).fuse
    db.record(pattern, Profile(3.0, 2.0, "measured"))                    # a newer measurement replaces it
    assert not ProfileDB(tmp_path / "p.sqlite").lookup(pattern).fuse
    other = ProfileDB(tmp_path / "p.sqlite", threads=999)                # another thread count: another key
    assert other.lookup(pattern) is None
    assert db.stats()["entries"] == 1 and [r["pattern"] for r in db.rows()] == [pattern]
    assert db.clear() == 1 and db.lookup(pattern) is None


def test_lookup_answers_with_measurements_only(tmp_path):
    """An estimate is kept (export says so) but never answers a lookup, and never replaces a measurement."""
    db = ProfileDB(tmp_path / "p.sqlite")
    pattern = [["Softmax", "", [[4, 6]], ["float32"], "Many-to-Many"], "row-major"]
    db.record(pattern, Profile(1.0, 2.0, "estimate"))
    assert db.lookup(pattern) is None
    assert [r["source"] for r in db.rows()] == ["estimate"]
    db.record(pattern, Profile(3.0, 2.0, "measured"))
    db.record(pattern, Profile(1.0, 2.0, "estimate"))
    assert db.lookup(pattern) == Profile(3.0, 2.0, "measured")
    assert [(r["source"], r["fused_seconds"]) for r in db.rows()] == [("measured", 3.0)]
    db.record([pattern, "other"], Profile(1.0, 2.0, "estimate"))
    stats = db.stats()
    assert (stats["entries"], stats["measured_entries"], stats["estimated_entries"]) == (2, 1, 1)


def test_kernel_method_rows_say_which_were_measured(tmp_path):
    db = ProfileDB(tmp_path / "p.sqlite")
    db.record_method({"ops": [["Conv"]]}, "direct", 0.5)
    db.record_method({"ops": [["Conv"]]}, "Winograd F(4x4, 3x3)", float("inf"))   # the template could not make it
    rows = {r["kernel_method"]: (r["source"], r["seconds"]) for r in db.method_rows()}
    assert rows == {"direct": ("measured", 0.5), "Winograd F(4x4, 3x3)": ("not generated", None)}


def _writer(args):
    path, worker = args
    db = ProfileDB(path)
    for i in range(25):
        db.record([worker, i], Profile(float(i), 1.0, "measured"))
    return worker


def test_profile_db_is_safe_under_concurrent_writers(tmp_path):
    path = tmp_path / "p.sqlite"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert sorted(pool.map(_writer, [(path, w) for w in range(4)])) == [0, 1, 2, 3]
    db = ProfileDB(path)
    assert db.stats()["entries"] == 100
    assert db.lookup([3, 24]) == Profile(24.0, 1.0, "measured")
