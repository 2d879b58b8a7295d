"""A well-written PyTorch training loop for the reference program, for scripts/bench: the same
model, loss, optimizer, schedule and batch order as scripts/pytorch_reference.py, but with the
dataset held resident on the device as uint8 (read once from the torchvision layout), each batch
gathered by index and normalised there, and the per-step losses and correct counts kept on the
device and read once per epoch (no per-step `.item()`).

It draws from the global generator exactly as the reference's DataLoaders do (each training
epoch: the iterator's base seed, then the sampler's seed for `randperm`; each test pass: a base
seed), so with the same seed it computes the reference's numbers; on the CPU they are identical
bit for bit. Same flags and JSON lines as scripts/pytorch_reference.py, plus `--channels-last`:
the model's weights and each batch in `torch.channels_last` memory format, the usual PyTorch CPU
speed-up (the same mathematics, other rounding), the PyTorch counterpart of
`tch-cifar10 train --kernels fast` in scripts/bench; and `--compile`: the model under
`torch.compile` (TorchInductor, its default backend, which on the CPU generates and compiles C++
with OpenMP loops; forward and backward), the strongest PyTorch CPU program we can name. The
compilation happens in the first epoch (and again for a batch of another size), so compare the
later epochs.
"""

import os
import sys
import time

import torch
import torch.nn as nn
import torch.optim as optim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_reference import CIFAR10, Net, finish, open_jsonl, parse_args, set_deterministic, write_jsonl  # noqa: E402


def resident(dataset, device):
    """(uint8 [N, 3, 32, 32], int64 [N]) on `device`, from a torchvision CIFAR10 (HWC numpy)."""
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return images.to(device), torch.tensor(dataset.targets, dtype=torch.int64).to(device)


def normalize(xs):
    """ToTensor() + Normalize(0.5, 0.5) with the DataLoader's (CPU) values on any device: on CUDA
    the divisor is a device tensor, as a host scalar would be applied as a reciprocal product."""
    xs = xs.float()
    divisor = 255 if xs.device.type == "cpu" else torch.full((), 255.0, device=xs.device)
    return xs.div(divisor).sub_(0.5).div_(0.5)


def draw_seed():
    return int(torch.empty((), dtype=torch.int64).random_().item())


def evaluate(net, images, labels, criterion, batch_size):
    with torch.no_grad():
        loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
        correct = torch.zeros((), dtype=torch.int64, device=images.device)
        batches = 0
        for xs, ys in zip(images.split(batch_size), labels.split(batch_size)):
            out = net(normalize(xs))
            loss_sum += criterion(out, ys).double()
            correct += (out.argmax(1) == ys).sum()
            batches += 1
        return loss_sum.item() / batches, correct.item() / len(labels)


def main(argv=None):
    def extra(p):
        p.add_argument("--channels-last", action="store_true", help="weights and batches in torch.channels_last memory format")
        p.add_argument("--compile", action="store_true", help="the model under torch.compile (inductor) for training and testing")
    args = parse_args(argv, extra)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    metrics_out, steps_out = open_jsonl(args.metrics_jsonl), open_jsonl(args.steps_jsonl)
    say = (lambda *a: print(*a, file=sys.stderr)) if sys.stdout in (metrics_out, steps_out) else print
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    set_deterministic(args)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    device_name = str(device) if device.type != "cuda" else f"cuda:{device.index or 0}"
    batch_size = 100
    try:
        trainset = CIFAR10(root=args.data_dir, train=True, download=False)
        testset = CIFAR10(root=args.data_dir, train=False, download=False)
    except RuntimeError as e:
        sys.exit(f"error: {e} (looked in {args.data_dir}/cifar-10-batches-py)")
    train_x, train_y = resident(trainset, device)
    test_x, test_y = resident(testset, device)
    del trainset.data, testset.data
    n = len(train_y)
    steps = (n + batch_size - 1) // batch_size

    if args.seed is not None:
        torch.manual_seed(args.seed)
    net = Net(len(trainset.classes)).to(device, memory_format=fmt)
    model = torch.compile(net) if args.compile else net  # shares net's parameters
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.1)

    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        draw_seed()  # the DataLoader iterator's base seed
        g = torch.Generator()
        g.manual_seed(draw_seed())  # RandomSampler's generator
        perm = torch.randperm(n, generator=g).to(device)
        losses = torch.empty(steps, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        net.train()
        for step, idx in enumerate(perm.split(batch_size)):
            xs, ys = normalize(train_x.index_select(0, idx)).contiguous(memory_format=fmt), train_y.index_select(0, idx)
            optimizer.zero_grad()
            outputs = model(xs)
            loss = criterion(outputs, ys)
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()
            correct += (outputs.argmax(1) == ys).sum()
        step_losses = losses.tolist()  # the one read of the epoch
        train_acc = correct.item() / n
        seconds = time.perf_counter() - t0
        scheduler.step()
        train_loss = 0.0
        for loss in step_losses:  # `running_loss += loss.item()`: a sequential float64 sum
            train_loss += loss
        train_loss /= steps
        say(f"[{epoch}] lr: {lr:.0e} train loss: {train_loss:.4f} train acc: {100 * train_acc:.2f} % ({seconds:.2f} s)")
        record = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                  "seconds": seconds, "images_per_sec": n / seconds, "device": device_name}
        if epoch == args.epochs or (args.eval_every and epoch % args.eval_every == 0):
            draw_seed()  # the test DataLoader iterator's base seed
            net.eval()
            test_loss, test_acc = evaluate(model, test_x, test_y, criterion, batch_size)
            record.update(test_loss=test_loss, test_acc=test_acc)
        write_jsonl(steps_out, [{"epoch": epoch, "step": step, "loss": loss} for step, loss in enumerate(step_losses, 1)])
        write_jsonl(metrics_out, [record])
    say(f"Accuracy of the network on the {len(test_y)} test images: {100 * test_acc:.2f} %")
    say(f"Test loss: {test_loss:.4f}")
    say(f"Total time: {time.perf_counter() - start:.1f} s")
    finish(net, args.save_params, metrics_out, steps_out)


if __name__ == "__main__":
    main()
