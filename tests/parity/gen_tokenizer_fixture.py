"""Writes tests/data/text/: a small umT5-style SentencePiece model (unigram,
nmt_nfkc, byte fallback, umT5's ids), 300 strings and the ids sentencepiece
gives them (</s> appended, 512 at most), and the tokenizer.json transformers'
converter makes of the model with the ids tokenizers gives for the same
strings (ids_json.txt), for tests/unit/test_tokenizer.c.

    .venv/bin/python tests/parity/gen_tokenizer_fixture.py
"""
import pathlib
import random

import sentencepiece as spm

from test_tokenizer import escape, hf_tokenizer, rand_text, strings

OUT = pathlib.Path(__file__).resolve().parents[1] / "data" / "text"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    corpus = OUT / "corpus.tmp"
    corpus.write_text("".join(rand_text(rng, rng.randint(3, 12)).replace("\n", " ") + "\n"
                              for _ in range(5000)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(OUT / "spiece"),
                                   vocab_size=1500, model_type="unigram", character_coverage=0.99,
                                   normalization_rule_name="nmt_nfkc", byte_fallback=True,
                                   num_threads=2, minloglevel=2, hard_vocab_limit=False,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    corpus.unlink()
    (OUT / "spiece.vocab").unlink()
    sp = spm.SentencePieceProcessor(model_file=str(OUT / "spiece.model"))
    texts = strings(11, 300)
    with open(OUT / "strings.txt", "w") as f, open(OUT / "ids.txt", "w") as g:
        for t in texts:
            f.write(escape(t) + "\n")
            g.write(" ".join(map(str, sp.encode(t)[:511] + [1])) + "\n")
    write_json_fixture(sp, texts)


def write_json_fixture(sp, texts):
    fast = hf_tokenizer(OUT / "spiece.model", sp)
    fast.enable_truncation(512)
    fast.save(str(OUT / "tokenizer.json"), pretty=False)
    with open(OUT / "ids_json.txt", "w") as g:
        for t in texts:
            g.write(" ".join(map(str, fast.encode(t).ids)) + "\n")


if __name__ == "__main__":
    main()
