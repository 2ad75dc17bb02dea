"""Reproductions of the seeds' claims: one script per claim (``python -m reproduce.<claim>``), each
writing ``bench/results/repro_<claim>_<budget>.json`` with table rows (claim, paper number with its
place, ours, command, budget, verdict); ``python -m reproduce.collect`` builds the README table."""
