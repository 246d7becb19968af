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
