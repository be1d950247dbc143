"""The side-by-side benchmark's own parts, without TensorFlow or the reference checkout."""

import math
import statistics
import sys

import pytest

from benchmarks import reference_speed


def test_missing_reference_checkout_says_how_to_get_it(tmp_path):
    with pytest.raises(SystemExit, match=r"git clone https://github.com/inhuh/trs-oden"):
        reference_speed.check_reference(tmp_path, sys.executable)


def test_python_without_tensorflow_says_how_to_get_one(tmp_path):
    (tmp_path / "model.py").write_text("# stand-in for the reference checkout\n")
    with pytest.raises(SystemExit, match=r"pip install tensorflow-cpu tf_keras"):
        reference_speed.check_reference(tmp_path, sys.executable)


def test_reference_arm_without_paths_is_refused():
    with pytest.raises(SystemExit, match=r"--arms lightning,bare"):
        reference_speed.main(["--arms", "reference,bare"])
    with pytest.raises(SystemExit, match=r"--arms"):
        reference_speed.main(["--arms", "keras"])


@pytest.mark.slow
def test_interleaved_lightning_and_bare_arms_time_the_same_training(tmp_path):
    """Both of our arms, as worker processes, on the exp I data: per-epoch times and the same
    losses after the same number of epochs (same seed; only the batch order differs)."""
    payload = reference_speed.measure(
        ["lightning", "bare"], threads=1, rounds=2, chunk=2, warmup=1, conditions=["trs_oden"]
    )
    rows = payload["trs_oden"]
    assert set(rows) == {"lightning", "bare"}
    for row in rows.values():
        assert row["epochs"] == 5 and len(row["times_ms"]) == 4
        assert row["median_ms"] > 0 and math.isfinite(row["loss"])
    assert rows["lightning"]["loss"] == pytest.approx(rows["bare"]["loss"], rel=1e-4)
    markdown = reference_speed.to_markdown(payload)
    assert "| trs_oden | bare |" in markdown and "n/a" in markdown  # no reference arm


def test_sessions_combine_as_medians_of_within_session_ratios():
    """--sessions: ms per arm = median of the sessions' medians; each ratio is taken within a
    session (arms interleaved there) and reported as the median over sessions."""

    def session(ref, lit, bare):
        rows = {"reference": ref, "lightning": lit, "bare": bare}
        cond = {a: {"median_ms": v, "loss": 0.02, "epochs": 5} for a, v in rows.items()}
        return {"threads": 1, "rounds": 2, "chunk": 2, "warmup": 1, "trs_oden": cond}

    sessions = [session(40.0, 30.0, 28.0), session(50.0, 31.0, 30.0), session(44.0, 40.0, 32.0)]
    payload = reference_speed.combine(sessions)
    assert payload["sessions"] == 3
    assert payload["trs_oden"]["lightning"]["median_ms"] == 31.0
    assert payload["trs_oden"]["lightning"]["session_ms"] == [30.0, 31.0, 40.0]
    ratios = payload["ratios"]["trs_oden"]
    assert ratios["lightning/bare"] == [30 / 28, 31 / 30, 40 / 32]
    assert ratios["bare/reference"] == [28 / 40, 30 / 50, 32 / 44]
    markdown = reference_speed.to_markdown(payload)
    assert (
        f"| trs_oden | lightning | 31.00 | {statistics.median([0.75, 0.62, 40 / 44]):.3f} |"
        in markdown
    )
    assert f"| trs_oden | lightning/bare | {30 / 28:.3f} | 1.071, 1.033, 1.250 |" in markdown
