"""Titres de recettes (PES V2) and spreadsheets, end to end.

Communes (one with a letter in its INSEE code, one with accents and an
apostrophe) and an EPCI are billed for November 2026; their SIRETs and
addresses come from `tenant set` and from a CSV import. The PES file of
the closed period validates against the DGFiP's schemas (xmllint, the
copy in tests/data), its titres add up to the statements and each names
its member as the debtor; exporting again gives the same bytes; numbers
go on in December (where a reduction of a November titre becomes a
TypBord 02 bordereau naming it) and start again in January 2027. What is
missing (configuration, SIRET, address) is refused with the list, and the
database is left as it was.

The spreadsheets are opened by LibreOffice itself (headless, converted to
xlsx) and their cells read back: codes stay text, amounts are numbers
equal to the statements, accents are intact.

Money is compared as Decimal, never as a binary fraction.
"""
import csv
import io
import json
import os
import re
import ssl
import subprocess
import urllib.request
import zipfile
import xml.etree.ElementTree as ET
from decimal import Decimal

import opsn
from test_billing import OPS, api_ok, put_usage, siren, utc

XSD = os.path.join(opsn.TOP, "tests", "data", "pes-v2-xsd-5.17", "PES_V2",
                   "Rev0", "PES_Aller.xsd")

ACCOUNTING = """
[accounting]
siret = 25310000000012
poste = 031000
poste_label = SGC Muret
collectivity = 123
budget = 02
budget_label = Services numériques
products = vm=HEB:70688 mailbox=MAIL:70688 site=WEB:70688 \
fee=ABON:70688 contribution=COTI:74741 *=DIV:7088
"""


def siret(sirn, nic="0001"):
    """A SIRET with a valid Luhn key from a SIREN and 4 digits of NIC."""
    return opsn.luhn_complete(sirn + nic)


# kind, name, INSEE, SIREN, population, street, postcode, town
MEMBERS = [
    ("commune", "L'Abergement-Clémenciat", "01001", siren("21010001"), 767,
     "1 place de l'Église", "01400", "L'Abergement-Clémenciat"),
    ("commune", "Ajaccio", "2A004", siren("21200004"), 71361,
     "Avenue Antoine Serafini", "20000", "Ajaccio"),
    ("commune", "Muret", "31395", siren("21310395"), 25732,
     "Place Léon Blum", "31600", "Muret"),
    ("epci", "CC Cœur de Garonne", None, siren("20006840"), 29000,
     "Z.A. du Pont d'Ariège", "31370", "Rieumes"),
]


def bill_november(controller, workdir, complete=True):
    """The sample tariff, four members, November's usage, statements of
    November generated and closed. With complete, every member has its
    SIRET and address: two through `tenant set`, two through a CSV
    import."""
    controller.opsnctl("tariff", "add", "--file",
                       os.path.join(OPS, "tariff.sample.ini"))
    ids = {}
    for kind, name, insee, sirn, pop, *_ in MEMBERS:
        args = ["tenant", "add", "--kind", kind, "--name", name, "--siren",
                sirn, "--population", str(pop), "--joined", "2015-01-01"]
        if insee:
            args += ["--insee", insee]
        t = json.loads(controller.opsnctl("-o", "json", *args).stdout)
        ids[insee or sirn] = t["id"]
    if complete:
        complete_members(controller, workdir)
    # A VM for L'Abergement, a site for Ajaccio, a VM for the EPCI; the
    # 23:00Z hour of 31 October is November's in Paris.
    rows = []
    for h in range(utc(2026, 10, 31, 23), utc(2026, 11, 30, 23), 3600):
        rows.append((ids["01001"], h, "vm", "ab-vm", "vcpu_seconds", 7200))
        rows.append((ids["2A004"], h, "site", "aj-site", "site_seconds",
                     3600))
        rows.append((ids[MEMBERS[3][3]], h, "vm", "cc-vm", "vcpu_seconds",
                     3600))
    put_usage(controller, rows)
    for period in ("2026-11",):
        controller.opsnctl("statement", "generate", "--period", period)
        controller.opsnctl("statement", "close", "--period", period)
    return ids


