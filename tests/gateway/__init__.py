"""The Envoy gateway, rendered from the template and run for real in front of an
in-test backend: transcoding, streaming, JWT, rate limits, size limits, static files,
access log and stats."""
