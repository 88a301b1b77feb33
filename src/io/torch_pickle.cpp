#include "io/torch_pickle.h"

#include <cctype>
#include <cstring>
#include <deque>
#include <iterator>
#include <map>
#include <unordered_map>

namespace diffuse::io {

namespace {

struct StorageInfo {
  const char* name;
  size_t size;
  DType dtype;
};

// Indexed by TorchStorageType.
constexpr StorageInfo kStorageInfo[] = {
    {"FloatStorage", 4, DType::F32}, {"DoubleStorage", 8, DType::F32},
    {"HalfStorage", 2, DType::F16},  {"BFloat16Storage", 2, DType::BF16},
    {"LongStorage", 8, DType::I64},  {"IntStorage", 4, DType::I32},
    {"ShortStorage", 2, DType::I32}, {"CharStorage", 1, DType::I8},
    {"ByteStorage", 1, DType::U8},   {"BoolStorage", 1, DType::U8}};

}  // namespace

size_t torch_storage_element_size(TorchStorageType t) {
  return kStorageInfo[int(t)].size;
}
const char* torch_storage_type_name(TorchStorageType t) {
  return kStorageInfo[int(t)].name;
}
DType torch_storage_dtype(TorchStorageType t) {
  return kStorageInfo[int(t)].dtype;
}

namespace {

// Sizes and element counts a pickle may claim; far above any real checkpoint, low enough that
// products of two of them cannot overflow int64.
constexpr int64_t kMaxDim = int64_t(1) << 48;
constexpr int64_t kMaxNumel = int64_t(1) << 50;
// Expanded views (stride 0) may hold more elements than their storages, up to this many in all
// (each is materialised as a copy).
constexpr int64_t kMaxExpandedNumel = int64_t(1) << 24;
// The work a pickle may cause, so that a small file cannot make a large heap or a long run:
// items kept in containers, and items copied (call arguments, set/dict construction), each a
// base plus a multiple of the pickle's size. torch.save's pickles stay far below (about one
// item per 10 bytes, copied once).
constexpr uint64_t kItemsBase = uint64_t(1) << 20, kItemsPerByte = 4;
constexpr uint64_t kCopiesBase = uint64_t(1) << 24, kCopiesPerByte = 64;
// A GLOBAL's module or name longer than this is not a Python identifier path.
constexpr size_t kMaxGlobalName = 512;

// Value kinds. Global: a class or function named by GLOBAL, never imported. Object: an inert
// instance of an unknown class (its arguments and state are dropped). Storage: a persistent id
// ('storage', type, key, location, numel).
enum class Kind : uint8_t {
  None,
  Bool,
  Int,
  BigInt,
  Float,
  Str,
  Bytes,
  Tuple,
  List,
  Dict,
  Set,
  Global,
  Object,
  Storage,
  Tensor
};

// What a global means to this reader. Anything not listed is Unknown (inert when called).
enum class Fn : uint8_t {
  Unknown,
  RebuildTensor,
  RebuildTensorV2,
  RebuildParameter,
  RebuildFromTypeV2,
  OrderedDict,
  TorchSize,
  StorageClass,
  SetCtor
};

struct Value {
  Kind kind = Kind::None;
  int64_t i = 0;     // Bool, Int
  double f = 0;      // Float
  uint32_t ref = 0;  // index of the Node for every heap kind
};

struct Node {
  std::string text;          // Str/Bytes: contents; Global/Object: "module.name"
  std::vector<Value> items;  // Tuple/List/Set: elements; Dict: key, value, key, value, ...
  Fn fn = Fn::Unknown;       // Global
  TorchStorageType storage_type = TorchStorageType::F32;  // Global StorageClass
  uint32_t record = 0;                                    // Storage/Tensor: index into records_
};

// Whether a space-separated list holds the word.
bool listed(std::string_view list, std::string_view word) {
  size_t p = 0;
  while ((p = list.find(word, p)) != std::string_view::npos) {
    size_t e = p + word.size();
    if ((p == 0 || list[p - 1] == ' ') && (e == list.size() || list[e] == ' ')) return true;
    p = e;
  }
  return false;
}

// Modules whose members run code, touch files or processes, or reach other callables.
bool code_running_module(std::string_view module) {
  static constexpr std::string_view kRoots =
      "os posix nt posixpath ntpath sys subprocess builtins __builtin__ shutil importlib socket "
      "pty runpy code codeop commands ctypes multiprocessing pickle _pickle cPickle marshal "
      "webbrowser io _io pathlib tempfile signal threading _thread asyncio types functools "
      "operator _operator inspect pdb bdb timeit platform site pydoc urllib http ftplib smtplib "
      "telnetlib requests pip setuptools distutils imp zipimport gc trace cProfile profile dill "
      "shelve";
  return listed(kRoots, module.substr(0, module.find('.')));
}

// Names that run code in whatever module they are found.
bool code_running_name(std::string_view name) {
  static constexpr std::string_view kNames =
      "eval exec execfile compile __import__ getattr setattr delattr globals locals vars system "
      "popen breakpoint import_module apply __reduce__ __reduce_ex__ __builtins__ "
      "__getattribute__ __globals__";
  return listed(kNames, name);
}

class Unpickler {
 public:
  Unpickler(std::string_view bytes, const std::string& path)
      : b_(bytes),
        path_(path),
        items_left_(kItemsBase + kItemsPerByte * bytes.size()),
        copies_left_(kCopiesBase + kCopiesPerByte * bytes.size()) {}

