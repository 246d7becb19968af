#include "bilevel/dist/data_parallel.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <sstream>

#include "bilevel/dist/shm_allreduce.h"
#include "bilevel/util/error.h"
#include "bilevel/util/first_line.h"

#if BILEVEL_WITH_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace bilevel {

bool gloo_available() {
#if BILEVEL_WITH_GLOO
  return true;
#else
  return false;
#endif
}

void validate_world(const ExperimentConfig& cfg, int world_size) {
  const std::string backend = cfg.get<std::string>("dist.backend");
  if (backend == "nccl")
    cfg.fail("dist.backend", "nccl is not available: this build's data parallelism is CPU-only (no CUDA build of "
                             "LibTorch with NCCL is linked); use gloo");
  if (!gloo_available())
    cfg.fail("dist.backend", "this build has no Gloo backend (LibTorch without USE_C10D_GLOO, or built without "
                             "libgloo-dev's headers), so it cannot run as one of " + std::to_string(world_size) +
                             " ranks");
  if (cfg.train.device != "cpu")
    cfg.fail("train.device", "data-parallel training runs on the CPU (gloo); cuda with several ranks needs nccl");
  if (cfg.train.batch_size % world_size != 0)
    cfg.fail("train.batch_size", std::to_string(cfg.train.batch_size) + " does not divide into " +
                                     std::to_string(world_size) + " equal per-rank batches (the world size must "
                                     "divide the batch size)");
  if (cfg.get_or<bool>("rule.random_sign", false))
    cfg.fail("rule.random_sign", "draws β's sign from the batch's labels, which differ between the ranks' shards; "
                                  "not supported with several ranks");
}

namespace {
std::string this_host() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

// LibTorch 2.x's TCPStore may use libuv, which a build without it refuses; the classic server works in every
// version. The option does not exist in 1.x: set it only where it does.
template <class Options>
auto use_classic_store(Options& o, int) -> decltype(o.useLibUV = false, void()) {
  o.useLibUV = false;
}
template <class Options>
void use_classic_store(Options&, long) {}
}  // namespace

#if BILEVEL_WITH_GLOO

struct DataParallel::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  std::chrono::milliseconds timeout{0};
  // Builds a Gloo process group (a new device and a new store prefix each time: generation 0, 1, ...).
  std::function<c10::intrusive_ptr<c10d::ProcessGroupGloo>(int generation)> connect;
  int generation = 0;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  bool gradients_over_gloo = false;  // some step's gradients did not fit the segment: keep the group
  // The gradients' path when every rank is on this host; gradients that are views of it keep it mapped.
  std::shared_ptr<ShmAllreduce> shm;
  // The small sums (metrics, stop flags) on one host: a segment of their own, so they never touch the gradients.
  std::unique_ptr<ShmAllreduce> small;

  // The process group, connected again if it was released. Every rank calls this at the same collectives, so the
  // ranks connect the same generation together.
  c10d::ProcessGroupGloo& group() {
    if (!group_) group_ = connect(generation++);
    return *group_;
  }
  // When shared memory carries every per-step and per-epoch sum, Gloo is needed only at the start (the state's
  // broadcast): release it then. Gloo's TCP device runs a thread that wakes every 10 ms (an epoll_wait timeout);
  // with every rank busy on its own core each wake-up preempts a rank, and its lockstep partner waits (~100
  // preemptions a second per rank, 20-30 us each, measured with perf's sched_switch events). The device goes with
  // the group: the options that hold it are not kept.
  void release_group_if_idle() {
    if (shm && small && !gradients_over_gloo) group_.reset();
  }

  template <class Work>
  void wait(const Work& work, const char* what) {
    try {
      work->wait(timeout);
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("distributed ") + what + " failed (another rank failed or stopped, or "
                               "dist.timeout passed): " + first_line(e.what()));
    }
  }
};

