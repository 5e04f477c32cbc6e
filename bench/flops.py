"""FLOPs of a NEDS forward pass and training step, counted from the layer shapes.

Why analytic: ``torch.utils.flop_counter.FlopCounterMode`` has no formula for the fused CPU
attention kernel (``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward), so on
CPU it leaves attention out; its formula for the CUDA flash / memory-efficient kernels' backward
counts five matrix products, the recomputation of the scores Q K^T included, where the model
needs four. Neither is the model's work; this count is, whatever kernel runs.

Convention:
* a multiply-add is 2 FLOPs; only matrix products are counted: biases, elementwise ops
  (softsign, GELU, dropout, rotary embedding, residuals, the behaviour stitchers' per-bin
  1 -> 2 layers, which are broadcast products), softmax, layer norms, the loss and the optimiser
  are not (the same set FlopCounterMode counts);
* backward = 2x forward for every product (the gradient of each operand), so a training step =
  3x forward, except the spike stitcher's first layer, whose input is data: no gradient is taken
  for it, so 2x;
* the session-specific layers run on tensors padded to the largest session of the model, so
  ``units`` is that largest unit count N.

Per trial, with L = 5T tokens, hidden H, MLP width M, N units (forward):
  per layer  QKV 2*L*H*3H, output projection 2*L*H*H, scores Q K^T 2*L^2*H, weighted sum A V
             2*L^2*H, MLP 2*L*H*M twice (independent of the number of heads);
  stitchers  spikes 2*T*N*2N + 2*T*2N*H, behaviour Linear(2 -> H) on 4*T tokens 2*4T*2*H;
  heads      spike readout 2*T*H*N, wheel and whisker 2*2T*H, static pooling 2*2T*H,
             choice and block 2*H*(2 + 3).

Plain Python (no torch): ``python bench/flops.py`` prints the paper's 5-layer case.
"""

from __future__ import annotations

__all__ = ["neds_flops", "model_flops"]


def neds_flops(hidden: int, mlp: int, n_layers: int, n_bins: int, units: int, batch: int = 1) -> dict[str, float]:
    """FLOPs of one batch: per-part forward counts (``fwd_*``) and the totals ``forward``,
    ``backward``, ``train_step`` (forward + backward) and ``attention_train`` (the scores and
    weighted-sum products of a training step, the part the fused CPU kernel hides from
    FlopCounterMode). See the module docstring for the convention."""
    h, m, t, n, b = hidden, mlp, n_bins, units, batch
    tokens = 5 * t
    fwd = {
        "fwd_qkv_proj": n_layers * 2 * tokens * h * 4 * h,  # QKV (3H) + output projection (H)
        "fwd_attention": n_layers * 2 * (2 * tokens**2 * h),  # Q K^T and A V
        "fwd_mlp": n_layers * 2 * (2 * tokens * h * m),
        "fwd_spike_stitcher_in": 2 * t * n * 2 * n,  # Linear(N -> 2N), input is data
        "fwd_spike_stitcher_out": 2 * t * 2 * n * h,  # Linear(2N -> H)
        "fwd_behaviour_stitchers": 2 * 4 * t * 2 * h,  # Linear(2 -> H) of wheel, whisker, choice, block
        "fwd_heads": 2 * t * h * n + 2 * 2 * t * h + 2 * 2 * t * h + 2 * h * (2 + 3),
    }
    fwd = {k: float(v * b) for k, v in fwd.items()}
    forward = sum(fwd.values())
    backward = 2 * forward - fwd["fwd_spike_stitcher_in"]  # no gradient for the data
    return {
        **fwd,
        "forward": forward,
        "backward": backward,
        "train_step": forward + backward,
        "attention_train": 3 * fwd["fwd_attention"],
    }


def model_flops(cfg, units: int, batch: int = 1) -> dict[str, float]:
    """:func:`neds_flops` of a ``neds.model.neds.ModelConfig`` (or any object or dict with its
    ``hidden``, ``mlp``, ``n_layers``, ``n_bins``); ``units``: the largest session's unit count."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    return neds_flops(get("hidden"), get("mlp"), get("n_layers"), get("n_bins", 100), units, batch)


if __name__ == "__main__":
    f = neds_flops(hidden=256, mlp=512, n_layers=5, n_bins=100, units=300, batch=16)
    for k, v in f.items():
        print(f"{k:26s} {v / 1e9:9.3f} GFLOP")
