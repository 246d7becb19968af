// A bounded reader of a zip archive held in memory (LibTorch's archives are zip files). It checks every offset and
// size against the bytes it holds before using it, inflates only stored and deflated records into a buffer of the
// size the central directory declares (never more than the caller allows), and checks each record's CRC-32, so
// that a truncated, bit-flipped or hostile file is an error naming what is wrong, never a read out of bounds or an
// allocation the file cannot justify. (LibTorch's own reader allocates whatever size a record declares and, as
// built by PyTorch, skips the CRC check.) Zip64 end records are followed where the 32-bit fields overflow.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace bilevel {

// A malformed archive or record: what is wrong, and the record where there is one.
class ZipError : public std::runtime_error {
 public:
  explicit ZipError(const std::string& what) : std::runtime_error(what) {}
};

struct ZipRecord {
  std::string name;         // full name in the archive
  uint16_t method = 0;      // 0 stored, 8 deflated (others are refused by read)
  uint32_t crc32 = 0;       // of the uncompressed bytes
  uint64_t compressed = 0;  // bytes in the archive
  uint64_t size = 0;        // bytes once read
  uint64_t data = 0;        // offset of its bytes in the archive
};

class ZipReader {
 public:
  // Parses the central directory of `bytes` (kept by reference: it must outlive the reader). Throws ZipError.
  explicit ZipReader(const std::string& bytes);

  const std::vector<ZipRecord>& records() const { return records_; }

  // The record's bytes, CRC-checked. Throws ZipError when it is larger than `max_size`, compressed other than by
  // deflate, or its bytes do not inflate to its size and CRC.
  std::string read(const ZipRecord& record, uint64_t max_size) const;

 private:
  const std::string& bytes_;
  std::vector<ZipRecord> records_;
};

}  // namespace bilevel
