"""A labelled test set for customer matching: known customers, partner records, and the truth.

``labelled_set(n_existing, n_candidates, seed)`` builds, from ``random.Random(seed)`` alone (same
arguments, same frames):

- ``existing``: a population of customers shaped like the retail source's ``customer`` table, with
  the retail seeder's accented and apostrophised names, streets and towns (imported from
  ``infra.local.seed_retail``) plus lists of this module's own, so a few thousand people are not
  mostly namesakes. Phones come from Ofcom's drama ranges (never real numbers); past 20,000 people
  they repeat, as shared household lines do.
- ``candidates``: partner records, each one of these ``kind`` s:

  - ``duplicate``: an existing customer re-typed with realistic noise: one or two character edits
    or transpositions in the name, "Last, First" or "FIRST LAST", a title, dropped accents, street
    abbreviations, case and punctuation, the town appended, postcode spacing and case, any phone
    format, a missing email or phone;
  - ``moved``: an existing customer at a new address (another postcode), still with the same phone
    and email;
  - ``new``: a person the warehouse does not know;
  - ``same_surname_town`` (hard negative): another person with an existing customer's surname in
    the same town (postcode area), with a different first name, address, phone and email;
  - ``same_name`` (hard negative): another person with an existing customer's first and last name
    but a different address (and postcode) and phone;
  - ``household`` (hard negative): another person at an existing customer's address, with the same
    surname, a clearly different first name (``fuzz.ratio`` < 70 with theirs), and sometimes the
    same (landline) phone;
  - ``batch_new``: a new person who appears twice in the batch (two noisy renderings).

- ``truth``: per ``partner_customer_ref`` its ``kind``, ``true_customer_id`` (the existing customer
  it is, or NA), ``entity`` (one value per real person: ``c<id>`` or ``n<k>``) and ``noise`` (what
  was done to it). Refs are assigned after shuffling, so their order reveals nothing.

``evaluate(labelled, decisions)`` computes the figures the tests assert and the bench prints.

A test and bench helper, kept under ``tests/`` so it is never deployed: it imports
``infra.local.seed_retail``, which the MWAA bundle does not ship (``make package`` refuses a bundle
whose framework imports ``tests`` or ``infra``).
"""

from __future__ import annotations

import random
import string
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rapidfuzz import fuzz

from include.etlkit.dedup.matcher import MATCH, NEW, REVIEW, MatchDecision
from infra.local import seed_retail


def _unique(*groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for group in groups for item in group))


