// An independent float64 oracle for tiny fully connected energy-based networks: the free fixed point (Newton's
// method to ~1e-14) and the exact hypergradient dℓ(s*(θ), y)/dθ by the implicit-function theorem, with dense Eigen
// matrices. It shares no code with the LibTorch path: it takes plain matrices copied out of a LayeredNet and
// writes the model out again from its equations:
//
//   states s_1..s_S (S = L for squared error; S = L − 1 for cross-entropy, whose last layer is a read-out),
//   s_k = ρ(u_k),  u_k = W_{k−1} s_{k−1} + b_{k−1} + W_kᵀ s_{k+1}  (s_0 = x, no feedback into s_S),
//   ℓ = ½‖s_S − e_y‖²,  or  ℓ = −log softmax(W_{L−1} s_S + b_{L−1})_y.
//
// Header-only so that test targets need no extra sources. Use smooth ρ (tanh, sigmoid4) so the IFT applies.
#pragma once

#include <Eigen/Dense>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace ep_oracle {

using Eigen::MatrixXd;
using Eigen::VectorXd;

enum class Rho { Tanh, Sigmoid4 };
enum class Loss { SquaredError, CrossEntropy };

struct Network {
  std::vector<MatrixXd> W;  // W[l]: (n_{l+1} × n_l), l = 0..L−1
  std::vector<VectorXd> b;
  Rho rho = Rho::Tanh;
  Loss loss = Loss::SquaredError;

  int num_layers() const { return int(W.size()); }
  int num_states() const { return num_layers() - (loss == Loss::CrossEntropy ? 1 : 0); }
};

struct Gradient {
  std::vector<MatrixXd> dW;
  std::vector<VectorXd> db;
};

inline double rho(Rho r, double u) {
  return r == Rho::Tanh ? std::tanh(u) : 1.0 / (1.0 + std::exp(-4.0 * (u - 0.5)));
}
inline double drho(Rho r, double u) {
  if (r == Rho::Tanh) {
    const double t = std::tanh(u);
    return 1.0 - t * t;
  }
  const double s = 1.0 / (1.0 + std::exp(-4.0 * (u - 0.5)));
  return 4.0 * s * (1.0 - s);
}

// Offsets of each state layer in the stacked state vector.
inline std::vector<int> offsets(const Network& net) {
  std::vector<int> off = {0};
  for (int k = 1; k <= net.num_states(); ++k) off.push_back(off.back() + int(net.W[k - 1].rows()));
  return off;
}

// The stacked pre-activation u(s) = K s + c for input x.
inline VectorXd preactivation(const Network& net, const VectorXd& x, const VectorXd& s) {
  const auto off = offsets(net);
  const int S = net.num_states();
  VectorXd u(off.back());
  for (int k = 1; k <= S; ++k) {
    const int n = int(net.W[k - 1].rows());
    VectorXd below = k == 1 ? VectorXd(x) : VectorXd(s.segment(off[k - 2], off[k - 1] - off[k - 2]));
    VectorXd uk = net.W[k - 1] * below + net.b[k - 1];
    if (k < S) uk += net.W[k].transpose() * s.segment(off[k], int(net.W[k].rows()));
    u.segment(off[k - 1], n) = uk;
  }
  return u;
}

// The symmetric coupling matrix K (∂u/∂s).
inline MatrixXd coupling(const Network& net) {
  const auto off = offsets(net);
  const int S = net.num_states();
  MatrixXd K = MatrixXd::Zero(off.back(), off.back());
  for (int k = 2; k <= S; ++k) {
    const MatrixXd& W = net.W[k - 1];  // s_{k−1} → s_k
    K.block(off[k - 1], off[k - 2], W.rows(), W.cols()) = W;
    K.block(off[k - 2], off[k - 1], W.cols(), W.rows()) = W.transpose();
  }
  return K;
}

