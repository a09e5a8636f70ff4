#!/usr/bin/env python3
"""Writes static/models/index.json, the app's model list, from the model files themselves.

Titles and descriptions (for a newcomer) are written here; everything measurable — task,
example inputs, metrics at export, parameter count, size, config — is read from each file with
`attn inspect --json`, so the list cannot drift from the weights. Models are listed in the
order below (the app opens the first); a model whose file is missing is skipped with a warning.

Usage: scripts/make_model_index.py [PATH_TO_ATTN]   (default: attn from the build cache)
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "static", "models")

CATALOGUE = [
    ("induction", "Induction heads",
     "Random letters in which a stretch repeats. Once the repeat has started, the next letter can "
     "be read off the earlier copy, and this 2-layer, attention-only model does that with three "
     "cooperating heads: two heads in layer 0 copy the letters two and three positions back into "
     "every position, and a head in layer 1 uses them to find where the current letter occurred "
     "before and to read the letter that followed it there (an induction head). Ablate any of "
     "those three and the accuracy collapses; the fourth head hardly matters."),
    ("sort", "Sort numbers",
     "Type a few distinct numbers from 0 to 19, then `|`: the model writes them in increasing "
     "order, one per step. Watch the output positions: each one attends to where the next larger "
     "number sits in the input. Four heads per layer share the work, so ablating one costs little; "
     "compare with the one-head model."),
    ("sort-1head", "Sort numbers, one head per layer",
     "The same task and width as “Sort numbers”, trained with a single head per layer (d_head 64 "
     "instead of 16). It sorts just as well, but every head is now essential: ablating layer 0's "
     "head drops the accuracy to 0.35, where the four-head model loses at most 0.08 for any one "
     "head."),
    ("sort-gqa", "Sort numbers, trained with grouped-query attention",
     "The sort model trained natively with 4 query heads sharing 2 key/value heads (GQA): half "
     "the KV cache of the multi-head model at the same accuracy. Compare it with the multi-head "
     "model switched to 2 key/value groups after training, which drops to 0.81."),
    ("sort-mqa", "Sort numbers, trained with multi-query attention",
     "The sort model trained natively with one key/value head for all 4 query heads (MQA): a "
     "quarter of the KV cache and still perfect. The multi-head model pooled to one key/value "
     "head after training gets only 0.41 right — training with the constraint is what makes it "
     "work."),
    ("reverse", "Reverse a sequence",
     "Type digits, then `|`: the model writes them backwards. Its attention forms an "
     "anti-diagonal — the first output looks at the last input, the second at the one before, "
     "and so on — which works for any length up to 12."),
    ("recall", "Associative recall",
     "Key–value pairs such as `a 3 f 7 k 1`, then `|` and keys asked again: after each key the "
     "model answers with its value. A content-based lookup: the query attends to the earlier copy "
     "of the key and reads the value next to it."),
    ("brackets", "Balanced brackets",
     "A bidirectional classifier: is a string of `(` and `)` balanced? Every position outputs the "
     "verdict for the whole string. To answer it must count over prefixes (never more closing "
     "than opening brackets) as well as compare totals."),
    ("shakespeare", "Shakespeare characters",
     "A small character-level language model trained on Shakespeare's plays. Type a speaker's "
     "name and a line and it continues in (rough) Elizabethan English. Step through its 16 "
     "heads to see which look at the last few characters and which reach further back, and "
     "ablate them to see what the loss on your line thinks of each."),
]


def default_attn():
    target = os.environ.get("CARGO_TARGET_DIR",
                            os.path.expanduser("~/.cache/attn-playground/target"))
    return os.path.join(target, "release", "attn")


def main():
    attn = sys.argv[1] if len(sys.argv) > 1 else default_attn()
    entries = []
    for model_id, title, description in CATALOGUE:
        path = os.path.join(MODELS, model_id + ".safetensors")
        if not os.path.exists(path):
            print(f"skipped {model_id}: no {path}", file=sys.stderr)
            continue
        info = json.loads(subprocess.check_output([attn, "inspect", path, "--json"]))
        meta = info["metadata"]
        entries.append({
            "id": model_id,
            "file": model_id + ".safetensors",
            "title": title,
            "description": description,
            "task": meta["task"],
            "example_inputs": meta["example_inputs"],
            "metrics": meta["metrics"],
            "parameters": info["parameters"],
            "size_bytes": os.path.getsize(path),
            "config": info["config"],
        })
    with open(os.path.join(MODELS, "index.json"), "w") as f:
        json.dump({"models": entries}, f, indent=2, ensure_ascii=False)
        f.write("\n")
    total = sum(e["size_bytes"] for e in entries)
    print(f"{len(entries)} models, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
