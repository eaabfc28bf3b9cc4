"""The per-epoch log line (what a researcher sees when stdout is a file): metrics, time, ETA."""

from __future__ import annotations

from minivess.training.loop import epoch_line, format_seconds


def test_eta_is_the_mean_epoch_time_times_the_epochs_left() -> None:
    line = epoch_line(3, 50, {"train_loss": 0.41, "val_dice": 0.7123}, [30.0, 20.0, 25.0])
    assert line.startswith("epoch 3/50: train_loss 0.4100, val_dice 0.7123 |")
    assert "25.0 s/epoch" in line and "ETA 19m 35s" in line  # 25 s x 47 epochs


def test_the_last_epoch_says_done_and_long_etas_read_in_hours() -> None:
    assert epoch_line(2, 2, {"train_loss": 0.1}, [5.0, 5.0]).endswith("5.0 s/epoch, done")
    assert format_seconds(3 * 3600 + 61) == "3h 01m"
    assert format_seconds(59.6) == "1m 00s"
