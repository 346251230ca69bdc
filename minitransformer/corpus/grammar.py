"""A tiny synchronous grammar: one sentence structure, rendered in English and in French.

A sentence is described once, language-free, as a `Clause` built from `NP`s (noun phrases)
and an optional `Place` (a locative phrase). `render(clause)` then writes it out in both
languages, applying each language's rules on the way:

    word order       le chat noir / the black cat, but le petit chat (pre-nominal adjectives)
    agreement        la voiture noire, les voitures noires; he eats / they eat
    elision          l'arbre, j'aime, je n'aime pas, d'un livre, est-ce qu'un chat ...
    contraction      à + le = au, à + les = aux, de + le = du, de + les = des
    special forms    un bel arbre, un vieil homme, un nouvel hôtel, mon école (not ma école)
    negation         ne ... pas around the verb; un/une/des become de after it (pas de chat)
    questions        inversion with a pronoun (aime-t-il le chat ?), est-ce que with a noun,
                     où est le chien ?
    conjugation      present tense of -er/-ir/-re verbs and of the irregular ones

English "you" (tu or vous) and "they" (ils or elles) have two French renderings each, so
`render` returns every French translation of the one English sentence.

Word alignments come for free. Every token is rendered as a `Word`: its text and the
*concepts* it expresses, named by role ("subject.noun", "object.det", "verb", "negation").
An English word and a French word are aligned when they share a concept, so
`render_aligned` returns, with each translation, its gold alignment in Pharaoh "i-j"
form (English word i, French word j, both counted from 0). The rules are in
`align_words` and data/README.md; in short:

    content words, determiners, pronouns, prepositions, "not", "where", the final
        punctuation                        align with their French counterparts
    a glued French token                   aligns with every word it glues together:
        (l'homme, j'aime, au, du, d'un, aime-t-il)   l'homme with "the" and "man"
    not                                    aligns with both ne and pas
    look for, listen to, wait for          the English particle aligns with the French
                                           verb (chercher), which has no preposition
    words only one language needs          are unaligned: English do-support (does,
        do), French est-ce que, and a French article with no English one
        (des chats, de petits chats for "cats", "small cats")

Try it:

    python -c "from minitransformer.corpus.grammar import *; \
print(render(Clause(NP('cat', adjectives=('black',)), 'sleep')))"
    ('the black cat sleeps .', ('le chat noir dort .',))

The helpers `noun_phrase(...)` and `sentence(...)` are the same thing with plain
arguments, for tests and for exploring at a prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product

from .lexicon import (
    ADJECTIVES,
    ASPIRATED_H,
    ENGLISH_IRREGULAR_3SG,
    FRENCH_VOWELS,
    IRREGULAR_PRESENT,
    NOUNS,
    PLACE_PREPOSITIONS,
    POSSESSIVES,
    PRONOUNS,
    SECOND_GROUP,
    VERBS,
    Adjective,
)

DETERMINERS = ("the", "a", "my", "your", "his", "her", "our", "their")
MOODS = ("statement", "negative", "question", "where")

# --------------------------------------------------------------------------------------
# Sentence structure (the same for both languages)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NP:
    """A noun phrase: determiner, adjectives and a noun, all named by their English key."""

    noun: str  # key into NOUNS: "cat"
    det: str = "the"  # one of DETERMINERS; "a" in the plural means no article in English
    plural: bool = False
    adjectives: tuple[str, ...] = ()  # keys into ADJECTIVES, at most one pre-nominal


@dataclass(frozen=True)
class Place:
    """A locative phrase: "in the garden", "at the station", "under the table"."""

    preposition: str  # "in", "on", "under", "at"
    np: NP


@dataclass(frozen=True)
class Clause:
    """One simple sentence.

    verb "be" with `adjective` is "X is ADJ", with `place` "X is PLACE", and with mood
    "where" the question "where is X ?". Any other verb is a key into VERBS; `obj`,
    `recipient` (give X to Y) and `place` are its optional complements.
    """

    subject: NP | str  # a noun phrase or a pronoun: "i", "you", "he", "she", "we", "they"
    verb: str = "be"
    obj: NP | None = None
    recipient: NP | None = None
    adjective: str | None = None
    place: Place | None = None
    mood: str = "statement"  # one of MOODS


class GrammarError(ValueError):
    """The clause asks for a construction this grammar does not (safely) produce."""


@dataclass(frozen=True)
class Word:
    """One rendered token and the concepts it expresses ("subject.noun", "verb", ...).

    Two words of a translation pair are aligned when their concepts meet; a word with no
    concepts (does, est-ce) is aligned with nothing.
    """

    text: str
    concepts: frozenset[str] = frozenset()


def texts(words: list[Word]) -> list[str]:
    return [word.text for word in words]


# --------------------------------------------------------------------------------------
# Sounds and spelling
# --------------------------------------------------------------------------------------


def starts_with_vowel_sound(french_word: str) -> bool:
    """Does the word begin with a vowel sound, the trigger for elision and bel/vieil?

    A written "h" is silent in French, so l'homme elides like l'arbre; only the few words
    with an "aspirated" h (le hibou) behave like a consonant.
    """
    word = french_word.lower()
    if word.startswith("h"):
        return word not in ASPIRATED_H
    return word[0] in FRENCH_VOWELS


def elide(word: str, following: str) -> str:
    """le, la, je, ne, de, que drop their vowel before a vowel sound: le + arbre -> l'."""
    if starts_with_vowel_sound(following):
        return word[:-1] + "'"
    return word


