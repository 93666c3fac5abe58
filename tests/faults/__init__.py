"""Fault tests: real servers killed with SIGKILL and restarted while a quiz runs.

Every test plays a quiz under load, writes down each answer the clients saw
acknowledged, and then holds Redis and (after a sync) SQL to that log. The log is
the client's side of the contract: whatever the servers went through, each
acknowledged answer must count exactly once, with the points and time the
acknowledgement carried.

What the tests share, by concern:

- processes: the stack with some services in-process, services as child
  processes a test kills (ServiceProcess), and runs of the sync job (SyncCommand);
- proxy: a TCP proxy that makes a server (MySQL) unreachable;
- plan, answer_log, game: the quiz as planned, the log of what clients saw
  acknowledged, and the Game that plays it (a host and retrying players);
- standings: the ranking the log implies;
- checks, sql: Redis (through the services), JetStream and SQL held to the log;
- watchers: leaderboard and quiz streams that reconnect through a fault.
"""
