"""Inference throughput: `layerflow predict` against PyTorch (`torch.inference_mode`) on the same
models, weights and inputs.

    python benchmarks/bench_predict.py            # writes benchmarks/RESULTS-predict.md
    python benchmarks/bench_predict.py --quick    # fewer repetitions

Models: the deploy nets of models/fashion_mnist_mlp and models/fashion_mnist_lenet (LeNet is
measured once that model and its layers exist). The PyTorch model is built from the same deploy
net, layer by layer (Transform -> (x - mean) * scale, InnerProduct -> Linear, Convolution ->
Conv2d, Pooling -> MaxPool2d/AvgPool2d with ceil_mode, ReLU, Softmax), with the same weights
(the net's initial ones: speed does not depend on the values); both outputs are compared on the
first batch before anything is timed.

Inputs: the Fashion-MNIST test images (10000, raw uint8, as an .npy file; random bytes if the
files are absent), float32 everywhere. Two measurements per framework, model and batch size:
  predict   the engine of `layerflow predict` (`layerflow.predict.predict` on the .npy: batches
            fed raw, the deploy forward, top-5 of each row, one result row per sample), timed
            by predict itself after its warm-up; PyTorch: the same loop (a batch converted to a
            float32 tensor, the model, softmax, topk, the same result rows) under
            torch.inference_mode, after one warm-up batch
  forward   the forward alone over the batches (net.forward / model(x))
Every measurement runs in a fresh process, the frameworks taken in turn, with the same number
of threads on both sides (NUMBA_NUM_THREADS, OPENBLAS/OMP/MKL_NUM_THREADS, torch.set_num_threads);
samples/s is the median over the repetitions, with the min-max range.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import thread_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = {"mlp": ROOT / "models" / "fashion_mnist_mlp" / "net.yaml",
          "lenet": ROOT / "models" / "fashion_mnist_lenet" / "net.yaml"}
FASHION_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
TOP_K = 5


# ---- the PyTorch twin of a deploy net ----------------------------------------------------

def torch_model(net):
    """A torch.nn.Module computing the deploy net `net` (a chain of layers), its weights."""
    import torch
    from torch import nn

    mods = []
    prev = net.inputs[0]
    for layer, bottoms, tops in net.wiring():
        if layer.is_input:
            continue
        if len(bottoms) != 1 or bottoms[0].name != prev:
            raise SystemExit(f"layer {layer.name}: the PyTorch twin takes a chain of layers")
        prev = tops[0].name
        p, t = layer.p, layer.type
        params = {k: torch.from_numpy(np.array(v.data)) for k, v in layer.params.items()}
        if t == "Transform":
            mods.append(_transform(torch.from_numpy(np.array(layer.mean)
                                                    .reshape(layer.sample_shape)), p.scale))
        elif t == "InnerProduct":
            m = nn.Linear(params["weight"].shape[1], p.num_output, bias=p.bias_term)
            m.weight.data.copy_(params["weight"])
            if p.bias_term:
                m.bias.data.copy_(params["bias"])
            mods += [nn.Flatten(p.axis), m]
        elif t == "ReLU" and p.negative_slope == 0:
            mods.append(nn.ReLU(inplace=True))
        elif t == "Softmax":
            mods.append(nn.Softmax(dim=p.axis))
        elif t == "Dropout":
            continue
        elif t == "Convolution":
            geom, w = layer.geom, params["weight"]
            m = nn.Conv2d(geom.channels, p.num_output, geom.kernel, stride=geom.stride,
                          padding=geom.pad, dilation=geom.dilation, groups=p.group,
                          bias=p.bias_term)
            m.weight.data.copy_(w)
            if p.bias_term:
                m.bias.data.copy_(params["bias"])
            mods.append(m)
        elif t == "Pooling" and p.pool in ("MAX", "AVE"):
            kh, kw, sh, sw, ph, pw = layer.window
            cls = nn.MaxPool2d if p.pool == "MAX" else nn.AvgPool2d
            mods.append(cls((kh, kw), (sh, sw), (ph, pw), ceil_mode=p.round_mode == "CEIL"))
        else:
            raise SystemExit(f"layer {layer.name} ({t}): no PyTorch twin in this benchmark")
    return nn.Sequential(*mods).eval()


def _transform(mean, scale):
    """(x - mean) * scale as a torch module: the Transform layer."""
    from torch import nn

    class Transform(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", mean.float())
            self.scale = float(scale)

        def forward(self, x):
            return (x - self.mean) * self.scale

    return Transform()


# ---- one measurement (a fresh process) ---------------------------------------------------

def worker(args) -> None:
    threads = args.threads
    import layerflow as lf
    from layerflow import predict as engine

    x_all = np.load(args.data)[: args.samples]
    out = {}
    if args.framework == "layerflow":
        result = engine.predict(args.net, args.weights, [args.data_slice], top_k=TOP_K,
                                batch_size=args.batch)
        assert result["samples"] == len(x_all)
        out["predict"] = result["samples_per_s"]
        net = lf.deploy_net(args.net, args.weights)
        feed = net.inputs[0]
        net.forward({feed: x_all[: args.batch].astype(np.float32)})
        t0 = time.perf_counter()
        for s in range(0, len(x_all), args.batch):
            net.forward({feed: x_all[s: s + args.batch]})
        out["forward"] = len(x_all) / (time.perf_counter() - t0)
    else:
        import torch

        torch.set_num_threads(threads)
        net = lf.deploy_net(args.net, args.weights)
        model = torch_model(net)
        names = [f"{args.data_slice}[{i}]" for i in range(len(x_all))]
        with torch.inference_mode():
            first = model(torch.from_numpy(x_all[: args.batch].astype(np.float32))).numpy()
            ref = net.forward({net.inputs[0]: x_all[: args.batch]})[net.outputs[0]]
            out["max_abs_diff"] = float(np.abs(first - ref).max())
            names_out, parts = [], []
            t0 = time.perf_counter()
            for s in range(0, len(x_all), args.batch):  # what layerflow.predict does per batch
                x = torch.from_numpy(x_all[s: s + args.batch].astype(np.float32))
                prob = model(x)
                vals, idx = torch.topk(prob, TOP_K, dim=1)
                names_out += names[s: s + args.batch]
                parts.append((np.full(len(x), -1), idx.numpy(), vals.numpy()))
            top = np.concatenate([p[1] for p in parts])
            out["predict"] = len(x_all) / (time.perf_counter() - t0)
            assert len(top) == len(names_out) == len(x_all)
            t0 = time.perf_counter()
            for s in range(0, len(x_all), args.batch):
                model(torch.from_numpy(x_all[s: s + args.batch].astype(np.float32)))
            out["forward"] = len(x_all) / (time.perf_counter() - t0)
    print(json.dumps(out))


def launch(argv, env) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", *argv], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker {' '.join(argv)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_inputs(folder: Path, samples: int) -> tuple[Path, str]:
    """The test images as raw uint8 (N, 1, 28, 28) in an .npy file."""
    path = folder / "test_images.npy"
    if FASHION_TEST.is_file():
        from layerflow.data import read_idx

        x = read_idx(FASHION_TEST)[:samples].reshape(-1, 1, 28, 28)
        what = f"Fashion-MNIST test images ({len(x)})"
    else:
        x = np.random.default_rng(0).integers(0, 256, (samples, 1, 28, 28), dtype=np.uint8)
        what = f"random uint8 images ({samples}; Fashion-MNIST is not installed)"
    np.save(path, x)
    return path, what


def initial_weights(net_path: Path, folder: Path) -> Path:
    import layerflow as lf
    from safetensors.numpy import save_file

    net = lf.deploy_net(net_path)
    path = folder / f"{net_path.parent.name}.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in net.state_dict().items()}, str(path))
    return path


def run(args) -> None:
    import layerflow  # noqa: F401  (fail early if it is not installed)
    import torch

    batches = [int(b) for b in args.batches.split(",")]
    reps = 3 if args.quick else args.repeat
    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    data, what = make_inputs(tmp, args.samples)
    lines = [f"# `layerflow predict` vs PyTorch inference (`torch.inference_mode`)", "",
             f"Written by `python benchmarks/bench_predict.py` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
             f"CPUs; {args.threads} thread(s) on both sides",
             f"- versions: python {platform.python_version()}, numpy {np.__version__}, "
             f"torch {torch.__version__}",
             f"- inputs: {what}, raw uint8 in an .npy file; float32 nets; top-{TOP_K}",
             f"- samples/s: median of {reps} fresh processes (min-max), frameworks in turn", ""]
    summary = []
    for model, net_path in MODELS.items():
        if not net_path.is_file():
            lines += [f"## {model}: skipped ({_shown(net_path)} does not exist yet)",
                      ""]
            continue
        weights = initial_weights(net_path, tmp)
        lines += [f"## {model} ({_shown(net_path.parent)})", "",
                  "| batch | measure | layerflow samples/s | PyTorch samples/s | layerflow x |",
                  "|---|---|---|---|---|"]
        for batch in batches:
            samples = min(args.samples, 2000) if batch == 1 else args.samples
            results = {"layerflow": [], "torch": []}
            for _ in range(reps):
                for fw in ("layerflow", "torch"):
                    argv = ["--framework", fw, "--net", str(net_path), "--weights",
                            str(weights), "--data", str(data), "--batch", str(batch),
                            "--samples", str(samples), "--threads", str(args.threads)]
                    results[fw].append(launch(argv, thread_env(args.threads)))
            diff = max(r["max_abs_diff"] for r in results["torch"])
            for measure in ("predict", "forward"):
                lf_rates = [r[measure] for r in results["layerflow"]]
                pt_rates = [r[measure] for r in results["torch"]]
                ratio = statistics.median(lf_rates) / statistics.median(pt_rates)
                lines.append(f"| {batch} | {measure} | {_rate(lf_rates)} | {_rate(pt_rates)} | "
                             f"{ratio:.2f} |")
                if measure == "predict":
                    summary.append((model, batch, ratio))
            print(f"{model} batch {batch}: done (max |torch - layerflow| {diff:.2g})",
                  file=sys.stderr)
        lines += ["", f"Outputs agree: max |PyTorch - layerflow| on the first batch "
                      f"{diff:.2g}.", ""]
    lines += ["## Target: layerflow predict >= 1.5x PyTorch", ""]
    lines += [f"- {m}, batch {b}: {r:.2f}x -> {'met' if r >= 1.5 else 'NOT met'}"
              for m, b, r in summary]
    out = Path(args.output)
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _rate(rates) -> str:
    med = statistics.median(rates)
    return f"{med / 1e3:.1f}k ({min(rates) / 1e3:.1f}k-{max(rates) / 1e3:.1f}k)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--framework")
    ap.add_argument("--net")
    ap.add_argument("--weights")
    ap.add_argument("--data")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,64,256", help="batch sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output", default=str(HERE / "RESULTS-predict.md"))
    args = ap.parse_args()
    if args.worker:
        args.data_slice = args.data if args.samples >= len(np.load(args.data, mmap_mode="r")) \
            else _slice(args.data, args.samples)
        worker(args)
    else:
        run(args)


def _slice(path: str, samples: int) -> str:
    """An .npy of the first `samples` samples (predict reads whole files)."""
    out = Path(path).with_name(f"first_{samples}.npy")
    if not out.exists():
        np.save(out, np.load(path)[:samples])
    return str(out)


if __name__ == "__main__":
    main()
