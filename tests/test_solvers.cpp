// Inner solvers of the energy-based rules: the layer-wise solver never increases the energy, both solvers reach
// the same fixed point (fully connected and conv + max-pool), early stopping reports residual and steps, and
// the analytic energy gradients (states and parameters, conv included) match autograd of the energy written
// out independently here.
#include <gtest/gtest.h>

#include "bilevel/energy/fixed_point_solver.h"
#include "bilevel/energy/layerwise_solver.h"
#include "oracle/ep_test_support.h"

using namespace ep_test;
using namespace bilevel;
using torch::Tensor;

namespace {

struct Setup {
  LayeredNet net;
  std::unique_ptr<Objective> obj;
  std::unique_ptr<LayeredEnergy> energy;
  EnergyBatch batch;
};

Setup setup(LayeredNet net, const std::string& loss, int64_t B, uint64_t seed) {
  Setup s{net, make_objective(loss), nullptr, {}};
  s.energy = std::make_unique<LayeredEnergy>(*net, Neuron::from_activation(net->rho()), *s.obj);
  torch::manual_seed(seed);
  auto shape = net->input_shape();
  shape.insert(shape.begin(), B);
  auto x = torch::rand(shape, torch::kFloat64);
  auto y = torch::randint(0, net->num_classes(), {B}, torch::kLong);
  s.energy->prepare(s.batch, x, y);
  return s;
}

using ep_test::max_state_diff;

}  // namespace

namespace {

// Runs `sweeps` single layer-wise sweeps from the zero state; returns how many (sweep, example) pairs raised the
// energy (when `count` is set) and the largest change of an example's energy over all of them.
struct Descent {
  int64_t increases = 0;
  double largest_change = 0;
};
Descent layerwise_descent(Setup& S, const Nudge& nudge, int sweeps, bool count,
                          LayerwiseSolver::Order order = LayerwiseSolver::Order::EvenOdd) {
  EnergyState st;
  S.energy->init_state(S.batch, st);
  LayerwiseSolver solver(RelaxKernel::Generic, order);
  Tensor e = S.energy->energy(S.batch, st, nudge);
  const Tensor e0 = e.clone();
  Descent d;
  for (int t = 0; t < sweeps; ++t) {
    solver.solve(*S.energy, S.batch, st, nudge, 1, 0.0);
    Tensor e_next = S.energy->energy(S.batch, st, nudge);
    if (count) d.increases += (e_next > e + 1e-12 * (1 + e.abs())).sum().item<int64_t>();
    e = e_next;
  }
  d.largest_change = (e - e0).max().item<double>();
  return d;
}

}  // namespace

TEST(Solvers, LayerwiseNeverIncreasesTheEnergy) {
  for (const std::string act : {"hard_sigmoid", "sigmoid4", "tanh", "hard_tanh"}) {
    for (const std::string loss : {"mse", "cross_entropy"}) {
      for (double beta : {0.0, 0.5, -0.3}) {
        auto S = setup(make_mlp(11, {13, 9, 7}, 5, act, loss, 1.5, 5), loss, 8, 9);
        // Exact block minimisation for mse; with cross_entropy the nudged top layer is a fixed-point step.
        // Both orders: each update is the same exact minimisation, whatever came before it.
        for (auto order : {LayerwiseSolver::Order::EvenOdd, LayerwiseSolver::Order::TopDown}) {
          const Descent d = layerwise_descent(S, beta == 0.0 ? Nudge::none() : Nudge::loss(beta), 40,
                                              loss == "mse" || beta == 0.0, order);
          const std::string what = act + "/" + loss + "/β=" + std::to_string(beta) +
                                   (order == LayerwiseSolver::Order::TopDown ? " top_down" : " even_odd");
          EXPECT_EQ(d.increases, 0) << what;
          EXPECT_LT(d.largest_change, -1e-3) << what;  // it does decrease
        }
      }
    }
  }
}

// With average pooling every layer-wise step is an exact block minimisation of a conv network too (with max-pooling
// the step holds the switches fixed, so it is not; layerwise_solver.h).
TEST(Solvers, LayerwiseNeverIncreasesTheEnergyOfAnAvgPoolConvNet) {
  for (const std::string act : {"hard_sigmoid", "sigmoid4"}) {
    for (double beta : {0.0, 0.5, -0.3}) {
      auto S = setup(make_conv(act, "mse", 2.0, 5, {3, 4}, 11, 2, "avg"), "mse", 6, 9);
      for (auto order : {LayerwiseSolver::Order::EvenOdd, LayerwiseSolver::Order::TopDown}) {
        const Descent d = layerwise_descent(S, beta == 0.0 ? Nudge::none() : Nudge::loss(beta), 30, true, order);
        EXPECT_EQ(d.increases, 0) << act << "/β=" << beta << " order " << int(order);
        EXPECT_LT(d.largest_change, -1e-3) << act << "/β=" << beta << " order " << int(order);
      }
    }
  }
}

