"""An actor module that imports torch at import time: the template preloads
it, so a forked actor does not pay for ``import torch``."""

from __future__ import annotations

import torch

import pyisolate


class TorchWorker(pyisolate.Actor):
    def double(self, values: list[float]) -> list[float]:
        return (torch.tensor(values) * 2).tolist()  # type: ignore[no-any-return]

    def cuda_initialized(self) -> bool:
        return bool(torch.cuda.is_initialized())

    def torch_version(self) -> str:
        return str(torch.__version__)
