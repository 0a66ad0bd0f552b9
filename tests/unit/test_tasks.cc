// Prompt builders of the eval suites: exact token lengths, the needle found where the depth puts
// it, determinism from the seed; scoring on hand-made outputs including near misses.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "support/test_support.h"
#include "tasks/passkey.h"
#include "text/tokenizer.h"

namespace esa {
namespace {

TEST(Passkey, ExactLengthsNeedleAtTheDepthAndDeterministic) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const auto tok = text::load_tokenizer(test::default_model_path());
  for (bool chat : {false, true}) {
    for (int64_t length : {300, 1000, 4096}) {
      for (double depth : {0.0, 0.37, 1.0}) {
        const tasks::PasskeyCase c = tasks::build_passkey(*tok, length, depth, 7, chat);
        ASSERT_EQ(int64_t(c.prompt.ids.size()), length) << "chat " << chat << " depth " << depth;
        ASSERT_EQ(c.key.size(), 5u);
        // The needle's tokens decode to the needle, with the key in it.
        const std::vector<int32_t> needle(c.prompt.ids.begin() + c.prompt.needle_begin,
                                          c.prompt.ids.begin() + c.prompt.needle_end);
        EXPECT_NE(tok->decode(needle).find("The pass key is " + c.key + ". Remember it."), std::string::npos);
        // And it sits at the depth of the filler: tokens of filler before it / all filler tokens.
        const std::string text = tok->decode(c.prompt.ids);
        EXPECT_EQ(text.find(c.key), text.find("The pass key is " + c.key) + 16);
        const int64_t head_end = c.prompt.needle_begin - int64_t(std::llround(depth * double(c.prompt.filler_tokens)));
        const std::string before(tok->decode(std::vector<int32_t>(c.prompt.ids.begin() + head_end,
                                                                  c.prompt.ids.begin() + c.prompt.needle_begin)));
        EXPECT_EQ(before.find("pass key"), std::string::npos) << "only filler precedes the needle";
        EXPECT_NE(text.find("What is the pass key?"), std::string::npos);
        EXPECT_EQ(text.rfind("The pass key is"), text.size() - 15) << "ends with the answer prefix";
        // Same arguments: identical ids; another seed: another key.
        EXPECT_EQ(tasks::build_passkey(*tok, length, depth, 7, chat).prompt.ids, c.prompt.ids);
        EXPECT_NE(tasks::build_passkey(*tok, length, depth, 8, chat).key, c.key);
      }
    }
  }
  EXPECT_THROW(tasks::build_passkey(*tok, 20, 0.5, 1, false), Error);
  EXPECT_THROW(tasks::build_passkey(*tok, 1000, 1.5, 1, false), Error);
}

TEST(Passkey, ScoreIsTheFirstIntegerExactly) {
  EXPECT_EQ(tasks::score_passkey("12345", "12345"), 1.0);
  EXPECT_EQ(tasks::score_passkey(" 12345. Remember it.", "12345"), 1.0);
  EXPECT_EQ(tasks::score_passkey("The pass key is 12345", "12345"), 1.0);
  EXPECT_EQ(tasks::score_passkey("12345 is wrong, 54321", "12345"), 1.0);
  EXPECT_EQ(tasks::score_passkey("54321, not 12345", "12345"), 0.0);  // first integer decides
  EXPECT_EQ(tasks::score_passkey("1234", "12345"), 0.0);
  EXPECT_EQ(tasks::score_passkey("123456", "12345"), 0.0);
  EXPECT_EQ(tasks::score_passkey("12,345", "12345"), 0.0);
  EXPECT_EQ(tasks::score_passkey("no number here", "12345"), 0.0);
  EXPECT_EQ(tasks::score_passkey("", "12345"), 0.0);
}

}  // namespace
}  // namespace esa
