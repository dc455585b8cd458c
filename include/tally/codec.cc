#include "tally/codec.h"

#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tally {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the format is little-endian and written with memcpy");

// Optional sections, in the order they follow the core (CODEC.md).
enum Present : uint8_t {
  present_target = 1 << 0,
  present_asset = 1 << 1,
  present_expiry = 1 << 2,
  present_settings = 1 << 3,
  present_text = 1 << 4,
  present_actor = 1 << 5,
  present_targets = 1 << 6,
};
constexpr uint8_t present_known = 0x7f;

template <typename T>
void Put(std::string* out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  out->append(bytes, sizeof(T));
}

void PutText(std::string* out, std::string_view text) {
  Put<uint16_t>(out, static_cast<uint16_t>(text.size()));
  out->append(text);
}

// Reader walks the input; every read is bounds-checked and the first failure
// sticks, with the offset where it happened.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  template <typename T>
  T Get() {
    T v{};
    if (!Need(sizeof(T))) return v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view Text(uint32_t max_bytes) {
    size_t at = pos_;
    uint16_t size = Get<uint16_t>();
    if (!ok()) return {};
    if (size > max_bytes) {
      Fail(at, "text longer than its limit");
      return {};
    }
    if (!Need(size)) return {};
    std::string_view text = bytes_.substr(pos_, size);
    pos_ += size;
    return text;
  }
  void Fail(size_t at, std::string_view why) {
    if (error_.empty()) {
      error_ = std::string(why);
      error_at_ = at;
    }
  }
  bool ok() const { return error_.empty(); }
  size_t pos() const { return pos_; }
  size_t left() const { return bytes_.size() - pos_; }
  absl::Status status() const {
    if (ok()) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("batch: ", error_, " at byte ", error_at_));
  }

 private:
  bool Need(size_t n) {
    if (!ok()) return false;
    if (bytes_.size() - pos_ < n) {
      Fail(pos_, "truncated");
      return false;
    }
    return true;
  }

  std::string_view bytes_;
  size_t pos_ = 0;
  std::string error_;
  size_t error_at_ = 0;
};

void EncodeCommand(const Command& c, std::string* out) {
  uint8_t present = 0;
  if (c.target_id != 0) present |= present_target;
  if (!(c.asset == Asset::Credits())) present |= present_asset;
  if (c.expires_at_us != 0) present |= present_expiry;
  if (c.settings_mask != 0) present |= present_settings;
  if (!c.text.empty()) present |= present_text;
  if (!c.actor.empty()) present |= present_actor;
  if (!c.targets.empty()) present |= present_targets;
  Put<uint8_t>(out, static_cast<uint8_t>(c.kind));
  Put<uint8_t>(out, c.flags);
  Put<uint8_t>(out, c.settings_mask);
  Put<uint8_t>(out, present);
  Put<int32_t>(out, c.priority);
  Put<uint64_t>(out, c.op_id);
  Put<uint64_t>(out, c.org_id);
  Put<uint64_t>(out, c.wallet_id);
  Put<int64_t>(out, c.amount);
  if (present & present_target) Put<uint64_t>(out, c.target_id);
  if (present & present_asset) {
    Put<uint64_t>(out, c.asset.lo());
    Put<uint64_t>(out, c.asset.hi());
  }
  if (present & present_expiry) Put<int64_t>(out, c.expires_at_us);
  if (present & present_settings) {
    Put<uint8_t>(out, c.settings.credit_payments ? 1 : 0);
    Put<int64_t>(out, c.settings.low_balance_threshold);
    Put<int64_t>(out, c.settings.expiring_soon_window_us);
    Put<int64_t>(out, c.settings.deduct_rollup_interval_us);
  }
  if (present & present_text) PutText(out, c.text);
  if (present & present_actor) PutText(out, c.actor);
  if (present & present_targets) {
    Put<uint32_t>(out, static_cast<uint32_t>(c.targets.size()));
    for (const WalletAmount& t : c.targets) {
      Put<uint64_t>(out, t.wallet_id);
      Put<int64_t>(out, t.amount);
    }
  }
}

