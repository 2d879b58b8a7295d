"""Saves the reference Net (scripts/pytorch_reference.py) the ways PyTorch users save it, for
tests/pth.rs. Run with the venv's Python: `pth_files.py OUT_DIR`.

Weights: `torch.manual_seed(3); Net()`. In OUT_DIR:
  state_dict.safetensors   the same weights with safetensors (the comparison for the rest)
  state_dict.pth           torch.save(net.state_dict()): an OrderedDict with `_metadata`
  no_metadata.pth          the same OrderedDict without `_metadata`
  plain_dict.pth           a plain dict
  protocol4.pth            pickle_protocol=4
  strided.pth              fc1.weight a transposed view, conv1.weight at a storage offset
  F16.pth BF16.pth F64.pth               the state_dict in that dtype
  F16.safetensors BF16.safetensors F64.safetensors   the same, with safetensors
  F16_as_F32.safetensors ...             those values cast to float32 by PyTorch
  module.pth               torch.save(net): the whole module
  dataparallel.pth         the state_dict of nn.DataParallel(net) (`module.` prefixes)
  compiled.pth             the state_dict of torch.compile(net) (`_orig_mod.` prefixes)
  checkpoint.pth           {"model_state_dict": ..., "epoch": 3}
  torchscript.pt           torch.jit.save(torch.jit.script(net))
  tensor.pth               torch.save(a tensor)
  legacy.pth               _use_new_zipfile_serialization=False (PyTorch < 1.6 format)
  pickle.pkl               pickle.dump of the state_dict as numpy arrays
  other.zip                a zip of a text file
  int64.pth                fc1.bias as int64
  nan.pth                  fc2.weight[3, 5] = NaN
  overflow.pth             float64, fc1.bias[0] = 1e300 (infinite once cast to float32)
and logits.safetensors: the logits (`logits`) of the Net on a fixed input (`input`).
"""

import collections
import os
import pickle
import sys
import zipfile

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from pytorch_reference import Net  # noqa: E402


def main(out):
    torch.manual_seed(3)
    net = Net()
    sd = net.state_dict()
    p = lambda name: os.path.join(out, name)  # noqa: E731
    save_file({k: v.contiguous() for k, v in sd.items()}, p("state_dict.safetensors"))
    torch.save(sd, p("state_dict.pth"))
    assert hasattr(sd, "_metadata")
    bare = collections.OrderedDict(sd)
    assert not hasattr(bare, "_metadata")
    torch.save(bare, p("no_metadata.pth"))
    torch.save(dict(sd), p("plain_dict.pth"))
    torch.save(sd, p("protocol4.pth"), pickle_protocol=4)

    strided = collections.OrderedDict(sd)
    strided["fc1.weight"] = sd["fc1.weight"].t().contiguous().t()
    assert not strided["fc1.weight"].is_contiguous()
    w = sd["conv1.weight"]
    strided["conv1.weight"] = torch.cat([torch.zeros(7), w.flatten()])[7:].view_as(w)
    assert strided["conv1.weight"].storage_offset() == 7
    torch.save(strided, p("strided.pth"))

    for name, dtype in (("F16", torch.float16), ("BF16", torch.bfloat16), ("F64", torch.float64)):
        cast = collections.OrderedDict((k, v.to(dtype)) for k, v in sd.items())
        torch.save(cast, p(f"{name}.pth"))
        save_file(dict(cast), p(f"{name}.safetensors"))
        save_file({k: v.float() for k, v in cast.items()}, p(f"{name}_as_F32.safetensors"))

    Net.__module__ = "__main__"  # as in the tutorial, where Net is defined in the script run
    torch.save(net, p("module.pth"))
    torch.save(torch.nn.DataParallel(net).state_dict(), p("dataparallel.pth"))
    # Wrapping compiles nothing until the first call; the state_dict already has the prefix.
    torch.save(torch.compile(net).state_dict(), p("compiled.pth"))
    torch.save({"model_state_dict": sd, "epoch": 3}, p("checkpoint.pth"))
    torch.jit.save(torch.jit.script(net), p("torchscript.pt"))
    torch.save(torch.zeros(3), p("tensor.pth"))
    torch.save(sd, p("legacy.pth"), _use_new_zipfile_serialization=False)
    with open(p("pickle.pkl"), "wb") as f:
        pickle.dump({k: v.numpy() for k, v in sd.items()}, f, protocol=4)
    with zipfile.ZipFile(p("other.zip"), "w") as z:
        z.writestr("notes/readme.txt", "hello")

    bad = collections.OrderedDict(sd)
    bad["fc1.bias"] = sd["fc1.bias"].to(torch.int64)
    torch.save(bad, p("int64.pth"))
    bad = collections.OrderedDict(sd)
    bad["fc2.weight"] = sd["fc2.weight"].clone()
    bad["fc2.weight"][3, 5] = float("nan")
    torch.save(bad, p("nan.pth"))
    bad = collections.OrderedDict((k, v.double()) for k, v in sd.items())
    bad["fc1.bias"][0] = 1e300
    torch.save(bad, p("overflow.pth"))

    x = torch.sin(torch.arange(4 * 3 * 32 * 32, dtype=torch.float32) * 0.37).reshape(4, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        save_file({"input": x, "logits": net(x)}, p("logits.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
