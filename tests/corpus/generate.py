#!/usr/bin/env python3
"""Writes tests/corpus/corpus.jsonl: the labelled corpus that measures hoop's
masking (precision and recall per type, docs/masking.md) and that
tests/bench/presidio.py runs through Microsoft Presidio for comparison.

Deterministic (fixed seed): running it again writes the same file, so the
committed corpus is what this script makes. Every value is synthetic: card
numbers are Luhn-valid in real issuer ranges, IBANs carry correct mod-97
check digits for each country's length, routing numbers pass the ABA
checksum, SSNs follow the SSA's area/group/serial rules. None belongs to a
person.

Each line is one document:
  {"id": "ticket-0007", "kind": "ticket", "text": "...",
   "labels": [[start, end, "card"], ...]}          # UTF-8 byte offsets
  {"id": "record-0003", "kind": "json", "value": {...},
   "labels": [["/customer/ssn", "ssn"], ...]}        # JSON pointers to whole strings
Anything not labelled is a negative; the hard negatives (order numbers and
transaction ids that pass Luhn, timestamps, amounts, IBAN-shaped strings with
a bad checksum, invalid SSNs, numbers that fail a checksum) are drawn on
purpose, many times each.

Usage: python3 tests/corpus/generate.py [OUT]
"""

import json
import random
import string
import sys
from pathlib import Path

SEED = 20261204
R = random.Random(SEED)

# ------------------------------------------------------------ checksums


def luhn_check_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(num: str) -> bool:
    return luhn_check_digit(num[:-1]) == num[-1]


def digits(n: int) -> str:
    return "".join(R.choice(string.digits) for _ in range(n))


def group(num: str, sizes, sep: str) -> str:
    out, i = [], 0
    for s in sizes:
        out.append(num[i : i + s])
        i += s
    if i < len(num):
        out.append(num[i:])
    return sep.join(out)


# ------------------------------------------------------------ true values

CARD_BRANDS = [
    # (name, prefixes, length, grouping)
    ("Visa", ["4"], 16, (4, 4, 4, 4)),
    ("Visa", ["4"], 13, (4, 3, 3, 3)),
    ("Visa", ["4"], 19, (4, 4, 4, 4, 3)),
    ("Mastercard", ["51", "52", "53", "54", "55"], 16, (4, 4, 4, 4)),
    ("Mastercard", ["2221", "2300", "2500", "2720"], 16, (4, 4, 4, 4)),
    ("Amex", ["34", "37"], 15, (4, 6, 5)),
    ("Discover", ["6011", "644", "65"], 16, (4, 4, 4, 4)),
    ("JCB", ["3528", "3550", "3589"], 16, (4, 4, 4, 4)),
    ("Diners", ["36", "300", "305"], 14, (4, 6, 4)),
    ("UnionPay", ["62"], 16, (4, 4, 4, 4)),
    ("UnionPay", ["62"], 19, (4, 4, 4, 4, 3)),
]


def card():
    brand, prefixes, length, sizes = R.choice(CARD_BRANDS)
    body = R.choice(prefixes)
    body += digits(length - 1 - len(body))
    num = body + luhn_check_digit(body)
    style = R.random()
    if style < 0.4:
        text = num
    elif style < 0.8:
        text = group(num, sizes, " ")
    else:
        text = group(num, sizes, "-")
    return brand, text


def ssn(formatted=None):
    while True:
        area = R.randint(1, 899)
        if area != 666:
            break
    g, s = R.randint(1, 99), R.randint(1, 9999)
    f = formatted if formatted is not None else R.random()
    if f is True or (f is not False and f < 0.7):
        return f"{area:03d}-{g:02d}-{s:04d}"
    return f"{area:03d}{g:02d}{s:04d}"


IBAN_FORMATS = {
    # country: BBAN layout, n = digits, a = upper letters, c = upper alnum
    "GB": "4a14n",
    "DE": "18n",
    "FR": "10n11c2n",
    "ES": "20n",
    "IT": "1a10n12c",
    "NL": "4a10n",
    "BE": "12n",
    "CH": "5n12c",
    "AT": "16n",
    "IE": "4a14n",
    "PL": "24n",
    "SA": "2n18c",
    "NO": "11n",
    "MT": "4a5n18c",
    "LC": "4a24c",
    "AE": "3n16n",
    "BR": "23n1a1c",
}