// DecodeCommand reads one command; targets are appended to *targets and the
// command's span is fixed up by the caller once the vector stops growing.
Command DecodeCommand(Reader& r, std::vector<WalletAmount>* targets, size_t* targets_begin,
                      size_t* targets_count) {
  Command c;
  size_t at = r.pos();
  c.kind = static_cast<CommandKind>(r.Get<uint8_t>());
  c.flags = r.Get<uint8_t>();
  c.settings_mask = r.Get<uint8_t>();
  uint8_t present = r.Get<uint8_t>();
  if (r.ok() && (present & ~present_known) != 0) r.Fail(at + 3, "unknown section bits");
  c.priority = r.Get<int32_t>();
  c.op_id = r.Get<uint64_t>();
  c.org_id = r.Get<uint64_t>();
  c.wallet_id = r.Get<uint64_t>();
  c.amount = r.Get<int64_t>();
  if (present & present_target) c.target_id = r.Get<uint64_t>();
  if (present & present_asset) {
    uint64_t lo = r.Get<uint64_t>();
    uint64_t hi = r.Get<uint64_t>();
    c.asset = Asset::FromPacked(lo, hi);  // the engine refuses what is not Valid()
  }
  if (present & present_expiry) c.expires_at_us = r.Get<int64_t>();
  if (present & present_settings) {
    size_t flag_at = r.pos();
    uint8_t credit_payments = r.Get<uint8_t>();
    if (r.ok() && credit_payments > 1) r.Fail(flag_at, "credit_payments is not 0 or 1");
    c.settings.credit_payments = credit_payments == 1;
    c.settings.low_balance_threshold = r.Get<int64_t>();
    c.settings.expiring_soon_window_us = r.Get<int64_t>();
    c.settings.deduct_rollup_interval_us = r.Get<int64_t>();
  }
  if (present & present_text) c.text = r.Text(text_bytes_max);
  if (present & present_actor) c.actor = r.Text(text_bytes_max);
  *targets_begin = targets->size();
  *targets_count = 0;
  if (present & present_targets) {
    size_t count_at = r.pos();
    uint32_t count = r.Get<uint32_t>();
    if (r.ok() && (count == 0 || count > allocate_targets_max)) {
      r.Fail(count_at, "target count out of range");
    } else if (r.ok() && count * size_t{16} > r.left()) {
      r.Fail(count_at, "truncated");
    } else if (r.ok()) {
      for (uint32_t i = 0; i < count; ++i) {
        uint64_t wallet_id = r.Get<uint64_t>();
        int64_t amount = r.Get<int64_t>();
        targets->push_back(WalletAmount{wallet_id, amount});
      }
      *targets_count = count;
    }
  }
  return c;
}

}  // namespace

absl::Status EncodeBatch(int64_t time_us, std::span<const Command> commands, std::string* out) {
  if (commands.size() > batch_commands_max) {
    return absl::InvalidArgumentError("batch: more than batch_commands_max commands");
  }
  for (const Command& c : commands) {
    if (c.text.size() > text_bytes_max || c.actor.size() > text_bytes_max) {
      return absl::InvalidArgumentError("batch: text or actor over text_bytes_max");
    }
    if (c.targets.size() > allocate_targets_max) {
      return absl::InvalidArgumentError("batch: more than allocate_targets_max targets");
    }
  }
  Put<int64_t>(out, time_us);
  Put<uint32_t>(out, static_cast<uint32_t>(commands.size()));
  Put<uint32_t>(out, 0);  // reserved, must be 0
  for (const Command& c : commands) EncodeCommand(c, out);
  return absl::OkStatus();
}

absl::Status DecodeBatch(std::string_view bytes, DecodedBatch* batch) {
  Reader r(bytes);
  batch->commands.clear();
  batch->targets.clear();
  batch->time_us = r.Get<int64_t>();
  uint32_t count = r.Get<uint32_t>();
  uint32_t reserved = r.Get<uint32_t>();
  if (r.ok() && reserved != 0) r.Fail(12, "reserved bytes are not zero");
  if (r.ok() && count > batch_commands_max) r.Fail(8, "command count over batch_commands_max");
  if (r.ok() && count * size_t{command_core_bytes} > r.left()) r.Fail(8, "truncated");
  if (!r.ok()) return r.status();
  batch->commands.reserve(count);
  // (begin, count) of each command's targets, resolved once `targets` is final.
  std::vector<std::pair<size_t, size_t>> spans;
  spans.reserve(count);
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    size_t begin = 0;
    size_t n = 0;
    batch->commands.push_back(DecodeCommand(r, &batch->targets, &begin, &n));
    spans.emplace_back(begin, n);
  }
  if (r.ok() && r.left() != 0) r.Fail(r.pos(), "trailing bytes after the last command");
  if (!r.ok()) {
    batch->commands.clear();
    batch->targets.clear();
    return r.status();
  }
  for (size_t i = 0; i < batch->commands.size(); ++i) {
    auto [begin, n] = spans[i];
    if (n != 0) batch->commands[i].targets = std::span(batch->targets.data() + begin, n);
  }
  return absl::OkStatus();
}

}  // namespace tally
