// The eval suites: exact token lengths, every needle found where its depth puts it, determinism
// from the seed; the scoring rules on hand-made outputs including near misses.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <regex>

#include "core/error.h"
#include "support/test_support.h"
#include <fmt/format.h>

#include "io/hdf5.h"
#include "engine/llama.h"
#include "tasks/eval.h"
#include "tasks/scoring.h"
#include "tasks/suite.h"
#include "text/tokenizer.h"

namespace esa {
namespace {

std::string decode_range(const text::Tokenizer& tok, const std::vector<int32_t>& ids, int64_t b, int64_t e) {
  return tok.decode(std::vector<int32_t>(ids.begin() + b, ids.begin() + e));
}

// A small essay-like haystack: numbered sentences of varying length, so that a sentence end can
// be recognised and no sentence contains a needle's words.
std::string write_haystack() {
  const std::string path = test::temp_dir() + "/haystack.txt";
  std::ofstream out(path);
  for (int i = 0; i < 400; ++i) {
    out << "Essay line " << i << " talks about startups and" << std::string(size_t(i % 5), ' ') << " founders";
    for (int j = 0; j < i % 7; ++j) out << " who build things";
    out << (i % 11 == 0 ? "!\n\n" : ". ");
  }
  return path;
}

struct SuiteCase {
  std::string suite, variant;
  int64_t needles;
};

class Suites : public ::testing::TestWithParam<SuiteCase> {};

TEST_P(Suites, ExactLengthNeedlesAtTheirDepthsDeterministic) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const auto tok = text::load_tokenizer(test::default_model_path());
  const std::string haystack = write_haystack();
  for (bool chat : {false, true}) {
    tasks::SuiteOptions o;
    o.name = GetParam().suite;
    o.variant = GetParam().variant;
    o.needles = GetParam().needles;
    o.chat = chat;
    o.seed = test::test_seed(7);
    o.haystack = haystack;
    const auto suite = tasks::make_suite(*tok, o);
    for (int64_t length : {700, 1000, 4096, 9000}) {
      for (double depth : {0.0, 0.37, 1.0}) {
        SCOPED_TRACE(::testing::Message() << o.name << " chat " << chat << " length " << length << " depth " << depth);
        const tasks::TaskCase c = suite->build(length, depth, 0);
        ASSERT_EQ(int64_t(c.prompt.ids.size()), length);
        ASSERT_FALSE(c.answers.empty());
        ASSERT_GE(c.prompt.needles.size(), 1u);
        const std::string text = tok->decode(c.prompt.ids);
        for (size_t i = 0; i < c.prompt.needles.size(); ++i) {
          const auto [b, e] = c.prompt.needles[i];
          ASSERT_LT(b, e);
          const std::string needle = decode_range(*tok, c.prompt.ids, b, e);
          // The needle holds an answer: the asked one for needle 0, every value for multivalue.
          if (i == 0 || o.variant == "multivalue" || o.name != "multi-niah") {
            const std::string& a = c.answers[o.variant == "multivalue" ? i : 0];
            EXPECT_NE(needle.find(a), std::string::npos) << needle;
          }
          // Its text occurs once in the prompt: nothing else repeats the answer.
          EXPECT_EQ(text.find(needle), text.rfind(needle));
        }
        // The asked needle sits at its depth: the filler tokens before it are within one
        // insertion unit (a sentence, a noise unit, a JSON pair) of depth * filler.
        const int64_t aimed = std::llround(depth * double(c.prompt.filler_tokens));
        EXPECT_LE(c.prompt.filler_before[0], aimed);
        EXPECT_GE(c.prompt.filler_before[0], aimed - 80);
        // Count the filler tokens before the needle directly: everything before it that is not a
        // fixed part or another needle.
        int64_t other_needles_before = 0;
        for (size_t i = 1; i < c.prompt.needles.size(); ++i) {
          if (c.prompt.needles[i].second <= c.prompt.needles[0].first) {
            other_needles_before += c.prompt.needles[i].second - c.prompt.needles[i].first;
          }
        }
        const int64_t prefix = c.prompt.needles[0].first - c.prompt.filler_before[0] - other_needles_before;
        EXPECT_GT(prefix, 0);
        EXPECT_LT(prefix, 120) << "the chat prefix and the task head come first";
        // Same arguments: identical ids; another sample or seed: another prompt.
        EXPECT_EQ(suite->build(length, depth, 0).prompt.ids, c.prompt.ids);
        EXPECT_NE(suite->build(length, depth, 1).prompt.ids, c.prompt.ids);
        // A correct answer scores 1, an empty one 0.
        std::string right;
        for (const auto& a : c.answers) right += " " + a + ",";
        const tasks::CaseScore good = suite->score(c, right), bad = suite->score(c, "");
        EXPECT_TRUE(good.correct);
        EXPECT_EQ(good.score, 1.0);
        EXPECT_FALSE(bad.correct);
        EXPECT_EQ(bad.score, 0.0);
      }
    }
    EXPECT_THROW(suite->build(20, 0.5, 0), Error);
    EXPECT_THROW(suite->build(1000, 1.5, 0), Error);
    EXPECT_THROW(suite->build(1000, -0.1, 0), Error);
  }
}

INSTANTIATE_TEST_SUITE_P(All, Suites,
                         ::testing::Values(SuiteCase{"passkey", "", 1}, SuiteCase{"niah", "", 1},
                                           SuiteCase{"multi-niah", "multikey", 4},
                                           SuiteCase{"multi-niah", "multivalue", 3}, SuiteCase{"kv", "", 1}),
                         [](const auto& info) {
                           return std::regex_replace(info.param.suite + info.param.variant, std::regex("-"), "_");
                         });

TEST(Suites, EssayHaystackStartsAtSentencesAndWraps) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const auto tok = text::load_tokenizer(test::default_model_path());
  const std::string path = write_haystack();
  const tasks::EssayHaystack hay(*tok, path);
  const std::vector<int32_t> file = tok->encode(test::read_file(path), false, false);
  ASSERT_GT(hay.sentences(), 100);
  for (int64_t sentence : {int64_t{0}, int64_t{1}, int64_t{57}, hay.sentences() - 1, hay.sentences() + 3}) {
    const int64_t n = int64_t(file.size()) * 2 + 17;  // wraps twice
    const tasks::Filler f = hay.take(n, sentence);
    ASSERT_GE(int64_t(f.ids.size()), n);
    // Every insertion point is a sentence end (or the start), and the stream is the file rotated.
    EXPECT_EQ(f.boundaries.front(), 0);
    for (size_t i = 1; i < f.boundaries.size(); ++i) {
      ASSERT_LT(f.boundaries[i - 1], f.boundaries[i]);
      std::string before = tok->decode(std::vector<int32_t>{f.ids[size_t(f.boundaries[i] - 1)]});
      while (!before.empty() && std::isspace(static_cast<unsigned char>(before.back()))) before.pop_back();
      ASSERT_FALSE(before.empty());
      EXPECT_NE(std::string(".!?").find(before.back()), std::string::npos) << before;
    }
    const std::string start = tok->decode(std::vector<int32_t>(f.ids.begin(), f.ids.begin() + 6));
    if (sentence % hay.sentences() == 0) {
      EXPECT_EQ(std::vector<int32_t>(f.ids.begin(), f.ids.begin() + int64_t(file.size())), file);
    } else {
      EXPECT_NE(start.find("Essay line"), std::string::npos) << "starts at a sentence: '" << start << "'";
    }
  }
  EXPECT_NE(hay.take(100, 1).ids, hay.take(100, 2).ids);
  EXPECT_EQ(hay.take(100, 3).ids, hay.take(100, 3 + hay.sentences()).ids);
}

