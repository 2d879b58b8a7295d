"""CIFAR-10 in the two layouts the programs read, so both can be given the same images:

  cifar-10-batches-bin/  the official binary release, read by tch-cifar10: data_batch_1.bin ..
                         data_batch_5.bin, test_batch.bin (3073-byte records: a label byte, then
                         1024 red, 1024 green, 1024 blue bytes, row-major) and batches.meta.txt
  cifar-10-batches-py/   the official Python release, read by torchvision (and tch-cifar10): the same files
                         without `.bin`, each a pickled dict {"data": uint8 [N, 3072],
                         "labels": [N ints], ...}, and batches.meta {"label_names": [...]}

Usage (with the Python of scripts/setup-libtorch, `.torch-venv/bin/python`):
  cifar_layouts.py bin-to-py ROOT     ROOT/cifar-10-batches-bin -> ROOT/cifar-10-batches-py
  cifar_layouts.py py-to-bin ROOT     ROOT/cifar-10-batches-py  -> ROOT/cifar-10-batches-bin
  cifar_layouts.py synthetic ROOT [--train N] [--test N] [--seed S]
                                      random CIFAR-shaped images and labels in both layouts

Each layout is written into a temporary folder beside its final name and renamed into place
when complete, so an interrupted run leaves no half-written layout. An existing layout is never
overwritten.
"""

import argparse
import os
import pickle
import shutil
import sys
import tempfile

import numpy as np

BIN, PY = "cifar-10-batches-bin", "cifar-10-batches-py"
RECORD = 3073
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST = "test_batch"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class LayoutError(Exception):
    pass


def _write_atomically(final, fill):
    """Calls fill(tmp_dir), then renames tmp_dir to `final`."""
    if os.path.exists(final):
        raise LayoutError(f"{final} already exists; not overwriting it")
    parent = os.path.dirname(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(final) + ".", dir=parent)
    try:
        fill(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_bin(root):
    """{name: (data uint8 [N, 3072], labels uint8 [N])} and the class names, from ROOT/cifar-10-batches-bin."""
    d = os.path.join(root, BIN)
    splits = {}
    for name in TRAIN + [TEST]:
        path = os.path.join(d, name + ".bin")
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as e:
            raise LayoutError(f"{path}: {e.strerror}") from e
        if raw.size == 0 or raw.size % RECORD:
            raise LayoutError(f"{path}: size {raw.size} is not a positive whole number of {RECORD}-byte records")
        rec = raw.reshape(-1, RECORD)
        splits[name] = (rec[:, 1:].copy(), rec[:, 0].copy())
    meta = os.path.join(d, "batches.meta.txt")
    try:
        with open(meta) as f:
            classes = [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise LayoutError(f"{meta}: {e.strerror}") from e
    return splits, classes


def read_py(root):
    """As read_bin, from ROOT/cifar-10-batches-py."""
    d = os.path.join(root, PY)
    splits = {}
    for name in TRAIN + [TEST]:
        path = os.path.join(d, name)
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, RECORD - 1)
            labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.uint8)
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, TypeError) as e:
            raise LayoutError(f"{path}: not a CIFAR-10 python batch ({e})") from e
        if len(labels) != len(data):
            raise LayoutError(f"{path}: {len(data)} images but {len(labels)} labels")
        splits[name] = (data, labels)
    meta = os.path.join(d, "batches.meta")
    try:
        with open(meta, "rb") as f:
            classes = list(pickle.load(f, encoding="latin1")["label_names"])
    except (OSError, pickle.UnpicklingError, KeyError) as e:
        raise LayoutError(f"{meta}: not a CIFAR-10 batches.meta ({e})") from e
    return splits, classes


def write_bin(root, splits, classes):
    def fill(d):
        for name, (data, labels) in splits.items():
            rec = np.concatenate([labels.reshape(-1, 1).astype(np.uint8), data.reshape(len(labels), -1)], axis=1)
            rec.astype(np.uint8).tofile(os.path.join(d, name + ".bin"))
        with open(os.path.join(d, "batches.meta.txt"), "w") as f:
            f.write("\n".join(classes) + "\n\n")
    _write_atomically(os.path.join(root, BIN), fill)


def write_py(root, splits, classes):
    def fill(d):
        for name, (data, labels) in splits.items():
            tag = "testing batch 1 of 1" if name == TEST else f"training batch {name[-1]} of 5"
            entry = {"batch_label": tag, "labels": [int(v) for v in labels], "data": data.reshape(len(labels), -1),
                     "filenames": [f"img{i}.png" for i in range(len(labels))]}
            with open(os.path.join(d, name), "wb") as f:
                pickle.dump(entry, f)
        with open(os.path.join(d, "batches.meta"), "wb") as f:
            pickle.dump({"label_names": list(classes), "num_cases_per_batch": len(splits[TRAIN[0]][1]), "num_vis": 3072}, f)
    _write_atomically(os.path.join(root, PY), fill)


def synthetic_splits(n_train, n_test, seed=0, classes=10):
    """Uniform random pixels and labels: CIFAR-shaped, not learnable; for timing only."""
    if n_train < 5 or n_test < 1:
        raise LayoutError(f"need at least 5 training images (one per batch file) and 1 test image, got {n_train} and {n_test}")
    rng = np.random.default_rng(seed)
    splits = {}
    for name, part in zip(TRAIN, np.array_split(np.arange(n_train), 5)):
        splits[name] = (rng.integers(0, 256, (len(part), 3072), dtype=np.uint8), rng.integers(0, classes, len(part), dtype=np.uint8))
    splits[TEST] = (rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), rng.integers(0, classes, n_test, dtype=np.uint8))
    return splits, CLASSES[:classes]


def ensure_both(root):
    """Writes whichever layout ROOT lacks from the one it has; returns what was done."""
    has_bin, has_py = os.path.isdir(os.path.join(root, BIN)), os.path.isdir(os.path.join(root, PY))
    if has_bin and has_py:
        return "both layouts present"
    if has_bin:
        write_py(root, *read_bin(root))
        return f"wrote {PY} from {BIN}"
    if has_py:
        write_bin(root, *read_py(root))
        return f"wrote {BIN} from {PY}"
    raise LayoutError(f"{root} holds neither {BIN}/ nor {PY}/")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("bin-to-py", help=f"ROOT/{BIN} -> ROOT/{PY}").add_argument("root")
    sub.add_parser("py-to-bin", help=f"ROOT/{PY} -> ROOT/{BIN}").add_argument("root")
    s = sub.add_parser("synthetic", help="random CIFAR-shaped data in both layouts")
    s.add_argument("root")
    s.add_argument("--train", type=int, default=50000)
    s.add_argument("--test", type=int, default=10000)
    s.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        if args.command == "bin-to-py":
            write_py(args.root, *read_bin(args.root))
        elif args.command == "py-to-bin":
            write_bin(args.root, *read_py(args.root))
        else:
            splits, classes = synthetic_splits(args.train, args.test, args.seed)
            write_bin(args.root, splits, classes)
            write_py(args.root, splits, classes)
    except LayoutError as e:
        sys.exit(f"cifar_layouts: error: {e}")


if __name__ == "__main__":
    main()
