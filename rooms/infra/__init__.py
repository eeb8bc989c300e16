"""Plumbing the services share: background work, backoff, rate limits, and the HTTP edges' JSON rules."""
