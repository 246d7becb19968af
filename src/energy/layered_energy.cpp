#include "bilevel/energy/layered_energy.h"

#include <ATen/ATen.h>

#include <stdexcept>

#include "bilevel/nn/linear.h"

namespace bilevel {

using torch::Tensor;

namespace {

bool same_shape(const Tensor& t, const std::vector<int64_t>& shape, const Tensor& like,
                at::MemoryFormat format = at::MemoryFormat::Contiguous) {
  return t.defined() && t.sizes().vec() == shape && t.scalar_type() == like.scalar_type() &&
         t.device() == like.device() && t.is_contiguous(format);
}

}  // namespace


void EnergyState::copy_from(const EnergyState& other) {
  const size_t n = other.s.size();
  if (s.size() != n) s.assign(n, Tensor()), scratch.assign(n, Tensor());
  for (size_t i = 0; i < n; ++i) {
    const at::MemoryFormat format = other.s[i].suggest_memory_format();
    if (!same_shape(s[i], other.s[i].sizes().vec(), other.s[i], format)) {
      s[i] = other.s[i].clone();
      scratch[i] = torch::empty_like(other.s[i], format);
    } else {
      s[i].copy_(other.s[i]);
    }
  }
  pool.assign(other.pool.size(), Tensor());
  for (size_t l = 0; l < other.pool.size(); ++l)
    if (other.pool[l].defined()) pool[l] = other.pool[l].clone();
  size = other.size;
  // A product is never written in place, so the copy shares it; it is valid for this state's copy of s_l.
  forget_products();
  for (size_t l = 1; l < other.products.size() && l - 1 < n; ++l)
    if (const Tensor* p = other.product(l)) keep_product(l, *p);
}

const Tensor* EnergyState::product(size_t l) const {
  if (l == 0 || l >= products.size() || !products[l].value.defined() || l - 1 >= s.size()) return nullptr;
  const Product& p = products[l];
  const Tensor& in = s[l - 1];
  return p.input == in.unsafeGetTensorImpl() && p.version == int64_t(in._version()) ? &p.value : nullptr;
}

void EnergyState::keep_product(size_t l, Tensor value) {
  if (l == 0 || l - 1 >= s.size()) return;
  if (products.size() <= l) products.resize(l + 1);
  const Tensor& in = s[l - 1];
  products[l] = Product{std::move(value), in.unsafeGetTensorImpl(), int64_t(in._version())};
}

LayeredEnergy::LayeredEnergy(const LayeredNetImpl& net, const Neuron& neuron, const Objective& objective)
    : maps_(net), net_(net), neuron_(neuron), objective_(objective), output_is_state_(objective.activate_output()) {
  for (size_t l = 0; l < net.num_layers(); ++l) layers_.push_back(&net.layer(l));
  if (output_is_state_ && objective.name() != "mse")
    throw std::invalid_argument("energy-based rules with state outputs need train.loss: mse");
  num_states_ = int64_t(layers_.size()) - (output_is_state_ ? 0 : 1);
  if (num_states_ < 1)
    throw std::invalid_argument(
        "with train.loss: cross_entropy the last layer is a read-out, so the network needs at least one hidden "
        "layer to have a state");
  if (!output_is_state_ && layers_.back()->kind != LayerKind::Linear)
    throw std::invalid_argument("the cross_entropy read-out layer must be fully connected");
  for (int64_t l = 1; l < num_states_; ++l)
    if (layers_[l]->kind == LayerKind::Conv) conv_after_input_ = true;
}

std::vector<int64_t> LayeredEnergy::state_shape(int64_t k, int64_t batch) const {
  std::vector<int64_t> shape = {batch};
  for (auto d : layers_[k - 1]->out_shape) shape.push_back(d);
  return shape;
}

at::MemoryFormat LayeredEnergy::state_format(int64_t k, const torch::TensorOptions& options) const {
  const bool conv_reads_it = size_t(k) < layers_.size() && layers_[k]->kind == LayerKind::Conv;
  return conv_reads_it ? LayerMaps::conv_format(options) : at::MemoryFormat::Contiguous;
}

void LayeredEnergy::prepare(EnergyBatch& batch, const Tensor& x, const Tensor& y) const {
  torch::NoGradGuard no_grad;
  const Tensor& w0 = layers_[0]->weight;
  batch.x = x.to(w0.device(), w0.scalar_type());
  if (layers_[0]->kind == LayerKind::Linear) batch.x = LayerMaps::flat(batch.x);
  batch.size = batch.x.size(0);
  const double a = neuron_.scale(), c = neuron_.shift();
  batch.labels = y;
  if (y.defined()) {
    const int64_t classes = layers_.back()->out_shape[0];
    batch.labels = y.to(w0.device(), torch::kLong);
    batch.onehot = torch::zeros({batch.size, classes}, w0.options()).scatter_(1, batch.labels.view({-1, 1}), 1.0);
  } else {
    batch.onehot = Tensor();
  }
  batch.vbias.assign(layers_.size(), Tensor());
  batch.wt.assign(layers_.size(), Tensor());
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = *layers_[l];
    if (L.kind == LayerKind::Linear) batch.wt[l] = L.weight.t();
    if (int64_t(l) < num_states_) batch.vbias[l] = LayerMaps::bias_view(L) * a + c;
  }
  const auto shape = state_shape(1, batch.size);
  const at::MemoryFormat format = state_format(1, w0.options());
  if (!same_shape(batch.drive1, shape, w0, format))
    batch.drive1 = torch::empty(shape, w0.options().memory_format(format));
  batch.pool0 = Tensor();
  maps_.forward_into(0, batch.x, batch.vbias[0], a, batch.drive1, &batch.pool0);
}

void LayeredEnergy::init_state(const EnergyBatch& batch, EnergyState& st) const {
  allocate_state(batch, st);
  for (auto& s : st.s) s.zero_();
  refresh_pools(st);
}

void LayeredEnergy::allocate_state(const EnergyBatch& batch, EnergyState& st) const {
  const Tensor& like = layers_[0]->weight;
  st.s.resize(num_states_);
  st.scratch.resize(num_states_);
  for (int64_t k = 1; k <= num_states_; ++k) {
    const auto shape = state_shape(k, batch.size);
    const at::MemoryFormat format = state_format(k, like.options());
    if (!same_shape(st.s[k - 1], shape, like, format)) {
      st.s[k - 1] = torch::empty(shape, like.options().memory_format(format));
      st.scratch[k - 1] = torch::empty(shape, like.options().memory_format(format));
    }
  }
  st.pool.assign(layers_.size(), Tensor());
  st.forget_products();
  st.size = batch.size;
}

void LayeredEnergy::feedforward_state(const EnergyBatch& batch, EnergyState& st) const {
  torch::NoGradGuard no_grad;
  allocate_state(batch, st);
  for (int64_t k = 1; k <= num_states_; ++k) {
    Tensor& out = st.s[k - 1];
    if (k == 1) out.copy_(batch.drive1);
    else forward_drive(batch, st, k, out);  // its switches too, and its product for the first sweep
    neuron_.finish_(out);
  }
}

void LayeredEnergy::refresh_pools(EnergyState& st) const {
  if (!conv_after_input_) return;
  torch::NoGradGuard no_grad;
  if (st.pool.size() != layers_.size()) st.pool.resize(layers_.size());
  for (int64_t l = 1; l < num_states_; ++l) {
    const Layer& L = *layers_[l];
    if (!LayerMaps::has_switches(L)) continue;
    st.keep_product(size_t(l), LayerMaps::pool(L, at::conv2d(LayerMaps::conv_input(st.s[l - 1]), L.weight, {}, 1,
                                                             L.padding),
                                               &st.pool[l]));
  }
}





const Tensor& LayeredEnergy::layer_input(const EnergyBatch& batch, const EnergyState& st, size_t l) const {
  return l == 0 ? batch.x : st.s[l - 1];
}

const Tensor& LayeredEnergy::layer_pool(const EnergyBatch& batch, const EnergyState& st, size_t l) const {
  return l == 0 ? batch.pool0 : st.pool[l];
}

// ---------------------------------------------------------------- relaxation building blocks

void LayeredEnergy::forward_drive(const EnergyBatch& batch, EnergyState& st, int64_t k, Tensor& out) const {
  const double a = neuron_.scale();
  if (const Tensor* kept = st.product(size_t(k - 1))) {
    at::add_out(out, batch.vbias[k - 1], *kept, a);  // st.pool[k − 1] is that product's
    return;
  }
  Tensor product;
  maps_.forward_into(k - 1, st.s[k - 2], batch.vbias[k - 1], a, out, &st.pool[k - 1], &product);
  if (product.defined()) st.keep_product(size_t(k - 1), std::move(product));
}