TEST(Solvers, FixedPointDynamicsCanIncreaseTheEnergyButLayerwiseIsMonotone) {
  // A sanity check that the monotonicity test above is able to fail: the synchronous (Jacobi) dynamics with
  // strong weights is not a descent method.
  auto S = setup(make_mlp(11, {13, 9, 7}, 5, "hard_sigmoid", "mse", 4.0, 5), "mse", 8, 9);
  EnergyState st;
  S.energy->init_state(S.batch, st);
  FixedPointSolver solver;
  Tensor e = S.energy->energy(S.batch, st, Nudge::none());
  int64_t increases = 0;
  for (int t = 0; t < 20; ++t) {
    solver.solve(*S.energy, S.batch, st, Nudge::none(), 1, 0.0);
    Tensor e_next = S.energy->energy(S.batch, st, Nudge::none());
    increases += (e_next > e + 1e-9).sum().item<int64_t>();
    e = e_next;
  }
  EXPECT_GT(increases, 0);
}

// With weights small enough for the energy to have a single minimiser. (Conv here without pooling and with
// average pooling; see the next test for max-pooling.)
TEST(Solvers, BothSolversReachTheSameFixedPoint) {
  struct Net {
    std::string name;
    std::function<LayeredNet(const std::string&, const std::string&)> make;
  };
  std::vector<Net> nets = {
      {"mlp", [](const std::string& a, const std::string& l) { return make_mlp(11, {13, 7}, 5, a, l, 0.7, 3); }},
      {"conv", [](const std::string& a, const std::string& l) { return make_conv(a, l, 0.5, 3, {3, 4}, 11, 1); }},
      // Average pooling is linear: the energy stays convex in each layer, and odd sizes drop a row and a column.
      {"conv_avg_pool",
       [](const std::string& a, const std::string& l) { return make_conv(a, l, 0.5, 3, {3, 4}, 11, 2, "avg"); }}};
  for (const auto& n : nets) {
    for (const std::string act : {"hard_sigmoid", "sigmoid4", "tanh"}) {
      for (const std::string loss : {"mse", "cross_entropy"}) {
        for (double beta : {0.0, 0.4}) {
          auto S = setup(n.make(act, loss), loss, 7, 4);
          const Nudge nudge = beta == 0.0 ? Nudge::none() : Nudge::loss(beta);
          EnergyState a, b;
          S.energy->init_state(S.batch, a);
          S.energy->init_state(S.batch, b);
          auto ra = FixedPointSolver().solve(*S.energy, S.batch, a, nudge, 3000, 1e-13);
          auto rb = LayerwiseSolver().solve(*S.energy, S.batch, b, nudge, 3000, 1e-13);
          const std::string what = n.name + "/" + act + "/" + loss + "/β=" + std::to_string(beta);
          EXPECT_LT(ra.residual, 1e-13) << what;
          EXPECT_LT(rb.residual, 1e-13) << what;
          EXPECT_LT(max_state_diff(a, b), 1e-10) << what;
          // The top-down order: the same fixed point, in at most the even/odd sweeps (+1 for the last bits).
          EnergyState c;
          S.energy->init_state(S.batch, c);
          auto rc = LayerwiseSolver(RelaxKernel::Generic, LayerwiseSolver::Order::TopDown)
                        .solve(*S.energy, S.batch, c, nudge, 3000, 1e-13);
          EXPECT_LT(rc.residual, 1e-13) << what;
          EXPECT_LT(max_state_diff(a, c), 1e-10) << what;
          EXPECT_LE(rc.steps, ra.steps) << what;
          // The layer-wise sweeps converge in fewer sweeps than the synchronous ones.
          EXPECT_LE(rb.steps, ra.steps) << what;
          // And it is a fixed point of the energy (interior stationarity for smooth ρ).
          if (act != "hard_sigmoid") {
            for (EnergyState* st : {&a, &b}) {
              double g = 0;
              for (auto& t : S.energy->energy_grad_states(S.batch, *st, nudge))
                g = std::max(g, t.abs().max().item<double>());
              EXPECT_LT(g, 1e-9) << what;
            }
          }

        }
      }
    }
  }
}

