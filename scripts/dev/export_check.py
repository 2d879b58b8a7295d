#!/usr/bin/env python3
"""Runs models written by `tch-cifar10 export` the way a deployment would, for tests/export.rs.

Run it with the Python that scripts/setup-libtorch installs (torch 2.11.0, onnxruntime, onnx,
safetensors):

  .torch-venv/bin/python scripts/dev/export_check.py --input X.safetensors --logits-out L.safetensors \
      [--torchscript model.pt] [--onnx model.onnx]

`X.safetensors` holds any number of float32 tensors `[N, 3, 32, 32]` (already normalised). The
TorchScript file is loaded with `torch.jit.load` (its tensor operations are reported), the
ONNX file is checked with `onnx.checker.check_model(full_check=True)` and run with an
onnxruntime CPU session; each input goes through each model, and `L.safetensors` gets the
logits as `torchscript.NAME` and `onnx.NAME`. A JSON summary of what the files declare goes to
stdout.
"""

import argparse
import json

import numpy as np
import torch
from safetensors.numpy import load_file, save_file


def dims(value_info):
    """A tensor value's shape: ints, or the parameter's name for a symbolic dimension."""
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value_info.type.tensor_type.shape.dim]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--logits-out", required=True)
    ap.add_argument("--torchscript")
    ap.add_argument("--onnx")
    a = ap.parse_args()
    inputs = load_file(a.input)
    logits, summary = {}, {}

    if a.torchscript:
        module = torch.jit.load(a.torchscript, map_location="cpu")
        module.eval()
        with torch.no_grad():
            for name, x in inputs.items():
                logits[f"torchscript.{name}"] = module(torch.from_numpy(x)).numpy()
        summary["torchscript"] = {
            "ops": [n.kind() for n in module.inlined_graph.nodes() if n.kind().startswith("aten::")],
            "parameters": len(list(module.parameters())),
        }

    if a.onnx:
        import onnx
        import onnxruntime as ort

        model = onnx.load(a.onnx)
        onnx.checker.check_model(model, full_check=True)
        session = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
        for name, x in inputs.items():
            (logits[f"onnx.{name}"],) = session.run(["logits"], {"input": x})
        summary["onnx"] = {
            "ir_version": model.ir_version,
            "opset": {o.domain: o.version for o in model.opset_import},
            "inputs": {v.name: dims(v) for v in model.graph.input},
            "outputs": {v.name: dims(v) for v in model.graph.output},
            "ops": [n.op_type for n in model.graph.node],
            "initializers": {t.name: list(t.dims) for t in model.graph.initializer},
            "metadata": {p.key: p.value for p in model.metadata_props},
            "runtime_metadata": dict(session.get_modelmeta().custom_metadata_map),
            "onnxruntime": ort.__version__,
        }

    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in logits.items()}, a.logits_out)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
