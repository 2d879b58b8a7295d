"""Writes a CIFAR-10 binary layout (ROOT/cifar-10-batches-bin, made by the Rust tests) again in
the python layout that torchvision downloads (cifar-10-batches-py/), in the pickle styles found
in the wild, and reads each back with torchvision, for tests/cifar_python.rs.

  cifar_python.py good ROOT OUT_ROOT
      For each style, OUT_ROOT/STYLE/cifar-10-batches-py/ (data_batch_1..5, test_batch,
      batches.meta) and OUT_ROOT/STYLE/torchvision.safetensors: what torchvision's CIFAR10
      gives for those files (`train_data`, `test_data` as N x 32 x 32 x 3 uint8, `train_targets`,
      `test_targets` as int64; the class names in the metadata, JSON).
      Styles: py2 (as the official files: Python 2's cPickle at protocol 2, every string a
      byte string), py3-2 ... py3-5 (Python 3's pickle at that protocol, str keys, as
      the project's shared tool cifar10-jpeg-to-bin.py writes them).

  cifar_python.py bad ROOT OUT_ROOT
      OUT_ROOT/CASE/cifar-10-batches-py/, py3-4 style, each with one defect (see BAD below).
"""

import json
import os
import pickle
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from cifar_layouts import read_bin  # noqa: E402  (the binary layout, as the programs read it)


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did: every str and bytes as a Python 2 `str`
    (SHORT_BINSTRING / BINSTRING), so keys, names and numpy's raw array bytes all are."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def dump(obj, path, style):
    with open(path, "wb") as f:
        if style == "py2":
            Py2Pickler(f, protocol=2).dump(obj)
        else:
            pickle.dump(obj, f, protocol=int(style.split("-")[1]))


def write_py(out, batches, classes, style, change=None):
    d = os.path.join(out, "cifar-10-batches-py")
    os.makedirs(d, exist_ok=True)
    for name, (data, labels) in batches.items():
        entry = {"batch_label": name, "labels": [int(v) for v in labels], "data": data,
                 "filenames": [f"img{i}.png" for i in range(len(labels))]}
        if change:
            entry = change(name, entry)
        dump(entry, os.path.join(d, name), style)
    meta = {"label_names": classes, "num_cases_per_batch": 10000, "num_vis": 3072}
    if change:
        meta = change("batches.meta", meta)
    dump(meta, os.path.join(d, "batches.meta"), style)


def torchvision_view(root, out):
    from safetensors.numpy import save_file
    import torchvision.datasets.cifar as tv_cifar

    tv_cifar.check_integrity = lambda *args, **kwargs: True  # ours are not the official files (md5)
    tensors, classes = {}, None
    for split, train in (("train", True), ("test", False)):
        ds = tv_cifar.CIFAR10(root, train=train, download=False)
        tensors[f"{split}_data"] = np.ascontiguousarray(ds.data)
        tensors[f"{split}_targets"] = np.asarray(ds.targets, dtype=np.int64)
        classes = ds.classes
    save_file(tensors, out, metadata={"classes": json.dumps(classes)})


def edit(target, key, value):
    def change(name, entry):
        if name == target:
            entry = dict(entry)
            if value is DELETE:
                del entry[key]
            else:
                entry[key] = value(entry[key]) if callable(value) else value
        return entry
    return change


DELETE = object()

# case: (how the files change, the Rust test's expected words)
BAD = {
    "label_range": edit("test_batch", "labels", lambda l: l[:2] + [10] + l[3:]),
    "float_data": edit("data_batch_2", "data", lambda d: d.astype(np.float32)),
    "wrong_shape": edit("data_batch_3", "data", lambda d: d[:, :1024].copy()),
    "label_count": edit("data_batch_1", "labels", lambda l: l[:-1]),
    "no_labels": edit("data_batch_4", "labels", DELETE),
    "labels_not_ints": edit("data_batch_4", "labels", lambda l: [str(v) for v in l]),
    "labels_array": edit("data_batch_3", "labels", lambda l: np.array(l, dtype=np.int64)),
    "no_label_names": edit("batches.meta", "label_names", DELETE),
    "one_class": edit("batches.meta", "label_names", lambda n: n[:1]),
    "not_a_dict": lambda name, entry: list(entry.items()) if name == "data_batch_5" else entry,
    "object_array": edit("data_batch_2", "data", lambda d: np.array([None] * len(d), dtype=object)),
}


def main():
    mode, root, out_root = sys.argv[1:4]
    batches, classes = read_bin(root)
    if mode == "good":
        for style in ("py2", "py3-2", "py3-3", "py3-4", "py3-5"):
            out = os.path.join(out_root, style)
            write_py(out, batches, classes, style)
            torchvision_view(out, os.path.join(out, "torchvision.safetensors"))
    else:
        for case, change in BAD.items():
            write_py(os.path.join(out_root, case), batches, classes, "py3-4", change)


if __name__ == "__main__":
    main()
