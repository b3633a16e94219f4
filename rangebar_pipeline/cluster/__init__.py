"""The scale-out profile: Celery executor on Redis, Postgres instance, server-only Tier 2 across hosts.

:mod:`~rangebar_pipeline.cluster.profile` holds the environment switches (read by the code location
and the workers); :mod:`~rangebar_pipeline.cluster.celery_app` is the workers' Celery app (extra
``[cluster]``); :mod:`~rangebar_pipeline.cluster.smoke` drives a backfill through a running cluster.
``scripts/cluster.sh`` starts and stops the services; ``deploy/cluster/`` holds their configuration.
"""
