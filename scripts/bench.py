"""Benchmarks, in one run on one machine, with the same data, device and thread count:
  (a) the reference PyTorch program (scripts/pytorch_reference.py: torchvision DataLoader),
  (b) a well-written PyTorch loop over resident tensors (scripts/pytorch_resident.py),
  (c) tch-cifar10 (release build),
one after the other (never two at once). For each: seconds per epoch (median of epochs 2..N,
so start-up and first-epoch warm-up are left out), images per second, and peak resident memory
(the process's own ru_maxrss, from wait4). Prints the ratios against the targets:
c/a time <= 0.45 (<= 0.2 on CUDA), c/b time <= 0.95, c/a peak memory <= 0.45.
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
}


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
    p.add_argument("--programs", default="abc", help="which to run, a subset of abc [abc]")
    p.add_argument("--bin", default=None, help="the tch-cifar10 binary [build and use target/release/tch-cifar10]")
    p.add_argument("--out", default=None, help="where bench.json and the programs' outputs go [a temporary folder]")
    args = p.parse_args(argv)
    if args.epochs < 1 or (args.threads is not None and args.threads < 1):
        p.error("--epochs and --threads must be at least 1")
    if not args.programs or set(args.programs) - set(PROGRAMS):
        p.error(f"--programs takes letters of abc, got {args.programs!r}")
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
    if "c" in args.programs and binary is None:
        log = os.path.join(out, "build.log")
        with open(log, "w") as f:
            if subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode:
                die(f"cargo build --release failed; see {log}")
        binary = os.path.join(REPO, "target", "release", "tch-cifar10")

    common = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--device", args.device]
    if args.threads:
        common += ["--threads", str(args.threads)]
    results = {}
    for key in args.programs:
        if key == "c":
            run_dir = os.path.join(out, "c-run")  # tch-cifar10's run directory, with metrics.jsonl
            shutil.rmtree(run_dir, ignore_errors=True)
            metrics = os.path.join(run_dir, "metrics.jsonl")
            cmd = [binary, "train", "--data-dir", tch_data, *common, "--out", run_dir]
        else:
            script = "pytorch_reference.py" if key == "a" else "pytorch_resident.py"
            metrics = os.path.join(out, f"{key}.metrics.jsonl")
            cmd = [sys.executable, os.path.join(REPO, "scripts", script), "--data-dir", py_data, *common, "--metrics-jsonl", metrics]
        status, wall, rss = run_measured(cmd, os.path.join(out, f"{key}.log"))
        if status != 0:
            with open(os.path.join(out, f"{key}.log")) as f:
                die(f"({key}) {' '.join(cmd)} failed with status {status}; its output ends:\n{f.read()[-3000:]}")
        epochs = epoch_records(metrics)
        timed = [r["seconds"] for r in epochs[1:]] or [r["seconds"] for r in epochs]
        per_epoch = statistics.median(timed)
        images = round(epochs[0]["images_per_sec"] * epochs[0]["seconds"])
        results[key] = {"program": PROGRAMS[key], "command": cmd, "seconds_per_epoch": per_epoch,
                        "epoch_seconds": [r["seconds"] for r in epochs], "images_per_sec": images / per_epoch,
                        "peak_rss_bytes": rss, "wall_seconds": wall, "test_acc": epochs[-1].get("test_acc")}

    cuda = args.device.startswith("cuda")
    targets = [("c/a time per epoch", "c", "a", "seconds_per_epoch", 0.2 if cuda else 0.45),
               ("c/b time per epoch", "c", "b", "seconds_per_epoch", 0.95),
               ("c/a peak memory", "c", "a", "peak_rss_bytes", 0.45)]
    ratios = []
    for name, x, y, field, target in targets:
        if x in results and y in results:
            ratio = results[x][field] / results[y][field]
            ratios.append({"ratio": name, "value": ratio, "target": target, "met": ratio <= target})
    report = {"config": {**vars(args), "out": out, "data": {"pytorch": py_data, "tch": tch_data}},
              "machine": machine(args.device), "results": results, "ratios": ratios}
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump(report, f, indent=2)

    m = report["machine"]
    threads = f"{args.threads} thread(s)" if args.threads else "default threads"
    print(f"bench: {args.device}, {threads}, {args.epochs} epochs, data {'synthetic' if args.synthetic else args.data_dir}")
    print(f"machine: {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs" + (f", {m['gpu']}" if "gpu" in m else "") + f", torch {m.get('torch')}")
    print(f"{'program':34} {'s/epoch':>9} {'images/s':>10} {'peak RSS':>10}")
    for key, r in results.items():
        print(f"({key}) {r['program']:30} {r['seconds_per_epoch']:9.2f} {r['images_per_sec']:10.0f} {r['peak_rss_bytes'] / 2**20:7.0f} MiB")
    for r in ratios:
        print(f"{r['ratio']:20} {r['value']:.3f}  (target <= {r['target']}: {'met' if r['met'] else 'MISSED'})")
    print(f"(s/epoch: median of epochs 2..{args.epochs}; details in {os.path.join(out, 'bench.json')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
