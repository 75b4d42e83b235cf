"""Operating gpuroute: ``gpuroute doctor`` and the Prometheus metrics.

report.py (what a check is), files.py / host.py / gpu.py (checks of this
node, no NATS needed), cluster.py (one pass over NATS: JetStream, store,
budget, heartbeats, ``$SRV``), doctor.py (every check in triage order),
connect.py (the CLI's brief connection), metrics.py (Prometheus families
from the same observations), http.py (the gateway's two routes).
"""