def glue(words: list[str]) -> str:
    """Join tokens with spaces, attaching an elided word to the next one: l' arbre -> l'arbre."""
    text = " ".join(words)
    return text.replace("' ", "'")


def glue_words(words: list[Word]) -> list[Word]:
    """`glue` on Words: an elided word joins the next one, and so do their concepts, so
    l' + homme is one token l'homme that expresses both "the" and "man"."""
    out: list[Word] = []
    for word in words:
        if out and out[-1].text.endswith("'"):
            out[-1] = Word(out[-1].text + word.text, out[-1].concepts | word.concepts)
        else:
            out.append(word)
    return out


def english_indefinite_article(following: str) -> str:
    # Chosen by the next word's spelling, which is safe here: the lexicon has no English
    # word like "hour" (silent h) or "university" (u said "you").
    return "an" if following[0] in "aeiou" else "a"


def english_third_person(base: str) -> str:
    """he/she form of an English verb: like -> likes, watch -> watches, carry -> carries."""
    if base in ENGLISH_IRREGULAR_3SG:
        return ENGLISH_IRREGULAR_3SG[base]
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


# --------------------------------------------------------------------------------------
# French morphology
# --------------------------------------------------------------------------------------

# -er verbs whose stem vowel changes in the present: acheter -> j'achète, appeler -> j'appelle,
# préférer -> je préfère (e/é + one consonant + er), and essayer -> j'essaie (-yer).
_STEM_CHANGING = re.compile(r"([eé]([^aeiouyéèêh]|ch|gu|qu)er|yer)$")


def conjugate(infinitive: str, person: int) -> str:
    """Present tense of a French verb. person: 0 je, 1 tu, 2 il/elle, 3 nous, 4 vous, 5 ils.

    Irregular verbs come from the lexicon's tables; the three regular groups follow rules:
        parler: parle, parles, parle, parlons, parlez, parlent
        finir:  finis, finis, finit, finissons, finissez, finissent
        vendre: vends, vends, vend, vendons, vendez, vendent
    """
    if infinitive in IRREGULAR_PRESENT:
        return IRREGULAR_PRESENT[infinitive][person]
    stem, ending = infinitive[:-2], infinitive[-2:]
    if ending == "er":
        if infinitive != "aller" and _STEM_CHANGING.search(infinitive):
            raise GrammarError(f"{infinitive} changes its stem; the grammar leaves it out")
        if person == 3 and stem.endswith("g"):
            return stem + "eons"  # keep g soft before o: nous mangeons
        if person == 3 and stem.endswith("c"):
            return stem[:-1] + "çons"  # keep c soft before o: nous commençons
        return stem + ("e", "es", "e", "ons", "ez", "ent")[person]
    if ending == "ir" and infinitive in SECOND_GROUP:
        return stem + ("is", "is", "it", "issons", "issez", "issent")[person]
    if ending == "re":
        return stem + ("s", "s", "", "ons", "ez", "ent")[person]
    raise GrammarError(f"no rule or table conjugates {infinitive}")


