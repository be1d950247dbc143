"""The applications layer: what runs the library, and what the library never imports.

- :mod:`~pl_pac_trs.apps.cli`: the ``pl-pac-trs`` command (a LightningCLI) and its error
  reporting (:mod:`~pl_pac_trs.apps.errors`), ``pl-pac-trs configs``
  (:mod:`~pl_pac_trs.apps.config_commands`);
- :mod:`~pl_pac_trs.apps.pipeline`: ``pl-pac-trs pac TASK``, the whole PAC-Net pipeline;
- :mod:`~pl_pac_trs.apps.experiment`: run shipped configs from Python (benchmarks, demo);
- :mod:`~pl_pac_trs.apps.demo`: ``make demo``;
- :mod:`~pl_pac_trs.apps.runs` (run directories, W&B runs) and :mod:`~pl_pac_trs.apps.noise`
  (third-party warnings the commands hide).
"""
