"""The one-shot GPU check (issue 11), started by scripts/gpu-check: on one CUDA machine, in a few
minutes, `tch-cifar10 info`; 3 epochs of tch-cifar10 eager and CUDA-graphed (same seed,
`--deterministic`); the PyTorch reference program (scripts/pytorch_reference.py) and the resident
PyTorch loop (scripts/pytorch_resident.py) for the same epochs on the same device, also
deterministic; the CUDA shim checked from PyTorch's own process (scripts/cuda_shim_smoke.py: a
captured and replayed LeNet step against the eager one); then ONE table: seconds per epoch of each, the largest per-step loss difference
graphed vs eager and tch-cifar10 vs PyTorch, final weights, the final test accuracies, and the
issue's targets. The whole report is also written as JSON (`--json`, or `$OUT/gpu-check.json`
when `$OUT` is set), with the runs' logs beside it in `$OUT/gpu-check-logs/`.

Data: the real CIFAR-10 images (`--data`, a `cifar10-jpeg.tar.gz` as ../shared/data holds, by
default `.gpu-data/cifar10-jpeg.tar.gz` in the checkout, converted with
scripts/cifar10_jpeg_to_bin.py), a folder that already holds both layouts, or `--synthetic N`
random images (for trying the script on a CPU: `--device cpu --synthetic 300 --epochs 1`).

The binary runs against the libtorch of the Python that runs this script (its `torch/lib` first
on `LD_LIBRARY_PATH`), since the rpath baked in at build time may not exist on this machine.
Flags the binary does not have yet (`train --cuda-graphs`, `--deterministic`) are left out and
the table says so. The runs are not judged: the exit status is 0 when every run finished, 1 when
one failed or was skipped for time, 2 on bad arguments or data.
"""

import argparse
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cifar_layouts  # noqa: E402
from compare_pytorch import param_diffs, read_epochs, read_steps, step_diffs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "scripts")

# The targets (issue 11), checked against what this run measured.
MAX_STEP_DIFF_VS_PYTORCH = 1e-5
MAX_TEST_ACC_DIFF = 0.001  # 0.1 point
MAX_GRAPHED_OVER_EAGER = 0.3
MAX_GRAPHED_EPOCH_SECONDS = 0.1
MAX_GRAPHED_OVER_REFERENCE = 0.05
MAX_50_EPOCH_SECONDS = 10.0


def die(msg):
    print(f"gpu-check: error: {msg}", file=sys.stderr)
    sys.exit(2)


