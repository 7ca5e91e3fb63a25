// safetensors reader: mmaps each file, validates its JSON header against the
// file before any tensor is handed out, and indexes tensors by canonical name.
#include "engine/weights/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "nlohmann/json.hpp"

namespace moegraph {
namespace {

using json = nlohmann::json;

std::string ErrnoText() { return std::strerror(errno); }

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Short rendering of a header value for messages; containers are not dumped.
std::string Describe(const json& v) {
  if (v.is_object()) return "an object";
  if (v.is_array()) return absl::StrCat("an array of ", v.size());
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// safetensors dtype names: the float and integer types, and those of the
// released quantized checkpoints (FP8 e4m3 values, E8M0 scales, FP4 pairs
// packed in I8/U8). Anything else is refused naming the tensor and dtype.
absl::StatusOr<DType> ParseDType(const std::string& tensor, const json& v) {
  if (!v.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", tensor, "': dtype: expected a string, found ", Describe(v)));
  }
  const std::string& s = v.get_ref<const std::string&>();
  if (s == "F32") return DType::kF32;
  if (s == "BF16") return DType::kBF16;
  if (s == "F16") return DType::kF16;
  if (s == "I64") return DType::kI64;
  if (s == "I32") return DType::kI32;
  if (s == "F8_E4M3") return DType::kF8E4M3;
  if (s == "F8_E8M0") return DType::kE8M0;
  if (s == "I8") return DType::kI8;
  if (s == "U8") return DType::kU8;
  return absl::InvalidArgumentError(
      absl::StrCat("tensor '", tensor, "': unsupported dtype ", Describe(v),
                   " (supported: F32, BF16, F16, I64, I32, F8_E4M3, F8_E8M0, I8, U8)"));
}

absl::StatusOr<uint64_t> NonNegative(const std::string& what, const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0)
    return static_cast<uint64_t>(v.get<int64_t>());
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": expected a non-negative integer, found ", Describe(v)));
}

absl::Status WithPath(const std::string& path, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
}

