"""Fine-tuning patched models with the HF Trainer (RELIABILITY.md items 16 and 19): masks stay exact in fp32 and
bf16 mixed precision, gradient checkpointing gives the same gradients, PEFT LoRA trains adapters over a frozen
sparse-quantized base, and DDP over two CPU processes matches one process with the same global batch."""
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

import qsparse  # noqa: E402
from qsparse import BFPLinear  # noqa: E402

from finetune_script import RECIPE, train_data  # noqa: E402
from hf_models import tiny_model, tokens  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _masked_state(model):
    return {n: (m.mask.clone(), m.weight.detach().clone()) for n, m in model.named_modules()
            if isinstance(m, BFPLinear) and m.mask is not None}


def _trainer(model, out, steps, **kw):
    args = transformers.TrainingArguments(output_dir=str(out), per_device_train_batch_size=4, max_steps=steps,
                                          learning_rate=1e-2, weight_decay=0.1, max_grad_norm=1.0, report_to=[],
                                          save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True, **kw)
    return transformers.Trainer(model=model, args=args, train_dataset=train_data())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_trainer_keeps_masks_exact(precision, tmp_path):
    model = qsparse.patch_model(tiny_model("llama"), RECIPE)
    before = _masked_state(model)
    _trainer(model, tmp_path, 20, bf16=precision == "bf16").train()
    moved = 0
    for name, (mask, w0) in before.items():
        m = dict(model.named_modules())[name]
        assert torch.equal(m.mask, mask), name
        assert torch.all(m.weight[~mask] == 0), name
        moved += int((m.weight[mask] != w0[mask]).sum())
    assert moved > 0.9 * sum(int(mask.sum()) for mask, _ in before.values())


def test_straight_through_gradient_of_a_patched_layer():
    """d loss / d weight of a patched linear is the dense linear's gradient at the quantized weight, zeroed where
    the mask prunes (computed here with plain autograd on F.linear)."""
    model = qsparse.patch_model(tiny_model("llama"), RECIPE)
    layer = model.model.layers[1].mlp.up_proj
    x = torch.randn(4, 9, layer.in_features, requires_grad=True)
    g = torch.randn(4, 9, layer.out_features)
    (layer(x) * g).sum().backward()
    wq = layer.effective_weight().detach().requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    (F.linear(xr, wq, layer.bias) * g).sum().backward()
    assert torch.equal(layer.weight.grad, torch.where(layer.mask, wq.grad, torch.zeros(())))
    assert torch.equal(x.grad, xr.grad)


def test_gradient_checkpointing_gives_the_same_gradients():
    ids = tokens(batch=4)
    grads = []
    for checkpointing in (False, True):
        model = qsparse.patch_model(tiny_model("llama"), RECIPE).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model(ids, labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-7)


def test_peft_lora_over_a_frozen_sparse_quantized_base(tmp_path):
    peft = pytest.importorskip("peft")
    model = qsparse.patch_model(tiny_model("llama"), RECIPE)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                      lora_dropout=0.0, init_lora_weights=True))
    _trainer(lora, tmp_path, 10).train()
    state = {k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in lora.state_dict().items()}
    for k, v in base.items():
        assert torch.equal(state[k], v), k  # the base (weights and masks) is frozen
    wrapped = lora.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(wrapped.base_layer, BFPLinear)
    b = wrapped.lora_B["default"].weight
    assert b.abs().sum() > 0  # LoRA's B starts at zero: it moved
    x = torch.randn(3, wrapped.base_layer.in_features)
    with torch.no_grad():
        expected = wrapped.base_layer(x) + wrapped.scaling["default"] * (x @ wrapped.lora_A["default"].weight.T @ b.T)
        torch.testing.assert_close(wrapped(x), expected, rtol=1e-5, atol=1e-6)


def _run(cmd, out):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(os.path.join(out, "state.pt"))


@pytest.mark.slow
def test_ddp_over_two_cpu_processes_matches_one_process(tmp_path):
    script = os.path.join(HERE, "finetune_script.py")
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    single = _run([sys.executable, script, str(one), "4", "6"], one)
    with socket.socket() as s:  # a free port for the rendezvous (torchrun's --master_port 0 can hang)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ddp = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(port), script, str(two), "2", "6"], two)
    assert single.keys() == ddp.keys()
    for k in single:
        if k.endswith(".mask"):
            assert torch.equal(single[k], ddp[k]), k
        else:
            torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-6, msg=k)
    start = qsparse.patch_model(tiny_model("llama"), RECIPE).state_dict()
    assert any(not torch.equal(start[k], single[k]) for k in single if k.endswith("weight"))
