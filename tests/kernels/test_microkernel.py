"""The intrinsics GEMM path (kernels/microkernel.py through kernels/gemm.packed_product): every way an operand
reaches it (weights packed at compile time, activations read in place or packed per call, B in place or in
panels, broadcast batches, transposes, 1x1 convolutions) against onnxruntime, on each ISA this CPU runs,
with tile edges on both axes; and the weight blob holding only the packed copy."""

import dataclasses

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion import machine
from dnnfusion.kernels import gemm, microkernel
from dnnfusion.oracle import compare, run_onnxruntime
from tests.helpers import FLOAT, make_model
from tests.kernels.conftest import needs_microkernels

rng = np.random.default_rng(11)
pytestmark = needs_microkernels


def check(model, feeds):
    """Compile (no kernel cache reuse across ISAs is needed: the source differs), compare with onnxruntime."""
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    compiled = dnnfusion.compile(model, opt_level="O3")
    ours, theirs = compiled.run(feeds), run_onnxruntime(model, feeds)
    diffs = compare(ours, theirs)
    assert diffs and all(d.ok for d in diffs), diffs
    return compiled


@pytest.mark.parametrize("m,k,n", [(1, 64, 40), (13, 45, 37), (25, 300, 70), (12, 32, 32), (40, 1024, 48)])
def test_matmul_with_constant_weights(isa, m, k, n):
    b = rng.standard_normal((k, n)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", FLOAT, [m, k])], ["y"], {"b": b})
    compiled = check(model, {"a": rng.standard_normal((m, k)).astype(np.float32)})
    assert f"df_ukr_{isa.name}_" in compiled.source
    padded = -(-n // isa.lanes) * isa.lanes if n < isa.width else -(-n // isa.width) * isa.width
    assert compiled.stats["weight_bytes"] < (k * n + k * padded) * 4      # the unpacked copy is not kept


@pytest.mark.parametrize("a_shape,b_shape", [((3, 20, 16), (3, 16, 33)), ((2, 1, 9, 24), (5, 24, 64)),
                                             ((4, 30, 1024), (4, 1024, 40))])
def test_batched_products_of_two_activations(isa, a_shape, b_shape):
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])],
                       [("a", FLOAT, list(a_shape)), ("b", FLOAT, list(b_shape))], ["y"])
    feeds = {"a": rng.standard_normal(a_shape).astype(np.float32),
             "b": rng.standard_normal(b_shape).astype(np.float32)}
    assert f"df_ukr_{isa.name}_" in check(model, feeds).source


@pytest.mark.parametrize("trans_a,trans_b", [(0, 1), (1, 0), (1, 1)])
def test_gemm_transposes_bias_and_activation_epilogue(isa, trans_a, trans_b):
    m, k, n = 19, 50, 45
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    w = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["a", "w", "c"], ["g"], transA=trans_a, transB=trans_b, alpha=0.5),
             helper.make_node("Relu", ["g"], ["y"])]
    model = make_model(nodes, [("a", FLOAT, list(a.shape))], ["y"],
                       {"w": w, "c": rng.standard_normal(n).astype(np.float32)})
    compiled = check(model, {"a": a})
    assert compiled.stats["blocks"] == 1


def test_transposed_activation_as_b_is_packed_per_call(isa):
    """Attention's Q @ K^T: B is a transpose of an input, packed into panels in each call."""
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["y"])]
    model = make_model(nodes, [("q", FLOAT, [2, 17, 8]), ("k", FLOAT, [2, 23, 8])], ["y"])
    check(model, {"q": rng.standard_normal((2, 17, 8)).astype(np.float32),
                  "k": rng.standard_normal((2, 23, 8)).astype(np.float32)})


def test_pointwise_convolution_weights_as_a(isa):
    x = rng.standard_normal((1, 24, 7, 9)).astype(np.float32)
    w = rng.standard_normal((20, 24, 1, 1)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"])], [("x", FLOAT, list(x.shape))], ["y"],
                       {"w": w, "b": rng.standard_normal(20).astype(np.float32)})
    assert f"df_ukr_{isa.name}_" in check(model, {"x": x}).source