def torch_lib():
    """The `torch/lib` folder of this Python's torch, found without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        die(f"{sys.executable} has no torch (set TCH_CIFAR10_PYTHON to a Python with torch 2.11.0)")
    return os.path.join(list(spec.submodule_search_locations)[0], "lib")


def prepare_data(args, work):
    """A folder holding cifar-10-batches-bin/ and cifar-10-batches-py/, and how it was made."""
    if args.synthetic:
        root = os.path.join(work, "data")
        splits, classes = cifar_layouts.synthetic_splits(args.synthetic, max(1, args.synthetic // 5), seed=0)
        cifar_layouts.write_bin(root, splits, classes)
        cifar_layouts.write_py(root, splits, classes)
        return root, f"synthetic: {args.synthetic} training and {max(1, args.synthetic // 5)} test images (random pixels)"
    src = args.data
    if os.path.isdir(src):
        try:
            done = cifar_layouts.ensure_both(src)
        except cifar_layouts.LayoutError as e:
            die(str(e))
        return src, f"{src} ({done})"
    if not os.path.isfile(src):
        die(f"--data {src}: no such file or folder (copy ../shared/data/cifar10-jpeg.tar.gz to .gpu-data/, or pass --synthetic N)")
    jpeg = os.path.join(work, "jpeg")
    os.makedirs(jpeg)
    try:
        with tarfile.open(src) as tar:
            try:
                tar.extractall(jpeg, filter="data")
            except TypeError:  # a Python without extraction filters (before 3.11.4)
                tar.extractall(jpeg)
    except (tarfile.TarError, OSError) as e:
        die(f"{src}: not a readable .tar.gz of CIFAR-10 JPEG images ({e})")
    import cifar10_jpeg_to_bin  # needs numpy and pillow

    root = os.path.join(work, "data")
    try:
        cifar10_jpeg_to_bin.main(jpeg, root)
    except (OSError, AssertionError, ValueError) as e:
        die(f"{src}: cannot convert its images: expected the 50,000 + 10,000 CIFAR-10 JPEGs ({e!r})")
    shutil.rmtree(jpeg, ignore_errors=True)
    return root, f"{src}, converted by scripts/cifar10_jpeg_to_bin.py"


class Runner:
    """Runs the commands one after the other within an overall time budget."""

    def __init__(self, logs, budget, per_run):
        self.logs, self.deadline, self.per_run = logs, time.monotonic() + budget, per_run

    def run(self, name, cmd, env=None):
        """{"status": "ok"|"failed"|"timeout"|"skipped", "wall_s", "log", "tail"}."""
        log = os.path.join(self.logs, name + ".log")
        left = self.deadline - time.monotonic()
        if left < 5:
            return {"status": "skipped", "why": "the time budget was spent", "log": None, "cmd": cmd}
        print(f"+ {' '.join(cmd)}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        with open(log, "w") as f:
            try:
                rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=min(self.per_run, left)).returncode
                status = "ok" if rc == 0 else f"failed (exit {rc})"
            except subprocess.TimeoutExpired:
                status = "timeout"
        wall = time.monotonic() - t0
        with open(log) as f:
            tail = f.read()[-2000:]
        if status != "ok":
            print(f"gpu-check: {name}: {status}; {log} ends:\n{tail}", file=sys.stderr)
        return {"status": status, "wall_s": wall, "log": log, "tail": tail if status != "ok" else None, "cmd": cmd}


def smoke_shim(runner, args, env):
    """scripts/cuda_shim_smoke.py on the shim: its checks (JSON), or why it was not run."""
    path = os.path.abspath(args.shim) if args.shim else os.path.join(os.path.dirname(os.path.abspath(args.bin)), "libtch_cifar10_cuda.so")
    if not os.path.isfile(path):
        return {"status": "skipped", "why": f"no shim at {path}"}
    r = runner.run("shim-smoke", [sys.executable, os.path.join(SCRIPTS, "cuda_shim_smoke.py"), path], env)
    r["path"] = path
    if r.get("log"):
        with open(r["log"]) as f:
            lines = [line for line in f if line.startswith("{")]
        try:
            r["result"] = json.loads(lines[-1]) if lines else None
        except ValueError:
            r["result"] = None
    return r


def epoch_seconds(metrics):
    """{"epochs": [s, ...], "median": s, "first": s} from {epoch: record}."""
    s = [float(metrics[e]["seconds"]) for e in sorted(metrics) if "seconds" in metrics[e]]
    if not s:
        return None
    return {"epochs": s, "first": s[0], "median": statistics.median(s), "median_after_first": statistics.median(s[1:]) if len(s) > 1 else None}


def pair(a, b, runs, label):
    """The comparison of run `a` with run `b`: steps, weights, test accuracy."""
    ra, rb = runs.get(a), runs.get(b)
    if not (ra and rb and ra.get("steps") is not None and rb.get("steps") is not None):
        return {"label": label, "compared": False}
    keys, identical, first, largest, where = step_diffs(rb["steps"], ra["steps"])
    missing = sum(1 for k in keys if k not in ra["steps"] or k not in rb["steps"])
    out = {"label": label, "compared": True, "steps": len(keys), "identical_steps": identical, "missing_steps": missing,
           "largest_step_loss_diff": math.inf if missing else largest, "largest_at": where, "first_differing": first}
    if ra.get("params") is not None and rb.get("params") is not None:
        p = param_diffs(rb["params"], ra["params"])
        out["params"] = {"tensors": p["tensors"], "differing": len(p["differing"]), "largest": p["largest"]}
    ta, tb = ra.get("test_acc"), rb.get("test_acc")
    if ta is not None and tb is not None:
        out["test_acc_diff"] = abs(ta - tb)
    return out


def collect(run, steps_path, metrics_path, params_path):
    """Reads a finished run's steps, metrics and weights into `run`."""
    from safetensors.numpy import load_file

    if run["status"] != "ok":
        return
    for key, path, reader in (("steps", steps_path, read_steps), ("metrics", metrics_path, read_epochs)):
        run[key] = reader(path) if os.path.isfile(path) else None
    run["params"] = load_file(params_path) if os.path.isfile(params_path) else None
    m = run.get("metrics") or {}
    last = max(m) if m else None
    run["test_acc"] = m[last].get("test_acc") if last else None
    run["seconds"] = epoch_seconds(m)


def fmt(v, spec=".4g", none="-"):
    if v is None:
        return none
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec)


