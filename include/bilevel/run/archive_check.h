// The gate between a checkpoint file and LibTorch's archive reader. LibTorch's reader trusts its input: fuzzing
// (fuzz/fuzz_checkpoint.cpp) made LibTorch 1.13 crash with SIGSEGV, not an exception, on a class constant in an
// archive's TorchScript code and on a malformed pickle stream (its unpickler pops an empty stack), and its tensor
// rebuild gives a tensor whatever sizes the pickle names, past the end of its storage record. So before LibTorch
// sees a file, the zip is read by bilevel's own bounded reader (util/zip_reader.h: offsets and sizes checked,
// CRC-32 verified, so a bit flip anywhere is caught), and every record LibTorch would read is checked against the
// narrow shape that torch::serialize::OutputArchive writes for bilevel's modules:
//   - data.pkl is run on a model of the pickle machine (protocol 2, the opcodes LibTorch's pickler emits, stack,
//     marks and memo checked at each step, only the globals an archive of tensors and modules uses); each tensor's
//     storage record must exist and hold its elements, and each tensor's sizes, strides and offset must stay inside
//     it; constants.pkl must be a tuple of nothing;
//   - code/*.py must hold only class headers, parameter/buffer lists and typed attributes;
//   - version, byteorder and .data/* must be what a writer puts there; debug records (*.debug_pkl, read by LibTorch
//     only to decorate an error) are dropped; any other record is refused.
// What passes is copied into a fresh archive in memory, so LibTorch reads exactly the bytes that were checked.
#pragma once

#include <filesystem>
#include <string>

namespace bilevel {

// The checked copy of the archive at `path`, as zip bytes for torch::serialize::InputArchive::load_from(istream).
// Throws UserError "PATH: unreadable checkpoint (...)" for a truncated or corrupt zip and "PATH: not a bilevel
// checkpoint (RECORD, byte N / line N: what)" for anything outside that shape.
std::string checked_archive(const std::filesystem::path& path);

}  // namespace bilevel
