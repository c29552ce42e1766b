"""Normal forms of the fields customer matching compares: names, addresses, UK postcodes, phones, emails.

Each function maps the many ways a partner writes one value to one string, so the matcher's fuzzy
scores measure real differences (a typo, another street) instead of formatting ("O'BRIEN, Seán" and
"Sean OBrien" are the same name; "+44 20 7946 0018" and "(020) 79460018" the same phone). Every
function accepts ``None``/NaN and blank text and returns ``""`` for them: "missing", which the matcher
treats as no evidence either way, never as a mismatch.

Pure Python (``unicodedata``, ``re``), cached: names, streets and postcodes repeat a lot across a
customer table, and normalising 100k rows must not dominate a matching run.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

import pandas as pd

# Honorifics dropped from names: they say nothing about which person it is and are used inconsistently.
TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "lady", "lord"})

# Street-type abbreviations, expanded so "High St" and "High Street" are one address. "st" is handled
# apart (see _street_token): before a name it is "Saint" ("12 St John's Close"), after one "Street".
ADDRESS_ABBREVIATIONS = {
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "ln": "lane",
    "str": "street",
    "cl": "close",
    "cres": "crescent",
    "dr": "drive",
    "pl": "place",
    "sq": "square",
    "ct": "court",
    "gdns": "gardens",
    "gr": "grove",
    "gro": "grove",
    "pde": "parade",
    "tce": "terrace",
    "terr": "terrace",
    "hwy": "highway",
    "blvd": "boulevard",
    "mt": "mount",
    "pk": "park",
    "wy": "way",
}

# Letters NFKD does not decompose into a base letter plus accents.
_UNDECOMPOSABLE = str.maketrans({"ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "\u0131": "i"})
# Apostrophes and look-alikes (typographic quotes, grave, acute): removed, not spaced, so O'Brien ->
# obrien and Queen's -> queens. Removed before NFKD, which would turn the acute into a space.
_APOSTROPHES = re.compile("['`\u2018\u2019\u00b4]")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_NOT_DIGIT = re.compile(r"\D")


def _text(value: Any) -> str:
    """``value`` as text, with None, NaN and pandas' NA as ``""``."""
    if isinstance(value, str):
        return value.strip()
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


@lru_cache(maxsize=65_536)
def fold(text: str) -> str:
    """Casefolded, accents stripped (Seán -> sean, Zoë -> zoe, Jürgen -> jurgen), apostrophes removed."""
    decomposed = unicodedata.normalize("NFKD", _APOSTROPHES.sub("", text).translate(_UNDECOMPOSABLE))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _words(text: str) -> list[str]:
    return _NOT_ALNUM.sub(" ", fold(text)).split()


@lru_cache(maxsize=65_536)
def _name_tokens(text: str) -> tuple[str, ...]:
    """Name words in the order written, without titles; "Last, First" is turned round to "First Last"."""
    if "," in text:
        last, _, first = text.partition(",")
        text = f"{first} {last}"
    return tuple(word for word in _words(text) if word not in TITLES)


def name_tokens(name: Any) -> tuple[str, ...]:
    """The words of a name, folded, titles dropped, in "first ... last" order where the text says so."""
    return _name_tokens(_text(name))


def normalise_name(name: Any) -> str:
    """A name's order-independent normal form: its folded words, titles dropped, sorted.

    ``normalise_name("Mr Seán O'Brien") == normalise_name("O'BRIEN, Sean") == "obrien sean"``.
    Sorting makes the form independent of "First Last" / "Last, First" / "LAST First"; the matcher
    also compares the written order, which copes better with a typo in a first letter.
    """
    return " ".join(sorted(name_tokens(name)))


def _street_token(words: list[str], index: int) -> str:
    word = words[index]
    if word == "st":
        previous = words[index - 1] if index else ""
        # "12 St John's Close", "St Mary's Road": a name follows. "High St", "Mary St": a street.
        at_start = not previous or previous[0].isdigit() or previous in {"flat", "apartment", "unit"}
        return "saint" if at_start and index + 1 < len(words) else "street"
    return ADDRESS_ABBREVIATIONS.get(word, word)