namespace {
// Room of the small-sums segment (metrics and diagnostics per epoch, stop flags); larger vectors go through Gloo.
constexpr size_t kSmallValues = 256;

// Sets up a shared-memory allreduce (`tag`: what it carries) when every rank runs on this host. Rank 0 creates the
// segment and publishes its name (or why it could not) through the store; every rank says whether it could map
// it; rank 0 announces the verdict and removes the name. Every rank ends with the same answer: a segment, or Gloo.
std::unique_ptr<ShmAllreduce> local_reduce(c10d::Store& store, const World& world, size_t capacity, double timeout,
                                           const std::string& tag) {
  auto set = [&](const std::string& k, const std::string& v) {
    store.set(k, std::vector<uint8_t>(v.begin(), v.end()));
  };
  auto get = [&](const std::string& k) {
    store.wait({k});
    const auto v = store.get(k);
    return std::string(v.begin(), v.end());
  };
  std::unique_ptr<ShmAllreduce> shm;
  std::string problem;
  if (world.rank == 0) {
    const std::string name =
        "/bilevel-dp-" + std::to_string(::getpid()) + "-" + std::to_string(world.master_port) + "-" + tag;
    try {
      shm = ShmAllreduce::create(name, 0, world.size, capacity, timeout);
      set("bilevel/shm/" + tag, name);
    } catch (const std::exception& e) {
      problem = e.what();
      set("bilevel/shm/" + tag, "!" + problem);
    }
    for (int r = 1; r < world.size; ++r) {
      const std::string said = get("bilevel/shm_mapped/" + tag + "/" + std::to_string(r));
      if (said != "ok" && problem.empty()) problem = "rank " + std::to_string(r) + ": " + said;
    }
    set("bilevel/shm_verdict/" + tag, problem.empty() ? "ok" : problem);
    if (shm) shm->unlink();
  } else {
    const std::string name = get("bilevel/shm/" + tag);
    std::string said = "ok";
    if (name.rfind('!', 0) == 0)
      said = "no segment";
    else
      try {
        shm = ShmAllreduce::open(name, world.rank, world.size, capacity, timeout);
      } catch (const std::exception& e) {
        said = e.what();
      }
    set("bilevel/shm_mapped/" + tag + "/" + std::to_string(world.rank), said);
    const std::string verdict = get("bilevel/shm_verdict/" + tag);
    if (verdict != "ok") problem = verdict;
  }
  if (!problem.empty()) {
    if (world.rank == 0)
      spdlog::warn("data parallelism: the {} go through Gloo instead of shared memory ({})", tag, problem);
    return nullptr;
  }
  return shm;
}
}  // namespace

