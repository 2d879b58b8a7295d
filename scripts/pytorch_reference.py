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
    CPU);
  * the recipe flags of `tch-cifar10 train`, with the same names and defaults (the defaults are
    the program as written), each built from PyTorch's and torchvision's own classes:
    `--augment crop-flip`, `--random-crop PAD`, `--hflip` (torchvision's `RandomCrop(32,
    padding=PAD)` and `RandomHorizontalFlip()` before `ToTensor()`, training set only);
    `--optimizer sgd|adam|adamw`, `--lr`, `--momentum`, `--weight-decay`, `--dampening`,
    `--nesterov`, `--betas`, `--eps`, `--amsgrad` (`optim.SGD`, `Adam`, `AdamW`);
    `--label-smoothing` (`CrossEntropyLoss(label_smoothing=...)`); `--lr-schedule
    step|multistep|cosine|onecycle|piecewise|constant` with `--step-size`, `--gamma`,
    `--milestones`, `--lr-factors`, `--eta-min`, `--pct-start`, `--div-factor`,
    `--final-div-factor`, `--cycle-momentum`, and `--warmup-epochs`/`--warmup-start-factor`
    (`StepLR`, `MultiStepLR`, `CosineAnnealingLR`, `OneCycleLR` stepped after every batch,
    `LambdaLR`, `LinearLR` + `SequentialLR`). See `build_recipe`.

Run it with the Python that scripts/setup-libtorch installs: `.torch-venv/bin/python`.
"""

import argparse
import bisect
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


def train(net, trainloader, criterion, optimizer, device, batch_scheduler=None):
    """One epoch; returns (train_loss, train_acc, every step's loss). `batch_scheduler` (OneCycleLR)
    steps after every batch."""
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
        if batch_scheduler is not None:
            batch_scheduler.step()

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


def add_recipe_args(p):
    """tch-cifar10's recipe flags (same names, same defaults: the program as written)."""
    g = p.add_argument_group("recipe (tch-cifar10 train's flags, built from PyTorch's classes)")
    g.add_argument("--augment", choices=["none", "crop-flip"], default="none", help="crop-flip: --random-crop 4 --hflip")
    g.add_argument("--random-crop", type=int, default=None, metavar="PAD", help="RandomCrop(32, padding=PAD)")
    g.add_argument("--hflip", action="store_true", help="RandomHorizontalFlip()")
    g.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd")
    g.add_argument("--lr", type=float, default=0.001)
    g.add_argument("--momentum", type=float, default=0.9, help="SGD's momentum")
    g.add_argument("--weight-decay", type=float, default=None, help="[the class's default: 0, AdamW 0.01]")
    g.add_argument("--dampening", type=float, default=0.0)
    g.add_argument("--nesterov", action="store_true")
    g.add_argument("--betas", default="0.9,0.999")
    g.add_argument("--eps", type=float, default=1e-8)
    g.add_argument("--amsgrad", action="store_true")
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--lr-schedule", choices=["step", "multistep", "cosine", "onecycle", "piecewise", "constant"], default="step")
    g.add_argument("--step-size", type=int, default=20)
    g.add_argument("--gamma", type=float, default=0.1)
    g.add_argument("--milestones", default="", help="comma-separated epochs")
    g.add_argument("--lr-factors", default="", help="comma-separated factors (piecewise)")
    g.add_argument("--eta-min", type=float, default=0.0)
    g.add_argument("--warmup-epochs", type=int, default=0)
    g.add_argument("--warmup-start-factor", type=float, default=1.0 / 3)
    g.add_argument("--pct-start", type=float, default=0.3)
    g.add_argument("--div-factor", type=float, default=25.0)
    g.add_argument("--final-div-factor", type=float, default=1e4)
    g.add_argument("--cycle-momentum", choices=["true", "false"], default="true")


def train_transform(args):
    """The training set's transforms: the augmentation asked for, then ToTensor + Normalize."""
    crop = 4 if args.augment == "crop-flip" else args.random_crop
    hflip = args.augment == "crop-flip" or args.hflip
    steps = []
    if crop is not None:
        steps.append(transforms.RandomCrop(32, padding=crop))
    if hflip:
        steps.append(transforms.RandomHorizontalFlip())
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])


def build_recipe(args, net, steps_per_epoch):
    """(criterion, optimizer, scheduler stepped per epoch or None, scheduler stepped per batch or
    None), from PyTorch's own classes."""
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    betas = tuple(float(b) for b in args.betas.split(","))
    if args.optimizer == "sgd":
        wd = 0.0 if args.weight_decay is None else args.weight_decay
        optimizer = optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum, dampening=args.dampening,
                              weight_decay=wd, nesterov=args.nesterov)
    else:
        cls = optim.Adam if args.optimizer == "adam" else optim.AdamW
        kw = {} if args.weight_decay is None else {"weight_decay": args.weight_decay}
        optimizer = cls(net.parameters(), lr=args.lr, betas=betas, eps=args.eps, amsgrad=args.amsgrad, **kw)
    milestones = [int(m) for m in args.milestones.split(",") if m]
    factors = [float(f) for f in args.lr_factors.split(",") if f]
    sched = optim.lr_scheduler
    warmup = None
    if args.warmup_epochs:
        warmup = sched.LinearLR(optimizer, start_factor=args.warmup_start_factor, total_iters=args.warmup_epochs)
    kind = args.lr_schedule
    if kind == "step":
        main = sched.StepLR(optimizer, step_size=args.step_size, gamma=args.gamma)
    elif kind == "multistep":
        main = sched.MultiStepLR(optimizer, milestones=milestones, gamma=args.gamma)
    elif kind == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=args.epochs - args.warmup_epochs, eta_min=args.eta_min)
    elif kind == "piecewise":
        main = sched.LambdaLR(optimizer, lambda e: factors[bisect.bisect_right(milestones, e)])
    elif kind == "onecycle":
        return criterion, optimizer, None, sched.OneCycleLR(
            optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch, pct_start=args.pct_start,
            div_factor=args.div_factor, final_div_factor=args.final_div_factor, cycle_momentum=args.cycle_momentum == "true")
    else:
        main = sched.LambdaLR(optimizer, lambda e: 1.0) if warmup else None
    if warmup:
        main = sched.SequentialLR(optimizer, [warmup, main], milestones=[args.warmup_epochs])
    return criterion, optimizer, main, None


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
    add_recipe_args(p)
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
        trainset = CIFAR10(root=args.data_dir, train=True, download=False, transform=train_transform(args))
        testset = CIFAR10(root=args.data_dir, train=False, download=False, transform=transform)
    except RuntimeError as e:
        sys.exit(f"error: {e} (looked in {args.data_dir}/cifar-10-batches-py)")
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=batch_size, shuffle=True, num_workers=0)
    testloader = torch.utils.data.DataLoader(testset, batch_size=batch_size, shuffle=False, num_workers=0)
    classes = tuple(trainset.classes)

    if args.seed is not None:
        torch.manual_seed(args.seed)
    net = Net(len(classes)).to(device)
    # The reference: CrossEntropyLoss(), SGD(lr=0.001, momentum=0.9), StepLR(step_size=20, gamma=0.1).
    criterion, optimizer, scheduler, batch_scheduler = build_recipe(args, net, len(trainloader))

    start = time.perf_counter()
    for epoch in range(args.epochs):
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        train_loss, train_acc, step_losses = train(net, trainloader, criterion, optimizer, device, batch_scheduler)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        if scheduler is not None:
            scheduler.step()
        say(f"[{epoch + 1}] lr: {lr:.0e} train loss: {train_loss:.4f} train acc: {100 * train_acc:.2f} % ({seconds:.2f} s)")
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                  "seconds": seconds, "images_per_sec": len(trainset) / seconds, "device": device_name}
        last = epoch + 1 == args.epochs
        if last or (args.eval_every and (epoch + 1) % args.eval_every == 0):
            # The test loss is the plain cross-entropy (NLL) whatever the training objective, as
            # tch-cifar10 reports it, so that runs with and without label smoothing compare.
            test_loss, test_acc, per_class = test(net, testloader, nn.CrossEntropyLoss(), classes, device)
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