// With max-pooling, ⟨s_{l+1}, maxpool(conv(s_l))⟩ is concave-piecewise in s_l: the energy is non-convex and has
// several equilibria (one per self-consistent set of pooling switches), so the two solvers started from zero
// may settle in different ones. They share their fixed points: each solver stays at the other's equilibrium.
// (With tanh, whose states straddle 0, pooling switches can also cycle without converging; not tested.)
TEST(Solvers, SolversShareFixedPointsWithMaxPool) {
  for (const std::string act : {"hard_sigmoid", "sigmoid4"}) {
    for (const std::string loss : {"mse", "cross_entropy"}) {
      for (double beta : {0.0, 0.4}) {
        auto S = setup(make_conv(act, loss, 0.5, 3, {3, 4}, 11), loss, 7, 4);
        const Nudge nudge = beta == 0.0 ? Nudge::none() : Nudge::loss(beta);
        const std::string what = act + "/" + loss + "/β=" + std::to_string(beta);
        for (int first = 0; first < 2; ++first) {
          auto one = make_solver(first == 0 ? "fixed_point" : "layerwise");
          auto other = make_solver(first == 0 ? "layerwise" : "fixed_point");
          EnergyState a;
          S.energy->init_state(S.batch, a);
          auto ra = one->solve(*S.energy, S.batch, a, nudge, 3000, 1e-13);
          ASSERT_LT(ra.residual, 1e-13) << what;
          EnergyState b;
          b.copy_from(a);
          auto rb = other->solve(*S.energy, S.batch, b, nudge, 50, 1e-13);
          EXPECT_LT(rb.residual, 1e-13) << what;
          EXPECT_LE(rb.steps, 2) << what;
          EXPECT_LT(max_state_diff(a, b), 1e-12) << what;
          if (act != "hard_sigmoid") {
            double g = 0;
            for (auto& t : S.energy->energy_grad_states(S.batch, a, nudge)) g = std::max(g, t.abs().max().item<double>());
            EXPECT_LT(g, 1e-9) << what;
          }
        }
      }
    }
  }
}

TEST(Solvers, EarlyStopReportsResidualAndSteps) {
  auto S = setup(make_mlp(11, {13, 7}, 5, "sigmoid4", "mse", 1.0, 3), "mse", 7, 4);
  EnergyState st;
  S.energy->init_state(S.batch, st);
  auto r = FixedPointSolver().solve(*S.energy, S.batch, st, Nudge::none(), 500, 1e-6);
  EXPECT_LT(r.residual, 1e-6);
  EXPECT_GT(r.steps, 2);
  EXPECT_LT(r.steps, 500);
  // Without tol: all steps, residual measured at the last one.
  S.energy->init_state(S.batch, st);
  auto r2 = FixedPointSolver().solve(*S.energy, S.batch, st, Nudge::none(), 4, 0.0);
  EXPECT_EQ(r2.steps, 4);
  EXPECT_GT(r2.residual, 1e-6);
}

TEST(Solvers, ClampFixesTheOutput) {
  auto S = setup(make_mlp(11, {13, 7}, 5, "hard_sigmoid", "mse", 1.0, 3), "mse", 7, 4);
  for (const std::string name : {"fixed_point", "layerwise"}) {
    auto solver = make_solver(name);
    EnergyState st;
    S.energy->init_state(S.batch, st);
    solver->solve(*S.energy, S.batch, st, Nudge::clamp(), 7, 0.0);
    EXPECT_TRUE(torch::equal(st.s.back(), S.batch.onehot));
  }
}

