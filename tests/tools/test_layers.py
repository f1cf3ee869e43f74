"""`layerflow layers [TYPE]`: registered types with their origin; one type's keys."""
from __future__ import annotations

import json

from layerflow.registry import LAYERS


def test_list_has_every_builtin_with_origin(cli):
    r = cli("layers", "--json")
    assert r.code == 0
    types = {t["type"]: t for t in json.loads(r.out)["types"]}
    assert set(LAYERS.names()) <= set(types)
    ip = types["InnerProduct"]
    assert ip["origin"] == "built-in (layerflow.layers.inner_product)"
    assert (ip["bottoms"], ip["tops"], ip["loss"]) == ("1", "1", False)
    assert types["SoftmaxLoss"]["loss"] and types["Input"]["bottoms"] == "0"
    assert ip["summary"].startswith("InnerProduct: a fully connected layer")
    text = cli("layers").out
    assert text.splitlines()[0].split() == ["type", "bottoms", "tops", "from", "what"]


def test_one_type_params_with_nested_fillers(cli):
    r = cli("layers", "InnerProduct", "--json")
    d = json.loads(r.out)
    keys = {p["key"]: p for p in d["params"]}
    assert keys["num_output"] == {"key": "num_output", "type": "int", "default": None,
                                  "required": True, "description": "number of outputs M"}
    assert keys["bias_term"]["default"] is True and keys["bias_term"]["type"] == "bool"
    assert keys["weight_filler"]["type"] == "FillerSpec"
    assert keys["weight_filler"]["default"] == {"type": "xavier"}
    # nested keys carry the defaults of the parent's default
    assert keys["weight_filler.type"]["default"] == "xavier"
    assert keys["bias_filler.type"]["default"] == "constant"
    assert keys["weight_filler.std"]["description"] == "gaussian: standard deviation"
    assert keys["weight_filler.type"]["type"] == ("constant | uniform | gaussian | xavier | msra | "
                                                  "bilinear | positive_unitball")
    text = cli("layers", "InnerProduct").out
    assert "num_output" in text and "(required)" in text and "{type: xavier}" in text
    assert "plus the keys of every layer: name, type, bottom, top" in text


def test_layer_without_keys(cli):
    r = cli("layers", "Sigmoid")
    assert r.code == 0 and "(no keys of its own)" in r.out


def test_unknown_type(cli):
    r = cli("layers", "Relu")
    assert r.code == 2 and r.err.startswith(
        'error: unknown type "Relu" (did you mean the layer type "ReLU"?); layer types: '
        'AbsVal, Accuracy, ')
    assert "; solver types: AdaDelta, " in r.err and "; lr_policy types: exp, " in r.err
    r = cli("layers", "Sgd")
    assert r.code == 2 and '(did you mean the solver type "SGD"?)' in r.err
    r = cli("layers", "--kind", "layer", "Relu")
    assert r.code == 2 and 'unknown layer type "Relu" (did you mean "ReLU"?)' in r.err


def test_solver_and_lr_policy_names_are_found_without_kind(cli):
    """`layerflow layers SGD` is the SGD solver, not a suggestion of "Sigmoid"."""
    r = cli("layers", "SGD")
    assert r.code == 0 and r.out.startswith("SGD (solver), from built-in")
    assert "base_lr" in r.out
    r = cli("layers", "step")
    assert r.code == 0 and r.out.startswith("step (lr_policy), from built-in")
    assert "needs the solver keys: gamma, stepsize" in r.out
    r = cli("layers", "--kind", "layer", "SGD")
    assert r.code == 2 and r.err == ("error: SGD is a solver type, not a layer type: use "
                                     "`layerflow layers SGD` (or --kind solver)\n")
    r = cli("layers", "--kind", "solver", "step")
    assert r.code == 2 and "step is an lr_policy type, not a solver type" in r.err


def test_solvers_and_lr_policies(cli):
    solvers = json.loads(cli("layers", "--kind", "solver", "--json").out)
    assert "SGD" in {t["type"] for t in solvers["types"]}
    policy = json.loads(cli("layers", "step", "--kind", "lr_policy", "--json").out)
    assert policy["requires"] == ["gamma", "stepsize"]
    assert "gamma ^ floor(iter / stepsize)" in policy["doc"]
    sgd = json.loads(cli("layers", "SGD", "--kind", "solver", "--json").out)
    assert "base_lr" in {p["key"] for p in sgd["params"]}