TEST(Suites, PasskeyPromptIsTheCommunityTemplate) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const auto tok = text::load_tokenizer(test::default_model_path());
  const auto suite = tasks::make_suite(*tok, tasks::SuiteOptions{});
  const tasks::TaskCase c = suite->build(1000, 0.5, 0);
  const std::string text = tok->decode(c.prompt.ids);
  const std::string& key = c.answers[0];
  EXPECT_EQ(key.size(), 5u);
  EXPECT_NE(text.find("The pass key is " + key + ". Remember it. " + key + " is the pass key."), std::string::npos);
  EXPECT_NE(text.find("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."),
            std::string::npos);
  EXPECT_NE(text.find("What is the pass key?"), std::string::npos);
  EXPECT_EQ(text.rfind("The pass key is"), text.size() - 15) << "ends with the answer prefix";
}

TEST(Suites, KvPromptIsAJsonObjectOfUuids) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const auto tok = text::load_tokenizer(test::default_model_path());
  tasks::SuiteOptions o;
  o.name = "kv";
  const auto suite = tasks::make_suite(*tok, o);
  const tasks::TaskCase c = suite->build(2000, 0.5, 3);
  const std::string text = tok->decode(c.prompt.ids);
  const std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  EXPECT_TRUE(std::regex_match(c.answers[0], uuid)) << c.answers[0];
  const size_t open = text.find("JSON data:\n{"), close = text.find("\n}");
  ASSERT_NE(open, std::string::npos);
  ASSERT_NE(close, std::string::npos);
  const std::string body = text.substr(open + 12, close - open - 12);
  // Every pair is whole: "uuid": "uuid", repeated, white space between.
  const std::regex pairs("(\\s*\"[0-9a-f-]{36}\": \"[0-9a-f-]{36}\",)+\\s*");
  EXPECT_TRUE(std::regex_match(body, pairs));
  EXPECT_GT(std::distance(std::sregex_iterator(body.begin(), body.end(), uuid), std::sregex_iterator()), 40);
}