std::shared_ptr<DataParallel> DataParallel::join(const World& world, const ExperimentConfig& cfg,
                                                 const std::vector<torch::Tensor>& params) {
  std::shared_ptr<DataParallel> dp(new DataParallel());
  dp->world_ = world;
  dp->impl_ = std::make_unique<Impl>();
  Impl& m = *dp->impl_;
  m.timeout = std::chrono::milliseconds(int64_t(cfg.get<double>("dist.timeout") * 1000));
  const std::string master = world.master_addr + ":" + std::to_string(world.master_port);
  const std::string seconds = std::to_string(int64_t(cfg.get<double>("dist.timeout"))) + " s (dist.timeout)";

  c10d::TCPStoreOptions opts;
  opts.port = uint16_t(world.master_port);
  opts.isServer = world.rank == 0;
  opts.numWorkers = size_t(world.size);
  opts.waitWorkers = false;
  opts.timeout = m.timeout;
  use_classic_store(opts, 0);
  try {
    m.store = c10::make_intrusive<c10d::TCPStore>(world.master_addr, opts);
  } catch (const std::exception& e) {
    throw UserError(std::string(world.rank == 0 ? "rank 0 cannot host" : "rank " + std::to_string(world.rank) +
                                                                              " cannot reach") +
                    " the rendezvous at MASTER_ADDR:MASTER_PORT = " + master + " within " + seconds + ": " +
                    first_line(e.what()));
  }

  // Every rank announces its config hash and host; rank 0 checks them and announces the verdict.
  const std::string key = "bilevel/rank/" + std::to_string(world.rank);
  const std::string mine = cfg.hash() + " " + this_host();
  m.store->set(key, std::vector<uint8_t>(mine.begin(), mine.end()));
  auto get = [&](const std::string& k) {
    const auto v = m.store->get(k);
    return std::string(v.begin(), v.end());
  };
  std::vector<std::string> announced(size_t(world.size));
  if (world.rank == 0) {
    std::string verdict = "ok";
    std::vector<std::string> keys;
    for (int r = 0; r < world.size; ++r) keys.push_back("bilevel/rank/" + std::to_string(r));
    try {
      m.store->wait(keys, m.timeout);
    } catch (const std::exception&) {
      std::string missing;
      for (int r = 1; r < world.size; ++r)
        if (!m.store->check({keys[size_t(r)]})) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      throw UserError("rank(s) " + missing + " of " + std::to_string(world.size) + " did not join the rendezvous at " +
                      master + " within " + seconds);
    }
    for (int r = 0; r < world.size; ++r) announced[size_t(r)] = get(keys[size_t(r)]);
    for (int r = 1; r < world.size && verdict == "ok"; ++r) {
      const std::string hash = announced[size_t(r)].substr(0, announced[size_t(r)].find(' '));
      if (hash != cfg.hash())
        verdict = "rank " + std::to_string(r) + " has a different config (hash " + hash + ") than rank 0 (hash " +
                  cfg.hash() + "); every rank must get the same config file and overrides";
    }
    m.store->set("bilevel/verdict", std::vector<uint8_t>(verdict.begin(), verdict.end()));
    if (verdict != "ok") {
      // Rank 0 hosts the store: leaving at once would close it before the others have read the verdict (LibTorch
      // 2.x's store then fails their read), so wait a little for each to say it has.
      std::vector<std::string> seen;
      for (int r = 1; r < world.size; ++r) seen.push_back("bilevel/verdict_seen/" + std::to_string(r));
      try {
        m.store->wait(seen, std::min<std::chrono::milliseconds>(m.timeout, std::chrono::seconds(10)));
      } catch (const std::exception&) {
      }
      throw UserError(verdict);
    }
  } else {
    std::string verdict;
    try {
      m.store->wait({"bilevel/verdict"}, m.timeout);
      verdict = get("bilevel/verdict");
    } catch (const std::exception& e) {
      throw UserError("rank " + std::to_string(world.rank) + ": no word from rank 0 at " + master + " within " +
                      seconds + ": " + first_line(e.what()));
    }
    if (verdict != "ok") {
      const std::string seen = "1";
      try {
        m.store->set("bilevel/verdict_seen/" + std::to_string(world.rank), std::vector<uint8_t>(seen.begin(), seen.end()));
      } catch (const std::exception&) {
      }
      throw UserError(verdict);
    }
    for (int r = 0; r < world.size; ++r) announced[size_t(r)] = get("bilevel/rank/" + std::to_string(r));
  }
  for (const auto& a : announced) dp->hosts_.push_back(a.substr(a.find(' ') + 1));

  m.connect = [store = m.store, timeout = m.timeout, world](int generation) {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const bool loopback = world.master_addr == "localhost" || world.master_addr.rfind("127.", 0) == 0;
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (loopback)
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    options->threads = 1;
    try {
      return c10::make_intrusive<c10d::ProcessGroupGloo>(
          c10::make_intrusive<c10d::PrefixStore>(generation == 0 ? "gloo" : "gloo" + std::to_string(generation),
                                                 store),
          world.rank, world.size, options);
    } catch (const std::exception& e) {
      throw UserError("rank " + std::to_string(world.rank) + ": cannot connect the Gloo process group: " +
                      first_line(e.what()));
    }
  };
  m.group();  // connect now: an unreachable peer fails here, before anything is written

  bool one_host = true;
  for (const auto& h : dp->hosts_) one_host = one_host && h == dp->hosts_.front();
  if (one_host && cfg.get<std::string>("dist.backend") == "auto" && !params.empty()) {
    size_t elements = 2, elem_size = 4;  // the two stop flags ride at the end
    for (const auto& p : params) {
      elements += size_t(p.numel());
      elem_size = std::max(elem_size, size_t(p.element_size()));
    }
    m.shm = local_reduce(*m.store, world, elements * elem_size, cfg.get<double>("dist.timeout"), "gradients");
    if (m.shm) m.small = local_reduce(*m.store, world, kSmallValues * sizeof(double), cfg.get<double>("dist.timeout"),
                                      "metrics");
  }
  return dp;
}

