// assert.h: TALLY_ASSERT, the always-on check for what only a bug can cause.
//
// Operating errors (bad input, a full disk) are values: ResultCode or
// absl::Status.  An assertion is for an invariant the code itself keeps; it
// stays on in release builds, because a ledger that goes on after breaking one
// corrupts money.
#ifndef TALLY_ASSERT_H_
#define TALLY_ASSERT_H_

#include <cstdio>
#include <cstdlib>

namespace tally {

[[noreturn]] inline void AssertFail(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "tally: assertion failed: %s at %s:%d\n", condition, file, line);
  std::abort();
}

}  // namespace tally

#define TALLY_ASSERT(condition)                                    \
  do {                                                             \
    if (!(condition)) [[unlikely]]                                 \
      ::tally::AssertFail(#condition, __FILE__, __LINE__);         \
  } while (0)

#endif  // TALLY_ASSERT_H_
