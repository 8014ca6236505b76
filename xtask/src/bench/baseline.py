"""The Python baseline of `cargo xtask bench`: the consumer a data engineer would write.

confluent-kafka and psycopg 3, doing the processor's job the usual way: consume a batch,
decode and validate each record (invalid ones to the DLQ), COPY the valid rows into a
temporary staging table, one INSERT ... SELECT ... ON CONFLICT DO NOTHING into
flight_data, commit, and only then commit the consumer offsets (at least once,
idempotent). Runs until SIGTERM, then finishes its batch.

Usage: baseline.py BOOTSTRAP_SERVERS TOPIC GROUP DATABASE_URL BATCH_SIZE
"""

import json
import math
import re
import signal
import sys
import time

import psycopg
from confluent_kafka import Consumer, Producer

ICAO24 = re.compile(r"^[0-9a-f]{6}$")
Y2000 = 946_684_800
FLOATS = ("longitude", "latitude", "baro_altitude", "velocity", "true_track",
          "vertical_rate", "geo_altitude")
COLUMNS = ("icao24, callsign, origin_country, time_position, last_contact, longitude, "
           "latitude, baro_altitude, on_ground, velocity, true_track, vertical_rate, "
           "geo_altitude, squawk, spi, position_source, category, snapshot_time")


def reason(r, now):
    """The processor's validation rules; None when the record is valid."""
    if not isinstance(r.get("icao24"), str) or not ICAO24.match(r["icao24"]):
        return "invalid_icao24"
    for f in FLOATS:
        v = r.get(f)
        if v is not None and not math.isfinite(v):
            return "non_finite_float"
    if not -90 <= r["latitude"] <= 90:
        return "latitude_out_of_range"
    if not -180 <= r["longitude"] <= 180:
        return "longitude_out_of_range"
    for t in ("time_position", "last_contact", "snapshot_time"):
        if not Y2000 < r[t] <= now + 3600:
            return "time_out_of_range"
    if not 0 <= r["position_source"] <= 3:
        return "position_source_out_of_range"
    if r.get("category") is not None and not 0 <= r["category"] <= 20:
        return "category_out_of_range"
    if r.get("velocity") is not None and r["velocity"] < 0:
        return "negative_velocity"
    return None


def main():
    bootstrap, topic, group, database_url, batch_size = sys.argv[1:6]
    batch_size = int(batch_size)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    dlq = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "CREATE TEMPORARY TABLE stage (icao24 text, callsign text, origin_country text, "
            "time_position bigint, last_contact bigint, longitude float8, latitude float8, "
            "baro_altitude float8, on_ground bool, velocity float8, true_track float8, "
            "vertical_rate float8, geo_altitude float8, squawk text, spi bool, "
            "position_source int2, category int2, snapshot_time bigint) "
            "ON COMMIT DELETE ROWS")
        conn.commit()
        while not stop:
            messages = consumer.consume(num_messages=batch_size, timeout=0.2)
            if not messages:
                continue
            now = time.time()
            rows = []
            for m in messages:
                if m.error():
                    continue
                try:
                    r = json.loads(m.value())
                    why = reason(r, now)
                except (ValueError, KeyError, TypeError):
                    why = "malformed"
                if why:
                    dlq.produce("flights.dlq", m.value(), m.key(),
                                headers={"flightdeck.reason": why})
                    continue
                rows.append((r["icao24"], r.get("callsign"), r.get("origin_country"),
                             r["time_position"], r["last_contact"], r["longitude"],
                             r["latitude"], r.get("baro_altitude"), r["on_ground"],
                             r.get("velocity"), r.get("true_track"), r.get("vertical_rate"),
                             r.get("geo_altitude"), r.get("squawk"), r["spi"],
                             r["position_source"], r.get("category"), r["snapshot_time"]))
            dlq.flush()
            with conn.cursor() as cur:
                with cur.copy(f"COPY stage ({COLUMNS}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                cur.execute(
                    f"INSERT INTO flight_data ({COLUMNS}) SELECT icao24, callsign, "
                    "origin_country, to_timestamp(time_position), to_timestamp(last_contact), "
                    "longitude, latitude, baro_altitude, on_ground, velocity, true_track, "
                    "vertical_rate, geo_altitude, squawk, spi, position_source, category, "
                    "to_timestamp(snapshot_time) FROM stage "
                    "ON CONFLICT (icao24, time_position) DO NOTHING")
            conn.commit()
            consumer.commit(asynchronous=False)
    consumer.close()


if __name__ == "__main__":
    main()
