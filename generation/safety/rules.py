"""The safety checks a pattern decides better than a model: injections, leaks, promises, links.

Each check returns the reasons it found (empty: nothing found). Patterns are matched on a
normalised copy of the text (lower case, accents and leetspeak folded), and injection checks also
on what base64 and ROT13 disguises decode to, so "1gn0re your rul3s" and an encoded "ignore all
previous instructions" are read as what they say.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import urlsplit

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})

_INJECTION = [re.compile(p) for p in (
    # overriding the instructions: "ignore / disregard / forget ... instructions|rules|the above"
    r"\b(ignore|disregard|forget|override|bypass|skip|void)\b[^.?!\n]{0,40}\b(instruction|rule|prompt|guideline|"
    r"directive|polic|restriction|filter|programming|safety)",
    r"\b(ignore|disregard) (the|all|everything) (above|before)", r"\bforget everything (above|before) (this|the)",
    r"\b(new|real|updated|actual|different)\s+(instructions?|rules?|polic(y|ies)|tasks?|role)\b\s*(:|are|is|for)",
    r"\byour (new|real) (task|instruction|role|job|rule)", r"\b(previous|prior|above) (rules|instructions) (are|were)",
    r"\b(unrestricted|unfiltered|uncensored|jailbroken|god|sudo|developer|admin|debug) mode\b",
    r"\b(no|without (any)?) (rules|restrictions|limits|filters|policy)\b[^.?!\n]{0,40}\b(answer|respond|reply|act|"
    r"behave|pretend|how would you)", r"\b(if )?you had no (rules|restrictions)",
    r"\b(pretend|act|behave|imagine)\b[^.?!\n]{0,20}\b(you are|to be|as if|as an?|you have|you had)\b[^.?!\n]{0,40}\b"
    r"(unrestricted|unfiltered|no rules|no restrictions|without (rules|restrictions|limits|filters)|evil|uncensored)",
    r"\byou are (now|no longer) (dan|an? (unrestricted|unfiltered|evil|uncensored|different|new|free)|in \w+ mode|free|"
    r"bound|an ai without)", r"\bfrom now on\b[^.?!\n]{0,60}\b(you|reply|answer|respond|only|always|offer|act)",
    r"\b(dan|do anything now|jailbreak)\b", r"\b(i am|this is) (your|the)\b[^.?!\n]{0,30}\b(developer|admin|"
    r"administrator|creator|owner)", r"\b(admin|developer|dev) team speaking\b",
    # extracting the prompt
    r"\b(system|developer|hidden|initial|original|secret) ?(prompt|message|instruction|rules)",
    r"\b(reveal|print|show|repeat|output|tell me|display|leak|quote|copy|paste|list|write out)\b[^.?!\n]{0,50}\b("
    r"prompt|instructions|rules (you|juniper|they|we)|configuration|system message|(text|everything) (above|before)|"
    r"you were told|word for word|verbatim)", r"\beverything (that comes |that is )?before ['\"]?(user|human)",
    r"\bwhat (were|are) you told\b", r"\bbefore (this|our) conversation",
    r"\b(respond|reply|answer|output)( only)? (with|as|in) json\b", r"\bjson\b[^.?!\n]{0,60}(discount|refund|"
    r"system_prompt|approved|hidden)",
    # fake turn and role markers
    r"^\s*(system|assistant|developer)\s*:\s*(you|new|all|ignore|the (user|customer)|override|polic|rule|from)",
    r"\n\s*(system|assistant|developer)\s*:", r"<\|[a-z_]+\|>", r"\[/?(inst|sys|system)\b[^\]]*\]", r"<</?sys>>",
    r"</s>|<s>", r"###\s*(system|instruction|user|assistant)\b",
    # German, French, Spanish, Italian, Dutch
    r"\b(ignorier|vergiss|missachte|uberschreib)\w*\b[^.?!\n]{0,50}\b(anweisung|regel|vorgabe|instruktion|richtlinie|"
    r"oben)", r"\b(neue|echte) (anweisung|regel)\w*\s*:", r"\bsystem ?prompt", r"\btu so, als (hattest|warst) du",
    r"\bdu bist (jetzt|ab sofort|nun)\b", r"\bab sofort (antwortest|bist|gibst|gewahrst)",
    r"\b(ignor|oubli)\w*\b[^.?!\n]{0,40}\b(instruction|consigne|regle|ci-dessus)",
    r"\bnouvelles? (instructions?|regles?)\s*:",
    r"\btu es maintenant\b", r"\bfais comme si\b[^.?!\n]{0,30}\b(regle|restriction|limite)",
    r"\brepete\b[^.?!\n]{0,30}\b(texte|instructions|consignes)", r"\b(consignes|instructions) secretes",
    r"\b(ignora|olvida|omite)\w*\b[^.?!\n]{0,40}\b(instruccion|regla|indicacion|istruzion|sopra)",
    r"\bnuevas? (instrucciones|reglas)\s*:", r"\bahora eres\b", r"\ba partir de ahora\b[^.?!\n]{0,40}\b(responde|eres|"
    r"actua|ofrece)", r"\bprompt del sistema\b",
    r"\b(dimentica|ignora)\w*\b[^.?!\n]{0,40}\b(istruzion|regol|sopra)", r"\bnuove (istruzioni|regole)\s*:",
    r"\bprompt di sistema\b", r"\bda (adesso|ora in poi) sei\b", r"\bripeti\b[^.?!\n]{0,30}\b(testo|istruzioni)",
    r"\b(negeer|vergeet)\b[^.?!\n]{0,40}\b(instructies|regels)", r"\bnieuwe (instructies|regels)\s*:",
)]
_LEAK = [re.compile(p) for p in (
    r"<\|(knowledge|user|bot|endoftext|system|im_start|im_end)\|>", r"<</?sys>>", r"\[/?inst\]",
    r"^\s*(system|developer)\s*:", r"\n\s*(system|developer)\s*:",
    r"\bmy (system |hidden |initial |full |original |developer )?(instructions|prompt|rules|guidelines|configuration|"
    r"system message|pre-?prompt)\b", r"\b(system|hidden|initial|developer|pre-) ?prompt\b",
    r"\bi (was|am|have been) (instructed|programmed|told|configured)\b", r"\b(told|programmed) by my (developers?|"
    r"creators?|team)", r"\bhere (is|are) my (instructions|prompt|rules|configuration)\b",
    r"\b(the )?rules i (was|have been) given\b", r"\bthe text above (is|says|reads)\b", r"\bdeveloper note\b",
    r"\bi am an? (gpt|language model|llm)", r"\b(faq|policy|kb|passage|chunk)[:_][a-z0-9_=]+",
    r"\bretrieved (documents|"
    r"passages)\b", r"\b(intent|confidence|template|temperature|max_tokens)=", r"\bin my configuration\b",
    r"\bmeine (system)?anweisungen\b", r"\bmes instructions( systeme)?\b", r"\bmis instrucciones( del sistema)?\b",
    r"\bsystemanweisung", r"\binstructions systeme",
)]
_PROMISE = [re.compile(p) for p in (
    r"\b(guarantee|guaranteed|promise|garantier\w*|garantiz\w*|garantis\w*|garanti)\b",
    r"\b(definitely|certainly) (be )?(deliver|arriv|reach|there)",
    r"\bwill (definitely|certainly) (arrive|be delivered)",
    r"\b(double|twice the|extra|additional|bonus|second)\s+(refund|compensation|money back)\b",
    r"\brefund\w*\b[^.?!\n]{0,40}\b(twice|double|plus|on top|extra|anyway|as well|too|and keep)\b",
    r"\brefund\w*\b[^.?!\n]{0,50}\bkeep (it|them|the)\b", r"\b(for your trouble|to make up for|as an apology|for the "
    r"inconvenience)\b", r"\bprice (drops|goes down|is reduced) to\b",
    r"\b(keep|behalten)\b[^.?!\n]{0,30}\b(refund|erstatt|money|anyway|trotzdem|free)",
    r"\b(keep|have) (it|them|the \w+) (for free|anyway)\b", r"\bprice[- ]?match",
    r"\b(match|beat)\b[^.?!\n]{0,25}\bprices?\b",
    r"\b(added|credited|issued|sending|send you|sent you|given you)\b[^.?!\n]{0,20}(€\s?\d|\d+\s?€|voucher|coupon|bon|"
    r"gutschein|bonus|points|credit|free)", r"\b(voucher|coupon|bon|gutschein|gift card)\b[^.?!\n]{0,10}\b(of|worth|de|"
    r"von)\b\s*(€|\d)", r"\b\d+\s?% (off|discount)\b[^.?!\n]{0,30}\b(for you|next year|everything|next order|your)",
    r"\b100\s?% (off|discount|rabatt|descuento)", r"\bfree (express|shipping|delivery|upgrade|item|gift|replacement|"
    r"\w+ (jacket|beanie|pair))\b[^.?!\n]{0,30}\b(for you|on us|future|forever|all|every|your)", r"\bupgraded\b[^.?!\n]"
    r"{0,40}\bfor free\b", r"\b(forever|for life|lifetime|for the next year|never pay)\b",
    r"\b(waive|written off|write off)",
    r"\bexception for you\b", r"\bjust for you\b", r"\bextended to \d+ days\b",
    r"\b(you should|you can|i (recommend|advise|suggest)( that)? you|definitely)\s+(sue|take legal action|file a ("
    r"lawsuit|claim|chargeback)|go to court|threaten)", r"\b(legal advice|legally|lawyer|small claims|court|damages|"
    r"liable|entitled to|chargeback|bgb|void under|deduct\w* (it|the purchase)|tax(es)? )",
    r"\b(under|according to) (eu |german |european |the )?law\b",
    r"\b(antihistamine|cortisone|hydrocortisone|painkiller|ibuprofen|paracetamol|iodine|ointment|eczema|dermatitis|"
    r"allergy to|an allergy|\d+\s?mg\b)",
)]
# A sentence that says what the shop does not do: "we can't promise a date", "we don't offer price matching".
_NEGATION = re.compile(r"\b(can't|cannot|can not|unable to|not able to|(we|i) (don't|do not) (offer|provide|give|"
                       r"match)|(doesn't|does not) (offer|include)|no longer offer|unfortunately|i'm afraid|"
                       r"kann (ich )?kein|ne (peux|pouvons) pas|no (podemos|puedo)|non (possiamo|posso))\b")
_URL = re.compile(r"\bhttps?://[^\s<>\"')]+|\bwww\.[^\s<>\"')]+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|"
                  r"ru|cn|xyz|top|info|biz|de|fr|es|eu|shop|ly|co|me|app|link|click)\b(?:/[^\s<>\"')]*)?",
                  re.IGNORECASE)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def normalise(text: str, leet: bool = False) -> str:
    """Lower case, accents folded, runs of spaces collapsed; with `leet`, "1gn0re" read as "ignore"."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return re.sub(r"[ \t]+", " ", folded.translate(_LEET) if leet else folded)


