"""Checks tch-cifar10's CUDA shim (`libtch_cifar10_cuda.so`, csrc/cuda_shim.cpp) from Python, in a
process where PyTorch has loaded the very libtorch the shim calls into, so that PyTorch's own
view confirms what the shim did. Needs no Rust toolchain (scripts/gpu-check runs it on the GPU
machine, where only the built files travel).

Checks, each `true`/`false` in the JSON object printed on stdout:
  * the shim's ABI version is the one src/cuda_graph.rs expects;
  * `tcc_set_cudnn_deterministic` / `benchmark` change `torch.backends.cudnn.*`, and the getters
    read what PyTorch set;
  * on a GPU: a side stream from the pool becomes PyTorch's current stream inside the guard;
    `x.add_(1)` captured there does not run at capture and runs once per replay; a capture on
    the default stream is refused with an error (not a crash); and the classic LeNet training
    step (forward, loss, backward, SGD with momentum), warmed up eagerly on the side stream and
    then captured and replayed with the graph's memory pool, gives the same per-step losses and
    final weights as the same steps run eagerly (cuDNN deterministic);
  * without a GPU: the graph and stream calls return libtorch's error as a message.
Exit status 0 when every check passed, 1 otherwise, 2 when the shim cannot be loaded.
Usage: cuda_shim_smoke.py PATH/TO/libtch_cifar10_cuda.so
"""

import ctypes
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_reference import Net  # noqa: E402

ABI_VERSION = 1  # ABI_VERSION in src/cuda_graph.rs


class ShimError(Exception):
    pass