@pytest.mark.parametrize("channels,filters", [(24, 128), (96, 256)])
def test_pixel_rows_pack_an_input_swept_once_per_column_tile(isa, channels, filters):
    """A 7 x 7 pointwise convolution with its pixels as rows reads its input as a column-major A: in place
    while it fits half of L1 (gemm.A_IN_PLACE_BYTES), packed per call (tile rows one after another) beyond,
    since every column tile sweeps it again."""
    x = rng.standard_normal((1, channels, 7, 7)).astype(np.float32)
    w = rng.standard_normal((filters, channels, 1, 1)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", FLOAT, list(x.shape))], ["y"],
                       {"w": w})
    source = check(model, {"x": x}).source
    rows, vectors, _ = isa.tile_shape(49, filters, gemm.column_step(isa, 49))
    assert f"df_ukr_{isa.name}_{rows}x{vectors * isa.lanes}_" in source
    in_place = channels * 49 * 4 <= gemm.A_IN_PLACE_BYTES
    assert ("_a1x49(" in source) == in_place and (f"_a1x{rows}(" in source) != in_place


def test_tile_shapes_waste_least():
    """Row tiles as even as they can be, and one-vector tiles where a column count wastes half a full tile."""
    avx512, avx2 = microkernel.ISAS["avx512"], microkernel.ISAS["avx2"]
    assert [avx512.tile_rows(m) for m in (12, 64, 128, 196)] == [12, 11, 12, 11]
    assert avx512.tile_shape(128, 768)[:2] == (12, 2)            # BERT's products keep the full tile
    assert avx512.tile_shape(112, 196)[:2] == (24, 1)            # 196 = 12.25 x 16 columns, not 6.1 x 32
    assert avx2.tile_rows(64) == 6 and avx2.tile_rows(6) == 6
    for isa in (avx512, avx2):
        for m, n in [(1, 40), (13, 37), (49, 1280), (273, 399), (672, 196)]:
            rows, vectors, cost = isa.tile_shape(m, n)
            assert rows <= isa.max_rows(vectors) and vectors <= isa.vectors + 1
            full = min(isa.vectors, -(-n // isa.lanes))
            assert cost <= -(-n // (full * isa.lanes)) * isa.row_cost(m, isa.tile_rows(m, full), full)


def test_tiles_stored_by_columns_take_rows_of_whole_half_vectors():
    """Pixel-row tiles over long rows are 8 rows (a whole ymm per column) on AVX-512; short rows, where a
    remainder tile would cost more, and AVX2, whose 4-row tiles would be too thin, keep any height."""
    avx512, avx2 = microkernel.ISAS["avx512"], microkernel.ISAS["avx2"]
    assert gemm.column_step(avx512, 208) == 8 and avx512.tile_shape(208, 64, 8)[:2] == (8, 2)
    assert gemm.column_step(avx512, 28) == 1 and gemm.column_step(avx2, 208) == 1
    for m, n in [(64, 64), (104, 128), (200, 512), (9, 40)]:
        rows, vectors, _ = avx512.tile_shape(m, n, 8)
        assert rows % 8 == 0 or rows == m <= 8
    assert avx512.tile_rows(13, 3, 8) == 8 and avx512.tile_rows(20, 1, 16) == 16 and avx512.tile_rows(40, 2, 16) == 0


def test_shallow_tiles_stored_by_columns_take_rows_of_whole_vectors():
    """A shallow product (a 3-channel stem: depth 27) stores whole zmm runs: 16 x 16 tiles over 112 pixels;
    a deep one keeps half vectors, and AVX2 or short rows are unchanged."""
    avx512, avx2 = microkernel.ISAS["avx512"], microkernel.ISAS["avx2"]
    assert gemm.column_step(avx512, 112, 27) == 16 and avx512.tile_shape(112, 32, 16)[:2] == (16, 1)
    assert gemm.column_step(avx512, 112, gemm.SHALLOW_DEPTH + 1) == 8 and gemm.column_step(avx512, 112) == 8
    assert gemm.column_step(avx2, 112, 27) == 1 and gemm.column_step(avx512, 28, 27) == 1


@pytest.mark.parametrize("m,k,n", [(112, 40, 196), (13, 45, 37)])
def test_products_on_narrow_tiles(isa, m, k, n):
    """Shapes whose cheapest tiles are not a full tile's (one vector wide, or three)."""
    b = rng.standard_normal((k, n)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", FLOAT, [m, k])], ["y"], {"b": b})
    rows, vectors, _ = isa.tile_shape(m, n)
    compiled = check(model, {"a": rng.standard_normal((m, k)).astype(np.float32)})
    assert f"df_ukr_{isa.name}_{rows}x{vectors * isa.lanes}_" in compiled.source


def test_microkernel_reads_a_at_its_steps():
    """The C of a 2-row tile over A rows 7 apart: broadcasts at offsets 0 and 7 from each column."""
    code = microkernel.code(microkernel.ISAS["avx2"], 2, 1, (7, 1))
    assert "ak[0]" in code and "ak[7]" in code and "as + k * 1" in code and "_mm256_fmadd_ps" in code


@pytest.mark.parametrize("m,k,n,constant", [(53, 5000, 70, True), (30, 4500, 48, False)])
def test_deep_products_split_their_depth(isa, m, k, n, constant, monkeypatch):
    """A depth whose column tile of B would not stay in cache (a 128 KiB L2 here): the depth in chunks, each
    added into the task's block of tiles by the accumulating microkernels; constant or run-time B, edges on
    both axes."""
    monkeypatch.setattr(gemm, "l2_bytes", lambda: 128 << 10)
    b = rng.standard_normal((k, n)).astype(np.float32)
    inputs = [("a", FLOAT, [m, k])] + ([] if constant else [("b", FLOAT, [k, n])])
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], inputs, ["y"], {"b": b} if constant else {})
    feeds = {"a": rng.standard_normal((m, k)).astype(np.float32)} | ({} if constant else {"b": b})
    assert "_acc(" in check(model, feeds).source


def test_full_width_cores_take_two_vector_tiles(monkeypatch):
    """Where two 512-bit FMA units issue per cycle, a tile one vector wide waits on its broadcasts (72-77% of
    peak measured, against 89-93% two vectors wide): SSD's 512 x 361 pointwise product and EfficientNet's
    80 x 196 keep two vectors there, and one on a core that runs AVX-512 in halves. Which core this is comes
    from the CPU: Intel's AVX-512 cores are full width, AMD's Zen 4 is not, and portable targets never."""
    half = microkernel.ISAS["avx512"]
    full = dataclasses.replace(half, core=microkernel.FULL_WIDTH)
    assert half.tile_shape(512, 361)[:2] == (19, 1) and full.tile_shape(512, 361)[:2] == (12, 2)
    assert half.tile_shape(80, 196)[1] == 1 and full.tile_shape(80, 196)[1] == 2
    assert full.tile_shape(128, 768)[:2] == (12, 2)
    for model, expected in (("Intel(R) Xeon(R) Platinum 8480+", True), ("AMD EPYC 9R14", False)):
        monkeypatch.setattr(machine, "_cpuinfo", lambda model=model: (model, {"avx512f", "avx2", "fma"}))
        assert machine.full_width_fma() is expected
        assert (microkernel.target_isa().core is microkernel.FULL_WIDTH) is expected
        with machine.targeting("x86-64-v4"):
            assert microkernel.target_isa().core is microkernel.HALF_WIDTH


@pytest.mark.parametrize("a_shape,b_shape", [((2, 24, 40), (40, 70)), ((3, 9, 16), (3, 16, 50)), ((1, 130, 8), (8, 70))])
def test_b_with_a_partial_last_tile_is_read_in_place_but_for_it(isa, a_shape, b_shape):
    """An activation B whose columns end in a partial tile: under few rows of A (gemm.RAGGED_MAX_ROWS) its whole
    tiles are read where they lie and only the last one is copied into a strip (each tile's own row step);
    under more rows all of it is packed into panels."""
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])],
                       [("a", FLOAT, list(a_shape)), ("b", FLOAT, list(b_shape))], ["y"])
    feeds = {"a": rng.standard_normal(a_shape).astype(np.float32),
             "b": rng.standard_normal(b_shape).astype(np.float32)}
    source = check(model, feeds).source
    ragged = f" ? {b_shape[-1]} : " in source          # the row step: B's own for whole tiles, the strip's last
    assert ragged == (a_shape[-2] <= gemm.RAGGED_MAX_ROWS), source[-3000:]