TEST(Suites, UnknownNamesAndBadOptionsAreErrors) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const auto tok = text::load_tokenizer(test::default_model_path());
  tasks::SuiteOptions o;
  o.name = "needle";
  EXPECT_THROW(tasks::make_suite(*tok, o), Error);
  o.name = "niah";
  o.haystack = "/nonexistent/haystack.txt";
  EXPECT_THROW(tasks::make_suite(*tok, o), Error);
  o.name = "multi-niah";
  o.haystack = write_haystack();
  o.needles = 0;
  EXPECT_THROW(tasks::make_suite(*tok, o), Error);
  o.needles = 2;
  o.variant = "multiquery";
  EXPECT_THROW(tasks::make_suite(*tok, o), Error);
}

TEST(Scoring, PasskeyIsTheFirstIntegerExactly) {
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

TEST(Scoring, NiahKeyWordsAndExactMatch) {
  const std::string ref = "eat a sandwich and sit in Dolores Park on a sunny day";
  tasks::NiahScore s = tasks::score_niah(" The best thing to do in San Francisco is eat a sandwich and sit in Dolores "
                                         "Park on a sunny day.", ref);
  EXPECT_EQ(s.key_words, 1.0);
  EXPECT_TRUE(s.exact);
  s = tasks::score_niah("EAT a sandwich, and sit in dolores park -- on a SUNNY day!", ref);
  EXPECT_EQ(s.key_words, 1.0);
  EXPECT_TRUE(s.exact) << "case and punctuation are ignored";
  // Near misses: all key words but not in order; one key word wrong.
  s = tasks::score_niah("sit in Dolores Park and eat a sandwich on a sunny day", ref);
  EXPECT_EQ(s.key_words, 1.0);
  EXPECT_FALSE(s.exact);
  s = tasks::score_niah("eat a sandwich and sit in Dolores Park on a rainy day", ref);
  EXPECT_NEAR(s.key_words, 6.0 / 7.0, 1e-12);  // key words: eat sandwich sit dolores park sunny day
  EXPECT_FALSE(s.exact);
  s = tasks::score_niah("go to the Golden Gate bridge", ref);
  EXPECT_EQ(s.key_words, 0.0);
  EXPECT_FALSE(s.exact);
  s = tasks::score_niah("eating sandwiches", ref);
  EXPECT_EQ(s.key_words, 0.0) << "whole words only";
}

TEST(Scoring, StringMatchAllIsRulers) {
  EXPECT_EQ(tasks::string_match_all("The numbers are 1234567, 7654321.", {"1234567", "7654321"}), 1.0);
  EXPECT_EQ(tasks::string_match_all("The numbers are 1234567 and 1111111.", {"1234567", "7654321"}), 0.5);
  EXPECT_EQ(tasks::string_match_all("123456", {"1234567"}), 0.0);  // one digit short
  EXPECT_EQ(tasks::string_match_all("1234568", {"1234567"}), 0.0);
  EXPECT_EQ(tasks::string_match_all("ABC-def", {"abc-DEF"}), 1.0);
  EXPECT_EQ(tasks::string_match_all("anything", {}), 0.0);
}

TEST(Scoring, KvIsTheExactUuid) {
  const std::string v = "2a9c4f0e-1b7d-4e55-9c3a-0f12ab34cd56";
  EXPECT_EQ(tasks::score_kv(v, v), 1.0);
  EXPECT_EQ(tasks::score_kv(" \"" + v + "\".", v), 1.0);
  EXPECT_EQ(tasks::score_kv("The value is: {'" + v + "'}\n", v), 1.0);
  EXPECT_EQ(tasks::score_kv("2a9c4f0e-1b7d-4e55-9c3a-0f12ab34cd57", v), 0.0);   // last digit
  EXPECT_EQ(tasks::score_kv("2a9c4f0e-1b7d-4e55-9c3a-0f12ab34cd5", v), 0.0);    // one short
  EXPECT_EQ(tasks::score_kv("2a9c4f0e-1b7d-4e55-9c3a-0f12ab34cd56a", v), 0.0);  // one long
  EXPECT_EQ(tasks::score_kv("x" + v, v), 0.0);
  EXPECT_EQ(tasks::score_kv("", v), 0.0);
}

}  // namespace
}  // namespace esa