def adjective_form(adjective: Adjective, gender: str, plural: bool, before: str = "") -> str:
    """The form that agrees with a noun; `before` is the next word if the adjective precedes it.

    beau, vieux and nouveau have a special masculine singular before a vowel sound
    (un bel arbre, un vieil homme, un nouvel hôtel), so that the vowel is not followed by
    another vowel; the plural needs none, since liaison takes care of it (de vieux arbres).
    """
    if plural:
        return adjective.fp if gender == "f" else adjective.mp
    if gender == "f":
        return adjective.fs
    if before and starts_with_vowel_sound(before):
        return adjective.ms_before_vowel
    return adjective.ms


# --------------------------------------------------------------------------------------
# Noun phrases
# --------------------------------------------------------------------------------------


def _adjectives(np: NP) -> tuple[list[Adjective], list[Adjective]]:
    """Split an NP's adjectives into French pre-nominal and post-nominal ones."""
    adjectives = [ADJECTIVES[key] for key in np.adjectives]
    pre = [a for a in adjectives if a.prenominal]
    post = [a for a in adjectives if not a.prenominal]
    if len(pre) > 1:
        raise GrammarError(f"two pre-nominal adjectives in {np}: their order is not modelled")
    return pre, post


def english_np(np: NP) -> list[str]:
    """the small black cat, an old car, my friends, cats (indefinite plural: no article)."""
    return texts(english_np_words(np, "np"))


def english_np_words(np: NP, role: str) -> list[Word]:
    """english_np as Words; `role` (subject, object, ...) prefixes each concept."""
    noun = NOUNS[np.noun]
    pre, post = _adjectives(np)
    # English puts opinion/size/age (the French pre-nominal kind) before colour/origin.
    words = [Word(a.en, frozenset({f"{role}.adj.{a.en}"})) for a in pre + post]
    words.append(Word(noun.en_plural if np.plural else noun.en, frozenset({f"{role}.noun"})))
    determiner = frozenset({f"{role}.det"})
    if np.det == "a":
        return words if np.plural else [Word(english_indefinite_article(words[0].text), determiner)] + words
    if np.det not in DETERMINERS:
        raise GrammarError(f"unknown determiner {np.det!r}")
    return [Word(np.det, determiner)] + words


def _french_determiner(np: NP, first: str, gender: str, you: str, indefinite_as_de: bool) -> str:
    """The French determiner for an NP whose next word is `first`, possibly elided (l', d')."""
    if np.det == "the":
        if np.plural:
            return "les"
        return elide("le" if gender == "m" else "la", first)
    if np.det == "a":
        if indefinite_as_de:
            return elide("de", first)
        if np.plural:
            return "des"
        return "un" if gender == "m" else "une"
    owner = f"your/{you}" if np.det == "your" else np.det
    masculine, feminine, plural = POSSESSIVES[owner]
    if np.plural:
        return plural
    # ma/ta/sa cannot elide, so before a vowel sound French borrows mon/ton/son: mon école.
    if gender == "f" and not starts_with_vowel_sound(first):
        return feminine
    return masculine


# à and de fuse with the definite articles le and les (but not with la or l').
CONTRACTIONS = {("à", "le"): "au", ("à", "les"): "aux", ("de", "le"): "du", ("de", "les"): "des"}


def french_np(np: NP, you: str = "tu", preposition: str = "", negated_object: bool = False) -> list[str]:
    """The French noun phrase as tokens, preposition included: au petit marché, d'un livre.

    you: "tu" or "vous", the reading of "your".
    negated_object: the NP is the direct object of a negated verb, where un/une/des turn
        into de: je n'ai pas de chat.
    """
    return texts(french_np_words(np, "np", you, preposition, "np.prep", negated_object))


