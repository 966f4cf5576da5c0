"""Helpers shared by the trainer's tests."""

from refmann.train import Trainer

#: A copy run small enough for a test: batch 8, an evaluation every 10 steps, a checkpoint every 5.
TINY = dict(
    task="copy",
    task_kwargs={"max_length": 3, "bits": 4},
    batch_size=8,
    memory_size=8,
    word_size=6,
    hidden_size=16,
    eval_every=80,
    eval_size=16,
    log_every=2,
    checkpoint_every=5,
)


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