@lru_cache(maxsize=262_144)
def _address(text: str) -> str:
    words = _words(text)
    return " ".join(_street_token(words, i) for i in range(len(words)))


def normalise_address(address: Any) -> str:
    """An address line folded, punctuation removed, street types spelled out, single-spaced.

    ``normalise_address("12, Queen's Rd.") == normalise_address("12 QUEENS ROAD") == "12 queens road"``.
    """
    return _address(_text(address))


def normalise_postcode(postcode: Any) -> str:
    """A UK postcode in capitals without spaces or punctuation: ``"ls1 4ab" -> "LS14AB"``."""
    return re.sub(r"[^0-9A-Z]", "", _text(postcode).upper())


def postcode_outward(postcode: str) -> str:
    """The district of a normalised postcode: ``"LS14AB" -> "LS1"``, ``"4223" -> "422"``; else ``""``.

    A UK inward code is always a digit and two letters, so the district is everything before the last
    3. An all-digit postcode (Australia, most of Europe) is a district and a place: the district is
    all but its last digit, so a typo there still finds the neighbourhood.
    """
    if postcode.isdigit():
        return postcode[:-1] if len(postcode) >= 4 else ""
    return postcode[:-3] if len(postcode) >= 5 else ""


def normalise_phone(phone: Any) -> str:
    """A phone number as digits in UK national form: ``"+44 (0)20 7946 0018" -> "02079460018"``.

    ``+44`` / ``0044`` (and a ``(0)`` after it) become the leading ``0``; a 10-digit number written
    without its trunk ``0`` gets it back. Other international numbers keep their country code behind
    ``00`` (``"+33 1 23 45 67 89" -> "0033123456789"``), so they never collide with a national number.
    """
    text = _text(phone)
    digits = _NOT_DIGIT.sub("", text)
    if not digits:
        return ""
    international = text.startswith("+") or digits.startswith("00")
    digits = digits[2:] if digits.startswith("00") else digits
    if digits.startswith("44") and (international or len(digits) in (11, 12)):
        return "0" + digits[2:].lstrip("0")
    if international:
        return "00" + digits
    if len(digits) == 10 and not digits.startswith("0"):
        return "0" + digits
    return digits


def normalise_date(value: Any) -> str:
    """A date of birth as ``YYYYMMDD`` digits: ``"1951-11-09"``, ``19511109`` and a ``date`` alike.

    Only digits are kept and anything that is not 8 of them is missing (``""``): a partner's
    half-filled date must not count as a disagreement. The value is not checked to be a real date,
    because a typed date with a typo ("19511309") is still evidence, which the comparison grades.
    """
    if hasattr(value, "strftime") and not pd.isna(value):
        return str(value.strftime("%Y%m%d"))
    text = _text(value)
    if text.endswith(".0"):  # read as a float by pandas
        text = text[:-2]
    digits = _NOT_DIGIT.sub("", text.split("T")[0].split(" ")[0])
    return digits if len(digits) == 8 else ""


def normalise_email(email: Any) -> str:
    """An email address trimmed and casefolded (the local part is case-insensitive in practice)."""
    return _text(email).casefold()


@lru_cache(maxsize=65_536)
def phonetic(word: str) -> str:
    """American Soundex of a folded word (``"robert" -> "R163"``): the name key blocking uses."""
    if not word:
        return ""
    codes = {
        **dict.fromkeys("bfpv", "1"),
        **dict.fromkeys("cgjkqsxz", "2"),
        **dict.fromkeys("dt", "3"),
        "l": "4",
        **dict.fromkeys("mn", "5"),
        "r": "6",
    }
    letters = [ch for ch in word if ch.isalpha()]
    if not letters:
        return word
    key, previous = letters[0].upper(), codes.get(letters[0], "")
    for ch in letters[1:]:
        code = codes.get(ch, "")
        if code and code != previous:
            key += code
        if ch not in "hw":  # h and w do not separate two equal codes; vowels do
            previous = code
    return (key + "000")[:4]
