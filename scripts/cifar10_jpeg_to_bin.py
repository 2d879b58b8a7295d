"""Convert a CIFAR-10 image tree (train/<class>/*.jpg, test/<class>/*.jpg) into the
official CIFAR-10 binary layout (data_batch_1..5.bin, test_batch.bin, batches.meta.txt)
and the python-pickle layout torchvision reads (cifar-10-batches-py).
Order inside each split is a fixed shuffle (seed 0), as the official batches are mixed.

A copy of ../shared/tools/cifar10-jpeg-to-bin.py (see ../shared/data/README.md), kept in the
repository so that scripts/gpu-check can convert the real images on a machine where only the
checkout travels. Usage: cifar10_jpeg_to_bin.py SRC OUT (SRC holds train/ and test/)."""
import os, sys, pickle, numpy as np
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

def load_split(root, split):
    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        d = os.path.join(root, split, name)
        for f in sorted(os.listdir(d)):
            img = Image.open(os.path.join(d, f)).convert("RGB")
            assert img.size == (32, 32), (f, img.size)
            xs.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy())  # CHW
            ys.append(label)
    x = np.stack(xs); y = np.array(ys, dtype=np.uint8)
    perm = np.random.RandomState(0).permutation(len(y))
    return x[perm], y[perm]

def main(src, out):
    bin_dir = os.path.join(out, "cifar-10-batches-bin"); py_dir = os.path.join(out, "cifar-10-batches-py")
    os.makedirs(bin_dir, exist_ok=True); os.makedirs(py_dir, exist_ok=True)
    xtr, ytr = load_split(src, "train"); xte, yte = load_split(src, "test")
    def write(name_bin, name_py, x, y, tag):
        rec = np.concatenate([y[:, None], x.reshape(len(y), -1)], axis=1).astype(np.uint8)
        rec.tofile(os.path.join(bin_dir, name_bin))
        with open(os.path.join(py_dir, name_py), "wb") as f:
            pickle.dump({"batch_label": tag, "labels": [int(v) for v in y],
                         "data": x.reshape(len(y), -1), "filenames": ["img%d.png" % i for i in range(len(y))]}, f)
    for i in range(5):
        s = slice(i * 10000, (i + 1) * 10000)
        write(f"data_batch_{i+1}.bin", f"data_batch_{i+1}", xtr[s], ytr[s], f"training batch {i+1} of 5")
    write("test_batch.bin", "test_batch", xte, yte, "testing batch 1 of 1")
    with open(os.path.join(bin_dir, "batches.meta.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n\n")
    with open(os.path.join(py_dir, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": 10000, "num_vis": 3072}, f)
    print("train", xtr.shape, np.bincount(ytr), "test", xte.shape, np.bincount(yte))

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
