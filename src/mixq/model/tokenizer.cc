// PLACEHOLDER: replaced by the tokenizer implementation.
#include "mixq/model/tokenizer.h"
#include "mixq/base/error.h"
namespace mixq {
class TokenizerImpl { public: Vocab vocab; };
Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer Tokenizer::FromVocab(Vocab) { Fail("tokenizer not built yet"); }
Tokenizer Tokenizer::FromLlama2cFile(const std::string&, int32_t) { Fail("tokenizer not built yet"); }
Tokenizer Tokenizer::FromSentencePieceFile(const std::string&) { Fail("tokenizer not built yet"); }
const Vocab& Tokenizer::vocab() const { return impl_->vocab; }
std::vector<int32_t> Tokenizer::Encode(std::string_view, bool) const { Fail("tokenizer not built yet"); }
std::string Tokenizer::Decode(int32_t, int32_t) const { Fail("tokenizer not built yet"); }
std::string Tokenizer::DecodeAll(const std::vector<int32_t>&) const { Fail("tokenizer not built yet"); }
}  // namespace mixq
