"""Benchmarks, in one run on one machine, with the same data, device and thread count:
  (a) the reference PyTorch program (scripts/pytorch_reference.py: torchvision DataLoader),
  (b) a well-written PyTorch loop over resident tensors (scripts/pytorch_resident.py),
  (c) tch-cifar10 (release build), --kernels reference,
  (d) tch-cifar10 --kernels fast,
  (e) (b) with --channels-last, PyTorch's own fast CPU layout,
  (f) tch-cifar10 --kernels fast --augment crop-flip (the crop and flip done while the batch is
      packed into the kernels' lanes),
one after the other (never two at once), --rounds times in turn (a b c d e a b c d e ...), so
that a slow spell of a shared machine hits every program alike. For each: seconds per epoch
(median over rounds of each run's median of epochs 2..N, so start-up and first-epoch warm-up are
left out), the spread (min..max of those medians), images per second, peak resident memory (the
process's own ru_maxrss, from wait4), and the fraction of the machine's fp32 peak it reaches.

The peak: a 2048 x 2048 x 2048 float32 matmul in libtorch (the venv's torch, the same kernels and
--threads), best of 5. The work: one training image costs 3,204,720 FLOP (a multiply-add is 2):
forward 1,303,440 = conv1 2*6*28*28*(3*5*5) 705,600 + conv2 2*16*10*10*(6*5*5) 480,000 + fc1
2*400*120 96,000 + fc2 2*120*84 20,160 + fc3 2*84*10 1,680; backward, the weight gradients the
same 1,303,440 again and the input gradients of every layer but conv1 (whose input needs none)
597,840. An epoch of 50,000 images: 160.2 GFLOP (pooling, ReLU, loss and the update are noise).

Prints the ratios against the targets: c/a time <= 0.45 (<= 0.2 on CUDA), c/b time <= 0.95, c/a
peak memory <= 0.45; d/c time <= 0.6, d/b time <= 0.6, d/e time <= 0.9, d/c peak memory <= 1.0; f/d time <= 1.1
(augmentation costs the fast mode at most a tenth).
Started by scripts/bench; writes bench.json and each program's output into --out.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cifar_layouts  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = {
    "a": "PyTorch reference (DataLoader)",
    "b": "PyTorch, resident tensors",
    "c": "tch-cifar10",
    "d": "tch-cifar10 --kernels fast",
    "e": "PyTorch, resident, channels-last",
    "f": "tch-cifar10 --kernels fast --augment crop-flip",
}
# FLOP of one training image, forward and backward (see the module doc).
FLOP_PER_IMAGE = 2 * 1_303_440 + 597_840


def die(msg):
    print(f"bench: error: {msg}", file=sys.stderr)
    sys.exit(2)


def run_measured(cmd, log):
    """Runs cmd with output to log; returns (exit status, wall seconds, peak RSS in bytes)."""
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss * 1024  # ru_maxrss is KiB on Linux


def epoch_records(path):
    """The records of a metrics.jsonl file (one per epoch)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def matmul_peak(threads):
    """FLOP/s of the best of 5 float32 2048^3 matmuls in libtorch on the CPU, with `threads`."""
    code = ("import sys, time, torch\n"
            "t = int(sys.argv[1])\n"
            "if t: torch.set_num_threads(t)\n"
            "a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)\n"
            "a @ b\n"
            "best = min((lambda t0: (a @ b, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(5))\n"
            "print(2 * 2048 ** 3 / best)\n")
    out = subprocess.run([sys.executable, "-c", code, str(threads or 0)], capture_output=True, text=True, check=True)
    return float(out.stdout)


