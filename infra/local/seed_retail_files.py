"""Deliver the retail pipeline's files: daily sales files to the FTP drop, partner files to S3.

Usage::

    python -m infra.local.seed_retail_files [--end YYYY-MM-DD] [--days N] [--scale N] [--seed S] [--clean]

Everything is generated from ``random.Random(seed)`` and the reference rows of
:mod:`infra.local.seed_retail` (same seed and scale), so sales name real stores, sales people,
customers and products, and a second delivery of the same files is byte-identical:

- **Sales** (FTP, ``<retail_sales_dir>/sales_<YYYYMMDD>_store<NN>.csv``): one file per store and day
  for the ``days`` days up to ``end``. Each store trades in one currency (most in GBP, some in EUR
  or USD). Each file's modification time is set (MFMT) to the morning after its day, as if the
  store's till had sent it overnight, so the extract sees settled files.
- **Partner customers** (S3, ``drops/partners/<partner>/customers_<end>.<ext>``): one file per
  partner in each of the formats partners use (CSV, Excel, JSON, NDJSON, pipe-delimited TXT). About
  half the records are known customers written the partner's way (name order, case, accents,
  abbreviations, phone formatting), the rest new people.

With ``dirty`` (the default) the delivery carries what real deliveries carry: two sales rows with
bad values (a negative quantity, an impossible date), a partner record with an unparseable date,
an extra column (kept by the pipeline in ``additional_column``), and one partner file without its
``full_name`` column, which the pipeline must send to the error prefix while everything else loads.

Dropped objects are created once (``If-None-Match``): a partner's file is never overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ftplib  # nosec: B402 (the local drop speaks plain FTP)
import io
import json
import random
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from infra.local import settings
from infra.local.seed_retail import COLUMNS, FIRST_NAMES, LAST_NAMES, STREETS, TOWNS, generate

CURRENCIES = ("GBP", "GBP", "GBP", "EUR", "USD")  # store n trades in CURRENCIES[(n - 1) % 5]
SALES_COLUMNS = (
    "sale_id",
    "sold_at",
    "store_id",
    "sales_person_id",
    "customer_id",
    "product_id",
    "quantity",
    "unit_price",
    "currency",
)
PARTNER_COLUMNS = (
    "partner",
    "partner_customer_ref",
    "full_name",
    "address",
    "postcode",
    "phone_number",
    "email",
    "signed_up_on",
)
# partner -> file format
PARTNERS = {"acme": "csv", "brightmail": "xlsx", "citylink": "json", "dovetail": "ndjson", "everyday": "txt"}
BROKEN_PARTNER = "zeta"  # sends a file without full_name: it goes to the error prefix
DROP_PREFIX = "drops/partners"
STREET_ABBREVIATIONS = {"Street": "St", "Road": "Rd", "Lane": "Ln", "Avenue": "Ave", "Close": "Cl"}


def store_currency(store_id: int) -> str:
    return CURRENCIES[(store_id - 1) % len(CURRENCIES)]


def _rows(table: str, data: Mapping[str, list[tuple[Any, ...]]]) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS[table], row, strict=True)) for row in data[table]]


# -- sales ------------------------------------------------------------------------------------------


def sales_files(
    days: Sequence[date], *, scale: int = 1, seed: int = 1, dirty: bool = True
) -> dict[str, bytes]:
    """``{file name: CSV bytes}``: one file per store (that has sales people) and day."""
    data = generate(scale, seed)
    stores = _rows("store", data)
    team = _rows("sales_team", data)
    customers = [c["customer_id"] for c in _rows("customer", data)]
    products = [p for p in _rows("product", data) if p["is_active"]]
    files: dict[str, bytes] = {}
    for day in days:
        for store in stores:
            store_id = store["store_id"]
            people = [p["sales_person_id"] for p in team if p["store_id"] == store_id]
            if not people:
                continue
            rng = random.Random(f"{seed}-{day.isoformat()}-{store_id}")
            lines = []
            for n in range(1, rng.randint(4, 12) * scale + 1):
                product = rng.choice(products)
                moment = datetime.combine(day, time(9)) + timedelta(seconds=rng.randrange(9 * 3600))
                lines.append(
                    [
                        int(f"{day:%Y%m%d}{store_id:03d}{n:04d}"),
                        moment.isoformat(sep=" "),
                        store_id,
                        rng.choice(people),
                        rng.choice(customers) if rng.random() < 0.8 else "",  # walk-ins have none
                        product["product_id"],
                        rng.randint(1, 5),
                        f"{product['unit_price']:.2f}",
                        store_currency(store_id),
                    ]
                )
            files[f"sales_{day:%Y%m%d}_store{store_id:02d}.csv"] = _csv(SALES_COLUMNS, lines)
    if dirty and files:
        first = sorted(files)[0]
        text = files[first].decode().rstrip("\n").split("\n")
        header, body = text[0], text[1:]
        bad_quantity = body[0].split(",")
        bad_quantity[6] = "-2"
        bad_date = body[1].split(",")
        bad_date[1] = "2024-02-31 25:00:00"
        files[first] = (
            "\n".join([header, ",".join(bad_quantity), ",".join(bad_date), *body[2:]]) + "\n"
        ).encode()
    return files


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]], delimiter: str = ",") -> bytes:
    """Delimited text with a header line; None is an empty field (the feeds' null)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return out.getvalue().encode()


# -- partner customers -----------------------------------------------------------------------------


def _strip_accents(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _partner_view(rng: random.Random, customer: Mapping[str, Any]) -> dict[str, Any]:
    """A known customer as a partner writes them: same person, other spelling."""
    first, last = customer["first_name"], customer["last_name"]
    style = rng.randrange(4)
    name = {
        0: f"{first} {last}",
        1: f"{last}, {first}",
        2: f"{first} {last}".upper(),
        3: _strip_accents(f"{first} {last}"),
    }[style]
    address = customer["address"] or ""
    for long, short in STREET_ABBREVIATIONS.items():
        if rng.random() < 0.5:
            address = address.replace(long, short)
    phone = customer["phone_number"]
    if phone and rng.random() < 0.5:
        digits = phone.replace(" ", "").replace("+44", "0")
        phone = f"{digits[:5]}-{digits[5:]}"
    return {
        "full_name": name,
        "address": address or None,
        "postcode": (customer["postcode"] or "").replace(" ", "")
        if rng.random() < 0.5
        else customer["postcode"],
        "phone_number": phone,
        "email": customer["email"] if rng.random() < 0.7 else None,
    }


def _new_person(rng: random.Random, number: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    _town, area = rng.choice(TOWNS)
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    return {
        "full_name": f"{first} {last}",
        "address": f"{rng.randint(300, 900)} {rng.choice(STREETS)}",  # numbers the retail data never uses
        "postcode": f"{area}{rng.randint(30, 60)} {rng.randint(1, 9)}" + "".join(rng.sample(letters, 2)),
        "phone_number": f"+44 7700 {rng.randint(901000, 901999)}",
        "email": f"{_strip_accents(first).lower()}.partner{number}@example.org",
    }


def partner_records(partner: str, *, scale: int = 1, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}-{partner}")
    customers = _rows("customer", generate(scale, seed))
    records = []
    for n in range(1, 10 * scale + 1):
        person = _partner_view(rng, rng.choice(customers)) if rng.random() < 0.5 else _new_person(rng, n)
        signed = date(2023, 1, 1) + timedelta(days=rng.randrange(600))
        records.append(
            {
                "partner": partner,
                "partner_customer_ref": f"{partner.upper()}-{n:05d}",
                **person,
                "signed_up_on": signed.isoformat(),
            }
        )
    return records


def partner_files(end: date, *, scale: int = 1, seed: int = 1, dirty: bool = True) -> dict[str, bytes]:
    """``{key under the drop prefix: bytes}``: one customers file per partner, in its format."""
    files: dict[str, bytes] = {}
    for partner, fmt in PARTNERS.items():
        records = partner_records(partner, scale=scale, seed=seed)
        columns = list(PARTNER_COLUMNS)
        if dirty and partner == "acme":
            records[0]["signed_up_on"] = "not-a-date"
            columns.append("loyalty_tier")
            for i, record in enumerate(records):
                record["loyalty_tier"] = ("gold", "silver", "bronze")[i % 3]
        files[f"{partner}/customers_{end:%Y%m%d}.{fmt}"] = _encode(fmt, columns, records)
    if dirty:
        records = partner_records(BROKEN_PARTNER, scale=scale, seed=seed)
        columns = [c for c in PARTNER_COLUMNS if c != "full_name"]
        files[f"{BROKEN_PARTNER}/customers_{end:%Y%m%d}.csv"] = _encode("csv", columns, records)
    return files


def _encode(fmt: str, columns: Sequence[str], records: Sequence[Mapping[str, Any]]) -> bytes:
    rows = [[r.get(c) for c in columns] for r in records]
    if fmt == "csv":
        return _csv(columns, rows)
    if fmt == "txt":
        return _csv(columns, rows, delimiter="|")
    if fmt == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=1).encode()
    if fmt == "ndjson":
        return b"".join(json.dumps(dict(zip(columns, row, strict=True))).encode() + b"\n" for row in rows)
    if fmt == "xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.title = "customers"
        sheet.append(list(columns))
        for row in rows:
            sheet.append(row)
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()
    raise ValueError(f"unknown format {fmt!r}")


# -- delivery ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    sales: dict[str, bytes]
    partners: dict[str, bytes]


def sales_dir() -> str:
    return f"/sales{settings.SUFFIX}"


def deliver_sales(files: Mapping[str, bytes], remote_dir: str | None = None) -> list[str]:
    """Upload the sales files over FTP, each with the modification time of the morning after its day."""
    remote_dir = remote_dir or sales_dir()
    ftp = ftplib.FTP()  # nosec: B321 (local drop)
    ftp.connect(settings.LOOPBACK, settings.FTP_PORT, timeout=30)
    ftp.login(settings.FTP_USER, settings.FTP_PASSWORD)
    try:
        with contextlib.suppress(ftplib.error_perm):  # already there
            ftp.mkd(remote_dir)
        sent = []
        for name, data in sorted(files.items()):
            path = f"{remote_dir}/{name}"
            ftp.storbinary(f"STOR {path}", io.BytesIO(data))
            morning_after = datetime.strptime(name.split("_")[1], "%Y%m%d").replace(tzinfo=UTC) + timedelta(
                days=1, hours=2
            )
            # Never in the future (yesterday's files delivered before 02:00): an hour ago at the latest.
            sent_at = min(morning_after, datetime.now(UTC) - timedelta(hours=1))
            ftp.sendcmd(f"MFMT {sent_at:%Y%m%d%H%M%S} {path}")
            sent.append(path)
        return sent
    finally:
        ftp.quit()


def deliver_partner_files(files: Mapping[str, bytes], bucket: str | None = None) -> list[str]:
    """Drop the partner files in S3, each created once (an existing drop is left as it is)."""
    import boto3
    from botocore.exceptions import ClientError

    bucket = bucket or settings.BUCKETS["ingestion_bucket"]
    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint(),
        region_name=settings.S3_REGION,
        aws_access_key_id=settings.S3_ACCESS_KEY,
        aws_secret_access_key=settings.S3_SECRET_KEY,
    )
    dropped = []
    for name, data in sorted(files.items()):
        key = f"{DROP_PREFIX}/{name}"
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
        dropped.append(f"s3://{bucket}/{key}")
    return dropped


def delivery(end: date, days: int = 7, *, scale: int = 1, seed: int = 1, dirty: bool = True) -> Delivery:
    window = [end - timedelta(days=n) for n in range(days - 1, -1, -1)]
    return Delivery(
        sales=sales_files(window, scale=scale, seed=seed, dirty=dirty),
        partners=partner_files(end, scale=scale, seed=seed, dirty=dirty),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--end", type=date.fromisoformat, default=datetime.now(UTC).date() - timedelta(days=1)
    )
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clean", action="store_true", help="no bad rows, no broken file")
    args = parser.parse_args(argv)
    files = delivery(args.end, args.days, scale=args.scale, seed=args.seed, dirty=not args.clean)
    sent = deliver_sales(files.sales)
    dropped = deliver_partner_files(files.partners)
    print(f"{len(sent)} sales file(s) -> ftp {sales_dir()}; {len(dropped)} partner file(s) -> {DROP_PREFIX}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