def complete_members(controller, workdir):
    for kind, name, insee, sirn, pop, street, cp, town in MEMBERS[:2]:
        controller.opsnctl("tenant", "set", insee, "--siret", siret(sirn),
                           "--address", street, "--postcode", cp, "--town",
                           town)
    path = os.path.join(workdir, "members.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("insee;siren;name;population;kind;siret;address;postcode;"
                "town;category\n")
        for kind, name, insee, sirn, pop, street, cp, town in MEMBERS[2:]:
            f.write(";".join([insee or "", sirn, name, str(pop), kind,
                              siret(sirn), street, cp, town,
                              "groupement" if kind == "epci" else ""]) +
                    "\n")
    controller.opsnctl("tenant", "import", "--csv", path)


def xmllint(path):
    assert os.path.exists(XSD), "the PES schema is missing: " + XSD
    r = subprocess.run(["xmllint", "--noout", "--schema", XSD, path],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


def parse_pes(path):
    """The bordereaux of a PES file: type, number, amounts, titres."""
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.minefi.gouv.fr/cp/helios/pes_v2/Rev0/" \
        "aller}PES_Aller"
    v = lambda el, p: el.find(p).get("V")  # noqa: E731
    out = []
    for b in root.iter("Bordereau"):
        bb = b.find("BlocBordereau")
        pieces = []
        for p in b.findall("Piece"):
            lines = []
            for ln in p.findall("LigneDePiece"):
                info = ln.find("BlocLignePiece/InfoLignePiece")
                t = ln.find("Tiers/InfoTiers")
                rat = ln.find("BlocLignePiece/RattachPiece")
                lines.append({
                    "amount": Decimal(v(info, "MtHT")),
                    "product": v(info, "CodProdLoc"),
                    "nature": v(info, "Nature"),
                    "siret": v(t, "IdTiers"),
                    "cat": v(t, "CatTiers"),
                    "natjur": v(t, "NatJur"),
                    "name": v(t, "Nom"),
                    "ref": t.find("RefTiers").get("V")
                    if t.find("RefTiers") is not None else None,
                    "orig": None if rat is None else
                    (v(rat, "ExerRat"), v(rat, "IdPceOrig"),
                     v(rat, "IdLigneOrig")),
                })
            pieces.append({"id": int(v(p, "BlocPiece/IdPce")),
                           "typpce": v(p, "BlocPiece/TypPce"),
                           "natpce": v(p, "BlocPiece/NatPce"),
                           "lines": lines})
        out.append({"type": v(bb, "TypBord"), "id": int(v(bb, "IdBord")),
                    "exer": v(bb, "Exer"), "count": int(v(bb, "NbrPce")),
                    "total": Decimal(v(bb, "MtBordHt")),
                    "cumul": Decimal(v(bb, "MtCumulAnnuel")),
                    "attr": b.get("Id"), "pieces": pieces})
    return out


def get_raw(controller, path, accept):
    """GET path as bytes (what a browser or curl would save)."""
    ctx = ssl.create_default_context(cafile=controller.ca)
    req = urllib.request.Request(controller.url + path, headers={
        "Authorization": "Bearer " + controller.token(), "Accept": accept})
    with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
        return r.read(), r.headers


def statements(controller, period):
    return {d["id"]: d for d in api_ok(
        controller, "GET", "/v1/statements?period=" + period)[0]["items"]}


def dump(controller):
    """The database as SQL, without what runs on its own (metering)."""
    r = subprocess.run(["sqlite3", os.path.join(controller.data, "opsn.db"),
                        ".dump"], capture_output=True, text=True,
                       timeout=60, check=True)
    return [ln for ln in r.stdout.splitlines()
            if "meter_state" not in ln]