DataParallel::~DataParallel() = default;

std::string DataParallel::gradient_transport() const { return impl_->shm ? "shm" : "gloo"; }

namespace {
// The stop flags as the two numbers that travel with a sum (OR over the ranks = a sum > 0), and back.
std::array<double, 2> flag_values(unsigned flags) {
  return {flags & kStopInterrupt ? 1.0 : 0.0, flags & kStopPreempt ? 1.0 : 0.0};
}
unsigned flags_of(double interrupt, double preempt) {
  return (interrupt > 0 ? kStopInterrupt : 0u) | (preempt > 0 ? kStopPreempt : 0u);
}

// The shared-memory path of average_gradients: every gradient comes to live in this rank's slot and is averaged
// there in place. After the first step the backward pass accumulates straight into the slot (LibTorch 1.x's
// zero_grad keeps the tensors; 2.x's frees them, and the copy below runs each step). `total` counts the gradients'
// elements and the two flags that follow them. Returns the agreed flags.
template <class T>
unsigned shm_average(const std::shared_ptr<ShmAllreduce>& shm, const std::vector<torch::Tensor>& params,
                     int64_t total, unsigned stop_flags) {
  constexpr auto dtype = c10::CppTypeToScalarType<T>::value;
  const auto options = torch::TensorOptions().dtype(dtype);
  T* const slot = static_cast<T*>(shm->slot());
  int64_t offset = 0;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    T* const at = slot + offset;
    const torch::Tensor& g = p.grad();
    if (g.data_ptr() != at || !g.is_contiguous() || g.scalar_type() != dtype) {
      // Its own tensor over this part of the slot (not a view: zero_grad detaches gradients in place).
      torch::Tensor mine = torch::from_blob(at, p.sizes(), [keep = shm](void*) {}, options);
      mine.copy_(g);
      p.mutable_grad() = mine;
    }
    offset += p.numel();
  }
  T* const tail = slot + (total - 2);
  const auto f = flag_values(stop_flags);
  tail[0] = T(f[0]), tail[1] = T(f[1]);
  try {
    shm->allreduce_mean(size_t(total), sizeof(T));
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("distributed gradient allreduce failed: ") + e.what());
  }
  return flags_of(double(tail[0]), double(tail[1]));
}
}  // namespace

