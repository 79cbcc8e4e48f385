"""The models users bring: one tiny seeded model per Hugging Face family (issue 11).

Each family is built from a small config with the task head a user would load, the attention
implementation transformers picks by default (never set here), float32, eval mode, and a batch of
two inputs where the second is padded, as a tokenizer or image processor would give them. Configs
set only what a tiny model needs (sizes) plus the family's own quirks, so the code paths are the
ones a released checkpoint runs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
import transformers
from torch import nn

KINDS = ("text-classifier", "image-classifier", "causal-lm", "seq2seq", "clip")
LENGTH = 8  # tokens per text input
PADDED = 2  # padding positions in the second sample
VOCAB = 128
LABELS = 3
IMAGE_LABELS = 5


@dataclass(frozen=True)
class Family:
    name: str
    kind: str
    make: Callable[[], tuple[nn.Module, dict]]

    def build(self, seed: int = 0) -> tuple[nn.Module, dict]:
        """(model in eval mode, a batch of 2 padded inputs), the same for the same seed."""
        torch.manual_seed(seed)
        model, inputs = self.make()
        return model.float().eval(), inputs


FAMILIES: dict[str, Family] = {}


def _family(name: str, kind: str):
    def register(make):
        FAMILIES[name] = Family(name, kind, make)
        return make

    return register


def _config(name: str, **options):
    return getattr(transformers, name + "Config")(**options)


def _special_ids(config) -> set[int]:
    found = set()
    for key, value in vars(config).items():
        if key.endswith("token_id") and isinstance(value, int):
            found.add(value)
        elif key.endswith("token_id") and isinstance(value, (list, tuple)):
            found.update(v for v in value if isinstance(v, int))
    return found


def _accepts(model: nn.Module, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def _random_ids(count: int, vocab: int, avoid: set[int]) -> torch.Tensor:
    """Ordinary token ids: never a pad/bos/eos/cls/sep/unk id, whose embeddings models treat specially."""
    allowed = torch.tensor([i for i in range(vocab) if i not in avoid])
    return allowed[torch.randint(len(allowed), (count,))]


def text_inputs(model: nn.Module, vocab: int = VOCAB, length: int = LENGTH, padding: str = "right",
                start: int | None = None, end: int | None = None) -> dict:
    """A tokenizer's batch of two: ``start``/``end`` special tokens around random ordinary ids, the
    second sample ``PADDED`` tokens shorter and padded on ``padding``'s side with the pad id."""
    config = model.config
    pad = getattr(config, "pad_token_id", None)
    pad = pad if isinstance(pad, int) else 0
    rows, masks = [], []
    for real in (length, length - PADDED):
        body = _random_ids(real - (start is not None) - (end is not None), vocab, _special_ids(config) | {pad, start, end})
        ids = torch.cat([torch.tensor([start] if start is not None else []), body,
                         torch.tensor([end] if end is not None else [])]).long()
        filler = torch.full((length - real,), pad, dtype=torch.long)
        ones, zeros = torch.ones(real, dtype=torch.long), torch.zeros(length - real, dtype=torch.long)
        if padding == "right":
            rows.append(torch.cat([ids, filler]))
            masks.append(torch.cat([ones, zeros]))
        else:
            rows.append(torch.cat([filler, ids]))
            masks.append(torch.cat([zeros, ones]))
    inputs = {"input_ids": torch.stack(rows)}
    if _accepts(model, "attention_mask"):
        inputs["attention_mask"] = torch.stack(masks)
    return inputs


def image_inputs(model: nn.Module, size: int) -> dict:
    """An image processor's batch of two: normalised random pixels at the model's size (images need
    no padding)."""
    channels = getattr(model.config, "num_channels", 3)
    return {"pixel_values": torch.randn(2, channels, size, size)}


def _classifier_text_inputs(model, vocab=VOCAB, **options) -> dict:
    """A classifier's input: <cls> words <sep> with the config's ids (ids 2 and 3 where it names none)."""
    config = model.config
    start = next((getattr(config, key) for key in ("cls_token_id", "bos_token_id") if isinstance(getattr(config, key, None), int)), 2)
    end = next((getattr(config, key) for key in ("sep_token_id", "eos_token_id") if isinstance(getattr(config, key, None), int)), 3)
    return text_inputs(model, vocab=vocab, start=start, end=end, **options)


# -- text classifiers (the *ForSequenceClassification head) ----------------------------------------
_BERT = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=64, num_labels=LABELS)