def french_np_words(np: NP, role: str, you: str = "tu", preposition: str = "", preposition_concept: str = "",
                    negated_object: bool = False) -> list[Word]:
    """french_np as Words. The preposition expresses `preposition_concept`; a contraction
    (au, du) or an elided d' expresses the preposition's and the article's concepts both."""
    noun = NOUNS[np.noun]
    gender = noun.gender
    pre, post = _adjectives(np)
    noun_form = noun.fr_plural if np.plural else noun.fr
    words = [Word(adjective_form(a, gender, np.plural, before=noun_form), frozenset({f"{role}.adj.{a.en}"}))
             for a in pre]
    words.append(Word(noun_form, frozenset({f"{role}.noun"})))
    words += [Word(adjective_form(a, gender, np.plural), frozenset({f"{role}.adj.{a.en}"})) for a in post]
    # des also becomes de before a pre-nominal adjective (de petits chats), and after the
    # preposition de the article des disappears into it (il parle de chats).
    indefinite_as_de = negated_object or (np.plural and (bool(pre) or preposition == "de"))
    determiner = _french_determiner(np, words[0].text, gender, you, indefinite_as_de)
    det_concept, prep_concept = f"{role}.det", preposition_concept
    if preposition == "de" and determiner in ("de", "d'"):
        return glue_words([Word(determiner, frozenset({det_concept, prep_concept}))] + words)
    if (preposition, determiner) in CONTRACTIONS:
        return glue_words([Word(CONTRACTIONS[preposition, determiner], frozenset({det_concept, prep_concept}))]
                          + words)
    if preposition == "de":
        return glue_words([Word(elide("de", determiner), frozenset({prep_concept})),
                           Word(determiner, frozenset({det_concept}))] + words)  # d'un, de la
    head = [Word(preposition, frozenset({prep_concept}))] if preposition else []
    return glue_words(head + [Word(determiner, frozenset({det_concept}))] + words)


def glue_tokens(words: list[str]) -> list[str]:
    """Token list with each elided word (l', d', j') attached to the word after it."""
    return glue(words).split(" ")


# --------------------------------------------------------------------------------------
# Clauses
# --------------------------------------------------------------------------------------


def _check(clause: Clause) -> None:
    """Refuse the constructions whose French the grammar does not get right."""
    if clause.mood not in MOODS:
        raise GrammarError(f"unknown mood {clause.mood!r}")
    pronoun = clause.subject if isinstance(clause.subject, str) else None
    if pronoun is not None and pronoun not in PRONOUNS:
        raise GrammarError(f"unknown pronoun {pronoun!r}")
    if clause.mood in ("question", "where") and pronoun == "i":
        raise GrammarError("questions with 'i' (est-ce que je ...) are left out")
    if clause.adjective and pronoun in ("i", "you", "we"):
        # je suis content / contente: the speaker's gender is not in the English.
        raise GrammarError("a predicate adjective needs a subject of known gender")
    if clause.mood == "where" and (clause.verb != "be" or clause.adjective or clause.place):
        raise GrammarError("'where' questions are 'where is X ?' only")
    if clause.verb == "be" and clause.mood != "where" and not (clause.adjective or clause.place):
        raise GrammarError("'be' needs an adjective or a place")
    if clause.verb == "be" and clause.adjective and not ADJECTIVES[clause.adjective].predicative:
        raise GrammarError(f"{clause.adjective!r} is not used after 'be'")
    if clause.verb != "be":
        verb = VERBS[clause.verb]
        if clause.obj is None and not verb.intransitive:
            raise GrammarError(f"{clause.verb!r} needs an object")
        if clause.obj is not None and not verb.objects:
            raise GrammarError(f"{clause.verb!r} takes no object")


def _mentions(clause: Clause, word: str) -> bool:
    nps = [clause.subject, clause.obj, clause.recipient, clause.place and clause.place.np]
    return clause.subject == word or any(isinstance(np, NP) and np.det == word for np in nps)


def readings(clause: Clause) -> list[dict[str, str]]:
    """The French readings an English clause allows: 'you' as tu/vous, 'they' as ils/elles."""
    you = ("tu", "vous") if _mentions(clause, "you") or _mentions(clause, "your") else ("tu",)
    they = ("ils", "elles") if clause.subject == "they" else ("ils",)
    return [{"you": y, "they": t} for y, t in product(you, they)]


def _english_person(subject: NP | str) -> str:
    """The English agreement class of a subject: 'i', 'you', '3sg' or 'plural'."""
    if isinstance(subject, NP):
        return "plural" if subject.plural else "3sg"
    return {"i": "i", "you": "you", "he": "3sg", "she": "3sg", "we": "plural", "they": "plural"}[subject]


def english(clause: Clause) -> str:
    """The English sentence, lower-case, with the final punctuation as its own token."""
    return " ".join(texts(english_words(clause)))


