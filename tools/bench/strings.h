// strings.h: Debian's Abseil has its own string_view, not std::string_view;
// Sv passes a std::string_view to absl::StrCat, StrSplit and SimpleAtoi.
#ifndef TALLY_TOOLS_BENCH_STRINGS_H_
#define TALLY_TOOLS_BENCH_STRINGS_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace tally::bench {

inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view Std(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace tally::bench

#endif  // TALLY_TOOLS_BENCH_STRINGS_H_
