# The tutorial's producer, velib-get-stations.py, for `cargo xtask bench`.
#
# Kept as the tutorial writes it (with its keyed send from "We're gonna need a bigger boat"),
# except for what a benchmark needs, each marked "bench:":
# - the API URL, the bootstrap address and the topic come from the command line (the bench
#   serves the simulated city's snapshots over HTTP, in the v1 API's shape);
# - it stops after a given number of polls, without the one-second sleep, and flushes;
# - it times itself and prints "BENCH records seconds" on stderr.
import json
import sys
import time
import urllib.request

from kafka import KafkaProducer

url, bootstrap, topic, polls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])  # bench:

producer = KafkaProducer(bootstrap_servers=bootstrap)

started = time.time()  # bench:
sent = 0  # bench:
for _ in range(polls):  # bench: was `while True:`
    response = urllib.request.urlopen(url)
    stations = json.loads(response.read().decode())
    for station in stations:
        producer.send(topic, json.dumps(station).encode(), key=str(station["number"]).encode())
    sent += len(stations)  # bench:
    print("{} Produced {} station records".format(time.time(), len(stations)))
    # bench: no time.sleep(1)

producer.flush()  # bench: wait for every record to be acknowledged
print("BENCH", sent, time.time() - started, file=sys.stderr)  # bench:
