"""Is a message written in another language than the shop's (English)?

The intent model is trained on English messages only. Given French or German it still picks an
intent, by whatever sub-words look alike ("préférée" shares pieces with "preferred payment
method"), and neither its confidence nor the out-of-scope detector reliably says that it is
guessing. So a message counts as foreign when at least two of its words are function words of
one other language (articles, pronouns, question words, common verbs) and that language has more
of them than English has. Function words, not a vocabulary: typos, product names and shop slang
never make an English message foreign. Words that are also English, or English slang and typos
("no", "a", "die", "per", "come", "dove", "son", "ta", "yo", "im", "wat") are left out of every
list, so "no no no" and "price per item" stay English.
"""

from __future__ import annotations

import re
from collections import Counter

_FUNCTION_WORDS = {
    "French": """le les un une des du est et je tu il elle nous vous ils ne que qui quoi quel quelle quels
        quelles pourquoi où mon mes tes sa ses ce cette avec dans sur suis sont fait faire moi toi c'est
        j'ai""",
    "German": """der das dem ein eine einer und ist ich du sie wir ihr nicht wer wie wo warum mein meine
        dein deine mit für auf bist sind haben kann können es zu von gibt nach noch auch aber oder schon wann""",
    "Spanish": """el los las una es tú él ella que qué quién cómo dónde por para mis su sus del está estoy
        se le""",
    "Italian": """il gli le una è io lui lei che chi perché mio mia suo sua del della sono sei hanno ti""",
    "Portuguese": """os uma é eu ele ela não que quem como onde por para meu minha seu sua está estou são
        faz""",
    "Dutch": """de het een en ik jij je hij zij wij niet wie waar waarom mijn jouw voor zijn heeft kan""",
}
FUNCTION_WORDS = {language: frozenset(words.split()) for language, words in _FUNCTION_WORDS.items()}
_ENGLISH = """the a an and is are am i you he she we they it its not what who how where why when my your
    our their me with for on in of to do does did can could would will please this that be have has was
    were there here"""
ENGLISH = frozenset(_ENGLISH.split())
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
# Each function word's languages, so a message's words are looked up once, not once per language
# (this runs for every message the classifier parses).
_LANGUAGES_OF = {
    word: tuple(language for language, vocabulary in FUNCTION_WORDS.items() if word in vocabulary)
    for word in frozenset().union(*FUNCTION_WORDS.values())
}


def foreign_language(text: str) -> str | None:
    """The other language `text` is written in, by its function words; None when it reads as English."""
    words = _WORD.findall(text.lower())
    if len(words) < 2:
        return None
    counts = Counter(language for word in words for language in _LANGUAGES_OF.get(word, ()))
    if not counts:
        return None
    language = max(FUNCTION_WORDS, key=counts.__getitem__)  # a tie goes to the language listed first
    count = counts[language]
    return language if count >= 2 and count > sum(word in ENGLISH for word in words) else None
