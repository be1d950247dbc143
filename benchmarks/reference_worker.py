"""Worker for :mod:`benchmarks.reference_speed`: trains the *reference* TRS-ODEN code (a checkout
of github.com/inhuh/trs-oden) on the exp I setting and reports per-epoch times on request.

Runs under a Python that has TensorFlow 2.x and ``tf_keras`` (``pip install tensorflow-cpu
tf_keras``), never under the project's: it imports neither torch nor ``pl_pac_trs``. The
reference is Keras 2 / TF 1 style code (``keras.backend.gradients``, ``Adam(lr=...)``), so
``keras`` is aliased to ``tf_keras``, eager execution is disabled and the legacy Adam is used,
which is how it ran when it was published.

Protocol (one JSON line each way): the worker prints ``{"ready": true}``; the parent sends
``{"epochs": N}`` and receives ``{"times": [...], "loss": L}`` (seconds per training epoch, the
loss after the last epoch), until it sends ``{"stop": true}``. Usage:
``python benchmarks/reference_worker.py REFERENCE_DIR LAMBDA THREADS TOTAL_EPOCHS``;
``python benchmarks/reference_worker.py --full REFERENCE_DIR THREADS SAVE_DIR`` runs the
reference's ``train_duffing.py`` (exp I TRS-ODEN, 5000 epochs and the test) once.
"""

from __future__ import annotations

import json
import os
import sys
import time


def alias_keras(tf, tf_keras) -> None:
    """``import keras`` (and its submodules) gives ``tf_keras`` in graph mode, legacy Adam."""
    tf.compat.v1.disable_eager_execution()
    tf_keras.optimizers.Adam = tf_keras.optimizers.legacy.Adam
    for name in [m for m in sys.modules if m == "keras" or m.startswith("keras.")]:
        del sys.modules[name]
    sys.modules["keras"] = tf_keras
    for sub in ("backend", "models", "layers", "optimizers", "callbacks"):
        sys.modules[f"keras.{sub}"] = getattr(tf_keras, sub)


def full(reference: str, threads: int, save_dir: str) -> int:
    """The reference's own ``train_duffing.py`` at its defaults (exp I TRS-ODEN, lam 10, 5000
    epochs, then the test rollouts), for the whole-run wall time."""
    import runpy

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    alias_keras(tf, tf_keras)
    sys.path.insert(0, reference)
    sys.argv = ["train_duffing.py", "--verbose", "0", "--save_folder", save_dir]
    runpy.run_path(os.path.join(reference, "train_duffing.py"), run_name="__main__")
    return 0


def main() -> int:
    if sys.argv[1] == "--full":
        return full(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    reference, lam, threads, total = (
        sys.argv[1],
        float(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    alias_keras(tf, tf_keras)
    sys.path.insert(0, reference)
    from data_duffing import get_dataset
    from model import ODENetwork
    from utils import reshape_data

    ts, xs = get_dataset(
        nb_samples=50, nb_timestep=30, t_span=(0, 3), seed=0, noise_level=0.1, params=(1, 0, 0, 0)
    )
    t_train, x_train, y_train = reshape_data(ts=ts, xs=xs, substep=10)
    oden = ODENetwork(function_type="ode", lambda_trs=lam, nb_units=1000, nb_layers=1)
    model = oden.solver()

    class Pace(tf_keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []
            self.budget = 0
            self.start = 0.0

        def _next(self) -> None:
            request = json.loads(sys.stdin.readline() or '{"stop": true}')
            if request.get("stop"):
                raise SystemExit(0)
            self.budget = int(request["epochs"])

        def on_train_begin(self, logs=None) -> None:
            self.loss = float("nan")
            print(json.dumps({"ready": True}), flush=True)
            self._next()

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.times.append(time.perf_counter() - self.start)
            self.loss = float((logs or {}).get("loss", float("nan")))
            self.budget -= 1
            if self.budget == 0:
                print(json.dumps({"times": self.times, "loss": self.loss}), flush=True)
                self.times = []
                self._next()

    pace = Pace()
    model.fit(
        x=[t_train, x_train],
        y=y_train,
        epochs=total,
        batch_size=len(x_train),
        verbose=0,
        callbacks=[pace],
    )
    print(json.dumps({"times": pace.times, "loss": pace.loss, "done": True}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
