// Whole-file reads for small inputs.
#include "mixq/base/file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "mixq/base/error.h"

namespace mixq {

std::string ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot read '{}': {}", path, std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) Fail("error while reading '{}'", path);
  return bytes;
}

std::string ReadFileHead(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot read '{}': {}", path, std::strerror(errno));
  std::string bytes(n, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(n));
  bytes.resize(static_cast<size_t>(in.gcount()));
  return bytes;
}

}  // namespace mixq