def bban(layout: str) -> str:
    out, num = [], ""
    for ch in layout:
        if ch.isdigit():
            num += ch
            continue
        n = int(num)
        num = ""
        pool = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[ch]
        out.append("".join(R.choice(pool) for _ in range(n)))
    return "".join(out)


def mod97(s: str) -> int:
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97


def iban(valid=True):
    country = R.choice(sorted(IBAN_FORMATS))
    b = bban(IBAN_FORMATS[country])
    check = 98 - mod97(country + "00" + b)
    if not valid:
        check = (check + R.randint(1, 96)) % 97 + 2
        if mod97(f"{country}{check:02d}{b}") == 1:
            check = check + 1 if check < 98 else check - 1
    value = f"{country}{check:02d}{b}"
    if valid:
        assert mod97(value) == 1, value
    if R.random() < 0.5:
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


ROUTING_PREFIXES = [f"{p:02d}" for p in list(range(1, 13)) + list(range(21, 33)) + list(range(61, 73)) + [80]]


def aba_ok(n: str) -> bool:
    w = [3, 7, 1] * 3
    return sum(int(d) * x for d, x in zip(n, w)) % 10 == 0


def routing(valid=True):
    while True:
        n = R.choice(ROUTING_PREFIXES) + digits(7)
        if aba_ok(n) == valid:
            return n


def account():
    return digits(R.randint(8, 17))


FIRST = ["jane", "omar", "li", "maria", "k.ito", "sam", "priya", "noah", "eva", "t_nguyen"]
DOMAINS = ["example.com", "bank.example", "mail.example.org", "corp.example.co.uk", "example.net"]


def email():
    user = R.choice(FIRST) + R.choice(["", ".doe", "+billing", str(R.randint(1, 99))])
    return f"{user}@{R.choice(DOMAINS)}"


def phone():
    area = R.randint(201, 989)
    ex = R.randint(200, 999)
    line = R.randint(0, 9999)
    return R.choice(
        [
            f"+1{area}{ex}{line:04d}",
            f"+1 {area} {ex} {line:04d}",
            f"+44 20 {R.randint(7000, 8999)} {R.randint(0, 9999):04d}",
            f"+49 30 {R.randint(1000000, 9999999)}",
            f"+33 1 {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)}",
            f"({area}) {ex}-{line:04d}",
            f"{area}-{ex}-{line:04d}",
            f"{area}.{ex}.{line:04d}",
        ]
    )


def b64url(n):
    return "".join(R.choice(string.ascii_letters + string.digits + "-_") for _ in range(n))


def alnum(n, pool=string.ascii_letters + string.digits):
    return "".join(R.choice(pool) for _ in range(n))


def secret():
    """(text with the secret in it, the secret's span within that text)."""
    kind = R.randrange(9)
    if kind == 0:
        s = "AKIA" + alnum(16, string.ascii_uppercase + "234567")
        return s, s
    if kind == 1:
        s = "ghp_" + alnum(36)
        return s, s
    if kind == 2:
        s = "eyJ" + b64url(20) + ".eyJ" + b64url(40) + "." + b64url(43)
        return s, s
    if kind == 3:
        tok = b64url(32)
        return f"Authorization: Bearer {tok}", tok
    if kind == 4:
        pw = alnum(14)
        return f"postgres://svc_reports:{pw}@db.internal.example:5432/ledger", pw
    if kind == 5:
        pw = alnum(12) + "!"
        return f"password={pw}", pw
    if kind == 6:
        s = "xoxb-" + digits(12) + "-" + alnum(24)
        return s, s
    if kind == 7:
        s = "sk_live_" + alnum(24)
        return s, s
    body = "\n".join(alnum(64, string.ascii_letters + string.digits + "+/") for _ in range(3))
    s = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    return s, s


# ------------------------------------------------------------ negatives


def luhn_valid_digits(n):
    body = digits(n - 1)
    return body + luhn_check_digit(body)