def pes(controller, workdir, period, name, check=True):
    path = os.path.join(workdir, name)
    r = controller.opsnctl("statement", "pes", "--period", period,
                           "--file", path, check=check)
    return path, r


def test_missing_data_is_listed_and_nothing_is_numbered(procs, workdir):
    c = opsn.Controller(workdir)
    procs.append(c)
    c.start()
    bill_november(c, workdir, complete=False)
    before = dump(c)
    path, r = pes(c, workdir, "2026-11", "nov.xml", check=False)
    assert r.returncode != 0 and not os.path.exists(path)
    err = r.stderr
    assert "cannot be issued" in err and "incomplete" in err
    for want in ("accounting: siret (IdColl", "accounting: poste (IdPost",
                 "accounting: collectivity (CodCol", "accounting: budget",
                 "accounting: products has no product code",
                 "member 01001 L'Abergement-Clémenciat", "no SIRET",
                 "no address", "no postcode", "no town",
                 "member 2A004 Ajaccio", "CC Cœur de Garonne"):
        assert want in err, (want, err)
    assert dump(c) == before
    # The API says the same, with the list as data.
    st, doc, _ = c.api("GET", "/v1/billing-periods/2026-11/pes")
    assert st == 422 and doc["error"]["code"] == "incomplete"
    assert len(doc["error"]["missing"]) >= 9
    # An open period is not titled at all.
    c.opsnctl("statement", "generate", "--period", "2026-12")
    st, doc, _ = c.api("GET", "/v1/billing-periods/2026-12/pes")
    assert st == 409 and "not closed" in doc["error"]["message"]

    # With the configuration but one member still without an address.
    c.stop()
    c = opsn.Controller(workdir, extra_conf=ACCOUNTING)
    procs.append(c)
    c.start()
    complete_members(c, workdir)
    c.opsnctl("tenant", "set", "2A004", "--address", "none")
    before = dump(c)
    path, r = pes(c, workdir, "2026-11", "nov.xml", check=False)
    assert r.returncode != 0
    assert "member 2A004 Ajaccio (tenant 2): no address" in r.stderr
    assert "accounting:" not in r.stderr and "01001" not in r.stderr
    assert dump(c) == before
    # A SIRET is checked where it is entered.
    r = c.opsnctl("tenant", "set", "2A004", "--siret", "21200004600013",
                  check=False)
    assert r.returncode != 0 and "check digit" in r.stderr


