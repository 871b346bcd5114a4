"""Progress: a bar on a terminal that starts each epoch clean, plain lines elsewhere."""

from __future__ import annotations

import io

from spikeweave.training.progress import EpochProgress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_no_stale_loss_when_an_epoch_starts():
    stream = FakeTTY()
    with EpochProgress(True, 2, 10, stream=stream) as bar:
        bar.start_epoch(1)
        bar.update(10, 0.123, "acc 50.0%")
        assert bar._bar.tasks[0].fields["stats"] == "loss 0.123 acc 50.0%"
        bar.start_epoch(2)
        task = bar._bar.tasks[0]
        assert task.fields["stats"] == "" and task.completed == 0
        assert task.description == "epoch 2/2"


def test_without_a_terminal_only_the_epoch_lines_are_written():
    stream = io.StringIO()
    with EpochProgress(True, 1, 10, stream=stream) as bar:
        bar.start_epoch(1)
        bar.update(5, 0.5, "acc 10%")
        bar.end_epoch("epoch 1/1 done")
    assert stream.getvalue() == "epoch 1/1 done\n"


def test_disabled_progress_writes_nothing():
    stream = FakeTTY()
    with EpochProgress(False, 1, 10, stream=stream) as bar:
        bar.start_epoch(1)
        bar.end_epoch("x")
    assert stream.getvalue() == ""