def english_words(clause: Clause) -> list[Word]:
    """The English sentence as Words, the concepts named by role (see `Word`)."""
    if isinstance(clause.subject, NP):
        subject = english_np_words(clause.subject, "subject")
    else:
        subject = [Word(clause.subject, frozenset({"subject"}))]
    person = _english_person(clause.subject)
    complement = []
    if clause.adjective:
        complement.append(Word(clause.adjective, frozenset({"predicate"})))
    if clause.obj is not None:
        verb = VERBS[clause.verb]
        # "talk about" -> parler de: the particle is the French preposition; "look for"
        # -> chercher: French has none, so the particle belongs to the verb.
        particle = [Word(verb.en_particle, frozenset({"verb.prep" if verb.fr_prep else "verb"}))]
        complement += (particle if verb.en_particle else []) + english_np_words(clause.obj, "object")
    if clause.recipient is not None:
        complement += [Word("to", frozenset({"recipient.prep"}))] + english_np_words(clause.recipient, "recipient")
    if clause.place is not None:
        complement += [Word(clause.place.preposition, frozenset({"place.prep"}))]
        complement += english_np_words(clause.place.np, "place")

    verb = frozenset({"verb"})
    negation = Word("not", frozenset({"negation"}))
    if clause.verb == "be":
        be = Word({"i": "am", "you": "are", "3sg": "is", "plural": "are"}[person], verb)
        words = {
            "statement": subject + [be] + complement,
            "negative": subject + [be, negation] + complement,
            "question": [be] + subject + complement,
            "where": [Word("where", frozenset({"where"})), be] + subject,
        }[clause.mood]
    else:
        base = VERBS[clause.verb].en
        inflected = Word(english_third_person(base) if person == "3sg" else base, verb)
        # English negates and asks with "do", which French does not need: no concept
        do = Word("does" if person == "3sg" else "do")
        words = {
            "statement": subject + [inflected] + complement,
            "negative": subject + [do, negation, Word(base, verb)] + complement,
            "question": [do] + subject + [Word(base, verb)] + complement,
        }[clause.mood]
    return words + [Word("?" if clause.mood in ("question", "where") else ".", frozenset({"punctuation"}))]


def _french_subject(subject: NP | str, reading: dict[str, str]) -> tuple[list[Word], int, str, bool]:
    """(tokens, person index, gender, plural) of the French subject."""
    if isinstance(subject, NP):
        noun = NOUNS[subject.noun]
        person = 5 if subject.plural else 2
        return french_np_words(subject, "subject", reading["you"]), person, noun.gender, subject.plural
    choices = dict(PRONOUNS[subject])
    pronoun = reading[subject] if subject in ("you", "they") else next(iter(choices))
    gender = "f" if pronoun in ("elle", "elles") else "m"
    return [Word(pronoun, frozenset({"subject"}))], choices[pronoun], gender, pronoun in ("nous", "vous", "ils", "elles")


def invert(verb_form: str, pronoun: str) -> str:
    """Subject-verb inversion for a question: aimes-tu, va-t-il, a-t-elle, sont-ils.

    Between a verb ending in a vowel and il/elle French inserts a -t- so that two vowels
    do not meet (aime-t-il); a verb ending in -t or -d needs none (est-il, vend-il).
    """
    if pronoun in ("il", "elle") and verb_form[-1] in "ae":
        return f"{verb_form}-t-{pronoun}"
    return f"{verb_form}-{pronoun}"


def french(clause: Clause, reading: dict[str, str]) -> str:
    """The French sentence for one reading of the clause."""
    return " ".join(texts(french_words(clause, reading)))


