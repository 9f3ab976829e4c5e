"""What the user asked for: command-line options, model options and thresholds, read once, validated, frozen."""