  std::vector<std::pair<std::string, TorchTensorRecord>> run() {
    Value root = execute();
    return extract(root);
  }

 private:
  // ---- errors and raw reads ----
  [[noreturn]] void corrupt(const std::string& why) const {
    DF_FAIL(path_, ": corrupt checkpoint: data.pkl at byte ", op_pos_, ": ", why);
  }
  void need(uint64_t n) const {
    if (n > b_.size() - pos_) corrupt("truncated (needs " + std::to_string(n) + " more bytes)");
  }
  uint64_t uint_le(int n) {
    need(uint64_t(n));
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v |= uint64_t(uint8_t(b_[pos_ + size_t(k)])) << (8 * k);
    pos_ += size_t(n);
    return v;
  }
  std::string_view take(uint64_t n) {
    need(n);
    std::string_view s = b_.substr(pos_, size_t(n));
    pos_ += size_t(n);
    return s;
  }
  std::string_view line() {
    size_t e = b_.find('\n', pos_);
    if (e == std::string_view::npos) corrupt("truncated text argument (no newline)");
    std::string_view s = b_.substr(pos_, e - pos_);
    pos_ = e + 1;
    return s;
  }
  int64_t line_int(std::string_view s) {
    if (!s.empty() && s.back() == 'L') s.remove_suffix(1);
    int64_t v = 0;
    bool neg = !s.empty() && s[0] == '-';
    size_t k = neg ? 1 : 0;
    if (k >= s.size()) corrupt("bad integer literal");
    for (; k < s.size(); ++k) {
      if (s[k] < '0' || s[k] > '9') corrupt("bad integer literal");
      if (v > (INT64_MAX - 9) / 10) corrupt("integer literal too large");
      v = v * 10 + (s[k] - '0');
    }
    return neg ? -v : v;
  }

  // ---- the work budget ----
  void keep_items(uint64_t n) {
    if (n > items_left_) corrupt("the pickle builds containers of too many items (refused)");
    items_left_ -= n;
  }
  void copy_items(uint64_t n) {
    if (n > copies_left_) corrupt("the pickle copies too many items (refused)");
    copies_left_ -= n;
  }

  // ---- values and the stack ----
  Value make(Kind k, Node n = {}) {
    if (nodes_.size() >= UINT32_MAX) corrupt("too many objects");
    keep_items(n.items.size());
    nodes_.push_back(std::move(n));
    Value v;
    v.kind = k;
    v.ref = uint32_t(nodes_.size() - 1);
    return v;
  }
  Value make_int(int64_t i, Kind k = Kind::Int) {
    Value v;
    v.kind = k;
    v.i = i;
    return v;
  }
  Value make_str(std::string_view s, Kind k = Kind::Str) {
    Node n;
    n.text = std::string(s);
    return make(k, std::move(n));
  }
  Node& node(const Value& v) { return nodes_[v.ref]; }