def targets(runs, pairs, device):
    """The issue's targets, with what was measured and whether it was met (None: not measured)."""
    sec = {k: (runs.get(k) or {}).get("seconds") for k in ("tch-eager", "tch-graphed", "pytorch-reference")}
    med = {k: (v or {}).get("median") for k, v in sec.items()}
    out = []

    def add(name, value, ok):
        out.append({"target": name, "measured": value, "met": ok})

    ge = pairs.get("graphed-vs-eager", {})
    add("graphed vs eager: identical per-step losses", ge.get("largest_step_loss_diff") if ge.get("compared") else None,
        (ge.get("identical_steps") == ge.get("steps") and ge.get("steps", 0) > 0) if ge.get("compared") else None)
    add("graphed vs eager: identical final weights", (ge.get("params") or {}).get("largest"),
        (ge["params"]["differing"] == 0) if ge.get("params") else None)
    for key, who in (("eager-vs-reference", "tch eager"), ("graphed-vs-reference", "tch graphed")):
        p = pairs.get(key, {})
        d = p.get("largest_step_loss_diff") if p.get("compared") else None
        add(f"{who} vs PyTorch: largest per-step loss diff <= {MAX_STEP_DIFF_VS_PYTORCH:g}", d,
            None if d is None else d <= MAX_STEP_DIFF_VS_PYTORCH)
        a = p.get("test_acc_diff")
        add(f"{who} vs PyTorch: test accuracy within {100 * MAX_TEST_ACC_DIFF:g} point", a, None if a is None else a <= MAX_TEST_ACC_DIFF + 1e-12)
    g, e, r = med["tch-graphed"], med["tch-eager"], med["pytorch-reference"]
    add(f"graphed s/epoch / eager s/epoch <= {MAX_GRAPHED_OVER_EAGER:g}", g / e if g and e else None,
        (g / e <= MAX_GRAPHED_OVER_EAGER) if g and e else None)
    add(f"graphed s/epoch <= {MAX_GRAPHED_EPOCH_SECONDS:g}", g, None if g is None else g <= MAX_GRAPHED_EPOCH_SECONDS)
    add(f"graphed s/epoch / reference s/epoch <= {MAX_GRAPHED_OVER_REFERENCE:g}", g / r if g and r else None,
        (g / r <= MAX_GRAPHED_OVER_REFERENCE) if g and r else None)
    proj = 50 * g if g is not None else None
    add(f"50 epochs projected from graphed median s/epoch x 50 (training only) < {MAX_50_EPOCH_SECONDS:g} s", proj,
        None if proj is None else proj < MAX_50_EPOCH_SECONDS)
    if not device.startswith("cuda"):
        for t in out:
            t["met"] = None  # the targets are about a GPU
    return out


