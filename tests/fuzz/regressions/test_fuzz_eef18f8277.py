"""Fuzz regression eef18f8277: rejected at O3: LayerNormalization node 'n_LayerNormalization_8' has no pointwise description

Found by `python -m dnnfusion.fuzz --seed 2026` (graph seed 2026007350), shrunk to: LayerNormalization -> GreaterOrEqual -> Where.
"""

from pathlib import Path

import numpy as np
import onnx
import pytest

import dnnfusion

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("level", ["O0", "O3"])
def test_fuzz_eef18f8277_matches_onnxruntime(level):
    import onnxruntime as ort

    model = onnx.load(str(HERE / "fuzz_eef18f8277.onnx"))
    with np.load(HERE / "fuzz_eef18f8277.npz") as data:
        feeds = {name: data[name] for name in data.files}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(names, feeds)))
    compiled = dnnfusion.compile(model, input_shapes={k: v.shape for k, v in feeds.items()}, opt_level=level)
    got = compiled.run(feeds)
    for name, ref in expected.items():
        assert got[name].dtype == ref.dtype, name
        assert got[name].shape == ref.shape, name
        np.testing.assert_allclose(got[name], ref, rtol=1e-3, atol=1e-4, err_msg=name)
