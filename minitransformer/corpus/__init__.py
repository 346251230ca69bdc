"""A deterministic toy English->French corpus, generated from a hand-written grammar.

Real corpora are noisy and large; this one is small, exactly correct and fully understood,
so a model's mistakes on it are the model's. Three files, one idea each:

    lexicon.py    the bilingual dictionary (nouns with gender, adjectives with their forms
                  and position, verbs with their conjugation class)
    grammar.py    one sentence structure rendered in both languages (agreement, word order,
                  elision, contractions, negation, questions)
    generate.py   sampling, the held-out combinations, the splits, the .tsv files

Regenerate the committed data (byte-identical) with

    python -m minitransformer.corpus.generate --out data/
"""
