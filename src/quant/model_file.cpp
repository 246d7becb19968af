#include "bilevel/quant/model_file.h"

#include <yaml-cpp/yaml.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "bilevel/util/atomic_file.h"
#include "bilevel/util/error.h"

namespace bilevel {
namespace {

constexpr char kMagic[8] = {'B', 'L', 'V', 'Q', 'M', 'D', 'L', '1'};
constexpr size_t kAlign = 64;

size_t aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

template <class T>
YAML::Node blob(std::string& payload, const std::vector<T>& v) {
  payload.resize(aligned(payload.size()), '\0');
  YAML::Node n;
  n["offset"] = payload.size();
  n["count"] = v.size();
  payload.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  return n;
}

template <class T>
std::vector<T> read_blob(const std::string& payload, const YAML::Node& n, const std::string& what,
                         const std::string& file) {
  if (!n || !n["offset"] || !n["count"]) throw UserError(file + ": header lacks " + what);
  const size_t off = n["offset"].as<size_t>(), count = n["count"].as<size_t>();
  if (off > payload.size() || count > (payload.size() - off) / sizeof(T))
    throw UserError(file + ": " + what + " lies outside the file (truncated?)");
  std::vector<T> v(count);
  if (count) std::memcpy(v.data(), payload.data() + off, count * sizeof(T));
  return v;
}

}  // namespace

int64_t PackedWeights::row_length() const {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}
int64_t PackedWeights::row_words() const { return (row_length() * bits + 63) / 64; }

int32_t PackedWeights::code(int64_t row, int64_t i) const {
  const uint64_t* w = words.data() + row * row_words();
  const int64_t bit = i * bits;
  uint64_t v = w[bit / 64] >> (bit % 64);
  if (bit % 64 + bits > 64) v |= w[bit / 64 + 1] << (64 - bit % 64);
  v &= (uint64_t(1) << bits) - 1;
  if (encoding == "binary") return v ? 1 : -1;
  return int32_t(v) + int32_t(code_min);
}

void PackedWeights::pack(const std::vector<float>& codes) {
  const int64_t R = rows(), n = row_length(), W = row_words();
  words.assign(size_t(R * W), 0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const float q = codes[size_t(r * n + i)];
      const uint64_t v = encoding == "binary" ? (q > 0 ? 1u : 0u) : uint64_t(int64_t(q) - int64_t(code_min));
      const int64_t bit = i * bits;
      uint64_t* w = words.data() + r * W;
      w[bit / 64] |= v << (bit % 64);
      if (bit % 64 + bits > 64) w[bit / 64 + 1] |= v >> (64 - bit % 64);
    }
}

bool ExportedActivation::quantizes(size_t layer) const {
  if (quantizer == "none") return false;
  for (int64_t l : full_precision)
    if (size_t(l) == layer) return false;
  return true;
}

void write_exported_model(const std::filesystem::path& path, const ExportedModel& m) {
  std::string payload;
  YAML::Node h;
  h["format"] = "bilevel quantized model";
  h["version"] = 1;
  h["created"] = m.created;
  h["source_run"] = m.source_run;
  h["checkpoint"] = m.checkpoint;
  h["config_hash"] = m.config_hash;
  h["git_commit"] = m.git_commit;
  h["input"]["shape"] = m.input_shape;
  h["input"]["step"] = m.input_step;
  h["num_classes"] = m.num_classes;
  h["activate_output"] = m.activate_output;
  const auto& a = m.activation;
  h["activation"]["rho"] = a.rho;
  h["activation"]["quantizer"] = a.quantizer;
  h["activation"]["bits"] = a.bits;
  h["activation"]["code_min"] = a.code_min;
  h["activation"]["code_max"] = a.code_max;
  h["activation"]["offset"] = a.offset;
  h["activation"]["steps"] = blob(payload, a.steps);
  h["activation"]["full_precision"] = YAML::Node(YAML::NodeType::Sequence);
  for (int64_t l : a.full_precision) h["activation"]["full_precision"].push_back(l);
  for (const auto& L : m.layers) {
    YAML::Node n;
    n["kind"] = L.kind;
    n["in_shape"] = L.in_shape;
    n["out_shape"] = L.out_shape;
    n["padding"] = L.padding;
    n["pool"] = L.pool;
    n["weight"]["encoding"] = L.weight.encoding;
    n["weight"]["bits"] = L.weight.bits;
    n["weight"]["code_min"] = L.weight.code_min;
    n["weight"]["shape"] = L.weight.shape;
    n["weight"]["data"] = L.weight.encoding == "float32" ? blob(payload, L.weight.values) : blob(payload, L.weight.words);
    n["weight"]["scale"] = blob(payload, L.weight.scale);
    n["weight"]["zero"] = blob(payload, L.weight.zero);
    n["bias"] = blob(payload, L.bias);
    h["layers"].push_back(n);
  }
  h["config"] = m.config_yaml;
  YAML::Emitter e;
  e << h;
  std::string header = e.c_str();
  header += "\n";
  header.resize(aligned(header.size() + 16) - 16, ' ');  // payload starts 64-byte aligned in the file
  std::string out(kMagic, 8);
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(char((len >> (8 * i)) & 0xff));
  out += header;
  out += payload;
  write_file_atomic(path, out);
}

ExportedModel read_exported_model(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(file + ": cannot open the model file");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  if (bytes.size() < 16 || std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw UserError(file + ": not a bilevel quantized model (`bilevel export` writes one)");
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= uint64_t(uint8_t(bytes[8 + i])) << (8 * i);
  if (len > bytes.size() - 16) throw UserError(file + ": truncated header");
  YAML::Node h;
  try {
    h = YAML::Load(bytes.substr(16, len));
  } catch (const YAML::Exception& e) {
    throw UserError(file + ": unreadable header: " + e.what());
  }
  const std::string payload = bytes.substr(16 + len);
  ExportedModel m;
  try {
    if (h["version"].as<int>() != 1) throw UserError(file + ": format version " + h["version"].as<std::string>() + " is not supported");
    m.created = h["created"].as<std::string>("");
    m.source_run = h["source_run"].as<std::string>("");
    m.checkpoint = h["checkpoint"].as<std::string>("");
    m.config_hash = h["config_hash"].as<std::string>("");
    m.git_commit = h["git_commit"].as<std::string>("");
    m.config_yaml = h["config"].as<std::string>("");
    m.input_shape = h["input"]["shape"].as<std::vector<int64_t>>();
    m.input_step = h["input"]["step"].as<float>();
    m.num_classes = h["num_classes"].as<int64_t>();
    m.activate_output = h["activate_output"].as<bool>();
    const auto& a = h["activation"];
    m.activation.rho = a["rho"].as<std::string>();
    m.activation.quantizer = a["quantizer"].as<std::string>();
    m.activation.bits = a["bits"].as<int>();
    m.activation.code_min = a["code_min"].as<float>();
    m.activation.code_max = a["code_max"].as<float>();
    m.activation.offset = a["offset"].as<float>();
    m.activation.steps = read_blob<float>(payload, a["steps"], "activation steps", file);
    m.activation.full_precision = a["full_precision"].as<std::vector<int64_t>>();
    for (const auto& n : h["layers"]) {
      ExportedLayer L;
      L.kind = n["kind"].as<std::string>();
      L.in_shape = n["in_shape"].as<std::vector<int64_t>>();
      L.out_shape = n["out_shape"].as<std::vector<int64_t>>();
      L.padding = n["padding"].as<int64_t>();
      L.pool = n["pool"].as<int64_t>();
      auto& w = L.weight;
      w.encoding = n["weight"]["encoding"].as<std::string>();
      w.bits = n["weight"]["bits"].as<int>();
      w.code_min = n["weight"]["code_min"].as<float>();
      w.shape = n["weight"]["shape"].as<std::vector<int64_t>>();
      if (w.shape.empty() || w.bits < 1 || w.bits > 32) throw UserError(file + ": a layer's weight shape or bits are invalid");
      const std::string what = "layer " + std::to_string(m.layers.size() + 1) + " weights";
      if (w.encoding == "float32") {
        w.values = read_blob<float>(payload, n["weight"]["data"], what, file);
        if (int64_t(w.values.size()) != w.rows() * w.row_length()) throw UserError(file + ": " + what + " have the wrong size");
      } else {
        w.words = read_blob<uint64_t>(payload, n["weight"]["data"], what, file);
        if (int64_t(w.words.size()) != w.rows() * w.row_words()) throw UserError(file + ": " + what + " have the wrong size");
      }
      w.scale = read_blob<float>(payload, n["weight"]["scale"], what + " scale", file);
      w.zero = read_blob<float>(payload, n["weight"]["zero"], what + " zero point", file);
      L.bias = read_blob<float>(payload, n["bias"], "layer bias", file);
      if (int64_t(L.bias.size()) != w.rows()) throw UserError(file + ": " + what + " and bias disagree in size");
      m.layers.push_back(std::move(L));
    }
  } catch (const YAML::Exception& e) {
    throw UserError(file + ": malformed header: " + e.what());
  }
  if (m.layers.empty()) throw UserError(file + ": the model has no layers");
  return m;
}

}  // namespace bilevel