FIRST_NAMES = _unique(
    seed_retail.FIRST_NAMES,
    (
        "Alfie",
        "Charlie",
        "Jacob",
        "Thomas",
        "William",
        "Joshua",
        "James",
        "Henry",
        "Alexander",
        "Edward",
        "Samuel",
        "Daniel",
        "Joseph",
        "Benjamin",
        "Lucas",
        "Max",
        "Finley",
        "Archie",
        "Reuben",
        "Elijah",
        "Callum",
        "Declan",
        "Ciarán",
        "Dafydd",
        "Gethin",
        "Ewan",
        "Hamish",
        "Rory",
        "Tomás",
        "Ahmed",
        "Yusuf",
        "Arjun",
        "Rohan",
        "Hiroshi",
        "Chidi",
        "Tunde",
        "Mateusz",
        "Piotr",
        "Luca",
        "Olivia",
        "Emily",
        "Poppy",
        "Isabella",
        "Jessica",
        "Evie",
        "Ella",
        "Charlotte",
        "Daisy",
        "Matilda",
        "Phoebe",
        "Ruby",
        "Scarlett",
        "Harriet",
        "Eleanor",
        "Rosie",
        "Imogen",
        "Niamh",
        "Bethan",
        "Carys",
        "Eilidh",
        "Mairéad",
        "Róisín",
        "Aisha",
        "Fatima",
        "Ananya",
        "Yasmin",
        "Léa",
        "Agnieszka",
        "Zofia",
        "Ngozi",
        "Adaeze",
        "Hana",
        "Beatriz",
        "Inès",
        "Renée",
    ),
)
LAST_NAMES = _unique(
    seed_retail.LAST_NAMES,
    (
        "Roberts",
        "Jackson",
        "Harris",
        "Martin",
        "Cooper",
        "King",
        "Lee",
        "Baker",
        "Harrison",
        "Morgan",
        "Allen",
        "James",
        "Scott",
        "Phillips",
        "Watson",
        "Davis",
        "Parker",
        "Price",
        "Bennett",
        "Young",
        "Griffiths",
        "Mitchell",
        "Kelly",
        "Cook",
        "Carter",
        "Richardson",
        "Bailey",
        "Collins",
        "Bell",
        "Shaw",
        "Murphy",
        "Miller",
        "Cox",
        "Richards",
        "Khan",
        "Marshall",
        "Anderson",
        "Simpson",
        "Ellis",
        "Adams",
        "Singh",
        "Begum",
        "Ali",
        "Ahmed",
        "Chen",
        "Wang",
        "Kowalski",
        "Nowak",
        "Rossi",
        "Fernández",
        "García",
        "Müller",
        "Schäfer",
        "Dubois",
        "Lefèvre",
        "O'Connor",
        "O'Sullivan",
        "O'Donnell",
        "D'Souza",
        "MacLeod",
        "McKenzie",
        "MacDonald",
        "Fitzgerald",
        "Campbell",
        "Stewart",
        "Murray",
        "Reid",
        "Ross",
        "Paterson",
        "Fraser",
        "Morrison",
        "Hamilton",
        "Graham",
        "Kennedy",
        "Lloyd",
        "Rees",
        "Jenkins",
        "Owen",
        "Powell",
        "Pritchard",
        "Vaughan",
        "Gallagher",
        "Doherty",
        "Quinn",
        "Byrne",
        "Ó Briain",
        "Mensah",
        "Adeyemi",
        "Okonkwo",
        "Osei",
        "Chowdhury",
        "Hussain",
        "Rahman",
        "Iqbal",
        "Sharma",
        "Gupta",
        "Tanaka",
        "Kim",
        "Park",
        "Silva",
        "Santos",
        "Pereira",
        "Novák",
        "Horváth",
        "Kovač",
        "Jensen",
        "Hansen",
        "Lindqvist",
        "Björk",
        "Brennan",
        "Whitfield",
        "Ashworth",
        "Barraclough",
        "Pemberton",
        "Winterbottom",
        "Featherstone",
        "Ramsbottom",
        "Higginbotham",
    ),
)
STREETS = _unique(
    seed_retail.STREETS,
    (
        "Church Street",
        "Mill Road",
        "London Road",
        "School Lane",
        "North Street",
        "Albert Road",
        "Springfield Road",
        "Windsor Avenue",
        "Orchard Close",
        "Meadow Way",
        "Elm Grove",
        "Oak Drive",
        "Beech Crescent",
        "Chapel Street",
        "Bridge Street",
        "Castle Street",
        "Market Place",
        "St Mary's Road",
        "St Peter's Street",
        "Cromwell Road",
        "Wellington Terrace",
        "Nelson Street",
        "Harbour View",
        "Riverside Walk",
        "Abbey Gardens",
        "Priory Lane",
        "Lime Tree Avenue",
        "Cherry Tree Court",
        "Hawthorn Road",
        "Willow Drive",
    ),
)
TOWNS = _unique(
    seed_retail.TOWNS,  # (town, postcode area) pairs
    (
        ("Birmingham", "B"),
        ("Liverpool", "L"),
        ("Sheffield", "S"),
        ("Nottingham", "NG"),
        ("Leicester", "LE"),
        ("Edinburgh", "EH"),
        ("Aberdeen", "AB"),
        ("Swansea", "SA"),
        ("Oxford", "OX"),
        ("Cambridge", "CB"),
        ("Exeter", "EX"),
        ("Plymouth", "PL"),
        ("Southampton", "SO"),
        ("Reading", "RG"),
        ("Derby", "DE"),
        ("Hull", "HU"),
    ),
)

# Ofcom's numbers reserved for drama: (area code, local-number prefix); each prefix has 1,000 numbers.
DRAMA_RANGES = (
    ("020", "79460"),
    ("0113", "4960"),
    ("0114", "4960"),
    ("0115", "4960"),
    ("0116", "4960"),
    ("0117", "4960"),
    ("0118", "4960"),
    ("0121", "4960"),
    ("0131", "4960"),
    ("0141", "4960"),
    ("0151", "4960"),
    ("0161", "4960"),
    ("0191", "4980"),
    ("028", "96496"),
    ("029", "20180"),
    ("01632", "960"),
    ("07700", "900"),
    ("0808", "1570"),
    ("0909", "8790"),
    ("0306", "9990"),
)
ABBREVIATIONS = {
    "Street": "St",
    "Road": "Rd",
    "Avenue": "Ave",
    "Lane": "Ln",
    "Close": "Cl",
    "Crescent": "Cres",
    "Drive": "Dr",
    "Parade": "Pde",
    "Gardens": "Gdns",
    "Terrace": "Tce",
    "Grove": "Gr",
    "Court": "Ct",
}
TITLES = ("Mr", "Mrs", "Ms", "Dr", "Mr.", "Dr.", "Miss")

