"""Training dialogues for the grounded generator, built from the templates in data/generator/*.yml.

A small model trained on template dialogues reproduces the templates and invents every value
unless copying is the only way to be right. So every value is drawn at random per sample, every
fact in a grounded reply is copied from that sample's passages or earlier turns, and 1-3
distractor passages about other products and policies sit next to the one that answers.

Kinds: `grounded` (the answer is in a passage or an earlier turn; `facts` lists the copied
values), `no_answer` (the passages do not cover the question: the reply says so, with no values),
`chitchat` (small talk, no passages, a reply that steers back to the shop) and `description`.
A description request is one user turn; absent attributes are left out, the order is fixed:

    Write a product description for: name: <name>; category: <category>; material: <material>;
    colours: <colours>; sizes: <sizes>; features: <features>; care: <care>; price: <price>

Template files hold `pools` (lists of values; a `groups` mapping also fills a linked slot, so a
product's category fits its name), families under `grounded`, `no_answer` and `chitchat`, and
`descriptions`. A slot is `{pool}` or `{pool_2}` (a second, different value of the same pool);
slots in GENERATED (prices, order numbers, lists...) are made here instead of read from a pool.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

FAMILY_KINDS = ("grounded", "no_answer", "chitchat")
DEFAULT_MIX: Mapping[str, float] = {"grounded": 0.6, "no_answer": 0.1, "chitchat": 0.15, "description": 0.15}
DESCRIPTION_REQUEST = "Write a product description for: "
REQUIRED_ATTRIBUTES = ("name", "category")
OPTIONAL_ATTRIBUTES = ("material", "colours", "sizes", "features", "care", "price")
_ATTRIBUTE_SLOTS = {"name": "product", "category": "category", "material": "material", "colours": "colours",
                    "sizes": "size_set", "features": "features", "care": "care", "price": "price"}
_KEEP_ATTRIBUTE = 0.7  # chance that an optional attribute is given in a description request
_OPENER_RATE = 0.15  # chance of a small-talk exchange before the question
_SUFFIX = re.compile(r"_\d+$")
_BAD_VALUE = re.compile(r"[\x00-\x1f\x7f{};]")  # control characters, slot braces, the request separator


class TemplateError(ValueError):
    """A template file or family is broken; the message names the file and the family."""


@dataclass(frozen=True)
class Sample:
    """One training dialogue: what the model is shown (passages, history) and the reply it should give."""

    kind: str
    passages: tuple[str, ...]
    history: tuple[tuple[str, str], ...]  # (role, text); the last item is the shopper's current message
    reply: str
    facts: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pool:
    values: tuple[str, ...]
    group_of: Mapping[str, str] = field(default_factory=dict)  # value -> the value of the linked slot
    fills: str | None = None  # the linked slot, e.g. a product fills its category


Wording = tuple[str, ...]  # alternative wordings of one passage, turn or sentence


@dataclass(frozen=True)
class Family:
    """One kind of question: the passages that hold the answer, the ways to ask, the ways to reply."""

    name: str
    kind: str
    topic: str  # two unkeyed passages on one topic would contradict each other, so they never meet
    key: str | None  # the slot that tells passages on the same topic apart (a product, a country)
    passages: tuple[Wording, ...]
    history: tuple[tuple[str, Wording], ...]
    questions: tuple[str, ...]
    replies: tuple[str, ...]
    opener: bool = False  # chit-chat that may open another dialogue ("hi", "how are you")


@dataclass(frozen=True)
class Templates:
    pools: Mapping[str, Pool]
    families: Mapping[str, tuple[Family, ...]]  # kind -> families
    descriptions: tuple[tuple[Wording, ...], ...]  # each a list of sentences, each a choice of wordings


Generator = Callable[[random.Random, Mapping[str, Pool]], str]


def _money(low: int, high: int) -> Generator:
    return lambda rng, _: f"€{rng.randint(low, high)}.{rng.choice(('00', '00', '50', '90', '95', '99'))}"


def _digits(rng: random.Random, k: int) -> str:
    return "".join(rng.choices(string.digits, k=k))


def _listing(pool: str, low: int, high: int) -> Generator:
    """'a, b and c' from distinct values of one pool."""

    def draw(rng: random.Random, pools: Mapping[str, Pool]) -> str:
        items = rng.sample(pools[pool].values, rng.randint(low, high))
        return ", ".join(items[:-1]) + " and " + items[-1]

    return draw


GENERATED: Mapping[str, Generator] = {
    "price": _money(9, 480),
    "fee": _money(1, 19),
    "threshold": lambda rng, _: f"€{rng.randrange(20, 300, 10)}.00",
    "percent": lambda rng, _: f"{rng.randrange(5, 55, 5)}%",
    "count": lambda rng, _: str(rng.randint(2, 40)),
    "order_number": lambda rng, _: str(rng.randint(10000, 99999)),
    "tracking": lambda rng, _: rng.choice(("JJD", "1Z", "RM", "DP")) + _digits(rng, 10),
    "sku": lambda rng, _: "".join(rng.choices(string.ascii_uppercase, k=2)) + "-" + _digits(rng, 4),
    "weight": lambda rng, _: f"{rng.randrange(60, 1600, 10)} g",
    "phone": lambda rng, _: f"+{rng.choice(('31', '33', '41', '43', '44', '49'))} {_digits(rng, 2)} "
    f"{_digits(rng, 4)} {_digits(rng, 4)}",
    "email": lambda rng, pools: f"{rng.choice(pools['email_user'].values)}@{rng.choice(pools['email_domain'].values)}",
    "code": lambda rng, pools: rng.choice(pools["code_word"].values) + _digits(rng, 2),
    "colours": _listing("colour", 2, 4),
    "features": _listing("feature", 2, 3),
    "payment_methods": _listing("payment_method", 3, 5),
}
_GENERATOR_POOLS = ("email_user", "email_domain", "code_word", "colour", "feature", "payment_method")
_FAMILY_FIELDS = frozenset(f.name for f in fields(Family))


def _slots(text: str) -> list[str]:
    """The `{slot}` names in a template, in order; anything but a plain name is an error."""
    try:
        parsed = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise TemplateError(f"unbalanced braces in {text!r}") from exc
    for name, spec, conv in parsed:
        if not name.isidentifier() or spec or conv:
            raise TemplateError(f"{{{name}}} in {text!r} is not a plain {{slot}}")
    return [name for name, _, _ in parsed]


def _slots_in(texts: Iterable[str]) -> set[str]:
    return {slot for text in texts for slot in _slots(text)}


def _pool_name(slot: str) -> str:
    return _SUFFIX.sub("", slot)


# --- loading and checking ---------------------------------------------------------------------------------


def load_templates(directory: Path) -> Templates:
    """Read and check every *.yml in `directory`; a broken template fails here, naming file and family."""
    documents = [(path, _read(path)) for path in sorted(directory.glob("*.yml"))]
    if not documents:
        raise TemplateError(f"{directory}: no template files (*.yml)")
    pools = _parse_pools([(path, name, spec) for path, data in documents for name, spec in data["pools"].items()])
    parsed = [(path, _parse_family(path, kind, spec, pools))
              for path, data in documents for kind in FAMILY_KINDS for spec in data[kind]]
    _check_topics(parsed)
    descriptions = tuple(_parse_description(path, spec) for path, data in documents for spec in data["descriptions"])
    families = {kind: tuple(f for _, f in parsed if f.kind == kind) for kind in FAMILY_KINDS}
    if not descriptions or not all(families.values()):
        raise TemplateError(f"{directory}: every kind needs at least one family, and one description template")
    return Templates(pools, families, descriptions)


def _read(path: Path) -> dict[str, Any]:
    """A template file as a mapping with every known section present (possibly empty)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    sections = ("pools", "descriptions", *FAMILY_KINDS)
    if not isinstance(data, dict) or set(data) - set(sections):
        raise TemplateError(f"{path.name}: the top-level keys must be among {sections}")
    return {section: data.get(section) or ({} if section == "pools" else []) for section in sections}


