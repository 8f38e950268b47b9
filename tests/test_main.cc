// The test binary's main: each process gets a temporary directory of its own before any test runs.
//
// ctest runs every test as its own process, two at a time on CI. Fixtures write their files once per
// process under ::testing::TempDir() (the calibration half of the stories excerpt, its calibration
// statistics), so two processes sharing /tmp rewrote the same file while the other's `mixq` child read
// it: W8A8Cli.OptionErrorsNameTheOption failed on CI that way. gtest's TempDir() reads TEST_TMPDIR,
// so pointing it at a fresh directory gives every TempDir() user the isolation at once.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::string base = ::testing::TempDir();  // TEST_TMPDIR, TMPDIR or /tmp/, before we change it
  if (base.empty() || base.back() != '/') base += '/';
  std::vector<char> pattern(base.begin(), base.end());
  const std::string name = "mixq-test-XXXXXX";
  pattern.insert(pattern.end(), name.begin(), name.end());
  pattern.push_back('\0');
  if (mkdtemp(pattern.data()) == nullptr) {
    std::perror(("mixq_tests: cannot create a temporary directory under " + base).c_str());
    return 2;
  }
  const std::string dir = pattern.data();
  setenv("TEST_TMPDIR", dir.c_str(), 1);

  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  std::error_code ignored;  // a leftover directory is not worth failing the run for
  std::filesystem::remove_all(dir, ignored);
  return result;
}