def _text_classifier(name: str, config_name: str, **options):
    """A family whose sequence classifier needs only sizes (and ``options``, its quirks)."""

    @_family(name, "text-classifier")
    def make():
        config = _config(config_name, **{**_BERT, **options})
        model = getattr(transformers, config_name + "ForSequenceClassification")(config)
        return model, _classifier_text_inputs(model)

    return make


_text_classifier("bert", "Bert")


@_family("distilbert", "text-classifier")
def _distilbert():
    config = _config("DistilBert", vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                     max_position_embeddings=64, num_labels=LABELS)
    model = transformers.DistilBertForSequenceClassification(config)
    return model, text_inputs(model, start=101 % VOCAB, end=102 % VOCAB)


_text_classifier("roberta", "Roberta", pad_token_id=1, bos_token_id=0, eos_token_id=2)
_text_classifier("xlm-roberta", "XLMRoberta", pad_token_id=1, bos_token_id=0, eos_token_id=2)
_text_classifier("camembert", "Camembert", pad_token_id=1, bos_token_id=5, eos_token_id=6)
_text_classifier("data2vec-text", "Data2VecText", pad_token_id=1, bos_token_id=0, eos_token_id=2)
_text_classifier("ernie", "Ernie")
_text_classifier("megatron-bert", "MegatronBert")
_text_classifier("layoutlm", "LayoutLM")  # no bbox: the model's own default (zeros)
_text_classifier("electra", "Electra", embedding_size=16)
_text_classifier("albert", "Albert", embedding_size=16, num_hidden_groups=1)  # one layer group shared by all layers
_text_classifier("convbert", "ConvBert", embedding_size=32, head_ratio=2, conv_kernel_size=3)
_text_classifier("squeezebert", "SqueezeBert", embedding_size=32, q_groups=2, k_groups=2, v_groups=2,
                 post_attention_groups=2, intermediate_groups=2, output_groups=2)
_text_classifier("mobilebert", "MobileBert", embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
                 num_feedforward_networks=2)
_text_classifier("roformer", "RoFormer", embedding_size=32)
_text_classifier("mpnet", "MPNet", pad_token_id=1, bos_token_id=0, eos_token_id=2)
# Nystromformer: as many landmarks as tokens (its exact-attention path); transformers 5 cannot add the padding
# mask to fewer landmarks
_text_classifier("nystromformer", "Nystromformer", num_landmarks=LENGTH, segment_means_seq_len=LENGTH, conv_kernel_size=3)
_text_classifier("fnet", "FNet", use_tpu_fourier_optimizations=False)  # no attention: Fourier mixing
# DeBERTa as deberta-base: relative attention with content-to-position and position-to-content terms
_text_classifier("deberta", "Deberta", relative_attention=True, pos_att_type=["c2p", "p2c"], max_relative_positions=-1)
# DeBERTa-v3 (the deberta-v2 type) as deberta-v3-base: shared keys, log-bucketed positions, no absolute positions
_text_classifier("deberta-v2", "DebertaV2", vocab_size=VOCAB, relative_attention=True, pos_att_type=["p2c", "c2p"],
                 max_relative_positions=-1, position_buckets=16, norm_rel_ebd="layer_norm", share_att_key=True,
                 position_biased_input=False, type_vocab_size=0)
# Longformer: sliding windows of 4 tokens (padded to a multiple of the window); the classifier puts
# global attention on the first token itself
_text_classifier("longformer", "Longformer", pad_token_id=1, bos_token_id=0, eos_token_id=2, attention_window=4)


@_family("big_bird", "text-classifier")
def _big_bird():
    # block-sparse attention (the default type) needs more than (5 + 2 * random blocks) blocks
    config = _config("BigBird", **_BERT, attention_type="block_sparse", block_size=2, num_random_blocks=1)
    model = transformers.BigBirdForSequenceClassification(config)
    return model, _classifier_text_inputs(model, length=16)


@_family("funnel", "text-classifier")
def _funnel():
    config = _config("Funnel", vocab_size=VOCAB, block_sizes=[1, 1], block_repeats=None, num_decoder_layers=1,
                     d_model=32, n_head=2, d_head=16, d_inner=64, num_labels=LABELS)
    model = transformers.FunnelForSequenceClassification(config)
    return model, _classifier_text_inputs(model)


