#!/usr/bin/env python3
"""Weights between PyTorch and tch-cifar10, both directions, through safetensors.

Run it with the Python that scripts/setup-libtorch installs (torch 2.11.0 and safetensors):

  .torch-venv/bin/python scripts/interop.py load runs/NAME/model.safetensors
      Loads a tch-cifar10 model file into the reference `Net` with
      `load_state_dict(strict=True)` (every name and shape must match), prints its class names
      (the file's `classes` metadata), and the logits and top class of a fixed input.

  .torch-venv/bin/python scripts/interop.py export net.safetensors [--seed S] [--classes N]
      Saves a reference `Net` (`torch.manual_seed(S); Net()`) as a plain PyTorch state_dict with
      `safetensors.torch.save_file`, as PyTorch users save one (no class metadata);
      `tch-cifar10 eval|predict --checkpoint net.safetensors` then loads it.

  .torch-venv/bin/python scripts/interop.py both runs/NAME/model.safetensors net.safetensors
      Both of the above in one run (one torch start-up); tests/interop.rs uses it.

All take `--input X.safetensors` (a float32 tensor named `input`, `[N, 3, 32, 32]`, already
normalised) instead of the fixed input, and `--logits-out L.safetensors` to save the logits (a
tensor named `logits`) for comparison; tests/interop.rs runs both and compares with the Rust
side's logits. A JSON summary goes to stdout.
"""

import argparse
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


# The reference Net, defined once, in the reference program.
from pytorch_reference import Net


def fixed_input():
    """Two deterministic images in [-1, 1] (what Normalize(0.5, 0.5) produces), no RNG needed."""
    n = 2 * 3 * 32 * 32
    return torch.sin(torch.arange(n, dtype=torch.float32) * 0.37).reshape(2, 3, 32, 32)


def read_input(path):
    if path is None:
        return fixed_input()
    x = load_file(path)["input"]
    if x.dtype != torch.float32 or x.dim() != 4 or tuple(x.shape[1:]) != (3, 32, 32):
        sys.exit(f"{path}: expected a float32 tensor `input` of shape [N, 3, 32, 32], got {x.dtype} {list(x.shape)}")
    return x


def logits_of(net, args, key="logits"):
    """The net's logits on the input; saved as tensor `key` in --logits-out (added to the file
    when `both` writes its second set)."""
    net.eval()
    with torch.no_grad():
        logits = net(read_input(args.input))
    if args.logits_out:
        saved = load_file(args.logits_out) if key != "logits" else {}
        saved[key] = logits.contiguous()
        save_file(saved, args.logits_out)
    return logits


def cmd_load(args):
    state = load_file(args.model)
    with safe_open(args.model, framework="pt") as f:
        meta = f.metadata() or {}
    if "fc3.weight" not in state:
        sys.exit(f"{args.model}: no fc3.weight; not a Net state_dict")
    net = Net(num_classes=state["fc3.weight"].shape[0])
    net.load_state_dict(state, strict=True)  # raises on any missing, extra or misshapen tensor
    classes = json.loads(meta["classes"]) if "classes" in meta else None
    logits = logits_of(net, args)
    top = logits.argmax(1).tolist()
    return {
        "model": args.model,
        "classes": classes,
        "written_by": meta.get("tch_cifar10_version"),
        "logits_shape": list(logits.shape),
        "top_class": [classes[i] if classes else i for i in top],
    }


def cmd_export(args, key="logits"):
    torch.manual_seed(args.seed)
    net = Net(num_classes=args.classes)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, args.out)
    logits = logits_of(net, args, key)
    return {"saved": args.out, "seed": args.seed, "classes": args.classes, "logits_shape": list(logits.shape)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    load = sub.add_parser("load", help="load a tch-cifar10 model file into the reference Net (strict)")
    load.add_argument("model")
    export = sub.add_parser("export", help="save a reference Net's state_dict with safetensors")
    export.add_argument("out")
    both = sub.add_parser("both", help="load, then export, in one run")
    both.add_argument("model")
    both.add_argument("out")
    for s in (export, both):
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--classes", type=int, default=10)
    for s in (load, export, both):
        s.add_argument("--input", help="safetensors file with a float32 `input` [N, 3, 32, 32]")
        s.add_argument("--logits-out", help="save the logits here (tensor `logits`; `both` adds `exported`)")
    args = p.parse_args()
    if args.cmd == "load":
        summary = cmd_load(args)
    elif args.cmd == "export":
        summary = cmd_export(args)
    else:
        summary = {"load": cmd_load(args), "export": cmd_export(args, key="exported")}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
