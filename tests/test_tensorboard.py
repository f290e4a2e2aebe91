"""fairseq-train --tensorboard-logdir with the plugin: tensorboardX (pinned in
requirements/plugin.txt) is found, the event files hold the logged scalars, and fairseq's
"Please install tensorboardX" notice is gone."""
import glob
import os
import struct

from fairseq_helpers import train_args, train_subprocess, write_translation_data


def read_scalars(event_file):
    """{tag: [(step, value)]} from a TFRecord event file, parsed with tensorboardX's protos:
    each record is a little-endian uint64 length, its masked CRC, the data, the data's CRC."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    with open(event_file, "rb") as f:
        while header := f.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            event = event_pb2.Event.FromString(f.read(length))
            f.read(4)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_logdir_writes_training_scalars(tmp_path):
    data = write_translation_data(str(tmp_path), sizes={"train": 120, "valid": 20, "test": 20})
    logdir = str(tmp_path / "tb")
    output = train_subprocess(train_args(
        data, str(tmp_path / "ckpt"), "--max-update", "6", "--no-save",
        "--tensorboard-logdir", logdir))

    assert "Please install tensorboardX" not in output
    assert "tensorboard not found" not in output  # fairseq found a SummaryWriter
    events = glob.glob(os.path.join(logdir, "train_inner", "events.out.tfevents.*"))
    assert events, sorted(glob.glob(os.path.join(logdir, "**"), recursive=True))
    scalars = read_scalars(events[0])
    losses = scalars.get("loss")
    assert losses, sorted(scalars)
    steps = [step for step, _ in losses]
    assert steps == sorted(steps) and steps[-1] == 6, losses
    assert all(0 < value < 100 for _, value in losses), losses
