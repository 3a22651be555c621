"""CompileOptions: one object for everything a compilation can be told, environment read only as defaults."""

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.codegen.build import DEFAULT_OPTIMIZATION, Toolchain
from dnnfusion.errors import DnnfusionError
from dnnfusion.fusion import PlannerOptions
from dnnfusion.options import CompileOptions
from tests.helpers import FLOAT, make_model


def relu_tanh():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Tanh", ["a"], ["y"])]
    return make_model(nodes, [("x", FLOAT, [4, 8])], ["y"])


def test_the_environment_gives_only_defaults():
    options = CompileOptions.from_env({"CC": "cc", "DNNFUSION_CFLAGS": "-O1 -g"}, opt_level="O1")
    assert options.toolchain == Toolchain("cc", ("-O1", "-g")) and options.opt_level == "O1"
    assert options.toolchain.flags[:2] == ("-O1", "-g") and "-fopenmp-simd" in options.toolchain.flags
    assert CompileOptions.from_env({}).toolchain == Toolchain("gcc", DEFAULT_OPTIMIZATION)


@pytest.mark.parametrize("fields, message", [({"opt_level": "O9"}, "unknown optimization level 'O9'"),
                                             ({"threads": 0}, "threads must be a positive integer"),
                                             ({"level": "O1"}, "unknown compile option 'level'")])
def test_bad_options_are_named(fields, message):
    with pytest.raises(DnnfusionError, match=message):
        dnnfusion.compile(relu_tanh(), **fields)


def test_one_options_object_reaches_planner_toolchain_and_profiling():
    options = CompileOptions(opt_level="O3", threads=1, planner=PlannerOptions(max_block_ops=1),
                             toolchain=Toolchain("gcc", ("-O1",)), profile=True)
    compiled = dnnfusion.compile(relu_tanh(), options=options)
    assert compiled.stats["blocks"] == 2 and compiled.threads == 1     # the planner's limit kept Relu and Tanh apart
    x = np.linspace(-2, 2, 32, dtype=np.float32).reshape(4, 8)
    np.testing.assert_allclose(compiled.run({"x": x})["y"], np.tanh(np.maximum(x, 0)), rtol=1e-6, atol=1e-7)
    assert len(compiled.block_seconds()) == 2
    fused = dnnfusion.compile(relu_tanh(), options=options.replace(planner=PlannerOptions(), profile=False))
    assert fused.stats["blocks"] == 1
    with pytest.raises(ValueError, match="profile=True"):
        fused.block_seconds()


def test_the_session_and_the_backend_take_the_same_options():
    options = CompileOptions(opt_level="O0", toolchain=Toolchain("gcc", ("-O1",)))
    session = dnnfusion.InferenceSession(relu_tanh(), options=options)
    assert session.compiled.plan.level == "O0"
    from dnnfusion.backend import DnnfusionBackend
    x = np.ones((4, 8), np.float32)
    (y,) = DnnfusionBackend.prepare(relu_tanh(), options=options).run([x])
    np.testing.assert_allclose(y, np.tanh(x), rtol=1e-6)


def test_avx512_targets_prefer_wide_vectors_unless_the_flags_say():
    wide = "-mprefer-vector-width=512"
    assert wide in CompileOptions(target="x86-64-v4").build_toolchain.flags
    assert wide not in CompileOptions(target="x86-64-v3").build_toolchain.flags
    own = CompileOptions(target="x86-64-v4", toolchain=Toolchain("gcc", ("-O2", "-mprefer-vector-width=256")))
    assert own.build_toolchain.flags.count("-mprefer-vector-width=256") == 1 and wide not in own.build_toolchain.flags
    assert Toolchain("gcc", ("-O2",)).for_target("native") == Toolchain("gcc", ("-O2",))
