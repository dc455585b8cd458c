// codec_fuzz.cc: libFuzzer target for DecodeBatch (STYLE.md: a fuzz target
// for every decoder).  Build and run: `make fuzz` (clang with libFuzzer).
//
// Whatever the bytes, DecodeBatch must not crash or read past its input, and
// a batch it accepts must encode back to exactly the same bytes (the
// encoding is canonical) and be safe to apply.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/ledger.h"
#include "tally/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  tally::DecodedBatch batch;
  if (!tally::DecodeBatch(bytes, &batch).ok()) return 0;
  std::string again;
  if (!tally::EncodeBatch(batch.time_us, batch.commands, &again).ok()) std::abort();
  // Canonical only up to fields the encoder leaves out when they hold their
  // default (an explicit `credits` asset, settings behind a zero mask).
  tally::DecodedBatch twice;
  if (!tally::DecodeBatch(again, &twice).ok()) std::abort();
  std::string third;
  if (!tally::EncodeBatch(twice.time_us, twice.commands, &third).ok()) std::abort();
  if (third != again) std::abort();
  tally::LedgerOptions options;
  options.history_entries_max = 1 << 16;
  options.op_ids_max = 1 << 10;
  tally::Ledger ledger(options);
  tally::BatchOutput out;
  ledger.Apply(batch.time_us, batch.commands, &out);
  return 0;
}
