#!/usr/bin/env python3
"""Reference token ids for esa's tokenizers (tests/unit/test_tokenizer.cc).

Builds Hugging Face `tokenizers` byte-level BPE tokenizers on the vocabulary, merges and
control tokens of a GGUF file, one per pre-tokenizer rule set of esa:

  smollm  Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
          use_regex=True)]: the pre-tokenizer of SmolLM2's own tokenizer.json (and llama.cpp's
          "smollm"). These are the fixture's main ids.
  gpt2    ByteLevel(add_prefix_space=False, use_regex=True).
  llama3  Sequence[Split(<Llama-3 regex>, isolated), ByteLevel(use_regex=False)]
  qwen2   Sequence[Split(<Qwen2 regex>, isolated), ByteLevel(use_regex=False)]
          (the split regexes transformers' GGUF loader uses, gguf_tokenizer_mapping.py)

and checks them against transformers' own GGUF tokenizer (AutoTokenizer with gguf_file=...).
transformers 5.x has no "smollm" entry in GGUF_PRE_TOKENIZER_SPLITS, so its GGUF tokenizer
does not split digits; the script asserts equality on every string without a digit and reports
how many digit strings differ. Chat cases are rendered by transformers' apply_chat_template
(the GGUF's Jinja template).

Usage:
  .venv-ref/bin/python scripts/reference/tokenizer_fixture.py \
      --model data/models/SmolLM2-135M-Instruct.Q4_1.gguf \
      --out tests/fixtures/tokenizer/smollm2.json
"""
import argparse
import hashlib
import json
import os
import random
import sys
import unicodedata

import gguf
import tokenizers
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers.integrations.gguf import gguf_tokenizer_mapping as gtm

CONTROL, USER_DEFINED = 3, 4


def read_gguf_vocab(path):
    reader = gguf.GGUFReader(path)

    def field(key):
        return reader.fields.get(key)

    def strings(key):
        f = field(key)
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def scalar(key):
        f = field(key)
        return None if f is None else f.parts[f.data[0]].tolist()[0]

    tokens = strings("tokenizer.ggml.tokens")
    f = field("tokenizer.ggml.token_type")
    types = [int(f.parts[i][0]) for i in f.data]
    merges = strings("tokenizer.ggml.merges")
    model = bytes(field("tokenizer.ggml.model").parts[-1]).decode()
    pre = bytes(field("tokenizer.ggml.pre").parts[-1]).decode()
    return dict(tokens=tokens, types=types, merges=merges, model=model, pre=pre,
                bos=scalar("tokenizer.ggml.bos_token_id"), eos=scalar("tokenizer.ggml.eos_token_id"))


def build_reference(vocab, rule_set):
    bpe = models.BPE(vocab={t: i for i, t in enumerate(vocab["tokens"])},
                     merges=[tuple(m.split(" ")) for m in vocab["merges"]])
    tok = Tokenizer(bpe)
    if rule_set == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif rule_set == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        split = gtm.GGUF_PRE_TOKENIZER_SPLITS[rule_set]
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t, ty in zip(vocab["tokens"], vocab["types"]) if ty == CONTROL])
    tok.add_tokens([AddedToken(t, normalized=False, special=False)
                    for t, ty in zip(vocab["tokens"], vocab["types"]) if ty == USER_DEFINED])
    return tok