// Replaces a leading `from` in `name` by `to`; true when it did.
bool ReplacePrefix(std::string& name, std::string_view from, std::string_view to) {
  if (name.compare(0, from.size(), from.data(), from.size()) != 0) return false;
  name = std::string(to) + name.substr(from.size());
  return true;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string CanonicalTensorName(std::string_view stored) {
  std::string name(stored);
  ReplacePrefix(name, "model.", "");
  if (name == "embed_tokens.weight") return "embed.weight";
  if (name == "lm_head.weight") return "head.weight";
  if (name == "hc_head.hc_fn") return "hc_head_fn";
  if (name == "hc_head.hc_base") return "hc_head_base";
  if (name == "hc_head.hc_scale") return "hc_head_scale";
  return name;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  return OpenImpl(path, /*headers_only=*/false);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::OpenHeader(
    const std::string& path) {
  return OpenImpl(path, /*headers_only=*/true);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::OpenImpl(const std::string& path,
                                                                           bool headers_only) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", ErrnoText()));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string err = ErrnoText();
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": fstat failed: ", err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  if (file_bytes < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": file is ", file_bytes, " bytes, too short for the 8-byte header length"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->headers_only_ = headers_only;
  const uint8_t* bytes = nullptr;
  std::string header_copy;  // headers_only: the length field and the header, read with pread
  if (headers_only) {
    uint8_t len[8];
    if (::pread(fd, len, 8, 0) != 8) {
      std::string err = ErrnoText();
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": reading the header length failed: ", err));
    }
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | len[i];
    const uint64_t want =
        std::min<uint64_t>(header_bytes, std::min(file_bytes - 8, kMaxHeaderBytes));
    header_copy.resize(8 + want);
    std::memcpy(header_copy.data(), len, 8);
    const ssize_t got = want > 0 ? ::pread(fd, header_copy.data() + 8, want, 8) : 0;
    std::string err = got < 0 ? ErrnoText() : "";
    ::close(fd);
    if (got != static_cast<ssize_t>(want)) {
      return absl::InternalError(absl::StrCat(path, ": reading the header failed: ", err));
    }
    bytes = reinterpret_cast<const uint8_t*>(header_copy.data());
  } else {
    void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    std::string map_err = map == MAP_FAILED ? ErrnoText() : "";
    ::close(fd);  // the mapping keeps the file open
    if (map == MAP_FAILED) {
      return absl::InternalError(absl::StrCat(path, ": mmap failed: ", map_err));
    }
    // From here the destructor owns (and unmaps) the mapping, also on error.
    file->map_ = map;
    file->map_bytes_ = file_bytes;
    bytes = static_cast<const uint8_t*>(map);
  }
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | bytes[i];
  if (header_bytes > file_bytes - 8) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header length ", header_bytes,
                                                   " exceeds the ", file_bytes - 8,
                                                   " bytes after the length field"));
  }
  if (header_bytes > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header length ", header_bytes,
                                                   " exceeds the limit of ", kMaxHeaderBytes));
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_bytes);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header: expected a JSON object, found ", Describe(header)));
  }

  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - data_start;
  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  for (const auto& [name, desc] : header.items()) {
    if (name == "__metadata__") {
      if (!desc.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": __metadata__: expected an object of strings, found ", Describe(desc)));
      }
      for (const auto& [key, value] : desc.items()) {
        if (!value.is_string()) {
          return absl::InvalidArgumentError(absl::StrCat(
              path, ": __metadata__.", key, ": expected a string, found ", Describe(value)));
        }
      }
      continue;
    }
    const std::string where = absl::StrCat(path, ": tensor '", name, "'");
    if (!desc.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": expected an object {dtype, shape, data_offsets}, found ", Describe(desc)));
    }
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!desc.contains(key)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": missing '", key, "'"));
      }
    }
    absl::StatusOr<DType> dtype = ParseDType(name, desc["dtype"]);
    if (!dtype.ok()) return WithPath(path, dtype.status());

    const json& shape_json = desc["shape"];
    if (!shape_json.is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": shape: expected an array of non-negative integers, found ",
                       Describe(shape_json)));
    }
    Entry entry{};
    entry.dtype = *dtype;
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& d : shape_json) {
      ASSIGN_OR_RETURN(uint64_t dim, NonNegative(absl::StrCat(where, ": shape entry"), d));
      if (dim > static_cast<uint64_t>(INT64_MAX)) overflow = true;
      // Tensor::numel() is int64_t: every prefix product must fit in it.
      overflow = overflow || __builtin_mul_overflow(numel, dim, &numel) ||
                 numel > static_cast<uint64_t>(INT64_MAX);
      entry.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t expected_bytes = 0;
    overflow = overflow || __builtin_mul_overflow(numel, DTypeSize(*dtype), &expected_bytes);

    const json& offsets = desc["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": data_offsets: expected [begin, end], found ", Describe(offsets)));
    }
    ASSIGN_OR_RETURN(uint64_t begin,
                     NonNegative(absl::StrCat(where, ": data_offsets[0]"), offsets[0]));
    ASSIGN_OR_RETURN(uint64_t end,
                     NonNegative(absl::StrCat(where, ": data_offsets[1]"), offsets[1]));
    // Header-only: the data need not be there (a checkpoint's directory, for planning).
    if (begin > end || (!headers_only && end > data_bytes)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": data_offsets [", begin, ", ", end,
                                                     "] lie outside the data section of ",
                                                     data_bytes, " bytes"));
    }
    if (overflow || end - begin != expected_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": data_offsets span ", end - begin, " bytes but dtype ", DTypeName(*dtype),
          " x shape ", ShapeText(entry.shape), " needs ",
          overflow ? std::string("more than 64-bit sizes hold") : absl::StrCat(expected_bytes)));
    }
    entry.bytes = static_cast<size_t>(expected_bytes);
    const uint64_t file_offset = data_start + begin;
    entry.data = headers_only ? nullptr : bytes + file_offset;
    if (!headers_only && entry.bytes > 0 && file_offset % DTypeSize(*dtype) != 0) {
      // Writers pad the header so tensors are aligned; copy the rare one that is not.
      auto copy = std::make_unique<uint64_t[]>((entry.bytes + 7) / 8);
      std::memcpy(copy.get(), entry.data, entry.bytes);
      entry.data = copy.get();
      file->aligned_copies_.push_back(std::move(copy));
    }
    // (A name repeated in the header JSON keeps its last value, as in Python.)
    auto it = file->entries_.insert_or_assign(name, std::move(entry)).first;
    if (end > begin) spans.push_back({begin, end, &it->first});
  }

  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin < spans[i - 1].end) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensors '", *spans[i - 1].name, "' [", spans[i - 1].begin, ", ",
                       spans[i - 1].end, ") and '", *spans[i].name, "' [", spans[i].begin, ", ",
                       spans[i].end, ") overlap"));
    }
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_bytes_);
}

