"""The bilingual lexicon: every English and French word the toy corpus may use.

A translation corpus is only as correct as its dictionary, so this file is pure data,
written by hand and small enough to check line by line. It holds:

    NOUNS        English noun -> Noun (French form, gender, plural, what kind of thing it is)
    ADJECTIVES   English adjective -> Adjective (four French forms, position, meaning group)
    VERBS        English verb -> Verb (French infinitive, preposition, who does it to what)
    IRREGULAR_PRESENT   present-tense tables of the French verbs no rule conjugates
    ASPIRATED_H  French words starting with an "h" that blocks elision (le hibou, not l'hibou)

Regular forms (plurals, feminines, conjugations) are not stored: grammar.py derives them
by rule, and this file only spells out what the rules would get wrong.

Each table is a block of text, one entry a line, columns separated by "|", so that it reads
like a dictionary page. Look a word up with

    python -c "from minitransformer.corpus.lexicon import NOUNS; print(NOUNS['horse'])"
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------------------
# Entry types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Noun:
    en: str  # English singular: "horse"
    en_plural: str  # English plural: "horses"
    fr: str  # French singular: "cheval"
    fr_plural: str  # French plural: "chevaux"
    gender: str  # grammatical gender of the French noun: "m" or "f"
    kind: str  # person, animal, object, vehicle, food, place, nature
    tags: frozenset[str]  # finer semantic classes (surface, venue, readable, ...)


@dataclass(frozen=True)
class Adjective:
    en: str  # English form (English adjectives do not inflect)
    ms: str  # French masculine singular: "beau"
    fs: str  # feminine singular: "belle"
    mp: str  # masculine plural: "beaux"
    fp: str  # feminine plural: "belles"
    ms_before_vowel: str  # masculine singular before a vowel sound: "bel" (usually = ms)
    prenominal: bool  # placed before the noun in French (le petit chat)?
    group: str  # meaning group: size, age, quality, colour, nationality, feeling, ...
    applies_to: frozenset[str]  # noun kinds or tags this adjective can describe
    predicative: bool  # usable after "être"? ("la voiture est nouvelle" is not idiomatic)


@dataclass(frozen=True)
class Verb:
    key: str  # the English verb as the grammar names it: "look for", "talk about"
    en: str  # English base form: "look"
    en_particle: str  # English word that follows the verb: "for" ("" if none)
    fr: str  # French infinitive: "chercher"
    fr_prep: str  # French preposition before the object: "à", "de", "avec" ("" if none)
    subjects: frozenset[str]  # noun kinds that can do it ("person" covers all pronouns)
    objects: frozenset[str]  # noun kinds or tags it can take as object (empty: none)
    intransitive: bool  # can it be used with no object ("the cat sleeps")?
    definite_object: bool  # object must be definite/possessive (see the VERBS table)


# French letters that begin a word with a vowel sound. "y" is left out on purpose: the
# lexicon has no word starting with it, and "le yaourt" shows it is not a safe vowel.
FRENCH_VOWELS = "aeiouàâäéèêëîïôöùûüœæ"

# --------------------------------------------------------------------------------------
# Nouns
# --------------------------------------------------------------------------------------
# english[/plural] | french[/plural] | gender | kind | tags
# A plural is written only where the rule in grammar.py would get it wrong.
# Tags used by the grammar:
#   aspirated  French "h" that blocks elision and liaison (le hibou, du hérisson)
#   surface    things to be on or under (sur la table)      container  things to be in
#   vessel     things that are empty or full                venue  places to go to / be at
#   interior   places to be in (dans le jardin)             water  places to swim in
#   sight      places to visit                              portable  natural things to carry
#   unowned    never with a possessive: "my woman", "his girl" read as ma femme (my wife),
#              sa fille (his daughter)
#   readable, writable, closable, clothing, toy, makeable, fruit, audible, ownable, long

NOUN_TABLE = """
man/men              | homme          | m | person  | unowned
woman/women          | femme          | f | person  | unowned
boy                  | garçon         | m | person  | unowned
girl                 | fille          | f | person  | unowned
child/children       | enfant         | m | person  |
baby                 | bébé           | m | person  |
teacher              | professeur     | m | person  |
doctor               | médecin        | m | person  |
brother              | frère          | m | person  |
sister               | sœur           | f | person  |
father               | père           | m | person  |
mother               | mère           | f | person  |
son                  | fils           | m | person  |
uncle                | oncle          | m | person  |
aunt                 | tante          | f | person  |
king                 | roi            | m | person  |
queen                | reine          | f | person  |
prince               | prince         | m | person  |
princess             | princesse      | f | person  |
actor                | acteur         | m | person  |
actress              | actrice        | f | person  |
waiter               | serveur        | m | person  |
waitress             | serveuse       | f | person  |
cat                  | chat           | m | animal  |
dog                  | chien          | m | animal  |
horse                | cheval         | m | animal  |
bird                 | oiseau         | m | animal  |
mouse/mice           | souris         | f | animal  |
rabbit               | lapin          | m | animal  |
cow                  | vache          | f | animal  |
duck                 | canard         | m | animal  |
pig                  | cochon         | m | animal  |
owl                  | hibou          | m | animal  | aspirated
hedgehog             | hérisson       | m | animal  | aspirated
elephant             | éléphant       | m | animal  |
bear                 | ours           | m | animal  |
wolf/wolves          | loup           | m | animal  |
fox                  | renard         | m | animal  |
hen                  | poule          | f | animal  |
goat                 | chèvre         | f | animal  |
snake                | serpent        | m | animal  |
frog                 | grenouille     | f | animal  |
bee                  | abeille        | f | animal  |
spider               | araignée       | f | animal  |
lion                 | lion           | m | animal  |
tiger                | tigre          | m | animal  |
monkey               | singe          | m | animal  |
donkey               | âne            | m | animal  |
squirrel             | écureuil       | m | animal  |
turtle               | tortue         | f | animal  |
giraffe              | girafe         | f | animal  |
butterfly            | papillon       | m | animal  |
book                 | livre          | m | object  | readable, closable
table                | table          | f | object  | surface
chair                | chaise         | f | object  | surface
bed                  | lit            | m | object  | surface
bench                | banc           | m | object  | surface
armchair             | fauteuil       | m | object  | surface
carpet               | tapis          | m | object  | surface
box                  | boîte          | f | object  | container, vessel, closable
bag                  | sac            | m | object  | container, vessel, closable
basket               | panier         | m | object  | container, vessel
cup                  | tasse          | f | object  | vessel
glass                | verre          | m | object  | vessel
bottle               | bouteille      | f | object  | vessel
plate                | assiette       | f | object  |
ball                 | ballon         | m | object  | toy
toy                  | jouet          | m | object  | toy
doll                 | poupée         | f | object  | toy
game                 | jeu            | m | object  | toy
pen                  | stylo          | m | object  |
key                  | clé            | f | object  |
hat                  | chapeau        | m | object  | clothing
shirt                | chemise        | f | object  | clothing
dress                | robe           | f | object  | clothing, long
shoe                 | chaussure      | f | object  | clothing
coat                 | manteau        | m | object  | clothing, long
door                 | porte          | f | object  | closable
window               | fenêtre        | f | object  | closable
lamp                 | lampe          | f | object  |
clock                | horloge        | f | object  |
computer             | ordinateur     | m | object  |
umbrella             | parapluie      | m | object  | closable
picture              | tableau        | m | object  |
drawing              | dessin         | m | object  | makeable
letter               | lettre         | f | object  | readable, writable, long
newspaper            | journal        | m | object  | readable
map                  | carte          | f | object  | readable
envelope             | enveloppe      | f | object  |
knife/knives         | couteau        | m | object  | long
spoon                | cuillère       | f | object  |
phone                | téléphone      | m | object  |
radio                | radio          | f | object  | audible
guitar               | guitare        | f | object  | audible
piano                | piano          | m | object  | audible
mirror               | miroir         | m | object  |
gift                 | cadeau         | m | object  |
jewel                | bijou          | m | object  |
car                  | voiture        | f | vehicle | container
bike                 | vélo           | m | vehicle |
bus                  | bus            | m | vehicle | audible
train                | train          | m | vehicle | audible, long
plane                | avion          | m | vehicle | audible
boat                 | bateau         | m | vehicle |
truck                | camion         | m | vehicle | audible
motorbike            | moto           | f | vehicle | audible
apple                | pomme          | f | food    | fruit
orange               | orange         | f | food    | fruit
banana               | banane         | f | food    | fruit
pear                 | poire          | f | food    | fruit
strawberry           | fraise         | f | food    | fruit
lemon                | citron         | m | food    | fruit
tomato/tomatoes      | tomate         | f | food    | cookable
carrot               | carotte        | f | food    | cookable
egg                  | œuf            | m | food    | cookable
cake                 | gâteau         | m | food    | makeable
pie                  | tarte          | f | food    | makeable
sandwich             | sandwich       | m | food    | makeable
salad                | salade         | f | food    | makeable
omelette             | omelette       | f | food    | makeable
pizza                | pizza          | f | food    | makeable
cookie               | biscuit        | m | food    |
candy                | bonbon         | m | food    |
croissant            | croissant      | m | food    |
market               | marché         | m | place   | venue, sight
school               | école          | f | place   | venue, sight
park                 | parc           | m | place   | venue, interior, sight
station              | gare           | f | place   | venue
beach                | plage          | f | place   | venue
church               | église         | f | place   | venue, sight
hospital             | hôpital        | m | place   | venue
hotel                | hôtel          | m | place   | venue
museum               | musée          | m | place   | venue, sight
library/libraries    | bibliothèque   | f | place   | venue, sight
restaurant           | restaurant     | m | place   | venue
shop                 | magasin        | m | place   | venue
cinema               | cinéma         | m | place   | venue
office               | bureau         | m | place   | venue
bank                 | banque         | f | place   | venue
castle               | château        | m | place   | venue, sight
airport              | aéroport       | m | place   | venue
farm                 | ferme          | f | place   | venue, sight, ownable
zoo                  | zoo            | m | place   | venue, sight
pool                 | piscine        | f | place   | venue, water
garden               | jardin         | m | place   | venue, interior, sight, ownable
forest               | forêt          | f | place   | interior, sight
kitchen              | cuisine        | f | place   | interior
house                | maison         | f | place   | interior, ownable
bedroom              | chambre        | f | place   | interior
street               | rue            | f | place   | interior
city/cities          | ville          | f | place   | interior, sight
village              | village        | m | place   | interior, sight
river                | rivière        | f | place   | water, long
lake                 | lac            | m | place   | water
sea                  | mer            | f | place   | water
tree                 | arbre          | m | nature  |
flower               | fleur          | f | nature  | portable
stone                | pierre         | f | nature  | portable
leaf/leaves          | feuille        | f | nature  | portable
star                 | étoile         | f | nature  |
cloud                | nuage          | m | nature  |
mountain             | montagne       | f | nature  |
"""

# --------------------------------------------------------------------------------------
# Adjectives
# --------------------------------------------------------------------------------------
# english | french forms | position | group | applies to (kinds or tags; "any") | flags
# French forms: just the masculine singular when the rules in grammar.py give the other
# three (petit -> petite, petits, petites; heureux -> heureuse; fier -> fière; bon -> bonne;
# italien -> italienne); otherwise all four, ms/fs/mp/fp, plus a fifth form, the
# masculine singular used before a vowel sound (un bel arbre, un vieil homme, un nouvel hôtel).
# Position "pre": the few common adjectives French puts before the noun (beauty, age,
# goodness, size: le petit chat); "post": all the others (le chat noir).
# Flag "attributive": only used inside a noun phrase, never after "être".

ADJECTIVE_TABLE = """
small      | petit                                  | pre  | size        | any |
big        | grand                                  | pre  | size        | animal, object, vehicle, place, nature |
fat        | gros/grosse/gros/grosses               | pre  | size        | animal |
long       | long/longue/longs/longues              | pre  | size        | long |
beautiful  | beau/belle/beaux/belles/bel            | pre  | quality     | person, animal, object, vehicle, place, nature |
pretty     | joli                                   | pre  | quality     | person, animal, object, vehicle, place, nature |
good       | bon                                    | pre  | quality     | person, animal, object, food |
bad        | mauvais                                | pre  | quality     | person, object, food | attributive
old        | vieux/vieille/vieux/vieilles/vieil     | pre  | age         | person, animal, object, vehicle, place, nature |
young      | jeune                                  | pre  | age         | person, animal |
new        | nouveau/nouvelle/nouveaux/nouvelles/nouvel | pre | age      | object, vehicle, place | attributive
black      | noir                                   | post | colour      | animal, object, vehicle |
white      | blanc/blanche/blancs/blanches          | post | colour      | animal, object, vehicle, portable |
grey       | gris                                   | post | colour      | animal, object, vehicle, portable |
brown      | marron/marron/marron/marron            | post | colour      | animal, object, vehicle |
red        | rouge                                  | post | colour      | object, vehicle, fruit, portable |
blue       | bleu                                   | post | colour      | object, vehicle, portable |
green      | vert                                   | post | colour      | object, vehicle, fruit, portable |
yellow     | jaune                                  | post | colour      | object, vehicle, fruit, portable |
pink       | rose                                   | post | colour      | object, vehicle, portable |
purple     | violet/violette/violets/violettes      | post | colour      | object, vehicle, portable |
french     | français                               | post | nationality | person, vehicle, food, place |
english    | anglais                                | post | nationality | person, vehicle, food, place |
italian    | italien                                | post | nationality | person, vehicle, food, place |
spanish    | espagnol                               | post | nationality | person, vehicle, food, place |
american   | américain                              | post | nationality | person, vehicle, food, place |
german     | allemand                               | post | nationality | person, vehicle, food, place |
japanese   | japonais                               | post | nationality | person, vehicle, food, place |
chinese    | chinois                                | post | nationality | person, vehicle, food, place |
russian    | russe                                  | post | nationality | person, vehicle, food, place |
happy      | heureux                                | post | feeling     | person, animal |
sad        | triste                                 | post | feeling     | person, animal |
tired      | fatigué                                | post | feeling     | person, animal |
angry      | fâché                                  | post | feeling     | person, animal |
proud      | fier                                   | post | feeling     | person, animal |
calm       | calme                                  | post | feeling     | person, animal, place |
polite     | poli                                   | post | character   | person |
clever     | intelligent                            | post | character   | person, animal |
lazy       | paresseux                              | post | character   | person, animal |
curious    | curieux                                | post | character   | person, animal |
funny      | drôle                                  | post | character   | person, animal |
kind       | gentil/gentille/gentils/gentilles      | post | character   | person, animal |
rich       | riche                                  | post | character   | person |
shy        | timide                                 | post | character   | person, animal |
brave      | courageux                              | post | character   | person, animal |
strong     | fort                                   | post | character   | person, animal |
cute       | mignon                                 | post | character   | animal |
famous     | célèbre                                | post | character   | person, place |
fast       | rapide                                 | post | speed       | animal, vehicle |
slow       | lent                                   | post | speed       | animal, vehicle |
noisy      | bruyant                                | post | sound       | person, animal, vehicle, place |
dangerous  | dangereux                              | post | danger      | animal, vehicle, place |
clean      | propre                                 | post | state       | person, animal, object, vehicle, place |
dirty      | sale                                   | post | state       | person, animal, object, vehicle, place |
broken     | cassé                                  | post | state       | object, vehicle |
wet        | mouillé                                | post | state       | person, animal, object |
heavy      | lourd                                  | post | weight      | object |
light      | léger                                  | post | weight      | object |
expensive  | cher                                   | post | price       | object, vehicle, food |
hot        | chaud                                  | post | temperature | food, place |
cold       | froid                                  | post | temperature | food, place |
empty      | vide                                   | post | fullness    | vessel |
full       | plein                                  | post | fullness    | vessel |
round      | rond                                   | post | shape       | object, food |
soft       | doux/douce/doux/douces                 | post | texture     | animal, clothing |
delicious  | délicieux                              | post | taste       | food |
sweet      | sucré                                  | post | taste       | fruit |
"""

# --------------------------------------------------------------------------------------
# Verbs
# --------------------------------------------------------------------------------------
# english key | french infinitive [preposition] | subjects | objects | flags
# Objects "any": a noun of any kind.
# Flags: "intransitive" the verb also stands alone (il dort); "definite" its object is
# never indefinite: English "he likes cats" is a general statement that French says with
# the definite article (il aime les chats), which the toy grammar avoids, and one goes to
# "the market", not to "a market" (aller dans un marché).
# Verbs whose stem changes in the present (acheter -> j'achète, appeler -> j'appelle,
# préférer -> je préfère, essayer -> j'essaie) are left out on purpose; manger and nager
# are in, because their one change (nous mangeons) is a spelling rule grammar.py applies.
# "listen to", "look for", "wait for" take a direct object in French (écouter le chien)
# although English needs a particle; "talk to"/"talk about" need à/de in French.

VERB_TABLE = """
sleep        | dormir        | person, animal          |                                  | intransitive
run          | courir        | person, animal          |                                  | intransitive
swim         | nager         | person, animal          |                                  | intransitive
walk         | marcher       | person, animal          |                                  | intransitive
sing         | chanter       | person, animal          |                                  | intransitive
jump         | sauter        | person, animal          |                                  | intransitive
dance        | danser        | person                  |                                  | intransitive
work         | travailler    | person                  |                                  | intransitive
cry          | pleurer       | person                  |                                  | intransitive
laugh        | rire          | person                  |                                  | intransitive
smile        | sourire       | person                  |                                  | intransitive
study        | étudier       | person                  |                                  | intransitive
travel       | voyager       | person                  |                                  | intransitive
win          | gagner        | person                  |                                  | intransitive
arrive       | arriver       | person, animal, vehicle |                                  | intransitive
wait         | attendre      | person, animal          |                                  | intransitive
listen       | écouter       | person, animal          |                                  | intransitive
play         | jouer         | person, animal          |                                  | intransitive
eat          | manger        | person, animal          | food                             | intransitive
read         | lire          | person                  | readable                         | intransitive
write        | écrire        | person                  | writable                         | intransitive
cook         | cuisiner      | person                  | cookable                         | intransitive
like         | aimer         | person, animal          | any                              | definite
hate         | détester      | person, animal          | any                              | definite
see          | voir          | person, animal          | any                              |
watch        | regarder      | person, animal          | person, animal, object, vehicle, nature |
draw         | dessiner      | person                  | any                              |
look for     | chercher      | person, animal          | person, animal, object, vehicle, food |
find         | trouver       | person, animal          | animal, object, food, portable   |
touch        | toucher       | person, animal          | person, animal, object, vehicle, food, portable |
catch        | attraper      | person, animal          | animal, toy                      |
help         | aider         | person                  | person, animal                   |
meet         | rencontrer    | person                  | person                           |
kiss         | embrasser     | person                  | person, animal                   |
wash         | laver         | person                  | animal, object, vehicle          |
carry        | porter        | person                  | object, food, portable           |
wear         | porter        | person                  | clothing                         |
bring        | apporter      | person                  | object, food, portable           |
push         | pousser       | person                  | object, vehicle                  |
lose         | perdre        | person                  | object                           |
sell         | vendre        | person                  | animal, object, vehicle, food, ownable |
choose       | choisir       | person                  | animal, object, vehicle, food    |
finish       | finir         | person                  | food, readable                   |
close        | fermer        | person                  | closable                         |
visit        | visiter       | person                  | sight                            |
hear         | entendre      | person, animal          | person, animal, audible          |
wait for     | attendre      | person, animal          | person, animal, vehicle          |
listen to    | écouter       | person, animal          | person, animal, audible          |
make         | faire         | person                  | makeable                         |
have         | avoir         | person                  | animal, object, vehicle, food, ownable |
give         | donner        | person                  | object, food, portable           |
go to        | aller à       | person                  | venue                            | definite
talk to      | parler à      | person                  | person, animal                   |
talk about   | parler de     | person                  | any                              |
play with    | jouer avec    | person, animal          | person, animal, toy              |
"""

# The present tense of the verbs no rule conjugates, in the order
# je, tu, il/elle, nous, vous, ils/elles.
IRREGULAR_PRESENT: dict[str, tuple[str, str, str, str, str, str]] = {
    "être": ("suis", "es", "est", "sommes", "êtes", "sont"),
    "avoir": ("ai", "as", "a", "avons", "avez", "ont"),
    "aller": ("vais", "vas", "va", "allons", "allez", "vont"),
    "faire": ("fais", "fais", "fait", "faisons", "faites", "font"),
    "dormir": ("dors", "dors", "dort", "dormons", "dormez", "dorment"),
    "courir": ("cours", "cours", "court", "courons", "courez", "courent"),
    "voir": ("vois", "vois", "voit", "voyons", "voyez", "voient"),
    "lire": ("lis", "lis", "lit", "lisons", "lisez", "lisent"),
    "écrire": ("écris", "écris", "écrit", "écrivons", "écrivez", "écrivent"),
    "rire": ("ris", "ris", "rit", "rions", "riez", "rient"),
    "sourire": ("souris", "souris", "sourit", "sourions", "souriez", "sourient"),
}

# Second-group -ir verbs (finir: nous finissons). Listing them beats guessing from the
# ending, because dormir and courir also end in -ir and conjugate differently.
SECOND_GROUP = frozenset({"finir", "choisir"})

# English third-person singular forms that the -s/-es/-ies rule would get wrong.
ENGLISH_IRREGULAR_3SG = {"have": "has", "be": "is"}

# --------------------------------------------------------------------------------------
# Closed classes
# --------------------------------------------------------------------------------------

# English subject pronoun -> French pronoun(s) and person index (0 je ... 5 ils/elles).
# "you" and "they" have two French readings; the grammar writes one line for each.
PRONOUNS: dict[str, tuple[tuple[str, int], ...]] = {
    "i": (("je", 0),),
    "you": (("tu", 1), ("vous", 4)),
    "he": (("il", 2),),
    "she": (("elle", 2),),
    "we": (("nous", 3),),
    "they": (("ils", 5), ("elles", 5)),
}

# English possessive -> French (before a masculine singular, before a feminine singular,
# before any plural). "your" depends on whether "you" is tu or vous.
POSSESSIVES: dict[str, tuple[str, str, str]] = {
    "my": ("mon", "ma", "mes"),
    "your/tu": ("ton", "ta", "tes"),
    "your/vous": ("votre", "votre", "vos"),
    "his": ("son", "sa", "ses"),
    "her": ("son", "sa", "ses"),
    "our": ("notre", "notre", "nos"),
    "their": ("leur", "leur", "leurs"),
}

# English location preposition -> French. "at" is à, which contracts with le/les.
PLACE_PREPOSITIONS = {"in": "dans", "on": "sur", "under": "sous", "at": "à"}

# --------------------------------------------------------------------------------------
# Reading the tables
# --------------------------------------------------------------------------------------


def _rows(table: str) -> list[list[str]]:
    """Split a text table into rows of stripped cells, skipping blank lines."""
    return [[cell.strip() for cell in line.split("|")] for line in table.strip().splitlines()]


KINDS = ("person", "animal", "object", "vehicle", "food", "place", "nature")


def _words(cell: str) -> frozenset[str]:
    words = frozenset(word.strip() for word in cell.split(",") if word.strip())
    return frozenset(KINDS) if words == {"any"} else words


def _english_plural(singular: str) -> str:
    # Sibilants take -es (boxes, churches), consonant + y becomes -ies (cities).
    if singular.endswith(("s", "sh", "ch", "x", "z")):
        return singular + "es"
    if singular.endswith("y") and singular[-2] not in "aeiou":
        return singular[:-1] + "ies"
    return singular + "s"


def french_noun_plural(singular: str) -> str:
    """The French plural of a noun by the school rules, e.g. cheval -> chevaux."""
    if singular.endswith(("s", "x", "z")):  # already sounds plural: la souris, les souris
        return singular
    if singular.endswith(("eau", "au", "eu")) and singular not in ("pneu", "landau"):
        return singular + "x"  # gâteau -> gâteaux, jeu -> jeux
    if singular.endswith("al") and singular not in ("bal", "festival", "carnaval"):
        return singular[:-2] + "aux"  # cheval -> chevaux, journal -> journaux
    if singular in ("bijou", "caillou", "chou", "genou", "hibou", "joujou", "pou"):
        return singular + "x"  # the seven -ou nouns that take -x
    return singular + "s"


def _read_nouns() -> dict[str, Noun]:
    nouns = {}
    for english, french, gender, kind, tags in _rows(NOUN_TABLE):
        en, _, en_plural = english.partition("/")
        fr, _, fr_plural = french.partition("/")
        nouns[en] = Noun(
            en=en,
            en_plural=en_plural or _english_plural(en),
            fr=fr,
            fr_plural=fr_plural or french_noun_plural(fr),
            gender=gender,
            kind=kind,
            tags=_words(tags),
        )
    return nouns


def _regular_adjective_forms(ms: str) -> tuple[str, str, str, str]:
    """ms -> (ms, fs, mp, fp) for adjectives that follow the regular patterns."""
    if ms.endswith("e"):
        fs = ms  # rouge, jeune: already ends in -e
    elif ms.endswith("eux"):
        fs = ms[:-1] + "se"  # heureux -> heureuse
    elif ms.endswith("er"):
        fs = ms[:-2] + "ère"  # fier -> fière, cher -> chère
    elif ms.endswith(("en", "on")):
        fs = ms + ms[-1] + "e"  # italien -> italienne, bon -> bonne
    else:
        fs = ms + "e"
    mp = ms if ms.endswith(("s", "x")) else ms + "s"  # gris, heureux stay as they are
    return ms, fs, mp, fs + "s"


def _read_adjectives() -> dict[str, Adjective]:
    adjectives = {}
    for english, french, position, group, applies_to, flags in _rows(ADJECTIVE_TABLE):
        forms = french.split("/")
        if len(forms) == 1:
            ms, fs, mp, fp = _regular_adjective_forms(forms[0])
            before_vowel = ms
        else:
            ms, fs, mp, fp = forms[:4]
            before_vowel = forms[4] if len(forms) == 5 else ms
        adjectives[english] = Adjective(
            en=english,
            ms=ms,
            fs=fs,
            mp=mp,
            fp=fp,
            ms_before_vowel=before_vowel,
            prenominal=position == "pre",
            group=group,
            applies_to=_words(applies_to),
            predicative="attributive" not in flags,
        )
    return adjectives


def _read_verbs() -> dict[str, Verb]:
    verbs = {}
    for key, french, subjects, objects, flags in _rows(VERB_TABLE):
        en, _, particle = key.partition(" ")
        fr, _, fr_prep = french.partition(" ")
        verbs[key] = Verb(
            key=key,
            en=en,
            en_particle=particle,
            fr=fr,
            fr_prep=fr_prep,
            subjects=_words(subjects),
            objects=_words(objects),
            intransitive="intransitive" in flags,
            definite_object="definite" in flags,
        )
    return verbs


NOUNS: dict[str, Noun] = _read_nouns()
ADJECTIVES: dict[str, Adjective] = _read_adjectives()
VERBS: dict[str, Verb] = _read_verbs()

ASPIRATED_H: frozenset[str] = frozenset(
    form for noun in NOUNS.values() if "aspirated" in noun.tags for form in (noun.fr, noun.fr_plural)
)


# Adjective + noun pairs that fit by kind but that French reads as a different word or an
# idiom (or that make no sense), so the sampler never puts them together.
UNFIT_PAIRS = frozenset({
    ("beautiful", "brother"),  # beau-frère: brother-in-law
    ("beautiful", "sister"),  # belle-sœur: sister-in-law
    ("beautiful", "father"),  # beau-père: father-in-law, stepfather
    ("beautiful", "mother"),  # belle-mère: mother-in-law, stepmother
    ("beautiful", "son"),  # beau-fils: son-in-law, stepson
    ("beautiful", "girl"),  # belle-fille: daughter-in-law, stepdaughter
    ("small", "son"),  # petit-fils: grandson
    ("old", "girl"),  # vieille fille: old maid
    ("old", "boy"),  # vieux garçon: old bachelor
    ("good", "woman"),  # bonne femme: colloquial, often disparaging
    ("big", "shop"),  # grand magasin: department store
    ("old", "child"),  # a contradiction
    ("old", "baby"),
})


def describes(adjective: Adjective, noun: Noun) -> bool:
    """Can this adjective sensibly describe this noun (a red car, not a red idea)?"""
    if (adjective.en, noun.en) in UNFIT_PAIRS:
        return False
    return noun.kind in adjective.applies_to or bool(noun.tags & adjective.applies_to)


def takes_object(verb: Verb, noun: Noun) -> bool:
    """Can this noun be the object of this verb (eat an apple, not eat a chair)?"""
    return noun.kind in verb.objects or bool(noun.tags & verb.objects)