unsigned DataParallel::average_gradients(const std::vector<torch::Tensor>& params, unsigned stop_flags) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  const auto dtype = grads.empty() ? torch::kFloat32 : grads.front().scalar_type();
  int64_t total = 2;
  for (const auto& g : grads) total += g.numel();
  if (impl_->shm && size_t(total) * c10::elementSize(dtype) <= impl_->shm->capacity()) {
    if (dtype == torch::kFloat32) return agreed_ = shm_average<float>(impl_->shm, params, total, stop_flags);
    if (dtype == torch::kFloat64) return agreed_ = shm_average<double>(impl_->shm, params, total, stop_flags);
  }
  std::vector<torch::Tensor> pieces;
  for (const auto& g : grads) pieces.push_back(g.reshape({-1}).to(dtype));
  const auto f = flag_values(stop_flags);
  pieces.push_back(torch::tensor({f[0], f[1]}, torch::TensorOptions().dtype(dtype)));
  std::vector<torch::Tensor> flat{torch::cat(pieces)};
  impl_->gradients_over_gloo = true;
  impl_->wait(impl_->group().allreduce(flat), "gradient allreduce");
  // Divide after the wait: the buffer holds the sum only once the collective is complete.
  torch::Tensor sum = flat[0];
  const int64_t n = sum.numel();
  const auto flags = sum.narrow(0, n - 2, 2).to(torch::kFloat64);
  sum.narrow(0, 0, n - 2).div_(double(size()));
  int64_t offset = 0;
  for (auto& g : grads) {
    g.copy_(sum.narrow(0, offset, g.numel()).view_as(g));
    offset += g.numel();
  }
  agreed_ = flags_of(flags[0].item<double>(), flags[1].item<double>());
  return agreed_;
}

unsigned DataParallel::agree(unsigned stop_flags) {
  const auto f = flag_values(stop_flags);
  std::vector<double> v{f[0], f[1]};
  allreduce_sum(v);
  agreed_ = flags_of(v[0], v[1]);
  return agreed_;
}

void DataParallel::allreduce_sum(std::vector<double>& values) {
  if (values.empty()) return;
  if (impl_->small && values.size() <= kSmallValues) {
    auto* slot = static_cast<double*>(impl_->small->slot());
    std::copy(values.begin(), values.end(), slot);
    try {
      impl_->small->allreduce_sum(values.size(), sizeof(double));
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("distributed allreduce failed: ") + e.what());
    }
    std::copy(slot, slot + values.size(), values.begin());
    return;
  }
  std::vector<torch::Tensor> t{torch::tensor(values, torch::kFloat64)};
  impl_->wait(impl_->group().allreduce(t), "allreduce");
  const auto out = t[0].contiguous();
  for (size_t i = 0; i < values.size(); ++i) values[i] = out.data_ptr<double>()[i];
  impl_->release_group_if_idle();
}

void DataParallel::broadcast_bytes(std::string& bytes) {
  std::vector<torch::Tensor> size{torch::tensor({int64_t(bytes.size())}, torch::kInt64)};
  impl_->wait(impl_->group().broadcast(size), "broadcast");
  const int64_t n = size[0].item<int64_t>();
  std::vector<torch::Tensor> data{rank() == 0 ? torch::from_blob(bytes.data(), {n}, torch::kUInt8).clone()
                                              : torch::empty({n}, torch::kUInt8)};
  impl_->wait(impl_->group().broadcast(data), "broadcast");
  bytes.assign(reinterpret_cast<const char*>(data[0].data_ptr<uint8_t>()), size_t(n));
  impl_->release_group_if_idle();
}

#else  // no Gloo in this build

struct DataParallel::Impl {};

std::shared_ptr<DataParallel> DataParallel::join(const World& world, const ExperimentConfig& cfg,
                                                 const std::vector<torch::Tensor>&) {
  throw UserError("this bilevel was built without distributed training (LibTorch without Gloo, or without "
                  "libgloo-dev's headers); it cannot run as rank " + std::to_string(world.rank) + " of " +
                  std::to_string(world.size));
}
DataParallel::~DataParallel() = default;
std::string DataParallel::gradient_transport() const { return "none"; }
unsigned DataParallel::average_gradients(const std::vector<torch::Tensor>&, unsigned f) { return f; }
unsigned DataParallel::agree(unsigned f) { return f; }
void DataParallel::allreduce_sum(std::vector<double>&) {}
void DataParallel::broadcast_bytes(std::string&) {}

#endif

}  // namespace bilevel
