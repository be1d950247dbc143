"""ResNet-style CNN for small images: the over-parameterised model of the ``digits_resnet`` task.

PAC-Net's premise is a network with many more weights than its source task needs, so that most of
them can be pruned and later re-used for the target (the paper uses ResNet-18 on images). On
scikit-learn's 8x8 digits, :class:`ResNetClassifier` with its default widths has several hundred
thousand weights for a few hundred source training images.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.models.classification import ClassificationTask

__all__ = ["BasicBlock", "ResNetClassifier"]


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Both convolutions are 3x3 without bias (batch norm follows); ``conv1`` carries the stride.
    The shortcut is the identity when input and output shapes agree, else a 1x1 convolution with
    that stride followed by batch norm (``shortcut.0``, ``shortcut.1``).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of ``conv1`` and of the shortcut (2 halves the height and width).

    Example:
        >>> import torch
        >>> block = BasicBlock(4, 8, stride=2)
        >>> block(torch.zeros(2, 4, 8, 8)).shape, type(block.shortcut).__name__
        (torch.Size([2, 8, 4, 4]), 'Sequential')
        >>> type(BasicBlock(8, 8).shortcut).__name__
        'Identity'
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    @override
    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetClassifier(ClassificationTask):
    """``stem -> stages of BasicBlocks -> global average pool -> head``, a CIFAR-style ResNet.

    ``body.stem`` is a 3x3 convolution (no bias) + BatchNorm + ReLU to ``widths[0]`` channels;
    ``body.stage<i>`` (``i = 1 .. len(widths)``) holds ``blocks_per_stage`` :class:`BasicBlock`
    of ``widths[i-1]`` channels, the first block of every stage after the first downsampling by
    stride 2 (8x8 digits: 8x8, 4x4, 2x2 with three stages); ``body.pool`` averages each channel
    over the image. ``head`` is ``nn.Linear(widths[-1], num_classes)`` as in
    :class:`~pl_pac_trs.models.SmallCNN`, so ``LoadSourceWeights(skip=["head"])``,
    ``LoRA(new_modules=["head"])`` and ``LinearProbe`` name it the same way. The
    prunable weights (``MagnitudePruning``'s default: convolution and linear ``weight``) are
    every convolution's and the head's; biases and BatchNorm parameters are not pruned (in
    calibrate they are frozen and the batch norms run in eval mode).

    Parameter count, with ``w_0 .. w_{S-1}`` the widths, ``b`` the blocks per stage, ``c`` the
    input channels and ``k`` the classes (``w_{-1} = w_0``: the first stage keeps the stem's
    width and has identity shortcuts only):

    * stem: ``9 c w_0`` (convolution) ``+ 2 w_0`` (BatchNorm weight and bias);
    * first block of stage ``s``: ``9 w_{s-1} w_s + 9 w_s^2 + 4 w_s``, plus
      ``w_{s-1} w_s + 2 w_s`` for the strided 1x1 shortcut when ``s > 0``;
    * each further block of stage ``s``: ``18 w_s^2 + 4 w_s``;
    * head: ``w_{S-1} k + k``.

    The ``9 w_s^2`` terms of the convolutions dominate, so the count grows with the square of
    the widths: the defaults, widths ``(32, 64, 128)`` and two blocks per stage, give several
    hundred thousand weights against a few hundred source training images. Loss and metrics:
    :class:`ClassificationTask` (``train/loss``, ``{val,test}/loss``, ``{val,test}/acc``).

    Args:
        num_classes: Classes of the head.
        widths: Channels of each stage (one stage per entry).
        blocks_per_stage: :class:`BasicBlock` per stage.
        in_channels: Image channels.
        optimizer: See :class:`~pl_pac_trs.models.base.TaskModule`.
        lr: Learning rate.
        weight_decay: Weight decay.
        fused: Fused optimiser implementation (see :class:`~pl_pac_trs.models.base.TaskModule`).

    Raises:
        ValueError: for ``num_classes < 2``, an empty ``widths`` or a width below 1,
            ``blocks_per_stage < 1`` or ``in_channels < 1`` (and see
            :class:`~pl_pac_trs.models.base.TaskModule`).

    Example:
        >>> import torch
        >>> model = ResNetClassifier(num_classes=4, widths=(8, 16), blocks_per_stage=1)
        >>> model(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 4])
        >>> list(model.body.named_children())[:3]  # doctest: +ELLIPSIS
        [('stem', Sequential(...)), ('stage1', Sequential(...)), ('stage2', Sequential(...))]
        >>> model.head
        Linear(in_features=16, out_features=4, bias=True)
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128),
        blocks_per_stage: int = 2,
        in_channels: int = 1,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fused: bool = False,
    ) -> None:
        super().__init__(optimizer, lr, weight_decay, fused)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty list of positive widths, got {widths}")
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.save_hyperparameters()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["stem"] = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        c = widths[0]
        for i, width in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(c, width, stride))
                c = width
            layers[f"stage{i + 1}"] = nn.Sequential(*blocks)
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()
        self.body = nn.Sequential(layers)
        self.head = nn.Linear(c, num_classes)
        self.add_classification_metrics()
