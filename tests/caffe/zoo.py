"""Nets and solvers in the shape and layer mix of Caffe's published examples and models,
written for these tests (not copies of Caffe's files): the tests write them to a temporary
folder and convert, build and train them.

    LENET_*         examples/mnist: lenet_train_test, lenet_solver, lenet (deploy, legacy input)
    CIFAR_QUICK     examples/cifar10/cifar10_quick_train_test
    CIFAR_FULL      examples/cifar10/cifar10_full_train_test (LRN WITHIN_CHANNEL, decay_mult 250)
    ALEXNET         models/bvlc_alexnet/deploy (conv, LRN, then pool; groups 2)
    CAFFENET        models/bvlc_reference_caffenet/deploy (pool, then LRN)
    GOOGLENET       models/bvlc_googlenet/deploy, stem and two inception modules
    AUTOENCODER_*   examples/mnist/mnist_autoencoder and its solver (stages, test_state x2)
    SIAMESE         examples/siamese/mnist_siamese_train_test (Slice, shared params, Contrastive)
    HDF5_CLASSIFY   examples/hdf5_classification nonlinear net (HDF5Data)
"""

LENET_TRAIN_TEST = """
# In the shape of Caffe's examples/mnist/lenet_train_test.prototxt (written for layerflow's tests)
name: "LeNet"
layer {
  name: "mnist"
  type: "Data"
  top: "data"
  top: "label"
  include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "digits_train_lmdb" batch_size: 16 backend: LMDB }
}
layer {
  name: "mnist"
  type: "Data"
  top: "data"
  top: "label"
  include { phase: TEST }
  transform_param { scale: 0.00390625 }
  data_param { source: "digits_test_lmdb" batch_size: 16 backend: LMDB }
}
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param { lr_mult: 1 }
  param { lr_mult: 2 }
  convolution_param {
    num_output: 20
    kernel_size: 5
    stride: 1
    weight_filler { type: "xavier" }
    bias_filler { type: "constant" }
  }
}
layer {
  name: "pool1"
  type: "Pooling"
  bottom: "conv1"
  top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 }
}
layer {
  name: "conv2"
  type: "Convolution"
  bottom: "pool1"
  top: "conv2"
  param { lr_mult: 1 }
  param { lr_mult: 2 }
  convolution_param {
    num_output: 50
    kernel_size: 5
    stride: 1
    weight_filler { type: "xavier" }
    bias_filler { type: "constant" }
  }
}
layer {
  name: "pool2"
  type: "Pooling"
  bottom: "conv2"
  top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 }
}
layer {
  name: "ip1"
  type: "InnerProduct"
  bottom: "pool2"
  top: "ip1"
  param { lr_mult: 1 }
  param { lr_mult: 2 }
  inner_product_param {
    num_output: 500
    weight_filler { type: "xavier" }
    bias_filler { type: "constant" }
  }
}
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer {
  name: "ip2"
  type: "InnerProduct"
  bottom: "ip1"
  top: "ip2"
  param { lr_mult: 1 }
  param { lr_mult: 2 }
  inner_product_param {
    num_output: 10
    weight_filler { type: "xavier" }
    bias_filler { type: "constant" }
  }
}
layer {
  name: "accuracy"
  type: "Accuracy"
  bottom: "ip2"
  bottom: "label"
  top: "accuracy"
  include { phase: TEST }
}
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

LENET_SOLVER = """
# In the shape of Caffe's examples/mnist/lenet_solver.prototxt
net: "lenet_train_test.prototxt"
test_iter: 2
test_interval: 50
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 25
max_iter: 100
snapshot: 100
snapshot_prefix: "lenet"
solver_mode: GPU
"""

LENET_DEPLOY = """
# In the shape of Caffe's examples/mnist/lenet.prototxt (deploy), legacy input fields
name: "LeNet"
input: "data"
input_shape { dim: 64 dim: 1 dim: 28 dim: 28 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 20 kernel_size: 5 stride: 1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 50 kernel_size: 5 stride: 1 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" inner_product_param { num_output: 500 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }
"""


def conv(name, bottom, num_output, kernel, stride=1, pad=0, group=1, top=None,
         std=None, params=True):
    """A Convolution layer block (optionally with the usual lr_mult 1/2 params)."""
    filler = f'weight_filler {{ type: "gaussian" std: {std} }}' if std else \
        'weight_filler { type: "xavier" }'
    extra = (f" pad: {pad}" if pad else "") + (f" group: {group}" if group > 1 else "") + \
        (f" stride: {stride}" if stride > 1 else "")
    ps = ("  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }\n"
          if params else "")
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" '
            f'top: "{top or name}"\n{ps}'
            f'  convolution_param {{ num_output: {num_output} kernel_size: {kernel}{extra}\n'
            f'    {filler} bias_filler {{ type: "constant" value: 0.1 }} }} }}\n')


def relu(name, blob):
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}\n'


def pool(name, bottom, kernel, stride, method="MAX", pad=0, top=None):
    p = f" pad: {pad}" if pad else ""
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{top or name}"\n'
            f'  pooling_param {{ pool: {method} kernel_size: {kernel} stride: {stride}{p} }} }}\n')


def lrn(name, bottom, size=5, alpha=0.0001, beta=0.75, region=None):
    r = f" norm_region: {region}" if region else ""
    return (f'layer {{ name: "{name}" type: "LRN" bottom: "{bottom}" top: "{name}"\n'
            f'  lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta}{r} }} }}\n')


def fc(name, bottom, num_output, std=0.005, top=None):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" '
            f'top: "{top or name}"\n'
            f'  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}\n'
            f'  inner_product_param {{ num_output: {num_output}\n'
            f'    weight_filler {{ type: "gaussian" std: {std} }} '
            f'bias_filler {{ type: "constant" value: 0.1 }} }} }}\n')


def data_layers(train_source, test_source, batch=8, scale=None, mean_file=None):
    tp = ""
    if scale or mean_file:
        tp = "  transform_param {" + (f" scale: {scale}" if scale else "") + \
            (f' mean_file: "{mean_file}"' if mean_file else "") + " }\n"
    out = ""
    for phase, source in (("TRAIN", train_source), ("TEST", test_source)):
        out += (f'layer {{ name: "data" type: "Data" top: "data" top: "label"\n'
                f'  include {{ phase: {phase} }}\n{tp}'
                f'  data_param {{ source: "{source}" batch_size: {batch} backend: LMDB }} }}\n')
    return out


LOSS_AND_ACCURACY = """
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

# CIFAR-10 quick: conv/pool/relu x3 (MAX then AVE pooling), ip1 64, ip2 10
CIFAR_QUICK = ('name: "CIFAR10_quick"\n'
               + data_layers("cifar_train_lmdb", "cifar_test_lmdb", mean_file="mean.binaryproto")
               + conv("conv1", "data", 32, 5, pad=2, std=0.0001)
               + pool("pool1", "conv1", 3, 2) + relu("relu1", "pool1")
               + conv("conv2", "pool1", 32, 5, pad=2, std=0.01) + relu("relu2", "conv2")
               + pool("pool2", "conv2", 3, 2, "AVE")
               + conv("conv3", "pool2", 64, 5, pad=2, std=0.01) + relu("relu3", "conv3")
               + pool("pool3", "conv3", 3, 2, "AVE")
               + fc("ip1", "pool3", 64, std=0.1) + fc("ip2", "ip1", 10, std=0.1)
               + LOSS_AND_ACCURACY)

# CIFAR-10 full: LRN WITHIN_CHANNEL after the first two pools, ip1 with decay_mult 250
CIFAR_FULL = ('name: "CIFAR10_full"\n'
              + data_layers("cifar_train_lmdb", "cifar_test_lmdb", mean_file="mean.binaryproto")
              + conv("conv1", "data", 32, 5, pad=2, std=0.0001)
              + pool("pool1", "conv1", 3, 2) + relu("relu1", "pool1")
              + lrn("norm1", "pool1", 3, 5e-05, 0.75, "WITHIN_CHANNEL")
              + conv("conv2", "norm1", 32, 5, pad=2, std=0.01) + relu("relu2", "conv2")
              + pool("pool2", "conv2", 3, 2, "AVE")
              + lrn("norm2", "pool2", 3, 5e-05, 0.75, "WITHIN_CHANNEL")
              + conv("conv3", "norm2", 64, 5, pad=2, std=0.01) + relu("relu3", "conv3")
              + pool("pool3", "conv3", 3, 2, "AVE")
              + fc("ip1", "pool3", 10, std=0.01).replace(
                  "param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }",
                  "param { lr_mult: 1 decay_mult: 250 } param { lr_mult: 2 decay_mult: 0 }")
              .replace('top: "ip1"', 'top: "ip2"').replace('name: "ip1"', 'name: "ip2"')
              + LOSS_AND_ACCURACY)

_DEPLOY_INPUT = """layer { name: "data" type: "Input" top: "data"
  input_param { shape: { dim: 1 dim: 3 dim: 227 dim: 227 } } }
"""

_ALEX_TAIL = (conv("conv3", "{p2}", 384, 3, pad=1) + relu("relu3", "conv3")
              + conv("conv4", "conv3", 384, 3, pad=1, group=2) + relu("relu4", "conv4")
              + conv("conv5", "conv4", 256, 3, pad=1, group=2) + relu("relu5", "conv5")
              + pool("pool5", "conv5", 3, 2)
              + fc("fc6", "pool5", 4096) + relu("relu6", "fc6")
              + 'layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" '
                'dropout_param { dropout_ratio: 0.5 } }\n'
              + fc("fc7", "fc6", 4096) + relu("relu7", "fc7")
              + 'layer { name: "drop7" type: "Dropout" bottom: "fc7" top: "fc7" '
                'dropout_param { dropout_ratio: 0.5 } }\n'
              + fc("fc8", "fc7", 1000, std=0.01)
              + 'layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }\n')

# AlexNet: conv -> relu -> LRN -> pool
ALEXNET = ('name: "AlexNet"\n' + _DEPLOY_INPUT
           + conv("conv1", "data", 96, 11, stride=4) + relu("relu1", "conv1")
           + lrn("norm1", "conv1") + pool("pool1", "norm1", 3, 2)
           + conv("conv2", "pool1", 256, 5, pad=2, group=2) + relu("relu2", "conv2")
           + lrn("norm2", "conv2") + pool("pool2", "norm2", 3, 2)
           + _ALEX_TAIL.replace("{p2}", "pool2"))

# CaffeNet: conv -> relu -> pool -> LRN
CAFFENET = ('name: "CaffeNet"\n' + _DEPLOY_INPUT
            + conv("conv1", "data", 96, 11, stride=4) + relu("relu1", "conv1")
            + pool("pool1", "conv1", 3, 2) + lrn("norm1", "pool1")
            + conv("conv2", "norm1", 256, 5, pad=2, group=2) + relu("relu2", "conv2")
            + pool("pool2", "conv2", 3, 2) + lrn("norm2", "pool2")
            + _ALEX_TAIL.replace("{p2}", "norm2"))


def inception(name, bottom, n1, n3r, n3, n5r, n5, npool):
    """A GoogLeNet inception module: 1x1, 1x1->3x3, 1x1->5x5 and pool->1x1, concatenated."""
    p = f"{name}/"
    return (conv(p + "1x1", bottom, n1, 1) + relu(p + "relu_1x1", p + "1x1")
            + conv(p + "3x3_reduce", bottom, n3r, 1) + relu(p + "relu_3x3_reduce", p + "3x3_reduce")
            + conv(p + "3x3", p + "3x3_reduce", n3, 3, pad=1) + relu(p + "relu_3x3", p + "3x3")
            + conv(p + "5x5_reduce", bottom, n5r, 1) + relu(p + "relu_5x5_reduce", p + "5x5_reduce")
            + conv(p + "5x5", p + "5x5_reduce", n5, 5, pad=2) + relu(p + "relu_5x5", p + "5x5")
            + pool(p + "pool", bottom, 3, 1, pad=1)
            + conv(p + "pool_proj", p + "pool", npool, 1) + relu(p + "relu_pool_proj", p + "pool_proj")
            + f'layer {{ name: "{p}output" type: "Concat" bottom: "{p}1x1" bottom: "{p}3x3" '
              f'bottom: "{p}5x5" bottom: "{p}pool_proj" top: "{p}output" }}\n')


GOOGLENET = ('name: "GoogleNet"\n'
             + 'layer { name: "data" type: "Input" top: "data"\n'
               '  input_param { shape: { dim: 1 dim: 3 dim: 224 dim: 224 } } }\n'
             + conv("conv1/7x7_s2", "data", 64, 7, stride=2, pad=3) + relu("conv1/relu_7x7", "conv1/7x7_s2")
             + pool("pool1/3x3_s2", "conv1/7x7_s2", 3, 2)
             + lrn("pool1/norm1", "pool1/3x3_s2")
             + conv("conv2/3x3_reduce", "pool1/norm1", 64, 1) + relu("conv2/relu_3x3_reduce", "conv2/3x3_reduce")
             + conv("conv2/3x3", "conv2/3x3_reduce", 192, 3, pad=1) + relu("conv2/relu_3x3", "conv2/3x3")
             + lrn("conv2/norm2", "conv2/3x3")
             + pool("pool2/3x3_s2", "conv2/norm2", 3, 2)
             + inception("inception_3a", "pool2/3x3_s2", 64, 96, 128, 16, 32, 32)
             + inception("inception_3b", "inception_3a/output", 128, 128, 192, 32, 96, 64)
             + pool("pool3/3x3_s2", "inception_3b/output", 3, 2)
             + 'layer { name: "pool5/7x7_s1" type: "Pooling" bottom: "pool3/3x3_s2" '
               'top: "pool5/7x7_s1" pooling_param { pool: AVE global_pooling: true } }\n'
             + fc("loss3/classifier", "pool5/7x7_s1", 1000)
             + 'layer { name: "prob" type: "Softmax" bottom: "loss3/classifier" top: "prob" }\n')


def _sig(name, bottom, top):
    return f'layer {{ name: "{name}" type: "Sigmoid" bottom: "{bottom}" top: "{top}" }}\n'


def _ae_fc(name, bottom, n):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}"\n'
            f'  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 1 decay_mult: 0 }}\n'
            f'  inner_product_param {{ num_output: {n}\n'
            f'    weight_filler {{ type: "gaussian" std: 1 sparse: 15 }}\n'
            f'    bias_filler {{ type: "constant" value: 0 }} }} }}\n')


