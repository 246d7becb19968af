"""Quantizers on the caller's tensors: each solver's forward and backward against its equations."""
import pytest
import torch

import bilevel


def test_ste_binary_is_sign_with_a_clipped_gradient():
    torch.manual_seed(0)
    w0 = torch.randn(7, 13)
    q = bilevel.quant.WeightQuantizer("binary", "ste", granularity="per_channel")
    theta, scale = q.init(w0)
    torch.testing.assert_close(scale.flatten(), w0.abs().mean(1))
    theta = torch.nn.Parameter(theta * 3)  # some latents past the clip range
    w = q(theta, scale)
    torch.testing.assert_close(w, scale.view(-1, 1) * torch.sign(theta.detach()))
    g = torch.randn_like(w)
    w.backward(g)
    inside = (theta.detach() / scale.view(-1, 1)).abs() <= 1.0
    torch.testing.assert_close(theta.grad, g * inside)


def test_learned_scale_gets_its_gradient():
    torch.manual_seed(1)
    q = bilevel.quant.WeightQuantizer("binary", "ste")
    theta, scale = q.init(torch.randn(5, 9))
    theta, scale = torch.nn.Parameter(theta), torch.nn.Parameter(scale)
    w = q(theta, scale)
    g = torch.randn_like(w)
    w.backward(g)
    # w = s·sign(θ): ∂ℓ/∂s = Σ g·w/s.
    torch.testing.assert_close(scale.grad.flatten(), (g * w.detach() / scale.detach()).sum().view(1))


def test_flip_rule_flips_where_the_average_exceeds_tau():
    torch.manual_seed(2)
    q = bilevel.quant.WeightQuantizer("binary", "flip", gamma=0.5, tau=0.2)
    w0 = torch.randn(6, 8)
    codes, scale, m = q.init(w0)
    torch.testing.assert_close(codes, torch.sign(w0))
    torch.testing.assert_close(q(codes, scale), scale * codes)
    before = codes.clone()
    g = torch.randn_like(w0)
    q.flip_step(codes, scale, m, g)
    torch.testing.assert_close(m, 0.5 * g)
    flipped = (0.5 * g * before) > 0.2
    assert flipped.any() and not flipped.all()
    torch.testing.assert_close(codes, torch.where(flipped, -before, before))


def test_unknown_solver_names_the_key():
    with pytest.raises(bilevel.ConfigError) as e:
        bilevel.quant.WeightQuantizer("binary", "nonesuch")
    assert e.value.key == "quantization.weights.solver"


def test_adaste_forward_and_its_linear_piece():
    torch.manual_seed(3)
    q = bilevel.quant.WeightQuantizer("binary", "adaste", alpha=0.01, beta0=0.5)
    clock = {"epoch": 0, "batch": 0, "batches": 10, "epochs": 5}
    beta = q.schedule(clock)
    assert beta == pytest.approx(0.5)
    theta, scale = q.init(torch.randn(9, 11))
    theta = torch.nn.Parameter(theta * 0.1)  # small latents: the linear piece of w*(u)
    w = q(theta, scale, clock)
    u = theta.detach() / scale
    expected = torch.clamp((u + beta * 1.01 * torch.sign(u)) / (1 + beta), -1, 1) * scale
    torch.testing.assert_close(w, expected)
    # Pushed away from 0 (descent moves θ by −g, so g·sign(u) < 0) and unsaturated: the slope 1/(1+β).
    g = -torch.sign(u) * torch.rand_like(u)
    w.backward(g)
    torch.testing.assert_close(theta.grad, g / (1 + beta))


def test_lsq_uniform_grid_and_gradient():
    torch.manual_seed(4)
    q = bilevel.quant.WeightQuantizer("uniform", "lsq", bits=3)
    theta, scale = q.init(torch.randn(8, 10))
    theta, scale = torch.nn.Parameter(theta), torch.nn.Parameter(scale)
    w = q(theta, scale)
    codes = w.detach() / scale.detach()
    torch.testing.assert_close(codes, codes.round())  # on the grid
    assert codes.min() >= -4 and codes.max() <= 3     # 3 bits, symmetric: [−4, 3]
    g = torch.randn_like(w)
    w.backward(g)
    inside = ((theta.detach() / scale.detach()) >= -4) & ((theta.detach() / scale.detach()) <= 3)
    torch.testing.assert_close(theta.grad, g * inside)
    assert scale.grad is not None and torch.isfinite(scale.grad).all()