def machine(device):
    info = {"python": platform.python_version(), "platform": platform.platform(), "logical_cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = models[0] if models else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        import torch
        info["torch"] = torch.__version__
        if device.startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    except ImportError:
        pass
    return info


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data-dir", default="data", help="folder with cifar-10-batches-bin/ and/or cifar-10-batches-py/ (a missing layout is converted into --out) [data]")
    p.add_argument("--synthetic", action="store_true", help="use random CIFAR-shaped data made in --out instead of --data-dir")
    p.add_argument("--synthetic-size", type=int, nargs=2, default=[50000, 10000], metavar=("TRAIN", "TEST"), help="images of the synthetic splits [50000 10000]")
    p.add_argument("--epochs", type=int, default=5, help="epochs per program; the median of epochs 2..N is reported [5]")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [cpu]")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for all three [their default: the physical cores]")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed for all three [0]")
    p.add_argument("--programs", default="abcdef", help="which to run, a subset of abcdef [abcdef]")
    p.add_argument("--rounds", type=int, default=1, help="run the programs in turn this many times [1]")
    p.add_argument("--bin", default=None, help="the tch-cifar10 binary [build and use target/release/tch-cifar10]")
    p.add_argument("--out", default=None, help="where bench.json and the programs' outputs go [a temporary folder]")
    args = p.parse_args(argv)
    if args.epochs < 1 or (args.threads is not None and args.threads < 1):
        p.error("--epochs and --threads must be at least 1")
    if not args.programs or set(args.programs) - set(PROGRAMS):
        p.error(f"--programs takes letters of abcdef, got {args.programs!r}")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    args.programs = "".join(dict.fromkeys(args.programs))  # each once, in the order given
    if args.epochs < 2:
        print("bench: warning: with --epochs 1 the figure is the first epoch's, warm-up included", file=sys.stderr)

    out = args.out or tempfile.mkdtemp(prefix="bench.")
    os.makedirs(out, exist_ok=True)
    py_data = tch_data = args.data_dir
    try:
        if args.synthetic:
            data = os.path.join(out, "synthetic")
            shutil.rmtree(data, ignore_errors=True)
            splits, classes = cifar_layouts.synthetic_splits(*args.synthetic_size, seed=0)
            cifar_layouts.write_bin(data, splits, classes)
            cifar_layouts.write_py(data, splits, classes)
            del splits
            py_data = tch_data = data
        else:
            has_bin = os.path.isdir(os.path.join(args.data_dir, cifar_layouts.BIN))
            has_py = os.path.isdir(os.path.join(args.data_dir, cifar_layouts.PY))
            if not (has_bin or has_py):
                die(f"{args.data_dir} holds neither {cifar_layouts.BIN}/ nor {cifar_layouts.PY}/ (or pass --synthetic)")
            conv = os.path.join(out, "data")
            if not has_py and set(args.programs) & {"a", "b"}:
                shutil.rmtree(conv, ignore_errors=True)
                cifar_layouts.write_py(conv, *cifar_layouts.read_bin(args.data_dir))
                py_data = conv
            if not has_bin:
                shutil.rmtree(conv, ignore_errors=True)
                cifar_layouts.write_bin(conv, *cifar_layouts.read_py(args.data_dir))
                tch_data = conv
    except cifar_layouts.LayoutError as e:
        die(str(e))

    binary = args.bin
    if set("cdf") & set(args.programs) and binary is None:
        log = os.path.join(out, "build.log")
        with open(log, "w") as f:
            if subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode:
                die(f"cargo build --release failed; see {log}")
        binary = os.path.join(REPO, "target", "release", "tch-cifar10")

    common = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--device", args.device]
    if args.threads:
        common += ["--threads", str(args.threads)]
    peak = matmul_peak(args.threads) if not args.device.startswith("cuda") else None
    runs = {key: [] for key in args.programs}
    for rnd in range(args.rounds):
        for key in args.programs:
            tag = f"{key}{rnd + 1}" if args.rounds > 1 else key
            if key in "cdf":
                run_dir = os.path.join(out, f"{tag}-run")  # tch-cifar10's run directory, with metrics.jsonl
                shutil.rmtree(run_dir, ignore_errors=True)
                metrics = os.path.join(run_dir, "metrics.jsonl")
                kernels = {"c": [], "d": ["--kernels", "fast"], "f": ["--kernels", "fast", "--augment", "crop-flip"]}[key]
                cmd = [binary, "train", "--data-dir", tch_data, *common, *kernels, "--out", run_dir]
            else:
                script = "pytorch_reference.py" if key == "a" else "pytorch_resident.py"
                metrics = os.path.join(out, f"{tag}.metrics.jsonl")
                cl = ["--channels-last"] if key == "e" else []
                cmd = [sys.executable, os.path.join(REPO, "scripts", script), "--data-dir", py_data, *common, *cl, "--metrics-jsonl", metrics]
            status, wall, rss = run_measured(cmd, os.path.join(out, f"{tag}.log"))
            if status != 0:
                with open(os.path.join(out, f"{tag}.log")) as f:
                    die(f"({key}) {' '.join(cmd)} failed with status {status}; its output ends:\n{f.read()[-3000:]}")
            epochs = epoch_records(metrics)
            timed = [r["seconds"] for r in epochs[1:]] or [r["seconds"] for r in epochs]
            images = round(epochs[0]["images_per_sec"] * epochs[0]["seconds"])
            runs[key].append({"command": cmd, "seconds_per_epoch": statistics.median(timed), "images": images,
                              "epoch_seconds": [r["seconds"] for r in epochs], "peak_rss_bytes": rss,
                              "wall_seconds": wall, "test_acc": epochs[-1].get("test_acc")})
    results = {}
    for key, rs in runs.items():
        per_epoch = statistics.median(r["seconds_per_epoch"] for r in rs)
        flops = rs[0]["images"] * FLOP_PER_IMAGE / per_epoch
        results[key] = {"program": PROGRAMS[key], "seconds_per_epoch": per_epoch,
                        "spread": [min(r["seconds_per_epoch"] for r in rs), max(r["seconds_per_epoch"] for r in rs)],
                        "images_per_sec": rs[0]["images"] / per_epoch, "gflops": flops / 1e9,
                        "peak_fraction": flops / peak if peak else None,
                        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in rs), "runs": rs}

    cuda = args.device.startswith("cuda")
    targets = [("c/a time per epoch", "c", "a", "seconds_per_epoch", 0.2 if cuda else 0.45),
               ("c/b time per epoch", "c", "b", "seconds_per_epoch", 0.95),
               ("c/a peak memory", "c", "a", "peak_rss_bytes", 0.45),
               ("d/c time per epoch", "d", "c", "seconds_per_epoch", 0.6),
               ("d/b time per epoch", "d", "b", "seconds_per_epoch", 0.6),
               ("d/e time per epoch", "d", "e", "seconds_per_epoch", 0.9),
               ("d/c peak memory", "d", "c", "peak_rss_bytes", 1.0),
               ("f/d time per epoch", "f", "d", "seconds_per_epoch", 1.1)]
    ratios = []
    for name, x, y, field, target in targets:
        if x in results and y in results:
            ratio = results[x][field] / results[y][field]
            ratios.append({"ratio": name, "value": ratio, "target": target, "met": ratio <= target})
    report = {"config": {**vars(args), "out": out, "data": {"pytorch": py_data, "tch": tch_data}},
              "machine": {**machine(args.device), "fp32_matmul_gflops": peak / 1e9 if peak else None},
              "flop_per_image": FLOP_PER_IMAGE, "results": results, "ratios": ratios}
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump(report, f, indent=2)

    m = report["machine"]
    threads = f"{args.threads} thread(s)" if args.threads else "default threads"
    print(f"bench: {args.device}, {threads}, {args.epochs} epochs, data {'synthetic' if args.synthetic else args.data_dir}")
    print(f"machine: {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs" + (f", {m['gpu']}" if "gpu" in m else "") + f", torch {m.get('torch')}")
    if peak:
        print(f"fp32 matmul peak (2048^3, libtorch, same threads): {peak / 1e9:.0f} GFLOP/s; an epoch is {FLOP_PER_IMAGE * 50000 / 1e9:.1f} GFLOP")
    print(f"{'program':38} {'s/epoch':>8} {'spread':>13} {'images/s':>9} {'GFLOP/s':>8} {'of peak':>8} {'peak RSS':>9}")
    for key, r in results.items():
        frac = f"{100 * r['peak_fraction']:7.1f}%" if r["peak_fraction"] else f"{'-':>8}"
        spread = f"{r['spread'][0]:.2f}..{r['spread'][1]:.2f}"
        print(f"({key}) {r['program']:34} {r['seconds_per_epoch']:8.2f} {spread:>13} {r['images_per_sec']:9.0f} {r['gflops']:8.1f} {frac} {r['peak_rss_bytes'] / 2**20:6.0f} MiB")
    for r in ratios:
        print(f"{r['ratio']:20} {r['value']:.3f}  (target <= {r['target']}: {'met' if r['met'] else 'MISSED'})")
    print(f"(s/epoch: median over {args.rounds} round(s) of the median of epochs 2..{args.epochs}; details in {os.path.join(out, 'bench.json')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
