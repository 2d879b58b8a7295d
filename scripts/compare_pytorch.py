"""Runs the PyTorch reference (scripts/pytorch_reference.py) and tch-cifar10 with the same seed,
data, device and threads, one after the other, and compares every step's loss, every epoch's
figures, the test accuracy and the final parameters. Started by scripts/compare-pytorch.

Exit status: 0 when everything is identical bit for bit, 1 when something differs, 2 when a
run failed or the arguments are wrong.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cifar_layouts  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTORCH_DEFAULT_SEED = 67280421310721


def die(msg):
    print(f"compare-pytorch: error: {msg}", file=sys.stderr)
    sys.exit(2)


# What each side leaves in --out: every step's loss, every epoch's figures, the final weights.
FILES = {
    "pytorch": {"steps": "pytorch.steps.jsonl", "metrics": "pytorch.metrics.jsonl", "params": "pytorch.safetensors"},
    "tch": {"steps": "tch.steps.jsonl", "metrics": os.path.join("tch-run", "metrics.jsonl"),
            "params": os.path.join("tch-run", "model.safetensors")},
}


def read_jsonl(path):
    """The records of a JSON-lines file."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as e:
                    die(f"{path}:{n}: not JSON ({e})")


def read_steps(path):
    """{(epoch, step): loss} from a --steps-jsonl file."""
    try:
        return {(int(r["epoch"]), int(r["step"])): float(r["loss"]) for r in read_jsonl(path)}
    except (KeyError, TypeError, ValueError) as e:
        die(f"{path}: not a steps file ({e!r})")


def read_epochs(path):
    """{epoch: record} from a metrics.jsonl file."""
    try:
        return {int(r["epoch"]): r for r in read_jsonl(path)}
    except (KeyError, TypeError, ValueError) as e:
        die(f"{path}: not a metrics file ({e!r})")