def table(rows):
    """Rows of cells, left-aligned in columns."""
    widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(max(map(len, rows)))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def print_table(report):
    c = report["config"]
    print(f"gpu-check: device {c['device']}, {c['epochs']} epoch(s), seed {c['seed']}, deterministic "
          f"{'on' if c['deterministic_flag'] else '(this binary has no --deterministic)'}; data {report['data']}")
    print(f"binary {c['bin']}; shim {c['shim'] or 'beside the binary'}; libtorch {c['torch_lib']}")
    info = report["info"]
    for line in (info.get("text") or f"info failed: {info.get('status')}").rstrip().splitlines():
        print(f"  | {line}")
    sm = report["shim_smoke"]
    res = sm.get("result") or {}
    failed = [k for k, v in (res.get("checks") or {}).items() if not v]
    print(f"CUDA shim smoke test (scripts/cuda_shim_smoke.py, in PyTorch's process): "
          + (f"skipped: {sm.get('why')}" if sm["status"] == "skipped" else
             f"{sm['status']}, {len(res.get('checks') or {}) - len(failed)}/{len(res.get('checks') or {})} checks passed"
             + (f" (failed: {', '.join(failed)})" if failed else "")))
    if res.get("lenet"):
        le = res["lenet"]
        print(f"  | LeNet step graphed through the shim vs eager, {le['steps']} steps ({le['warmup']} eager warm-up): "
              f"{le['identical_steps']}/{le['steps']} identical losses, max |diff| {fmt(le['largest_step_loss_diff'])}, "
              f"max weight |diff| {fmt(le['largest_weight_diff'])}")
    rows = [["run", "status", "s/epoch (median)", "epoch 1 s", "wall s", "test acc", "flags"]]
    for key, label in (("tch-eager", "tch-cifar10 eager"), ("tch-graphed", "tch-cifar10 graphed"),
                       ("pytorch-reference", "PyTorch reference"), ("pytorch-resident", "PyTorch resident")):
        r = report["runs"].get(key)
        if r is None:
            continue
        s = r.get("seconds") or {}
        status = r["status"] if r["status"] != "skipped" else f"skipped: {r.get('why')}"
        rows.append([label, status, fmt(s.get("median"), ".3f"), fmt(s.get("first"), ".3f"), fmt(r.get("wall_s"), ".1f"),
                     fmt(r.get("test_acc"), ".4f"), r.get("flags", "")])
    rows.append([])
    rows.append(["comparison", "steps identical", "max |diff| step loss", "final weights", "|diff| test acc", "first differing step"])
    for p in report["pairs"].values():
        if not p.get("compared"):
            rows.append([p["label"], "not compared (a run is missing)"])
            continue
        w = p.get("params")
        weights = "-" if w is None else ("identical" if w["differing"] == 0 else f"{w['differing']}/{w['tensors']} differ, max {fmt(w['largest'])}")
        f = p.get("first_differing")
        rows.append([p["label"], f"{p['identical_steps']}/{p['steps']}", fmt(p["largest_step_loss_diff"]), weights,
                     fmt(p.get("test_acc_diff")), "none" if f is None else f"epoch {f['epoch']} step {f['step']}"])
    rows.append([])
    rows.append(["target (issue 11)", "met", "measured"])
    for t in report["targets"]:
        rows.append([t["target"], {True: "yes", False: "NO", None: "-"}[t["met"]], fmt(t["measured"])])
    # One table in three sections (runs, comparisons, targets), each with its own columns.
    sections = [[]]
    for r in rows:
        if r:
            sections[-1].append(r)
        else:
            sections.append([])
    print("\n\n".join("\n".join(table(sec)) for sec in sections))
    print(f"\ntotal {report['total_s']:.1f} s (data {report['data_prepare_s']:.1f} s); every figure above was measured by this run"
          + ("" if c["device"].startswith("cuda") else f" on {c['device']}, not a GPU: the targets are not judged"))