def negative():
    """Text that looks like protected data and is not."""
    k = R.randrange(16)
    if k == 0:
        return f"order number {luhn_valid_digits(16)}"
    if k == 1:
        return f"transaction id {luhn_valid_digits(R.choice([15, 16]))}"
    if k == 2:
        return f"ts={R.randint(1600000000000, 1800000000000)}"
    if k == 3:
        return f"2026-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}T{R.randint(0, 23):02d}:{R.randint(0, 59):02d}:{R.randint(0, 59):02d}.{R.randint(0, 999999):06d}Z"
    if k == 4:
        return f"${R.randint(1, 999)},{R.randint(0, 999):03d},{R.randint(0, 999):03d}.{R.randint(0, 99):02d}"
    if k == 5:
        return f"amount {R.randint(1000000, 99999999)}.{R.randint(0, 99):02d} USD"
    if k == 6:
        return f"IBAN-like reference {iban(valid=False)}"
    if k == 7:
        bad = R.choice(["000", "666", str(R.randint(900, 999))])
        return f"ssn {bad}-{R.randint(1, 99):02d}-{R.randint(1, 9999):04d}"
    if k == 8:
        return f"SSN {R.randint(1, 665):03d}-00-{R.randint(1, 9999):04d}"
    if k == 9:
        # A 16-digit number in card grouping that fails Luhn.
        num = luhn_valid_digits(16)
        num = num[:-1] + str((int(num[-1]) + R.randint(1, 9)) % 10)
        return "card " + group("4" + num[1:], (4, 4, 4, 4), " ") if not luhn_ok("4" + num[1:]) else f"ref {num}"
    if k == 10:
        return f"routing {routing(valid=False)}"
    if k == 11:
        return f"customer id {digits(9)}"
    if k == 12:
        return f"tracking {R.choice(['1Z', '94'])}{digits(18)}"
    if k == 13:
        return f"commit {alnum(40, '0123456789abcdef')}"
    if k == 14:
        return f"request {alnum(8, '0123456789abcdef')}-{alnum(4, '0123456789abcdef')}-4{alnum(3, '0123456789abcdef')}-a{alnum(3, '0123456789abcdef')}-{alnum(12, '0123456789abcdef')}"
    return f"version {R.randint(1, 20)}.{R.randint(0, 40)}.{R.randint(0, 200)} build {R.randint(10000, 99999)}"


# ------------------------------------------------------------ documents


class Doc:
    def __init__(self):
        self.parts = []
        self.labels = []
        self.pos = 0

    def text(self, s):
        self.parts.append(s)
        self.pos += len(s.encode())

    def value(self, s, label, span=None):
        """`s` is written; `span` (a substring of s, default all of it) is
        the protected part."""
        span = s if span is None else span
        at = s.index(span)
        start = self.pos + len(s[:at].encode())
        self.labels.append([start, start + len(span.encode()), label])
        self.text(s)

    def done(self):
        return "".join(self.parts), self.labels


def true_value(d: Doc):
    """One true positive with the words a person would write around it."""
    t = R.choice(["card", "card", "ssn", "iban", "routing", "account", "email", "phone", "secret"])
    if R.random() < 0.08 and t in HARD:
        # Written as people do where no context word sits right before the
        # number: the context-based detectors are expected to miss some.
        lead, value = HARD[t]()
        d.text(lead)
        d.value(value, t)
        return
    if t == "card":
        brand, c = card()
        lead = R.choice([f"{brand} card ", "card number ", "paid with card ", "PAN: ", f"{brand} ", "charged to "])
        d.text(lead)
        d.value(c, "card")
    elif t == "ssn":
        s = ssn()
        d.text(R.choice(["SSN ", "social security number: ", "SSN: ", "ss# "]) if "-" not in s or R.random() < 0.6 else "tax record ")
        d.value(s, "ssn")
    elif t == "iban":
        d.text(R.choice(["IBAN ", "to IBAN ", "beneficiary account ", "wire to "]))
        d.value(iban(), "iban")
    elif t == "routing":
        d.text(R.choice(["routing number ", "ABA ", "routing: ", "RTN "]))
        d.value(routing(), "routing")
    elif t == "account":
        d.text(R.choice(["account number ", "acct ", "a/c ", "Account #", "checking account "]))
        d.value(account(), "account")
    elif t == "email":
        d.text(R.choice(["email ", "reach me at ", "from: ", ""]))
        d.value(email(), "email")
    elif t == "phone":
        d.text(R.choice(["phone ", "call me on ", "mobile: ", "tel "]))
        d.value(phone(), "phone")
    else:
        whole, span = secret()
        d.text(R.choice(["config: ", "leaked ", "env ", "\n"]))
        d.value(whole, "secret", span)