  size_t frame_base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Value v) { stack_.push_back(v); }
  Value pop() {
    if (stack_.size() <= frame_base()) corrupt("stack underflow");
    Value v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value& top() {
    if (stack_.size() <= frame_base()) corrupt("stack underflow");
    return stack_.back();
  }
  std::vector<Value> pop_mark() {
    if (marks_.empty()) corrupt("no MARK on the stack");
    size_t k = marks_.back();
    marks_.pop_back();
    std::vector<Value> items(stack_.begin() + std::ptrdiff_t(k), stack_.end());
    stack_.resize(k);
    return items;
  }

  // ---- globals and calls ----
  Value global(std::string_view module, std::string_view name) {
    if (module.size() > kMaxGlobalName || name.size() > kMaxGlobalName)
      corrupt("a global's name is too long");
    std::string full = std::string(module) + "." + std::string(name);
    Node n;
    n.text = full;
    auto is = [&](const char* m, const char* nm) { return module == m && name == nm; };
    bool builtin = module == "builtins" || module == "__builtin__";
    if (builtin && (name == "set" || name == "frozenset")) {
      n.fn = Fn::SetCtor;
    } else if (builtin && (name == "bytearray" || name == "complex" || name == "slice" ||
                           name == "range" || name == "object" || name == "bytes")) {
      n.fn = Fn::Unknown;  // plain data: an inert object is enough
    } else if (code_running_module(module) || code_running_name(name)) {
      DF_FAIL("refusing to load ", path_, ": its pickle calls ", full,
              ", which would run code (a checkpoint may hold only data; nothing was executed)");
    } else if (is("torch._utils", "_rebuild_tensor")) {
      n.fn = Fn::RebuildTensor;
    } else if (is("torch._utils", "_rebuild_tensor_v2")) {
      n.fn = Fn::RebuildTensorV2;
    } else if (is("torch._utils", "_rebuild_parameter") ||
               is("torch._utils", "_rebuild_parameter_with_state")) {
      n.fn = Fn::RebuildParameter;
    } else if (is("torch._tensor", "_rebuild_from_type_v2")) {
      n.fn = Fn::RebuildFromTypeV2;
    } else if (is("collections", "OrderedDict")) {
      n.fn = Fn::OrderedDict;
    } else if (is("torch", "Size")) {
      n.fn = Fn::TorchSize;
    } else if (module == "torch" || module == "torch.storage") {
      for (int t = 0; t < int(std::size(kStorageInfo)); ++t)
        if (name == kStorageInfo[t].name) {
          n.fn = Fn::StorageClass;
          n.storage_type = TorchStorageType(t);
        }
      if (name == "UntypedStorage") {
        n.fn = Fn::StorageClass;
        n.storage_type = TorchStorageType::U8;
      }
    }
    return make(Kind::Global, std::move(n));
  }

  Value inert_object(const Value& callable) {
    Node n;
    n.text =
        callable.kind == Kind::Global || callable.kind == Kind::Object ? node(callable).text : "?";
    return make(Kind::Object, std::move(n));
  }

  int64_t int_arg(const Value& v, const char* what) {
    if (v.kind != Kind::Int && v.kind != Kind::Bool) corrupt(std::string(what) + " is not an int");
    return v.i;
  }
  Shape int_tuple(const Value& v, const char* what) {
    if (v.kind != Kind::Tuple && v.kind != Kind::List)
      corrupt(std::string(what) + " is not a tuple");
    const auto& items = node(v).items;
    if (items.size() > 64) corrupt(std::string(what) + " has too many dims");
    Shape s;
    for (const Value& x : items) {
      int64_t d = int_arg(x, what);
      if (d < 0 || d > kMaxDim) corrupt(std::string(what) + " holds " + std::to_string(d));
      s.push_back(d);
    }
    return s;
  }

  Value rebuild_tensor(const std::vector<Value>& a) {
    if (a.size() < 4) corrupt("tensor rebuild with " + std::to_string(a.size()) + " arguments");
    if (a[0].kind != Kind::Storage) corrupt("tensor rebuild without a storage");
    TorchTensorRecord r = records_[node(a[0]).record];
    r.offset = int_arg(a[1], "storage offset");
    r.shape = int_tuple(a[2], "tensor size");
    r.strides = int_tuple(a[3], "tensor stride");
    if (r.offset < 0 || r.offset > kMaxNumel) corrupt("bad storage offset");
    if (r.strides.size() != r.shape.size()) corrupt("size and stride differ in length");
    int64_t numel = 1, last = r.offset;
    for (size_t d = 0; d < r.shape.size(); ++d) {
      if (r.shape[d] == 0) numel = 0;
      if (numel != 0 && r.shape[d] > kMaxNumel / numel) corrupt("tensor too large");
      numel *= r.shape[d];
    }
    if (numel > 0) {
      for (size_t d = 0; d < r.shape.size(); ++d) {
        int64_t term;
        if (__builtin_mul_overflow(r.shape[d] - 1, r.strides[d], &term) ||
            __builtin_add_overflow(last, term, &last))
          corrupt("tensor view overflows");
      }
      if (last >= r.storage_numel)
        corrupt("tensor view [offset " + std::to_string(r.offset) + ", size " + shape_str(r.shape) +
                "] reaches past its storage of " + std::to_string(r.storage_numel) + " elements");
      if (numel > r.storage_numel && (expanded_ += numel) > kMaxExpandedNumel)
        corrupt("expanded tensor views of " + std::to_string(expanded_) +
                " elements in all (more than their storages hold) are too large");
    }
    records_.push_back(std::move(r));
    Node n;
    n.record = uint32_t(records_.size() - 1);
    return make(Kind::Tensor, std::move(n));
  }

  // Gives an allow-listed callable its data meaning; anything else yields an inert object.
  Value call(const Value& fn, const Value& args, int depth) {
    if (fn.kind == Kind::Object) return inert_object(fn);
    if (fn.kind != Kind::Global) corrupt("call of a non-callable value");
    if (args.kind != Kind::Tuple) corrupt("call arguments are not a tuple");
    copy_items(node(args).items.size());
    const std::vector<Value> a = node(args).items;
    switch (node(fn).fn) {
      case Fn::RebuildTensor:
      case Fn::RebuildTensorV2:
        return rebuild_tensor(a);
      case Fn::RebuildParameter:
        if (a.empty()) corrupt("parameter rebuild without data");
        return a[0];
      case Fn::RebuildFromTypeV2:
        // (func, new_type, args, state): the tensor is func(*args); the subclass is dropped
        if (a.size() < 3 || depth > 4) corrupt("bad _rebuild_from_type_v2 call");
        return call(a[0], a[2], depth + 1);
      case Fn::OrderedDict: {
        Value d = make(Kind::Dict);
        if (!a.empty() && a[0].kind == Kind::List) {
          copy_items(node(a[0]).items.size());
          for (const Value& kv : std::vector<Value>(node(a[0]).items))
            if (kv.kind == Kind::Tuple && node(kv).items.size() == 2) {
              keep_items(2);
              Value k = node(kv).items[0], v = node(kv).items[1];
              node(d).items.push_back(k);
              node(d).items.push_back(v);
            }
        }
        return d;
      }
      case Fn::TorchSize:
        if (a.size() == 1 && a[0].kind == Kind::Tuple) return a[0];
        return make(Kind::Tuple);
      case Fn::SetCtor: {
        Value s = make(Kind::Set);
        if (!a.empty() && (a[0].kind == Kind::List || a[0].kind == Kind::Tuple)) {
          keep_items(node(a[0]).items.size());
          node(s).items = std::vector<Value>(node(a[0]).items);
        }
        return s;
      }
      case Fn::StorageClass:
      case Fn::Unknown:
        return inert_object(fn);
    }
    return inert_object(fn);
  }

  Value persistent_load(const Value& pid) {
    if (pid.kind != Kind::Tuple) corrupt("persistent id is not a tuple");
    if (node(pid).items.size() != 5) corrupt("persistent id is not a 5-tuple");
    const std::vector<Value> a = node(pid).items;
    if (a.size() != 5 || a[0].kind != Kind::Str || node(a[0]).text != "storage")
      corrupt("persistent id is not ('storage', type, key, location, numel)");
    if (a[1].kind != Kind::Global || node(a[1]).fn != Fn::StorageClass)
      corrupt("persistent id names an unknown storage type");
    if (a[2].kind != Kind::Str) corrupt("storage key is not a string");
    const std::string& key = node(a[2]).text;
    if (key.empty() || key.size() > 64) corrupt("bad storage key");
    for (char c : key)
      if (!std::isalnum(uint8_t(c)) && c != '_' && c != '-' && c != '.') corrupt("bad storage key");
    int64_t numel = int_arg(a[4], "storage size");
    if (numel < 0 || numel > kMaxNumel) corrupt("bad storage size " + std::to_string(numel));
    TorchTensorRecord r;
    r.storage_key = key;
    r.storage_type = node(a[1]).storage_type;
    r.storage_numel = numel;
    records_.push_back(std::move(r));
    Node n;
    n.record = uint32_t(records_.size() - 1);
    return make(Kind::Storage, std::move(n));
  }

  // Adds the mark's items to the container below it.
  void extend(const Value& target, std::vector<Value> items, Kind want) {
    if (target.kind == Kind::Object) return;  // inert: a list/dict subclass we do not know
    if (target.kind != want) corrupt("items added to a value of the wrong type");
    if (want == Kind::Dict && items.size() % 2 != 0) corrupt("odd number of dict items");
    keep_items(items.size());
    auto& dst = node(target).items;
    dst.insert(dst.end(), items.begin(), items.end());
  }

  Value float_from_text(std::string_view s) {
    std::string t(s);
    char* end = nullptr;
    Value v;
    v.kind = Kind::Float;
    v.f = std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size()) corrupt("bad float literal");
    return v;
  }