def _strings(value: Any, what: str) -> tuple[str, ...]:
    """A string or a non-empty list of strings, as a tuple."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x.strip() for x in items):
        raise TemplateError(f"{what} must be a non-empty string or list of strings, got {value!r}")
    return tuple(items)


def _parse_pools(entries: Sequence[tuple[Path, str, Any]]) -> dict[str, Pool]:
    pools: dict[str, Pool] = {}
    for path, name, spec in entries:
        if name in pools or _SUFFIX.search(name) or name in GENERATED:
            raise TemplateError(f"{path.name}: pool '{name}' is defined twice, ends in _<number> or is generated")
        pools[name] = _parse_pool(f"{path.name}: pool '{name}'", spec)
    for pool in list(pools.values()):
        if pool.fills:
            pools.setdefault(pool.fills, Pool(tuple(sorted(set(pool.group_of.values())))))
    if missing := [name for name in _GENERATOR_POOLS if name not in pools]:
        raise TemplateError(f"the generated slots need the pools {missing}")
    return pools


def _parse_pool(where: str, spec: Any) -> Pool:
    if isinstance(spec, dict):
        if set(spec) != {"fills", "groups"} or not isinstance(spec["groups"], dict):
            raise TemplateError(f"{where}: a grouped pool has exactly `fills` and a mapping of `groups`")
        group_of = {value: str(group) for group, values in spec["groups"].items() for value in _strings(values, where)}
        pool = Pool(tuple(group_of), group_of, str(spec["fills"]))
    else:
        pool = Pool(_strings(spec, where))
    if bad := [v for v in (*pool.values, *pool.group_of.values()) if _BAD_VALUE.search(v)]:
        raise TemplateError(f"{where}: values hold braces, ';' or control characters: {bad[:3]}")
    return pool


def _parse_family(path: Path, kind: str, spec: Any, pools: Mapping[str, Pool]) -> Family:
    name = spec.get("name") if isinstance(spec, dict) else None
    try:
        if not isinstance(name, str) or set(spec) - (_FAMILY_FIELDS - {"kind"}):
            raise TemplateError(f"needs a name and only the fields {sorted(_FAMILY_FIELDS - {'kind'})}")
        turns = [next(iter(turn.items())) for turn in spec.get("history") or []]
        if any(role not in ("user", "bot") for role, _ in turns):
            raise TemplateError("history turns are {user: ...} or {bot: ...}")
        family = Family(name, kind, spec.get("topic", name), spec.get("key"),
                        tuple(_strings(p, "a passage") for p in spec.get("passages") or []),
                        tuple((role, _strings(text, "a turn")) for role, text in turns),
                        _strings(spec.get("questions"), "questions"), _strings(spec.get("replies"), "replies"),
                        bool(spec.get("opener", False)))
        _check_slots(family, pools)
        _check_replies(family)
    except (TemplateError, AttributeError, StopIteration) as exc:
        raise TemplateError(f"{path.name}: {kind} family '{name}': {exc}") from exc
    return family


def _check_slots(family: Family, pools: Mapping[str, Pool]) -> None:
    """Every slot names a pool, and the wordings of one passage or turn share their slots."""
    turns = [wording for _, wording in family.history]
    for slot in sorted(_slots_in([*(w for x in (*family.passages, *turns) for w in x), *family.questions])):
        if _pool_name(slot) not in pools and _pool_name(slot) not in GENERATED:
            raise TemplateError(f"slot {{{slot}}} names no pool")
    for wording in (*family.passages, *turns):
        if len({frozenset(_slots(w)) for w in wording}) > 1:
            raise TemplateError(f"the wordings of {wording[0]!r} use different slots")
    if family.key and family.key not in _slots_in(w[0] for w in family.passages):
        raise TemplateError(f"key {{{family.key}}} is in no passage")
    if family.kind == "chitchat" and (family.passages or family.history or _slots_in(family.questions)):
        raise TemplateError("small talk has no passages, history or slots")


def _check_replies(family: Family) -> None:
    """The rule that teaches copying: a grounded reply states only values the model is shown."""
    shown = _slots_in(w[0] for w in (*family.passages, *(wording for _, wording in family.history)))
    for reply in family.replies:
        slots = set(_slots(reply))
        if family.kind != "grounded" and (slots or any(ch.isdigit() for ch in reply)):
            raise TemplateError(f"reply {reply!r} must state no values (no slots, no digits)")
        if family.kind == "grounded" and not slots:
            raise TemplateError(f"reply {reply!r} copies no value")
        for question in family.questions:
            if missing := sorted(slots - shown - set(_slots(question))):
                raise TemplateError(f"reply slot {{{missing[0]}}} is in neither the passages, the history "
                                    f"nor the question {question!r}")


def _check_topics(parsed: Sequence[tuple[Path, Family]]) -> None:
    """Family names are unique, and all families on one topic agree on the slot that tells them apart."""
    names: set[str] = set()
    keys: dict[str, str | None] = {}
    for path, family in parsed:
        where = f"{path.name}: {family.kind} family '{family.name}'"
        if family.name in names:
            raise TemplateError(f"{where}: another family has this name")
        if keys.setdefault(family.topic, family.key) != family.key:
            raise TemplateError(f"{where}: topic '{family.topic}' already has the key {keys[family.topic]!r}")
        names.add(family.name)


def _parse_description(path: Path, spec: Any) -> tuple[Wording, ...]:
    name = spec.get("name") if isinstance(spec, dict) else None
    try:
        if not isinstance(spec.get("sentences"), list) or not spec["sentences"]:
            raise TemplateError("needs a name and a non-empty list of sentences")
        sentences = tuple(_strings(s, "a sentence") for s in spec["sentences"])
        if unknown := _slots_in(w for s in sentences for w in s) - set(_ATTRIBUTE_SLOTS):
            raise TemplateError(f"unknown attribute slots {sorted(unknown)}")
        for size in range(len(OPTIONAL_ATTRIBUTES) + 1):
            for kept in combinations(OPTIONAL_ATTRIBUTES, size):
                given = {*REQUIRED_ATTRIBUTES, *kept}
                if lost := given - set().union(*(_sure_slots(s, given) for s in sentences)):
                    raise TemplateError(f"with {sorted(given)} given, {sorted(lost)} may go unmentioned")
    except (TemplateError, AttributeError) as exc:
        raise TemplateError(f"{path.name}: description '{name}': {exc}") from exc
    return sentences


def _richest(wordings: Wording, given: set[str]) -> list[str]:
    """The wordings that mention the most given attributes and nothing that is not given."""
    fitting = [w for w in wordings if set(_slots(w)) <= given]
    most = max((len(_slots(w)) for w in fitting), default=0)
    return [w for w in fitting if len(_slots(w)) == most]


def _sure_slots(wordings: Wording, given: set[str]) -> set[str]:
    """What a sentence mentions whichever of its richest fitting wordings is picked."""
    options = [set(_slots(w)) for w in _richest(wordings, given)]
    return set.intersection(*options) if options else set()


# --- building ---------------------------------------------------------------------------------------------


def build_corpus(templates: Templates, n: int, seed: int, mix: Mapping[str, float] | None = None) -> list[Sample]:
    """`n` samples, the same ones for the same seed; `mix` weighs the kinds (default DEFAULT_MIX)."""
    weights = dict(mix or DEFAULT_MIX)
    if set(weights) - {*FAMILY_KINDS, "description"} or min(weights.values()) < 0 or sum(weights.values()) <= 0:
        raise ValueError(f"mix must give the kinds {(*FAMILY_KINDS, 'description')} weights >= 0, got {weights}")
    rng = random.Random(seed)
    return [_sample(kind, templates, rng) for kind in rng.choices(list(weights), list(weights.values()), k=n)]


def _sample(kind: str, templates: Templates, rng: random.Random) -> Sample:
    if kind == "description":
        return _description(templates, rng)
    return _dialogue(rng.choice(templates.families[kind]), templates, rng)


def _draw(slots: Iterable[str], pools: Mapping[str, Pool], rng: random.Random, used: set[str]) -> dict[str, str]:
    """A value per slot, none already in `used`: the answer and its distractors never share a product."""
    def linked_first(slot: str) -> tuple[bool, str]:
        # A product draws before {category}, so the category slot gets the product's category.
        pool = pools.get(_pool_name(slot))
        return (pool is None or pool.fills is None, slot)

    values: dict[str, str] = {}
    for slot in sorted(set(slots), key=linked_first):
        if slot in values:
            continue
        name = _pool_name(slot)
        values[slot] = _fresh_value(name, pools, rng, used)
        used.add(values[slot])
        if fills := (pools[name].fills if name in pools else None):
            values[fills + slot.removeprefix(name)] = pools[name].group_of[values[slot]]
    return values


def _fresh_value(pool: str, pools: Mapping[str, Pool], rng: random.Random, used: set[str]) -> str:
    def draw() -> str:
        return GENERATED[pool](rng, pools) if pool in GENERATED else rng.choice(pools[pool].values)

    value = draw()
    for _ in range(30):  # pools are large, so a few tries nearly always find an unused value
        if value not in used:
            break
        value = draw()
    return value


def _dialogue(family: Family, templates: Templates, rng: random.Random) -> Sample:
    passages = [rng.choice(wording) for wording in family.passages]
    turns = [(role, rng.choice(wording)) for role, wording in family.history]
    turns.append(("user", rng.choice(family.questions)))
    reply = rng.choice(family.replies)
    used: set[str] = set()
    values = _draw(_slots_in([*passages, *(text for _, text in turns), reply]), templates.pools, rng, used)
    shown = [passage.format_map(values) for passage in passages]
    history = tuple((role, text.format_map(values)) for role, text in turns)
    if family.kind != "chitchat":
        shown += _distractors(family, templates, rng, used)
        rng.shuffle(shown)
        if rng.random() < _OPENER_RATE:
            history = _opener(templates, rng) + history
    facts = tuple(dict.fromkeys(values[slot] for slot in _slots(reply)))
    return Sample(family.kind, tuple(shown), history, reply.format_map(values), facts)


def _distractors(family: Family, templates: Templates, rng: random.Random, used: set[str]) -> list[str]:
    """1-3 passages on other topics, or on the same topic about another product or country."""
    topics = {family.topic}
    candidates = [f for f in templates.families["grounded"] if f.passages]
    shown: list[str] = []
    for _ in range(rng.randint(1, 3)):
        other = rng.choice([f for f in candidates if f.key or f.topic not in topics])
        topics.add(other.topic)
        passages = [rng.choice(wording) for wording in other.passages]
        values = _draw(_slots_in(passages), templates.pools, rng, used)
        shown += [passage.format_map(values) for passage in passages]
    return shown


def _opener(templates: Templates, rng: random.Random) -> tuple[tuple[str, str], ...]:
    """A greeting before the question, so the model learns to answer the last turn, not the first."""
    family = rng.choice([f for f in templates.families["chitchat"] if f.opener] or templates.families["chitchat"])
    return (("user", rng.choice(family.questions)), ("bot", rng.choice(family.replies)))


def _description(templates: Templates, rng: random.Random) -> Sample:
    drawn = _draw(sorted(set(_ATTRIBUTE_SLOTS.values()) - {"category"}), templates.pools, rng, set())
    kept = [name for name in OPTIONAL_ATTRIBUTES if rng.random() < _KEEP_ATTRIBUTE]
    attributes = {name: drawn[_ATTRIBUTE_SLOTS[name]] for name in (*REQUIRED_ATTRIBUTES, *kept)}
    request = DESCRIPTION_REQUEST + "; ".join(f"{name}: {value}" for name, value in attributes.items())
    sentences = [_richest(wordings, set(attributes)) for wordings in rng.choice(templates.descriptions)]
    text = " ".join(rng.choice(options).format_map(attributes) for options in sentences if options)
    return Sample("description", (), (("user", request),), text, tuple(attributes.values()), attributes)


def split(samples: Sequence[Sample], validation_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Train and validation lists; identical dialogues land on one side, so validation never repeats training."""
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    groups: dict[tuple[Any, ...], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.kind, sample.passages, sample.history, sample.reply), []).append(sample)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    target = round(len(samples) * validation_fraction)
    train: list[Sample] = []
    validation: list[Sample] = []
    for key in keys:
        (validation if len(validation) < target else train).extend(groups[key])
    return train, validation
