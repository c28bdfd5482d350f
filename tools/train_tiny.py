#!/usr/bin/env python3
"""Train tokit's three small King James Bible language models: a Llama-style causal
Transformer, a Mamba2 and a LLaDA-style masked-diffusion Transformer, on the same text with
the same tokenizer, parameter budget and token budget. Run by hand (never in CI):

    python3 -m venv /tmp/tr && /tmp/tr/bin/pip install torch transformers safetensors tokenizers
    apt-get install -y bible-kjv                     # the text, via `bible -f`
    /tmp/tr/bin/python tools/train_tiny.py all       # or: tokenizer | transformer | mamba2 | llada

Outputs, committed: models/kjv-{transformer,mamba2,llada}/ with model.safetensors (float16),
config.json, tokenizer.json and MODEL_CARD.md (data, recipe, steps, loss curve, held-out
numbers measured here by PyTorch on the float16-rounded weights tokit loads).

Recipe (the defaults below; every run is seeded and reproducible on one CPU thread count):
- Text: Debian `bible-kjv` (KJV, public domain), `bible -f Gen1:1-Rev22:21`, one verse per
  line. Books 1-60 (Genesis..1 Peter) train; books 61-66 (2 Peter..Revelation) are held out.
- Tokenizer: byte-level BPE with VOCAB tokens trained on the training books
  (`tokenizers`), special tokens `<|endoftext|>` (id 0, document start) and `<|mask|>`
  (id 1, LLaDA's mask token). Shared by all three models.
- Documents: each verse is `<|endoftext|> verse`. Training streams the shuffled training
  verses end to end and cuts SEQ-token windows; all models see the same windows.
- Optimiser: AdamW (β = 0.9, 0.95; weight decay 0.1), peak LR with 100 warm-up steps and
  cosine decay to 10 %, batch BATCH × SEQ tokens, STEPS steps, gradient clipping 1.0.
- Transformer: LlamaForCausalLM. Mamba2: Mamba2ForCausalLM (transformers' PyTorch path).
  LLaDA: the released LLaDA layout (tools/make_fixtures.py `LladaReference`, bidirectional),
  trained with the masked-diffusion objective of Nie et al. 2025: t ~ U(ε, 1), each token
  masked with probability t, loss = Σ_masked CE / (t · SEQ).
- Held-out evaluation (what tokit must reproduce): every held-out verse as its own document
  `<|endoftext|> verse`; the causal models' cross-entropy is the mean, over all verse tokens,
  of −ln p(token | document prefix); LLaDA's is the l-form bound (draw l uniform in 1..L,
  mask l of the L verse tokens, (L/l) Σ_masked −ln p), averaged over DRAWS draws per verse,
  reported per token with its standard error over verses.
"""

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")
VOCAB = 2048
SEQ = 128
BATCH = 16
STEPS = 1500
LR = 3e-3
SEED = 1234
TRAIN_BOOKS = 60
DRAWS = 8
EOT, MASK = 0, 1


def verses():
    """[(book index 1..66, text)] in canonical order."""
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    books, prev, rows = 0, None, []
    for line in out.splitlines():
        ref, _, text = line.partition(" ")
        book = re.sub(r"\d+:\d+$", "", ref)
        if book != prev:
            books, prev = books + 1, book
        rows.append((books, text.strip()))
    assert books == 66, f"expected 66 books, found {books}"
    return rows


def split():
    rows = verses()
    train = [t for b, t in rows if b <= TRAIN_BOOKS]
    held = [t for b, t in rows if b > TRAIN_BOOKS]
    return train, held


def train_tokenizer(train, out):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>", "<|mask|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train, trainer)
    assert tok.token_to_id("<|endoftext|>") == EOT and tok.token_to_id("<|mask|>") == MASK
    tok.save(out)
    return tok


def load_tokenizer():
    from tokenizers import Tokenizer

    path = os.path.join(ROOT, "kjv-tokenizer.json")
    if not os.path.exists(path):
        train, _ = split()
        os.makedirs(ROOT, exist_ok=True)
        train_tokenizer(train, path)
    return Tokenizer.from_file(path), path


def write_heldout_text():
    """models/kjv-heldout.txt: every held-out verse as one line `<|endoftext|>verse`, the
    documents of the held-out evaluation (the tokenizer splits the special token off)."""
    _, held = split()
    with open(os.path.join(ROOT, "kjv-heldout.txt"), "w") as f:
        f.writelines(f"<|endoftext|>{v}\n" for v in held)


def documents(tok, texts):
    return [[EOT] + e.ids for e in tok.encode_batch(texts)]


def windows(docs, seed):
    """All training windows of SEQ tokens, in one seeded order shared by every model."""
    rng = random.Random(seed)
    order = list(range(len(docs)))
    rng.shuffle(order)
    stream = [t for i in order for t in docs[i]]
    n = len(stream) // SEQ
    return torch.tensor(stream[: n * SEQ]).view(n, SEQ)


# --- models ----------------------------------------------------------------------------


def transformer():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=192, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT,
    )
    return LlamaForCausalLM(cfg)


def mamba2():
    from transformers import Mamba2Config, Mamba2ForCausalLM

    cfg = Mamba2Config(
        vocab_size=VOCAB, hidden_size=192, num_hidden_layers=7, state_size=32, expand=2,
        head_dim=32, num_heads=12, n_groups=1, conv_kernel=4, chunk_size=64,
        tie_word_embeddings=True, bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT,
    )
    return Mamba2ForCausalLM(cfg)


LLADA = dict(
    d_model=192, n_heads=4, n_kv_heads=4, n_layers=4, mlp_hidden_size=512, vocab_size=VOCAB,
    embedding_size=VOCAB, mask_token_id=MASK, rope_theta=10000.0, rms_norm_eps=1e-5,
    weight_tying=True, include_bias=False, include_qkv_bias=False, block_type="llama",
)


def llada():
    from make_fixtures import LladaReference

    m = LladaReference(LLADA)
    torch.nn.init.normal_(m.wte.weight, std=0.02)
    return m


def llada_logits(m, ids):
    """LladaReference's forward, batched ([B, T] ids) and without the ablation mask."""
    c = m.c
    h, hkv = c["n_heads"], c["n_kv_heads"]
    x = m.wte(ids)
    b_, t, d = x.shape
    dh = d // h
    for b in m.blocks:
        y = m.rms(b.attn_norm, x)
        q = m.rope(b.q_proj(y).view(b_, t, h, dh).transpose(1, 2))
        k = m.rope(b.k_proj(y).view(b_, t, hkv, dh).transpose(1, 2)).repeat_interleave(h // hkv, 1)
        v = b.v_proj(y).view(b_, t, hkv, dh).transpose(1, 2).repeat_interleave(h // hkv, 1)
        att = F.scaled_dot_product_attention(q, k, v)
        x = x + b.attn_out(att.transpose(1, 2).reshape(b_, t, d))
        y = m.rms(b.ff_norm, x)
        x = x + b.ff_out(F.silu(b.ff_proj(y)) * b.up_proj(y))
    x = m.rms(m.ln_f, x)
    return x @ m.wte.weight.T if m.ff_out is None else m.ff_out(x)


def causal_loss(model, x):
    logits = model(input_ids=x).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), x[:, 1:].reshape(-1))


def diffusion_loss(model, x, g, eps=1e-3):
    b_, t = x.shape
    tt = torch.rand(b_, 1, generator=g) * (1 - eps) + eps
    masked = torch.rand(b_, t, generator=g) < tt
    logits = llada_logits(model, torch.where(masked, torch.full_like(x, MASK), x))
    ce = F.cross_entropy(logits.reshape(-1, VOCAB), x.reshape(-1), reduction="none").view(b_, t)
    return ((ce * masked) / tt).sum() / (b_ * t)


# --- evaluation ------------------------------------------------------------------------


@torch.no_grad()
def held_out_ce(model, docs):
    """Mean −ln p over every held-out verse token (documents run one by one)."""
    total, n, per_doc = 0.0, 0, []
    for d in docs:
        x = torch.tensor([d])
        logits = model(input_ids=x).logits[0, :-1].double()
        nll = F.cross_entropy(logits, x[0, 1:], reduction="sum").item()
        total, n = total + nll, n + len(d) - 1
        per_doc.append(nll / (len(d) - 1))
    return total / n, n, per_doc


@torch.no_grad()
def held_out_elbo(model, docs, seed):
    """The l-form bound per token, averaged over DRAWS draws per verse; SE over verses."""
    g = torch.Generator().manual_seed(seed)
    per_doc, tokens = [], 0
    for d in docs:
        resp = len(d) - 1
        vals = []
        for _ in range(DRAWS):
            l_ = int(torch.randint(1, resp + 1, (1,), generator=g))
            pos = torch.randperm(resp, generator=g)[:l_] + 1
            x = torch.tensor([d])
            xin = x.clone()
            xin[0, pos] = MASK
            logp = F.log_softmax(llada_logits(model, xin)[0].double(), -1)
            vals.append(resp / l_ * -logp[pos, x[0, pos]].sum().item())
        per_doc.append(sum(vals) / len(vals) / resp)
        tokens += resp
    n = len(per_doc)
    mean = sum(per_doc) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in per_doc) / (n - 1) / n)
    return mean, se, tokens


# --- training --------------------------------------------------------------------------


def train(kind, steps, eval_docs):
    torch.manual_seed(SEED)
    random.seed(SEED)
    tok, tok_path = load_tokenizer()
    train_texts, held_texts = split()
    data = windows(documents(tok, train_texts), SEED)
    held = documents(tok, held_texts)[:eval_docs] if eval_docs else documents(tok, held_texts)
    model = {"transformer": transformer, "mamba2": mamba2, "llada": llada}[kind]()
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
        lr=LR, betas=(0.9, 0.95),
    )
    g = torch.Generator().manual_seed(SEED + 1)
    curve, start, first, before = [], time.time(), 0, 0.0
    # A killed run resumes from its last checkpoint (every 50 steps, outside git) with the
    # same model, optimiser and sampler state, so the result is the uninterrupted one.
    ckpt_dir = os.environ.get("TRAIN_CHECKPOINTS", os.path.expanduser("~/.cache/tokit/train"))
    ckpt = os.path.join(ckpt_dir, f"kjv-{kind}-{steps}.pt")
    if os.path.exists(ckpt):
        c = torch.load(ckpt, weights_only=False)
        model.load_state_dict(c["model"])
        opt.load_state_dict(c["opt"])
        g.set_state(c["g"])
        curve, first, before = c["curve"], c["step"], c["seconds"]
        print(f"{kind}: resumed at step {first} from {ckpt}", flush=True)
    model.train()
    for step in range(first, steps):
        lr = LR * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        batch = data[torch.randint(0, len(data), (BATCH,), generator=g)]
        loss = diffusion_loss(model, batch, g) if kind == "llada" else causal_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            print(f"{kind} step {step}/{steps} loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)
        if (step + 1) % 50 == 0:
            os.makedirs(ckpt_dir, exist_ok=True)
            state = {"model": model.state_dict(), "opt": opt.state_dict(), "g": g.get_state(),
                     "curve": curve, "step": step + 1, "seconds": before + time.time() - start}
            torch.save(state, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
    minutes = (before + time.time() - start) / 60
    model.eval()
    # tokit loads the float16 file: evaluate exactly those weights.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    if kind == "llada":
        mean, se, tokens = held_out_elbo(model, held, SEED + 2)
        held_result = {"elbo_per_token": mean, "se": se, "tokens": tokens, "draws_per_verse": DRAWS}
    else:
        ce, tokens, _ = held_out_ce(model, held)
        held_result = {"cross_entropy_per_token": ce, "tokens": tokens}
    save(kind, model, tok_path, params, steps, minutes, curve, held_result, len(held))
    return held_result


def save(kind, model, tok_path, params, steps, minutes, curve, held, n_docs):
    from safetensors.torch import save_file

    out = os.path.join(ROOT, f"kjv-{kind}")
    os.makedirs(out, exist_ok=True)
    if kind == "llada":
        state = {k: v.half() for k, v in model.state().items()}
        cfg = {
            "architectures": ["LLaDAModelLM"], "model_type": "llada", "activation_type": "silu",
            "alibi": False, "attention_layer_norm": False, "block_group_size": 1,
            "layer_norm_type": "rms", "rope": True, "max_sequence_length": 1024, **LLADA,
        }
    else:
        # Tied weights are stored once, as transformers saves them.
        state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        cfg = model.config.to_dict()
    save_file(state, os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    with open(tok_path) as src, open(os.path.join(out, "tokenizer.json"), "w") as dst:
        dst.write(src.read())
    # The held-out numbers and text, for tokit's check against them (tests/tests/kjv_models.rs).
    with open(os.path.join(out, "heldout.json"), "w") as f:
        json.dump({"verses": n_docs, **held}, f, indent=1)
        f.write("\n")
    write_heldout_text()
    every = max(1, len(curve) // 30)
    points = [(i, sum(curve[i : i + every]) / len(curve[i : i + every])) for i in range(0, len(curve), every)]
    with open(os.path.join(out, "MODEL_CARD.md"), "w") as f:
        f.write(card(kind, params, steps, minutes, points, held, n_docs))


def card(kind, params, steps, minutes, points, held, n_docs):
    what = {
        "transformer": "Llama-style causal Transformer (`LlamaForCausalLM`)",
        "mamba2": "Mamba2 state-space model (`Mamba2ForCausalLM`)",
        "llada": "LLaDA-style masked-diffusion Transformer (released LLaDA layout, bidirectional)",
    }[kind]
    lines = [
        f"# kjv-{kind}", "",
        f"A {what} trained by `tools/train_tiny.py` (the recipe is in its header) on the King",
        "James Bible (Debian `bible-kjv`, public domain): books 1-60 for training, 61-66",
        "(2 Peter to Revelation) held out. For measuring, not for use.", "",
        f"- parameters: {params:,}", f"- tokenizer: byte-level BPE, {VOCAB} tokens (`tokenizer.json`)",
        f"- steps: {steps} x {BATCH} x {SEQ} tokens = {steps * BATCH * SEQ:,} tokens",
        f"- training time: {minutes:.1f} min on {torch.get_num_threads()} CPU threads (torch {torch.__version__})",
        "- weights: float16 (held-out numbers below are for these rounded weights)", "",
        "## Held-out numbers (PyTorch)", "",
    ]
    if kind == "llada":
        lines += [
            f"- l-form ELBO bound: **{held['elbo_per_token']:.6f} ± {held['se']:.6f} nats/token** (mean ± SE over",
            f"  {n_docs} verses, {held['draws_per_verse']} draws each, {held['tokens']} tokens). A bound on the",
            "  negative log-likelihood, not an exact likelihood.",
        ]
    else:
        lines += [
            f"- cross-entropy: **{held['cross_entropy_per_token']:.6f} nats/token** (exact, over {held['tokens']} tokens",
            f"  of {n_docs} verses, each its own document `<|endoftext|> verse`).",
        ]
    lines += ["", "## Training loss", "", "| step | loss |", "| ---: | ---: |"]
    lines += [f"| {i} | {v:.4f} |" for i, v in points]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["tokenizer", "transformer", "mamba2", "llada", "all"])
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--eval-docs", type=int, default=0, help="held-out verses to evaluate (0: all)")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", "2")))
    if a.what == "tokenizer":
        load_tokenizer()
        return
    kinds = ["transformer", "mamba2", "llada"] if a.what == "all" else [a.what]
    for k in kinds:
        print(k, json.dumps(train(k, a.steps, a.eval_docs)))


if __name__ == "__main__":
    main()
