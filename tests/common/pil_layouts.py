"""Writes 32x32 images in the layouts where PIL's conversion to RGB is easy to get wrong, and
prints what PIL reads from each (`Image.open(p).convert("RGB")`, as torchvision's loader does)
as JSON {file name: [R, G, B, R, ...] row-major}, for tests/folder.rs.
Run with the venv's Python: `pil_layouts.py OUT_DIR`.

  gray100.pgm    P5, maxval 100          gray1023.pgm   P5, maxval 1023 (16-bit samples)
  rgb1000.ppm    P6, maxval 1000         plain7.ppm     P3 (text), maxval 7
  plain300.pgm   P2 (text), maxval 300   cmyk.tif       8-bit CMYK, written by PIL
  ycbcr.tif      8-bit YCbCr, written by PIL (this program skips it: not in the JSON)
"""

import json
import os
import sys

import numpy as np
from PIL import Image

out = sys.argv[1]
rng = np.random.default_rng(7)


def pnm(name, magic, maxval, bands):
    samples = rng.integers(0, maxval + 1, (32, 32, bands))
    head = f"{magic}\n# made by pil_layouts.py\n32 32\n{maxval}\n".encode()
    if magic in ("P2", "P3"):
        body = " ".join(str(v) for v in samples.flatten()).encode() + b"\n"
    elif maxval < 256:
        body = samples.astype(np.uint8).tobytes()
    else:
        body = samples.astype(">u2").tobytes()
    with open(os.path.join(out, name), "wb") as f:
        f.write(head + body)


pnm("gray100.pgm", "P5", 100, 1)
pnm("gray1023.pgm", "P5", 1023, 1)
pnm("rgb1000.ppm", "P6", 1000, 3)
pnm("plain7.ppm", "P3", 7, 3)
pnm("plain300.pgm", "P2", 300, 1)
rgb = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
rgb.convert("CMYK").save(os.path.join(out, "cmyk.tif"))
rgb.convert("YCbCr").save(os.path.join(out, "ycbcr.tif"))

read = {}
for name in sorted(os.listdir(out)):
    if name != "ycbcr.tif":
        read[name] = list(Image.open(os.path.join(out, name)).convert("RGB").tobytes())
print(json.dumps(read))