def load(path):
    lib = ctypes.CDLL(path)  # after `import torch`: the shim's libtorch libraries are torch's
    lib.tcc_abi_version.restype = ctypes.c_int32
    errors = ["tcc_device_synchronize", "tcc_empty_cache", "tcc_stream_from_pool", "tcc_stream_current",
              "tcc_stream_is_default", "tcc_stream_wait_stream", "tcc_stream_enter", "tcc_graph_pool_handle",
              "tcc_graph_new", "tcc_graph_capture_begin", "tcc_graph_capture_end", "tcc_graph_replay",
              "tcc_graph_reset", "tcc_graph_pool", "tcc_set_cudnn_deterministic", "tcc_cudnn_deterministic",
              "tcc_set_cudnn_benchmark", "tcc_cudnn_benchmark"]
    for name in errors:
        getattr(lib, name).restype = ctypes.c_void_p
    lib.tcc_graph_capture_begin.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
    for name in ("tcc_graph_capture_end", "tcc_graph_replay", "tcc_graph_reset", "tcc_graph_delete",
                 "tcc_stream_delete", "tcc_stream_exit"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.tcc_free_error.argtypes = [ctypes.c_void_p]
    return lib


def caller(lib):
    def call(name, *args):
        e = getattr(lib, name)(*args)
        if e:
            msg = ctypes.string_at(e).decode(errors="replace")
            lib.tcc_free_error(e)
            raise ShimError(f"{name}: {msg}")
    return call


def flag(call, name):
    v = ctypes.c_int32()
    call(name, ctypes.byref(v))
    return bool(v.value)


def handle(call, name, *args):
    h = ctypes.c_void_p()
    call(name, *args, ctypes.byref(h))
    return h


class Stream:
    """A shim stream handle, entered as a context (the shim's CUDAStreamGuard)."""

    def __init__(self, lib, call, h):
        self.lib, self.call, self.h = lib, call, h

    def __enter__(self):
        self.guard = handle(self.call, "tcc_stream_enter", self.h)
        return self

    def __exit__(self, *exc):
        self.lib.tcc_stream_exit(self.guard)


def lenet_steps(graphed, lib, call, images, labels, warmup, seed):
    """Per-step losses and final weights of LeNet SGD steps over the batches, eager or (after
    `warmup` eager steps on a side stream) one captured step replayed."""
    torch.manual_seed(seed)
    net = Net().cuda()
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    static_x, static_y = images[0].clone(), labels[0].clone()
    static_loss = torch.zeros((), device="cuda")

    def step():
        opt.zero_grad()
        loss = crit(net(static_x), static_y)
        loss.backward()
        opt.step()
        static_loss.copy_(loss.detach())

    losses = []
    if not graphed:
        for x, y in zip(images, labels):
            static_x.copy_(x)
            static_y.copy_(y)
            step()
            losses.append(static_loss.item())
        return losses, {k: v.detach().cpu() for k, v in net.state_dict().items()}
    side = Stream(lib, call, handle(call, "tcc_stream_from_pool", 0))
    current = handle(call, "tcc_stream_current", 0)
    call("tcc_stream_wait_stream", side.h, current)
    with side:
        for x, y in zip(images[:warmup], labels[:warmup]):
            static_x.copy_(x)
            static_y.copy_(y)
            step()
            losses.append(static_loss.item())
    call("tcc_stream_wait_stream", current, side.h)
    graph = handle(call, "tcc_graph_new")
    static_x.copy_(images[warmup])
    static_y.copy_(labels[warmup])
    call("tcc_device_synchronize")
    call("tcc_empty_cache")
    with side:
        call("tcc_graph_capture_begin", graph, 0, 0)
        step()
        call("tcc_graph_capture_end", graph)
    for n, (x, y) in enumerate(zip(images[warmup:], labels[warmup:])):
        if n:  # the captured batch is already in the static buffers
            static_x.copy_(x)
            static_y.copy_(y)
        call("tcc_graph_replay", graph)
        losses.append(static_loss.item())
    weights = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    lib.tcc_graph_delete(graph)
    lib.tcc_stream_delete(side.h)
    lib.tcc_stream_delete(current)
    return losses, weights


def main(path):
    try:
        lib = load(path)
    except OSError as e:
        print(json.dumps({"loaded": False, "error": str(e)}))
        return 2
    call = caller(lib)
    r = {"loaded": True, "path": path, "gpu": torch.cuda.is_available(), "checks": {}}
    c = r["checks"]
    c["abi_version"] = lib.tcc_abi_version() == ABI_VERSION
    call("tcc_set_cudnn_deterministic", 1)
    c["cudnn_deterministic_seen_by_torch"] = torch.backends.cudnn.deterministic is True
    torch.backends.cudnn.deterministic = False
    c["cudnn_deterministic_getter"] = flag(call, "tcc_cudnn_deterministic") is False
    call("tcc_set_cudnn_benchmark", 1)
    c["cudnn_benchmark_seen_by_torch"] = torch.backends.cudnn.benchmark is True
    torch.backends.cudnn.benchmark = False
    c["cudnn_benchmark_getter"] = flag(call, "tcc_cudnn_benchmark") is False
    if not torch.cuda.is_available():
        try:
            handle(call, "tcc_graph_new")
            c["no_gpu_graph_call_is_an_error"] = False
        except ShimError as e:
            c["no_gpu_graph_call_is_an_error"] = True
            r["no_gpu_error"] = str(e).splitlines()[0]
    else:
        side = Stream(lib, call, handle(call, "tcc_stream_from_pool", 0))
        v = ctypes.c_int32()
        call("tcc_stream_is_default", side.h, ctypes.byref(v))
        c["pool_stream_is_not_default"] = v.value == 0
        x = torch.zeros(4, device="cuda")
        torch.cuda.synchronize()
        graph = handle(call, "tcc_graph_new")
        with side:
            c["guard_makes_it_torchs_current_stream"] = torch.cuda.current_stream() != torch.cuda.default_stream()
            call("tcc_graph_capture_begin", graph, 0, 0)
            x.add_(1)
            call("tcc_graph_capture_end", graph)
        c["guard_restores_the_default_stream"] = torch.cuda.current_stream() == torch.cuda.default_stream()
        torch.cuda.synchronize()
        c["capture_does_not_run"] = x.sum().item() == 0
        for _ in range(3):
            call("tcc_graph_replay", graph)
        torch.cuda.synchronize()
        c["replay_runs_each_time"] = x.tolist() == [3.0] * 4
        a, b = ctypes.c_uint64(), ctypes.c_uint64()
        call("tcc_graph_pool", graph, ctypes.byref(a), ctypes.byref(b))
        c["graph_has_a_pool"] = (a.value, b.value) != (0, 0)
        g2 = handle(call, "tcc_graph_new")
        try:
            call("tcc_graph_capture_begin", g2, 0, 0)
            c["default_stream_capture_refused"] = False
            call("tcc_graph_capture_end", g2)
        except ShimError as e:
            c["default_stream_capture_refused"] = True
            r["default_stream_error"] = str(e).splitlines()[0]
        lib.tcc_graph_delete(g2)
        lib.tcc_graph_delete(graph)
        lib.tcc_stream_delete(side.h)
        # The LeNet step, eager and graphed, deterministic.
        call("tcc_set_cudnn_deterministic", 1)
        gen = torch.Generator().manual_seed(0)
        steps = 30
        images = torch.randn(steps, 100, 3, 32, 32, generator=gen).cuda()
        labels = torch.randint(0, 10, (steps, 100), generator=gen).cuda()
        eager, w_eager = lenet_steps(False, lib, call, images, labels, 3, 7)
        graphed, w_graphed = lenet_steps(True, lib, call, images, labels, 3, 7)
        diffs = [abs(p - q) for p, q in zip(eager, graphed)]
        r["lenet"] = {"steps": steps, "warmup": 3, "largest_step_loss_diff": max(diffs),
                      "identical_steps": sum(d == 0 for d in diffs),
                      "largest_weight_diff": max(float((w_eager[k] - w_graphed[k]).abs().max()) for k in w_eager)}
        c["lenet_graphed_step_losses_identical"] = r["lenet"]["identical_steps"] == steps
        c["lenet_graphed_weights_identical"] = all(torch.equal(w_eager[k], w_graphed[k]) for k in w_eager)
    r["ok"] = all(c.values())
    print(json.dumps(r))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("Usage: ")[1])
    sys.exit(main(sys.argv[1]))