def clean(v):
    """`v` with infinities and NaNs as strings, so that the JSON is standard."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


def main(argv=None):
    p = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=os.path.join(REPO, "target", "release", "tch-cifar10"), help="the tch-cifar10 binary [target/release/tch-cifar10]")
    p.add_argument("--shim", default=None, help="the CUDA shim (TCH_CIFAR10_CUDA_SHIM) [the libtch_cifar10_cuda.so beside the binary]")
    p.add_argument("--data", default=os.path.join(REPO, ".gpu-data", "cifar10-jpeg.tar.gz"),
                   help="cifar10-jpeg.tar.gz, or a folder with cifar-10-batches-bin/ and/or -py/ [.gpu-data/cifar10-jpeg.tar.gz]")
    p.add_argument("--synthetic", type=int, default=None, metavar="N", help="use N random training images (N/5 test) instead of --data")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each run [3]")
    p.add_argument("--seed", type=int, default=1, help="torch.manual_seed for every run [1]")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu [cuda]")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every run [their default]")
    p.add_argument("--budget", type=float, default=330, help="seconds for the whole check; runs that would start later are skipped [330]")
    p.add_argument("--per-run", type=float, default=150, help="seconds at most for one run [150]")
    p.add_argument("--work", default=None, help="folder for data and outputs [a temporary folder]")
    p.add_argument("--json", default=None, help="write the report as JSON here [$OUT/gpu-check.json when $OUT is set]")
    args = p.parse_args(argv)
    for name in ("epochs", "threads", "synthetic"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name} must be at least 1, got {v}")
    if args.synthetic is not None and args.synthetic < 5:
        p.error(f"--synthetic needs at least 5 images, got {args.synthetic}")
    if not (os.path.isfile(args.bin) and os.access(args.bin, os.X_OK)):
        die(f"--bin {args.bin}: no executable there (build it with `cargo build --release`, or carry it)")
    if args.shim is not None and not os.path.isfile(args.shim):
        die(f"--shim {args.shim}: no such file")
    out_env = os.environ.get("OUT")
    json_path = args.json or (os.path.join(out_env, "gpu-check.json") if out_env else None)
    t_start = time.monotonic()

    work = args.work or tempfile.mkdtemp(prefix="gpu-check.")
    os.makedirs(work, exist_ok=True)
    logs = os.path.join(out_env, "gpu-check-logs") if out_env else os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    lib = torch_lib()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    if args.shim:
        env["TCH_CIFAR10_CUDA_SHIM"] = os.path.abspath(args.shim)
    if args.device.startswith("cuda"):
        env.setdefault("TCH_CIFAR10_CUDA", "1")

    t0 = time.monotonic()
    data, data_note = prepare_data(args, work)
    data_s = time.monotonic() - t0
    runner = Runner(logs, args.budget - (time.monotonic() - t_start), args.per_run)

    info = runner.run("info", [args.bin, "info"], env)
    info["text"] = open(info["log"]).read() if info.get("log") and info["status"] == "ok" else None
    info_json = subprocess.run([args.bin, "info", "--json"], env=env, capture_output=True, text=True, timeout=120)
    try:
        info["json"] = json.loads(info_json.stdout)
    except ValueError:
        info["json"] = None
    help_text = subprocess.run([args.bin, "train", "--help"], env=env, capture_output=True, text=True, timeout=120).stdout
    has_graphs, has_det = "--cuda-graphs" in help_text, "--deterministic" in help_text

    shim = smoke_shim(runner, args, env)

    common = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--device", args.device]
    if args.threads:
        common += ["--threads", str(args.threads)]
    runs = {}
    graphs_value = "on" if args.device.startswith("cuda") else "auto"
    for key, graphs in (("tch-eager", "off"), ("tch-graphed", graphs_value)):
        run_dir = os.path.join(work, key)
        shutil.rmtree(run_dir, ignore_errors=True)
        steps = os.path.join(work, key + ".steps.jsonl")
        flags = (["--deterministic"] if has_det else []) + (["--cuda-graphs", graphs] if has_graphs else [])
        if key == "tch-graphed" and not has_graphs:
            runs[key] = {"status": "skipped", "why": "this binary has no train --cuda-graphs", "flags": ""}
            continue
        r = runner.run(key, [args.bin, "train", "--data-dir", data, *common, "--out", run_dir, "--steps-jsonl", steps, *flags], env)
        r["flags"] = " ".join(flags)
        collect(r, steps, os.path.join(run_dir, "metrics.jsonl"), os.path.join(run_dir, "model.safetensors"))
        runs[key] = r
    for key, script in (("pytorch-reference", "pytorch_reference.py"), ("pytorch-resident", "pytorch_resident.py")):
        files = {k: os.path.join(work, f"{key}.{k}") for k in ("steps.jsonl", "metrics.jsonl", "safetensors")}
        r = runner.run(key, [sys.executable, os.path.join(SCRIPTS, script), "--data-dir", data, *common, "--deterministic",
                             "--steps-jsonl", files["steps.jsonl"], "--metrics-jsonl", files["metrics.jsonl"],
                             "--save-params", files["safetensors"]], env)
        r["flags"] = "--deterministic"
        collect(r, files["steps.jsonl"], files["metrics.jsonl"], files["safetensors"])
        runs[key] = r

    pairs = {
        "graphed-vs-eager": pair("tch-graphed", "tch-eager", runs, "tch graphed vs tch eager"),
        "eager-vs-reference": pair("tch-eager", "pytorch-reference", runs, "tch eager vs PyTorch reference"),
        "graphed-vs-reference": pair("tch-graphed", "pytorch-reference", runs, "tch graphed vs PyTorch reference"),
        "resident-vs-reference": pair("pytorch-resident", "pytorch-reference", runs, "PyTorch resident vs reference"),
    }
    report = {
        "config": {"device": args.device, "epochs": args.epochs, "seed": args.seed, "threads": args.threads, "bin": args.bin,
                   "shim": args.shim, "torch_lib": lib, "deterministic_flag": has_det, "cuda_graphs_flag": has_graphs,
                   "work": work, "python": sys.executable},
        "data": data_note,
        "data_prepare_s": data_s,
        "info": {k: v for k, v in info.items() if k != "cmd"},
        "shim_smoke": {k: v for k, v in shim.items() if k != "cmd"},
        "runs": {k: {kk: vv for kk, vv in r.items() if kk not in ("steps", "metrics", "params")} for k, r in runs.items()},
        "pairs": pairs,
        "targets": targets(runs, pairs, args.device),
    }
    report["total_s"] = time.monotonic() - t_start
    print_table(report)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(clean(report), f, indent=2, default=str)
        print(f"report written to {json_path}", file=sys.stderr)
    finished = all(r["status"] == "ok" for k, r in runs.items() if not (k == "tch-graphed" and not has_graphs))
    return 0 if finished and info["status"] == "ok" and shim["status"] in ("ok", "skipped") else 1


if __name__ == "__main__":
    sys.exit(main())
