"""bilevel.optim.Adam is torch.optim.Adam's update in one pass; a run leaves the session's settings alone."""
import pytest
import torch

import bilevel


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_matches_torch(weight_decay):
    torch.manual_seed(0)
    a = torch.randn(37, 29, requires_grad=True)  # not a multiple of any vector width
    b = a.detach().clone().requires_grad_()
    c = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)  # the non-fused path
    d = c.detach().clone().requires_grad_()
    ours = bilevel.optim.Adam([a, c], lr=3e-3, betas=(0.8, 0.99), eps=1e-7, weight_decay=weight_decay)
    theirs = torch.optim.Adam([b, d], lr=3e-3, betas=(0.8, 0.99), eps=1e-7, weight_decay=weight_decay)
    for _ in range(7):
        g, h = torch.randn_like(a), torch.randn_like(c)
        a.grad, b.grad, c.grad, d.grad = g.clone(), g.clone(), h.clone(), h.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c, d, atol=1e-12, rtol=1e-10)
    assert not torch.equal(a, a.detach() * 0)


def test_run_restores_threads_dtype_and_random_stream(source, small):
    torch.set_num_threads(2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    torch.set_default_dtype(torch.float64)
    try:
        run = bilevel.train(source / "configs/quickstart.yaml", **small)  # train.threads=1, seed 0
        assert run.status == "completed"
        assert torch.get_num_threads() == 2
        assert torch.get_default_dtype() == torch.float64
        torch.testing.assert_close(torch.rand(3, dtype=torch.float32), expected)
    finally:
        torch.set_default_dtype(torch.float32)