// The energy of a conv + pool + linear network written out with autograd, independently of LayeredEnergy.
TEST(Solvers, AnalyticEnergyGradientsMatchAutogradConv) {
  for (const std::string pooling : {"max", "avg"})
  for (const std::string loss : {"mse", "cross_entropy"}) {
    auto net = make_conv("sigmoid4", loss, 1.0, 8, {3, 2}, 10, 2, pooling);
    auto S = setup(net, loss, 3, 6);
    const int64_t K = S.energy->num_states();
    torch::manual_seed(12);
    EnergyState st;
    S.energy->init_state(S.batch, st);
    for (auto& s : st.s) s.copy_(torch::rand_like(s) * 0.9 + 0.05);  // interior states
    S.energy->refresh_pools(st);
    const double beta = 0.3;

    // Autograd energy: Σ G(s) − Σ ⟨s_{l+1}, pool(conv(s_l)) + b⟩ / ⟨s_{l+1}, W s_l + b⟩ + β ℓ, the average
    // pooling written as the mean of each window's four elements (an odd size drops the last row and column).
    std::vector<Tensor> s;
    for (auto& t : st.s) s.push_back(t.detach().clone().requires_grad_(true));
    Tensor x = S.batch.x;
    Tensor E = torch::zeros({}, torch::kFloat64);
    for (int64_t k = 1; k <= K; ++k) {
      const auto& L = net->layer(k - 1);
      Tensor in = k == 1 ? x : s[k - 2];
      Tensor z;
      if (L.kind == LayerKind::Conv && pooling == "max") {
        z = torch::max_pool2d(torch::conv2d(in, L.weight, L.bias, 1, L.padding), {L.pool, L.pool});
      } else if (L.kind == LayerKind::Conv) {
        Tensor c = torch::conv2d(in, L.weight, L.bias, 1, L.padding);
        const int64_t h = c.size(2) / 2, w = c.size(3) / 2;
        c = c.narrow(2, 0, 2 * h).narrow(3, 0, 2 * w);
        z = c.contiguous().view({c.size(0), c.size(1), h, 2, w, 2}).sum({3, 5}) / 4;
      } else {
        z = torch::matmul(in.flatten(1), L.weight.t()) + L.bias;
      }
      Tensor sk = s[k - 1];
      // sigmoid4 potential: G(s) = (s log s + (1−s) log(1−s) + 2 s) / 4
      Tensor G = (sk * sk.log() + (1 - sk) * (1 - sk).log() + 2 * sk) / 4;
      E = E + G.sum() - (sk * z.view(sk.sizes())).sum();
    }
    Tensor out = loss == "mse" ? s.back()
                               : torch::matmul(s.back().flatten(1), net->layer(K).weight.t()) + net->layer(K).bias;
    E = E + beta * S.obj->loss(out, S.batch.labels).sum();
    zero_grads(net);
    E.backward();
    std::vector<Tensor> ds, dtheta;
    for (auto& t : s) ds.push_back(t.grad().clone());
    for (int64_t l = 0; l < K; ++l) {
      dtheta.push_back(net->layer(l).weight.grad().clone());
      dtheta.push_back(net->layer(l).bias.grad().clone());
    }

    auto g = S.energy->energy_grad_states(S.batch, st, Nudge::loss(beta));
    const std::string what = pooling + "/" + loss;
    for (int64_t k = 0; k < K; ++k) EXPECT_LT(rel(g[k], ds[k]), 1e-10) << what << " state " << k;
    // ∂E/∂θ = −∂Φ/∂θ.
    zero_grads(net);
    S.energy->add_phi_grad(S.batch, st, -1.0);
    for (int64_t l = 0; l < K; ++l) {
      EXPECT_LT(rel(net->layer(l).weight.grad(), dtheta[2 * l]), 1e-10) << what << " W" << l;
      EXPECT_LT(rel(net->layer(l).bias.grad(), dtheta[2 * l + 1]), 1e-10) << what << " b" << l;
    }
    // The energy value itself.
    EXPECT_NEAR(S.energy->energy(S.batch, st, Nudge::loss(beta)).sum().item<double>(), E.item<double>(),
                1e-10 * (1 + std::abs(E.item<double>())));
  }
}

// solver.init: feedforward starts the free phase from the network's forward pass (the feedback ignored), which
// must be the forward pass computed independently here, and must not change the fixed point the solvers reach.
TEST(Solvers, FeedforwardInitIsTheForwardPassAndLeadsToTheSameFixedPoint) {
  for (int conv = 0; conv < 2; ++conv) {
    for (const std::string loss : {"mse", "cross_entropy"}) {
      auto net = conv ? make_conv("sigmoid4", loss, 0.5, 3, {3, 4}, 11) : make_mlp(11, {13, 9}, 5, "sigmoid4", loss, 0.8, 5);
      auto S = setup(net, loss, 7, 4);
      const std::string what = std::string(conv ? "conv" : "mlp") + "/" + loss;
      EnergyState ff;
      S.energy->init_state(S.batch, ff);
      S.energy->feedforward_state(S.batch, ff);
      torch::NoGradGuard no_grad;
      Tensor s = S.batch.x;  // flattened for an mlp; apply_layer flattens it anyway
      for (int64_t k = 0; k < S.energy->num_states(); ++k) {
        s = net->rho().f(net->apply_layer(size_t(k), s));
        EXPECT_LT(max_abs_diff(ff.s[size_t(k)].reshape(s.sizes()), s), 1e-12) << what << " state " << k + 1;
      }
      EnergyState zero;
      S.energy->init_state(S.batch, zero);
      FixedPointSolver solver;
      ASSERT_LT(solver.solve(*S.energy, S.batch, zero, Nudge::none(), 3000, 1e-13).residual, 1e-13) << what;
      const auto r = solver.solve(*S.energy, S.batch, ff, Nudge::none(), 3000, 1e-13);
      EXPECT_LT(r.residual, 1e-13) << what;
      EXPECT_LT(max_state_diff(zero, ff), 1e-12) << what;
    }
  }
}

