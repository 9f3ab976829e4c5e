"""What a suite's test calls: the robustness cell, its result, scoring, artifacts, defended, transfer and baseline views."""
