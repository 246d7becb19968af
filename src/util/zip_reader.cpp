#include "bilevel/util/zip_reader.h"

#include <zlib.h>

#include <algorithm>
#include <set>

namespace bilevel {
namespace {

constexpr uint32_t kEndSignature = 0x06054b50, kEnd64Signature = 0x06064b50, kLocatorSignature = 0x07064b50,
                   kCentralSignature = 0x02014b50, kLocalSignature = 0x04034b50;

// Little-endian fields at checked offsets.
class Fields {
 public:
  explicit Fields(const std::string& bytes) : bytes_(bytes) {}
  bool fits(uint64_t at, uint64_t n) const { return at <= bytes_.size() && n <= bytes_.size() - at; }
  uint64_t get(uint64_t at, int n, const char* what) const {
    if (!fits(at, uint64_t(n))) throw ZipError(std::string(what) + " lies past the end of the file (truncated?)");
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t(static_cast<unsigned char>(bytes_[at + i])) << (8 * i);
    return v;
  }

 private:
  const std::string& bytes_;
};

}  // namespace

ZipReader::ZipReader(const std::string& bytes) : bytes_(bytes) {
  const Fields f(bytes);
  // The end-of-central-directory record: the last 22 bytes, or earlier by a comment of at most 65535 bytes.
  if (bytes.size() < 22) throw ZipError("not a zip archive (" + std::to_string(bytes.size()) + " bytes)");
  uint64_t end = bytes.size() - 22;
  const uint64_t lowest = end > 65535 ? end - 65535 : 0;
  while (f.get(end, 4, "the end record") != kEndSignature) {
    if (end == lowest) throw ZipError("not a zip archive (no end-of-central-directory record; truncated?)");
    --end;
  }
  uint64_t count = f.get(end + 10, 2, "the end record"), dir_size = f.get(end + 12, 4, "the end record"),
           dir = f.get(end + 16, 4, "the end record");
  if (count == 0xFFFF || dir_size == 0xFFFFFFFF || dir == 0xFFFFFFFF) {
    if (end < 20 || f.get(end - 20, 4, "the zip64 locator") != kLocatorSignature)
      throw ZipError("zip64 end record missing");
    const uint64_t end64 = f.get(end - 12, 8, "the zip64 locator");
    if (f.get(end64, 4, "the zip64 end record") != kEnd64Signature) throw ZipError("zip64 end record missing");
    count = f.get(end64 + 32, 8, "the zip64 end record");
    dir_size = f.get(end64 + 40, 8, "the zip64 end record");
    dir = f.get(end64 + 48, 8, "the zip64 end record");
  }
  if (!f.fits(dir, dir_size) || count > dir_size / 46) throw ZipError("central directory lies past the end of the file");

  std::set<std::string> names;
  uint64_t at = dir;
  for (uint64_t i = 0; i < count; ++i) {
    if (f.get(at, 4, "a central directory entry") != kCentralSignature)
      throw ZipError("central directory entry " + std::to_string(i) + " is malformed");
    ZipRecord r;
    const uint64_t flags = f.get(at + 8, 2, "a central directory entry");
    r.method = uint16_t(f.get(at + 10, 2, "a central directory entry"));
    r.crc32 = uint32_t(f.get(at + 16, 4, "a central directory entry"));
    r.compressed = f.get(at + 20, 4, "a central directory entry");
    r.size = f.get(at + 24, 4, "a central directory entry");
    const uint64_t name_len = f.get(at + 28, 2, "a central directory entry"),
                   extra_len = f.get(at + 30, 2, "a central directory entry"),
                   comment_len = f.get(at + 32, 2, "a central directory entry");
    uint64_t local = f.get(at + 42, 4, "a central directory entry");
    if (!f.fits(at + 46, name_len + extra_len + comment_len))
      throw ZipError("central directory entry " + std::to_string(i) + " lies past the end of the file");
    r.name = bytes.substr(at + 46, name_len);
    if (flags & 1) throw ZipError(r.name + ": encrypted");
    // Zip64 extra field (id 1): the 64-bit values of the fields that hold 0xFFFFFFFF, in this order.
    for (uint64_t e = at + 46 + name_len; e + 4 <= at + 46 + name_len + extra_len;) {
      const uint64_t id = f.get(e, 2, "an extra field"), len = f.get(e + 2, 2, "an extra field");
      if (e + 4 + len > at + 46 + name_len + extra_len) throw ZipError(r.name + ": malformed extra field");
      if (id == 1) {
        uint64_t v = e + 4;
        for (uint64_t* field : {&r.size, &r.compressed, &local})
          if (*field == 0xFFFFFFFF) {
            if (v + 8 > e + 4 + len) throw ZipError(r.name + ": malformed zip64 extra field");
            *field = f.get(v, 8, "a zip64 extra field");
            v += 8;
          }
      }
      e += 4 + len;
    }
    if (!names.insert(r.name).second) throw ZipError(r.name + ": appears twice");
    // Its bytes follow its local header, whose own name and extra field may differ in length.
    if (f.get(local, 4, "a local header") != kLocalSignature) throw ZipError(r.name + ": malformed local header");
    r.data = local + 30 + f.get(local + 26, 2, "a local header") + f.get(local + 28, 2, "a local header");
    if (!f.fits(r.data, r.compressed)) throw ZipError(r.name + ": lies past the end of the file (truncated?)");
    if (r.method == 0 && r.compressed != r.size) throw ZipError(r.name + ": stored with two different sizes");
    records_.push_back(std::move(r));
    at += 46 + name_len + extra_len + comment_len;
  }
}

std::string ZipReader::read(const ZipRecord& r, uint64_t max_size) const {
  if (r.size > max_size)
    throw ZipError(r.name + ": " + std::to_string(r.size) + " bytes, more than " + std::to_string(max_size) +
                   " expected");
  std::string out;
  if (r.method == 0) {
    out = bytes_.substr(r.data, r.size);
  } else if (r.method == 8) {
    if (r.compressed > 0xFFFFFFFFu || r.size > 0xFFFFFFFFu) throw ZipError(r.name + ": compressed record over 4 GiB");
    out.resize(r.size);
    z_stream z{};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) throw ZipError(r.name + ": cannot start inflating");
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes_.data() + r.data));
    z.avail_in = uInt(r.compressed);
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = uInt(r.size);
    const int status = inflate(&z, Z_FINISH);
    const uint64_t produced = z.total_out;
    inflateEnd(&z);
    if (status != Z_STREAM_END || produced != r.size)
      throw ZipError(r.name + ": corrupt compressed data");
  } else {
    throw ZipError(r.name + ": compressed with method " + std::to_string(r.method) + " (only stored or deflated)");
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  for (uint64_t done = 0; done < out.size();) {  // crc32 takes at most 4 GiB at a time
    const uInt n = uInt(std::min<uint64_t>(out.size() - done, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(out.data() + done), n);
    done += n;
  }
  if (uint32_t(crc) != r.crc32) throw ZipError(r.name + ": CRC-32 mismatch (the file is corrupt)");
  return out;
}

}  // namespace bilevel