@_family("xlnet", "text-classifier")
def _xlnet():
    config = _config("XLNet", vocab_size=VOCAB, d_model=32, n_layer=2, n_head=2, d_inner=64, num_labels=LABELS,
                     pad_token_id=5, bos_token_id=1, eos_token_id=2)
    model = transformers.XLNetForSequenceClassification(config)
    # XLNet's tokenizer pads on the left and ends with <sep> <cls>; the head reads the last token
    return model, text_inputs(model, padding="left", end=3)


# -- image classifiers (the *ForImageClassification head) ------------------------------------------
_VIT = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=IMAGE_LABELS)


def _image_classifier(name: str, config_name: str, model_name: str | None = None, size: int = 32, **options):
    @_family(name, "image-classifier")
    def make():
        config = _config(config_name, **options)
        model = getattr(transformers, model_name or config_name + "ForImageClassification")(config)
        return model, image_inputs(model, size)

    return make


_image_classifier("vit", "ViT", **_VIT)
_image_classifier("deit", "DeiT", "DeiTForImageClassificationWithTeacher", **_VIT)
_image_classifier("beit", "Beit", **_VIT, use_relative_position_bias=True)  # as beit-base: relative position bias, mean pooling
_image_classifier("data2vec-vision", "Data2VecVision", **_VIT, use_relative_position_bias=True)
_image_classifier("dinov2", "Dinov2", **_VIT)
_image_classifier("dinov2-with-registers", "Dinov2WithRegisters", **_VIT, num_register_tokens=2)
_image_classifier("swin", "Swin", image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                  window_size=4, num_labels=IMAGE_LABELS)
_image_classifier("swinv2", "Swinv2", image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                  window_size=4, pretrained_window_sizes=[0, 0], num_labels=IMAGE_LABELS)
# LeViT: a 16x convolution stem, attention stages with subsampling attention in between
_image_classifier("levit", "Levit", size=64, image_size=64, hidden_sizes=[32, 48, 64], num_attention_heads=[2, 3, 4],
                  depths=[1, 1, 1], key_dim=[8, 8, 8], mlp_ratio=[2, 2, 2], attention_ratio=[2, 2, 2],
                  num_labels=IMAGE_LABELS)
_image_classifier("mobilevit", "MobileViT", image_size=32, patch_size=2, hidden_sizes=[16, 24, 32],
                  neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64], num_attention_heads=2, num_labels=IMAGE_LABELS)
_image_classifier("convnext", "ConvNext", image_size=32, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=IMAGE_LABELS)
_image_classifier("pvt", "Pvt", image_size=32, num_encoder_blocks=2, depths=[1, 1], sequence_reduction_ratios=[2, 1],
                  hidden_sizes=[16, 32], patch_sizes=[4, 2], strides=[4, 2], num_attention_heads=[1, 2],
                  mlp_ratios=[2, 2], num_labels=IMAGE_LABELS)


@_family("siglip", "image-classifier")
def _siglip():
    vision = {k: v for k, v in _VIT.items() if k != "num_labels"}
    text = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                pad_token_id=1, bos_token_id=0, eos_token_id=2)
    config = _config("Siglip", vision_config=vision, text_config=text, num_labels=IMAGE_LABELS)
    model = transformers.SiglipForImageClassification(config)
    return model, image_inputs(model, 32)


# -- causal language models (the *ForCausalLM head) ---------------------------------------------------
_LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64)


def _causal_lm(name: str, config_name: str, model_name: str | None = None, sizes: dict | None = None, **options):
    """A family whose causal LM needs only sizes (``_LLAMA`` unless ``sizes``) and ``options``."""

    @_family(name, "causal-lm")
    def make():
        config = _config(config_name, **{**(_LLAMA if sizes is None else sizes), **options})
        model = getattr(transformers, model_name or config_name + "ForCausalLM")(config)
        bos = getattr(config, "bos_token_id", None)
        # a generation prompt: padded on the left, so the next token is read at the last position
        return model, text_inputs(model, padding="left", start=bos if isinstance(bos, int) and bos < VOCAB else None)

    return make


