#include "bilevel/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bilevel/util/error.h"

namespace bilevel {
namespace {

constexpr uint8_t kTypeUnsignedByte = 0x08;
// No real IDX file comes close; the cap keeps a corrupt header from asking for an absurd allocation.
constexpr int64_t kMaxElements = int64_t{1} << 36;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// zlib's message, without the "path: " prefix it adds (DataError names the file already).
std::string gz_message(gzFile f, const std::string& path) {
  int code = Z_OK;
  const char* msg = gzerror(f, &code);
  if (code == Z_ERRNO) return std::strerror(errno);
  std::string s = msg ? msg : "unknown zlib error";
  const std::string prefix = path + ": ";
  if (s.compare(0, prefix.size(), prefix) == 0) s.erase(0, prefix.size());
  return s;
}

// Reads up to n bytes (gzread takes an unsigned int, so large reads go in chunks). Returns the count read;
// throws on a zlib error (corrupt gzip stream).
int64_t read_some(gzFile f, const std::string& path, uint8_t* dst, int64_t n) {
  int64_t total = 0;
  while (total < n) {
    const int64_t want = std::min<int64_t>(n - total, int64_t{1} << 30);
    const int got = gzread(f, dst + total, static_cast<unsigned>(want));
    if (got < 0) throw DataError(path, "read error: " + gz_message(f, path));
    if (got == 0) break;
    total += got;
  }
  return total;
}

std::string hex_byte(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", b);
  return buf;
}

}  // namespace

torch::Tensor read_idx(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw DataError(path, std::filesystem::exists(path, ec) ? "cannot open: not a regular file"
                                                            : "cannot open: no such file");
  errno = 0;
  GzFile f(gzopen(path.c_str(), "rb"));
  if (!f) throw DataError(path, std::string("cannot open: ") + (errno ? std::strerror(errno) : "gzopen failed"));

  uint8_t header[4];
  const int64_t got_header = read_some(f.get(), path, header, 4);
  if (got_header < 4)
    throw DataError(path, "truncated: expected a 4-byte IDX header, found " + std::to_string(got_header) + " bytes");
  if (header[0] != 0 || header[1] != 0)
    throw DataError(path, "bad magic number " + hex_byte(header[0]) + " " + hex_byte(header[1]) +
                              " (expected two zero bytes; not an IDX file)");
  if (header[2] != kTypeUnsignedByte)
    throw DataError(path, "unsupported IDX type " + hex_byte(header[2]) + " (only 0x08, unsigned byte, is supported)");
  const int ndims = header[3];
  if (ndims < 1 || ndims > 4)
    throw DataError(path, "unsupported number of dimensions " + std::to_string(ndims) + " (expected 1 to 4)");

  std::vector<uint8_t> dim_bytes(4 * ndims);
  const int64_t got_dims = read_some(f.get(), path, dim_bytes.data(), 4 * ndims);
  if (got_dims < 4 * ndims)
    throw DataError(path, "truncated: expected " + std::to_string(4 * ndims) + " bytes of dimensions, found " +
                              std::to_string(got_dims));
  std::vector<int64_t> dims(ndims);
  int64_t count = 1;
  for (int i = 0; i < ndims; ++i) {
    const uint8_t* p = &dim_bytes[4 * i];
    dims[i] = (int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | int64_t{p[3]};
    if (dims[i] != 0 && count > kMaxElements / dims[i])
      throw DataError(path, "implausible dimensions (more than " + std::to_string(kMaxElements) + " elements)");
    count *= dims[i];
  }

  // A corrupt header must not make the reader allocate more than the file can hold: raw data is the rest of the
  // file, and deflate expands at most 1032:1.
  const auto file_size = std::filesystem::file_size(path, ec);
  if (!ec) {
    const bool raw = gzdirect(f.get()) == 1;
    const double header_bytes = 4.0 + 4.0 * ndims;
    const double room = raw ? double(file_size) - header_bytes : double(file_size) * 1032.0;
    if (double(count) > room)
      throw DataError(path, "truncated: expected " + std::to_string(count) + " data bytes (from the header), " +
                                (raw ? "found " + std::to_string(int64_t(room))
                                     : "but a " + std::to_string(file_size) + "-byte gzip file holds at most " +
                                           std::to_string(int64_t(room))));
  }
  torch::Tensor out = torch::empty(dims, torch::kUInt8);
  const int64_t got = read_some(f.get(), path, out.data_ptr<uint8_t>(), count);
  if (got < count) {
    std::string msg = "truncated: expected " + std::to_string(count) + " data bytes (from the header), found " +
                      std::to_string(got);
    int code = Z_OK;
    gzerror(f.get(), &code);
    if (code != Z_OK) msg += " (" + gz_message(f.get(), path) + ")";
    throw DataError(path, msg);
  }
  // Extra bytes mean the header and the data disagree: refuse rather than guess which one is right.
  uint8_t tail[4096];
  int64_t extra = 0;
  for (int64_t n; (n = read_some(f.get(), path, tail, sizeof tail)) > 0;) extra += n;
  if (extra > 0)
    throw DataError(path, "malformed: " + std::to_string(extra) + " extra bytes after the " + std::to_string(count) +
                              " data bytes the header describes");
  return out;
}

Dataset read_idx_dataset(const std::string& images_path, const std::string& labels_path, int64_t num_classes,
                         const std::string& name) {
  torch::Tensor images = read_idx(images_path);
  torch::Tensor labels = read_idx(labels_path);
  if (images.dim() != 3)
    throw DataError(images_path, "expected an images file with 3 dimensions [N, H, W], found " +
                                     std::to_string(images.dim()));
  if (labels.dim() != 1)
    throw DataError(labels_path, "expected a labels file with 1 dimension [N], found " + std::to_string(labels.dim()));
  if (images.size(0) != labels.size(0))
    throw DataError(labels_path, "has " + std::to_string(labels.size(0)) + " labels but " + images_path + " has " +
                                     std::to_string(images.size(0)) + " images");
  if (labels.numel() > 0) {
    const int64_t max_label = labels.max().item<int64_t>();
    if (max_label >= num_classes) {
      const int64_t at = labels.ge(num_classes).nonzero().index({0, 0}).item<int64_t>();
      throw DataError(labels_path, "label " + std::to_string(labels[at].item<int64_t>()) + " at index " +
                                       std::to_string(at) + " is outside 0.." + std::to_string(num_classes - 1));
    }
  }
  Dataset d;
  d.images = images.unsqueeze(1).to(torch::kFloat32).div_(255.0);
  d.labels = labels.to(torch::kInt64);
  d.num_classes = num_classes;
  d.name = name;
  return d;
}

void write_idx(const std::string& path, const torch::Tensor& data) {
  if (data.scalar_type() != torch::kUInt8) throw std::invalid_argument("write_idx: tensor must be uint8");
  if (data.dim() < 1 || data.dim() > 4) throw std::invalid_argument("write_idx: tensor must have 1 to 4 dimensions");
  const torch::Tensor t = data.contiguous().cpu();

  std::vector<uint8_t> bytes = {0, 0, kTypeUnsignedByte, static_cast<uint8_t>(t.dim())};
  for (int64_t d : t.sizes()) {
    if (d > std::numeric_limits<uint32_t>::max()) throw std::invalid_argument("write_idx: dimension too large");
    const auto u = static_cast<uint32_t>(d);
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(u >> shift));
  }
  const auto* p = t.data_ptr<uint8_t>();
  bytes.insert(bytes.end(), p, p + t.numel());

  const bool gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (gz) {
    GzFile f(gzopen(path.c_str(), "wb"));
    if (!f) throw DataError(path, "cannot open for writing");
    size_t done = 0;
    while (done < bytes.size()) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(bytes.size() - done, size_t{1} << 30));
      if (gzwrite(f.get(), bytes.data() + done, chunk) != static_cast<int>(chunk))
        throw DataError(path, "write error: " + gz_message(f.get(), path));
      done += chunk;
    }
    // gzclose flushes the compressed tail; its result is the only way to see a late write failure.
    if (gzclose(f.release()) != Z_OK) throw DataError(path, "write error while closing");
  } else {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw DataError(path, std::string("cannot open for writing: ") + std::strerror(errno));
    const size_t wrote = std::fwrite(bytes.data(), 1, bytes.size(), f);
    const int closed = std::fclose(f);
    if (wrote != bytes.size() || closed != 0) throw DataError(path, "write error");
  }
}

}  // namespace bilevel
