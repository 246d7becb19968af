"""The estimators against autograd on float64 (an independent oracle written here in PyTorch):
EP's estimate → the true gradient of ℓ(s*(θ)) at O(β) (symmetric EP at O(β²)), dual propagation = backprop at
α = ½, and the estimates land in the caller's own .grad tensors."""
import pytest
import torch

import bilevel


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def rho(u):  # sigmoid4: ρ(u) = σ(4u − 2)
    return torch.sigmoid(4 * u - 2)


def mlp(widths, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for a, b in zip(widths, widths[1:]):
        m = torch.nn.Linear(a, b)
        with torch.no_grad():
            m.weight.copy_((torch.rand(b, a, generator=g) * 2 - 1) * scale / a ** 0.5)
            m.bias.copy_((torch.rand(b, generator=g) * 2 - 1) * 0.1)
        layers.append(m)
    return torch.nn.Sequential(*layers)


def free_fixed_point(net, x, iters=400):
    """The free equilibrium of E = Σ G_ρ(s_k) − Σ s_k·(W_k s_{k−1} + b_k) by Jacobi iteration
    s_k ← ρ(W_k s_{k−1} + b_k + W_{k+1}ᵀ s_{k+1}), differentiable by autograd (unrolled; contractive here)."""
    layers = list(net)
    s = [torch.zeros(x.shape[0], m.out_features) for m in layers]
    for _ in range(iters):
        new = []
        for k, m in enumerate(layers):
            below = x if k == 0 else s[k - 1]
            u = below @ m.weight.T + m.bias
            if k + 1 < len(layers):
                u = u + s[k + 1] @ layers[k + 1].weight
            new.append(rho(u))
        s = new
    return s


def true_gradient(net, x, y):
    net.zero_grad()
    out = free_fixed_point(net, x)[-1]
    loss = 0.5 * (out - torch.nn.functional.one_hot(y, out.shape[1])).pow(2).sum(1).mean()
    loss.backward()
    g = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    return g


def estimate(net, rule, beta, x, y):
    est = bilevel.Estimator(net, {"name": rule, "beta": beta}, model__activation="sigmoid4", train__loss="mse",
                            solver={"name": "fixed_point", "free_steps": 400, "nudged_steps": 400, "tol": 1e-13})
    net.zero_grad(set_to_none=True)
    est.step(x, y)
    return [p.grad.clone() for p in net.parameters()]


def rel_error(a, b):
    num = sum(float((u - v).pow(2).sum()) for u, v in zip(a, b))
    den = sum(float(v.pow(2).sum()) for v in b)
    return (num / den) ** 0.5


@pytest.mark.parametrize("rule,order", [("ep", 1), ("ep_symmetric", 2)])
def test_ep_converges_to_the_true_gradient(rule, order):
    torch.manual_seed(3)
    net = mlp([13, 11, 7, 5], seed=1, scale=1.5)
    x = torch.rand(9, 13)
    y = torch.randint(0, 5, (9,))
    truth = true_gradient(net, x, y)
    errors = [rel_error(estimate(net, rule, b, x, y), truth) for b in (1e-1, 1e-2)]
    assert errors[1] < 0.05
    # The error falls as β^order: ×10 (one-sided) or ×100 (symmetric) for β ÷ 10, within a factor of 3.
    assert errors[0] / errors[1] > 10 ** order / 3


def test_dual_propagation_is_backprop_at_half():
    net = mlp([10, 8, 6, 4], seed=2, scale=2.0)
    x = torch.rand(7, 10)
    y = torch.randint(0, 4, (7,))
    # Backprop's gradient of the feedforward network (autograd), mse on ρ(output).
    net.zero_grad()
    h = x
    for m in net:
        h = rho(m(h))
    loss = 0.5 * (h - torch.nn.functional.one_hot(y, 4)).pow(2).sum(1).mean()
    loss.backward()
    truth = [p.grad.clone() for p in net.parameters()]
    est = bilevel.Estimator(net, {"name": "dual_prop", "alpha": 0.5, "beta": 1e-3}, model__activation="sigmoid4",
                            train__loss="mse")
    net.zero_grad(set_to_none=True)
    est.step(x, y)
    assert rel_error([p.grad for p in net.parameters()], truth) < 1e-3


def test_step_accumulates_into_the_callers_grad_without_copies():
    net = mlp([20, 16, 3], seed=4).float()
    x, y = torch.rand(5, 20, dtype=torch.float32), torch.randint(0, 3, (5,))
    est = bilevel.Estimator(net, "ep", model__activation="sigmoid4", train__loss="mse")
    w = net[0].weight
    ptr = w.data_ptr()
    est.step(x, y)
    first = w.grad.clone()
    buffer = w.grad.data_ptr()
    est.step(x, y)  # accumulates, as backward() does, in the same buffer
    assert w.grad.data_ptr() == buffer
    torch.testing.assert_close(w.grad, 2 * first)
    assert w.data_ptr() == ptr  # the weights were never copied or moved
    # An in-place change to the caller's weights is seen by the next step (shared storage).
    before = est.predict(x)
    with torch.no_grad():
        net[1].weight.mul_(-1)
    assert not torch.allclose(est.predict(x), before)

def test_relax_returns_the_free_equilibrium():
    net = mlp([12, 9, 4], seed=5, scale=1.5)
    x = torch.rand(6, 12)
    est = bilevel.Estimator(net, "ep", model__activation="sigmoid4", train__loss="mse",
                            solver={"free_steps": 400, "tol": 1e-13})
    states = est.relax(x)
    with torch.no_grad():
        oracle = free_fixed_point(net, x)
    assert len(states) == 2
    for s, o in zip(states, oracle):
        torch.testing.assert_close(s, o, atol=1e-9, rtol=0)
    torch.testing.assert_close(est.predict(x), oracle[-1], atol=1e-9, rtol=0)


def test_bad_arguments():
    net = mlp([6, 5, 2], seed=6).float()
    with pytest.raises(bilevel.ConfigError) as e:
        bilevel.Estimator(net, {"name": "ep", "beta": "much"})
    assert e.value.key == "rule.beta"
    with pytest.raises(bilevel.ConfigError):
        bilevel.Estimator(net, "no_such_rule")
    with pytest.raises(TypeError):
        bilevel.Estimator(torch.nn.ReLU())
