# The tutorial's consumer, velib-monitor-stations.py, for `cargo xtask bench`.
#
# Kept as the tutorial writes it, except for what a benchmark needs, each marked "bench:":
# - the bootstrap address, the topic and the group come from the command line, and the group
#   starts at the earliest offset (to drain the backlog the bench pre-filled);
# - it stops after a given number of records and prints "BENCH records join_seconds
#   drain_seconds" on stderr (drain: from the first record to the last).
import json
import sys
import time

from kafka import KafkaConsumer

bootstrap, topic, group, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])  # bench:

stations = {}
consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap,
                         group_id=group, auto_offset_reset="earliest")  # bench: earliest

started = time.time()  # bench:
first = None  # bench:
seen = 0  # bench:
for message in consumer:
    if first is None:  # bench:
        first = time.time()
    seen += 1  # bench:
    station = json.loads(message.value.decode())
    station_number = station["number"]
    contract = station["contract_name"]
    available_bike_stands = station["available_bike_stands"]

    if contract not in stations:
        stations[contract] = {}
    city_stations = stations[contract]
    if station_number not in city_stations:
        city_stations[station_number] = available_bike_stands

    count_diff = available_bike_stands - city_stations[station_number]
    if count_diff != 0:
        city_stations[station_number] = available_bike_stands
        print("{} {} {}".format(
            "+" if count_diff > 0 else "",
            count_diff, station["address"], contract
        ))
    if seen >= expected:  # bench:
        break

print("BENCH", seen, first - started, time.time() - first, file=sys.stderr)  # bench:
