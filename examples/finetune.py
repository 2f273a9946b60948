"""Sparse-and-quantized fine-tuning, the seed's setup on a real model: INT4 weights (GPTQ's asymmetric quantizer,
groups of 32) and FP16 activations, the first MLP projection 2:4 sparse and the second 1:4, on chosen decoder layers;
fine-tuned with the HF Trainer while masks and quantizers stay in place (straight-through gradients).

The seed does this for OPT (fc1 2:4, fc2 1:4). stories260K is a Llama, whose MLP is gate/up (the first projection,
2:4 here) and down (the second, 1:4). Text: the WikiText-2 rows of ../shared/data, split by rows into a training part
and a held-out part; perplexity (GPTQ's protocol) is measured on the held-out part before patching, after patching,
and after fine-tuning (``--dense-baseline`` fine-tunes the dense model the same way too: stories260K was trained on
TinyStories, so much of the gain on WikiText is domain adaptation, which the baseline separates from recovery). The
fine-tuned model is saved with save_pretrained and loaded back to check it round-trips.

    python examples/finetune.py                          # stories260K, the embedded config, 300 steps
    python examples/finetune.py --config my_layers.yaml --steps 1000 --output-dir runs/ft
"""
import argparse
import copy
import json
import logging
import os
import time

import torch

import qsparse
from qsparse.data import read_rows
from qsparse.eval import perplexity
from qsparse.eval.perplexity import wikitext_windows
from qsparse.models import load_llama2c

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")

# The seed's opt-6.7b-finetuning.sh entries, with Llama's layer types (gate_proj and up_proj for fc1, down_proj for
# fc2) on three of stories260K's five layers.
SEED = dict(sparsity_num_format="bfp", a_num_format="fp", a_mant_bits=16, w_num_format="int", w_mant_bits=4,
            block_size=32, w_sparsity=True, first="s", sparsity_mode="structured", device="cuda", sparsify=True)
LAYERS = [1, 2, 3]
DEFAULT_CONFIG = {
    "gate_proj": [{"layer_ids": LAYERS, **SEED, "N": 2, "M": 4, "sparsity_frac": 0.5}],
    "up_proj": [{"layer_ids": LAYERS, **SEED, "N": 2, "M": 4, "sparsity_frac": 0.5}],
    "down_proj": [{"layer_ids": LAYERS, **SEED, "N": 1, "M": 4, "sparsity_frac": 0.25}],
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model-bin", default=os.path.join(DATA, "stories260K", "stories260K.bin"))
    p.add_argument("--tokenizer-bin", default=os.path.join(DATA, "stories260K", "tok512.bin"))
    p.add_argument("--text", default=os.path.join(DATA, "wikitext2", "test_rows.jsonl"),
                   help="jsonl rows with 'text' (or a plain text file)")
    p.add_argument("--config", default=None, help="per-layer YAML or recipe (default: the embedded seed setup)")
    p.add_argument("--heldout", type=float, default=0.2, help="fraction of rows held out for evaluation")
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--output-dir", default=os.path.join("runs", "finetune"))
    p.add_argument("--dense-baseline", action="store_true",
                   help="also fine-tune the dense model the same way (the text differs from the model's training "
                        "data, so part of the gain is domain adaptation: this separates it)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("finetune")
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    model, tok = load_llama2c(args.model_bin, args.tokenizer_bin)
    rows = read_rows(args.text)
    cut = int(len(rows) * (1 - args.heldout))
    train_rows, eval_rows = rows[:cut], rows[cut:]
    eval_ids = wikitext_windows(tok, eval_rows, args.seqlen)
    train_ids = wikitext_windows(tok, train_rows, args.seqlen)
    log.info("%d training windows and %d held-out windows of %d tokens", len(train_ids), len(eval_ids), args.seqlen)

    def ppl(m):
        return perplexity(m, text_or_dataset=eval_ids, batch_size=16, progress=False).ppl

    train = [{"input_ids": x, "labels": x} for x in train_ids]

    def finetune(m):
        targs = TrainingArguments(output_dir=args.output_dir, per_device_train_batch_size=args.batch_size,
                                  max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="linear",
                                  warmup_steps=args.steps // 4, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                                  weight_decay=0.0, logging_steps=max(1, args.steps // 10), save_strategy="no",
                                  report_to=[], use_cpu=not torch.cuda.is_available(), seed=0)
        t0 = time.perf_counter()
        Trainer(model=m, args=targs, train_dataset=train).train()
        return time.perf_counter() - t0

    results = {"dense": ppl(model)}
    if args.dense_baseline:  # the same fine-tuning of the dense model: what the domain shift alone gives
        dense = copy.deepcopy(model)
        finetune(dense)
        results["dense_finetuned"] = ppl(dense)
        del dense
    qsparse.patch_model(model, args.config if args.config else DEFAULT_CONFIG)
    log.info("%s", qsparse.summary(model))
    results["patched"] = ppl(model)
    results["train_seconds"] = finetune(model)
    results["finetuned"] = ppl(model)

    saved = os.path.join(args.output_dir, "model")
    model.save_pretrained(saved)
    tok.save_pretrained(saved)
    reloaded = AutoModelForCausalLM.from_pretrained(saved)
    results["reloaded"] = ppl(reloaded)
    masks_exact = all(bool((m.weight[~m.mask] == 0).all()) for _, m in qsparse.integrations.patched_modules(model)
                      if m.mask is not None)
    results["masked_weights_zero"] = masks_exact
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    log.info("held-out perplexity: %s", " | ".join(f"{k} {v:.3f}" for k, v in results.items()
                                                  if k in ("dense", "dense_finetuned", "patched", "finetuned",
                                                           "reloaded")))
    log.info("masked weights exactly zero after training: %s; saved to %s", masks_exact, saved)


if __name__ == "__main__":
    main()
