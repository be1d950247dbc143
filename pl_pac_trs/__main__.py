"""``python -m pl_pac_trs`` is the same as the ``pl-pac-trs`` console script."""

from pl_pac_trs.apps.cli import main

if __name__ == "__main__":
    main()
