"""Fault tests: real servers killed with SIGKILL and restarted while a quiz runs.

Every test plays a quiz under load, writes down each answer the clients saw
acknowledged, and then holds Redis and (after a sync) SQL to that log.
"""
