#include "bilevel/run/archive_check.h"

#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <vector>

#include "bilevel/util/error.h"
#include "bilevel/util/zip_reader.h"

namespace bilevel {
namespace {

// A check that failed: the record and what is wrong there (the caller adds the file's name).
struct Refusal {
  std::string what;
};
[[noreturn]] void refuse(const std::string& what) { throw Refusal{what}; }

// ---- The pickle machine, on kinds of values instead of values ----

enum class Kind {
  Int, Float, Bool, None, Str,  // scalars
  Tuple, List, Dict,            // containers (a List's and a Dict's contents change after they are made)
  Class, Object,                // a __torch__ class (GLOBAL), one of its instances (NEWOBJ, then BUILD)
  StorageType, Storage, Tensor, // torch.XStorage (GLOBAL), a storage record (BINPERSID), a rebuilt tensor
  RebuildTensor, OrderedDict, BuildList,  // the callables REDUCE may call
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Int: return "an integer";
    case Kind::Float: return "a float";
    case Kind::Bool: return "a bool";
    case Kind::None: return "None";
    case Kind::Str: return "a string";
    case Kind::Tuple: return "a tuple";
    case Kind::List: return "a list";
    case Kind::Dict: return "a dictionary";
    case Kind::Class: return "a class";
    case Kind::Object: return "an object";
    case Kind::StorageType: return "a storage type";
    case Kind::Storage: return "a storage";
    case Kind::Tensor: return "a tensor";
    case Kind::RebuildTensor:
    case Kind::OrderedDict:
    case Kind::BuildList: return "a function";
  }
  return "a value";
}

struct Value;
using Ref = std::shared_ptr<Value>;
struct Value {
  Kind kind;
  int64_t integer = 0;     // Int: its value; Storage: its element count
  int64_t itemsize = 0;    // StorageType, Storage: bytes per element
  Kind element = Kind::None;  // BuildList: the kind of its elements
  std::string text;        // Str: its bytes
  std::vector<Ref> items;  // Tuple, List
};
Ref make(Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

bool is_scalar(Kind k) {
  return k == Kind::Int || k == Kind::Float || k == Kind::Bool || k == Kind::None || k == Kind::Str;
}

// Bytes per element of the storage types LibTorch names in a GLOBAL (torch.XStorage); 0 for any other name.
int64_t storage_itemsize(const std::string& name) {
  static const std::map<std::string, int64_t> sizes = {
      {"DoubleStorage", 8}, {"FloatStorage", 4}, {"HalfStorage", 2}, {"BFloat16Storage", 2},
      {"LongStorage", 8},   {"IntStorage", 4},   {"ShortStorage", 2}, {"CharStorage", 1},
      {"ByteStorage", 1},   {"BoolStorage", 1}};
  const auto it = sizes.find(name);
  return it == sizes.end() ? 0 : it->second;
}

// Runs one pickle (protocol 2, as LibTorch's pickler writes it) on the model above. `record_size` gives the size
// of a storage record data/KEY, or nullopt where there is none; the keys of the storages used are collected.
class PickleCheck {
 public:
  PickleCheck(std::string name, const std::string& bytes,
              std::function<std::optional<size_t>(const std::string&)> record_size)
      : name_(std::move(name)), bytes_(bytes), record_size_(std::move(record_size)) {}

  Ref run() {
    if (next() != 0x80 || next() != 2) fail_at(0, "not a protocol-2 pickle");
    while (true) {
      op_ = pos_;
      const uint8_t op = next();
      if (op == '.') break;
      step(op);
    }
    if (pos_ != bytes_.size()) fail("bytes after STOP");
    if (!marks_.empty() || stack_.size() != 1) fail("STOP with " + std::to_string(stack_.size()) + " values and " +
                                                    std::to_string(marks_.size()) + " marks (1 and 0 expected)");
    return stack_.back();
  }

  const std::vector<std::string>& storages() const { return storages_; }

 private:
  [[noreturn]] void fail_at(size_t at, const std::string& what) {
    refuse(name_ + ", byte " + std::to_string(at) + ": " + what);
  }
  [[noreturn]] void fail(const std::string& what) { fail_at(op_, what); }

  uint8_t next() {
    if (pos_ >= bytes_.size()) fail_at(pos_, "truncated pickle");
    return static_cast<uint8_t>(bytes_[pos_++]);
  }
  uint64_t little(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t(next()) << (8 * i);
    return v;
  }
  std::string bytes(size_t n) {
    if (n > bytes_.size() - pos_) fail("a string longer than the pickle");
    std::string s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string line() {
    const size_t end = bytes_.find('\n', pos_);
    if (end == std::string::npos || end - pos_ > 200) fail("a GLOBAL's name is not a line of at most 200 bytes");
    std::string s = bytes_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }

  void push(Ref v) { stack_.push_back(std::move(v)); }
  // The top value, which must be of kind `k`, and must lie above the innermost mark.
  Ref pop(Kind k, const char* role) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
      fail(std::string("no value for ") + role);
    Ref v = stack_.back();
    if (v->kind != k) fail(std::string(role) + " is " + kind_name(v->kind) + ", not " + kind_name(k));
    stack_.pop_back();
    return v;
  }
  Ref top(Kind k, const char* role) {
    Ref v = pop(k, role);
    stack_.push_back(v);
    return v;
  }
  // The values since the innermost mark, removed from the stack with the mark.
  std::vector<Ref> pop_mark(const char* op) {
    if (marks_.empty()) fail(std::string(op) + " without a MARK");
    const size_t start = marks_.back();
    marks_.pop_back();
    std::vector<Ref> items(stack_.begin() + static_cast<std::ptrdiff_t>(start), stack_.end());
    stack_.resize(start);
    return items;
  }
  // The container just below the innermost mark, for SETITEMS and APPENDS.
  Ref below_mark(Kind k, const char* op) {
    if (marks_.empty()) fail(std::string(op) + " without a MARK");
    const size_t start = marks_.back();
    if (start == 0 || (marks_.size() > 1 && start <= marks_[marks_.size() - 2]))
      fail(std::string(op) + " has no container below its MARK");
    Ref v = stack_[start - 1];
    if (v->kind != k) fail(std::string(op) + " on " + kind_name(v->kind) + ", not " + kind_name(k));
    return v;
  }

  void put(uint64_t id) {
    if (stack_.empty()) fail("BINPUT on an empty stack");
    if (id > memo_.size()) fail("memo slot " + std::to_string(id) + " out of order");
    if (id == memo_.size()) memo_.push_back(stack_.back());
    else memo_[id] = stack_.back();
  }
  void get(uint64_t id) {
    if (id >= memo_.size()) fail("memo slot " + std::to_string(id) + " was never written");
    push(memo_[id]);
  }

  Ref integer(int64_t v) {
    Ref r = make(Kind::Int);
    r->integer = v;
    return r;
  }

  void global() {
    const std::string module = line(), name = line();
    static const std::regex torch_module(R"(__torch__(\.\w+)*)"), identifier(R"([A-Za-z_]\w*)");
    Ref v;
    if (std::regex_match(module, torch_module) && std::regex_match(name, identifier)) {
      v = make(Kind::Class);
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      v = make(Kind::RebuildTensor);
    } else if (module == "collections" && name == "OrderedDict") {
      v = make(Kind::OrderedDict);
    } else if (module == "torch" && storage_itemsize(name) > 0) {
      v = make(Kind::StorageType);
      v->itemsize = storage_itemsize(name);
    } else if (module == "torch.jit._pickle" && (name == "build_tensorlist" || name == "build_intlist" ||
                                                 name == "build_doublelist" || name == "build_boollist")) {
      v = make(Kind::BuildList);
      v->text = name;
      v->element = name == "build_tensorlist" ? Kind::Tensor
                   : name == "build_intlist"  ? Kind::Int
                   : name == "build_doublelist" ? Kind::Float
                                                : Kind::Bool;
    } else {
      fail("GLOBAL " + module + "." + name + " is not one an archive of tensors and modules uses");
    }
    push(v);
  }

  // BINPERSID's argument: ('storage', torch.XStorage, KEY, LOCATION, ELEMENTS), the record data/KEY.
  void persistent_id() {
    Ref id = pop(Kind::Tuple, "BINPERSID's argument");
    const auto& a = id->items;
    static const std::regex key_pattern("[0-9]{1,12}"), location("cpu|cuda(:[0-9]{1,3})?");
    if (a.size() != 5 || a[0]->kind != Kind::Str || a[0]->text != "storage" || a[1]->kind != Kind::StorageType ||
        a[2]->kind != Kind::Str || !std::regex_match(a[2]->text, key_pattern) || a[3]->kind != Kind::Str ||
        !std::regex_match(a[3]->text, location) || a[4]->kind != Kind::Int || a[4]->integer < 0)
      fail("BINPERSID's argument is not ('storage', TYPE, KEY, DEVICE, ELEMENTS)");
    const int64_t elements = a[4]->integer, itemsize = a[1]->itemsize;
    if (elements > 0) {
      const auto size = record_size_(a[2]->text);
      if (!size) fail("storage record data/" + a[2]->text + " is missing");
      if (uint64_t(elements) > *size / uint64_t(itemsize))
        fail("storage record data/" + a[2]->text + " holds " + std::to_string(*size) + " bytes, fewer than " +
             std::to_string(elements) + " elements of " + std::to_string(itemsize));
      storages_.push_back(a[2]->text);
    }
    Ref s = make(Kind::Storage);
    s->integer = elements;
    s->itemsize = itemsize;
    push(s);
  }

  // _rebuild_tensor_v2(storage, offset, sizes, strides, requires_grad, hooks): every element inside the storage.
  Ref rebuild_tensor(const std::vector<Ref>& a) {
    auto ints = [&](const Ref& t) {
      if (t->kind != Kind::Tuple || t->items.size() > 16) return false;
      for (const auto& i : t->items)
        if (i->kind != Kind::Int || i->integer < 0) return false;
      return true;
    };
    if (a.size() != 6 || a[0]->kind != Kind::Storage || a[1]->kind != Kind::Int || a[1]->integer < 0 ||
        !ints(a[2]) || !ints(a[3]) || a[2]->items.size() != a[3]->items.size() || a[4]->kind != Kind::Bool ||
        a[5]->kind != Kind::Dict)
      fail("_rebuild_tensor_v2's arguments are not (storage, offset, sizes, strides, requires_grad, hooks)");
    const auto& sizes = a[2]->items;
    const auto& strides = a[3]->items;
    const uint64_t storage = uint64_t(a[0]->integer);
    // Elements (at most the storage's: no expanded views) and the last one's index, without overflow.
    uint64_t elements = 1, last = uint64_t(a[1]->integer);
    if (uint64_t(a[1]->integer) > storage) fail("a tensor's offset is past its storage");
    bool empty = false;
    for (size_t d = 0; d < sizes.size(); ++d) empty = empty || sizes[d]->integer == 0;
    if (!empty) {
      for (size_t d = 0; d < sizes.size(); ++d) {
        const uint64_t n = uint64_t(sizes[d]->integer), s = uint64_t(strides[d]->integer);
        if (n > storage || elements > storage / n) fail("a tensor with more elements than its storage");
        elements *= n;
        if (s != 0 && (n - 1) > (storage / s)) fail("a tensor's strides reach past its storage");
        last += (n - 1) * s;
        if (last >= storage) fail("a tensor's strides reach past its storage");
      }
      if (last >= storage) fail("a tensor's offset is past its storage");
    }
    return make(Kind::Tensor);
  }

  void reduce() {
    Ref args = pop(Kind::Tuple, "REDUCE's arguments");
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("REDUCE without a function");
    Ref f = stack_.back();
    stack_.pop_back();
    const auto& a = args->items;
    switch (f->kind) {
      case Kind::RebuildTensor: push(rebuild_tensor(a)); break;
      case Kind::OrderedDict:
        if (!a.empty()) fail("OrderedDict with arguments");
        push(make(Kind::Dict));
        break;
      case Kind::BuildList:
        if (a.size() != 1 || a[0]->kind != Kind::List) fail("a list builder's argument is not a list");
        for (const auto& item : a[0]->items)
          if (item->kind != f->element) fail(f->text + "'s list holds " + kind_name(item->kind));
        push(a[0]);
        break;
      default: fail(std::string("REDUCE calls ") + kind_name(f->kind));
    }
  }

  void step(uint8_t op) {
    switch (op) {
      case '(': marks_.push_back(stack_.size()); break;
      case 'q': put(little(1)); break;
      case 'r': put(little(4)); break;
      case 'h': get(little(1)); break;
      case 'j': get(little(4)); break;
      case 'K': push(integer(int64_t(little(1)))); break;
      case 'M': push(integer(int64_t(little(2)))); break;
      case 'J': push(integer(int64_t(int32_t(uint32_t(little(4)))))); break;
      case 0x8a:
        if (next() != 8) fail("LONG1 of other than 8 bytes");
        push(integer(int64_t(little(8))));
        break;
      case 'G': (void)bytes(8); push(make(Kind::Float)); break;
      case 0x88:
      case 0x89: push(make(Kind::Bool)); break;
      case 'N': push(make(Kind::None)); break;
      case 'X': {
        const uint64_t n = little(4);
        Ref s = make(Kind::Str);
        s->text = bytes(n);
        push(s);
      } break;
      case ')': push(make(Kind::Tuple)); break;
      case 't': {
        Ref t = make(Kind::Tuple);
        t->items = pop_mark("TUPLE");
        push(t);
      } break;
      case 0x85:
      case 0x86:
      case 0x87: {
        Ref t = make(Kind::Tuple);
        t->items.resize(op - 0x84);
        for (size_t i = t->items.size(); i-- > 0;) {
          if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("TUPLEn with fewer values");
          t->items[i] = stack_.back();
          stack_.pop_back();
        }
        push(t);
      } break;
      case ']': push(make(Kind::List)); break;
      case 'e': {
        Ref list = below_mark(Kind::List, "APPENDS");
        for (auto& item : pop_mark("APPENDS")) {
          if (!is_scalar(item->kind) && item->kind != Kind::Tensor) fail("a list holds " + std::string(kind_name(item->kind)));
          list->items.push_back(std::move(item));
        }
      } break;
      case '}': push(make(Kind::Dict)); break;
      case 'u': {
        (void)below_mark(Kind::Dict, "SETITEMS");
        const auto items = pop_mark("SETITEMS");
        if (items.size() % 2 != 0) fail("SETITEMS with a key without a value");
        for (size_t i = 0; i < items.size(); i += 2) {
          if (items[i]->kind != Kind::Str && items[i]->kind != Kind::Int) fail("a dictionary key is not a string");
          const Kind v = items[i + 1]->kind;
          if (!is_scalar(v) && v != Kind::Tuple && v != Kind::List && v != Kind::Object && v != Kind::Tensor)
            fail(std::string("a dictionary value is ") + kind_name(v));
        }
      } break;
      case 0x81: {
        Ref args = pop(Kind::Tuple, "NEWOBJ's arguments");
        if (!args->items.empty()) fail("NEWOBJ with arguments");
        (void)pop(Kind::Class, "NEWOBJ's class");
        push(make(Kind::Object));
      } break;
      case 'b':
        (void)pop(Kind::Dict, "BUILD's state");
        (void)top(Kind::Object, "BUILD's object");
        break;
      case 'c': global(); break;
      case 'Q': persistent_id(); break;
      case 'R': reduce(); break;
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("opcode ") + hex + " is not one LibTorch's pickler writes");
      }
    }
  }