// A phase may start from the conv products that the feedforward start or the previous phase's final switch refresh
// kept (EnergyState::products) instead of convolving its entry states again. That changes nothing: float32 conv
// net (states a convolution reads are channels-last), both solvers and both layer-wise orders, free then nudged
// phase, against the same phases with every kept product dropped; and a state changed in place after its product
// was kept is convolved again.
TEST(Solvers, KeptConvProductsChangeNoState) {
  for (const std::string loss : {"mse", "cross_entropy"}) {
    auto net = make_conv("sigmoid4", loss, 0.8, 7, {3, 4}, 11);
    net->to(torch::kFloat32);
    auto S = setup(net, loss, 5, 3);
    S.energy->prepare(S.batch, S.batch.x.to(torch::kFloat32).view({5, 2, 11, 11}), S.batch.labels);
    const std::vector<std::pair<std::string, std::shared_ptr<InnerSolver>>> solvers = {
        {"fixed_point", std::make_shared<FixedPointSolver>()},
        {"layerwise even_odd", std::make_shared<LayerwiseSolver>(RelaxKernel::Generic, LayerwiseSolver::Order::EvenOdd)},
        {"layerwise top_down", std::make_shared<LayerwiseSolver>(RelaxKernel::Generic, LayerwiseSolver::Order::TopDown)}};
    for (const auto& [name, solver] : solvers) {
      const std::string what = loss + " / " + name;
      EnergyState kept, fresh;
      S.energy->feedforward_state(S.batch, kept);
      ASSERT_NE(kept.product(1), nullptr) << what;  // conv layer 1 reads s_1
      EXPECT_TRUE(kept.s[0].is_contiguous(at::MemoryFormat::ChannelsLast)) << what;
      EXPECT_FALSE(kept.s[1].is_contiguous(at::MemoryFormat::ChannelsLast)) << what;  // read by a linear layer
      fresh.copy_from(kept);
      fresh.forget_products();
      solver->solve(*S.energy, S.batch, kept, Nudge::none(), 3, 0.0);
      solver->solve(*S.energy, S.batch, fresh, Nudge::none(), 3, 0.0);
      EXPECT_EQ(max_state_diff(kept, fresh), 0.0) << what << " free phase";
      EnergyState nudged_kept, nudged_fresh;
      nudged_kept.copy_from(kept);
      ASSERT_NE(nudged_kept.product(1), nullptr) << what;
      nudged_fresh.copy_from(fresh);
      nudged_fresh.forget_products();
      solver->solve(*S.energy, S.batch, nudged_kept, Nudge::loss(0.5), 1, 0.0);
      solver->solve(*S.energy, S.batch, nudged_fresh, Nudge::loss(0.5), 1, 0.0);
      EXPECT_EQ(max_state_diff(nudged_kept, nudged_fresh), 0.0) << what << " nudged phase";
      for (size_t l = 1; l < nudged_kept.pool.size(); ++l)
        if (nudged_fresh.pool[l].defined()) EXPECT_TRUE(torch::equal(nudged_kept.pool[l], nudged_fresh.pool[l])) << what;
      // Changed in place: the kept product no longer applies.
      EnergyState changed, changed_fresh;
      changed.copy_from(kept);
      changed.s[0].mul_(0.5);
      EXPECT_EQ(changed.product(1), nullptr) << what;
      changed_fresh.copy_from(changed);
      changed_fresh.forget_products();
      solver->solve(*S.energy, S.batch, changed, Nudge::none(), 2, 0.0);
      solver->solve(*S.energy, S.batch, changed_fresh, Nudge::none(), 2, 0.0);
      EXPECT_EQ(max_state_diff(changed, changed_fresh), 0.0) << what << " changed in place";
    }
  }
}
