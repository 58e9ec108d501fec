"""The whole study as one command: plan, cached/resumable runner, executors, report."""
