"""Make the tiny random-weight models the vLLM CPU tier serves, locally (nothing from a hub).

    python make_tiny_models.py OUT_DIR        # writes OUT_DIR/tiny-llama and OUT_DIR/tiny-qwen2vl

* tiny-llama: LlamaForCausalLM, 2 layers, hidden 128, head size 32, with a byte-level BPE
  tokenizer trained here on generated words and a chat template (so `/v1/chat/completions`
  works; list-of-parts content is reduced to its text parts).
* tiny-qwen2vl: Qwen2VLForConditionalGeneration with a 2-block vision tower and a real Hugging
  Face `Qwen2VLProcessor` (Qwen2-VL image processor: images are resized, patched and merged as
  for the real model; at most 224x224 pixels, i.e. at most 64 image tokens per image).

Weights are random (seeded) and saved as safetensors, so the models also load without
`--load-format dummy`; outputs are nonsense, but every code path a request takes -- tokenizer,
chat template, image processor, multimodal caches, vision tower, KV cache, sampler,
detokenizer -- runs for real. Deterministic: the same files on every machine.
"""

import json
import os
import random
import shutil
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast


def corpus(extra_words):
    rng = random.Random(0)
    syllables = "ka lo mi ne ru ta shi po el an or is um ex vi da ze qu".split()
    words = sorted(
        {"".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(600)}
    )
    words += extra_words
    return [
        " ".join(rng.choice(words) for _ in range(rng.randint(5, 20))) + rng.choice(".?!,")
        for _ in range(3000)
    ]


def train_tokenizer(special, extra_words, unk=None):
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(extra_words), trainer=trainer)
    return tok


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


def put_chat_template(out, template):
    # transformers 5 may write the template to chat_template.jinja only; vLLM reads either, but
    # keeping it in tokenizer_config.json too leaves no doubt which template is used.
    path = os.path.join(out, "tokenizer_config.json")
    with open(path) as f:
        config = json.load(f)
    config["chat_template"] = template
    config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
    write_json(path, config)


def tiny_llama(out):
    from transformers import LlamaConfig, LlamaForCausalLM

    special = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = train_tokenizer(
        special, "the a of to in and is it you hello world what how why".split(), unk="<unk>"
    )
    template = (
        "{% for message in messages %}"
        "{% if message['content'] is string %}{% set c = message['content'] %}"
        "{% else %}{% set c = message['content'] | selectattr('type','equalto','text')"
        " | map(attribute='text') | join(' ') %}{% endif %}"
        "<s>{{ message['role'] }}: {{ c }}</s>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=2048,
    )
    fast.chat_template = template
    fast.save_pretrained(out)
    put_chat_template(out, template)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),  # every id the model can sample decodes
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    write_json(
        os.path.join(out, "generation_config.json"),
        {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3},
    )


def tiny_qwen2vl(out):
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )

    special = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
        "<|vision_pad|>",
    ]
    tok = train_tokenizer(special, "the a of to is it hello what describe image picture this".split())
    ids = {t: tok.token_to_id(t) for t in special}
    template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for part in message['content'] %}"
        "{% if part['type'] == 'image' or part['type'] == 'image_url' %}"
        "<|vision_start|><|image_pad|><|vision_end|>"
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=4096,
    )
    fast.chat_template = template
    image_processor = Qwen2VLImageProcessor(
        min_pixels=56 * 56, max_pixels=224 * 224, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    kwargs = dict(image_processor=image_processor, tokenizer=fast, chat_template=template)
    try:
        from transformers import Qwen2VLVideoProcessor

        kwargs["video_processor"] = Qwen2VLVideoProcessor()
    except ImportError:
        pass
    Qwen2VLProcessor(**kwargs).save_pretrained(out)
    put_chat_template(out, template)
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=1024,  # the tokenizer's 1000 entries, padded
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            # head size 32: the three M-RoPE sections (time, height, width) cover its 16 pairs
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
            eos_token_id=ids["<|im_end|>"],
            bos_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=2,
            embed_dim=64,
            hidden_size=128,  # the merger projects into the text model's width
            mlp_ratio=2,
            num_heads=4,
            in_channels=3,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen2VLForConditionalGeneration"]
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).to(torch.bfloat16).save_pretrained(
        out, safe_serialization=True
    )
    write_json(
        os.path.join(out, "generation_config.json"),
        {"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]},
    )


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_tiny_models.py OUT_DIR")
    root = sys.argv[1]
    for name, make in (("tiny-llama", tiny_llama), ("tiny-qwen2vl", tiny_qwen2vl)):
        out = os.path.join(root, name)
        tmp = out + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        make(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)  # a model folder exists only once it is complete
        print("made", out, sorted(os.listdir(out)))


if __name__ == "__main__":
    main()
