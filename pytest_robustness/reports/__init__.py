"""What a session reports: the session run, gating and promotion, sweep plots, the transfer matrix, JUnit."""
