"""Low-class runs pause between a model's blocks while a higher-class run is in flight (runtime/step_aside.py)."""

from __future__ import annotations

import threading

import torch

from serve_app.runtime.step_aside import StepAside, install


def _stack(blocks: int = 3) -> torch.nn.Module:
    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(blocks))

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x
    return Stack()


def _low_forward(model, gate: StepAside, done: threading.Event) -> threading.Thread:
    def run():
        gate.mark_low()
        model(torch.ones(1, 4))
        done.set()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_install_puts_a_checkpoint_before_each_block_or_the_whole_model():
    gate = StepAside()
    assert install(_stack(3), gate) == 3
    assert install(torch.nn.Linear(4, 4), StepAside()) == 1


def test_a_low_run_waits_while_a_higher_one_runs_and_resumes_after():
    model, gate, done = _stack(), StepAside(), threading.Event()
    install(model, gate)
    with gate.higher():
        thread = _low_forward(model, gate, done)
        assert not done.wait(0.3)  # parked at the first block
        assert gate.pauses == 1
    thread.join(5)
    assert done.is_set()


def test_higher_runs_and_unmarked_threads_never_wait():
    model, gate = _stack(), StepAside()
    install(model, gate)
    with gate.higher(), gate.higher():
        model(torch.ones(1, 4))  # this thread is not marked low
    assert gate.pauses == 0
    done = threading.Event()
    _low_forward(model, gate, done).join(5)  # nothing higher runs now
    assert done.is_set() and gate.pauses == 0


def test_the_low_run_resumes_only_when_every_higher_run_has_ended():
    model, gate, done = _stack(), StepAside(), threading.Event()
    install(model, gate)
    first, second = gate.higher(), gate.higher()
    first.__enter__()
    second.__enter__()
    thread = _low_forward(model, gate, done)
    first.__exit__(None, None, None)
    assert not done.wait(0.3)  # one is still running
    second.__exit__(None, None, None)
    thread.join(5)
    assert done.is_set()