void LayeredEnergy::drive_into(const EnergyBatch& batch, EnergyState& st, int64_t k, Tensor& out) const {
  const double a = neuron_.scale();
  const bool has_feedback = k < num_states_;
  if (k == 1) {
    if (has_feedback && layers_[1]->kind == LayerKind::Linear) {
      Tensor o = LayerMaps::flat(out);
      at::addmm_out(o, LayerMaps::flat(batch.drive1), LayerMaps::flat(st.s[1]), layers_[1]->weight, 1.0, a);
      return;
    }
    out.copy_(batch.drive1);
  } else {
    forward_drive(batch, st, k, out);
  }
  if (has_feedback) maps_.feedback_add(k, st.s[k], st.pool[k], a, out);
}

void LayeredEnergy::add_nudge(const EnergyBatch& batch, const EnergyState& st, const Nudge& nudge,
                              Tensor& out) const {
  if (nudge.kind != Nudge::Kind::Loss || nudge.beta == 0.0) return;
  const double ab = neuron_.scale() * nudge.beta;
  const Tensor& top = st.s[num_states_ - 1];
  if (output_is_state_) {
    out.add_(batch.onehot, ab).add_(top, -ab);
    return;
  }
  const Layer& R = *layers_.back();
  Tensor logits = at::addmm(R.bias, LayerMaps::flat(top), R.weight.t());
  Tensor o = LayerMaps::flat(out);
  o.addmm_(objective_.grad(logits, batch.labels), R.weight, 1.0, -ab);
}

// ---------------------------------------------------------------- gradients

void LayeredEnergy::add_phi_grad(const EnergyBatch& batch, const EnergyState& st, double coeff) const {
  torch::NoGradGuard no_grad;
  for (int64_t l = 0; l < num_states_; ++l) {
    const Layer& L = *layers_[l];
    Tensor& gb = grad_buffer(L.bias);
    maps_.param_grad_add(l, st.s[l], layer_input(batch, st, l), layer_pool(batch, st, l), coeff, grad_buffer(L.weight),
                   &gb);
  }
}

void LayeredEnergy::add_phi_grad_diff(const EnergyBatch& batch, const EnergyState& a, const EnergyState& b,
                                      double coeff) const {
  torch::NoGradGuard no_grad;
  for (int64_t l = 0; l < num_states_; ++l) {
    const Layer& L = *layers_[l];
    Tensor& gW = grad_buffer(L.weight);
    Tensor& gb = grad_buffer(L.bias);
    if (l == 0) {
      // ⟨s_1, A_0 x⟩ is linear in s_1 and x is shared: one matmul on the difference.
      maps_.param_grad_add(0, a.s[0] - b.s[0], batch.x, batch.pool0, coeff, gW, &gb);
    } else {
      maps_.param_grad_add(l, a.s[l], a.s[l - 1], a.pool[l], coeff, gW, &gb);
      maps_.param_grad_add(l, b.s[l], b.s[l - 1], b.pool[l], -coeff, gW, &gb);
    }
  }
}

void LayeredEnergy::add_readout_grad(const EnergyBatch& batch, const EnergyState& st, double coeff) const {
  if (output_is_state_) return;
  torch::NoGradGuard no_grad;
  const size_t r = layers_.size() - 1;
  const Layer& R = *layers_[r];
  Tensor g = objective_.grad(output(batch, st), batch.labels);
  Tensor& gb = grad_buffer(R.bias);
  maps_.param_grad_add(r, g, st.s[num_states_ - 1], Tensor(), coeff, grad_buffer(R.weight), &gb);
}

// ---------------------------------------------------------------- analysis

Tensor LayeredEnergy::output(const EnergyBatch& batch, const EnergyState& st) const {
  const Tensor& top = st.s[num_states_ - 1];
  if (output_is_state_) return top;
  const Layer& R = *layers_.back();
  return at::addmm(R.bias, LayerMaps::flat(top), R.weight.t());
}

Tensor LayeredEnergy::energy(const EnergyBatch& batch, const EnergyState& st, const Nudge& nudge) const {
  torch::NoGradGuard no_grad;
  Tensor e = torch::zeros({batch.size}, batch.x.options());
  for (int64_t k = 1; k <= num_states_; ++k) {
    const size_t l = k - 1;
    Tensor z = torch::empty_like(st.s[l]);
    Tensor pool;
    maps_.forward_into(l, layer_input(batch, st, l), LayerMaps::bias_view(*layers_[l]), 1.0, z, &pool);
    e += neuron_.potential(st.s[l]) - (st.s[l] * z).flatten(1).sum(1);
  }
  if (nudge.kind == Nudge::Kind::Loss && nudge.beta != 0.0)
    e += nudge.beta * objective_.loss(output(batch, st), batch.labels);
  return e;
}

Tensor LayeredEnergy::total_input(const EnergyBatch& batch, const EnergyState& st, int64_t k) const {
  torch::NoGradGuard no_grad;
  const size_t l = k - 1;
  Tensor u = torch::empty_like(st.s[l]);
  Tensor pool;
  maps_.forward_into(l, layer_input(batch, st, l), LayerMaps::bias_view(*layers_[l]), 1.0, u, &pool);
  if (k < num_states_) {
    Tensor pk;
    const Layer& L = *layers_[k];
    if (LayerMaps::has_switches(L)) LayerMaps::pool(L, at::conv2d(st.s[l], L.weight, {}, 1, L.padding), &pk);
    maps_.feedback_add(k, st.s[k], pk, 1.0, u);
  }
  return u;
}

std::vector<Tensor> LayeredEnergy::energy_grad_states(const EnergyBatch& batch, const EnergyState& st,
                                                      const Nudge& nudge) const {
  torch::NoGradGuard no_grad;
  std::vector<Tensor> g;
  for (int64_t k = 1; k <= num_states_; ++k) g.push_back(neuron_.inverse(st.s[k - 1]) - total_input(batch, st, k));
  if (nudge.kind == Nudge::Kind::Loss && nudge.beta != 0.0) {
    Tensor& top = g.back();
    Tensor d = objective_.grad(output(batch, st), batch.labels);
    if (output_is_state_) {
      top.add_(d, nudge.beta);
    } else {
      Tensor o = LayerMaps::flat(top);
      o.addmm_(d, layers_.back()->weight, 1.0, nudge.beta);
    }
  }
  return g;
}

// ---------------------------------------------------------------- autograd dynamics (BPTT)

Tensor LayeredEnergy::input_drive_autograd(const Tensor& x) const {
  const Layer& L = *layers_[0];
  Tensor xin = x.to(L.weight.device(), L.weight.scalar_type());
  if (L.kind == LayerKind::Linear) return linear(xin, L.weight, L.bias);
  return LayerMaps::pool(L, torch::conv2d(xin, L.weight, L.bias, 1, L.padding), nullptr);
}

std::vector<Tensor> LayeredEnergy::step_autograd(const Tensor& drive1, const std::vector<Tensor>& s_in,
                                                 bool gauss_seidel) const {
  std::vector<Tensor> s = s_in;
  const int64_t S = num_states_;
  // Layer l's map at input s_l (l ≥ 1), keeping the switches for the adjoint.
  auto forward = [&](int64_t l, const Tensor& in, Tensor* pool) {
    const Layer& L = *layers_[l];
    if (L.kind == LayerKind::Linear) return linear(in, L.weight, L.bias);
    return LayerMaps::pool(L, torch::conv2d(in, L.weight, L.bias, 1, L.padding), pool);
  };
  auto adjoint = [&](int64_t l, const Tensor& g, const Tensor& pool, const Tensor& like) {
    const Layer& L = *layers_[l];
    if (L.kind == LayerKind::Linear) return LayerMaps::flat(g).mm(L.weight).view(like.sizes());
    const Tensor up = LayerMaps::unpool(L, g, pool, LayerMaps::conv_out_hw(L, like));
    return torch::conv_transpose2d(up, L.weight, {}, 1, L.padding);
  };
  auto update = [&](const std::vector<int64_t>& ks, const std::vector<Tensor>& cur) {
    std::vector<Tensor> next = cur;
    std::vector<Tensor> pools(layers_.size());
    for (int64_t k : ks) {
      Tensor u = k == 1 ? drive1 : forward(k - 1, cur[k - 2], &pools[k - 1]);
      if (k < S) {
        if (LayerMaps::has_switches(*layers_[k])) forward(k, cur[k - 1], &pools[k]);
        u = u + adjoint(k, cur[k], pools[k], cur[k - 1]);
      }
      next[k - 1] = neuron_.rho(u.view(cur[k - 1].sizes()));
    }
    return next;
  };
  if (!gauss_seidel) {
    std::vector<int64_t> all;
    for (int64_t k = 1; k <= S; ++k) all.push_back(k);
    return update(all, s);
  }
  std::vector<int64_t> even, odd;
  for (int64_t k = 1; k <= S; ++k) (k % 2 == 0 ? even : odd).push_back(k);
  s = update(even, s);
  return update(odd, s);
}

Tensor LayeredEnergy::output_autograd(const std::vector<Tensor>& s) const {
  const Tensor& top = s[num_states_ - 1];
  if (output_is_state_) return top;
  const Layer& R = *layers_.back();
  return torch::addmm(R.bias, LayerMaps::flat(top), R.weight.t());
}

}  // namespace bilevel
