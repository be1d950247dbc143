"""Suite-wide settings: no test touches the network, and hypothesis has a CI profile."""

import os

import matplotlib
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")

# In-process runs never reach W&B servers; subprocess tests set their own environment.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# "ci" (default): the same examples every run, so CI is reproducible; "dev": fresh examples.
settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
    derandomize=True,
)
settings.register_profile(
    "dev", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
