"""Errors of the monitoring domain (problem `type`s are stable: clients switch on them)."""

from backend.core.errors import Conflict


class BlockAhead(Conflict):
    status = 422
    type = "block-ahead"
    title = "The block is past the chain's head"


class AnomalyNotFound(Conflict):
    status = 404
    type = "anomaly-not-found"
    title = "No such anomaly"


class AnomalyAcknowledged(Conflict):
    type = "anomaly-acknowledged"
    title = "The anomaly is already acknowledged"
