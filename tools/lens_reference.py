#!/usr/bin/env python3
"""Reference logit lens for the `transformer` fixtures, computed by PyTorch + transformers.

For each fixture (tests/fixtures/transformer/<name>: config, weights, reference.json's
tokens) this applies the model's own final norm and unembedding to every block's output
(`hidden_states[i + 1]`; the last one is taken before the final norm by a hook) and writes
`lens.json`: per layer, the mean over scored tokens of the lens law's entropy, of
KL(p_out || p_layer), and of the observed token's rank (1 = top); rows t - 1 predict
token t. Run by hand with the fixture venv (CI never installs PyTorch):

    /tmp/fx/bin/python tools/lens_reference.py
"""

import json
import os

import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "transformer")
NAMES = ["gpt2", "llama_gqa_tied"]


def main():
    for name in NAMES:
        d = os.path.join(ROOT, name)
        ref = json.load(open(os.path.join(d, "reference.json")))
        ids = torch.tensor([ref["tokens"]])
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64).eval()
        base = model.base_model
        norm = base.ln_f if hasattr(base, "ln_f") else base.norm
        blocks = base.h if hasattr(base, "h") else base.layers
        resid = []
        hooks = [b.register_forward_hook(lambda m, i, o: resid.append(o[0] if isinstance(o, tuple) else o)) for b in blocks]
        with torch.no_grad():
            out = model(ids).logits[0]
            for h in hooks:
                h.remove()
            p_out = torch.log_softmax(out, -1)
            layers = []
            for x in resid:
                q = torch.log_softmax(model.lm_head(norm(x))[0], -1)
                tgt = ids[0, 1:]
                rows_q, rows_p = q[:-1], p_out[:-1]
                ent = -(rows_q.exp() * rows_q).sum(-1)
                kl = (rows_p.exp() * (rows_p - rows_q)).sum(-1)
                obs = rows_q.gather(1, tgt[:, None])
                rank = 1 + (rows_q > obs).sum(-1)
                layers.append({
                    "entropy": ent.mean().item(),
                    "kl": kl.mean().item(),
                    "rank": rank.double().mean().item(),
                })
        with open(os.path.join(d, "lens.json"), "w") as f:
            json.dump({"layers": layers, "torch": torch.__version__}, f, indent=1)
        print(name, layers)


if __name__ == "__main__":
    main()