# The MNIST autoencoder: one train data layer and two test ones chosen by stage; a sparse
# gaussian encoder 1000-500-250-30 and decoder; a SigmoidCrossEntropyLoss trained on and a
# EuclideanLoss reported with loss_weight 0
AUTOENCODER = ('name: "MNISTAutoencoder"\n'
               + 'layer { name: "data" type: "Data" top: "data" include { phase: TRAIN }\n'
                 '  transform_param { scale: 0.0039215684 }\n'
                 '  data_param { source: "digits_train_lmdb" batch_size: 10 backend: LMDB } }\n'
               + 'layer { name: "data" type: "Data" top: "data"\n'
                 '  include { phase: TEST stage: "test-on-train" }\n'
                 '  transform_param { scale: 0.0039215684 }\n'
                 '  data_param { source: "digits_train_lmdb" batch_size: 10 backend: LMDB } }\n'
               + 'layer { name: "data" type: "Data" top: "data"\n'
                 '  include { phase: TEST stage: "test-on-test" }\n'
                 '  transform_param { scale: 0.0039215684 }\n'
                 '  data_param { source: "digits_test_lmdb" batch_size: 10 backend: LMDB } }\n'
               + 'layer { name: "flatdata" type: "Flatten" bottom: "data" top: "flatdata" }\n'
               + _ae_fc("encode1", "data", 1000) + _sig("encode1neuron", "encode1", "encode1neuron")
               + _ae_fc("encode2", "encode1neuron", 500) + _sig("encode2neuron", "encode2", "encode2neuron")
               + _ae_fc("encode3", "encode2neuron", 250) + _sig("encode3neuron", "encode3", "encode3neuron")
               + _ae_fc("encode4", "encode3neuron", 30)
               + _ae_fc("decode4", "encode4", 250) + _sig("decode4neuron", "decode4", "decode4neuron")
               + _ae_fc("decode3", "decode4neuron", 500) + _sig("decode3neuron", "decode3", "decode3neuron")
               + _ae_fc("decode2", "decode3neuron", 1000) + _sig("decode2neuron", "decode2", "decode2neuron")
               + _ae_fc("decode1", "decode2neuron", "{pixels}")
               + 'layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "decode1" '
                 'bottom: "flatdata" top: "cross_entropy_loss" loss_weight: 1 }\n'
               + _sig("decode1neuron", "decode1", "decode1neuron")
               + 'layer { name: "loss" type: "EuclideanLoss" bottom: "decode1neuron" '
                 'bottom: "flatdata" top: "l2_error" loss_weight: 0 }\n')