def french_words(clause: Clause, reading: dict[str, str]) -> list[Word]:
    """The French sentence for one reading of the clause, as Words."""
    subject, person, gender, plural = _french_subject(clause.subject, reading)
    you = reading["you"]
    verb = Word(conjugate("être" if clause.verb == "be" else VERBS[clause.verb].fr, person), frozenset({"verb"}))
    negated = clause.mood == "negative"

    complement = []
    if clause.adjective:
        # The predicate adjective agrees with the subject: la voiture est noire.
        complement.append(Word(adjective_form(ADJECTIVES[clause.adjective], gender, plural), frozenset({"predicate"})))
    if clause.obj is not None:
        # Only a direct object takes de after a negation: il n'a pas de chat,
        # but il ne joue pas avec un chat.
        preposition = VERBS[clause.verb].fr_prep
        complement += french_np_words(clause.obj, "object", you, preposition, "verb.prep",
                                      negated_object=negated and not preposition)
    if clause.recipient is not None:
        complement += french_np_words(clause.recipient, "recipient", you, "à", "recipient.prep")
    if clause.place is not None:
        french_preposition = PLACE_PREPOSITIONS[clause.place.preposition]
        complement += french_np_words(clause.place.np, "place", you, french_preposition, "place.prep")

    pronoun = subject[0] if isinstance(clause.subject, str) else None
    negation = frozenset({"negation"})
    if pronoun:
        inverted = Word(invert(verb.text, pronoun.text), verb.concepts | pronoun.concepts)
    if clause.mood == "statement":
        words = subject + [verb] + complement
    elif clause.mood == "negative":
        words = subject + [Word("ne", negation), verb, Word("pas", negation)] + complement
    elif clause.mood == "question" and pronoun:
        words = [inverted] + complement
    elif clause.mood == "question":
        # Inverting a noun subject needs a copy pronoun (le chat dort-il ?); est-ce que
        # turns the statement into a question without touching its order. It has no
        # English counterpart (the "does" of English is unaligned too).
        words = [Word("est-ce"), Word("que")] + subject + [verb] + complement
    elif pronoun:
        words = [Word("où", frozenset({"where"})), inverted]
    else:
        words = [Word("où", frozenset({"where"})), verb] + subject
    mark = "?" if clause.mood in ("question", "where") else "."
    return glue_words(_elide_clitics(words)) + [Word(mark, frozenset({"punctuation"}))]


def _elide_clitics(words: list[Word]) -> list[Word]:
    """je, ne and que elide before a vowel sound: j'aime, je n'aime pas, est-ce qu'un chat."""
    out = list(words)
    for i in range(len(out) - 1):
        if out[i].text in ("je", "ne", "que"):
            out[i] = Word(elide(out[i].text, out[i + 1].text), out[i].concepts)
    return out


def align_words(english_side: list[Word], french_side: list[Word]) -> str:
    """The gold alignment in Pharaoh form, "i-j ..." sorted by i then j: English word i and
    French word j are aligned when they express a common concept."""
    return " ".join(f"{i}-{j}" for i, en in enumerate(english_side) for j, fr in enumerate(french_side)
                    if en.concepts & fr.concepts)


def render(clause: Clause) -> tuple[str, tuple[str, ...]]:
    """(English sentence, every French translation), e.g.
    ('do you like the cat ?', ('aimes-tu le chat ?', 'aimez-vous le chat ?'))."""
    english_sentence, translations, _ = render_aligned(clause)
    return english_sentence, translations


def render_aligned(clause: Clause) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """render(clause) and, for each translation, its gold alignment, e.g.
    ('the black cat sleeps .', ('le chat noir dort .',), ('0-0 1-2 2-1 3-3 4-4',))."""
    _check(clause)
    english_side = english_words(clause)
    aligned = {}  # French sentence -> alignment, in reading order, duplicates dropped
    for reading in readings(clause):
        french_side = french_words(clause, reading)
        aligned.setdefault(" ".join(texts(french_side)), align_words(english_side, french_side))
    return " ".join(texts(english_side)), tuple(aligned), tuple(aligned.values())


# --------------------------------------------------------------------------------------
# Convenience entry points
# --------------------------------------------------------------------------------------


def noun_phrase(noun: str, det: str = "the", plural: bool = False, adjectives: tuple[str, ...] = (),
                you: str = "tu") -> tuple[str, str]:
    """(English, French) of one noun phrase: noun_phrase('tree', 'a', adjectives=('old',))
    -> ('an old tree', 'un vieil arbre')."""
    np = NP(noun, det, plural, tuple(adjectives))
    return " ".join(english_np(np)), " ".join(french_np(np, you))


def sentence(subject: NP | str, verb: str = "be", **parts) -> tuple[str, tuple[str, ...]]:
    """render(Clause(subject, verb, **parts)): sentence('he', 'go to', obj=NP('market'))
    -> ('he goes to the market .', ('il va au marché .',))."""
    return render(Clause(subject, verb, **parts))
