#!/usr/bin/env python3
"""Builds the fuzz targets' seed corpora: `python3 fuzz/seeds.py OUT_DIR` writes OUT_DIR/<target>/.

The feed seeds are cut, at run time, from the real day of JCDecaux's GBFS 3.0 feeds
(`shared/data/cyclocity-2026-07-02`, see its README): the same folder the tests read, found the
same way (`$VELIB_REAL_DAY_DIR`, else `shared/data/...` beside the checkout or in one of its
parents, else `/work/shared/data/...`). Nothing of it is copied into the project. The seeds of
the small text parsers (properties files, SMTP_URL, durations) are written here by hand.

Each seed stays small (a few stations per document): libFuzzer mutates short inputs far
faster, and a few real records already hold every shape the feeds use.
"""

import json
import os
import sys
from pathlib import Path

DAY = "cyclocity-2026-07-02"
# The gbfs target's first byte picks the document.
MANIFEST, SYSTEM_INFORMATION, STATION_INFORMATION, STATION_STATUS = b"\x00", b"\x01", b"\x02", b"\x03"
CHUNK = 4


def day_dir() -> Path:
    if os.environ.get("VELIB_REAL_DAY_DIR"):
        return Path(os.environ["VELIB_REAL_DAY_DIR"])
    root = Path(__file__).resolve().parent.parent
    for folder in [root, *root.parents, Path("/work")]:
        candidate = folder / "shared" / "data" / DAY
        if (candidate / "README.md").is_file():
            return candidate
    sys.exit(f"the real day {DAY} is not in shared/data beside the checkout; "
             "set VELIB_REAL_DAY_DIR to its folder")