AUTOENCODER_SOLVER = """
net: "autoencoder.prototxt"
test_state: { stage: 'test-on-train' }
test_iter: 2
test_state: { stage: 'test-on-test' }
test_iter: 2
test_interval: 10
test_compute_loss: true
base_lr: 0.01
lr_policy: "step"
gamma: 0.1
stepsize: 10000
display: 5
max_iter: 20
weight_decay: 0.0005
snapshot: 20
snapshot_prefix: "autoencoder"
momentum: 0.9
solver_mode: GPU
"""

# The siamese net: pairs stacked on the channel axis, sliced apart, two towers sharing every
# param by name, a 2-D feature each, ContrastiveLoss on the pair
def _tower(suffix):
    s = suffix
    def named(layer_text, pname):
        return layer_text.replace("param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }",
                                  f'param {{ name: "{pname}_w" lr_mult: 1 }} param {{ name: "{pname}_b" lr_mult: 2 }}')
    return (named(conv(f"conv1{s}", f"data{s}", 20, 5), "conv1")
            + pool(f"pool1{s}", f"conv1{s}", 2, 2)
            + named(conv(f"conv2{s}", f"pool1{s}", 50, 5), "conv2")
            + pool(f"pool2{s}", f"conv2{s}", 2, 2)
            + named(fc(f"ip1{s}", f"pool2{s}", 500), "ip1") + relu(f"relu1{s}", f"ip1{s}")
            + named(fc(f"ip2{s}", f"ip1{s}", 10), "ip2")
            + named(fc(f"feat{s}", f"ip2{s}", 2), "feat"))