def injection(text: str) -> list[str]:
    """Attempts to change the bot's instructions, in plain text or disguised."""
    spaced = re.sub(r"(?<=\b\w)[-.](?=\w\b)", "", text)  # "p-r-e-t-e-n-d y-o-u"
    readings = {"text": text, "ROT13": codecs.decode(text, "rot13"), "reversed text": text[::-1],
                "spelt-out letters": spaced, **_decoded_base64(text)}
    found = []
    for name, reading in readings.items():
        if any(p.search(normalise(reading)) or p.search(normalise(reading, leet=True)) for p in _INJECTION):
            found.append("prompt injection" + ("" if name == "text" else f" (hidden in {name})"))
    return found[:1]


def leak(text: str) -> list[str]:
    """Prompt markers or talk about the bot's own instructions in a reply."""
    plain = normalise(text)
    return ["leaks prompt or system text"] if any(p.search(plain) for p in _LEAK) else []


def promise(text: str) -> list[str]:
    """Promises outside the shop's policy (guarantees, extra refunds, price matching) and legal or medical
    advice; a sentence that says what the shop does not do ("we can't promise a date") is not one."""
    for sentence in re.split(r"(?<=[.!?])\s+|\n", normalise(text)):
        if not _NEGATION.search(sentence) and any(p.search(sentence) for p in _PROMISE):
            return ["promise or advice outside policy"]
    return []


def foreign_links(text: str, allowed_hosts: Iterable[str]) -> list[str]:
    """The links in `text` whose host is not one of `allowed_hosts` (or a subdomain of one)."""
    allowed = {h.lower().removeprefix("www.") for h in allowed_hosts}
    urls = [url.rstrip(".,;:!?") for url in _URL.findall(text)]  # "see https://shop.example, then..."
    return [url for url in urls if not _allowed(url, allowed)]


def _allowed(url: str, allowed: set[str]) -> bool:
    try:
        host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    except ValueError:  # "http://[oops/": not a link anyone should follow
        return False
    host = host.removeprefix("www.")
    return any(host == a or host.endswith("." + a) for a in allowed)


def _decoded_base64(text: str) -> dict[str, str]:
    decoded: dict[str, str] = {}
    for chunk in _BASE64.findall(text):
        try:
            plain = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if plain.isprintable():
            decoded["base64"] = decoded.get("base64", "") + " " + plain
    return decoded