  Value long_bytes(uint64_t n) {
    if (n > 8) {
      take(n);
      return make_int(0, Kind::BigInt);
    }
    uint64_t u = uint_le(int(n));
    if (n > 0 && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~uint64_t(0) << (8 * n);  // sign-extend
    return make_int(int64_t(u));
  }

  uint64_t memo_index_text() {
    int64_t i = line_int(line());
    if (i < 0) corrupt("negative memo index");
    return uint64_t(i);
  }
  Value memo_get(uint64_t i) {
    auto it = memo_.find(i);
    if (it == memo_.end()) corrupt("memo entry " + std::to_string(i) + " read before it is set");
    return it->second;
  }

  Value execute() {
    while (true) {
      op_pos_ = pos_;
      if (pos_ >= b_.size()) corrupt("truncated: no STOP opcode");
      const uint8_t op = uint8_t(b_[pos_++]);
      switch (op) {
        case 0x80: {  // PROTO
          if (uint_le(1) > 5) corrupt("unsupported pickle protocol");
          break;
        }
        case 0x95:
          uint_le(8);
          break;  // FRAME: framing only
        case '}':
          push(make(Kind::Dict));
          break;
        case ']':
          push(make(Kind::List));
          break;
        case ')':
          push(make(Kind::Tuple));
          break;
        case 0x8f:
          push(make(Kind::Set));
          break;  // EMPTY_SET
        case '(':
          marks_.push_back(stack_.size());
          break;
        case 'X':
          push(make_str(take(uint_le(4))));
          break;  // BINUNICODE
        case 0x8c:
          push(make_str(take(uint_le(1))));
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push(make_str(take(uint_le(8))));
          break;  // BINUNICODE8
        case 'V':
          push(make_str(line()));
          break;     // UNICODE
        case 'T': {  // BINSTRING
          uint64_t n = uint_le(4);
          if (n >= 0x80000000u) corrupt("negative string length");
          push(make_str(take(n)));
          break;
        }
        case 'U':
          push(make_str(take(uint_le(1))));
          break;     // SHORT_BINSTRING
        case 'S': {  // STRING: a quoted repr
          std::string_view s = line();
          if (s.size() >= 2 && (s[0] == '\'' || s[0] == '"') && s.back() == s[0])
            s = s.substr(1, s.size() - 2);
          push(make_str(s));
          break;
        }
        case 'B':
          push(make_str(take(uint_le(4)), Kind::Bytes));
          break;  // BINBYTES
        case 'C':
          push(make_str(take(uint_le(1)), Kind::Bytes));
          break;    // SHORT_BINBYTES
        case 0x8e:  // BINBYTES8
        case 0x96:
          push(make_str(take(uint_le(8)), Kind::Bytes));
          break;  // BYTEARRAY8
        case 'J':
          push(make_int(int32_t(uint32_t(uint_le(4)))));
          break;  // BININT
        case 'K':
          push(make_int(int64_t(uint_le(1))));
          break;  // BININT1
        case 'M':
          push(make_int(int64_t(uint_le(2))));
          break;     // BININT2
        case 'I': {  // INT
          std::string_view s = line();
          if (s == "00" || s == "01")
            push(make_int(s == "01", Kind::Bool));
          else
            push(make_int(line_int(s)));
          break;
        }
        case 'L':
          push(make_int(line_int(line())));
          break;  // LONG
        case 0x8a:
          push(long_bytes(uint_le(1)));
          break;      // LONG1
        case 0x8b: {  // LONG4
          uint64_t n = uint_le(4);
          if (n >= 0x80000000u) corrupt("negative long length");
          push(long_bytes(n));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          std::string_view s = take(8);
          uint64_t u = 0;
          for (char c : s) u = (u << 8) | uint8_t(c);
          Value v;
          v.kind = Kind::Float;
          std::memcpy(&v.f, &u, 8);
          push(v);
          break;
        }
        case 'F':
          push(float_from_text(line()));
          break;
        case 0x88:
          push(make_int(1, Kind::Bool));
          break;  // NEWTRUE
        case 0x89:
          push(make_int(0, Kind::Bool));
          break;  // NEWFALSE
        case 'N':
          push(Value{});
          break;
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          size_t n = size_t(op - 0x84);
          Node t;
          t.items.resize(n);
          for (size_t k = n; k-- > 0;) t.items[k] = pop();
          push(make(Kind::Tuple, std::move(t)));
          break;
        }
        case 't':
        case 'l': {  // TUPLE, LIST
          Node t;
          t.items = pop_mark();
          push(make(op == 't' ? Kind::Tuple : Kind::List, std::move(t)));
          break;
        }
        case 0x91: {  // FROZENSET
          Node t;
          t.items = pop_mark();
          push(make(Kind::Set, std::move(t)));
          break;
        }
        case 'd': {  // DICT
          Node t;
          t.items = pop_mark();
          if (t.items.size() % 2 != 0) corrupt("odd number of dict items");
          push(make(Kind::Dict, std::move(t)));
          break;
        }
        case 's': {  // SETITEM
          Value v = pop(), k = pop();
          extend(top(), {k, v}, Kind::Dict);
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<Value> items = pop_mark();
          extend(top(), std::move(items), Kind::Dict);
          break;
        }
        case 'a': {  // APPEND
          Value v = pop();
          extend(top(), {v}, Kind::List);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<Value> items = pop_mark();
          extend(top(), std::move(items), Kind::List);
          break;
        }
        case 0x90: {  // ADDITEMS
          std::vector<Value> items = pop_mark();
          extend(top(), std::move(items), Kind::Set);
          break;
        }
        case 'q':
          memo_[uint_le(1)] = top();
          break;  // BINPUT
        case 'r':
          memo_[uint_le(4)] = top();
          break;  // LONG_BINPUT
        case 'p':
          memo_[memo_index_text()] = top();
          break;  // PUT
        case 0x94:
          memo_[memo_.size()] = top();
          break;  // MEMOIZE
        case 'h':
          push(memo_get(uint_le(1)));
          break;  // BINGET
        case 'j':
          push(memo_get(uint_le(4)));
          break;  // LONG_BINGET
        case 'g':
          push(memo_get(memo_index_text()));
          break;     // GET
        case 'c': {  // GLOBAL
          std::string module(line());
          std::string_view name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Value name = pop(), module = pop();
          if (name.kind != Kind::Str || module.kind != Kind::Str)
            corrupt("STACK_GLOBAL of non-strings");
          std::string m = node(module).text;
          push(global(m, node(name).text));
          break;
        }
        case 'R': {  // REDUCE
          Value args = pop(), fn = pop();
          push(call(fn, args, 0));
          break;
        }
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
          Value args = pop(), cls = pop();
          if (cls.kind == Kind::Global &&
              (node(cls).fn == Fn::OrderedDict || node(cls).fn == Fn::SetCtor))
            push(make(node(cls).fn == Fn::OrderedDict ? Kind::Dict : Kind::Set));
          else if (cls.kind == Kind::Global || cls.kind == Kind::Object)
            push(inert_object(cls));
          else
            corrupt("NEWOBJ of a non-class");
          (void)args;
          break;
        }
        case 0x92: {  // NEWOBJ_EX
          pop();      // kwargs
          pop();      // args
          Value cls = pop();
          if (cls.kind != Kind::Global && cls.kind != Kind::Object)
            corrupt("NEWOBJ_EX of a non-class");
          push(inert_object(cls));
          break;
        }
        case 'i': {  // INST: module, name, then args from the mark
          std::string module(line());
          std::string_view name = line();
          Value cls = global(module, name);
          pop_mark();
          push(inert_object(cls));
          break;
        }
        case 'o': {  // OBJ: mark, cls, args...
          std::vector<Value> items = pop_mark();
          if (items.empty() || (items[0].kind != Kind::Global && items[0].kind != Kind::Object))
            corrupt("OBJ of a non-class");
          push(inert_object(items[0]));
          break;
        }
        case 'b': {  // BUILD: state is dropped, the object stays as it is
          pop();
          top();
          break;
        }
        case 'Q': {  // BINPERSID
          Value pid = pop();
          push(persistent_load(pid));
          break;
        }
        case 'P':
          corrupt("text persistent ids are not used by torch.save");
        case '0':  // POP
          if (stack_.size() > frame_base())
            stack_.pop_back();
          else
            pop_mark();
          break;
        case '1':
          pop_mark();
          break;  // POP_MARK
        case '2':
          push(top());
          break;  // DUP
        case '.':
          return pop();  // STOP
        default: {
          static const char* kHex = "0123456789abcdef";
          corrupt(std::string("unsupported opcode 0x") + kHex[op >> 4] + kHex[op & 15]);
        }
      }
    }
  }

