"""No silent cell in the framework adapters: every setting of every built-in training knob is
either handed to the framework (Lightning's Trainer, HF's TrainingArguments) or declared refused
by the baseline with its reason, so that a study never searches it (TrialObjective._refused).
What the mapped settings do inside each framework is measured in tests/test_adapters_*.py."""

from __future__ import annotations

import pytest

from adapter_helpers import example, trial_session
from autotune.hardware import detect
from autotune.knob import exclusion
from autotune.registry import load_registry
from autotune.settings import settings_index
from autotune.workloads import script_workload



def _lightning_trial(session):
    from autotune.adapters.lightning import adapt

    model = example("lightning").DigitsMLP(32)
    return model, adapt(model, session)


def _transformers_trial(session):
    from transformers import GPT2Config, GPT2LMHeadModel

    from autotune.adapters.transformers import adapt

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=20))
    return model, adapt(model, session)


ADAPTERS = {"lightning": _lightning_trial, "transformers": _transformers_trial}


@pytest.mark.parametrize("framework", sorted(ADAPTERS))
def test_every_setting_is_mapped_or_declared_refused(framework: str) -> None:
    pytest.importorskip(framework)
    module = __import__(f"autotune.adapters.{framework}", fromlist=["HANDLED"])
    session = trial_session(4)
    model, _ = ADAPTERS[framework](session)
    registry, hardware = load_registry(), detect("cpu")
    traits = script_workload("user", model).traits()
    refuses = session.result.refuses
    for key, (knob, _) in settings_index(registry, hardware).items():
        if not knob.__module__.startswith("autotune.plugins.training"):
            continue  # a test plugin's knob, loaded by another test
        if exclusion(knob, hardware, traits) is not None:
            continue  # nothing to do here (cudnn_benchmark on a CPU, channels_last on an MLP): the plan notes it
        mapped, refused = key in module.HANDLED, key in refuses
        assert mapped != refused, f"{framework}: {key} is {'both' if mapped else 'neither'} mapped and refused"
        if refused:
            assert refuses[key].startswith(f"the {framework} adapter cannot apply it: ") and len(refuses[key]) > 50
