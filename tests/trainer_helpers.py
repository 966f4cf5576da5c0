"""Helpers shared by the trainer's tests."""

from refmann.train import Trainer


def stop_at(monkeypatch, step):
    """Make Trainer.train_step raise KeyboardInterrupt (once) when the trainer reaches ``step``."""
    original = Trainer.train_step
    fired = []

    def train_step(self):
        if self.step == step and not fired:
            fired.append(step)
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)
