"""The team service: the study queue, agents, and the worker processes (plan, spawn, supervise)."""