def compact(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def spaced(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def chunks(stations, picks):
    """Windows of CHUNK stations starting at each of `picks` (indexes into `stations`)."""
    seen = set()
    for start in picks:
        start = max(0, min(start, len(stations) - CHUNK))
        if start not in seen:
            seen.add(start)
            yield start, stations[start:start + CHUNK]


def interesting(stations, test):
    return [i for i, s in enumerate(stations) if test(s)][:2]


def text_of(name):
    if isinstance(name, list):
        return next((n.get("text", "") for n in name if n.get("text", "").strip()), "")
    return name or ""


def v1_record(contract, info, status, last_updated_ms):
    """The v1 record a JCDecaux API would give for one GBFS station (the shape velib publishes)."""
    sid = info["station_id"]
    number = int(sid) if sid.isdigit() and (sid == "0" or not sid.startswith("0")) else sid
    bikes = status.get("num_vehicles_available", 0)
    docks = status.get("num_docks_available", 0)
    return {
        "number": number,
        "contract_name": contract,
        "name": f"{sid} - {text_of(info.get('name'))}",
        "address": info.get("address") or text_of(info.get("name")),
        "position": {"lat": info["lat"], "lng": info["lon"]},
        "banking": "creditcard" in [m.lower() for m in info.get("rental_methods", [])],
        "bonus": False,
        "status": "OPEN" if status.get("is_renting", True) else "CLOSED",
        "bike_stands": info.get("capacity", bikes + docks),
        "available_bike_stands": docks,
        "available_bikes": bikes,
        "last_update": last_updated_ms,
    }


def as_gbfs2(document, kind):
    """The same document as GBFS 2.3 writes it (seconds, plain names, `num_bikes_available`)."""
    out = {"last_updated": 1783000000, "ttl": document.get("ttl", 0), "version": "2.3",
           "data": {"stations": []}}
    for s in document["data"]["stations"]:
        s = dict(s)
        if kind == "information":
            s["name"] = text_of(s.get("name"))
        else:
            s["num_bikes_available"] = s.pop("num_vehicles_available", 0)
            s.pop("vehicle_types_available", None)
            s["last_reported"] = 1783000000
            s["is_installed"] = 1 if s.get("is_installed", True) else 0
        out["data"]["stations"].append(s)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: seeds.py OUT_DIR")
    out = Path(sys.argv[1])
    day = day_dir()
    seeds = {t: {} for t in ["station_json", "station_key", "gbfs", "jcdecaux_v1",
                             "properties", "smtp_url", "duration"]}

    contracts = sorted({p.name.split("_")[0] for p in day.glob("*_information_*.json")})
    for contract in contracts:
        info_doc = json.loads(next(day.glob(f"{contract}_information_*.json")).read_bytes())
        status_files = sorted(day.glob(f"{contract}_status_*.json"))
        infos = info_doc["data"]["stations"]
        by_id = {s["station_id"]: s for s in infos}

        # station_information: the first stations, the odd ones (0,0 positions, capacity 0,
        # empty names), the last.
        odd = (interesting(infos, lambda s: s.get("lat") == 0 or s.get("lon") == 0)
               + interesting(infos, lambda s: s.get("capacity") == 0)
               + interesting(infos, lambda s: not text_of(s.get("name")).strip()))
        for start, part in chunks(infos, [0, len(infos) // 2, len(infos), *odd]):
            doc = dict(info_doc, data={"stations": part})
            seeds["gbfs"][f"{contract}-information-{start}"] = STATION_INFORMATION + spaced(doc)
        seeds["gbfs"][f"{contract}-information-2.3"] = STATION_INFORMATION + compact(
            as_gbfs2(dict(info_doc, data={"stations": infos[:CHUNK]}), "information"))

        for n, path in enumerate([status_files[0], status_files[len(status_files) // 2],
                                  status_files[-1]]):
            status_doc = json.loads(path.read_bytes())
            statuses = status_doc["data"]["stations"]
            odd = (interesting(statuses, lambda s: str(s.get("last_reported", "")).startswith(("0001", "2015")))
                   + interesting(statuses, lambda s: not s.get("is_renting", True)))
            for start, part in chunks(statuses, [0, len(statuses), *odd] if n == 0 else [0]):
                doc = dict(status_doc, data={"stations": part})
                seeds["gbfs"][f"{contract}-status-{n}-{start}"] = STATION_STATUS + spaced(doc)
            if n == 0:
                seeds["gbfs"][f"{contract}-status-2.3"] = STATION_STATUS + compact(
                    as_gbfs2(dict(status_doc, data={"stations": statuses[:CHUNK]}), "status"))

                # v1 records and arrays, joined as the v1 API would have served them.
                records = [v1_record(contract, by_id[s["station_id"]], s, 1783030054000)
                           for s in statuses if s["station_id"] in by_id]
                for i, record in enumerate(records[:12]):
                    seeds["station_json"][f"{contract}-{i}"] = compact(record)
                    seeds["station_key"][f"{contract}-{i}"] = f"{contract}:{record['number']}".encode()
                seeds["station_json"][f"{contract}-spaced"] = json.dumps(records[0], indent=1).encode()
                seeds["station_json"][f"{contract}-snapshot"] = compact(
                    dict(records[-1], snapshot_at=1783030054000, last_update=None))
                seeds["jcdecaux_v1"][f"{contract}"] = compact(records[:6])
                seeds["jcdecaux_v1"][f"{contract}-spaced"] = spaced(records[-3:])

        updated = info_doc.get("last_updated")
        base = f"https://api.cyclocity.fr/contracts/{contract}/gbfs/v3"
        seeds["gbfs"][f"{contract}-manifest-3.0"] = MANIFEST + spaced({
            "last_updated": updated, "ttl": 300, "version": "3.0",
            "data": {"feeds": [{"name": n, "url": f"{base}/{n}.json"}
                               for n in ["system_information", "station_information",
                                         "station_status"]]}})
        seeds["gbfs"][f"{contract}-system_information"] = SYSTEM_INFORMATION + spaced({
            "last_updated": updated, "ttl": 300, "version": "3.0",
            "data": {"system_id": contract, "languages": ["fr", "en"],
                     "name": [{"text": contract.title(), "language": "fr"}],
                     "timezone": "Europe/Paris"}})
    seeds["gbfs"]["manifest-2.3"] = MANIFEST + spaced({
        "last_updated": 1783000000, "ttl": 0, "version": "2.3",
        "data": {"fr": {"feeds": [{"name": "station_information", "url": "station_information.json"},
                                  {"name": "station_status", "url": "../status/station_status.json"}]},
                 "en": {"feeds": [{"name": "station_information", "url": "https://example.org/si.json"},
                                  {"name": "station_status", "url": "https://example.org/ss.json"}]}}})

    hand_written = {
        "station_key": ["lyon:1001", "citybike:station:12", "a_b:c", "Toulouse:2", "x:007"],
        "properties": [
            "bootstrap.servers=pkc-1.europe-west1.gcp.confluent.cloud:9092\n"
            "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
            "username=\"velib\" password=\"p\\\\\"w=;d\";\n",
            "# comment\n! other\n  client.id : velib \nlong.value = one,\\\n    two\n"
            "escaped\\=key=a\\tb\\u00e9\nempty=\n",
            "sasl.password=${env:KAFKA_PASSWORD}\nssl.truststore.type=PEM\n"
            "ssl.truststore.location=/etc/kafka/ca.pem\nssl.endpoint.identification.algorithm=\n"
            "client.dns.lookup=use_all_dns_ips\nconfig.providers=env\n",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n"
            "  username=\"u\" \\\n  password=\"secret-password\";\n",
            "ssl.truststore.location=/etc/kafka/truststore.jks\n",
        ],
        "smtp_url": [
            "smtps://alerts%40example.com:hunter2hunter2@mail.example.com",
            "smtp://mail.example.com:587", "smtp://127.0.0.1:1025", "smtp://[::1]",
            "smtp://localhost", "smtps://user@[2001:db8::1]:465", "smtp://:password123@host",
            "smtps://mail.example.com/path?q=1", "imap://mail.example.com",
            "smtps://us%C3%A9r:p%FFss@host",
        ],
        "duration": ["500ms", "1s", "2", "15m", "1.5h", "1d", "365d", "366d", "0", "0.0000000001s",
                     " 30s ", "5 parsecs", "99999999999999999999999", "1.2.3s", "10 min"],
    }
    for target, texts in hand_written.items():
        for i, text in enumerate(texts):
            seeds[target][f"hand-{i}"] = text.encode()

    for target, files in seeds.items():
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        print(f"{target}: {len(files)} seeds in {folder}")


if __name__ == "__main__":
    main()
