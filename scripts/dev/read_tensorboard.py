#!/usr/bin/env python3
"""Prints what TensorBoard itself reads from a log directory, as JSON on stdout.

    .torch-venv/bin/python scripts/dev/read_tensorboard.py LOGDIR

{"scalars": {run: {tag: [[step, value], ...]}}, "hparams": {run: {tag: HParamsPluginData as
JSON}}}, through the `tensorboard` package's event multiplexer and data provider (what the
TensorBoard server uses; every record's CRC is checked). tests/tensorboard.rs runs it on the
event files of `train --tensorboard` and `sweep --tensorboard`; scripts/setup-libtorch installs
`tensorboard` into .torch-venv.
"""

import json
import sys

from google.protobuf import json_format
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins.hparams import metadata, plugin_data_pb2


def read(logdir):
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, logdir)
    ctx = context.RequestContext()
    scalars = provider.read_scalars(ctx, experiment_id="", plugin_name="scalars", downsample=1_000_000)
    hparams = provider.list_tensors(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    return {
        "scalars": {
            run: {tag: [[d.step, d.value] for d in data] for tag, data in tags.items()}
            for run, tags in scalars.items()
        },
        "hparams": {
            run: {
                tag: json_format.MessageToDict(plugin_data_pb2.HParamsPluginData.FromString(ts.plugin_content))
                for tag, ts in tags.items()
            }
            for run, tags in hparams.items()
        },
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: read_tensorboard.py LOGDIR")
    json.dump(read(sys.argv[1]), sys.stdout, indent=1, sort_keys=True)
    print()
