"""The analytic FLOP count of bench/flops.py against torch's FlopCounterMode.

On the math attention path the counter sees every matrix product, so the two must agree. On the
fused CPU attention kernel the counter has no formula and counts nothing for attention, so it
falls short by exactly the attention products; that is why the benches count analytically.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from neds.model.masking import draw_masks
from neds.model.neds import NEDS, Batch, ModelConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from flops import model_flops, neds_flops

N_UNITS = [12, 9]  # padded to 12
BATCH = 4


def _counted(backend: SDPBackend, cfg: ModelConfig) -> tuple[float, float]:
    """FlopCounterMode's (forward, training step) FLOPs of one batch on ``backend``."""
    torch.manual_seed(0)
    model = NEDS(cfg, N_UNITS).train()
    t, n = cfg.n_bins, max(N_UNITS)
    session = torch.tensor([0, 1, 0, 1])
    unit_mask = torch.arange(n)[None, :] < torch.tensor(N_UNITS)[session][:, None]
    batch = Batch(
        spikes=torch.poisson(torch.full((BATCH, t, n), 0.3)) * unit_mask[:, None, :],
        unit_mask=unit_mask,
        wheel=torch.rand(BATCH, t),
        whisker=torch.rand(BATCH, t),
        choice=torch.tensor([0, 1, 1, 0]),
        block=torch.tensor([0, 1, 2, 1]),
        session=session,
    )
    masks = draw_masks(BATCH, t, 0.3, torch.Generator().manual_seed(0))
    with sdpa_kernel(backend):
        with FlopCounterMode(display=False) as fwd_counter:
            out = model(batch, masks)
        with FlopCounterMode(display=False) as bwd_counter:
            loss, _ = model.loss(out, batch, masks)
            loss.backward()
    fwd = fwd_counter.get_total_flops()
    return fwd, fwd + bwd_counter.get_total_flops()


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    return ModelConfig(hidden=32, n_heads=4, mlp=48, n_layers=2, dropout=0.1, token_dropout=0.1, n_bins=20)


def test_analytic_count_matches_counter_on_math_path(cfg):
    want = model_flops(cfg, max(N_UNITS), BATCH)
    fwd, train = _counted(SDPBackend.MATH, cfg)
    assert fwd == pytest.approx(want["forward"], rel=0.02)
    assert train == pytest.approx(want["train_step"], rel=0.02)


def test_counter_misses_fused_cpu_attention(cfg):
    want = model_flops(cfg, max(N_UNITS), BATCH)
    fwd, train = _counted(SDPBackend.FLASH_ATTENTION, cfg)
    # no formula for aten._scaled_dot_product_flash_attention_for_cpu (nor its backward)
    assert fwd == pytest.approx(want["forward"] - want["fwd_attention"], rel=0.02)
    assert train == pytest.approx(want["train_step"] - want["attention_train"], rel=0.02)
    assert train < 0.9 * want["train_step"]  # attention is a large share at 5T = 100 tokens


def test_paper_case_numbers():
    """The paper's 5-layer training step at batch 16 (10 sessions, up to 300 units): the
    figures bench/README.md quotes."""
    f = neds_flops(hidden=256, mlp=512, n_layers=5, n_bins=100, units=300, batch=16)
    assert f["train_step"] / 1e9 == pytest.approx(190.66, abs=0.01)
    assert f["attention_train"] / 1e9 == pytest.approx(61.44, abs=0.01)
    # what FlopCounterMode recorded: on the fused CPU kernel, without attention; on the CUDA kernels,
    # with their backward's recomputation of Q K^T (one of the two forward attention products)
    assert f["train_step"] - f["attention_train"] == pytest.approx(129.22257408e9, rel=1e-6)
    assert f["train_step"] + f["fwd_attention"] / 2 == pytest.approx(200.90257408e9, rel=1e-6)
