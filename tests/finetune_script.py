"""Fine-tunes a tiny patched Llama with the HF Trainer; run by tests/test_finetune.py, alone or under torchrun
(DDP over gloo on the CPU). Saves the final state dict to OUT/state.pt (rank 0).

    python tests/finetune_script.py OUT PER_DEVICE_BATCH STEPS
    torchrun --nproc_per_node 2 tests/finetune_script.py OUT PER_DEVICE_BATCH STEPS
"""
import os
import sys

import torch
from torch.utils.data import SequentialSampler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import qsparse  # noqa: E402
from hf_models import tiny_model  # noqa: E402

RECIPE = {"ignore": ["lm_head"], "config_groups": {"all": {"targets": ["Linear"], "weight": "int4_asym",
                                                           "sparsity": "2:4"}}}


def train_data(n: int = 32, length: int = 16):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 128, (n, length), generator=g)
    return [{"input_ids": r, "labels": r} for r in x]


def main(out: str, batch: int, steps: int) -> None:
    from transformers import Trainer, TrainingArguments

    class InOrder(Trainer):  # the same sample order in every run, so that one and two processes see one batch
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    model = qsparse.patch_model(tiny_model("llama"), RECIPE)
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=1e-3,
                             weight_decay=0.1, max_grad_norm=1.0, lr_scheduler_type="constant", report_to=[],
                             save_strategy="no", use_cpu=True, seed=0,
                             ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None, logging_steps=steps,
                             dataloader_num_workers=0, disable_tqdm=True, ddp_find_unused_parameters=False)
    InOrder(model=model, args=args, train_dataset=train_data()).train()
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, os.path.join(out, "state.pt"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
