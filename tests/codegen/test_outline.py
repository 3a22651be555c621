"""Parallel loops become range functions for the thread pool (codegen/outline.py): the locals a loop reads travel
in its context struct, with the types they were declared with, and nothing out of scope does."""

import pytest

from dnnfusion.codegen.outline import Scopes, declarations, outline
from dnnfusion.errors import DnnfusionError
from dnnfusion.kir.kernel import PARALLEL


def names(statement):
    return [(d.name, d.quals, d.base, d.stars.strip(), d.dims) for d in declarations(statement)]


def test_declarations_of_the_forms_templates_write():
    assert names("float* restrict kscratch0 = x_a112") == [("kscratch0", "", "float", "* restrict", "")]
    assert names("static const int64_t seg_offsets8[9] = {0, 1}") == \
        [("seg_offsets8", "const ", "int64_t", "", "[9]")]
    assert names("float tile[384] __attribute__((aligned(64)))") == [("tile", "", "float", "", "[384]")]
    assert names("const int64_t it6 = t5 % 3, i3 = it6 * 12") == \
        [("it6", "const ", "int64_t", "", ""), ("i3", "const ", "int64_t", "", "")]


@pytest.mark.parametrize("statement", ["x = y * z", "return x", "else x = 1", "tile[i] = 3", "f(a, b)",
                                       "c0_0 = _mm512_setzero_ps()", "goto done"])
def test_statements_that_declare_nothing(statement):
    assert declarations(statement) == []


def test_scopes_follow_braces_and_loop_variables():
    scopes = Scopes()
    for line in ["const int64_t a = 1;", "{", "  const int64_t gone = 2;", "}",
                 "for (int64_t n = 0; n < 4; ++n) {", "  static const int64_t t[2] = {1, 2};"]:
        scopes.feed(line)
    assert set(scopes.visible()) == {"a", "n", "t"}


def body(*lines):
    return "\n".join(lines)


def test_a_loop_captures_what_it_reads_and_only_that():
    code = body("float* restrict s = x_a1;", "const int64_t unused = 3;", "{", "  const int64_t inner = 2;", "}",
                "for (int64_t n = 0; n < 2; ++n) {", "  const int64_t k = n * 8;",
                PARALLEL, "  for (int64_t i = 0; i < 64; ++i) {", "    s[i + k] = x_in0[i];", "  }", "}")
    functions, new = outline("blk", body(code), lambda used: [f"/* buffers {sorted(u for u in used if u.startswith('x_'))} */"])
    assert len(functions) == 1
    fn = functions[0]
    assert "struct blk_par0_ctx {" in fn and "float * s;" in fn and "const int64_t k;" in fn
    assert "unused" not in fn and "inner" not in fn
    assert "float * restrict s = ctx->s;" in fn and "const int64_t k = ctx->k;" in fn
    assert "/* buffers ['x_in0'] */" in fn
    assert "for (int64_t i = lo_; i < hi_; ++i) {" in fn
    assert "df_parallel(blk_par0, &ctx_, 64, df_team);" in new
    assert ".s = s" in new and ".k = k" in new and PARALLEL not in new


def test_arrays_travel_as_pointers_and_inner_markers_run_serially():
    code = body("static const int64_t offs[3] = {0, 1, 2};", PARALLEL, "for (int64_t i = 0; i < n_rows; ++i) {",
                PARALLEL, "  for (int64_t j = 0; j < 8; ++j) {", "    x_a0[i * 8 + j] = offs[j % 3];", "  }", "}")
    functions, new = outline("b", code, lambda used: [])
    assert len(functions) == 1 and PARALLEL not in functions[0]
    assert "const int64_t (*offs);" in functions[0] and "const int64_t (*offs) = ctx->offs;" in functions[0]
    assert "df_parallel(b_par0, &ctx_, n_rows, df_team);" in new


def test_a_marker_without_its_loop_is_a_bug_reported_as_such():
    with pytest.raises(DnnfusionError, match="canonical loop"):
        outline("b", body(PARALLEL, "while (1) {", "}"), lambda used: [])
