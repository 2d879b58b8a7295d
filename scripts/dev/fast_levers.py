"""The levers tried for `tch-cifar10 train --kernels fast`, each timed as one training step
(batch 100, random CIFAR-shaped data, SGD momentum) in PyTorch, which runs the same libtorch
kernels as tch-cifar10: each variant adds one lever to the one before, or swaps one. Variants
run in turn, --rounds times, and each prints the median and the spread (min..max) of its
per-round median step time, and that time as seconds per 50,000-image epoch (500 steps).

  .torch-venv/bin/python scripts/dev/fast_levers.py --threads 2 --rounds 7
"""

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x, pool_first=False, pool=None):
        pool = pool or (lambda t: F.max_pool2d(t, 2))
        if pool_first:  # relu(maxpool(x)) == maxpool(relu(x)), a quarter of the elements
            x = F.relu_(pool(self.conv1(x)))
            x = F.relu_(pool(self.conv2(x)))
            x = F.relu_(self.fc1(torch.flatten(x, 1)))
            return self.fc3(F.relu_(self.fc2(x)))
        x = pool(F.relu(self.conv1(x)))
        x = pool(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(F.relu(self.fc2(x)))


def norm3(x):  # ToTensor() + Normalize(0.5, 0.5): the reference's three ops
    return x.float().div_(255).sub_(0.5).div_(0.5)


def norm2(x):  # the same affine map in two ops
    return x.float().mul_(2 / 255).sub_(1)


def amax_pool(t):  # max-pool 2x2 as a reshape and amax
    b, c, h, w = t.shape
    return t.reshape(b, c, h // 2, 2, w // 2, 2).amax((3, 5))


VARIANTS = {
    "reference (NCHW)": dict(),
    "+ channels-last weights and batch": dict(cl=True),
    "+ ReLU after pooling, in place": dict(cl=True, pool_first=True),
    "+ normalise in two ops (= --kernels fast)": dict(cl=True, pool_first=True, norm=norm2),
    "  fast, pooling as reshape + amax": dict(cl=True, norm=norm2, pool=amax_pool),
    "  fast, PyTorch's foreach SGD": dict(cl=True, pool_first=True, norm=norm2, foreach=True),
}


def make_step(images, labels, cl=False, pool_first=False, norm=norm3, pool=None, foreach=False):
    torch.manual_seed(0)
    net = Net()
    fmt = torch.channels_last if cl else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, foreach=foreach)
    perm = torch.randperm(len(labels))

    def step(i):
        idx = perm[(i % 50) * 100:(i % 50 + 1) * 100]
        xs = norm(images.index_select(0, idx).contiguous(memory_format=fmt))
        ys = labels.index_select(0, idx)
        opt.zero_grad()
        loss = F.cross_entropy(net(xs, pool_first, pool), ys)
        loss.backward()
        opt.step()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=40, help="steps per timed block [40]")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = torch.randint(0, 256, (5000, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (5000,))
    steps = {name: make_step(images, labels, **kw) for name, kw in VARIANTS.items()}
    times = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, step in steps.items():
            for i in range(5):
                step(i)  # warm-up
            t0 = time.perf_counter()
            for i in range(args.steps):
                step(i)
            times[name].append((time.perf_counter() - t0) / args.steps)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds of {args.steps} steps")
    print(f"{'variant':44} {'ms/step':>8} {'spread':>13} {'s/epoch':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:44} {1e3 * med:8.2f} {1e3 * min(ts):6.2f}..{1e3 * max(ts):<6.2f} {500 * med:8.2f}")


if __name__ == "__main__":
    main()
