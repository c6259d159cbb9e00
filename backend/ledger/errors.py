"""Errors of applying chain events to the ledger."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of the ledger layer's errors."""


class UnexpectedEvent(LedgerError):
    """A final chain event the ledger did not expect (a payout that matches no batch line, a
    registration whose referrer is unknown, a plan hash never published, ...). Applying it is
    refused: the transaction that tried rolls back and nothing is written."""

    def __init__(self, event_name: str, event_id: int, reason: str) -> None:
        super().__init__(f"{event_name} (event {event_id}): {reason}")
        self.event_name = event_name
        self.event_id = event_id
        self.reason = reason


class BulkRefused(LedgerError):
    """The bulk path found an event of its run the ledger cannot settle; nothing of the run is
    written, and the caller settles it event by event (which records the anomaly)."""