// The free fixed point s* = ρ(K s* + c) for one example: damped Picard iterations, then Newton's method on
// R(s) = s − ρ(u(s)) until ‖R‖∞ < tol. Throws when it does not converge.
inline VectorXd fixed_point(const Network& net, const VectorXd& x, double tol = 1e-13, double* residual = nullptr) {
  const auto off = offsets(net);
  const MatrixXd K = coupling(net);
  VectorXd s = VectorXd::Zero(off.back());
  auto map = [&](const VectorXd& v) {
    VectorXd u = preactivation(net, x, v);
    for (int i = 0; i < u.size(); ++i) u[i] = rho(net.rho, u[i]);
    return u;
  };
  for (int it = 0; it < 200; ++it) s = 0.5 * s + 0.5 * map(s);
  double r = (s - map(s)).lpNorm<Eigen::Infinity>();
  for (int it = 0; it < 100 && r >= tol; ++it) {
    VectorXd u = preactivation(net, x, s);
    VectorXd R = s - map(s);
    MatrixXd J = MatrixXd::Identity(s.size(), s.size());
    for (int i = 0; i < s.size(); ++i) J.row(i) -= drho(net.rho, u[i]) * K.row(i);
    s -= J.partialPivLu().solve(R);
    r = (s - map(s)).lpNorm<Eigen::Infinity>();
  }
  if (residual) *residual = r;
  if (!(r < tol)) throw std::runtime_error("ep_oracle: fixed point did not converge");
  return s;
}

inline VectorXd state(const Network& net, const VectorXd& s, int k) {
  const auto off = offsets(net);
  return s.segment(off[k - 1], off[k] - off[k - 1]);
}

inline double loss(const Network& net, const VectorXd& s, int label) {
  const VectorXd top = state(net, s, net.num_states());
  if (net.loss == Loss::SquaredError) {
    VectorXd d = top;
    d[label] -= 1.0;
    return 0.5 * d.squaredNorm();
  }
  const VectorXd o = net.W.back() * top + net.b.back();
  const double m = o.maxCoeff();
  return -(o[label] - m - std::log((o.array() - m).exp().sum()));
}

// ℓ(s*(θ), y) averaged over the rows of X.
inline double outer_loss(const Network& net, const MatrixXd& X, const std::vector<int>& labels) {
  double total = 0.0;
  for (int i = 0; i < X.rows(); ++i) total += loss(net, fixed_point(net, X.row(i).transpose()), labels[i]);
  return total / double(X.rows());
}

inline Gradient zeros_like(const Network& net) {
  Gradient g;
  for (int l = 0; l < net.num_layers(); ++l) {
    g.dW.push_back(MatrixXd::Zero(net.W[l].rows(), net.W[l].cols()));
    g.db.push_back(VectorXd::Zero(net.b[l].size()));
  }
  return g;
}

// ρ'(ρ⁻¹(s)): the slope expressed through the state (what the LibTorch path uses).
inline double drho_from_state(Rho r, double s) { return r == Rho::Tanh ? 1.0 - s * s : 4.0 * s * (1.0 - s); }

