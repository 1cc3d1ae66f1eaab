"""Background work: a durable job queue in the store, the worker that runs it, cron schedules, and the
channel pipeline (a message arrives -> stored and queued once -> the agent runs -> the reply goes out once)."""
