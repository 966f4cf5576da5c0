"""Adding a model touches its core, its ops and one registry entry: a toy model registered here is
picked up by golden files, the trainer, the CLI's --set and the benchmark without editing them."""

from dataclasses import dataclass

import numpy as np
import pytest

from refmann import cli, golden, models
from refmann.bench import scaling
from refmann.cores.lstm import LSTMCore
from refmann.models.configs import ModelConfig
from refmann.models.registry import MODELS, BenchVariant, ModelSpec
from refmann.train.trainer import TrainConfig, build


@dataclass(frozen=True, kw_only=True)
class ToyConfig(ModelConfig):
    """An LSTM with a "memory" option nothing else knows about."""

    memory_size: int = 4
    word_size: int = 2
    num_heads: int = 1
    wobble: float = 0.5


class Toy(models.RecurrentModel):
    Config = ToyConfig

    def make_core(self, c):
        return LSTMCore(input_size=c.input_size, output_size=c.output_size, hidden_size=c.hidden_size)


@pytest.fixture
def toy(monkeypatch):
    spec = ModelSpec("toy", Toy, label="Toy", color="k", bench=(BenchVariant("toy", "Toy", "k", {}, 1.0, 1.0),))
    monkeypatch.setitem(MODELS, "toy", spec)
    monkeypatch.setitem(scaling._MODEL_SPECS, "toy", scaling._registry_specs()["toy"])
    return spec


def test_golden_files_are_written_for_a_newly_registered_model(toy, tmp_path):
    (path,) = golden.write_golden("toy", out=tmp_path, seed=0)
    assert golden.check_golden(path) and max(golden.check_golden(path).values()) == 0.0


def test_the_trainer_builds_it_from_the_registry_with_its_own_options(toy):
    _, model = build(
        TrainConfig(
            model="toy",
            task="copy",
            task_kwargs={"bits": 2},
            model_kwargs={"wobble": 0.25},
            memory_size=4,
            word_size=2,
            num_heads=1,
            hidden_size=3,
        )
    )
    assert isinstance(model, Toy) and model.config.wobble == 0.25 and model.config.memory_size == 4


def test_the_cli_offers_it_and_its_config_fields(toy):
    assert "toy" in cli.build_parser().parse_args(["train", "--model", "toy"]).model
    assert cli.model_overrides(["wobble=2"], ["toy", "ntm"]) == {"toy": {"wobble": 2}, "ntm": {}}


def test_the_benchmark_builds_its_line(toy):
    model = scaling.build_model("toy", 4, scaling.quick_config())
    assert isinstance(model, Toy)
    x = np.zeros((2, 1, model.input_size))
    assert model.forward(x).shape == (2, 1, model.output_size)
