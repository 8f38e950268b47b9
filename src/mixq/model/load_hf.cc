// PLACEHOLDER: replaced by the Hugging Face loader.
#include "mixq/base/error.h"
#include "mixq/model/model.h"
namespace mixq {
Model LoadHuggingFaceModel(const std::string& dir, const LoadOptions&) { Fail("'{}': HF loading is not built yet", dir); }
}  // namespace mixq
