"""Compares two runs of the same seed step by step, for `--kernels fast` against `--kernels
reference` (the accuracy table of the README): each run's final test accuracy (from its
metrics.jsonl), the largest step-loss difference over the first N steps and over all steps, and how
many of the first N are identical.

  python3 scripts/dev/compare_kernels.py REF_RUN REF.steps.jsonl FAST_RUN FAST.steps.jsonl [--first 100]

where a run is the folder `tch-cifar10 train --out` made and the steps file what its
`--steps-jsonl` wrote (one `{"epoch", "step", "loss"}` line a step). Standard library only.
"""

import argparse
import json
import pathlib


def steps(path):
    with open(path) as f:
        return [json.loads(line)["loss"] for line in f if line.strip()]


def test_acc(run):
    lines = [json.loads(l) for l in pathlib.Path(run, "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [l["test_acc"] for l in lines if "test_acc" in l][-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ref_run")
    p.add_argument("ref_steps")
    p.add_argument("fast_run")
    p.add_argument("fast_steps")
    p.add_argument("--first", type=int, default=100)
    a = p.parse_args()
    r, f = steps(a.ref_steps), steps(a.fast_steps)
    if len(r) != len(f):
        raise SystemExit(f"compare_kernels: {len(r)} steps in {a.ref_steps} but {len(f)} in {a.fast_steps}")
    d = [abs(x - y) for x, y in zip(r, f)]
    n = min(a.first, len(d))
    print(json.dumps({
        "ref_test_acc": test_acc(a.ref_run), "fast_test_acc": test_acc(a.fast_run), "steps": len(d),
        f"first_{n}_max_diff": max(d[:n]), f"first_{n}_identical": sum(x == 0 for x in d[:n]),
        "all_max_diff": max(d),
    }))


if __name__ == "__main__":
    main()
