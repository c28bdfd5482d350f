#!/usr/bin/env python3
"""Reference values for the SmolLM2 real-model test (run by hand; outputs committed):
token ids of a fixed English text, its mean next-token cross-entropy (nats), and float32
logits at every position for a fixed set of vocabulary ids (every 193rd id plus each
position's 16 largest), from transformers loading the same Q4_1 GGUF (dequantised to
float32).

    tools/get-smollm2.sh   # fetch the model
    /path/to/venv/bin/python tools/smollm2_reference.py > tests/fixtures/smollm2/reference.json
"""
import glob
import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXT = (
    "In the beginning God created the heaven and the earth. And the earth was without form, "
    "and void; and darkness was upon the face of the deep. And the Spirit of God moved upon "
    "the face of the waters. And God said, Let there be light: and there was light."
)

cache = os.environ.get("TOKIT_CACHE", os.path.expanduser("~/.cache/tokit"))
path = sorted(glob.glob(os.path.join(cache, "smollm2", "*.gguf")))[0]
d, f = os.path.split(path)
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32).eval()
ids = tok(TEXT, add_special_tokens=False)["input_ids"]
with torch.inference_mode():
    logits = model(torch.tensor([ids])).logits[0]
ce = torch.nn.functional.cross_entropy(logits[:-1].double(), torch.tensor(ids[1:])).item()
# The logits compared: a stride through the vocabulary and every position's top 16, so
# both the tail and the tokens that carry the probability mass are covered.
top = torch.topk(logits, 16, dim=-1).indices.flatten().tolist()
logit_ids = sorted(set(range(0, logits.shape[1], 193)) | set(top))
print(json.dumps({"file": f, "text": TEXT, "ids": ids, "mean_cross_entropy_nats": ce,
                  "transformers": __import__("transformers").__version__,
                  "torch": torch.__version__,
                  "logit_ids": logit_ids,
                  "logits": [[round(float(v), 6) for v in row] for row in logits[:, logit_ids].tolist()]},
                 indent=None, separators=(",", ":")))
