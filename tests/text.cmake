# Owned by the tokenizer work: tokenizer and chat-template suites.
esa_unit_test(test_tokenizer SOURCES unit/test_tokenizer.cc MODEL_TESTS TokenizerModel.* */TokenizerRuleSet.*)
