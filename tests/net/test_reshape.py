"""Reshape (Caffe's Net::Reshape): a net takes batches of any size, and a rejected shape leaves
it exactly as it was. Also the one param buffer the net keeps, and weight loading errors."""
from __future__ import annotations

import numpy as np
import pytest

import layerflow as lf
from layerflow import UserError

DEPLOY = """
name: deploy
dtype: float64
layers:
  - {name: data, type: Input, top: [data, label], shape: [[4, 1, 4, 4], [4]]}
  - {name: ip1, type: InnerProduct, num_output: 5, weight_filler: {type: gaussian, std: 0.5},
     bias_filler: {type: gaussian, std: 0.5}}
  - {name: relu1, type: ReLU, negative_slope: 0.1}
  - {name: ip2, type: InnerProduct, num_output: 3, weight_filler: {type: gaussian, std: 0.5}}
  - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
"""


def batch(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, 4, 4)), rng.integers(0, 3, size=n).astype(np.float64)


def run(net, x, y):
    out = net.forward({"data": x, "label": y})
    net.backward()
    return (out["loss"], net.blobs["ip2"].data.copy(), net.blobs["data"].diff,
            {f"{l}.{p}": q.grad.copy() for l, ps in net.params.items() for p, q in ps.items()})


def test_a_batch_4_net_takes_7_then_1_then_4_like_a_fresh_net():
    cfg = DEPLOY.replace("name: deploy", "name: deploy\nforce_backward: true")
    net = lf.Net.from_string(cfg)
    for n, seed in ((7, 1), (1, 2), (4, 3)):
        x, y = batch(n, seed)
        fresh = lf.Net.from_string(cfg.replace("[[4, 1, 4, 4], [4]]",
                                               f"[[{n}, 1, 4, 4], [{n}]]"))
        loss, scores, dx, grads = run(net, x, y)
        loss0, scores0, dx0, grads0 = run(fresh, x, y)
        assert net.blobs["data"].shape == (n, 1, 4, 4) and scores.shape == (n, 3)
        assert loss == loss0
        np.testing.assert_array_equal(scores, scores0)
        np.testing.assert_array_equal(dx, dx0)
        for key in grads0:
            np.testing.assert_array_equal(grads[key], grads0[key])


def test_a_rejected_shape_leaves_the_net_as_it_was():
    net = lf.Net.from_string(DEPLOY.replace("[[4, 1, 4, 4], [4]]", "[[1, 1, 4, 4], [1]]"))
    x, y = batch(1, 5)
    good = net.forward({"data": x, "label": y})["loss"]
    weights = {k: v.copy() for k, v in net.state_dict().items()}
    big = np.zeros((1, 1, 6, 6))  # 36 inputs for an InnerProduct made for 16
    with pytest.raises(UserError) as err:
        net.forward({"data": big, "label": y})
    msg = str(err.value)
    assert "(1, 1, 6, 6)" in msg and "(1, 1, 4, 4)" in msg and "(ip1)" in msg
    assert "keeps its previous shapes" in msg
    assert net.blobs["data"].shape == (1, 1, 4, 4)
    # a bare forward reuses the last good batch, as if nothing had happened
    assert net.forward()["loss"] == good
    np.testing.assert_array_equal(net.blobs["data"].data, x)
    # and a good batch of another size still works
    x2, y2 = batch(3, 6)
    assert net.forward({"data": x2, "label": y2})["loss"] > 0
    assert net.blobs["ip1"].shape == (3, 5)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, weights[k])


def test_feeding_only_some_inputs_is_an_error():
    net = lf.Net.from_string(DEPLOY)
    x, y = batch(4, 0)
    net.forward({"data": x, "label": y})
    with pytest.raises(UserError, match=r"no value given for input 'label'"):
        net.forward({"data": x})


def test_params_are_views_of_one_buffer():
    net = lf.Net.from_string(DEPLOY)
    buf = net.param_buffer
    names = [p.owner for p in buf.params]
    assert names == ["ip1.weight", "ip1.bias", "ip2.weight", "ip2.bias"]
    assert buf.data.size == 5 * 16 + 5 + 3 * 5 + 3
    for i, p in enumerate(buf.params):
        assert np.shares_memory(p.data, buf.data) and np.shares_memory(p.grad, buf.grad)
        np.testing.assert_array_equal(buf.data[buf.segment(i)], p.data.reshape(-1))
    net.params["ip2"]["bias"].data[...] = [1, 2, 3]
    np.testing.assert_array_equal(buf.data[-3:], [1, 2, 3])
    x, y = batch(4, 0)
    net.forward({"data": x, "label": y})
    net.backward()
    assert buf.grad.any()
    net.clear_param_diffs()
    assert not buf.grad.any()


def test_a_test_net_shares_the_train_nets_buffer():
    cfg = DEPLOY + "  - {name: acc, type: Accuracy, bottom: [ip2, label], include: {phase: test}}\n"
    train = lf.Net.from_string(cfg)
    test = lf.Net(train.config, "test", share_params_with=train)
    assert test.params["ip1"]["weight"] is train.params["ip1"]["weight"]
    assert test.param_buffer.size == 0  # nothing of its own: every param is the train net's


def test_loading_weights_lists_every_mismatch_in_net_order():
    net = lf.Net.from_string(DEPLOY)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    weights = {"ip2.weight": np.zeros((4, 5)), "ip1.bias": np.zeros(6),
               "ip1.weight": np.ones((5, 16))}
    for _ in range(3):  # the same message every time, whatever the order of the file
        with pytest.raises(UserError) as err:
            net.copy_from(dict(reversed(list(weights.items()))), "w.safetensors")
        assert str(err.value).startswith(
            "w.safetensors: layer ip1: param bias has shape (6,) in the file but (5,) in the "
            "net; layer ip2: param weight has shape (4, 5) in the file but (3, 5) in the net")
        assert str(err.value).endswith(
            "; to initialize ip1 and ip2 afresh instead, rename them in the net (e.g. "
            "ip1_new): weights are matched by layer name")
    for k, v in net.state_dict().items():  # nothing was copied
        np.testing.assert_array_equal(v, before[k])


def test_loss_weight_on_a_layer_without_gradient_is_an_error():
    cfg = DEPLOY + ("  - {name: acc, type: Accuracy, bottom: [ip2, label], "
                    "loss_weight: 1}\n")
    with pytest.raises(UserError, match=r"layers\[5\] \(acc\): loss_weight on an Accuracy layer, "
                                        r"which has no gradient"):
        lf.Net.from_string(cfg)