def test_titres_validate_add_up_and_are_numbered_once(procs, workdir):
    c = opsn.Controller(workdir, extra_conf=ACCOUNTING)
    procs.append(c)
    c.start()
    ids = bill_november(c, workdir)
    nov = statements(c, "2026-11")
    by_tenant = {s["tenant"]: s for s in nov.values()}

    path, r = pes(c, workdir, "2026-11", "nov.xml")
    assert "numbered now" in r.stderr
    xmllint(path)
    raw = open(path, "rb").read()
    assert raw.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
    # Free text keeps its accents in ISO-8859-1; names follow the postal
    # norm (upper case, no accent, no apostrophe).
    assert "Services numériques novembre 2026".encode("latin-1") in raw
    assert b'<Nom V="L ABERGEMENT CLEMENCIAT"/>' in raw
    assert b'<Nom V="CC COEUR DE GARONNE"/>' in raw
    assert b'<Adr2 V="1 PLACE DE L EGLISE"/>' in raw
    bords = parse_pes(path)
    assert [(b["type"], b["id"], b["exer"]) for b in bords] == \
        [("01", 1, "2026")]
    b = bords[0]
    assert b["attr"] == "BORD_2026_01_1" and b["count"] == 4
    # The titres add up to the statements, titre by titre.
    assert b["total"] == sum(Decimal(s["total"]) for s in nov.values())
    assert b["cumul"] == b["total"]
    assert b["total"] == sum(ln["amount"] for p in b["pieces"]
                             for ln in p["lines"])
    summary = json.loads(c.opsnctl("-o", "json", "statement", "pes",
                                   "--period", "2026-11").stdout)
    assert summary["new"] is False
    for t in summary["titres"]:
        s = nov[t["statement"]]
        piece = [p for p in b["pieces"] if p["id"] == t["number"]][0]
        assert sum(ln["amount"] for ln in piece["lines"]) == \
            Decimal(s["total"])
        # Its debtor is the statement's member: SIRET, category, name.
        member = [m for m in MEMBERS if (m[2] or m[3]) in
                  (s["insee"], s["siren"])][0]
        for ln in piece["lines"]:
            assert ln["siret"] == siret(member[3])
            assert ln["cat"] == ("24" if member[0] == "epci" else "23")
            assert ln["natjur"] == "09"
            assert ln["ref"] == (member[2] or member[3])
    assert sorted(p["id"] for p in b["pieces"]) == [1, 2, 3, 4]
    # One titre line per service: the contribution on its own account.
    ab = [p for p in b["pieces"] if p["lines"][0]["ref"] == "01001"][0]
    assert {ln["product"] for ln in ab["lines"]} == {"HEB", "ABON", "COTI"}
    assert [ln["nature"] for ln in ab["lines"]
            if ln["product"] == "COTI"] == ["74741"]
    assert any(ln["amount"] % 1 != 0 for p in b["pieces"]
               for ln in p["lines"]), "no amount with cents"

    # Again: the same bytes, from opsnctl and from the API.
    path2, r = pes(c, workdir, "2026-11", "nov-again.xml")
    assert "as sent before" in r.stderr
    assert open(path2, "rb").read() == raw
    body, hdrs = get_raw(c, "/v1/billing-periods/2026-11/pes",
                         "application/xml")
    assert hdrs["Content-Type"].startswith("application/xml")
    assert body == raw
    assert hdrs["X-Opsn-Pes-File"] == "PESALR1_25310000000012_2026_0001.xml"
    # The export is audited once.
    audit = json.loads(c.opsnctl("-o", "json", "audit", "list").stdout)
    items = audit["items"] if isinstance(audit, dict) else audit
    assert [a["action"] for a in items].count("statement.pes") == 1
    # A finance token issues titres; an auditor's cannot.
    fin = c.opsnctl("token", "create", "--name", "fin", "--role",
                    "finance").stdout.strip()
    aud = c.opsnctl("token", "create", "--name", "aud", "--role",
                    "auditor").stdout.strip()
    assert c.api("GET", "/v1/billing-periods/2026-11/pes",
                 token=fin)[0] == 200
    assert c.api("GET", "/v1/billing-periods/2026-11/pes",
                 token=aud)[0] == 403

    # December: Ajaccio gets 12.50 back for November (a reduction of its
    # November titre), L'Abergement 3.00 more (in its new titre).
    aj = [t for t in summary["titres"]
          if nov[t["statement"]]["insee"] == "2A004"][0]
    c.opsnctl("adjustment", "add", "--tenant", "2A004", "--amount",
              "-12.50", "--reason", "site indisponible le 3 novembre",
              "--period", "2026-11")
    c.opsnctl("adjustment", "add", "--tenant", "01001", "--amount", "3.00",
              "--reason", "oubli", "--period", "2026-11")
    c.opsnctl("statement", "generate", "--period", "2026-12")
    c.opsnctl("statement", "close", "--period", "2026-12")
    dec = statements(c, "2026-12")
    path, r = pes(c, workdir, "2026-12", "dec.xml")
    xmllint(path)
    bords = parse_pes(path)
    assert [(b["type"], b["id"]) for b in bords] == [("01", 2), ("02", 1)]
    ordinary, red = bords
    assert sorted(p["id"] for p in ordinary["pieces"]) == [5, 6, 7, 8]
    assert ordinary["cumul"] == parse_pes(os.path.join(
        workdir, "nov.xml"))[0]["total"] + ordinary["total"]
    assert red["count"] == 1 and red["total"] == Decimal("12.50")
    p = red["pieces"][0]
    assert p["id"] == 9 and (p["typpce"], p["natpce"]) == ("02", "06")
    # An adjustment names no service: taken from the titre's lines in
    # order, none below zero (Ajaccio's site line is 1.00, the rest comes
    # from its fee line).
    nov_aj = [q for q in parse_pes(os.path.join(workdir, "nov.xml"))[0][
        "pieces"] if q["id"] == aj["number"]][0]
    assert [ln["orig"] for ln in p["lines"]] == \
        [("2026", str(aj["number"]), "1"), ("2026", str(aj["number"]), "2")]
    assert [ln["amount"] for ln in p["lines"]] == \
        [nov_aj["lines"][0]["amount"],
         Decimal("12.50") - nov_aj["lines"][0]["amount"]]
    assert p["lines"][0]["ref"] == "2A004"
    assert ordinary["total"] - red["total"] == \
        sum(Decimal(s["total"]) for s in dec.values())

    # January 2027: a new fiscal year starts at 1.
    c.opsnctl("statement", "generate", "--period", "2027-01")
    c.opsnctl("statement", "close", "--period", "2027-01")
    path, r = pes(c, workdir, "2027-01", "jan.xml")
    xmllint(path)
    bords = parse_pes(path)
    assert [(b["type"], b["id"], b["exer"]) for b in bords] == \
        [("01", 1, "2027")]
    assert sorted(p["id"] for p in bords[0]["pieces"]) == [1, 2, 3, 4]
    assert "_2027_0001.xml" in r.stderr
    # What was sent never changes, even from outside the controller.
    db = os.path.join(c.data, "opsn.db")
    r = subprocess.run(["sqlite3", db, "DELETE FROM pes_titres"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "never changes" in r.stderr
    assert ids


def xlsx_cells(path):
    """{sheet name: {"A1": (type, value, style)}} of an xlsx file."""
    z = zipfile.ZipFile(path)
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    strings = []
    if "xl/sharedStrings.xml" in z.namelist():
        for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall(
                "m:si", ns):
            strings.append("".join(t.text or "" for t in si.iter(
                "{%s}t" % ns["m"])))
    wb = ET.fromstring(z.read("xl/workbook.xml"))
    rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    target = {r.get("Id"): r.get("Target") for r in rels}
    out = {}
    for sh in wb.find("m:sheets", ns):
        rid = sh.get("{http://schemas.openxmlformats.org/officeDocument/"
                     "2006/relationships}id")
        x = ET.fromstring(z.read("xl/" + target[rid]))
        cells = {}
        for cel in x.iter("{%s}c" % ns["m"]):
            t = cel.get("t", "n")
            v = cel.find("m:v", ns)
            val = v.text if v is not None else None
            if t == "s" and val is not None:
                val = strings[int(val)]
            cells[cel.get("r")] = (t, val, cel.get("s"))
        out[sh.get("name")] = cells
    return out


def column(cells, name):
    """The cells of a column by its header in row 1: {row: cell}."""
    letter = [k[:-1] for k, v in cells.items()
              if re.fullmatch(r"[A-Z]+1", k) and v[1] == name][0]
    return {int(k[len(letter):]): v for k, v in cells.items()
            if re.fullmatch(letter + r"\d+", k) and k != letter + "1"}


def test_spreadsheets_open_right_in_libreoffice(procs, workdir):
    c = opsn.Controller(workdir, extra_conf=ACCOUNTING)
    procs.append(c)
    c.start()
    bill_november(c, workdir)
    pes(c, workdir, "2026-11", "nov.xml")
    nov = statements(c, "2026-11")
    st_ods = os.path.join(workdir, "statements.ods")
    r = c.opsnctl("statement", "export", "--period", "2026-11", "--format",
                  "ods", "--file", st_ods)
    assert "4 statements" in r.stderr
    raw = open(st_ods, "rb").read()
    assert raw[:4] == b"PK\x03\x04" and raw[30:38] == b"mimetype"
    body, hdrs = get_raw(c, "/v1/statements?period=2026-11&format=ods",
                         "*/*")
    assert hdrs["Content-Type"] == \
        "application/vnd.oasis.opendocument.spreadsheet"
    assert body[30:38] == b"mimetype"
    us_ods = os.path.join(workdir, "usage.ods")
    c.opsnctl("usage", "--from", "2026-11-01", "--to", "2026-12-01",
              "--group", "day", "--format", "ods", "--file", us_ods)
    # The CSV of the same usage, for the quantities.
    usage_csv = c.opsnctl("usage", "--from", "2026-11-01", "--to",
                          "2026-12-01", "--group", "day", "--format", "csv",
                          "--decimal", "point").stdout

    # One LibreOffice run converts both (it takes seconds to start).
    out = os.path.join(workdir, "xlsx")
    profile = "file://" + os.path.join(workdir, "lo-profile")
    r = subprocess.run(["soffice", "-env:UserInstallation=" + profile,
                        "--headless", "--convert-to", "xlsx", "--outdir",
                        out, st_ods, us_ods], capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    books = {n: xlsx_cells(os.path.join(out, n + ".xlsx"))
             for n in ("statements", "usage")}

    summary = books["statements"]["summary"]
    insee = column(summary, "insee")
    # 01001 and 2A004 stay text: the leading zero and the letter are kept.
    codes = {v[1] for v in insee.values() if v[1]}
    assert codes == {"01001", "2A004", "31395"}
    assert all(v[0] == "s" for v in insee.values() if v[1])
    for col in ("siren", "siret", "statement", "titres"):
        assert all(v[0] == "s" for v in column(summary, col).values()
                   if v[1]), col
    member = column(summary, "member")
    assert "L'Abergement-Clémenciat" in {v[1] for v in member.values()}
    assert "CC Cœur de Garonne" in {v[1] for v in member.values()}
    # Totals are numbers equal to the statements'.
    total = column(summary, "total")
    sid = column(summary, "statement")
    for row, cell in total.items():
        assert cell[0] == "n", cell
        assert Decimal(cell[1]).quantize(Decimal("0.01")) == \
            Decimal(nov[int(sid[row][1])]["total"])
    titres = column(summary, "titres")
    assert sorted(v[1] for v in titres.values()) == \
        ["2026/1", "2026/2", "2026/3", "2026/4"]
    lines = books["statements"]["lines"]
    amounts = column(lines, "amount")
    assert all(v[0] == "n" for v in amounts.values())
    assert sum(Decimal(v[1]) for v in amounts.values()).quantize(
        Decimal("0.01")) == sum(Decimal(s["total"]) for s in nov.values())
    assert all(v[0] == "n" for v in column(lines, "quantity").values())
    # Days are dates: numbers with a date style.
    frm = column(lines, "from")
    assert any(v[0] == "n" and v[1] for v in frm.values())

    usage = books["usage"]["usage"]
    assert {v[1] for v in column(usage, "insee").values() if v[1]} == \
        {"01001", "2A004"}
    day = column(usage, "period")
    assert all(v[0] == "n" for v in day.values())
    qty = column(usage, "quantity")
    assert all(v[0] == "n" for v in qty.values())
    rows = list(csv.DictReader(io.StringIO(usage_csv.lstrip("\ufeff")),
                               delimiter=";"))
    assert sum(Decimal(v[1]) for v in qty.values()) == \
        sum(Decimal(r["quantity"]) for r in rows)
