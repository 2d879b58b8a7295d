"""torchmetrics' MulticlassCalibrationError(n_bins=15, norm="l1") (the ECE) of the logits and
labels in a JSON file {"logits": [[...], ...], "labels": [...]}; prints the value."""
import json
import sys

import torch
from torchmetrics.classification import MulticlassCalibrationError

with open(sys.argv[1]) as f:
    data = json.load(f)
logits = torch.tensor(data["logits"], dtype=torch.float32)
labels = torch.tensor(data["labels"], dtype=torch.int64)
metric = MulticlassCalibrationError(num_classes=logits.shape[1], n_bins=15, norm="l1")
print(repr(metric(logits, labels).item()))