HARD = {
    "account": lambda: (R.choice(["the account I use for payroll is ", "please send it to my account, which is ", "deposit to "]), account()),
    "phone": lambda: (R.choice(["ring me on ", "reach the branch at ", "WhatsApp "]), R.choice([f"020 {R.randint(7000, 8999)} {R.randint(0, 9999):04d}", f"0{R.randint(151, 179)} {R.randint(1000000, 9999999)}", f"{R.randint(201, 989)} {R.randint(200, 999)} {R.randint(0, 9999):04d}"])),
    "ssn": lambda: (R.choice(["her number is ", "ID on file: ", "the applicant's "]), ssn(formatted=False)),
}


STATEMENT = ["Statement for period ending {date}. ", "Opening balance {amount}. ", "Direct debit ref {ref}. "]
TICKET = ["Ticket #{ticket}: customer called about a declined payment. ", "Agent note: ", "Escalated to tier 2 on {date}. "]
CHAT = ["[{time}] agent: can you confirm the details? ", "[{time}] customer: sure, ", "[{time}] agent: thanks, one moment. "]
LOG = ['{date}T{time}Z INFO payments.api req={ref} ', '{date}T{time}Z WARN fraud.score=0.{score} ', 'level=info msg="charge" ']


def filler(template):
    return template.format(
        date=f"2026-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}",
        amount=f"${R.randint(10, 99999)}.{R.randint(0, 99):02d}",
        ref=f"{R.choice(['DD', 'TX', 'REF'])}{digits(8)}",
        ticket=digits(6),
        time=f"{R.randint(0, 23):02d}:{R.randint(0, 59):02d}:{R.randint(0, 59):02d}",
        score=digits(3),
    )


def text_doc(kind, templates):
    d = Doc()
    for _ in range(R.randint(3, 7)):
        d.text(filler(R.choice(templates)))
        roll = R.random()
        if roll < 0.55:
            true_value(d)
        else:
            d.text(negative())
        d.text(R.choice([". ", "; ", "\n", " and "]))
    return d.done()


def json_doc(i):
    labels = []
    brand, c = card()
    rec = {
        "customer_id": f"cust-{i:05d}",
        "order_id": luhn_valid_digits(16),
        "created_at": R.randint(1600000000000, 1800000000000),
        "balance": f"{R.randint(0, 999999)}.{R.randint(0, 99):02d}",
        "contact": {},
        "payment": {},
        "notes": [],
    }
    fields = [
        ("/payment/card_number", "card", c, ("payment", "card_number")),
        ("/customer_ssn", "ssn", ssn(), (None, "customer_ssn")),
        ("/payment/iban", "iban", iban(), ("payment", "iban")),
        ("/payment/routing_number", "routing", routing(), ("payment", "routing_number")),
        ("/payment/account_number", "account", account(), ("payment", "account_number")),
        ("/contact/email", "email", email(), ("contact", "email")),
        ("/contact/phone", "phone", phone(), ("contact", "phone")),
    ]
    for ptr, label, value, (parent, key) in R.sample(fields, R.randint(2, len(fields))):
        (rec[parent] if parent else rec)[key] = value
        labels.append([ptr, label])
    # Hard negatives as values: a Luhn-valid order id, a timestamp, an IBAN
    # with a bad checksum, a 9-digit customer number.
    rec["notes"].append(negative())
    rec["reference"] = iban(valid=False).replace(" ", "")
    rec["customer_number"] = digits(9)
    return rec, labels


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("corpus.jsonl")
    lines = []
    kinds = [("statement", STATEMENT), ("ticket", TICKET), ("chat", CHAT), ("log", LOG)]
    for kind, templates in kinds:
        for i in range(150):
            text, labels = text_doc(kind, templates)
            lines.append({"id": f"{kind}-{i:04d}", "kind": kind, "text": text, "labels": labels})
    for i in range(200):
        value, labels = json_doc(i)
        lines.append({"id": f"record-{i:04d}", "kind": "json", "value": value, "labels": labels})
    with out.open("w") as f:
        for line in lines:
            f.write(json.dumps(line, sort_keys=True) + "\n")
    counts = {}
    for line in lines:
        for lab in line["labels"]:
            counts[lab[-1]] = counts.get(lab[-1], 0) + 1
    print(f"wrote {out}: {len(lines)} documents, labels {dict(sorted(counts.items()))}", file=sys.stderr)


if __name__ == "__main__":
    main()