# Share of each kind among the partner records (batch_new counts records: two per person).
KINDS = {
    "duplicate": 0.50,
    "moved": 0.02,
    "new": 0.20,
    "same_surname_town": 0.08,
    "same_name": 0.08,
    "household": 0.04,
    "batch_new": 0.08,
}
POSITIVE_KINDS = frozenset({"duplicate", "moved"})

Phone = tuple[str, str]  # (area code, local number)


@dataclass
class Person:
    first: str
    last: str
    address: str | None  # "12 High Street"
    town: str
    area: str  # postcode area of the town
    postcode: str  # "LS12 3AB"
    phone: Phone | None
    email: str | None


@dataclass(frozen=True)
class LabelledSet:
    """``existing`` (the warehouse's customers), ``candidates`` (a partner batch), ``truth`` (per ref)."""

    existing: pd.DataFrame
    candidates: pd.DataFrame
    truth: pd.DataFrame


# -- the population ---------------------------------------------------------------------------------


class _Population:
    """People drawn from the lists; phones from the drama pool, in a shuffled order, reused past its end."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.phones = [(area, f"{prefix}{n:0{3}d}") for area, prefix in DRAMA_RANGES for n in range(1000)]
        rng.shuffle(self.phones)
        self.next_phone = 0
        self.next_email = 1000

    def phone(self) -> Phone:
        phone = self.phones[self.next_phone % len(self.phones)]
        self.next_phone += 1
        return phone

    def email(self, first: str, last: str) -> str:
        self.next_email += 1
        first, last = _plain(first), _plain(last)
        user = f"{first}.{last}" if self.rng.random() < 0.7 else f"{first[:1]}{last}"
        return f"{user}{self.next_email}@example.com"

    def address(self) -> str:
        return f"{self.rng.randint(1, 240)} {self.rng.choice(STREETS)}"

    def postcode(self, area: str, *, avoid: str = "") -> str:
        letters = "ABDEFGHJLNPQRSTUWXYZ"
        rng = self.rng
        while True:
            inward = f"{rng.randint(1, 9)}{rng.choice(letters)}{rng.choice(letters)}"
            postcode = f"{area}{rng.randint(1, 28)} {inward}"
            if postcode != avoid:
                return postcode

    def person(
        self,
        *,
        first: str | None = None,
        last: str | None = None,
        town: tuple[str, str] | None = None,
        avoid_postcode: str = "",
        email_rate: float = 0.85,
    ) -> Person:
        rng = self.rng
        first = first or rng.choice(FIRST_NAMES)
        last = last or rng.choice(LAST_NAMES)
        town_name, area = town or rng.choice(TOWNS)
        return Person(
            first=first,
            last=last,
            address=self.address(),
            town=town_name,
            area=area,
            postcode=self.postcode(area, avoid=avoid_postcode),
            phone=self.phone(),
            email=self.email(first, last) if rng.random() < email_rate else None,
        )


def _plain(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_name.lower() if ch.isalpha())


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _other_first_name(rng: random.Random, first: str) -> str:
    """A first name clearly not a re-typing of ``first`` (ratio < 70), so the truth is decidable."""
    while True:
        other = rng.choice(FIRST_NAMES)
        if fuzz.ratio(_plain(other), _plain(first)) < 70:
            return other


# -- noise -------------------------------------------------------------------------------------------


def _typo(rng: random.Random, word: str) -> tuple[str, str]:
    """One character edit of ``word``: substitution, deletion, insertion or adjacent transposition."""
    # Typists rarely get the first letter wrong: positions after it are nine times likelier.
    position = 0 if rng.random() < 0.1 else rng.randrange(1, len(word))
    kind = rng.choice(("substitute", "delete", "insert", "transpose"))
    letter = rng.choice(string.ascii_lowercase)
    if kind == "substitute":
        letter = letter.upper() if word[position].isupper() else letter
        return word[:position] + letter + word[position + 1 :], kind
    if kind == "delete":
        return word[:position] + word[position + 1 :], kind
    if kind == "insert":
        return word[:position] + letter + word[position:], kind
    position = min(position, len(word) - 2)
    return word[:position] + word[position + 1] + word[position] + word[position + 2 :], kind


def _noisy_name(rng: random.Random, first: str, last: str, noise: list[str], *, typos: bool = True) -> str:
    if rng.random() < 0.5 and _strip_accents(first + last) != first + last:
        first, last = _strip_accents(first), _strip_accents(last)
        noise.append("accents dropped")
    roll = rng.random() if typos else 1.0
    edits = 2 if roll < 0.08 else 1 if roll < 0.33 else 0
    words = [first, last]
    for _ in range(edits):
        which = rng.randrange(2)
        if len(words[which]) < 3:
            which = 1 - which
        words[which], kind = _typo(rng, words[which])
        noise.append(f"name typo ({kind})")
    first, last = words
    style = rng.random()
    if style < 0.40:
        return f"{first} {last}"
    if style < 0.60:
        noise.append("Last, First")
        return f"{last}, {first}"
    if style < 0.72:
        noise.append("upper case name")
        return f"{first} {last}".upper()
    if style < 0.80:
        noise.append("LAST, First")
        return f"{last.upper()}, {first}"
    if style < 0.85:
        noise.append("lower case name")
        return f"{first} {last}".lower()
    noise.append("title")
    return f"{rng.choice(TITLES)} {first} {last}"


def _noisy_address(rng: random.Random, person: Person, noise: list[str]) -> str | None:
    if person.address is None:
        return None
    address = person.address
    if rng.random() < 0.5:
        words = address.split()
        if words[-1] in ABBREVIATIONS:
            words[-1] = ABBREVIATIONS[words[-1]] + ("." if rng.random() < 0.3 else "")
            address = " ".join(words)
            noise.append("street abbreviated")
    if "'" in address and rng.random() < 0.3:
        address = address.replace("'", "")
        noise.append("apostrophe dropped")
    if rng.random() < 0.15:
        number, _, rest = address.partition(" ")
        address = f"{number}, {rest}"
        noise.append("comma after number")
    if rng.random() < 0.08:
        words = address.split()
        long_words = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
        if long_words:
            i = rng.choice(long_words)
            words[i], kind = _typo(rng, words[i])
            address = " ".join(words)
            noise.append(f"address typo ({kind})")
    if rng.random() < 0.1:
        address = f"{address}, {person.town}"
        noise.append("town appended")
    case = rng.random()
    if case < 0.15:
        address = address.upper()
        noise.append("upper case address")
    elif case < 0.25:
        address = address.lower()
        noise.append("lower case address")
    return address


def _noisy_postcode(rng: random.Random, postcode: str, noise: list[str]) -> str | None:
    roll = rng.random()
    if roll < 0.03:
        noise.append("postcode missing")
        return None
    if roll < 0.33:
        postcode = postcode.replace(" ", "")
        noise.append("postcode unspaced")
    if rng.random() < 0.15:
        postcode = postcode.lower()
        noise.append("postcode lower case")
    return postcode


def _group(local: str) -> str:
    """Local number spaced as written in the UK: "7946 0018", "496 0018", "900123"."""
    if len(local) == 8:
        return f"{local[:4]} {local[4:]}"
    if len(local) == 7:
        return f"{local[:3]} {local[3:]}"
    return local


def format_phone(phone: Phone, style: int) -> str:
    """One of the ways a UK number is written (``style`` 0-6)."""
    area, local = phone
    return [
        f"+44 {area[1:]} {_group(local)}",  # the warehouse's own format
        f"{area} {_group(local)}",
        f"{area}-{_group(local).replace(' ', '-')}",
        f"({area}) {local}",
        f"{area}{local}",
        f"+44 (0){area[1:]} {_group(local)}",
        f"0044 {area[1:]} {local}",
    ][style]


def _noisy_phone(
    rng: random.Random, phone: Phone | None, noise: list[str], *, keep: bool = False
) -> str | None:
    if phone is None:
        return None
    if not keep and rng.random() < 0.1:
        noise.append("phone missing")
        return None
    style = rng.randrange(7)
    if style:
        noise.append(f"phone format {style}")
    return format_phone(phone, style)


def _noisy_email(
    rng: random.Random, email: str | None, noise: list[str], *, keep: bool = False
) -> str | None:
    if email is None:
        return None
    if not keep and rng.random() < 0.4:
        noise.append("email missing")
        return None
    if rng.random() < 0.1:
        noise.append("upper case email")
        return email.upper()
    return email


def _partner_record(
    rng: random.Random, person: Person, noise: list[str], *, keep_contact: bool = False
) -> dict[str, Any]:
    return {
        "full_name": _noisy_name(rng, person.first, person.last, noise),
        "address": _noisy_address(rng, person, noise),
        "postcode": _noisy_postcode(rng, person.postcode, noise),
        "phone_number": _noisy_phone(rng, person.phone, noise, keep=keep_contact),
        "email": _noisy_email(rng, person.email, noise, keep=keep_contact),
    }


# -- the set -----------------------------------------------------------------------------------------


def _counts(n_candidates: int) -> dict[str, int]:
    counts = {kind: round(share * n_candidates) for kind, share in KINDS.items()}
    counts["batch_new"] -= counts["batch_new"] % 2
    counts["new"] += n_candidates - sum(counts.values())
    return counts


def labelled_set(n_existing: int = 3_000, n_candidates: int = 3_000, seed: int = 20261122) -> LabelledSet:
    """Existing customers, a partner batch and its truth; the same for the same arguments."""
    if n_existing < 1 or n_candidates < 2:
        raise ValueError("need at least one existing customer and two candidates")
    rng = random.Random(seed)
    population = _Population(rng)
    people: list[Person] = []
    for _ in range(n_existing):
        person = population.person()
        roll = rng.random()
        if roll < 0.03:
            person.address = None  # some customers never gave an address
        elif roll > 0.95:
            person.phone = None
        people.append(person)
    existing = pd.DataFrame(
        {
            "customer_id": range(1, n_existing + 1),
            "first_name": [p.first for p in people],
            "last_name": [p.last for p in people],
            "address": [p.address for p in people],
            "city": [p.town for p in people],
            "postcode": [p.postcode for p in people],
            "phone_number": [format_phone(p.phone, 0) if p.phone else None for p in people],
            "email": [p.email for p in people],
        }
    )

    counts = _counts(n_candidates)
    records: list[dict[str, Any]] = []

    def add(kind: str, record: dict[str, Any], customer: int | None, entity: str, noise: list[str]) -> None:
        records.append(
            record | {"kind": kind, "true_customer_id": customer, "entity": entity, "noise": "; ".join(noise)}
        )

    ids = list(range(n_existing))
    duplicated = rng.sample(ids, min(counts["duplicate"], n_existing))
    duplicated += rng.choices(ids, k=counts["duplicate"] - len(duplicated))
    for i in duplicated:
        noise: list[str] = []
        add("duplicate", _partner_record(rng, people[i], noise), i + 1, f"c{i + 1}", noise)

    reachable = [i for i in ids if people[i].phone and people[i].email]
    for i in rng.choices(reachable, k=counts["moved"]):
        person = people[i]
        moved = population.person(first=person.first, last=person.last, avoid_postcode=person.postcode)
        moved.phone, moved.email = person.phone, person.email
        noise = ["moved: new address and postcode"]
        add("moved", _partner_record(rng, moved, noise, keep_contact=True), i + 1, f"c{i + 1}", noise)

    fresh = 0

    def new_entity() -> str:
        nonlocal fresh
        fresh += 1
        return f"n{fresh}"

    for _ in range(counts["new"]):
        noise = []
        add("new", _partner_record(rng, population.person(), noise), None, new_entity(), noise)

    for i in rng.choices(ids, k=counts["same_surname_town"]):
        known = people[i]
        other = population.person(
            first=_other_first_name(rng, known.first),
            last=known.last,
            town=(known.town, known.area),
            avoid_postcode=known.postcode,
        )
        noise = [f"same surname and town as customer {i + 1}"]
        add("same_surname_town", _partner_record(rng, other, noise), None, new_entity(), noise)

    for i in rng.choices(ids, k=counts["same_name"]):
        known = people[i]
        other = population.person(first=known.first, last=known.last, avoid_postcode=known.postcode)
        noise = [f"same name as customer {i + 1}"]
        add("same_name", _partner_record(rng, other, noise), None, new_entity(), noise)

    housed = [i for i in ids if people[i].address]
    for i in rng.choices(housed, k=counts["household"]):
        known = people[i]
        other = population.person(first=_other_first_name(rng, known.first), last=known.last, email_rate=0.6)
        other.address, other.town, other.area = known.address, known.town, known.area
        other.postcode = known.postcode
        noise = [f"household of customer {i + 1}"]
        if known.phone and rng.random() < 0.4:
            other.phone = known.phone
            noise.append("shared landline")
        add("household", _partner_record(rng, other, noise), None, new_entity(), noise)

    for _ in range(counts["batch_new"] // 2):
        person, entity = population.person(), new_entity()
        for copy in ("first", "second"):
            noise = [f"{copy} record of a new person"]
            add("batch_new", _partner_record(rng, person, noise), None, entity, noise)

    rng.shuffle(records)
    frame = pd.DataFrame(records)
    frame.insert(0, "partner_customer_ref", [f"PR{n:07d}" for n in range(1, len(frame) + 1)])
    frame["true_customer_id"] = frame["true_customer_id"].astype("Int64")
    candidates = frame[["partner_customer_ref", "full_name", "address", "postcode", "phone_number", "email"]]
    truth = frame[["partner_customer_ref", "kind", "true_customer_id", "entity", "noise"]]
    return LabelledSet(existing, candidates.reset_index(drop=True), truth.reset_index(drop=True))


# -- evaluation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """How decisions compare with the truth.

    - precision = correct matches / ``match`` decisions (a match is correct when its ``customer_id``
      is the true one). ``review`` and ``new`` decisions are not counted in it.
    - recall = correct matches / records that truly are an existing customer. A ``review`` of such a
      record counts as not matched.
    - review_share = ``review`` decisions / all records.
    - split_people: new people (truth) given more than one new id; merged_people: new ids given to
      more than one real person.
    """

    records: int
    positives: int
    matches: int
    correct_matches: int
    reviews: int
    precision: float
    recall: float
    review_share: float
    split_people: int
    merged_people: int
    errors: tuple[tuple[str, str, str], ...]  # (ref, truth kind, decision): wrong or missed matches

    def summary(self) -> str:
        return (
            f"{self.records} records, {self.positives} true duplicates: precision {self.precision:.4f} "
            f"({self.correct_matches}/{self.matches} matches correct), recall {self.recall:.4f}, "
            f"review {self.review_share:.2%} ({self.reviews}), new people split {self.split_people}, "
            f"merged {self.merged_people}"
        )


def evaluate(labelled: LabelledSet, decisions: Sequence[MatchDecision]) -> Evaluation:
    """Precision, recall and review share of ``decisions`` against ``labelled.truth``."""
    truth = labelled.truth.set_index("partner_customer_ref")
    by_ref = {decision.candidate_ref: decision for decision in decisions}
    if set(by_ref) != set(truth.index):
        raise ValueError("the decisions are not one per labelled candidate")
    positives = matches = correct = reviews = 0
    errors: list[tuple[str, str, str]] = []
    new_ids: dict[str, set[int]] = defaultdict(set)
    entities: dict[int, set[str]] = defaultdict(set)
    for ref, row in truth.iterrows():
        decision = by_ref[ref]
        true_id = None if pd.isna(row["true_customer_id"]) else int(row["true_customer_id"])
        positives += true_id is not None
        reviews += decision.decision == REVIEW
        if decision.decision == MATCH:
            matches += 1
            if decision.customer_id == true_id:
                correct += 1
            else:
                errors.append((str(ref), row["kind"], f"matched {decision.customer_id}"))
        elif true_id is not None:
            errors.append((str(ref), row["kind"], decision.decision))
        if decision.decision == NEW and true_id is None and decision.customer_id is not None:
            new_ids[row["entity"]].add(decision.customer_id)
            entities[decision.customer_id].add(row["entity"])
    return Evaluation(
        records=len(truth),
        positives=positives,
        matches=matches,
        correct_matches=correct,
        reviews=reviews,
        precision=correct / matches if matches else 1.0,
        recall=correct / positives if positives else 1.0,
        review_share=reviews / len(truth),
        split_people=sum(len(given) > 1 for given in new_ids.values()),
        merged_people=sum(len(people) > 1 for people in entities.values()),
        errors=tuple(errors),
    )