  std::string name_;
  const std::string& bytes_;
  std::function<std::optional<size_t>(const std::string&)> record_size_;
  size_t pos_ = 0, op_ = 0;
  std::vector<Ref> stack_, memo_;
  std::vector<size_t> marks_;
  std::vector<std::string> storages_;
};

// ---- The TorchScript code records ----

// Ours (modules without methods) hold only class headers, __parameters__ / __buffers__ / __annotations__ lists and
// typed attributes; LibTorch's compiler crashes (SIGSEGV) on some malformed sources, e.g. a class constant `x = []`.
void check_code(const std::string& name, const std::string& source) {
  static const std::regex allowed(
      R"(\s*|\s*#.*|class \w+\(Module\):|  __(parameters|buffers)__ = \[("[^"\\]*", )*\]|  __annotations__ = \[\]|)"
      R"(  __annotations__\["[^"\\]*"\] = [\w.]+|  \w+ : [\w.]+(\[[\w., ]+(\[[\w., ]+\])?\])?)");
  std::istringstream text(source);
  std::string line;
  for (int n = 1; std::getline(text, line); ++n)
    if (line.size() > 4096 || !std::regex_match(line, allowed))
      refuse("unexpected TorchScript in " + name + ", line " + std::to_string(n));
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string read_whole_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path.string() + ": cannot open (" + std::strerror(errno) + ")");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) throw UserError(path.string() + ": read error (" + std::strerror(errno) + ")");
  return std::move(bytes).str();
}

}  // namespace