absl::StatusOr<std::unique_ptr<WeightStore>> WeightStore::Open(const std::string& model_dir) {
  return OpenDir(model_dir, /*headers_only=*/false);
}

absl::StatusOr<std::unique_ptr<WeightStore>> WeightStore::OpenHeaders(
    const std::string& model_dir) {
  return OpenDir(model_dir, /*headers_only=*/true);
}

absl::StatusOr<std::unique_ptr<WeightStore>> WeightStore::OpenDir(const std::string& model_dir,
                                                                  bool headers_only) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  const fs::path index_path = dir / "model.safetensors.index.json";
  const fs::path single_path = dir / "model.safetensors";
  std::unique_ptr<WeightStore> store(new WeightStore());
  store->origin_ = model_dir;
  store->headers_only_ = headers_only;
  std::error_code ec;

  // Which file each tensor (stored name) should come from, for sharded sets.
  std::map<std::string, std::string> expected_file;
  std::vector<std::string> shard_names;
  if (fs::exists(index_path, ec)) {
    const std::string ipath = index_path.string();
    ASSIGN_OR_RETURN(std::string text, ReadSmallFile(ipath));
    json index;
    try {
      index = json::parse(text);
    } catch (const json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(ipath, ": not valid JSON: ", e.what()));
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(ipath, ": weight_map: expected an object {tensor name: file name}"));
    }
    std::set<std::string> seen;
    for (const auto& [tensor, file] : index["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            ipath, ": weight_map['", tensor, "']: expected a file name, found ", Describe(file)));
      }
      const std::string fname = file.get<std::string>();
      const fs::path rel(fname);
      if (fname.empty() || rel.is_absolute() || rel.has_parent_path() || fname == "." ||
          fname == "..") {
        return absl::InvalidArgumentError(absl::StrCat(
            ipath, ": weight_map['", tensor,
            "']: expected a file name inside the model directory, found '", fname, "'"));
      }
      if (seen.insert(fname).second) {
        if (!fs::is_regular_file(dir / rel, ec)) {
          return absl::NotFoundError(absl::StrCat(ipath, ": weight_map lists '", fname,
                                                  "' (for tensor '", tensor,
                                                  "'), which is not a file in ", model_dir));
        }
        shard_names.push_back(fname);
      }
      expected_file[tensor] = fname;
    }
  } else if (fs::is_regular_file(single_path, ec)) {
    shard_names.push_back("model.safetensors");
  } else {
    return absl::NotFoundError(absl::StrCat(
        model_dir, ": neither model.safetensors nor model.safetensors.index.json found"));
  }

  for (const std::string& shard : shard_names) {
    const std::string shard_path = (dir / shard).string();
    ASSIGN_OR_RETURN(
        std::unique_ptr<SafetensorsFile> f,
        headers_only ? SafetensorsFile::OpenHeader(shard_path) : SafetensorsFile::Open(shard_path));
    store->files_.push_back(std::move(f));
  }
  // Stored name -> file it was found in, to check the index; canonical name ->
  // stored name, to report duplicates.
  std::map<std::string, const SafetensorsFile*> found_in;
  std::map<std::string, std::string> stored_as;
  for (const auto& f : store->files_) {
    for (const auto& [name, entry] : f->entries()) {
      const std::string canonical = CanonicalTensorName(name);
      auto [it, inserted] = stored_as.emplace(canonical, name);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat(
            model_dir, ": tensor '", canonical, "' is stored twice: as '", it->second, "' in ",
            found_in[it->second]->path(), " and as '", name, "' in ", f->path()));
      }
      store->by_name_.emplace(canonical, &entry);
      found_in[name] = f.get();
    }
  }
  for (const auto& [tensor, fname] : expected_file) {
    auto it = found_in.find(tensor);
    const std::string want = (dir / fname).string();
    if (it == found_in.end() || it->second->path() != want) {
      return absl::InvalidArgumentError(
          absl::StrCat((dir / "model.safetensors.index.json").string(),
                       ": weight_map puts tensor '", tensor, "' in ", fname, ", but ",
                       it == found_in.end() ? std::string("no shard holds it")
                                            : absl::StrCat("it is in ", it->second->path())));
    }
  }
  return store;
}