def test_strings():
    """A deterministic list of varied strings (>= 300)."""
    s = [
        "", " ", "  ", "\t", "\n", "\r\n", "a", "Hello", "Hello world", "Hello, world!",
        " Hello world", "Hello world ", "Hello world  ", "Hello   world", "  leading spaces",
        "trailing spaces   ", "tab\tseparated\tvalues", "line one\nline two\n", "\n\n\nthree newlines",
        "mixed \t \n whitespace \r\n run", "ends with newline\n", "ends with newlines\n\n\n",
        "spaces then newline   \n next", "word\n    indented", "    ", "\t\t\t", " \n \n ",
        "a  b   c    d     e", "x \t\ty", "\u00a0nbsp\u00a0inside", "ideographic\u3000space",
        "line\u2028separator", "para\u2029graph", "nel\u0085char", "mongolian\u180evowel",
        "zero\u200bwidth", "thin\u2009space", "em\u2003space  ", "\u3000\u3000lead",
        # Contractions, both cases.
        "it's", "IT'S", "don't", "DON'T", "we're", "WE'RE", "I've", "I'VE", "I'm", "I'M",
        "you'll", "YOU'LL", "he'd", "HE'D", "It'S mIxEd'Re", "'s 't 're 've 'm 'll 'd",
        "'S 'T 'RE 'VE 'M 'LL 'D", "rock'n'roll", "the cats' toys", "''quoted''", "'''",
        "O'Neill's dog's bone", "y'all'd've", " 's", "x's", "1's", "a'sb",
        # Numbers and digits.
        "0", "7", "42", "123", "1234", "12345", "1234567890", "3.14159", "2,718,281",
        "1e-10", "0x1F3A", "-273.15", "+1 (555) 010-9999", "2024-06-01T12:34:56Z",
        "version 1.2.3", "v10.0.19045", "100%", "$1,000,000.00", "№ 5", "1st 2nd 3rd 4th",
        "in 1999 and 2000", "A1B2C3", "abc123def456", "phone: 555 1234", " 123", "  456  ",
        "Ⅻ roman numerals Ⅳ", "½ ¾ ⅓", "٣ arabic-indic digits ١٢٣", "०१२ devanagari",
        "①②③ circled", "²³ superscripts", "1\t2\n3", "00000000000000000000",
        "3.141592653589793238462643383279502884197169399375105820974944",
        # Punctuation.
        "!!!", "???", "...", "…", "!?!?", "Hello!!! What??? Really...", "(a) [b] {c} <d>",
        "--- *** ___ ===", "a--b", "email@example.com", "https://example.com/path?q=1&r=2#frag",
        "C:\\Windows\\System32", "/usr/local/bin/", "~/.bashrc", "#hashtag @mention",
        "«guillemets» „quotes“ “curly” ‘single’", "—em dash– en dash-", "¡Hola! ¿Qué tal?",
        ";;;:::,,,", "!@#$%^&*()_+-=[]{}|;':\",./<>?`~", "..., ;", " . , ! ?",
        "end.", "end. ", "end.\n", " !", "  !!", "a!b", "a !b", "a! b",
        # Unicode scripts.
        "Привет, мир!", "Съешь же ещё этих мягких французских булок", "Γειά σου Κόσμε",
        "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया", "হ্যালো বিশ্ব", "สวัสดีชาวโลก",
        "안녕하세요 세계", "こんにちは世界", "你好，世界！", "今天天气很好。我们去公园吧。",
        "漢字とひらがなとカタカナ", "Xin chào thế giới", "Merhaba dünya", "Witaj świecie",
        "Dobrý den, světe", "Hallo Welt, schöne Grüße", "Bonjour le monde, ça va ?",
        "¿Dónde está la biblioteca?", "Olá, mundo! Ação, coração", "Ελληνικά και English",
        "ქართული ენა", "Հայերեն", "ᚠᚢᚦᚨᚱᚲ runes", "ꦗꦮ javanese", "ትግርኛ ge'ez",
        "ᏣᎳᎩ cherokee", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math", "𝟘𝟙𝟚 math digits", "ﬁ ligature ﬀ",
        "Ａｂｃ fullwidth １２３", "ｶﾀｶﾅ halfwidth",
        # Accents and combining marks.
        "café", "cafe\u0301", "naïve résumé", "Zoë Brontë", "e\u0301\u0302\u0303",
        "a\u0308o\u0308u\u0308", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇", "\u0301 leading combining",
        "ñ vs n\u0303", "Å vs A\u030a vs Å", "ǅ titlecase", "ß ẞ", "İstanbul ı",
        # Emoji.
        "😀", "😀😃😄", "I ❤️ NY", "👍🏽", "👋🏻👋🏼👋🏽👋🏾👋🏿", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏽‍💻",
        "🇺🇸🇫🇷🇯🇵", "1️⃣ #️⃣", "text 😀 text", "😀text", "emoji😀😀😀run", "🧑‍🤝‍🧑 🫶",
        "☃ ★ ☆ ♠ ♣ ♥ ♦", "✅❌⚠️", " 🎉", "🎉 ", "\U0001f600\n\U0001f601",
        # Special tokens inside text.
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_start|><|im_end|>",
        "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
        "text<|endoftext|>more text", "text <|endoftext|> more", "  <|im_end|>  ",
        "<|im_end|>\n\n", "<|im_start", "im_start|>", "<|im_start|", "<<|im_start|>>",
        "<|endoftext|><|endoftext|>", "<repo_name>esa<file_sep>main.cc", "<|IM_START|>",
        "<filename>a.py\n<gh_stars>100", "<jupyter_code>print(1)<jupyter_output>1",
        "<|im_start|>user\n12345<|im_end|>", "<|endoftext|> ", " <|endoftext|>",
        # Code.
        "def add(a, b):\n    return a + b\n",
        "class Foo:\n    def __init__(self):\n        self.x = 1  # comment\n",
        "import numpy as np\nx = np.arange(10).reshape(2, 5)\nprint(x.T @ x)\n",
        "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(f\"{i=}\")\n",
        "#include <stdio.h>\n\nint main(void) {\n  printf(\"hello\\n\");\n  return 0;\n}\n",
        "template <typename T>\nstd::vector<T> v{1, 2, 3};\nauto it = v.begin();\n",
        "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}\n",
        "func main() {\n\tfmt.Println(\"hi\")\n}\n",
        "const f = async (x) => { await fetch(`/api/${x}`); };",
        "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
        "<html>\n  <body class=\"main\">\n    <p>Hi &amp; bye</p>\n  </body>\n</html>",
        "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
        "x = 1;;y=2;\n\n\nz  =  3   ", "if (a != b && c <= d || !e) { return; }",
        "    indented code\n        more indented\n\n    back\n",
        "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done\n",
        "public static void main(String[] args) { System.out.println(args.length); }",
        "\\begin{equation} E = mc^2 \\end{equation}", "a_b_c __init__ __dunder__",
        "camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case",
        "x+=1;y-=2;z*=3", "arr[0][1]->field", "0b1010 0o777 0xdeadBEEF", "i++ --j",
        "// comment\n/* block */\n", "    \n    \n", "\n    def f():\n        pass\n    ",
        "key:\n  - item1\n  - item2\n", "| a | b |\n|---|---|\n| 1 | 2 |",
        "```python\nprint('hi')\n```", "~~strike~~ **bold** _it_ `code`",
        # Prose.
        "The quick brown fox jumps over the lazy dog.",
        "It was the best of times, it was the worst of times, it was the age of wisdom.",
        "Machine learning models are trained on large datasets; they don't always generalize.",
        "In 1969, Apollo 11 landed on the Moon. Neil Armstrong's first words were famous.",
        "She said, \"I'll be there at 5 o'clock,\" but she wasn't.",
        "Dr. Smith (Ph.D.) et al. -- see pp. 12-34, vol. 5.",
        "A sentence with    irregular   spacing and a trailing tab\t",
        "U.S.A. vs. U.K.: who'd've thought?", "e.g., i.e., etc.",
        "What's the weather like today? It's sunny and 25°C.",
    ]
    # Very long words and runs.
    s += ["a" * 1000, "ab" * 300, "supercalifragilisticexpialidocious" * 20,
          "Pneumonoultramicroscopicsilicovolcanoconiosis", " " * 100 + "x", "x" + " " * 100,
          "\n" * 50, "9" * 200, "😀" * 50, "-" * 120, "日本語" * 60, "a\u0301" * 80,
          "abc " * 200]
    # Deterministic random mixes of fragments.
    rng = random.Random(20240601)
    pieces = [w for w in s if 0 < len(w) < 40] + [" ", "  ", "\n", "\t", "'s", "'LL", "9",
                                                   "<|im_end|>", "<|endoftext|>"]
    while len(s) < 360:
        k = rng.randint(2, 6)
        sep = rng.choice(["", " ", "  ", "\n", "\t", " \n"])
        s.append(sep.join(rng.choice(pieces) for _ in range(k)))
    # Random code points from long-established blocks (letters, marks, digits of several
    # scripts, punctuation, symbols, every kind of whitespace), to exercise the Unicode classes.
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
              (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF),
              (0x2000, 0x206F), (0x2070, 0x218F), (0x2190, 0x23FF), (0x2460, 0x24FF),
              (0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFF00, 0xFFEF),
              (0x1D400, 0x1D7FF), (0x1F300, 0x1F64F)]
    spaces = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000"
    while len(s) < 420:
        chars = []
        for _ in range(rng.randint(5, 40)):
            if rng.random() < 0.25:
                chars.append(rng.choice(spaces))
            else:
                lo, hi = rng.choice(blocks)
                c = chr(rng.randint(lo, hi))
                if unicodedata.category(c) in ("Cn", "Co", "Cs"):
                    continue
                chars.append(c)
        s.append("".join(chars))
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="GGUF file (SmolLM2-135M-Instruct)")
    ap.add_argument("--out", required=True, help="output JSON")
    args = ap.parse_args()

    with open(args.model, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    vocab = read_gguf_vocab(args.model)
    assert vocab["model"] == "gpt2", vocab["model"]
    rule_sets = ["smollm", "gpt2", "llama3", "qwen2"]
    refs = {name: build_reference(vocab, name) for name in rule_sets}

    hf = transformers.AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(args.model)),
                                                    gguf_file=os.path.basename(args.model))

    strings = test_strings()
    assert len(set(strings)) == len(strings), "duplicate strings"
    cases, n_digit, n_digit_differ = [], 0, 0
    for text in strings:
        ids = {name: refs[name].encode(text, add_special_tokens=False).ids for name in rule_sets}
        hf_ids = hf.encode(text, add_special_tokens=False)
        has_digit = any(unicodedata.category(c).startswith("N") for c in text)
        if has_digit:
            n_digit += 1
            n_digit_differ += hf_ids != ids["smollm"]
        else:
            assert hf_ids == ids["smollm"], f"transformers GGUF tokenizer differs on {text!r}"
        main_ids = ids["smollm"]
        case = {"text": text, "ids": ids,
                "decoded": refs["smollm"].decode(main_ids, skip_special_tokens=False),
                "decoded_skip_special": refs["smollm"].decode(main_ids, skip_special_tokens=True)}
        assert hf.decode(main_ids, skip_special_tokens=False) == case["decoded"], text
        if "<|" in text or "<repo" in text or "<file" in text or "<jupyter" in text:
            refs["smollm"].encode_special_tokens = True
            case["ids_special_as_text"] = refs["smollm"].encode(text, add_special_tokens=False).ids
            refs["smollm"].encode_special_tokens = False
        cases.append(case)

    chats = []
    conversations = [
        [{"role": "user", "content": "Hello!"}],
        [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi there"}],
        [{"role": "user", "content": "What is the capital of France?"},
         {"role": "assistant", "content": "Paris."},
         {"role": "user", "content": "And of Italy?"}],
        [{"role": "system", "content": "Answer briefly."},
         {"role": "user", "content": "Count to 12, please."},
         {"role": "assistant", "content": "1 2 3 4 5 6 7 8 9 10 11 12"}],
        [{"role": "user", "content": "  spaces  \n\nand newlines\n"}],
        [{"role": "user", "content": "Unicode: 你好 😀 café"}],
    ]
    for messages in conversations:
        for gen in (True, False):
            text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            ids = refs["smollm"].encode(text, add_special_tokens=False).ids
            hf_ids = hf.encode(text, add_special_tokens=False)
            if not any(c.isdigit() for c in text):
                assert hf_ids == ids, f"chat ids differ: {text!r}"
            chats.append({"messages": messages, "add_generation_prompt": gen, "text": text, "ids": ids})

    out = {
        "about": "Reference token ids for esa's byte-level BPE tokenizer; see the script's docstring.",
        "command": "python scripts/reference/tokenizer_fixture.py --model "
                   f"{os.path.basename(args.model)} --out {args.out}",
        "model": os.path.basename(args.model),
        "model_sha256": sha256,
        "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
                     "python": sys.version.split()[0]},
        "rule_sets": {
            "smollm": "Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]",
            "gpt2": "ByteLevel(add_prefix_space=False, use_regex=True)",
            "llama3": "Sequence[Split(" + gtm.GGUF_PRE_TOKENIZER_SPLITS["llama3"] + ", isolated), ByteLevel(use_regex=False)]",
            "qwen2": "Sequence[Split(" + gtm.GGUF_PRE_TOKENIZER_SPLITS["qwen2"] + ", isolated), ByteLevel(use_regex=False)]",
        },
        "transformers_gguf": {"strings_with_digits": n_digit, "differ_on_digit_strings": n_digit_differ,
                              "note": "transformers' GGUF loader has no 'smollm' pre-tokenizer entry and "
                                      "does not split digits; equal on every string without a digit."},
        "vocab_size": len(vocab["tokens"]), "bos_id": vocab["bos"], "eos_id": vocab["eos"],
        "cases": cases,
        "chat": chats,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{len(cases)} strings, {len(chats)} chat cases -> {args.out} "
          f"({os.path.getsize(args.out)} bytes); transformers GGUF ids differ on "
          f"{n_digit_differ}/{n_digit} strings with digits")


if __name__ == "__main__":
    main()