  // ---- the result ----
  const Node* find_dict(const Node& d, const char* key) {
    const Node* found = nullptr;
    for (size_t k = 0; k + 1 < d.items.size(); k += 2)
      if (d.items[k].kind == Kind::Str && node(d.items[k]).text == key) {
        const Value& v = d.items[k + 1];
        found = v.kind == Kind::Dict ? &node(v) : nullptr;
      }
    return found;
  }

  std::vector<std::pair<std::string, TorchTensorRecord>> extract(const Value& root) {
    if (root.kind != Kind::Dict)
      DF_FAIL(path_, ": the checkpoint holds no dict of tensors (its pickle's top level is ",
              root.kind == Kind::Object ? "an object of class " + node(root).text
                                        : std::string("not a dict"),
              ")");
    const Node* top = &node(root);
    if (const Node* sd = find_dict(*top, "state_dict")) top = sd;
    std::vector<std::pair<std::string, TorchTensorRecord>> out;
    std::map<std::string, size_t> index;
    for (size_t k = 0; k + 1 < top->items.size(); k += 2) {
      const Value& key = top->items[k];
      const Value& v = top->items[k + 1];
      if (key.kind != Kind::Str || v.kind != Kind::Tensor) continue;
      const std::string& name = node(key).text;
      const TorchTensorRecord& r = records_[node(v).record];
      auto it = index.find(name);
      if (it != index.end()) {
        out[it->second].second = r;
      } else {
        index[name] = out.size();
        out.emplace_back(name, r);
      }
    }
    if (out.empty()) {
      std::string keys;
      for (size_t k = 0; k + 1 < node(root).items.size() && k < 40; k += 2)
        if (node(root).items[k].kind == Kind::Str)
          keys += (keys.empty() ? "" : ", ") + node(node(root).items[k]).text;
      DF_FAIL(path_, ": the checkpoint holds no tensors under 'state_dict' or at its top level",
              " (top-level keys: ", keys.empty() ? "none" : keys, ")");
    }
    return out;
  }

  std::string_view b_;
  const std::string& path_;
  size_t pos_ = 0, op_pos_ = 0;
  std::deque<Node> nodes_;
  std::vector<TorchTensorRecord> records_;
  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value> memo_;
  uint64_t items_left_, copies_left_;
  int64_t expanded_ = 0;  // elements of expanded views beyond their storages, in all
};

}  // namespace

std::vector<std::pair<std::string, TorchTensorRecord>> parse_torch_pickle(std::string_view bytes,
                                                                          const std::string& path) {
  return Unpickler(bytes, path).run();
}

}  // namespace diffuse::io
