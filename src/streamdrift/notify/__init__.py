"""`streamdrift notify`: alerts from the alerts topic to people.

The data flow is the module layout: `consumer.py` reads the alerts topic in a consumer
group of its own (`received.py` turns each message into an alert), `routes.py` picks
the sinks each alert goes to, `lanes.py` runs the deliveries, a sink's alerts of one
model one after the other and everything else side by side, `retry.py` retries each
delivery with capped exponential backoff, the sinks (`webhook.py`, `slack.py`,
`pagerduty.py`, `mail.py`, built by `sinks.py`) speak each receiver's format, and
`progress.py` says how far the topic may be committed: past an alert only once every
sink it was routed to received it or gave up on it, and what was given up on is in
`<alerts topic>.undelivered` (`undelivered.py`) first.

Nothing is kept between runs but Kafka's committed offsets, so delivery is at least
once: a notifier killed mid-way delivers again what it had not committed, with the same
`Idempotency-Key` (the alert id) for receivers to drop the repeat.
"""
