"""The backprop lectures' worked examples (CS231n), built as YAML nets and run through the Net.

    f = (x + y) z                 at x = -2, y = 5, z = -4: df/dx = df/dy = z = -4, df/dz = x + y = 3
    f = sigmoid(w0 x0 + w1 x1 + w2)  at w = [2, -3, -3], x = [-1, -2]: f = sigmoid(1) ~ 0.73,
        df/dw = f (1 - f) [x0, x1, 1] ~ [-0.20, -0.39, 0.20], df/dx = f (1 - f) [w0, w1] ~ [0.39, -0.59]
"""
from __future__ import annotations

import numpy as np
import pytest

import layerflow as lf

GATES = """\
name: add_multiply_gates
force_backward: true
dtype: {dtype}
layers:
  - {{name: inputs, type: Input, top: [x, y, z], shape: [[1], [1], [1]]}}
  - {{name: q, type: Eltwise, operation: SUM, bottom: [x, y]}}
  - {{name: f, type: Eltwise, operation: PROD, bottom: [q, z]}}
"""

NEURON = """\
name: sigmoid_neuron
force_backward: true
dtype: {dtype}
layers:
  - {{name: x, type: Input, shape: [1, 2]}}
  - {{name: dot, type: InnerProduct, num_output: 1}}
  - {{name: f, type: Sigmoid}}
"""

TOL = {"float64": 1e-12, "float32": 1e-6}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_add_and_multiply_gates(tmp_path, dtype):
    path = tmp_path / "gates.yaml"
    path.write_text(GATES.format(dtype=dtype))
    net = lf.Net.from_yaml(path)
    x, y, z = -2.0, 5.0, -4.0
    out = net.forward({"x": [x], "y": [y], "z": [z]})
    assert list(out) == ["f"]
    np.testing.assert_allclose(out["f"], [(x + y) * z], rtol=TOL[dtype])
    assert out["f"][0] == -12
    net.backward({"f": [1.0]})
    diffs = {name: net.blobs[name].diff[0] for name in "xyzq"}
    expected = {"x": z, "y": z, "z": x + y, "q": z}
    for name, value in expected.items():
        np.testing.assert_allclose(diffs[name], value, rtol=TOL[dtype], err_msg=name)
    assert (diffs["x"], diffs["y"], diffs["z"]) == (-4, -4, 3)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sigmoid_neuron(tmp_path, dtype):
    path = tmp_path / "neuron.yaml"
    path.write_text(NEURON.format(dtype=dtype))
    net = lf.Net.from_yaml(path)
    w = np.array([2.0, -3.0, -3.0])
    x = np.array([-1.0, -2.0])
    net.params["dot"]["weight"].data[...] = [w[:2]]
    net.params["dot"]["bias"].data[...] = [w[2]]
    f = net.forward({"x": [x]})["f"][0, 0]

    s = w[0] * x[0] + w[1] * x[1] + w[2]
    f_ref = 1 / (1 + np.exp(-s))
    local = f_ref * (1 - f_ref)  # d sigmoid / ds
    np.testing.assert_allclose(f, f_ref, rtol=TOL[dtype])
    assert s == 1 and abs(f - 0.73) < 0.005

    net.backward({"f": [[1.0]]})
    dw = np.concatenate([net.params["dot"]["weight"].grad[0], net.params["dot"]["bias"].grad])
    dx = net.blobs["x"].diff[0]
    np.testing.assert_allclose(dw, local * np.array([x[0], x[1], 1.0]), rtol=TOL[dtype])
    np.testing.assert_allclose(dx, local * w[:2], rtol=TOL[dtype])
    np.testing.assert_allclose(dw, [-0.20, -0.39, 0.20], atol=0.005)  # the lecture's numbers
    np.testing.assert_allclose(dx, [0.39, -0.59], atol=0.005)
