"""Training glue for resuming: per-epoch seeds, early stopping with a state."""

from __future__ import annotations

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import Dataset
from monai.transforms import RandGaussianNoise

from common.training.engines import EpochSeed, ResumableEarlyStopHandler


def _recording_engine(dataset: Dataset, draws: list) -> Engine:
    """An engine whose iterations record torch, numpy and transform random draws."""

    def step(engine: Engine, index: int) -> None:
        draws.append((engine.state.epoch, float(torch.rand(1)), float(np.random.rand()), float(dataset[index].sum())))

    engine = Engine(step)
    EpochSeed(seed=3, dataset=dataset).attach(engine)
    return engine


def test_an_epoch_draws_the_same_numbers_whether_or_not_the_previous_ones_ran():
    dataset = Dataset([np.zeros((1, 4, 4))] * 3, transform=RandGaussianNoise(prob=1.0))
    full: list = []
    _recording_engine(dataset, full).run(range(3), max_epochs=2)
    resumed: list = []
    engine = _recording_engine(dataset, resumed)
    engine.load_state_dict({"iteration": 3, "epoch_length": 3, "max_epochs": 2})  # epoch 1 done elsewhere
    torch.manual_seed(123), np.random.seed(123)  # whatever state the new process starts in
    engine.run(range(3))
    assert resumed == full[3:] and full[:3] != full[3:]


def _loss_engines(losses: list[float], patience: int) -> tuple[Engine, Engine, ResumableEarlyStopHandler]:
    """A trainer that validates every epoch with an evaluator reporting the next of ``losses``."""
    evaluator = Engine(lambda engine, batch: None)
    report = lambda engine: setattr(engine.state, "metrics", {"loss": losses.pop(0)})  # noqa: E731
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, report)  # before the early stopping's own handler
    stop = ResumableEarlyStopHandler(patience=patience, score_function=lambda engine: -engine.state.metrics["loss"])
    stop.attach(evaluator)
    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run([0]))
    stop.set_trainer(trainer)
    return trainer, evaluator, stop


def test_early_stopping_counter_survives_a_resume():
    trainer, _, stop = _loss_engines([3.0, 2.0, 2.5], patience=2)
    trainer.run([0], max_epochs=3)
    state = stop.state_dict()
    assert (state["counter"], state["best_score"]) == (1, -2.0)

    resumed, _, resumed_stop = _loss_engines([2.7, 1.0], patience=2)  # one more bad epoch ends it
    resumed.add_event_handler(Events.STARTED, lambda engine: resumed_stop.load_state_dict(state))
    resumed.run([0], max_epochs=10)
    assert resumed.state.epoch == 1 and resumed_stop.state_dict()["counter"] == 2


def test_a_run_that_had_stopped_stays_stopped():
    trainer, _, stop = _loss_engines([3.0, 4.0, 5.0], patience=2)
    trainer.run([0], max_epochs=10)
    assert trainer.state.epoch == 3  # stopped by early stopping
    resumed, _, resumed_stop = _loss_engines([1.0], patience=2)  # would improve, were it to train on
    resumed.add_event_handler(Events.STARTED, lambda engine: resumed_stop.load_state_dict(stop.state_dict()))
    resumed.run([0], max_epochs=10)
    assert resumed.state.epoch == 0