def same(a, b):
    """Bit-for-bit equality of two floats (NaN equals NaN)."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def step_diffs(ref_steps, tch_steps):
    """Compares two {(epoch, step): loss} maps (the first side named "pytorch", the second "tch").
    Returns (every step key, how many are identical, the first step that differs or is missing on
    one side, the largest |diff| among steps on both sides, and where it is)."""
    keys = sorted(set(ref_steps) | set(tch_steps))
    first, largest, largest_at, equal_steps = None, 0.0, None, 0
    for k in keys:
        a, b = ref_steps.get(k), tch_steps.get(k)
        if a is None or b is None:
            first = first or {"epoch": k[0], "step": k[1], "pytorch": a, "tch": b}
            continue
        if same(a, b):
            equal_steps += 1
            continue
        first = first or {"epoch": k[0], "step": k[1], "pytorch": a, "tch": b}
        d = abs(a - b) if not (math.isnan(a) or math.isnan(b)) else math.inf
        if d > largest or largest_at is None:
            largest, largest_at = d, {"epoch": k[0], "step": k[1]}
    return keys, equal_steps, first, largest, largest_at


def param_diffs(ref_p, tch_p):
    """Compares two {name: numpy array} parameter sets bit for bit: {"tensors", "values",
    "differing": [{"name", "values", "largest"}], "largest": the largest |diff|}."""
    import numpy as np

    params = {"tensors": len(ref_p), "values": sum(int(t.size) for t in ref_p.values()), "differing": [], "largest": 0.0}
    for name in sorted(set(ref_p) | set(tch_p)):
        a, b = ref_p.get(name), tch_p.get(name)
        if a is None or b is None or a.shape != b.shape or a.dtype != b.dtype:
            params["differing"].append({"name": name, "why": "missing or of another shape/dtype"})
            params["largest"] = math.inf
            continue
        bits_differ = a.view(np.uint8).reshape(a.size, -1) != b.view(np.uint8).reshape(b.size, -1)
        n = int(bits_differ.any(axis=1).sum())
        if n:
            d = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            params["differing"].append({"name": name, "values": n, "largest": d})
            params["largest"] = max(params["largest"], d)
    return params


def compare(out):
    """The comparison of the runs' outputs in `out`, as a dict."""
    from safetensors.numpy import load_file

    path = {side: {k: os.path.join(out, f) for k, f in files.items()} for side, files in FILES.items()}
    ref_steps, tch_steps = read_steps(path["pytorch"]["steps"]), read_steps(path["tch"]["steps"])
    ref_epochs, tch_epochs = read_epochs(path["pytorch"]["metrics"]), read_epochs(path["tch"]["metrics"])
    keys, equal_steps, first, largest, largest_at = step_diffs(ref_steps, tch_steps)

    fields = ["lr", "train_loss", "train_acc", "test_loss", "test_acc"]
    epoch_diffs = {}
    for e in sorted(set(ref_epochs) | set(tch_epochs)):
        a, b = ref_epochs.get(e, {}), tch_epochs.get(e, {})
        for f in fields:
            if (f in a) != (f in b):
                epoch_diffs.setdefault(f, {"epoch": e, "pytorch": a.get(f), "tch": b.get(f), "largest": math.inf})
            elif f in a and not same(float(a[f]), float(b[f])):
                d = abs(float(a[f]) - float(b[f]))
                if f not in epoch_diffs or d > epoch_diffs[f]["largest"]:
                    epoch_diffs[f] = {"epoch": e, "pytorch": a[f], "tch": b[f], "largest": d}
    last = max(ref_epochs) if ref_epochs else None
    test_acc = {"pytorch": ref_epochs.get(last, {}).get("test_acc"), "tch": tch_epochs.get(last, {}).get("test_acc")}
    if None not in test_acc.values():
        test_acc["diff"] = abs(test_acc["pytorch"] - test_acc["tch"])

    ref_p, tch_p = load_file(path["pytorch"]["params"]), load_file(path["tch"]["params"])
    params = param_diffs(ref_p, tch_p)

    seconds = {}
    for side, eps in (("pytorch", ref_epochs), ("tch", tch_epochs)):
        s = sorted(float(r["seconds"]) for r in eps.values() if "seconds" in r)
        if s:
            seconds[side] = s[len(s) // 2]
    identical = (first is None and not epoch_diffs and not params["differing"]
                 and len(keys) > 0 and len(ref_p) > 0)
    return {
        "identical": identical,
        "steps": len(keys),
        "identical_steps": equal_steps,
        "first_differing_step": first,
        "largest_step_loss_diff": largest,
        "largest_step_loss_diff_at": largest_at,
        "epoch_figure_diffs": epoch_diffs,
        "test_acc": test_acc,
        "params": params,
        "median_epoch_seconds": seconds,
    }


def print_report(r, header):
    print(header)
    print(f"steps            {r['steps']} compared, {r['identical_steps']} identical")
    print(f"largest |diff|   {r['largest_step_loss_diff']:.6g} (per-step loss)"
          + (f" at epoch {r['largest_step_loss_diff_at']['epoch']} step {r['largest_step_loss_diff_at']['step']}"
             if r["largest_step_loss_diff_at"] else ""))
    f = r["first_differing_step"]
    print("first differing  " + ("none" if f is None else
                                 f"epoch {f['epoch']} step {f['step']}: PyTorch {f['pytorch']!r}, tch-cifar10 {f['tch']!r}"))
    if r["epoch_figure_diffs"]:
        for name, d in r["epoch_figure_diffs"].items():
            print(f"epoch figures    {name}: largest |diff| {d['largest']:.6g} (epoch {d['epoch']}: PyTorch {d['pytorch']!r}, tch-cifar10 {d['tch']!r})")
    else:
        print("epoch figures    lr, train loss/acc, test loss/acc: identical")
    t = r["test_acc"]
    if "diff" in t:
        print(f"test accuracy    PyTorch {t['pytorch']:.4f}, tch-cifar10 {t['tch']:.4f}, |diff| {t['diff']:.6g}")
    p = r["params"]
    if p["differing"]:
        names = ", ".join(d["name"] for d in p["differing"])
        print(f"parameters       {len(p['differing'])} of {p['tensors']} tensors differ ({names}); largest |diff| {p['largest']:.6g}")
    else:
        print(f"parameters       {p['tensors']} tensors, {p['values']} values: identical bit for bit")
    s = r["median_epoch_seconds"]
    if len(s) == 2:
        print(f"epoch seconds    PyTorch {s['pytorch']:.2f}, tch-cifar10 {s['tch']:.2f} (median; not a benchmark: see scripts/bench)")
    print("result           " + ("IDENTICAL bit for bit" if r["identical"] else "DIFFERENT"))


def run(cmd, log, env=None):
    print("+ " + " ".join(cmd), file=sys.stderr)
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        die(f"`{' '.join(cmd)}` failed with status {rc}; its output ({log}) ends:\n{tail}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="compare-pytorch", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="data", help="folder with cifar-10-batches-bin/ and/or cifar-10-batches-py/ (a missing layout is converted from the other into --out) [data]")
    p.add_argument("--epochs", type=int, default=2, help="epochs to train [2]")
    p.add_argument("--seed", type=int, default=PYTORCH_DEFAULT_SEED, help=f"torch.manual_seed for both [{PYTORCH_DEFAULT_SEED}, PyTorch's default]")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [cpu]")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for both [their default: the physical cores]")
    p.add_argument("--eval-every", type=int, default=None, metavar="N", help="also test every N epochs")
    p.add_argument("--out", default=None, help="keep the runs' outputs here (steps, metrics, weights, logs; tch-cifar10's run directory as tch-run/) [a temporary folder]")
    p.add_argument("--bin", default=None, help="the tch-cifar10 binary [build and use target/release/tch-cifar10]")
    p.add_argument("--reuse", action="store_true", help="do not run anything: compare again the outputs already in --out (the run options are ignored)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.epilog = ("Any other flag is a recipe flag that both programs take with the same name "
                "(--augment crop-flip, --optimizer adamw, --lr-schedule cosine, ...; see "
                "`scripts/pytorch_reference.py --help`) and is passed to both.")
    args, recipe = p.parse_known_args(argv)
    if args.reuse and not args.out:
        p.error("--reuse needs --out")
    for name in ("epochs", "threads", "eval_every"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {v}")

    out = args.out or tempfile.mkdtemp(prefix="compare-pytorch.")
    if not args.reuse:
        os.makedirs(out, exist_ok=True)
        tch_data = py_data = args.data_dir
        has = {lay: os.path.isdir(os.path.join(args.data_dir, lay)) for lay in (cifar_layouts.BIN, cifar_layouts.PY)}
        if not any(has.values()):
            p.error(f"{args.data_dir} holds neither {cifar_layouts.BIN}/ nor {cifar_layouts.PY}/")
        if not all(has.values()):
            conv = os.path.join(out, "data")
            shutil.rmtree(conv, ignore_errors=True)
            try:
                if has[cifar_layouts.BIN]:
                    cifar_layouts.write_py(conv, *cifar_layouts.read_bin(args.data_dir))
                    py_data = conv
                else:
                    cifar_layouts.write_bin(conv, *cifar_layouts.read_py(args.data_dir))
                    tch_data = conv
            except cifar_layouts.LayoutError as e:
                die(f"{e}")
        binary = args.bin
        if binary is None:
            run(["cargo", "build", "--release", "--quiet"], os.path.join(out, "build.log"))
            binary = os.path.join(REPO, "target", "release", "tch-cifar10")
        common = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--device", args.device, *recipe]
        if args.threads:
            common += ["--threads", str(args.threads)]
        if args.eval_every:
            common += ["--eval-every", str(args.eval_every)]
        ref = {k: os.path.join(out, f) for k, f in FILES["pytorch"].items()}
        run([sys.executable, os.path.join(REPO, "scripts", "pytorch_reference.py"), "--data-dir", py_data, *common,
             "--steps-jsonl", ref["steps"], "--metrics-jsonl", ref["metrics"], "--save-params", ref["params"]],
            os.path.join(out, "pytorch.log"))
        run_dir = os.path.join(out, "tch-run")  # tch-cifar10's run directory: metrics.jsonl, model.safetensors
        shutil.rmtree(run_dir, ignore_errors=True)
        run([binary, "train", "--data-dir", tch_data, *common, "--out", run_dir,
             "--steps-jsonl", os.path.join(out, FILES["tch"]["steps"])],
            os.path.join(out, "tch.log"))

    config_path = os.path.join(out, "config.json")
    if args.reuse:
        try:
            with open(config_path) as f:
                config = json.load(f)
        except (OSError, ValueError) as e:
            die(f"{config_path}: {e} (run without --reuse first)")
    else:
        config = {"data_dir": args.data_dir, "epochs": args.epochs, "seed": args.seed, "device": args.device,
                  "threads": args.threads, "eval_every": args.eval_every, "recipe": recipe}
        with open(config_path, "w") as f:
            json.dump(config, f)
    try:
        r = compare(out)
    except FileNotFoundError as e:
        die(f"{e.filename}: missing (run without --reuse first)")
    r["config"] = {**config, "out": out}
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        c = config
        threads = f"{c['threads']} thread(s)" if c["threads"] else "default threads"
        flags = " ".join(c.get("recipe") or []) or "the reference recipe"
        print_report(r, f"compare-pytorch: {c['device']}, {threads}, seed {c['seed']}, {c['epochs']} epoch(s), "
                        f"{flags}, data {c['data_dir']}; outputs in {out}")
    return 0 if r["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
