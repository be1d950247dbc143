"""Read the records of an offline W&B run file (``run-<id>.wandb``) without a W&B server.

The file is a 7-byte W&B header followed by a LevelDB-style log (32 KiB blocks; each chunk has a
4-byte checksum, a 2-byte length and a 1-byte type: full, first, middle or last) of serialised
``wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _chunks(data: bytes):
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < 7:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        payload = data[pos : pos + length]
        pos += length
        if kind == _FULL:
            yield payload
        elif kind == _FIRST:
            pending = payload
        elif kind == _MIDDLE:
            pending += payload
        elif kind == _LAST:
            yield pending + payload
            pending = b""


def read_run(run_dir: Path) -> dict:
    """Config keys and history rows of the offline run in ``run_dir``."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    config: dict = {}
    history: list[dict] = []
    for payload in _chunks(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            history.append(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in record.history.item
                }
            )
    return {"config": config, "history": history}