std::string checked_archive(const std::filesystem::path& path) {
  const std::string file = read_whole_file(path);
  try {
    const ZipReader zip(file);
    // Records are ROOT/NAME with one ROOT (LibTorch's layout); a stored record is at most the file, a deflated one
    // (LibTorch deflates only its small code records) at most 64 MiB.
    std::map<std::string, const ZipRecord*> records;
    std::string root;
    for (const auto& r : zip.records()) {
      const size_t slash = r.name.find('/');
      if (slash == std::string::npos || slash == 0 || (!root.empty() && r.name.compare(0, slash, root) != 0))
        refuse("record " + r.name + " outside the archive's folder");
      root = r.name.substr(0, slash);
      records[r.name.substr(slash + 1)] = &r;
    }
    auto read = [&](const std::string& name) {
      const ZipRecord& r = *records.at(name);
      return zip.read(r, r.method == 0 ? file.size() : uint64_t(64) << 20);
    };

    std::map<std::string, std::string> code;  // code/*.py → its checked text
    std::optional<std::string> data, constants;
    for (const auto& [name, r] : records) {
      if (name == "data.pkl") {
        data = read(name);
      } else if (name == "constants.pkl") {
        constants = read(name);
      } else if (name.rfind("data/", 0) == 0) {
        continue;  // storages: sized by their directory entries now, read once the pickle has named them
      } else if (name.rfind("code/", 0) == 0 && ends_with(name, ".py")) {
        std::string text = read(name);
        check_code(name, text);
        code.emplace(name, std::move(text));
      } else if (name == "byteorder") {
        if (read(name) != "little") refuse("byteorder is not little-endian");
      } else if (!(name == "version" || name.rfind(".data/", 0) == 0 || ends_with(name, ".debug_pkl"))) {
        refuse("unexpected record " + name);
      }
    }
    if (!data) refuse("no data.pkl");
    auto size_of = [&](const std::string& key) -> std::optional<size_t> {  // of the storage record data/KEY
      const auto it = records.find("data/" + key);
      if (it == records.end()) return std::nullopt;
      return it->second->size;
    };
    PickleCheck pickle("data.pkl", *data, size_of);
    if (pickle.run()->kind != Kind::Object) refuse("data.pkl does not hold a module");
    if (constants) {
      Ref c = PickleCheck("constants.pkl", *constants, size_of).run();
      if (c->kind != Kind::Tuple || !c->items.empty()) refuse("constants.pkl is not an empty tuple");
    }

    // The checked records, and nothing else, in a fresh archive.
    std::string out;
    caffe2::serialize::PyTorchStreamWriter writer([&out](const void* p, size_t n) {
      out.append(static_cast<const char*>(p), n);
      return n;
    });
    writer.writeRecord("data.pkl", data->data(), data->size());
    if (constants) writer.writeRecord("constants.pkl", constants->data(), constants->size());
    for (const auto& [name, text] : code) writer.writeRecord(name, text.data(), text.size());
    std::vector<std::string> keys = pickle.storages();
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    for (const auto& key : keys) {
      const std::string bytes = read("data/" + key);
      writer.writeRecord("data/" + key, bytes.data(), bytes.size());
    }
    writer.writeEndOfFile();
    return out;
  } catch (const Refusal& r) {
    throw UserError(path.string() + ": not a bilevel checkpoint (" + r.what + ")");
  } catch (const ZipError& e) {
    throw UserError(path.string() + ": unreadable checkpoint (" + e.what() + ")");
  }
}

}  // namespace bilevel
