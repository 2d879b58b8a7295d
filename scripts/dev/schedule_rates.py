"""The learning rate (and SGD's momentum or Adam's beta1) of every step of a run, as PyTorch's own
schedulers give them: the optimizer and scheduler built by scripts/pytorch_reference.py's
`build_recipe` from the same flags (`--lr-schedule cosine --warmup-epochs 5 ...`), stepped as its
training loop steps them (OneCycleLR after every batch, the others after every epoch), without
training. Prints one JSON object: {"lr": [...], "momentum": [...]}, one entry per step, each
float as the 64 bits of the IEEE double (an integer), so that every bit survives.

    .torch-venv/bin/python scripts/dev/schedule_rates.py --epochs 50 --steps-per-epoch 7 --lr-schedule cosine

Used by tests/recipes.rs to check src/recipe/schedule.rs float for float.
"""

import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # scripts/, for pytorch_reference
import torch  # noqa: E402

import pytorch_reference  # noqa: E402


def bits(x):
    """The IEEE-754 bits of the double `x`, as an integer."""
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def main(argv=None):
    def extra(p):
        p.add_argument("--steps-per-epoch", type=int, required=True, help="batches per epoch")

    args = pytorch_reference.parse_args(argv, extra)
    net = torch.nn.Linear(1, 1)
    _, optimizer, per_epoch, per_batch = pytorch_reference.build_recipe(args, net, args.steps_per_epoch)
    group = optimizer.param_groups[0]
    key = "momentum" if "momentum" in group else "betas"
    lrs, moms = [], []
    for _ in range(args.epochs):
        for _ in range(args.steps_per_epoch):
            m = group[key] if key == "momentum" else group[key][0]
            lrs.append(bits(group["lr"]))
            moms.append(bits(m))
            optimizer.step()  # no gradients: changes nothing, but keeps the schedulers' order checks quiet
            if per_batch is not None:
                per_batch.step()
        if per_epoch is not None:
            per_epoch.step()
    print(json.dumps({"lr": lrs, "momentum": moms}))


if __name__ == "__main__":
    main()
