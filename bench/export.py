"""Random GPT-2 models for the browser benchmark, in both formats it compares.

For each shape this writes, under the output folder:
  <name>/config.json, <name>/model.safetensors   what the playground loads (Hugging Face format)
  <name>/t<T>.onnx                               the same weights for onnxruntime-web, one file per
                                                 sequence length, with every layer's attention
                                                 probabilities as outputs (the maps both sides read)
  <name>/t<T>.expected.json                      the tokens and the last position's logits from
                                                 PyTorch, which the page checks both runtimes against

Usage: python3 bench/export.py OUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

# (name, layers, d_model, heads, vocabulary, context, sequence lengths). l32h32 has Llama-7B's
# grid of heads (32 × 32) on a narrow model, for the page-level figure only (no ONNX).
SHAPES = [
    ("l4d128", 4, 128, 4, 512, 256, [64, 256]),
    ("gpt2small", 12, 768, 12, 8192, 256, [64]),
    ("l32h32", 32, 256, 32, 128, 64, []),
]


def tokens_for(t_len, vocab):
    # The same deterministic tokens on both sides (bench.js builds them the same way).
    return [(i * 7 + 3) % vocab for i in range(t_len)]


class WithAttentions(torch.nn.Module):
    """Logits and every layer's attention probabilities as separate outputs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        # An explicit all-ones mask: without one, transformers looks for packed sequences with an
        # operator (aten::diff) the ONNX exporter does not have.
        mask = torch.ones_like(input_ids)
        out = self.model(
            input_ids=input_ids, attention_mask=mask, output_attentions=True, use_cache=False
        )
        return (out.logits, *out.attentions)


def export(out_dir: Path, name, n_layer, d_model, n_head, vocab, n_ctx, lengths):
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=n_ctx,
        n_embd=d_model,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    wrapped = WithAttentions(model).eval()
    for t_len in lengths:
        tokens = tokens_for(t_len, vocab)
        ids = torch.tensor([tokens], dtype=torch.long)
        with torch.no_grad():
            logits = wrapped(ids)[0]
        outputs = ["logits"] + [f"attention_{i}" for i in range(n_layer)]
        torch.onnx.export(
            wrapped,
            (ids,),
            str(folder / f"t{t_len}.onnx"),
            input_names=["input_ids"],
            output_names=outputs,
            opset_version=17,
            dynamo=False,
        )
        expected = {"tokens": tokens, "last_logits": logits[0, -1].tolist()}
        (folder / f"t{t_len}.expected.json").write_text(json.dumps(expected))
        print(f"wrote {folder}/t{t_len}.onnx")


def main():
    out_dir = Path(sys.argv[1])
    for shape in SHAPES:
        export(out_dir, *shape)


if __name__ == "__main__":
    main()
