"""Import torchvision next to a CPU-only torch: the one place that knows about its compiled operators.

torchvision's wheel for torch 2.13 is a CUDA build. Next to the CPU build of torch its compiled extension
(``torchvision._C``) cannot load, and ``import torchvision`` then fails in ``torchvision._meta_registrations``
with ``RuntimeError: operator torchvision::nms does not exist``: that module registers fake (meta) kernels
for ``torchvision::nms`` and ``torchvision::qnms`` unconditionally, and a fake kernel needs the operator's
schema. :func:`import_torchvision` defines those two schemas, and only when the compiled operators are
missing, so the import succeeds. Models, transforms and datasets then work on the CPU; the detection
operators themselves (``torchvision.ops.nms`` and friends) stay unavailable, and image decoding through
``torchvision.io`` does not work either (the project reads images with PIL or from arrays).

Where torchvision's own extension loads (a matching CUDA or CPU build), this module does nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

#: Schemas of the operators torchvision registers fake kernels for whether or not its extension loaded.
_FAKE_REGISTERED_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_LIBRARIES: list[torch.library.Library] = []  # kept alive: a Library's definitions die with it


def _load_extension(package_dir: Path) -> bool:
    """Load torchvision's compiled extension the way ``torchvision.extension`` does; False if it cannot load."""
    for candidate in sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd")):
        try:
            torch.ops.load_library(str(candidate))
        except (ImportError, OSError):
            return False
        return True
    return False


def _define_missing_schemas() -> None:
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _FAKE_REGISTERED_SCHEMAS.values():
        lib.define(schema)
    _LIBRARIES.append(lib)


def import_torchvision() -> ModuleType:
    """``import torchvision``, defining the operator schemas its import needs when its extension cannot load.

    The extension is loaded first (as torchvision itself would); only when that fails are the schemas of
    :data:`_FAKE_REGISTERED_SCHEMAS` defined, so a working build is never shadowed.

    Raises:
        ImportError: torchvision is not installed (it is a dependency of this package; reinstall it with
            ``pip install -c constraints.txt -e .``).

    """
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "torchvision is not installed; it is needed for the mnist / fashion_mnist / cifar10 datasets and the "
            "vgg11 network: pip install -c constraints.txt -e ."
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    if not _load_extension(package_dir) and not _LIBRARIES:
        _define_missing_schemas()
    return importlib.import_module("torchvision")