SIAMESE = ('name: "mnist_siamese_train_test"\n'
           + 'layer { name: "pair_data" type: "Data" top: "pair_data" top: "sim"\n'
             '  transform_param { scale: 0.00390625 }\n'
             '  data_param { source: "pairs_lmdb" batch_size: 8 backend: LMDB } }\n'
           + 'layer { name: "slice_pair" type: "Slice" bottom: "pair_data" top: "data" top: "data_p"\n'
             '  slice_param { slice_dim: 1 slice_point: 1 } }\n'
           + _tower("") + _tower("_p")
           + 'layer { name: "loss" type: "ContrastiveLoss" bottom: "feat" bottom: "feat_p" '
             'bottom: "sim" top: "loss" contrastive_loss_param { margin: 1 } }\n')

# examples/hdf5_classification: HDF5Data of a source list, a two-layer classifier
HDF5_CLASSIFY = """
name: "LogisticRegressionNet"
layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TRAIN }
  hdf5_data_param { source: "hdf5_classification/data/train.txt" batch_size: 10 } }
layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TEST }
  hdf5_data_param { source: "hdf5_classification/data/test.txt" batch_size: 10 } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 1 decay_mult: 0 }
  inner_product_param { num_output: 40 weight_filler { type: "gaussian" std: 0.01 }
    bias_filler { type: "constant" value: 0 } } }
layer { name: "relu1" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 1 decay_mult: 0 }
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.01 }
    bias_filler { type: "constant" value: 0 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "fc2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
"""
