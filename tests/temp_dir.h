// temp_dir.h: a fresh temporary directory for a test, removed with
// everything in it when the TempDir goes, also when the test returns early
// on a failed assertion.  It is made under $TMPDIR, else /tmp (a real disk
// on the CI machine: the direct-write and crash tests want one).
#ifndef TALLY_TESTS_TEMP_DIR_H_
#define TALLY_TESTS_TEMP_DIR_H_

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace tally::testing {

class TempDir {
 public:
  // `prefix` names the directory (prefix-XXXXXX), so a leftover says whose
  // it was.  A directory that cannot be made ends the test program.
  explicit TempDir(std::string_view prefix = "tally-test") {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && base[0] != '\0' ? base : "/tmp") + "/";
    pattern.append(prefix);
    pattern += "-XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) == nullptr) std::abort();
    path_ = buffer.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace tally::testing

#endif  // TALLY_TESTS_TEMP_DIR_H_