namespace esa {
namespace {

TEST(EvalGrid, LengthsAndDepths) {
  EXPECT_EQ(tasks::parse_lengths("4k,8k,16k,32k"), (std::vector<int64_t>{4096, 8192, 16384, 32768}));
  EXPECT_EQ(tasks::parse_lengths("3000,1k,3000"), (std::vector<int64_t>{1024, 3000}));
  EXPECT_EQ(tasks::parse_lengths("1m"), (std::vector<int64_t>{1 << 20}));
  EXPECT_EQ(tasks::parse_lengths("1.5k"), (std::vector<int64_t>{1536}));
  for (const char* bad : {"", "4k,", "k", "M", "1km", "-1k", "0", "1.3", "4kk", "four", "1e99"}) {
    EXPECT_THROW(tasks::parse_lengths(bad), Error) << bad;
  }
  const std::vector<double> d = tasks::parse_depths("0:100:10");
  ASSERT_EQ(d.size(), 11u);
  EXPECT_DOUBLE_EQ(d.front(), 0.0);
  EXPECT_DOUBLE_EQ(d[3], 0.3);
  EXPECT_DOUBLE_EQ(d.back(), 1.0);
  EXPECT_EQ(tasks::parse_depths("90,10,50"), (std::vector<double>{0.1, 0.5, 0.9}));
  EXPECT_EQ(tasks::parse_depths("0:100:40"), (std::vector<double>{0.0, 0.4, 0.8}));
  for (const char* bad : {"", "0:100", "0:100:0", "100:0:10", "0:110:10", "-5", "50,", "x:y:z"}) {
    EXPECT_THROW(tasks::parse_depths(bad), Error) << bad;
  }
}

std::vector<tasks::CaseResult> some_cases(bool diag) {
  std::vector<tasks::CaseResult> cases;
  for (const char* policy : {"full", "esa"}) {
    for (int64_t length : {1024, 2048}) {
      for (int64_t ppm : {0, 500000, 1000000}) {
        tasks::CaseResult c;
        c.key = {policy, length, ppm, length == 1024 ? 0 : 1};
        c.tokens = length;
        c.prompt_sha256 = fmt::format("{:064x}", length * 7 + ppm);
        c.answer = "12345 | 67890";
        c.generated = fmt::format(" {} é\n", ppm);  // non-ASCII and a newline survive
        c.correct = (ppm + length + (policy[0] == 'e')) % 3 != 0;
        c.score = c.correct ? 1.0 : 0.25;
        c.prefill_seconds = 0.5 * double(length) / 1024;
        c.decode_seconds = 0.125;
        c.new_tokens = 7;
        c.stop_reason = "stop token";
        if (diag) {
          c.diag_recall = {0.5, 1.0, double(ppm) / 1e6};
          c.diag_mass = {0.25, 0.75, 1.0};
          c.diag_needle = {NAN, 1.0, 0.0};
        }
        cases.push_back(c);
      }
    }
  }
  return cases;
}

TEST(EvalResults, CasesRoundTripThroughHdf5) {
  for (bool diag : {false, true}) {
    const std::string path = test::temp_dir() + "/results.h5";
    const std::vector<tasks::CaseResult> cases = some_cases(diag);
    {
      io::H5File f = io::H5File::create(path);
      tasks::write_cases(f, "/cases", cases);
      f.close();
    }
    const io::H5File f = io::H5File::open(path);
    const std::vector<tasks::CaseResult> back = tasks::read_cases(f, "/cases");
    ASSERT_EQ(back.size(), cases.size());
    for (size_t i = 0; i < cases.size(); ++i) {
      EXPECT_EQ(back[i].key, cases[i].key);
      EXPECT_EQ(back[i].prompt_sha256, cases[i].prompt_sha256);
      EXPECT_EQ(back[i].answer, cases[i].answer);
      EXPECT_EQ(back[i].generated, cases[i].generated);
      EXPECT_EQ(back[i].correct, cases[i].correct);
      EXPECT_EQ(back[i].score, cases[i].score);
      EXPECT_EQ(back[i].prefill_seconds, cases[i].prefill_seconds);
      EXPECT_EQ(back[i].new_tokens, cases[i].new_tokens);
      EXPECT_EQ(back[i].stop_reason, cases[i].stop_reason);
      ASSERT_EQ(back[i].diag_recall.size(), cases[i].diag_recall.size());
      for (size_t l = 0; l < cases[i].diag_needle.size(); ++l) {
        EXPECT_EQ(back[i].diag_recall[l], cases[i].diag_recall[l]);
        EXPECT_TRUE(back[i].diag_needle[l] == cases[i].diag_needle[l] ||
                    (std::isnan(back[i].diag_needle[l]) && std::isnan(cases[i].diag_needle[l])));
      }
    }
    EXPECT_THROW(tasks::read_cases(f, "/nothing"), Error);
  }
}

TEST(EvalResults, ColumnsOfDifferentLengthAreAnError) {
  const std::string path = test::temp_dir() + "/results.h5";
  {
    io::H5File f = io::H5File::create(path);
    tasks::write_cases(f, "/cases", some_cases(false));
    const std::vector<double> short_col = {1.0, 2.0};
    f.write("/bad/score", std::span<const double>(short_col), {2});
    f.close();
  }
  io::H5File f = io::H5File::open_rw(path);
  // Copy /cases with one column cut short.
  for (const auto& m : f.members("/cases")) {
    if (m == "score") continue;
    if (m == "policy" || m == "prompt_sha256" || m == "answer" || m == "generated" || m == "stop_reason") {
      f.write("/bad/" + m, f.read_strings("/cases/" + m));
    } else if (m == "depth" || m == "prefill_s" || m == "decode_s") {
      const std::vector<double> v = f.read_doubles("/cases/" + m);
      f.write("/bad/" + m, std::span<const double>(v), {int64_t(v.size())});
    } else {
      const std::vector<int64_t> v = f.read_ints("/cases/" + m);
      f.write("/bad/" + m, std::span<const int64_t>(v), {int64_t(v.size())});
    }
  }
  try {
    tasks::read_cases(f, "/bad");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/bad/score has 2 rows"), std::string::npos) << e.what();
  }
}

TEST(EvalResults, AccuracyTable) {
  const std::vector<tasks::CaseResult> cases = some_cases(false);
  // Two policies: columns are policies; per (length, policy) the share of correct cases.
  const std::string t = tasks::accuracy_table(cases);
  int64_t expect_full_1024 = 0;
  for (const auto& c : cases) expect_full_1024 += c.key.policy == "full" && c.key.length == 1024 && c.correct;
  EXPECT_NE(t.find("full"), std::string::npos);
  EXPECT_NE(t.find("esa"), std::string::npos);
  EXPECT_NE(t.find(fmt::format("{:.1f}", 100.0 * double(expect_full_1024) / 3.0)), std::string::npos) << t;
  EXPECT_NE(t.find("score"), std::string::npos) << "partial scores get their own row";
  // One policy: columns are the depths and "all".
  std::vector<tasks::CaseResult> one;
  for (auto c : cases) {
    if (c.key.policy != "esa") continue;
    c.score = c.correct ? 1.0 : 0.0;
    one.push_back(c);
  }
  const std::string t1 = tasks::accuracy_table(one);
  EXPECT_NE(t1.find("50%"), std::string::npos) << t1;
  EXPECT_NE(t1.find("100%"), std::string::npos) << t1;
  EXPECT_NE(t1.find("all"), std::string::npos) << t1;
  EXPECT_EQ(t1.find("score"), std::string::npos) << "no score row when it repeats the % row";
}

TEST(EvalRun, RunsPendingCasesOnceAndRecordsDiagnostics) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const auto tok = text::load_tokenizer(test::default_model_path());
  const LlamaModel model = LlamaModel::load(test::default_model_path());
  const auto suite = tasks::make_suite(*tok, tasks::SuiteOptions{});
  tasks::EvalOptions o;
  o.grid = {{256, 384}, {0.0, 1.0}, 1};
  attention::PolicyOptions esa;
  esa.kind = attention::PolicyKind::esa;
  esa.budget = {4, 64, 32, 64};
  o.policies = {{"full", attention::PolicyOptions{}}, {"esa", esa}};
  o.max_new = 3;
  o.diag = true;
  o.progress = false;
  const std::set<tasks::CaseKey> done = {{"esa", 256, 0, 0}, {"full", 384, 1000000, 0}};
  std::vector<tasks::CaseResult> got;
  tasks::run_eval(model, *tok, *suite, o, done, [&](tasks::CaseResult&& c) { got.push_back(std::move(c)); });
  ASSERT_EQ(got.size(), 8u - done.size());
  std::set<tasks::CaseKey> seen;
  for (const auto& c : got) {
    EXPECT_EQ(done.count(c.key), 0u);
    EXPECT_TRUE(seen.insert(c.key).second) << "each case once";
    EXPECT_EQ(c.tokens, c.key.length);
    EXPECT_LE(c.new_tokens, 3);
    EXPECT_EQ(c.prompt_sha256.size(), 64u);
    ASSERT_EQ(int64_t(c.diag_recall.size()), model.config().n_layers);
    // full attends to everything: recall and mass 1, the needle wholly attended at decode.
    if (c.key.policy == "full") {
      for (int64_t l = 0; l < model.config().n_layers; ++l) {
        EXPECT_DOUBLE_EQ(c.diag_recall[size_t(l)], 1.0);
        EXPECT_NEAR(c.diag_mass[size_t(l)], 1.0, 1e-9);
        if (c.new_tokens > 1) {
          EXPECT_DOUBLE_EQ(c.diag_needle[size_t(l)], 1.0);
        }
      }
    }
  }
  // The same prompt for every policy of a case: equal hashes.
  for (const auto& a : got) {
    for (const auto& b : got) {
      if (a.key.length == b.key.length && a.key.depth_ppm == b.key.depth_ppm) {
        EXPECT_EQ(a.prompt_sha256, b.prompt_sha256);
      }
    }
  }
}

}  // namespace
}  // namespace esa
