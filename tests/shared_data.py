"""Where the tests find ../shared/data (the real stories260K model and the WikiText-2 test split), the skip marker
for tests that need it, and GPTQ's perplexity written out plainly as the independent reference of evaluation tests."""
import math
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")
STORIES = os.path.join(DATA, "stories260K")
TEXT = os.path.join(DATA, "wikitext2", "test.txt")
needs_data = pytest.mark.skipif(not os.path.exists(STORIES),
                                reason="../shared/data (stories260K, WikiText-2) is absent")


def direct_ppl(model, ids: torch.Tensor, seqlen: int, windows: int) -> float:
    """GPTQ's perplexity written out: consecutive windows, mean NLL of tokens 1.. of each (float64 log-softmax),
    exp of the mean over windows."""
    total = 0.0
    with torch.no_grad():
        for i in range(windows):
            w = ids[i * seqlen:(i + 1) * seqlen]
            logp = torch.log_softmax(model(w[None]).logits[0].double(), dim=-1)
            total += -logp[torch.arange(seqlen - 1), w[1:]].mean().item()
    return math.exp(total / windows)
