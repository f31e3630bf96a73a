"""Destinations: where de-identified images go (GCS), their safe metadata (BigQuery), and
what happened (Pub/Sub); staging for `send: manual`. Delivery is exactly once: every name, job
id and event id is derived from pseudonymous identifiers, so a rerun finds what an earlier run
already delivered. The sinks take `DeidentifiedImage`s and the typed destinations of the spec.
"""
