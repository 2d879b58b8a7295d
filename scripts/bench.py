"""Benchmarks, in one run on one machine, with the same data, device and thread count:
  (a) the reference PyTorch program (scripts/pytorch_reference.py: torchvision DataLoader),
  (b) a well-written PyTorch loop over resident tensors (scripts/pytorch_resident.py),
  (c) tch-cifar10 (release build), --kernels reference,
  (d) tch-cifar10 --kernels fast,
  (e) (b) with --channels-last, PyTorch's own fast CPU layout,
  (f) tch-cifar10 --kernels fast --augment crop-flip (the crop and flip done while the batch is
      packed into the kernels' lanes),
  (g) (e) under torch.compile (inductor on the CPU), the strongest PyTorch CPU program we can
      name (quiet only; its first epoch compiles),
one after the other (never two at once), --rounds times in turn (a b c d e a b c d e ...), so
that a slow spell of a shared machine hits every program alike.

Busy machines (--load N, --pairs LETTERS): with --load N each round also runs the programs
(but g) with N CPU-burning processes started by this script (each a busy loop ending by itself
after --load-limit seconds at most, and stopped as soon as the round's loaded runs end); it
prints each program's loaded/quiet slowdown of the seconds per epoch and of the whole process's
wall time beside the fair share (N + cores) / cores, the slowdown of a program that keeps its
share of the cores. With --pairs LETTERS each round also runs two copies of each of those
programs at once (two experiments in two terminals; no burners), and prints each copy's slowdown
against the quiet figure (fair share 2, for programs that use every core). For each: seconds per epoch
(median over rounds of each run's median of epochs 2..N, so start-up and first-epoch warm-up are
left out), the spread (min..max of those medians), images per second, peak resident memory (the
process's own ru_maxrss, from wait4), the fraction of the machine's fp32 peak it reaches, and
wall/epochs: the whole process's wall time over the sum of its training epochs' seconds (what
start-up, the test passes and saving add; the target for a 50-epoch fast run is <= 1.1).

The peak: a 2048 x 2048 x 2048 float32 matmul in libtorch (the venv's torch, the same kernels and
--threads), best of 5. The work: one training image costs 3,204,720 FLOP (a multiply-add is 2):
forward 1,303,440 = conv1 2*6*28*28*(3*5*5) 705,600 + conv2 2*16*10*10*(6*5*5) 480,000 + fc1
2*400*120 96,000 + fc2 2*120*84 20,160 + fc3 2*84*10 1,680; backward, the weight gradients the
same 1,303,440 again and the input gradients of every layer but conv1 (whose input needs none)
597,840. An epoch of 50,000 images: 160.2 GFLOP (pooling, ReLU, loss and the update are noise).

Prints the ratios against the targets: c/a time <= 0.45 (<= 0.2 on CUDA), c/b time <= 0.95, c/a
peak memory <= 0.45; d/c time <= 0.6, d/b time <= 0.6, d/e time <= 0.9, d/c peak memory <= 1.0; f/d time <= 1.1
(augmentation costs the fast mode at most a tenth); d/g time <= 0.35; under --load with 2 burners on
2 cores (fair share 2), (c) seconds per epoch <= 3x quiet and (d) whole-process wall <= 2.5x
quiet; --pairs c: each copy <= 3x quiet.
The wait behaviour of libtorch's threads is inherited: tch-cifar10 sets GOMP_SPINCOUNT itself
unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set, so `GOMP_SPINCOUNT=300000 scripts/bench ...`
measures libgomp's default (what PyTorch gets), and OMP_WAIT_POLICY=PASSIVE the passive policy.
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
    "g": "PyTorch, resident, channels-last, torch.compile",
}
QUIET_ONLY = "g"  # compiling under load measures the compiler, not the training
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


class Burners:
    """N CPU-burning processes, started on entry and stopped on exit (each ends by itself after
    `limit` seconds at most, should this script be killed)."""

    def __init__(self, n, limit):
        self.n, self.limit, self.procs = n, limit, []

    def __enter__(self):
        code = f"import time\nend = time.monotonic() + {self.limit}\nwhile time.monotonic() < end:\n    pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.n)]
        print(f"+ {self.n} CPU burner(s) started (at most {self.limit:.0f} s)", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait()
        print(f"+ {self.n} CPU burner(s) stopped", file=sys.stderr, flush=True)
        return False


def cores():
    """Logical CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


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
    p.add_argument("--programs", default="abcdef", help="which to run, a subset of abcdefg [abcdef]")
    p.add_argument("--load", type=int, default=0, metavar="N", help="also run the programs (but g) with N CPU-burning processes [0: quiet only]")
    p.add_argument("--load-limit", type=float, default=3600, metavar="SECONDS", help="a burner ends by itself after this long [3600]")
    p.add_argument("--pairs", default="", metavar="LETTERS", help="also run two copies of each of these programs at once, e.g. c [none]")
    p.add_argument("--rounds", type=int, default=1, help="run the programs in turn this many times [1]")
    p.add_argument("--bin", default=None, help="the tch-cifar10 binary [build and use target/release/tch-cifar10]")
    p.add_argument("--out", default=None, help="where bench.json and the programs' outputs go [a temporary folder]")
    args = p.parse_args(argv)
    if args.epochs < 1 or (args.threads is not None and args.threads < 1):
        p.error("--epochs and --threads must be at least 1")
    if not args.programs or set(args.programs) - set(PROGRAMS):
        p.error(f"--programs takes letters of abcdefg, got {args.programs!r}")
    if args.load < 0 or args.load_limit <= 0:
        p.error("--load must be at least 0 and --load-limit positive")
    if set(args.pairs) - set(args.programs) or set(args.pairs) & set(QUIET_ONLY):
        p.error(f"--pairs takes letters of --programs ({args.programs}) but {QUIET_ONLY}, got {args.pairs!r}")
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
    def command(key, tag):
        """(the command line of program `key`, its metrics.jsonl), its outputs named by `tag`."""
        if key in "cdf":
            run_dir = os.path.join(out, f"{tag}-run")  # tch-cifar10's run directory, with metrics.jsonl
            shutil.rmtree(run_dir, ignore_errors=True)
            kernels = {"c": [], "d": ["--kernels", "fast"], "f": ["--kernels", "fast", "--augment", "crop-flip"]}[key]
            return [binary, "train", "--data-dir", tch_data, *common, *kernels, "--out", run_dir], os.path.join(run_dir, "metrics.jsonl")
        script = "pytorch_reference.py" if key == "a" else "pytorch_resident.py"
        metrics = os.path.join(out, f"{tag}.metrics.jsonl")
        extra = {"e": ["--channels-last"], "g": ["--channels-last", "--compile"]}.get(key, [])
        return [sys.executable, os.path.join(REPO, "scripts", script), "--data-dir", py_data, *common, *extra, "--metrics-jsonl", metrics], metrics

    def record(key, tag, cmd, metrics, status, wall, rss):
        if status != 0:
            with open(os.path.join(out, f"{tag}.log")) as f:
                die(f"({key}) {' '.join(cmd)} failed with status {status}; its output ends:\n{f.read()[-3000:]}")
        epochs = epoch_records(metrics)
        timed = [r["seconds"] for r in epochs[1:]] or [r["seconds"] for r in epochs]
        images = round(epochs[0]["images_per_sec"] * epochs[0]["seconds"])
        return {"command": cmd, "seconds_per_epoch": statistics.median(timed), "images": images,
                "epoch_seconds": [r["seconds"] for r in epochs], "peak_rss_bytes": rss,
                "wall_seconds": wall, "test_acc": epochs[-1].get("test_acc")}

    def measure(key, tag):
        cmd, metrics = command(key, tag)
        return record(key, tag, cmd, metrics, *run_measured(cmd, os.path.join(out, f"{tag}.log")))

    def measure_pair(key, tag):
        """Two copies of program `key` started together; their records."""
        started = []
        for copy in (1, 2):
            cmd, metrics = command(key, f"{tag}-{copy}")
            print("+ " + " ".join(cmd) + " &", file=sys.stderr, flush=True)
            log = open(os.path.join(out, f"{tag}-{copy}.log"), "w")
            started.append((cmd, metrics, log, time.perf_counter(), subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
        records = []
        for copy, (cmd, metrics, log, t0, proc) in enumerate(started, 1):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            log.close()
            records.append(record(key, f"{tag}-{copy}", cmd, metrics, proc.returncode, time.perf_counter() - t0, usage.ru_maxrss * 1024))
        return records

    runs = {key: [] for key in args.programs}
    loaded = {key: [] for key in args.programs if key not in QUIET_ONLY} if args.load else {}
    paired = {key: [] for key in args.pairs}
    for rnd in range(args.rounds):
        suffix = f"{rnd + 1}" if args.rounds > 1 else ""
        for key in args.programs:
            runs[key].append(measure(key, key + suffix))
        if loaded:
            with Burners(args.load, args.load_limit):
                for key in loaded:
                    loaded[key].append(measure(key, f"{key}{suffix}-load{args.load}"))
        for key in paired:
            paired[key].append(measure_pair(key, f"{key}{suffix}-pair"))
    results = {}
    for key, rs in runs.items():
        per_epoch = statistics.median(r["seconds_per_epoch"] for r in rs)
        flops = rs[0]["images"] * FLOP_PER_IMAGE / per_epoch
        results[key] = {"program": PROGRAMS[key], "seconds_per_epoch": per_epoch,
                        "spread": [min(r["seconds_per_epoch"] for r in rs), max(r["seconds_per_epoch"] for r in rs)],
                        "images_per_sec": rs[0]["images"] / per_epoch, "gflops": flops / 1e9,
                        "peak_fraction": flops / peak if peak else None,
                        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in rs),
                        # The whole process against its training epochs: start-up, tests, saving.
                        "wall_over_epochs": statistics.median(r["wall_seconds"] / sum(r["epoch_seconds"]) for r in rs), "runs": rs}

    cuda = args.device.startswith("cuda")
    targets = [("c/a time per epoch", "c", "a", "seconds_per_epoch", 0.2 if cuda else 0.45),
               ("c/b time per epoch", "c", "b", "seconds_per_epoch", 0.95),
               ("c/a peak memory", "c", "a", "peak_rss_bytes", 0.45),
               ("d/c time per epoch", "d", "c", "seconds_per_epoch", 0.6),
               ("d/b time per epoch", "d", "b", "seconds_per_epoch", 0.6),
               ("d/e time per epoch", "d", "e", "seconds_per_epoch", 0.9),
               ("d/c peak memory", "d", "c", "peak_rss_bytes", 1.0),
               ("f/d time per epoch", "f", "d", "seconds_per_epoch", 1.1),
               ("d/g time per epoch", "d", "g", "seconds_per_epoch", 0.35)]
    ratios = []
    for name, x, y, field, target in targets:
        if x in results and y in results:
            ratio = results[x][field] / results[y][field]
            ratios.append({"ratio": name, "value": ratio, "target": target, "met": ratio <= target})
    n_cores = cores()
    fair = (args.load + n_cores) / n_cores
    # Targets under load (2 burners on 2 cores in the issue that set them): (c) epoch, (d) wall.
    load_targets = {"c": ("seconds_per_epoch", 3.0), "d": ("wall_seconds", 2.5)}
    busy = {}
    for key, rs in loaded.items():
        q, l = results[key], statistics.median(r["seconds_per_epoch"] for r in rs)
        qw, lw = statistics.median(r["wall_seconds"] for r in runs[key]), statistics.median(r["wall_seconds"] for r in rs)
        busy[key] = {"quiet_seconds_per_epoch": q["seconds_per_epoch"], "loaded_seconds_per_epoch": l,
                     "epoch_slowdown": l / q["seconds_per_epoch"], "quiet_wall_seconds": qw, "loaded_wall_seconds": lw,
                     "wall_slowdown": lw / qw, "fair_share": fair, "runs": rs}
    pairs = {}
    for key, rounds in paired.items():
        q = results[key]["seconds_per_epoch"]
        copies = [statistics.median(r[c]["seconds_per_epoch"] for r in rounds) for c in (0, 1)]
        pairs[key] = {"quiet_seconds_per_epoch": q, "copy_seconds_per_epoch": copies,
                      "slowdowns": [c / q for c in copies], "fair_share": 2.0, "runs": rounds}
    report = {"config": {**vars(args), "out": out, "data": {"pytorch": py_data, "tch": tch_data}},
              "machine": {**machine(args.device), "fp32_matmul_gflops": peak / 1e9 if peak else None, "cores": n_cores},
              "flop_per_image": FLOP_PER_IMAGE, "results": results, "ratios": ratios,
              "load": {"burners": args.load, "results": busy}, "pairs": pairs}
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump(report, f, indent=2)

    m = report["machine"]
    w = max(len(PROGRAMS[key]) for key in results)  # the program column's width
    threads = f"{args.threads} thread(s)" if args.threads else "default threads"
    print(f"bench: {args.device}, {threads}, {args.epochs} epochs, data {'synthetic' if args.synthetic else args.data_dir}")
    print(f"machine: {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs" + (f", {m['gpu']}" if "gpu" in m else "") + f", torch {m.get('torch')}")
    if peak:
        print(f"fp32 matmul peak (2048^3, libtorch, same threads): {peak / 1e9:.0f} GFLOP/s; an epoch is {FLOP_PER_IMAGE * 50000 / 1e9:.1f} GFLOP")
    print(f"{'program':{w + 4}} {'s/epoch':>8} {'spread':>13} {'images/s':>9} {'GFLOP/s':>8} {'of peak':>8} {'peak RSS':>9} {'wall/epochs':>11}")
    for key, r in results.items():
        frac = f"{100 * r['peak_fraction']:7.1f}%" if r["peak_fraction"] else f"{'-':>8}"
        spread = f"{r['spread'][0]:.2f}..{r['spread'][1]:.2f}"
        print(f"({key}) {r['program']:{w}} {r['seconds_per_epoch']:8.2f} {spread:>13} {r['images_per_sec']:9.0f} {r['gflops']:8.1f} {frac} {r['peak_rss_bytes'] / 2**20:6.0f} MiB {r['wall_over_epochs']:10.2f}x")
    for r in ratios:
        print(f"{r['ratio']:20} {r['value']:.3f}  (target <= {r['target']}: {'met' if r['met'] else 'MISSED'})")
    if busy:
        print(f"under load: {args.load} CPU burner(s) on {n_cores} logical CPUs, fair-share slowdown (N + cores) / cores = {fair:.2f}")
        print(f"{'program':{w + 4}} {'quiet s/ep':>10} {'loaded':>8} {'slowdown':>8} {'quiet wall':>10} {'loaded':>8} {'slowdown':>8} {'fair':>5}  target")
        for key, b in busy.items():
            field, limit = load_targets.get(key, (None, None))
            target = ""
            if field and args.load == 2 and n_cores == 2:
                value = b["epoch_slowdown"] if field == "seconds_per_epoch" else b["wall_slowdown"]
                target = f"{'epoch' if field == 'seconds_per_epoch' else 'wall'} <= {limit}x: {'met' if value <= limit else 'MISSED'}"
            print(f"({key}) {PROGRAMS[key]:{w}} {b['quiet_seconds_per_epoch']:10.2f} {b['loaded_seconds_per_epoch']:8.2f} {b['epoch_slowdown']:7.2f}x "
                  f"{b['quiet_wall_seconds']:10.1f} {b['loaded_wall_seconds']:8.1f} {b['wall_slowdown']:7.2f}x {fair:5.2f}  {target}")
    if pairs:
        print("two at once (two copies started together, no burners; fair-share slowdown 2.00):")
        for key, pr in pairs.items():
            each = ", ".join(f"{c:.2f} s ({x:.2f}x)" for c, x in zip(pr["copy_seconds_per_epoch"], pr["slowdowns"]))
            target = f"  target <= 3x: {'met' if max(pr['slowdowns']) <= 3 else 'MISSED'}" if key == "c" else ""
            print(f"({key}) {PROGRAMS[key]:{w}} quiet {pr['quiet_seconds_per_epoch']:.2f} s/epoch; each copy {each}{target}")
    print(f"(s/epoch: median over {args.rounds} round(s) of the median of epochs 2..{args.epochs}; details in {os.path.join(out, 'bench.json')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
