"""``python -m pl_pac_trs.demo``: the demo's entry point (:mod:`pl_pac_trs.apps.demo`)."""

from pl_pac_trs.apps.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