absl::StatusOr<std::unique_ptr<WeightStore>> WeightStore::OpenFile(const std::string& path) {
  std::unique_ptr<WeightStore> store(new WeightStore());
  store->origin_ = path;
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::Open(path));
  for (const auto& [name, entry] : f->entries()) store->by_name_.emplace(name, &entry);
  store->files_.push_back(std::move(f));
  return store;
}

bool WeightStore::Has(std::string_view name) const { return by_name_.find(name) != by_name_.end(); }

absl::StatusOr<Tensor> WeightStore::Get(std::string_view name, std::vector<int64_t> shape,
                                        std::vector<DType> dtypes) const {
  const std::string n(name);
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    return absl::NotFoundError(
        absl::StrCat(n, ": tensor not found in ", origin_, " (", by_name_.size(), " tensors)"));
  }
  const SafetensorsFile::Entry& e = *it->second;
  if (!shape.empty() && shape != e.shape) {
    return absl::InvalidArgumentError(
        absl::StrCat(n, ": expected shape ", ShapeText(shape), ", found ", ShapeText(e.shape)));
  }
  if (!dtypes.empty() && std::find(dtypes.begin(), dtypes.end(), e.dtype) == dtypes.end()) {
    std::vector<std::string> names;
    for (DType d : dtypes) names.push_back(DTypeName(d));
    return absl::InvalidArgumentError(absl::StrCat(
        n, ": expected dtype ", absl::StrJoin(names, " or "), ", found ", DTypeName(e.dtype)));
  }
  Tensor t;
  if (e.shape.size() > t.shape.size()) {
    return absl::InvalidArgumentError(absl::StrCat(n, ": rank ", e.shape.size(),
                                                   " exceeds the supported ", t.shape.size(),
                                                   " (shape ", ShapeText(e.shape), ")"));
  }
  // The view is read-only in practice (see the header); Tensor has no const form.
  t.data = const_cast<void*>(e.data);
  t.dtype = e.dtype;
  t.rank = static_cast<int>(e.shape.size());
  for (int i = 0; i < t.rank; ++i) t.shape[i] = e.shape[i];
  return t;
}

std::vector<std::string> WeightStore::Names() const {
  std::vector<std::string> names;
  names.reserve(by_name_.size());
  for (const auto& [name, entry] : by_name_) names.push_back(name);
  return names;
}

}  // namespace moegraph