// The exact hypergradient d/dθ of the batch-mean ℓ(s*(θ), y), by the IFT with the full dense ∂F/∂θ:
//   dℓ/dθ = (∂ℓ/∂s)ᵀ (I − D K)⁻¹ D ∂u/∂θ + ∂ℓ/∂θ|_direct,   D = diag ρ'(u(s*)).
// With `at` (one stacked state per row of X), the same formula evaluated at those states instead of the fixed
// points, with D = ρ'(ρ⁻¹(s)): the linear algebra of implicit differentiation at whatever state a solver
// returned, solved densely (LU with full pivoting, fine for indefinite systems).
inline Gradient hypergradient(const Network& net, const MatrixXd& X, const std::vector<int>& labels,
                              const std::vector<VectorXd>* at = nullptr) {
  const auto off = offsets(net);
  const int S = net.num_states(), N = off.back();
  const MatrixXd K = coupling(net);
  // Parameter indexing: for each energy layer l < S, W[l] entries (row-major) then b[l].
  std::vector<int> pW(S), pb(S);
  int P = 0;
  for (int l = 0; l < S; ++l) {
    pW[l] = P;
    P += int(net.W[l].size());
    pb[l] = P;
    P += int(net.b[l].size());
  }
  Gradient g = zeros_like(net);
  for (int e = 0; e < X.rows(); ++e) {
    const VectorXd x = X.row(e).transpose();
    const VectorXd s = at ? (*at)[e] : fixed_point(net, x);
    const VectorXd u = preactivation(net, x, s);
    VectorXd D(N);
    for (int i = 0; i < N; ++i) D[i] = at ? drho_from_state(net.rho, s[i]) : drho(net.rho, u[i]);
    // ∂u/∂θ, entry by entry.
    MatrixXd dudt = MatrixXd::Zero(N, P);
    for (int l = 0; l < S; ++l) {
      const VectorXd below = l == 0 ? x : state(net, s, l);
      const VectorXd above = state(net, s, l + 1);
      for (int i = 0; i < net.W[l].rows(); ++i) {
        for (int j = 0; j < net.W[l].cols(); ++j) {
          const int p = pW[l] + i * int(net.W[l].cols()) + j;
          dudt(off[l] + i, p) += below[j];                       // u_{l+1}[i] ∋ W[l](i,j) s_l[j]
          if (l >= 1) dudt(off[l - 1] + j, p) += above[i];       // u_l[j] ∋ W[l](i,j) s_{l+1}[i]
        }
        dudt(off[l] + i, pb[l] + i) += 1.0;
      }
    }
    // ∂ℓ/∂s and the read-out's direct gradient.
    VectorXd dl = VectorXd::Zero(N);
    const VectorXd top = state(net, s, S);
    const int tn = int(top.size());
    if (net.loss == Loss::SquaredError) {
      VectorXd d = top;
      d[labels[e]] -= 1.0;
      dl.segment(off[S - 1], tn) = d;
    } else {
      const MatrixXd& Wr = net.W.back();
      VectorXd o = Wr * top + net.b.back();
      VectorXd p = (o.array() - o.maxCoeff()).exp();
      p /= p.sum();
      p[labels[e]] -= 1.0;
      dl.segment(off[S - 1], tn) = Wr.transpose() * p;
      g.dW.back() += p * top.transpose() / double(X.rows());
      g.db.back() += p / double(X.rows());
    }
    MatrixXd A = MatrixXd::Identity(N, N) - D.asDiagonal() * K;  // I − ∂F/∂s
    VectorXd v = A.transpose().fullPivLu().solve(dl);
    VectorXd dtheta = (D.asDiagonal() * dudt).transpose() * v;
    for (int l = 0; l < S; ++l) {
      for (int i = 0; i < net.W[l].rows(); ++i)
        for (int j = 0; j < net.W[l].cols(); ++j)
          g.dW[l](i, j) += dtheta[pW[l] + i * int(net.W[l].cols()) + j] / double(X.rows());
      g.db[l] += dtheta.segment(pb[l], net.b[l].size()) / double(X.rows());
    }
  }
  return g;
}

// Central finite differences of outer_loss over every parameter (a check of the oracle itself).
inline Gradient finite_difference(Network net, const MatrixXd& X, const std::vector<int>& labels, double h) {
  Gradient g = zeros_like(net);
  for (int l = 0; l < net.num_layers(); ++l) {
    for (int i = 0; i < net.W[l].size(); ++i) {
      double& w = net.W[l].data()[i];
      const double w0 = w;
      w = w0 + h;
      const double fp = outer_loss(net, X, labels);
      w = w0 - h;
      const double fm = outer_loss(net, X, labels);
      w = w0;
      g.dW[l].data()[i] = (fp - fm) / (2 * h);
    }
    for (int i = 0; i < net.b[l].size(); ++i) {
      double& w = net.b[l][i];
      const double w0 = w;
      w = w0 + h;
      const double fp = outer_loss(net, X, labels);
      w = w0 - h;
      const double fm = outer_loss(net, X, labels);
      w = w0;
      g.db[l][i] = (fp - fm) / (2 * h);
    }
  }
  return g;
}

// ‖a − b‖ / ‖b‖ over all parameters (Frobenius).
inline double relative_error(const Gradient& a, const Gradient& b) {
  double num = 0.0, den = 0.0;
  for (size_t l = 0; l < a.dW.size(); ++l) {
    num += (a.dW[l] - b.dW[l]).squaredNorm() + (a.db[l] - b.db[l]).squaredNorm();
    den += b.dW[l].squaredNorm() + b.db[l].squaredNorm();
  }
  return std::sqrt(num / den);
}

}  // namespace ep_oracle
