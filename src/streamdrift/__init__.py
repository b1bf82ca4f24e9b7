"""streamdrift: a streaming monitor for machine-learning models, on Kafka and Redis."""

__version__ = "0.1.0"
