"""The command-line suite: a time limit on every case."""

from time_limit import case_time_limit

CASE_TIMEOUT_S = 300  # generous: the 2-core machine is shared; a hang is what this catches, not slowness

time_limit = case_time_limit(CASE_TIMEOUT_S)
