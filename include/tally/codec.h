// codec.h: a batch of Commands as bytes, for the log and the wire.
//
// The engine is deterministic, so the log records commands, not effects: a
// batch's time and its commands, encoded here.  The layout, byte by byte, is
// in include/tally/CODEC.md.  Encoding is compact where it matters (a deduct
// of the default asset with no text is 40 bytes) and every length is checked
// on decode: a decoder never reads past its input and never trusts a count.
//
// Example:
//   std::string bytes;
//   tally::EncodeBatch(now_us, commands, &bytes);
//   tally::DecodedBatch batch;
//   absl::Status s = tally::DecodeBatch(bytes, &batch);  // batch.commands
#ifndef TALLY_CODEC_H_
#define TALLY_CODEC_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "tally/command.h"

namespace tally {

inline constexpr uint32_t batch_header_bytes = 16;
inline constexpr uint32_t command_core_bytes = 40;

// EncodeBatch appends the encoding of (time_us, commands) to *out.
// InvalidArgument (and *out unchanged) when a command does not fit the
// format: text or actor over text_bytes_max, more than allocate_targets_max
// targets, more than batch_commands_max commands.
absl::Status EncodeBatch(int64_t time_us, std::span<const Command> commands, std::string* out);

// EncodeCommands appends the encodings of `commands` alone, no batch
// header, to *out; the same refusals as EncodeBatch, *out then unchanged.
absl::Status EncodeCommands(std::span<const Command> commands, std::string* out);
absl::Status EncodeCommands(std::span<const Command* const> commands, std::string* out);

// WriteBatchHeader writes the batch_header_bytes that open a batch (time,
// command count, reserved zero) at `out`, over what is there: for a batch
// whose commands are already encoded behind it (wal::Store::ApplyEncoded).
void WriteBatchHeader(int64_t time_us, uint32_t count, char* out);

// DecodedBatch is a decoded batch.  Its commands' text and actor point into
// the bytes given to DecodeBatch, which must outlive it; their targets point
// into `targets`.  Command i's encoding is bytes[command_ends[i - 1],
// command_ends[i]) (from batch_header_bytes for the first): tallyd logs
// those bytes as they came instead of encoding the commands again.
struct DecodedBatch {
  int64_t time_us = 0;
  std::vector<Command> commands;
  std::vector<WalletAmount> targets;
  std::vector<uint32_t> command_ends;
};

// DecodeBatch decodes exactly `bytes` (trailing bytes are an error) into
// *batch.  DataLoss names the byte offset of the first thing that is wrong.
absl::Status DecodeBatch(std::string_view bytes, DecodedBatch* batch);

}  // namespace tally

#endif  // TALLY_CODEC_H_
