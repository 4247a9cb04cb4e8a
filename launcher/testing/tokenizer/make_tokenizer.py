#!/usr/bin/env python3
"""Make the tiny tokenizer the serving tests and the trtllm-serve stand-in share (``tokenizers`` package).

Why: aiperf counts tokens client-side with the model's tokenizer, and its ``builtin`` tokenizer downloads
tiktoken data at run time, which fails offline. A real model's tokenizer is gigabytes away. This one is
a word-level vocabulary split on whitespace only, so every whitespace-separated word is exactly one token
and concatenating words can never merge two into one: when the stand-in streams one word per SSE chunk,
aiperf's count of output tokens equals the number of chunks, and the inter-token latency aiperf derives
from it is the gap the stand-in was told to keep. Words outside the vocabulary (aiperf's prompt corpus)
become ``[UNK]``, one token each, so prompt lengths stay exact too.

The vocabulary is generated (two-syllable words from fixed letters), not copied from any corpus: the
output is deterministic, a few tens of kilobytes, and checked in beside this script. Run it with a Python
that has ``tokenizers`` (``.venv-aiperf/bin/python launcher/testing/tokenizer/make_tokenizer.py``); it
rewrites ``tokenizer.json`` and ``tokenizer_config.json`` in its own folder (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers

SPECIALS = ("[UNK]", "<s>", "</s>")
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
SIZE = 4096  # words; plenty for distinct-looking output, small enough to check in


def words(size: int = SIZE) -> list[str]:
    """``size`` distinct lowercase words: consonant-vowel syllable pairs (``baba``, ``babe``, ...)."""
    syllables = [c + v for c, v in itertools.product(CONSONANTS, VOWELS)]
    return ["".join(pair) for pair in itertools.islice(itertools.product(syllables, repeat=2), size)]


def build() -> Tokenizer:
    """A word-level tokenizer: split on whitespace only, unknown words -> ``[UNK]``, no BOS/EOS added."""
    vocab = {token: i for i, token in enumerate((*SPECIALS, *words()))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(list(SPECIALS))
    return tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    build().save(str(args.out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "[UNK]", "bos_token": "<s>", "eos_token": "</s>",
        "model_max_length": 1_000_000, "clean_up_tokenization_spaces": False,
        "stand_in": "tiny word-level tokenizer for tests (launcher/testing/tokenizer/make_tokenizer.py)",
    }
    (args.out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {args.out / 'tokenizer.json'} ({len(SPECIALS) + SIZE} tokens)")


if __name__ == "__main__":
    main()
