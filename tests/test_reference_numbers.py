"""Across machines: sampling and measuring from the same fixed checkpoint gives the committed
numbers within a stated tolerance (not a hash: another CPU's kernels may round differently).
Same machine, same seed: byte-identical, tested in test_devices.py by running twice."""
import json

import pytest
from reference_numbers import TABLE, TOLERANCE, load_model, checkpoint, measure, measure_all


def test_numbers_from_the_fixed_checkpoints_agree_within_the_tolerance():
    expected, found = json.loads(TABLE.read_text()), measure_all()
    assert set(found) == set(expected) == {"ar", "mim", "diffusion"}
    for family, points in expected.items():
        for point, numbers in points.items():
            for name, value in numbers.items():
                assert found[family][point][name] == pytest.approx(value, abs=TOLERANCE), (family, point, name)


def test_the_tolerance_catches_a_knob_that_changes_the_sampler():
    """Temperature 0.7 instead of 1 moves the numbers by more than twice the tolerance: a check
    this loose would still see a broken knob."""
    model = load_model(checkpoint("ar"))
    neutral, colder = measure(model, {}), measure(model, {"temperature": 0.7})
    assert max(abs(neutral[k] - colder[k]) for k in neutral) > 2 * TOLERANCE
