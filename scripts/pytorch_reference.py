"""The reference PyTorch CIFAR-10 program, runnable: the classic tutorial's LeNet `Net`, the
torchvision `CIFAR10` dataset with `ToTensor()` + `Normalize((0.5,)*3, (0.5,)*3)`, DataLoaders of
batch 100 (train shuffled, test not, no worker processes), `CrossEntropyLoss`,
`SGD(lr=0.001, momentum=0.9)` and `StepLR(step_size=20, gamma=0.1)` stepped once per epoch,
50 epochs, then the test accuracy, overall and per class.

Changes to the program as it was handed around, none of which changes a number:
  * crash bugs fixed: `np.argmax(outputs)` on a tensor is `outputs.argmax(1)`; `train()` now
    returns the `train_loss` it computes;
  * `--seed` calls `torch.manual_seed` right before `Net()` (default: no call, which is the same
    as seed 67280421310721, PyTorch's default); `--epochs`, `--device`, `--threads`,
    `--eval-every` (also test every N epochs; each extra test pass draws one number from the
    global generator when its DataLoader iterator is created, as the original would);
  * `--data-dir` is torchvision's `root` (it holds `cifar-10-batches-py/`); nothing is
    downloaded and the files' checksums are not compared with the official archive's, so data
    converted from other sources (or synthetic data) loads too;
  * `--metrics-jsonl PATH` writes each epoch's figures as JSON lines, with the fields of
    tch-cifar10's `metrics.jsonl` (see its README):
        {"epoch": 1, "lr": 0.001, "train_loss": ..., "train_acc": ..., "seconds": ...,
         "images_per_sec": ..., "device": "cpu", "test_loss": ..., "test_acc": ...}
    (`test_*` only after epochs followed by a test pass; `seconds` is the epoch's training steps);
  * `--steps-jsonl PATH` writes every step's loss, `{"epoch": 1, "step": 1, "loss": 2.3044}`
    (1-based), as tch-cifar10's `train --steps-jsonl`. Both files are written at the end of each
    epoch, so no extra work happens between steps; `-` writes to stdout;
  * `--save-params PATH` saves the final parameters as safetensors (`conv1.weight` ...);
  * `--deterministic` sets `torch.backends.cudnn.deterministic = True` and `benchmark = False`
    (repeatable runs on a GPU, as tch-cifar10's `train --deterministic`; nothing changes on the
    CPU).

Run it with the Python that scripts/setup-libtorch installs: `.torch-venv/bin/python`.
"""

import argparse
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import torchvision
import torchvision.transforms as transforms


class CIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 that checks the files exist but not their official MD5 sums."""

    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)  # flatten all dimensions except batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def train(net, trainloader, criterion, optimizer, device):
    """One epoch; returns (train_loss, train_acc, every step's loss)."""
    net.train()
    running_loss = 0.0
    correct = 0
    total = 0
    step_losses = []
    for i, data in enumerate(trainloader, 0):
        inputs, labels = data[0].to(device), data[1].to(device)

        optimizer.zero_grad()
        outputs = net(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()

        step_losses.append(loss.item())
        running_loss += step_losses[-1]
        correct += (outputs.argmax(1) == labels).sum().item()  # was np.argmax(outputs): crashes on tensors
        total += labels.size(0)
    train_loss = running_loss / len(trainloader)
    return train_loss, correct / total, step_losses  # train_loss was never returned


def test(net, testloader, criterion, classes, device):
    """Returns (test_loss, test_acc, accuracy per class)."""
    net.eval()
    test_loss = 0.0
    correct = 0
    total = 0
    correct_pred = {classname: 0 for classname in classes}
    total_pred = {classname: 0 for classname in classes}
    with torch.no_grad():
        for data in testloader:
            images, labels = data[0].to(device), data[1].to(device)
            outputs = net(images)
            test_loss += criterion(outputs, labels).item()
            _, predicted = torch.max(outputs, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
            for label, prediction in zip(labels.tolist(), predicted.tolist()):
                if label == prediction:
                    correct_pred[classes[label]] += 1
                total_pred[classes[label]] += 1
    per_class = {c: correct_pred[c] / total_pred[c] if total_pred[c] else 0.0 for c in classes}
    return test_loss / len(testloader), correct / total, per_class


def open_jsonl(path):
    """The file to write JSON lines to: None, stdout for `-`, else `path` truncated."""
    return None if path is None else sys.stdout if path == "-" else open(path, "w")


def write_jsonl(f, records):
    if f is not None:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.flush()


def finish(net, save_params, *outputs):
    """Saves the final parameters (--save-params, safetensors) and closes the JSON-lines files."""
    if save_params:
        from safetensors.torch import save_file
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, save_params)
    for f in outputs:
        if f not in (None, sys.stdout):
            f.close()


def set_deterministic(args):
    """--deterministic: cuDNN picks only deterministic algorithms, and no benchmark search."""
    if args.deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def parse_args(argv=None, extra=None):
    """The flags; `extra(parser)` may add a script's own."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    if extra:
        extra(p)
    p.add_argument("--data-dir", default="./data", help="torchvision root: holds cifar-10-batches-py/ [./data]")
    p.add_argument("--epochs", type=int, default=50, help="passes over the training set [50]")
    p.add_argument("--seed", type=int, default=None, help="torch.manual_seed(SEED) before Net() [no call: PyTorch's default seed]")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N [auto]")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N) [PyTorch's default]")
    p.add_argument("--eval-every", type=int, default=None, metavar="N", help="also test every N epochs [only at the end]")
    p.add_argument("--metrics-jsonl", default=None, metavar="PATH", help="each epoch's figures as JSON lines (- for stdout)")
    p.add_argument("--steps-jsonl", default=None, metavar="PATH", help="every step's loss as JSON lines (- for stdout)")
    p.add_argument("--save-params", default=None, metavar="PATH", help="save the final parameters as safetensors")
    p.add_argument("--deterministic", action="store_true", help="cuDNN deterministic, no benchmark search (repeatable GPU runs)")
    args = p.parse_args(argv)
    for name in ("epochs", "threads", "eval_every"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    if args.seed is not None and args.seed < 0:
        p.error(f"--seed must be a non-negative integer, got {args.seed}")
    return args


def main(argv=None):
    args = parse_args(argv)
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

    transform = transforms.Compose(
        [transforms.ToTensor(),
         transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    batch_size = 100
    try:
        trainset = CIFAR10(root=args.data_dir, train=True, download=False, transform=transform)
        testset = CIFAR10(root=args.data_dir, train=False, download=False, transform=transform)
    except RuntimeError as e:
        sys.exit(f"error: {e} (looked in {args.data_dir}/cifar-10-batches-py)")
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=batch_size, shuffle=True, num_workers=0)
    testloader = torch.utils.data.DataLoader(testset, batch_size=batch_size, shuffle=False, num_workers=0)
    classes = tuple(trainset.classes)

    if args.seed is not None:
        torch.manual_seed(args.seed)
    net = Net(len(classes)).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.1)

    start = time.perf_counter()
    for epoch in range(args.epochs):
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        train_loss, train_acc, step_losses = train(net, trainloader, criterion, optimizer, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        scheduler.step()
        say(f"[{epoch + 1}] lr: {lr:.0e} train loss: {train_loss:.4f} train acc: {100 * train_acc:.2f} % ({seconds:.2f} s)")
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                  "seconds": seconds, "images_per_sec": len(trainset) / seconds, "device": device_name}
        last = epoch + 1 == args.epochs
        if last or (args.eval_every and (epoch + 1) % args.eval_every == 0):
            test_loss, test_acc, per_class = test(net, testloader, criterion, classes, device)
            record.update(test_loss=test_loss, test_acc=test_acc)
            if not last:
                say(f"[{epoch + 1}] test loss: {test_loss:.4f} test acc: {100 * test_acc:.2f} %")
        write_jsonl(steps_out, [{"epoch": epoch + 1, "step": step, "loss": loss} for step, loss in enumerate(step_losses, 1)])
        write_jsonl(metrics_out, [record])
    say("Finished Training")

    say(f"Accuracy of the network on the {len(testset)} test images: {100 * test_acc:.2f} %")
    say(f"Test loss: {test_loss:.4f}")
    for classname, accuracy in per_class.items():
        say(f"Accuracy for class: {classname:5s} is {100 * accuracy:.1f} %")
    say(f"Total time: {time.perf_counter() - start:.1f} s")
    finish(net, args.save_params, metrics_out, steps_out)


if __name__ == "__main__":
    main()
