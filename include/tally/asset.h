// asset.h: asset codes ("credits", "USD", "api_calls") as 16-byte values.
//
// An asset code is 1 to 16 characters of [A-Za-z0-9_], packed little-endian
// into two uint64_t words (characters 0-7 in lo, 8-15 in hi) with zero
// padding, so that it has a fixed width (16 bytes) on the wire and in the
// log and compares as integers.  All zeros is no code at all.
//
// Example:
//   tally::Asset usd = tally::Asset::Parse("USD").value();
//   assert(usd.name() == "USD");
//   tally::Asset calls = tally::Asset::Parse("api_calls").value();
#ifndef TALLY_ASSET_H_
#define TALLY_ASSET_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace tally {

// Asset is a packed asset code.
class Asset {
 public:
  static constexpr uint32_t name_bytes_max = 16;

  constexpr Asset() = default;
  // FromPacked trusts its arguments; use Valid() on what came from outside.
  static constexpr Asset FromPacked(uint64_t lo, uint64_t hi = 0) { return Asset(lo, hi); }

  // Parse returns nullopt for an empty, over-long or ill-charactered code.
  static std::optional<Asset> Parse(std::string_view name);

  // Credits is the default asset, "credits": a constant, since every
  // Command starts with it (a call with a guarded static per Command built
  // showed in the load generator's profile).
  static constexpr Asset Credits() {
    constexpr std::string_view name = "credits";
    uint64_t lo = 0;
    for (size_t i = 0; i < name.size(); ++i) {
      lo |= uint64_t{static_cast<unsigned char>(name[i])} << (8 * i);
    }
    return Asset(lo, 0);
  }

  constexpr uint64_t lo() const { return lo_; }
  constexpr uint64_t hi() const { return hi_; }
  constexpr bool empty() const { return lo_ == 0 && hi_ == 0; }
  std::string name() const;
  // Valid says whether the words are what Parse could have produced.
  bool Valid() const;

  friend constexpr bool operator==(Asset a, Asset b) { return a.lo_ == b.lo_ && a.hi_ == b.hi_; }
  friend constexpr bool operator<(Asset a, Asset b) {
    return a.lo_ != b.lo_ ? a.lo_ < b.lo_ : a.hi_ < b.hi_;
  }
  template <typename H>
  friend H AbslHashValue(H h, Asset a) {
    return H::combine(std::move(h), a.lo_, a.hi_);
  }

 private:
  char CharAt(uint32_t i) const;
  constexpr Asset(uint64_t lo, uint64_t hi) : lo_(lo), hi_(hi) {}
  uint64_t lo_ = 0;
  uint64_t hi_ = 0;
};

}  // namespace tally

#endif  // TALLY_ASSET_H_
