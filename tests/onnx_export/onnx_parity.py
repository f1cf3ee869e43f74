"""ONNX Runtime against layerflow's forward: the helpers of the ONNX tests."""
from __future__ import annotations

import numpy as np

TOL = 1e-5  # float32: |onnx - layerflow| <= TOL * max(1, |layerflow|)


def randomize_params(net, seed: int = 0) -> None:
    """Params away from their fillers' zeros and ones: learnable ones normal(0, 0.5) (0.3 for
    big layers), the statistics a layer keeps itself positive (a variance must be)."""
    rng = np.random.default_rng(seed)
    for p in net.learnable_params():
        if p.learnable:
            std = 0.5 if p.data.size < 1000 else 0.05
            p.data[...] = rng.normal(0, std, p.data.shape)
        else:
            p.data[...] = rng.uniform(0.5, 2.0, p.data.shape)


def session(model):
    """An ONNX Runtime session of the model, after checking that every initializer is read by
    some node (ONNX Runtime drops and warns about each one that is not)."""
    import onnxruntime as ort

    used = {name for node in model.graph.node for name in node.input}
    unused = [init.name for init in model.graph.initializer if init.name not in used]
    assert not unused, f"initializers no node reads: {unused}"

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def max_diff(net, model, feeds_for, batches=(1, 5)) -> float:
    """Largest |onnx - layerflow| over the outputs and the batch sizes; asserts each is within
    TOL (relative to max(1, |value|)). `feeds_for(n)` gives the inputs of a batch of n."""
    sess = session(model)
    names = [o.name for o in model.graph.output]
    worst = 0.0
    for n in batches:
        feeds = feeds_for(n)
        ref = net.forward(feeds)
        got = sess.run(names, {i.name: feeds[i.name] for i in model.graph.input})
        for out, value in zip(net.outputs, got):
            expected = ref[out]
            assert value.shape == expected.shape, (out, n, value.shape, expected.shape)
            diff = np.abs(value.astype(np.float64) - expected)
            bound = TOL * np.maximum(1.0, np.abs(expected))
            assert (diff <= bound).all(), (f"output {out}, batch {n}: max |onnx - layerflow| "
                                           f"{diff.max():.3g}")
            worst = max(worst, float(diff.max(initial=0.0)))
    return worst
