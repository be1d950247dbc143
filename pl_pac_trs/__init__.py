"""pl-pac-trs: PAC-Net pruning callbacks and TRS-ODEN modules for PyTorch Lightning."""

__version__ = "0.1.0"
