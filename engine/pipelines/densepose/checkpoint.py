"""The detectron2 model-zoo file (`model_final_162be9.pkl`): a plain pickle of
`{"model": {name: float32 numpy array}, "__author__": ...}`, read with a restricted unpickler.

Unpickling runs whatever callables a file names, so only numpy's array reconstruction, `numpy.dtype` and plain
containers are allowed; anything else (a torch storage, `os.system`...) is refused with a CheckpointError before it
runs. The arrays become tensors once, here.
"""
from __future__ import annotations

import codecs
import collections
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import CheckpointError

WEIGHTS = "DensePose/model_final_162be9.pkl"  # its path in the Hub mirror (configs/models.yaml)
# Keys older model-zoo files hold that are not weights (detectron2 recomputes them): ignored on purpose.
IGNORED = re.compile(r"^(pixel_mean|pixel_std|proposal_generator\.anchor_generator\.cell_anchors\.\d+)$")

_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array reconstruction, wherever this numpy keeps it
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 1 pickles
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 2 pickles
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
    # protocol-2 pickles written by Python 3 store bytes (an array's raw data) as _codecs.encode(text, "latin1")
    ("_codecs", "encode"): codecs.encode,
}


class _Refused(pickle.UnpicklingError):
    """The file names something the restricted unpickler does not run (not a sign of a damaged file)."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"global '{module}.{name}' is not allowed") from None

    def persistent_load(self, pid: Any) -> Any:  # torch.save's tensors are persistent ids
        raise _Refused("persistent ids (torch storages) are not allowed")


def read_arrays(path: Path, checkpoint: str = "densepose") -> dict[str, np.ndarray]:
    """The file's {name: array} ("model" entry), refusing anything but arrays and containers."""
    try:
        with open(path, "rb") as stream:
            data = _ArraysOnly(stream).load()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; download the '{checkpoint}' checkpoint again.") from None
    except _Refused as err:
        raise CheckpointError(f"{path} was refused: {err}. It holds code or objects other than numpy arrays, which "
                              f"this app never runs. Delete it and download the '{checkpoint}' checkpoint "
                              "again.") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OSError) as err:
        raise CheckpointError(f"{path} could not be read ({err.__class__.__name__}: {err}): it is not a detectron2 "
                              f"model-zoo file (corrupt or truncated). Delete it and download the '{checkpoint}' "
                              "checkpoint again.") from err
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or not all(isinstance(v, np.ndarray) and v.dtype.kind in "fiu"
                                              for v in model.values()):
        raise CheckpointError(f"{path} is not a detectron2 model-zoo file: it has no 'model' entry of arrays.")
    return model


def read_state(path: Path, checkpoint: str = "densepose") -> dict[str, torch.Tensor]:
    """The file's weights as float32 tensors, keyed as the network's state dict (ignored keys left out)."""
    return {name: torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            for name, array in read_arrays(path, checkpoint).items() if not IGNORED.match(name)}
