#include "tally/codec.h"

#include <cstring>
#include <type_traits>

#include "tally/bytes.h"

namespace tally {
namespace {

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

void EncodeCommand(const Command& c, std::string* out_bytes) {
  ByteWriter out(out_bytes);
  uint8_t present = 0;
  if (c.target_id != 0) present |= present_target;
  if (!(c.asset == Asset::Credits())) present |= present_asset;
  if (c.expires_at_us != 0) present |= present_expiry;
  if (c.settings_mask != 0) present |= present_settings;
  if (!c.text.empty()) present |= present_text;
  if (!c.actor.empty()) present |= present_actor;
  if (!c.targets.empty()) present |= present_targets;
  // The core's 40 bytes with one append (a frame of 8,000 deducts is 8,000
  // cores: nine appends each, each checking the capacity, were the bulk of
  // the load generator's frame encoding).
  char core[command_core_bytes];
  core[0] = static_cast<char>(c.kind);
  core[1] = static_cast<char>(c.flags);
  core[2] = static_cast<char>(c.settings_mask);
  core[3] = static_cast<char>(present);
  std::memcpy(core + 4, &c.priority, 4);
  std::memcpy(core + 8, &c.op_id, 8);
  std::memcpy(core + 16, &c.org_id, 8);
  std::memcpy(core + 24, &c.wallet_id, 8);
  std::memcpy(core + 32, &c.amount, 8);
  out_bytes->append(core, command_core_bytes);
  if (present & present_target) out.Put<uint64_t>(c.target_id);
  if (present & present_asset) {
    out.Put<uint64_t>(c.asset.lo());
    out.Put<uint64_t>(c.asset.hi());
  }
  if (present & present_expiry) out.Put<int64_t>(c.expires_at_us);
  if (present & present_settings) {
    out.Put<uint8_t>(c.settings.credit_payments ? 1 : 0);
    out.Put<int64_t>(c.settings.low_balance_threshold);
    out.Put<int64_t>(c.settings.expiring_soon_window_us);
    out.Put<int64_t>(c.settings.deduct_rollup_interval_us);
  }
  if (present & present_text) out.Text<uint16_t>(c.text);
  if (present & present_actor) out.Text<uint16_t>(c.actor);
  if (present & present_targets) {
    out.Put<uint32_t>(static_cast<uint32_t>(c.targets.size()));
    for (const WalletAmount& t : c.targets) {
      out.Put<uint64_t>(t.wallet_id);
      out.Put<int64_t>(t.amount);
    }
  }
}

// DecodeCommand reads one command; targets are appended to *targets and the
// command's span is fixed up by the caller once the vector stops growing.
// ReadCore reads a command's core (its first command_core_bytes) and
// returns the sections-present byte.  kWhole: the caller checked that the
// whole core is there, so its nine fields are read unchecked (one bounds
// check a command); else each read is checked, so a short core fails at the
// byte where it ends.
template <bool kWhole>
uint8_t ReadCore(ByteReader& r, size_t at, Command& c) {
  auto read = [&r](auto* field) {
    using T = std::remove_pointer_t<decltype(field)>;
    if constexpr (kWhole) {
      *field = r.Take<T>();
    } else {
      *field = r.Get<T>();
    }
  };
  uint8_t kind = 0;
  uint8_t present = 0;
  read(&kind);
  read(&c.flags);
  read(&c.settings_mask);
  read(&present);
  c.kind = static_cast<CommandKind>(kind);
  if (r.ok() && (present & ~present_known) != 0) r.Fail(at + 3, "unknown section bits");
  read(&c.priority);
  read(&c.op_id);
  read(&c.org_id);
  read(&c.wallet_id);
  read(&c.amount);
  return present;
}

void DecodeCommand(ByteReader& r, Command& c, std::vector<WalletAmount>* targets,
                   size_t* targets_begin, size_t* targets_count) {
  const size_t at = r.pos();
  const uint8_t present = r.ok() && r.left() >= command_core_bytes ? ReadCore<true>(r, at, c)
                                                                   : ReadCore<false>(r, at, c);
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
  if (present & present_text) c.text = r.Text<uint16_t>(text_bytes_max);
  if (present & present_actor) c.actor = r.Text<uint16_t>(text_bytes_max);
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
}

// CheckCommand refuses a command the format cannot hold.
absl::Status CheckCommand(const Command& c) {
  if (c.text.size() > text_bytes_max || c.actor.size() > text_bytes_max) {
    return absl::InvalidArgumentError("batch: text or actor over text_bytes_max");
  }
  if (c.targets.size() > allocate_targets_max) {
    return absl::InvalidArgumentError("batch: more than allocate_targets_max targets");
  }
  return absl::OkStatus();
}

absl::Status CheckCommands(std::span<const Command> commands) {
  for (const Command& c : commands) {
    if (absl::Status s = CheckCommand(c); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EncodeBatch(int64_t time_us, std::span<const Command> commands, std::string* out) {
  if (commands.size() > batch_commands_max) {
    return absl::InvalidArgumentError("batch: more than batch_commands_max commands");
  }
  if (absl::Status s = CheckCommands(commands); !s.ok()) return s;
  const size_t header_at = out->size();
  out->resize(header_at + batch_header_bytes);
  WriteBatchHeader(time_us, static_cast<uint32_t>(commands.size()), out->data() + header_at);
  for (const Command& c : commands) EncodeCommand(c, out);
  return absl::OkStatus();
}

absl::Status EncodeCommands(std::span<const Command> commands, std::string* out) {
  if (absl::Status s = CheckCommands(commands); !s.ok()) return s;
  for (const Command& c : commands) EncodeCommand(c, out);
  return absl::OkStatus();
}

absl::Status EncodeCommands(std::span<const Command* const> commands, std::string* out) {
  for (const Command* c : commands) {
    if (absl::Status s = CheckCommand(*c); !s.ok()) return s;
  }
  for (const Command* c : commands) EncodeCommand(*c, out);
  return absl::OkStatus();
}

void WriteBatchHeader(int64_t time_us, uint32_t count, char* out) {
  const uint32_t reserved = 0;  // must be 0
  std::memcpy(out, &time_us, sizeof time_us);
  std::memcpy(out + 8, &count, sizeof count);
  std::memcpy(out + 12, &reserved, sizeof reserved);
}

absl::Status DecodeBatch(std::string_view bytes, DecodedBatch* batch) {
  // command_ends are 32-bit (a frame is at most 4 MiB, a log record less).
  if (bytes.size() > UINT32_MAX) return absl::DataLossError("batch: over 4 GiB");
  ByteReader r(bytes, "batch");
  batch->commands.clear();
  batch->targets.clear();
  batch->command_ends.clear();
  batch->time_us = r.Get<int64_t>();
  uint32_t count = r.Get<uint32_t>();
  uint32_t reserved = r.Get<uint32_t>();
  if (r.ok() && reserved != 0) r.Fail(12, "reserved bytes are not zero");
  if (r.ok() && count > batch_commands_max) r.Fail(8, "command count over batch_commands_max");
  if (r.ok() && count * size_t{command_core_bytes} > r.left()) r.Fail(8, "truncated");
  if (!r.ok()) return r.status();
  // Each command is decoded into a local (in L1) and copied once into the
  // vector.  Decoding in place into a resize()d vector was measured worse:
  // the resize zero-filled 152 bytes a command on lines the shard thread
  // had last read on the other core, and the decode then wrote them again.
  batch->commands.reserve(count);
  batch->command_ends.reserve(count);
  // (command, begin, count) of each command that has targets, resolved once
  // `targets` is final.  Only allocations have targets: a batch without them
  // allocates nothing here (tallyd decodes a frame of one deduct this way).
  struct TargetSpan {
    size_t command = 0;
    size_t begin = 0;
    size_t count = 0;
  };
  std::vector<TargetSpan> spans;
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    size_t begin = 0;
    size_t n = 0;
    Command c;
    DecodeCommand(r, c, &batch->targets, &begin, &n);
    batch->commands.push_back(c);
    batch->command_ends.push_back(static_cast<uint32_t>(r.pos()));
    if (n != 0) spans.push_back(TargetSpan{i, begin, n});
  }
  if (r.ok() && r.left() != 0) r.Fail(r.pos(), "trailing bytes after the last command");
  if (!r.ok()) {
    batch->commands.clear();
    batch->targets.clear();
    batch->command_ends.clear();
    return r.status();
  }
  for (const TargetSpan& t : spans) {
    batch->commands[t.command].targets = std::span(batch->targets.data() + t.begin, t.count);
  }
  return absl::OkStatus();
}

}  // namespace tally