_causal_lm("llama", "Llama", bos_token_id=1, eos_token_id=2)
_causal_lm("mistral", "Mistral", bos_token_id=1, eos_token_id=2)
_causal_lm("qwen2", "Qwen2", eos_token_id=2)
_causal_lm("qwen3", "Qwen3", head_dim=8, eos_token_id=2)
_causal_lm("gemma", "Gemma", head_dim=8, pad_token_id=0, bos_token_id=2, eos_token_id=1)
_causal_lm("gemma2", "Gemma2", head_dim=8, pad_token_id=0, bos_token_id=2, eos_token_id=1)  # soft-capping on, its default
_causal_lm("gemma3", "Gemma3Text", "Gemma3ForCausalLM", head_dim=8, pad_token_id=0, bos_token_id=2, eos_token_id=1)
_causal_lm("phi", "Phi", bos_token_id=1, eos_token_id=2)
_causal_lm("phi3", "Phi3", pad_token_id=0, bos_token_id=1, eos_token_id=2)
_causal_lm("stablelm", "StableLm", bos_token_id=1, eos_token_id=2)
_causal_lm("olmo", "Olmo", pad_token_id=1, bos_token_id=None, eos_token_id=2)
_causal_lm("starcoder2", "Starcoder2", bos_token_id=1, eos_token_id=2)
_causal_lm("cohere", "Cohere", pad_token_id=0, bos_token_id=5, eos_token_id=6)
_causal_lm("granite", "Granite", pad_token_id=0, bos_token_id=1, eos_token_id=2)
_causal_lm("smollm3", "SmolLM3", pad_token_id=0, bos_token_id=1, eos_token_id=2)
# mixtures of experts: 4 experts, 2 per token
_causal_lm("mixtral", "Mixtral", num_local_experts=4, num_experts_per_tok=2, bos_token_id=1, eos_token_id=2)
_causal_lm("qwen2_moe", "Qwen2Moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
           shared_expert_intermediate_size=32, decoder_sparse_step=1, eos_token_id=2)
_causal_lm("falcon", "Falcon", sizes=dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4),
           bos_token_id=1, eos_token_id=2)
_causal_lm("bloom", "Bloom", sizes=dict(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4),
           pad_token_id=3, bos_token_id=1, eos_token_id=2)  # ALiBi positions
_causal_lm("gpt2", "GPT2", "GPT2LMHeadModel", sizes=dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64),
           bos_token_id=0, eos_token_id=0)
_causal_lm("gpt_neo", "GPTNeo", sizes=dict(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4,
           max_position_embeddings=64, attention_types=[[["global", "local"], 1]], window_size=4),
           bos_token_id=0, eos_token_id=0)
_causal_lm("gpt_neox", "GPTNeoX", sizes=dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
           num_attention_heads=4, intermediate_size=64, max_position_embeddings=64), bos_token_id=0, eos_token_id=0)
_causal_lm("gptj", "GPTJ", sizes=dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, rotary_dim=4),
           bos_token_id=0, eos_token_id=0)
_causal_lm("opt", "OPT", sizes=dict(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, word_embed_proj_dim=32,
           num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64),
           pad_token_id=1, bos_token_id=2, eos_token_id=2)


# -- sequence-to-sequence: explain the next token after a decoder prefix ----------------------------------
def _seq2seq_inputs(model: nn.Module, start: int) -> dict:
    inputs = _classifier_text_inputs(model)
    avoid = _special_ids(model.config)
    prefix = torch.cat([torch.full((2, 1), start), _random_ids(2 * 3, VOCAB, avoid).reshape(2, 3)], dim=1)
    return {**inputs, "decoder_input_ids": prefix}


@_family("t5", "seq2seq")
def _t5():
    config = _config("T5", vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    model = transformers.T5ForConditionalGeneration(config)
    return model, _seq2seq_inputs(model, start=0)


@_family("bart", "seq2seq")
def _bart():
    config = _config("Bart", vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                     pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    model = transformers.BartForConditionalGeneration(config)
    return model, _seq2seq_inputs(model, start=2)


# -- image-text -----------------------------------------------------------------------------------------
@_family("clip", "clip")
def _clip():
    text = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=32, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    vision = {k: v for k, v in _VIT.items() if k != "num_labels"}
    config = _config("CLIP", text_config=text, vision_config=vision, projection_dim=16)
    model = transformers.CLIPModel(config)
    # captions as CLIP's tokenizer gives them: <bos> words <eos>, padded on the right; the text
    # tower pools at the <eos>
    captions = text_inputs(model.text_model, start=0, end=2)
    captions["input_ids"][captions["attention_mask"] == 0] = 1
    return model, {**captions, **image_inputs(model.vision_model, 32)}


def families(kind: str | None = None) -> list[Family]:
    return [family for family in FAMILIES.values() if kind is None or family.kind == kind]
